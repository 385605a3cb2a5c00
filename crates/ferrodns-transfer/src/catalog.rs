//! The catalog zone (RFC 9432, version 2) that lists every hosted zone, so
//! that secondaries which consume catalogs (BIND, Knot, ferrodns) add and
//! drop member zones by themselves.
//!
//! ```text
//!   catalog.ferrodns.invalid.                SOA invalid. invalid. <serial> …
//!   catalog.ferrodns.invalid.                NS  invalid.
//!   version.catalog.ferrodns.invalid.        TXT "2"
//!   <unique-id>.zones.catalog.ferrodns.invalid. PTR example.com.
//! ```
//!
//! A member's unique id is the zone's `catalog_id`, made when the zone is
//! created and kept while it exists; a zone deleted and created again gets a
//! new one, which tells consumers to drop their old copy (RFC 9432 §5.4).
//! The catalog is rebuilt and published whole on each membership change; its
//! serial is the larger of the old serial plus one and the Unix time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_zone::live::LiveZones;
use ferrodns_zone::{Zone, ZoneBuilder};

/// The default catalog name.
pub const DEFAULT_CATALOG: &str = "catalog.ferrodns.invalid.";

/// Keeps the catalog zone in step with the hosted zones.
pub struct Catalog {
    name: Name,
    live: Arc<LiveZones>,
    state: Mutex<State>,
}

struct State {
    /// Lowercase member apex → unique id.
    members: BTreeMap<Name, String>,
    serial: Serial,
}

fn unix_seconds() -> u32 {
    crate::primary::unix_now() as u32
}

impl Catalog {
    /// A catalog named `name` over `members` (apex, unique id), published at once.
    pub fn start(name: Name, live: Arc<LiveZones>, members: impl IntoIterator<Item = (Name, String)>) -> Arc<Catalog> {
        let members = members.into_iter().map(|(apex, id)| (apex.to_lowercase(), id)).collect();
        let catalog = Arc::new(Catalog {
            name: name.to_lowercase(),
            live,
            state: Mutex::new(State { members, serial: Serial(unix_seconds().wrapping_sub(1)) }),
        });
        catalog.publish();
        catalog
    }

    /// The catalog's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Adds (or re-identifies) a member.
    pub fn add(&self, apex: &Name, unique_id: &str) {
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.members.insert(apex.to_lowercase(), unique_id.to_string()).as_deref() != Some(unique_id)
        };
        if changed {
            self.publish();
        }
    }

    /// Removes a member.
    pub fn remove(&self, apex: &Name) {
        let changed =
            self.state.lock().unwrap_or_else(|e| e.into_inner()).members.remove(&apex.to_lowercase()).is_some();
        if changed {
            self.publish();
        }
    }

    fn publish(&self) {
        let zone = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Serial(unix_seconds());
            let next = state.serial.plus(1);
            state.serial = if now.is_newer_than(next) { now } else { next };
            build(&self.name, state.serial, &state.members)
        };
        match zone {
            Ok(zone) => self.live.publish_zone(zone),
            Err(errors) => tracing::error!(catalog = %self.name, ?errors, "catalog zone does not build"),
        }
    }
}

/// A unique id for a zone served from a file (stable for its name).
pub fn file_zone_id(apex: &Name) -> String {
    // FNV-1a over the lowercase name: stable across restarts and builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in apex.to_lowercase().as_wire() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("f{hash:016x}")
}

/// Builds the catalog zone.
pub fn build(
    name: &Name,
    serial: Serial,
    members: &BTreeMap<Name, String>,
) -> Result<Zone, Vec<ferrodns_zone::ZoneError>> {
    let invalid = Name::parse("invalid.", None).expect("valid literal");
    let mut builder = ZoneBuilder::new(name.clone());
    let mut soa = Vec::new();
    soa.extend_from_slice(invalid.as_wire());
    soa.extend_from_slice(invalid.as_wire());
    soa.extend_from_slice(&serial.0.to_be_bytes());
    for timer in [60u32, 30, 2_419_200, 0] {
        soa.extend_from_slice(&timer.to_be_bytes());
    }
    builder.add(name.clone(), RecordType::SOA, 0, &soa, None);
    builder.add(name.clone(), RecordType::NS, 0, invalid.as_wire(), None);
    let version = Name::parse("version", Some(name)).expect("short label");
    builder.add(version, RecordType::TXT, 0, b"\x012", None);
    for (apex, id) in members {
        let Ok(owner) = Name::parse(&format!("{id}.zones"), Some(name)) else { continue };
        builder.add(owner, RecordType::PTR, 0, apex.as_wire(), None);
    }
    builder.finish().map(|(zone, _)| zone)
}
