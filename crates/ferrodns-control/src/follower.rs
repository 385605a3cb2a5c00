//! Following other nodes' commits (PostgreSQL).
//!
//! Every commit announces its zone and new serial with `pg_notify`
//! (delivered at commit, only to connected listeners). Each node listens,
//! and for each announced zone it does not already serve at that serial (its
//! own commits it does) applies the journal steps after the serial it serves
//! (or reloads the zone when the journal does not reach back). Because a
//! listener misses whatever was sent while it was disconnected, a node also
//! compares every zone's serial with the database after each (re)connect and
//! every `--ha-poll-ms`: one query for all serials and a hash set, so a poll
//! costs time in proportion to the number of zones.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ferrodns_proto::{Name, Serial};
use ferrodns_store::StoreError;
use ferrodns_zone::live::Applied;
use tokio::sync::watch;

use crate::catalog::{self, CatalogSync};
use crate::ControlPlane;

/// Follows other nodes' commits until shutdown (PostgreSQL only).
pub async fn follow(control: Arc<ControlPlane>, url: String, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let mut listener = match control.store.change_listener(&url).await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        catch_up(&control).await;
        loop {
            tokio::select! {
                next = listener.next() => match next {
                    Ok(announced) => {
                        if let Ok(apex) = Name::parse(&announced.zone, None) {
                            if !already_served(&control, &apex, announced.serial) {
                                sync_zone(&control, &apex).await;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the change listener; reconnecting and catching up");
                        break;
                    }
                },
                _ = tokio::time::sleep(poll) => catch_up(&control).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// True when an announced commit is one this node serves already (its own,
/// above all), so the zone need not be read back. The catalog is left to
/// `sync_zone`, which reads the catalog's own control.
fn already_served(control: &ControlPlane, apex: &Name, serial: Option<Serial>) -> bool {
    let Some(serial) = serial else { return false };
    let apex = apex.to_lowercase();
    if control.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        return false;
    }
    control.live.snapshot().get(apex.as_wire()).is_some_and(|zone| zone.serial() == serial)
}

/// Brings every stored zone up to the database, and drops zones it no longer holds.
async fn catch_up(control: &ControlPlane) {
    let Ok(stored) = control.store.zone_serials().await else { return };
    let served = control.live.snapshot();
    for (apex, serial) in &stored {
        if served.get(apex.as_wire()).map(|z| z.serial()) != Some(*serial) && !control.live.is_file_zone(apex.as_wire())
        {
            sync_zone(control, apex).await;
        }
    }
    let catalog = control.catalog.as_ref().map(|c| c.name().clone());
    let known: HashSet<&[u8]> = stored.iter().map(|(name, _)| name.as_wire()).collect();
    for zone in served.iter() {
        let apex = zone.apex().to_lowercase();
        if !known.contains(apex.as_wire())
            && !control.live.is_file_zone(apex.as_wire())
            && Some(&apex) != catalog.as_ref()
        {
            sync_zone(control, &apex).await;
        }
    }
    catalog::sync(control, CatalogSync::Poll).await;
}

/// Brings one zone up to the database.
async fn sync_zone(control: &ControlPlane, apex: &Name) {
    let apex = apex.to_lowercase();
    if control.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        // The leader wrote a new catalog control.
        catalog::sync(control, CatalogSync::Poll).await;
        return;
    }
    if control.live.is_file_zone(apex.as_wire()) {
        return;
    }
    let _publication = control.locks.lock(&apex).await;
    let zone = match control.store.zone(&apex).await {
        Ok(zone) => zone,
        Err(StoreError::NotFound) => {
            if control.live.snapshot().get(apex.as_wire()).is_some() {
                control.live.remove_zone(apex.as_wire());
                tracing::info!(zone = %apex, "deleted on another node");
                catalog::sync(control, CatalogSync::Full).await;
            }
            return;
        }
        Err(e) => {
            tracing::debug!(zone = %apex, error = %e, "cannot read the zone now");
            return;
        }
    };
    let served = control.live.snapshot().get(apex.as_wire()).map(|z| z.serial());
    match served {
        Some(serial) if serial == zone.serial => return,
        Some(serial) => {
            if let Ok(Some(steps)) = control.store.journal_since(zone.id, serial).await {
                // Applying may rebuild a large zone: keep it off the async workers.
                let live = control.live.clone();
                let key = apex.as_wire().to_vec();
                let applied_all = tokio::task::spawn_blocking(move || {
                    steps
                        .iter()
                        .all(|step| matches!(live.apply(&key, step), Ok(Applied::Published | Applied::AlreadyServed)))
                })
                .await
                .unwrap_or(false);
                if applied_all {
                    return;
                }
            }
        }
        None => {}
    }
    if let Err(error) = control.reload(&zone).await {
        tracing::warn!(zone = %apex, %error, "cannot load the zone");
        return;
    }
    if served.is_none() {
        tracing::info!(zone = %apex, "created on another node");
        catalog::sync(control, CatalogSync::Full).await;
    }
}
