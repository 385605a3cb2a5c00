//! The set of zones a server is authoritative for, found by longest suffix.
//!
//! A `ZoneSet` is immutable like the zones in it. Adding, replacing or removing
//! a zone builds a new set that shares every untouched zone by `Arc`, and the
//! server publishes it with one atomic pointer swap.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::zone::Zone;

/// Apexes up to this many octets are kept in the set's own entries, so that
/// finding a zone reads one bucket and not the zone: with many zones the
/// zones are cold, and their headers would cost a cache miss per query.
const INLINE_APEX: usize = 55;

/// One zone of the set: 64 octets, the apex inline when it fits.
#[derive(Clone)]
struct Entry {
    zone: Arc<Zone>,
    len: u8,
    apex: [u8; INLINE_APEX],
}

impl Entry {
    fn new(zone: Arc<Zone>) -> Entry {
        let mut apex = [0u8; INLINE_APEX];
        let lower = zone.apex_lower();
        let len = if lower.len() <= INLINE_APEX {
            apex[..lower.len()].copy_from_slice(lower);
            lower.len() as u8
        } else {
            0
        };
        Entry { zone, len, apex }
    }

    #[inline]
    fn is(&self, apex_lower: &[u8]) -> bool {
        if self.len == 0 {
            self.zone.apex_lower() == apex_lower
        } else {
            &self.apex[..self.len as usize] == apex_lower
        }
    }
}

/// Zones indexed by lowercase apex.
#[derive(Clone, Default)]
pub struct ZoneSet {
    zones: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
    /// The most labels any apex has: longer suffixes of a qname cannot be apexes.
    max_labels: usize,
}

impl ZoneSet {
    /// An empty set.
    pub fn new() -> ZoneSet {
        ZoneSet::default()
    }

    /// Adds or replaces the zone with the same apex; returns the old one.
    pub fn insert(&mut self, zone: Arc<Zone>) -> Option<Arc<Zone>> {
        self.max_labels = self.max_labels.max(zone.apex().label_count());
        let hash = self.hasher.hash_one(zone.apex_lower());
        let hasher = &self.hasher;
        let entry = Entry::new(zone);
        let apex = entry.zone.apex_lower();
        match self.zones.entry(hash, |e| e.is(apex), |e| hasher.hash_one(e.zone.apex_lower())) {
            hashbrown::hash_table::Entry::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), entry).zone),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(entry);
                None
            }
        }
    }

    /// Removes the zone with this lowercase apex.
    pub fn remove(&mut self, apex_lower: &[u8]) -> Option<Arc<Zone>> {
        let hash = self.hasher.hash_one(apex_lower);
        let removed = self.zones.find_entry(hash, |e| e.is(apex_lower)).ok().map(|e| e.remove().0.zone);
        self.max_labels = self.zones.iter().map(|e| e.zone.apex().label_count()).max().unwrap_or(0);
        removed
    }

    /// The zone whose apex is exactly this lowercase name.
    pub fn get(&self, apex_lower: &[u8]) -> Option<&Arc<Zone>> {
        let hash = self.hasher.hash_one(apex_lower);
        self.zones.find(hash, |e| e.is(apex_lower)).map(|e| &e.zone)
    }

    /// The deepest zone containing a lowercase wire name, if any.
    #[inline]
    pub fn find(&self, name_lower: &[u8]) -> Option<&Arc<Zone>> {
        // Skip the suffixes with more labels than any apex has.
        let mut pos = 0;
        let mut labels = ferrodns_proto::name::label_count(name_lower);
        while labels > self.max_labels {
            pos += 1 + name_lower[pos] as usize;
            labels -= 1;
        }
        loop {
            if let Some(zone) = self.get(&name_lower[pos..]) {
                return Some(zone);
            }
            let len = name_lower[pos] as usize;
            if len == 0 {
                return None;
            }
            pos += 1 + len;
        }
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when there are no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Every zone, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.iter().map(|e| &e.zone)
    }
}
