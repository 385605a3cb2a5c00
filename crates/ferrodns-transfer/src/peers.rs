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
}

impl Peers {
    fn set(&self, apex: &Name, peer: &str, serial: Serial) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let peers = zones.entry(apex.to_lowercase().as_wire().to_vec()).or_default();
        let drifting = peers.get(peer).is_some_and(|s| s.drifting && s.serial == serial);
        let heard = tokio::time::Instant::now();
        peers.insert(peer.to_string(), PeerState { serial, last_contact: unix_now(), heard, drifting });
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
    }
}
