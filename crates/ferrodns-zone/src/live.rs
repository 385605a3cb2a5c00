//! The zones being served, and how changes reach them.
//!
//! `LiveZones` owns the atomic pointer the DNS workers read. Writers (the API
//! after a commit, SIGHUP reloads of zone files) go through it, one at a time,
//! and each publishes a whole new [`ZoneSet`] with one store: readers never
//! lock and never see half a change.
//!
//! A committed change arrives as a [`Diff`] from serial A to serial B. It is
//! applied only on top of serial A; a diff that is already contained in the
//! served zone is skipped, and one that does not follow on from it is
//! reported as a gap so that the caller reloads the zone from the store. That
//! keeps the served data correct whatever order concurrent writers finish in.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ferrodns_proto::{Name, RecordType};

use crate::edit::{Diff, RRsetData};
use crate::zone::{Zone, ZoneBuilder, ZoneError};
use crate::zoneset::ZoneSet;

/// What became of a diff handed to [`LiveZones::apply`].
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The served zone now holds the diff.
    Published,
    /// The served zone already holds this serial or a newer one.
    AlreadyServed,
    /// The served zone is not at the diff's old serial (or is not served):
    /// reload it from the store.
    Gap,
}

/// Called with each zone version published (for NOTIFY and the catalog),
/// and with the apex of each zone removed.
pub trait Observer: Send + Sync {
    fn published(&self, zone: &Zone);
    fn removed(&self, apex: &Name);
}

/// The served zone set and the one path by which it changes.
pub struct LiveZones {
    current: Arc<ArcSwap<ZoneSet>>,
    observers: Mutex<Vec<Arc<dyn Observer>>>,
    /// Serializes publishers; readers never take it.
    publish: Mutex<()>,
    /// Lowercase apexes of zones served from files, which the API must not own.
    file_zones: Mutex<HashSet<Vec<u8>>>,
}

impl LiveZones {
    /// Starts serving `zones`, all taken as zone-file zones.
    pub fn new(zones: ZoneSet) -> LiveZones {
        let file_zones = zones.iter().map(|z| z.apex_lower().to_vec()).collect();
        LiveZones {
            current: Arc::new(ArcSwap::from_pointee(zones)),
            observers: Mutex::new(Vec::new()),
            publish: Mutex::new(()),
            file_zones: Mutex::new(file_zones),
        }
    }

    /// Adds one who hears of published and removed zones.
    pub fn add_observer(&self, observer: Arc<dyn Observer>) {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).push(observer);
    }

    fn observers(&self) -> Vec<Arc<dyn Observer>> {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The pointer DNS workers load from.
    pub fn handle(&self) -> Arc<ArcSwap<ZoneSet>> {
        self.current.clone()
    }

    /// The zone set served right now.
    pub fn snapshot(&self) -> Arc<ZoneSet> {
        self.current.load_full()
    }

    /// True if this lowercase apex is served from a zone file.
    pub fn is_file_zone(&self, apex_lower: &[u8]) -> bool {
        self.file_zones.lock().unwrap_or_else(|e| e.into_inner()).contains(apex_lower)
    }

    /// True if a zone file serves this lowercase apex, a zone above it or
    /// a zone below it.
    pub fn overlaps_file_zone(&self, apex_lower: &[u8]) -> bool {
        let files = self.file_zones.lock().unwrap_or_else(|e| e.into_inner());
        files.iter().any(|file| {
            ferrodns_proto::name::is_subdomain(apex_lower, file) || ferrodns_proto::name::is_subdomain(file, apex_lower)
        })
    }

    fn update<R>(&self, change: impl FnOnce(&mut ZoneSet) -> R) -> R {
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = ZoneSet::clone(&self.current.load());
        let result = change(&mut next);
        self.current.store(Arc::new(next));
        result
    }

    /// Replaces every zone-file zone with `zones` (a SIGHUP reload), leaving
    /// the zones the store owns alone.
    pub fn replace_file_zones(&self, zones: ZoneSet) {
        let mut names = self.file_zones.lock().unwrap_or_else(|e| e.into_inner());
        self.update(|set| {
            for old in names.drain() {
                set.remove(&old);
            }
            for zone in zones.iter() {
                names.insert(zone.apex_lower().to_vec());
                set.insert(zone.clone());
            }
        });
        for observer in self.observers() {
            zones.iter().for_each(|zone| observer.published(zone));
        }
    }

    /// Serves `zone`, replacing any zone of the same apex, unless the served
    /// one is newer (a concurrent writer published later data first).
    pub fn publish_zone(&self, zone: Zone) {
        let zone = Arc::new(zone);
        let published = self.update(|set| {
            if let Some(served) = set.get(zone.apex_lower()) {
                if served.serial().is_newer_than(zone.serial()) {
                    return false;
                }
            }
            set.insert(zone.clone());
            true
        });
        if published {
            self.observers().iter().for_each(|o| o.published(&zone));
        }
    }

    /// Serves many zones in one publication (a start-up's batch), each as
    /// [`LiveZones::publish_zone`] would.
    pub fn publish_zones(&self, zones: Vec<Zone>) {
        let zones: Vec<Arc<Zone>> = zones.into_iter().map(Arc::new).collect();
        let published: Vec<Arc<Zone>> = self.update(|set| {
            let mut published = Vec::with_capacity(zones.len());
            for zone in zones {
                if set.get(zone.apex_lower()).is_some_and(|served| served.serial().is_newer_than(zone.serial())) {
                    continue;
                }
                set.insert(zone.clone());
                published.push(zone);
            }
            published
        });
        let observers = self.observers();
        for zone in &published {
            observers.iter().for_each(|o| o.published(zone));
        }
    }

    /// Stops serving a zone.
    pub fn remove_zone(&self, apex_lower: &[u8]) {
        let removed = self.update(|set| set.remove(apex_lower));
        if let Some(zone) = removed {
            self.observers().iter().for_each(|o| o.removed(zone.apex()));
        }
    }

    /// Applies a committed change to the served zone; see [`Applied`].
    pub fn apply(&self, apex_lower: &[u8], diff: &Arc<Diff>) -> Result<Applied, Vec<ZoneError>> {
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load();
        let Some(served) = current.get(apex_lower) else { return Ok(Applied::Gap) };
        let serial = served.serial();
        if serial == diff.new_serial || serial.is_newer_than(diff.new_serial) {
            return Ok(Applied::AlreadyServed);
        }
        if serial != diff.old_serial {
            return Ok(Applied::Gap);
        }
        let zone = Arc::new(apply_to_zone(served, diff)?);
        let mut next = ZoneSet::clone(&current);
        next.insert(zone.clone());
        self.current.store(Arc::new(next));
        drop(_guard);
        self.observers().iter().for_each(|o| o.published(&zone));
        Ok(Applied::Published)
    }
}

/// Builds a zone from stored RRsets.
pub fn build_zone<'a>(apex: &Name, rrsets: impl IntoIterator<Item = &'a RRsetData>) -> Result<Zone, Vec<ZoneError>> {
    let mut builder = ZoneBuilder::new(apex.clone());
    for set in rrsets {
        for rdata in &set.rdatas {
            builder.add_wire(set.owner.as_wire(), set.rtype, set.ttl, rdata, None);
        }
    }
    builder.finish().map(|(zone, _warnings)| zone)
}

/// How many recent changes a zone keeps for IXFR, and how many records
/// they may hold together; older steps come from the store's journal.
pub const HISTORY_STEPS: usize = 64;
pub const HISTORY_RECORDS: usize = 100_000;

/// A new zone: `zone` with `diff` applied, keeping the diff in the new
/// version's recent history. Costs time in proportion to the change (an
/// overlay, [`Zone::apply_overlay`], which folds a grown overlay into a
/// new base by a copy first), or a rebuild of the zone when the change
/// needs the full checks.
pub fn apply_to_zone(zone: &Zone, diff: &Arc<Diff>) -> Result<Zone, Vec<ZoneError>> {
    let next = match zone.apply_overlay(&diff.removed, &diff.added) {
        Some(next) => next,
        None => rebuild_with(zone, diff)?,
    };
    finish_version(zone, next, diff)
}

/// `zone` with `diff` applied, rebuilt whole from its nodes, with every
/// load check.
pub fn rebuild_with(zone: &Zone, diff: &Diff) -> Result<Zone, Vec<ZoneError>> {
    type Key = (Vec<u8>, RecordType, Vec<u8>);
    let mut removed: HashSet<Key> =
        diff.removed.iter().map(|r| (r.owner.to_ascii_lowercase(), r.rtype, r.rdata.to_vec())).collect();
    let mut builder = ZoneBuilder::new(zone.apex().clone());
    let mut key: Key = (Vec::new(), RecordType(0), Vec::new());
    for node in zone.nodes() {
        key.0.clear();
        key.0.extend(node.name().iter().map(u8::to_ascii_lowercase));
        for rrset in node.rrsets() {
            key.1 = rrset.rtype;
            for rdata in rrset.rdatas() {
                key.2.clear();
                key.2.extend_from_slice(rdata);
                if !removed.is_empty() && removed.remove(&key) {
                    continue;
                }
                builder.add_wire(node.name(), rrset.rtype, rrset.ttl, rdata, None);
            }
        }
    }
    if !removed.is_empty() {
        return Err(vec![ZoneError {
            line: None,
            message: format!("the change removes {} records the zone does not hold", removed.len()),
        }]);
    }
    for record in &diff.added {
        builder.add_wire(record.owner, record.rtype, record.ttl, record.rdata, None);
    }
    builder.finish().map(|(next, _warnings)| next)
}

/// Keeps the diff in the new version's history and checks its serial.
fn finish_version(zone: &Zone, mut next: Zone, diff: &Arc<Diff>) -> Result<Zone, Vec<ZoneError>> {
    let mut history: Vec<Arc<Diff>> = zone.history().to_vec();
    // Shared, not copied: an import's diff holds every record of the zone.
    history.push(diff.clone());
    let mut records: usize = history.iter().map(|d| d.removed.len() + d.added.len()).sum();
    let mut drop = 0;
    // A change bigger than the whole bound (an import) is not kept at all:
    // IXFR then reads it from the store's journal.
    while history.len() - drop > HISTORY_STEPS || records > HISTORY_RECORDS {
        records -= history[drop].removed.len() + history[drop].added.len();
        drop += 1;
    }
    history.drain(..drop);
    next.set_history(history);
    if next.serial() != diff.new_serial {
        return Err(vec![ZoneError {
            line: None,
            message: format!(
                "the change should bring serial {} but the SOA says {}",
                diff.new_serial.0,
                next.serial().0
            ),
        }]);
    }
    Ok(next)
}
