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
use ferrodns_proto::Serial;
use ferrodns_zone::ZoneSet;

use crate::client::query_soa;
use crate::exchange::UdpExchange;
use crate::notify::{Addresses, Announcement, Notifier, Term};
use crate::peers::{PeerState, Peers};

/// How recent a secondary's known serial must be to skip asking again.
const FRESH: Duration = Duration::from_secs(60);

/// Whether a secondary must be asked for its serial this round: unless it
/// is known to hold `serial` and was heard from within [`FRESH`], on
/// tokio's clock.
fn needs_asking(known: Option<PeerState>, serial: Serial) -> bool {
    !known.is_some_and(|s| s.serial == serial && s.heard.elapsed() < FRESH)
}

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
        // One shared socket for every SOA query of every round.
        let exchange = UdpExchange::default();
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
                    if !needs_asking(state, zone.serial()) {
                        continue;
                    }
                    match query_soa(&exchange, *target, apex, key.as_ref(), Duration::from_secs(2)).await {
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

#[cfg(test)]
mod tests {
    use ferrodns_proto::Name;

    use super::*;

    /// A secondary heard from at the zone's serial is left alone for a
    /// minute, then asked again; one at another serial is asked at once.
    /// On tokio's paused clock, so the minute takes no real time.
    #[tokio::test(start_paused = true)]
    async fn a_current_secondary_is_asked_again_after_a_minute() {
        let peers = Peers::default();
        let apex = Name::parse("drift.test.", None).unwrap();
        peers.reported(&apex, "192.0.2.1:53", Serial(7));
        let state = || peers.of_zone(&apex).first().map(|(_, s)| *s);
        assert!(!needs_asking(state(), Serial(7)));
        assert!(needs_asking(state(), Serial(8)), "a secondary behind the zone is asked");
        assert!(needs_asking(None, Serial(7)), "a secondary never heard from is asked");
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!needs_asking(state(), Serial(7)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(needs_asking(state(), Serial(7)), "61 s after the last word it is asked again");
    }
}
