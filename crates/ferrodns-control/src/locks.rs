//! Per-zone locks, held from a change's transaction to its publication.

use std::sync::Arc;

use ferrodns_proto::Name;

/// One async lock per zone, held from a change's transaction to its
/// publication. The database already serializes writers to a zone; holding
/// this too makes this node publish its own changes in commit order, so a
/// burst of writers does not force full reloads (and a delete cannot be
/// overtaken by the publication of an earlier change, which would serve
/// the deleted zone again).
#[derive(Default)]
pub struct ZoneLocks {
    locks: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
}

impl ZoneLocks {
    /// Waits for the zone's lock.
    pub async fn lock(&self, apex: &Name) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(apex.to_lowercase().as_wire().to_vec()).or_default().clone()
        };
        lock.lock_owned().await
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
