//! Per-zone locks, held from a change's transaction to its publication.

use std::sync::Arc;

use ferrodns_proto::Name;

/// One async lock per zone, held from a write's transaction to its
/// publication. Batches of RRset changes share it: the database orders them
/// (and the SQLite writer commits those queued together in one
/// transaction), and each waits at publication for the one before it
/// ([`ZoneLocks::published`]), so that this node publishes its changes in
/// commit order and a burst of writers does not force full reloads. Every
/// other write to a zone (its creation, deletion, an import, settings, a
/// transfer, another node's commits) holds it alone: a delete cannot be
/// overtaken by the publication of an earlier change, which would serve the
/// deleted zone again.
#[derive(Default)]
pub struct ZoneLocks {
    locks: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Arc<tokio::sync::RwLock<()>>>>,
    /// Wakes the changes waiting for their turn to publish; notified after
    /// every publication.
    pub published: tokio::sync::Notify,
}

impl ZoneLocks {
    fn entry(&self, apex: &Name) -> Arc<tokio::sync::RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(apex.to_lowercase().as_wire().to_vec()).or_default().clone()
    }

    /// Waits for the zone's lock, alone.
    pub async fn lock(&self, apex: &Name) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.entry(apex).write_owned().await
    }

    /// Waits for the zone's lock, shared with other batches of changes.
    pub async fn share(&self, apex: &Name) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.entry(apex).read_owned().await
    }

    /// How many zones have a lock (each zone written to since it was made,
    /// until it is deleted).
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets a deleted zone's lock.
    pub fn forget(&self, apex: &Name) {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(apex.to_lowercase().as_wire());
    }
}
