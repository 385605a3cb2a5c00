//! Journal compaction, a leader duty.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferrodns_store::Fence;
use tokio::sync::watch;

use crate::ControlPlane;

/// Journal compaction, a leader duty (PostgreSQL). Every `interval` the
/// leader trims, under its fence, the journal of each zone whose version
/// moved by 16 or more since it last trimmed it, down to `--journal-keep`
/// entries. A node that is not leader, or loses its term midway, stops.
pub async fn compact_journals(control: Arc<ControlPlane>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let keep = i64::from(control.store.options().journal_keep);
    // Zone id → its version when this term last trimmed it.
    let mut trimmed: HashMap<i64, i64> = HashMap::new();
    let mut trimmed_term = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let Some(term) = control.leadership.term() else { continue };
        if trimmed_term != Some(term) {
            trimmed.clear();
            trimmed_term = Some(term);
        }
        let Ok(versions) = control.store.zone_versions().await else { continue };
        let present: HashSet<i64> = versions.iter().map(|(id, _, _)| *id).collect();
        trimmed.retain(|id, _| present.contains(id));
        for (id, name, version) in versions {
            let due = match trimmed.get(&id) {
                Some(last) => version - last >= 16,
                None => version > keep,
            };
            if !due {
                continue;
            }
            match control.store.compact_journal(id, Fence::Lease { node: control.leadership.node(), term }).await {
                Ok(Some(removed)) => {
                    trimmed.insert(id, version);
                    if removed > 0 {
                        tracing::info!(zone = %name, removed, term, "journal compacted");
                    }
                }
                Ok(None) => {
                    tracing::info!(term, "journal compaction stopped: the term is no longer current");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot compact journals now");
                    break;
                }
            }
        }
    }
}
