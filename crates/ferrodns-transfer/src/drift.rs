//! The drift checker, a leader duty: it compares what each secondary serves
//! with what the primary serves, re-announces zones to secondaries that lag,
//! and records the drift the API reports.
//!
//! Each round (`--drift-interval-ms`, 10 s) visits every zone and every
//! configured secondary. A secondary known to hold the zone's serial and
//! heard from within the last minute is skipped; the others are asked for
//! their SOA. One that is behind is marked drifting and gets a fresh NOTIFY
//! for the zone; it stops drifting once it answers with the current serial.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrodns_proto::tsig::Key;
use ferrodns_zone::ZoneSet;

use crate::client::query_soa;
use crate::notify::{Addresses, Announcement, Notifier, Term};
use crate::peers::Peers;
use crate::primary::unix_now;

/// How recent a secondary's known serial must be to skip asking again.
const FRESH: u64 = 60;

/// Starts the checker; it acts only while `term` says this node leads.
pub fn spawn(
    zones: Arc<ArcSwap<ZoneSet>>,
    secondaries: Addresses,
    key: Option<Key>,
    peers: Arc<Peers>,
    notifier: Notifier,
    term: Term,
    interval: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if term().is_none() {
                continue;
            }
            let targets: Vec<_> = secondaries.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
            let snapshot = zones.load_full();
            for zone in snapshot.iter() {
                let apex = zone.apex();
                let known = peers.of_zone(apex);
                let mut lagging = false;
                for target in &targets {
                    let label = target.to_string();
                    let state = known.iter().find(|(peer, _)| *peer == label).map(|(_, s)| *s);
                    let current = state.is_some_and(|s| {
                        s.serial == zone.serial() && unix_now().saturating_sub(s.last_contact) < FRESH
                    });
                    if current {
                        continue;
                    }
                    match query_soa(*target, apex, key.as_ref(), Duration::from_secs(2)).await {
                        Ok(held) => {
                            peers.reported(apex, &label, held);
                            let behind = held != zone.serial() && !held.is_newer_than(zone.serial());
                            peers.set_drifting(apex, &label, behind);
                            if behind {
                                lagging = true;
                                // Logged with the term when this node leads; the NOTIFY
                                // below asks for the term again right before it goes.
                                if let Some(term) = term() {
                                    tracing::warn!(zone = %apex, secondary = %label, holds = held.0, serial = zone.serial().0, term, "drift: re-sending NOTIFY");
                                }
                            }
                        }
                        Err(e) => {
                            peers.set_drifting(apex, &label, true);
                            lagging = true;
                            tracing::warn!(zone = %apex, secondary = %label, error = %e, "drift: the secondary does not answer for the zone");
                        }
                    }
                }
                if lagging && term().is_some() {
                    let soa = zone.soa();
                    notifier.changed(Announcement {
                        apex: apex.clone(),
                        serial: zone.serial(),
                        soa_ttl: soa.ttl,
                        soa_rdata: soa.first().to_vec(),
                    });
                }
            }
        }
    });
}
