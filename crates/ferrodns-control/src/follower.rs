//! Following other nodes' commits (PostgreSQL).
//!
//! Every commit announces its zone and new serial with `pg_notify`
//! (delivered at commit, only to connected listeners). Each node listens,
//! and for each announced zone it does not already serve at that serial (its
//! own commits it does) applies the journal steps after the serial it serves
//! (or reloads the zone when the journal does not reach back). Because a
//! listener misses whatever was sent while it was disconnected, a node also
//! catches up after each (re)connect and every `--ha-poll-ms`. A catch-up
//! first reads the zones' fingerprint (one aggregate query: count, highest
//! id, sum of versions, which any create, change or delete moves); when it is
//! the one this node was last wholly in step at, nothing happened and
//! nothing more is read. Otherwise it compares every zone's serial with the
//! database (one query and a hash set, linear in the number of zones), and
//! reads what the zones out of step need in passes over many zones, never
//! a query per zone: the journals of the zones it serves at an older
//! serial ([`Store::journals_since`], [`ZONES_PER_READ`] zones a
//! statement), then the RRsets of those it does not serve or whose journal
//! does not reach back ([`Store::each_zone_rrsets`], as many), built off
//! the async threads and published together, never over a newer serial.
//! Only a zone whose steps do not apply (it moved meanwhile) is read on its
//! own, as a notification's zone is ([`sync_zone`]).
//!
//! Token revocations come on the same channel (`Notice::TokenRevoked`): the
//! node drops the token from its cache of authenticated tokens, and clears
//! that cache whenever it (re)connects, having maybe missed some.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ferrodns_proto::{Name, Serial};
use ferrodns_store::{Notice, StoreError, StoredSerial, ZONES_PER_READ};
use ferrodns_zone::live::Applied;
use tokio::sync::watch;

use crate::catalog::{self, CatalogSync};
use crate::ControlPlane;

/// Follows other nodes' commits until shutdown (PostgreSQL only).
pub async fn follow(control: Arc<ControlPlane>, url: String, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    // The zones' fingerprint when this node was last in step with every
    // stored zone: a poll that finds it unchanged has nothing to read.
    let mut in_step_at = None;
    // Since when the database has been out of reach, as this task saw it:
    // each loss and each return is said once, not at every retry.
    let mut lost_at: Option<std::time::Instant> = None;
    loop {
        let mut listener = match control.store.change_listener(&url).await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                if lost_at.is_none() {
                    tracing::warn!(error = %e, "cannot reach the database: DNS keeps answering from memory, API writes fail until it returns; retrying every second");
                    lost_at = Some(std::time::Instant::now());
                } else {
                    tracing::debug!(error = %e, "the database is still out of reach");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        if let Some(since) = lost_at.take() {
            tracing::info!(
                down_s = since.elapsed().as_secs(),
                "the database answers again; catching up with the changes made meanwhile"
            );
        }
        // Revocations may have been announced while this node was not
        // listening.
        control.tokens.clear();
        catch_up(&control, &mut in_step_at).await;
        loop {
            tokio::select! {
                next = listener.next() => match next {
                    Ok(Notice::Commit(announced)) => {
                        if let Ok(apex) = Name::parse(&announced.zone, None) {
                            if !already_served(&control, &apex, announced.serial) {
                                sync_announced(&control, &apex, announced.serial).await;
                            }
                        }
                    }
                    Ok(Notice::TokenRevoked(id)) => control.tokens.forget(&id),
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the database connection that hears other nodes' changes; reconnecting");
                        lost_at = Some(std::time::Instant::now());
                        break;
                    }
                },
                _ = tokio::time::sleep(poll) => catch_up(&control, &mut in_step_at).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// True when an announced commit is one this node serves already (its own,
/// above all), or a later one (its own next change, published before the
/// notification of this one arrived), so the zone need not be read back.
/// The catalog is left to `sync_zone`, which reads the catalog's own
/// control.
fn already_served(control: &ControlPlane, apex: &Name, serial: Option<Serial>) -> bool {
    let Some(serial) = serial else { return false };
    let apex = apex.to_lowercase();
    if control.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        return false;
    }
    control
        .live
        .snapshot()
        .get(apex.as_wire())
        .is_some_and(|zone| zone.serial() == serial || zone.serial().is_newer_than(serial))
}

/// Brings every stored zone up to the database, and drops zones it no longer holds.
async fn catch_up(control: &ControlPlane, in_step_at: &mut Option<(i64, i64, i64)>) {
    let Ok(fingerprint) = control.store.zones_fingerprint().await else { return };
    if *in_step_at != Some(fingerprint) {
        let Ok(stored) = control.store.zone_serials().await else { return };
        let served = control.live.snapshot();
        let catalog = control.catalog.as_ref().map(|c| c.name().clone());
        // The zones served at another serial, with the serial served; the
        // zones not served; the ones to read on their own.
        let (mut behind, mut missing, mut one_by_one) = (Vec::new(), Vec::new(), Vec::new());
        for zone in &stored {
            if control.live.is_file_zone(zone.name.as_wire()) {
                continue;
            }
            // The catalog is the leader's to write; `catalog::sync` reads
            // it below.
            if catalog.as_ref() == Some(&zone.name) {
                continue;
            }
            match served.get(zone.name.as_wire()) {
                Some(current) => {
                    // Settings (the rate limit) change without the serial.
                    control.serve_rate_limit(&zone.name, zone.rate_limit);
                    if current.serial() != zone.serial {
                        behind.push((zone, current.serial()));
                    }
                }
                None => missing.push(zone),
            }
        }
        let started = std::time::Instant::now();
        let to_read = behind.len() + missing.len();
        let from_journal = apply_journals(control, &behind, &mut missing, &mut one_by_one).await;
        let mut in_step = from_journal.is_some();
        let from_journal = from_journal.unwrap_or_default();
        let reloaded = missing.len();
        in_step &= reload_zones(control, &missing).await;
        let alone = one_by_one.len();
        for apex in one_by_one {
            in_step &= sync_zone(control, &apex).await;
        }
        if to_read > 0 {
            tracing::info!(
                zones = to_read,
                from_journal,
                reloaded,
                one_by_one = alone,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "caught up with the database"
            );
        }
        let known: HashSet<&[u8]> = stored.iter().map(|zone| zone.name.as_wire()).collect();
        for zone in served.iter() {
            let apex = zone.apex_lower();
            if !known.contains(apex)
                && !control.live.is_file_zone(apex)
                && catalog.as_ref().map(|c| c.as_wire()) != Some(apex)
            {
                // Read again on its own: it may be one made on this node
                // since the list was read.
                if let Ok(apex) = Name::from_wire(apex) {
                    in_step &= sync_zone(control, &apex).await;
                }
            }
        }
        // Forward zones have no serial: read them whenever anything moved.
        if let Err(error) = control.refresh_forward_zones().await {
            tracing::debug!(%error, "cannot read the forward zones now");
            in_step = false;
        }
        // Remembered only when every zone was brought in step: a zone that
        // could not be read is tried again at the next poll.
        *in_step_at = in_step.then_some(fingerprint);
    }
    catalog::sync(control, CatalogSync::Poll).await;
}

/// Brings the zones served at an older serial up to the database from
/// their journals, [`ZONES_PER_READ`] zones a statement. A zone whose
/// journal does not reach back joins `missing` (to be reloaded); one that
/// moved meanwhile, or whose steps do not apply, joins `one_by_one`. Says
/// how many zones its steps brought in step, and `None` when a read failed
/// (the next poll tries again).
async fn apply_journals<'z>(
    control: &ControlPlane,
    behind: &[(&'z StoredSerial, Serial)],
    missing: &mut Vec<&'z StoredSerial>,
    one_by_one: &mut Vec<Name>,
) -> Option<usize> {
    let mut applied = 0;
    for chunk in behind.chunks(ZONES_PER_READ) {
        let from: Vec<(i64, Serial)> = chunk.iter().map(|(zone, served)| (zone.id, *served)).collect();
        let mut steps = match control.store.journals_since(&from).await {
            Ok(steps) => steps,
            Err(error) => {
                tracing::debug!(%error, "cannot read the journals now");
                return None;
            }
        };
        for (zone, served) in chunk {
            let Some(diffs) = steps.remove(&zone.id) else {
                missing.push(zone);
                continue;
            };
            // Under the zone's lock, from the serial the journal was read at.
            let _publication = control.locks.lock(&zone.name).await;
            if control.live.snapshot().get(zone.name.as_wire()).map(|z| z.serial()) != Some(*served) {
                one_by_one.push(zone.name.clone());
                continue;
            }
            if apply_steps(control, &zone.name, diffs).await {
                applied += 1;
            } else {
                one_by_one.push(zone.name.clone());
            }
        }
    }
    Some(applied)
}

/// Applies journal steps to the zone served at `apex`, in order; false
/// when one does not apply (the caller reads the zone instead).
async fn apply_steps(control: &ControlPlane, apex: &Name, steps: Vec<ferrodns_zone::edit::Diff>) -> bool {
    // Applying may rebuild a large zone: keep it off the async workers.
    let live = control.live.clone();
    let key = apex.as_wire().to_vec();
    tokio::task::spawn_blocking(move || {
        steps
            .into_iter()
            .map(Arc::new)
            .all(|step| matches!(live.apply(&key, &step), Ok(Applied::Published | Applied::AlreadyServed)))
    })
    .await
    .unwrap_or(false)
}

/// Reads and serves `zones` from their stored RRsets, [`ZONES_PER_READ`]
/// zones a statement, built off the async workers and published together
/// (never over a newer serial: a change this node made meanwhile stands).
/// False when a read failed.
async fn reload_zones(control: &ControlPlane, zones: &[&StoredSerial]) -> bool {
    let mut in_step = true;
    let mut created = false;
    for chunk in zones.chunks(ZONES_PER_READ) {
        let ids: Vec<i64> = chunk.iter().map(|zone| zone.id).collect();
        let mut read = Vec::with_capacity(chunk.len());
        if let Err(error) = control.store.each_zone_rrsets(Some(&ids), &mut |id, rrsets| read.push((id, rrsets))).await
        {
            tracing::warn!(zones = chunk.len(), %error, "cannot load the zones");
            in_step = false;
            continue;
        }
        let by_id: std::collections::HashMap<i64, (Name, Option<ferrodns_zone::RateLimit>)> =
            chunk.iter().map(|zone| (zone.id, (zone.name.clone(), zone.rate_limit))).collect();
        let served = control.live.snapshot();
        for (name, _) in by_id.values() {
            if served.get(name.as_wire()).is_none() {
                tracing::info!(zone = %name, "created on another node");
                created = true;
            }
        }
        let live = control.live.clone();
        let built = tokio::task::spawn_blocking(move || {
            let built = read.into_iter().filter_map(|(id, rrsets)| {
                let (apex, rate_limit) = by_id.get(&id)?;
                crate::build_stored_zone(apex, *rate_limit, &rrsets)
            });
            live.publish_zones(built.collect());
        })
        .await;
        in_step &= built.is_ok();
    }
    if created {
        catalog::sync(control, CatalogSync::Full).await;
    }
    in_step
}

/// Brings a zone up to an announced commit. The announcement of this node's
/// own commit often arrives while the change that made it is publishing:
/// once the zone's lock is free it is served, and the zone is not read
/// back (reading it under the lock would hold up this node's next change).
async fn sync_announced(control: &ControlPlane, apex: &Name, serial: Option<Serial>) -> bool {
    let lock = control.locks.lock(apex).await;
    if already_served(control, apex, serial) {
        return true;
    }
    drop(lock);
    sync_zone(control, apex).await
}

/// Brings one zone up to the database; false when it could not (the
/// database could not be read, or the zone not loaded).
async fn sync_zone(control: &ControlPlane, apex: &Name) -> bool {
    let apex = apex.to_lowercase();
    if control.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        // The leader wrote a new catalog state.
        catalog::sync(control, CatalogSync::Poll).await;
        return true;
    }
    if control.live.is_file_zone(apex.as_wire()) {
        return true;
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
            return true;
        }
        Err(e) => {
            tracing::debug!(zone = %apex, error = %e, "cannot read the zone now");
            return false;
        }
    };
    // Settings (the rate limit) first: they change without the serial.
    control.serve_settings(&zone);
    let served = control.live.snapshot().get(apex.as_wire()).map(|z| z.serial());
    match served {
        Some(serial) if serial == zone.serial => return true,
        Some(serial) => {
            if let Ok(Some(steps)) = control.store.journal_since(zone.id, serial).await {
                if apply_steps(control, &apex, steps).await {
                    return true;
                }
            }
        }
        None => {}
    }
    if let Err(error) = control.reload(&zone).await {
        tracing::warn!(zone = %apex, %error, "cannot load the zone");
        return false;
    }
    if served.is_none() {
        tracing::info!(zone = %apex, "created on another node");
        catalog::sync(control, CatalogSync::Full).await;
    }
    true
}
