//! What each secondary holds: the propagation status the API reports.
//!
//! A secondary tells us its serial when it asks for IXFR (the SOA in its
//! authority section; recorded by its address) and when it answers our SOA
//! polls after a NOTIFY (recorded by the NOTIFY target, `address:port`); we
//! also know what it holds after we send it a transfer.

use std::collections::HashMap;
use std::sync::Mutex;

use ferrodns_proto::{Name, Serial};

use crate::primary::unix_now;

/// One secondary's state for one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerState {
    pub serial: Serial,
    /// Seconds since the Unix epoch, as the API shows it.
    pub last_contact: u64,
    /// The same moment on tokio's monotonic clock, which the drift checker
    /// measures freshness by (and a test can pause and move).
    pub heard: tokio::time::Instant,
    /// Set by the drift checker while the peer lags behind the zone.
    pub drifting: bool,
}

/// Every secondary's state, by zone.
#[derive(Default)]
pub struct Peers {
    zones: Mutex<HashMap<Vec<u8>, HashMap<String, PeerState>>>,
    /// Each zone's latest published serial, when it was published, and
    /// whether every known secondary of the zone has reported it since.
    publications: Mutex<HashMap<Vec<u8>, Publication>>,
}

#[derive(Clone, Copy, Debug)]
struct Publication {
    serial: Serial,
    at: std::time::Instant,
    everywhere: bool,
}

/// One secondary over every zone it serves for us; see [`Peers::report`].
#[derive(Clone, Debug)]
pub struct SecondaryReport {
    pub peer: String,
    /// Zones it has told us of, or we sent it.
    pub zones: usize,
    /// Zones where it holds an older serial than the published one.
    pub behind_count: usize,
    /// Some of those, furthest behind first.
    pub behind: Vec<Behind>,
    /// The most serial steps it is behind in any zone (RFC 1982 distance).
    pub lag_serials: u32,
    /// The longest it has gone without a zone's current serial: seconds
    /// since that serial was published; 0 when it holds every one.
    pub lag_seconds: f64,
    /// Its latest contact, in seconds since the Unix epoch.
    pub last_contact: u64,
}

/// A zone a secondary holds at an older serial.
#[derive(Clone, Debug)]
pub struct Behind {
    pub zone: String,
    pub holds: Serial,
    pub current: Serial,
    /// Since the current serial was published.
    pub seconds: f64,
}

impl Peers {
    fn set(&self, apex: &Name, peer: &str, serial: Serial) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let peers = zones.entry(apex.to_lowercase().as_wire().to_vec()).or_default();
        let drifting = peers.get(peer).is_some_and(|s| s.drifting && s.serial == serial);
        let heard = tokio::time::Instant::now();
        peers.insert(peer.to_string(), PeerState { serial, last_contact: unix_now(), heard, drifting });
        // The last of the zone's secondaries to report its current serial
        // ends the zone's propagation.
        let mut publications = self.publications.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(publication) = publications.get_mut(apex.to_lowercase().as_wire()) {
            let holds = |state: &PeerState| {
                state.serial == publication.serial || state.serial.is_newer_than(publication.serial)
            };
            if !publication.everywhere && peers.values().all(holds) {
                publication.everywhere = true;
                ferrodns_metrics::global().propagation.observe(publication.at.elapsed().as_secs_f64());
            }
        }
    }

    /// The zone is now served at `serial`: its propagation starts.
    pub fn published(&self, apex: &Name, serial: Serial) {
        let publication = Publication { serial, at: std::time::Instant::now(), everywhere: false };
        self.publications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(apex.to_lowercase().as_wire().to_vec(), publication);
    }

    /// Each known secondary's state over every zone: how many zones it
    /// serves for us, how far it lags, and the zones where it holds an
    /// older serial than the published one (at most `limit` of them,
    /// longest behind first).
    pub fn report(&self, limit: usize) -> Vec<SecondaryReport> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let publications = self.publications.lock().unwrap_or_else(|e| e.into_inner());
        let mut reports: HashMap<&str, SecondaryReport> = HashMap::new();
        for (apex, peers) in zones.iter() {
            let publication = publications.get(apex);
            for (peer, state) in peers {
                let report = reports.entry(peer).or_insert_with(|| SecondaryReport {
                    peer: peer.clone(),
                    zones: 0,
                    behind_count: 0,
                    behind: Vec::new(),
                    last_contact: 0,
                    lag_serials: 0,
                    lag_seconds: 0.0,
                });
                report.zones += 1;
                report.last_contact = report.last_contact.max(state.last_contact);
                let Some(publication) = publication else { continue };
                if publication.serial.is_newer_than(state.serial) {
                    let seconds = publication.at.elapsed().as_secs_f64();
                    report.behind_count += 1;
                    report.lag_serials = report.lag_serials.max(publication.serial.0.wrapping_sub(state.serial.0));
                    report.lag_seconds = report.lag_seconds.max(seconds);
                    if limit > 0 {
                        let zone = Name::from_wire(apex).map(|n| n.to_string()).unwrap_or_default();
                        report.behind.push(Behind { zone, holds: state.serial, current: publication.serial, seconds });
                    }
                }
            }
        }
        let mut reports: Vec<SecondaryReport> = reports.into_values().collect();
        for report in &mut reports {
            report.behind.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.zone.cmp(&b.zone)));
            report.behind.truncate(limit);
        }
        reports.sort_by(|a, b| a.peer.cmp(&b.peer));
        reports
    }

    /// Marks a peer as lagging behind the zone, or caught up.
    pub fn set_drifting(&self, apex: &Name, peer: &str, drifting: bool) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let peers = zones.entry(apex.to_lowercase().as_wire().to_vec()).or_default();
        let state = peers.entry(peer.to_string()).or_insert(PeerState {
            serial: Serial(0),
            last_contact: unix_now(),
            heard: tokio::time::Instant::now(),
            drifting,
        });
        state.drifting = drifting;
    }

    /// The peer says it holds `serial` (an IXFR request, an SOA answer).
    pub fn reported(&self, apex: &Name, peer: &str, serial: Serial) {
        self.set(apex, peer, serial);
    }

    /// We sent the peer the zone at `serial`.
    pub fn transferred(&self, apex: &Name, peer: &str, serial: Serial) {
        self.set(apex, peer, serial);
    }

    /// The peers of a zone and what they hold.
    pub fn of_zone(&self, apex: &Name) -> Vec<(String, PeerState)> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = zones
            .get(apex.to_lowercase().as_wire())
            .map(|peers| peers.iter().map(|(peer, state)| (peer.clone(), *state)).collect())
            .unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Forgets a deleted zone.
    pub fn forget(&self, apex: &Name) {
        self.zones.lock().unwrap_or_else(|e| e.into_inner()).remove(apex.to_lowercase().as_wire());
        self.publications.lock().unwrap_or_else(|e| e.into_inner()).remove(apex.to_lowercase().as_wire());
    }
}

/// Tells [`Peers`] of every zone version published, so that it can measure
/// propagation and lag.
pub struct PublishedTo(pub std::sync::Arc<Peers>);

impl ferrodns_zone::live::Observer for PublishedTo {
    fn published(&self, zone: &ferrodns_zone::Zone) {
        self.0.published(zone.apex(), zone.serial());
    }

    fn removed(&self, apex: &Name) {
        self.0.forget(apex);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_worst_zone_and_propagation_ends_with_the_last_secondary() {
        let peers = Peers::default();
        let (a, b) = (Name::parse("a.test.", None).unwrap(), Name::parse("b.test.", None).unwrap());
        peers.reported(&a, "192.0.2.1", Serial(5));
        peers.reported(&a, "192.0.2.2", Serial(5));
        peers.reported(&b, "192.0.2.1", Serial(9));
        peers.published(&a, Serial(8));
        peers.published(&b, Serial(9));
        let lags = peers.report(0);
        assert_eq!(
            lags.iter().map(|l| (l.peer.as_str(), l.lag_serials)).collect::<Vec<_>>(),
            [("192.0.2.1", 3), ("192.0.2.2", 3)]
        );
        let before = ferrodns_metrics::global().propagation.get_sample_count();
        peers.transferred(&a, "192.0.2.1", Serial(8));
        assert_eq!(ferrodns_metrics::global().propagation.get_sample_count(), before, "one secondary still lags");
        assert_eq!(peers.report(0)[0].lag_serials, 0);
        peers.transferred(&a, "192.0.2.2", Serial(8));
        assert_eq!(ferrodns_metrics::global().propagation.get_sample_count(), before + 1);
        peers.reported(&a, "192.0.2.2", Serial(8));
        assert_eq!(ferrodns_metrics::global().propagation.get_sample_count(), before + 1, "observed once per serial");
        assert!(peers.report(0).iter().all(|l| l.lag_serials == 0 && l.lag_seconds == 0.0));
    }
}
