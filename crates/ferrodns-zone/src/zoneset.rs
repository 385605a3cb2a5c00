//! The set of zones a server is authoritative for, found by longest suffix.
//!
//! A `ZoneSet` is immutable like the zones in it. Adding, replacing or removing
//! a zone builds a new set that shares every untouched zone by `Arc`, and the
//! server publishes it with one atomic pointer swap. A new set shares the
//! slots and every chunk of entries it does not change with the old one
//! (copy on write), so replacing a zone (the publication of one change)
//! copies one chunk of [`CHUNK`] entries, not the set: the cost is the same
//! at 100,000 zones as at one.
//!
//! The set is open addressing over 64-bit slots (hash tag and entry index),
//! like the zones' own name index, so the slot a qname's zone sits in is known
//! from the qname's hash alone and can be prefetched for a whole batch
//! ([`ZoneSet::prefetch`]) before any zone is read. With 100,000 zones the
//! slots, the entries and the zones are all cold, and each wait would
//! otherwise come one after another.

use std::sync::Arc;

use crate::zone::{name_hash, prefetch_address, Zone, ZoneAddresses};

/// Apexes up to this many octets (`example.com.` takes 13) are kept in the
/// set's own entries, so that finding a zone reads one entry and not the
/// zone; what is left of the entry's cache line holds the zone's addresses.
const INLINE_APEX: usize = 23;

/// Sets of at most this many zones are searched by comparing apexes, not
/// through the hash table.
const SMALL_SET: usize = 4;

/// Entries per chunk: the unit a change copies (16 KiB).
pub const CHUNK: usize = 256;
const CHUNK_BITS: u32 = CHUNK.trailing_zeros();

/// One zone of the set in one cache line: the zone, where its hot parts are
/// (so they load together once the entry is read), and the apex inline when
/// it fits.
#[derive(Clone)]
#[repr(C, align(64))]
struct Entry {
    zone: Arc<Zone>,
    addresses: ZoneAddresses,
    len: u8,
    apex: [u8; INLINE_APEX],
}

// One cache line on 64-bit targets (the only ones the UDP path is tuned for).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() == 64);

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
        Entry { addresses: zone.addresses(), zone, len, apex }
    }

    #[inline]
    fn is(&self, apex_lower: &[u8]) -> bool {
        // Both sides are lowercase, so equal ignoring case is equal.
        if self.len == 0 {
            ferrodns_proto::name::eq_ignore_case(self.zone.apex_lower(), apex_lower)
        } else {
            ferrodns_proto::name::eq_ignore_case(&self.apex[..self.len as usize], apex_lower)
        }
    }
}

/// Where the search for a name's zone starts: the offset of its longest
/// suffix that can be an apex, and that suffix's hash.
#[derive(Clone, Copy, Debug)]
pub struct SetProbe {
    start: usize,
    hash: u64,
}

/// Zones indexed by lowercase apex.
#[derive(Clone)]
pub struct ZoneSet {
    /// `tag << 32 | (entry index + 1)`; zero marks an empty slot. Shared
    /// with the set this one was made from until a zone comes or goes.
    slots: Arc<Vec<u64>>,
    mask: usize,
    /// Entry `i` is `chunks[i / CHUNK][i % CHUNK]`; every chunk but the last
    /// is full.
    chunks: Vec<Arc<Vec<Entry>>>,
    len: usize,
    /// A set of at most [`SMALL_SET`] zones also keeps its entries here, so
    /// that its search (by comparing apexes, the one-zone server's every
    /// query) reads them without going through a chunk.
    small: Vec<Entry>,
    /// The most labels any apex has: longer suffixes of a qname cannot be apexes.
    max_labels: usize,
}

impl Default for ZoneSet {
    fn default() -> ZoneSet {
        ZoneSet { slots: Arc::new(vec![0; 8]), mask: 7, chunks: Vec::new(), len: 0, small: Vec::new(), max_labels: 0 }
    }
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl ZoneSet {
    /// An empty set.
    pub fn new() -> ZoneSet {
        ZoneSet::default()
    }

    /// The index of the entry for this lowercase apex.
    #[inline]
    fn position(&self, apex_lower: &[u8]) -> Option<usize> {
        self.position_hashed(apex_lower, name_hash(apex_lower))
    }

    /// The slot holding this lowercase apex, and its entry's index.
    #[inline]
    fn position_hashed(&self, apex_lower: &[u8], hash: u64) -> Option<usize> {
        self.slot_of(apex_lower, hash).map(|(_, index)| index)
    }

    #[inline]
    fn slot_of(&self, apex_lower: &[u8], hash: u64) -> Option<(usize, usize)> {
        let tag = tag_of(hash);
        let mut i = tag as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if (slot >> 32) as u32 == tag {
                let index = (slot as u32 - 1) as usize;
                if self.entry(index).is(apex_lower) {
                    return Some((i, index));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn entry(&self, index: usize) -> &Entry {
        &self.chunks[index >> CHUNK_BITS][index & (CHUNK - 1)]
    }

    /// The entry at `index`, for writing: its chunk is copied first if
    /// another set shares it.
    fn entry_mut(&mut self, index: usize) -> &mut Entry {
        &mut Arc::make_mut(&mut self.chunks[index >> CHUNK_BITS])[index & (CHUNK - 1)]
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    fn place(slots: &mut [u64], mask: usize, tag: u32, index: usize) {
        let mut i = tag as usize & mask;
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = (tag as u64) << 32 | (index as u64 + 1);
    }

    /// Lays the slots out again for the entries, at most three quarters full.
    fn reindex(&mut self) {
        let size = ((self.len + 1) * 4 / 3 + 1).next_power_of_two().max(8);
        let mut slots = vec![0; size];
        for (index, entry) in self.entries().enumerate() {
            ZoneSet::place(&mut slots, size - 1, tag_of(name_hash(entry.zone.apex_lower())), index);
        }
        self.slots = Arc::new(slots);
        self.mask = size - 1;
    }

    /// Adds or replaces the zone with the same apex; returns the old one.
    /// Replacing copies the one chunk the zone's entry is in.
    pub fn insert(&mut self, zone: Arc<Zone>) -> Option<Arc<Zone>> {
        self.max_labels = self.max_labels.max(zone.apex().label_count());
        if let Some(index) = self.position(zone.apex_lower()) {
            // A new version keeps the zone's settings (its rate limit).
            if zone.rate_limit().is_none() {
                zone.set_rate_limit(self.entry(index).zone.rate_limit());
            }
            let old = std::mem::replace(self.entry_mut(index), Entry::new(zone)).zone;
            self.refresh_small();
            return Some(old);
        }
        let tag = tag_of(name_hash(zone.apex_lower()));
        if self.len % CHUNK == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(Entry::new(zone));
        self.len += 1;
        if self.len * 4 > self.slots.len() * 3 {
            self.reindex();
        } else {
            let mask = self.mask;
            ZoneSet::place(Arc::make_mut(&mut self.slots).as_mut_slice(), mask, tag, self.len - 1);
        }
        self.refresh_small();
        None
    }

    fn refresh_small(&mut self) {
        self.small.clear();
        if self.len <= SMALL_SET {
            self.small.extend(self.chunks.iter().flat_map(|chunk| chunk.iter()).cloned());
        }
    }

    /// Removes the zone with this lowercase apex: the last entry takes its
    /// place, and its slot is emptied by shifting the probe run back, so
    /// nothing is hashed again.
    pub fn remove(&mut self, apex_lower: &[u8]) -> Option<Arc<Zone>> {
        let (slot, index) = self.slot_of(apex_lower, name_hash(apex_lower))?;
        let last = self.len - 1;
        let moved_slot = (index != last)
            .then(|| self.slot_of(self.entry(last).zone.apex_lower(), name_hash(self.entry(last).zone.apex_lower())))
            .flatten()
            .map(|(slot, _)| slot);
        let tail = Arc::make_mut(self.chunks.last_mut().expect("a zone is there"));
        let moved = tail.pop().expect("the last chunk is not empty");
        if tail.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        let removed = if index == last { moved } else { std::mem::replace(self.entry_mut(index), moved) };
        let mask = self.mask;
        let slots = Arc::make_mut(&mut self.slots);
        if let Some(moved_slot) = moved_slot {
            slots[moved_slot] = (slots[moved_slot] >> 32) << 32 | (index as u64 + 1);
        }
        // Backward-shift deletion (linear probing): pull later members of the
        // run into the hole when their home slot is at or before it.
        let mut hole = slot;
        let mut i = (slot + 1) & mask;
        while slots[i] != 0 {
            let home = (slots[i] >> 32) as usize & mask;
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                slots[hole] = slots[i];
                hole = i;
            }
            i = (i + 1) & mask;
        }
        slots[hole] = 0;
        if removed.zone.apex().label_count() == self.max_labels {
            self.max_labels = self.entries().map(|e| e.zone.apex().label_count()).max().unwrap_or(0);
        }
        self.refresh_small();
        Some(removed.zone)
    }

    /// The zone whose apex is exactly this lowercase name.
    #[inline]
    pub fn get(&self, apex_lower: &[u8]) -> Option<&Arc<Zone>> {
        self.position(apex_lower).map(|index| &self.entry(index).zone)
    }

    /// Where the search for a lowercase name's zone starts: skip the
    /// suffixes with more labels than any apex has.
    #[inline]
    fn first_candidate(&self, name_lower: &[u8]) -> usize {
        let mut pos = 0;
        let mut labels = ferrodns_proto::name::label_count(name_lower);
        while labels > self.max_labels {
            pos += 1 + name_lower[pos] as usize;
            labels -= 1;
        }
        pos
    }

    /// The deepest zone containing a lowercase wire name, if any.
    #[inline]
    pub fn find(&self, name_lower: &[u8]) -> Option<&Arc<Zone>> {
        self.find_probed(name_lower, self.probe(name_lower))
    }

    /// As [`ZoneSet::find`], from a [`SetProbe`] of the same name.
    #[inline]
    pub fn find_probed(&self, name_lower: &[u8], probe: SetProbe) -> Option<&Arc<Zone>> {
        self.entry_probed(name_lower, probe).map(|entry| &entry.zone)
    }

    /// As [`ZoneSet::find_probed`], and starts loading what a lookup of the
    /// name in the zone reads first: the zone's header, its base header and
    /// apex, and the index slot for the name's hash ([`name_hash`]).
    #[inline]
    pub fn find_prefetching(&self, name_lower: &[u8], probe: SetProbe, hash: u64) -> Option<&Arc<Zone>> {
        let entry = self.entry_probed(name_lower, probe)?;
        // The zone's header spans two cache lines (an `Arc` aligns it to 16
        // octets only), and a lookup reads fields in both.
        let header = Arc::as_ptr(&entry.zone).cast::<u8>();
        prefetch_address(header);
        prefetch_address(header.wrapping_add(64));
        entry.addresses.prefetch(hash);
        Some(&entry.zone)
    }

    #[inline]
    fn entry_probed(&self, name_lower: &[u8], probe: SetProbe) -> Option<&Entry> {
        let mut pos = probe.start;
        if self.is_small() {
            // A few apexes, all in cache: compare each candidate suffix with
            // each of them rather than hash it.
            loop {
                let suffix = &name_lower[pos..];
                if let Some(entry) = self.small.iter().find(|e| e.is(suffix)) {
                    return Some(entry);
                }
                let len = name_lower[pos] as usize;
                if len == 0 {
                    return None;
                }
                pos += 1 + len;
            }
        }
        let mut hash = probe.hash;
        loop {
            if let Some(index) = self.position_hashed(&name_lower[pos..], hash) {
                return Some(self.entry(index));
            }
            let len = name_lower[pos] as usize;
            if len == 0 {
                return None;
            }
            pos += 1 + len;
            hash = name_hash(&name_lower[pos..]);
        }
    }

    /// At most [`SMALL_SET`] zones: searched without hashing, and not
    /// prefetched (their entries stay in cache).
    #[inline]
    fn is_small(&self) -> bool {
        self.len <= SMALL_SET
    }

    /// Where the search for a lowercase name's zone starts, worked out once
    /// for the prefetch stages and the search itself.
    #[inline]
    pub fn probe(&self, name_lower: &[u8]) -> SetProbe {
        let start = self.first_candidate(name_lower);
        let hash = if self.is_small() { 0 } else { name_hash(&name_lower[start..]) };
        SetProbe { start, hash }
    }

    /// Starts loading the slot where the search for a name's zone starts
    /// (the first stage of a batch's prefetch).
    #[inline]
    pub fn prefetch(&self, probe: SetProbe) {
        if !self.is_small() {
            prefetch_address(&self.slots[tag_of(probe.hash) as usize & self.mask]);
        }
    }

    /// Starts loading the entry the slot of a probe points to, once that
    /// slot is in cache.
    #[inline]
    pub fn prefetch_entry(&self, probe: SetProbe) {
        if self.is_small() {
            return;
        }
        let tag = tag_of(probe.hash);
        let slot = self.slots[tag as usize & self.mask];
        if slot != 0 && (slot >> 32) as u32 == tag {
            prefetch_address(self.entry((slot as u32 - 1) as usize));
        }
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no zones.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every zone, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.entries().map(|e| &e.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(apex: &str) -> Arc<Zone> {
        let text = format!("$ORIGIN {apex}\n$TTL 300\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n");
        Arc::new(crate::zone::tests::build(&text).unwrap())
    }

    fn wire(name: &str) -> Vec<u8> {
        ferrodns_proto::Name::parse(name, None).unwrap().to_lowercase().as_wire().to_vec()
    }

    #[test]
    fn finds_the_deepest_zone_through_growth_and_removal() {
        let mut set = ZoneSet::new();
        let long = format!("{}.example.", "l".repeat(60));
        for name in ["example.", "sub.example.", "other.", &long] {
            assert!(set.insert(zone(name)).is_none());
        }
        // Four zones: searched by comparing apexes.
        let small = |name: &str| set.find(&wire(name)).map(|z| z.apex().to_string());
        assert_eq!(small("a.b.sub.example."), Some("sub.example.".into()));
        assert_eq!(small("xsub.example."), Some("example.".into()));
        assert_eq!(small("other."), Some("other.".into()));
        assert_eq!(small(&format!("x.{long}")), Some(long.clone()));
        assert_eq!(small("nowhere."), None);
        for i in 0..500 {
            set.insert(zone(&format!("z{i}.test.")));
        }
        assert_eq!(set.len(), 504);
        let apex = |name: &str| set.find(&wire(name)).map(|z| z.apex().to_string());
        assert_eq!(apex("a.b.sub.example."), Some("sub.example.".into()));
        assert_eq!(apex("a.example."), Some("example.".into()));
        assert_eq!(apex(&format!("x.{long}")), Some(long.clone()));
        assert_eq!(apex("www.z499.test."), Some("z499.test.".into()));
        assert_eq!(apex("nowhere."), None);
        assert!(set.insert(zone("sub.example.")).is_some(), "a zone of the same apex is replaced");
        assert_eq!(set.len(), 504);
        assert!(set.remove(&wire("sub.example.")).is_some());
        assert!(set.remove(&wire("sub.example.")).is_none());
        assert_eq!(set.find(&wire("a.b.sub.example.")).map(|z| z.apex().to_string()), Some("example.".into()));
        for i in 0..500 {
            assert!(set.remove(&wire(&format!("z{i}.test."))).is_some());
        }
        assert_eq!(set.len(), 3);
        assert_eq!(set.find(&wire(&format!("x.{long}"))).map(|z| z.apex().to_string()), Some(long.clone()));
    }

    /// Replacing a zone in a copy of a set copies one chunk and shares the
    /// slots and every other chunk; removals keep every other zone findable.
    #[test]
    fn a_new_version_shares_all_but_one_chunk() {
        let mut set = ZoneSet::new();
        for i in 0..3 * CHUNK + 7 {
            set.insert(zone(&format!("z{i}.test.")));
        }
        let mut next = set.clone();
        next.insert(zone("z300.test."));
        assert!(Arc::ptr_eq(&set.slots, &next.slots), "the slots are shared");
        let shared = set.chunks.iter().zip(&next.chunks).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert_eq!(shared, set.chunks.len() - 1);
        assert!(!Arc::ptr_eq(set.get(&wire("z300.test.")).unwrap(), next.get(&wire("z300.test.")).unwrap()));
        // Remove every third zone, in an order that moves entries about.
        for i in (0..3 * CHUNK + 7).rev().step_by(3) {
            assert!(next.remove(&wire(&format!("z{i}.test."))).is_some(), "z{i}");
        }
        for i in 0..3 * CHUNK + 7 {
            let found = next.find(&wire(&format!("www.z{i}.test."))).map(|z| z.apex().to_string());
            let kept = (3 * CHUNK + 7 - 1 - i) % 3 != 0;
            assert_eq!(found.is_some(), kept, "z{i}");
        }
        assert_eq!(next.len(), next.iter().count());
        assert_eq!(set.len(), 3 * CHUNK + 7, "the old version is untouched");
        assert!(set.get(&wire("z0.test.")).is_some());
    }
}
