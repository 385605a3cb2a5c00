//! The catalog zone (RFC 9432, version 2) that lists every hosted zone, so
//! that secondaries which consume catalogs (BIND, Knot, ferrodns) add and
//! drop member zones by themselves.
//!
//! ```text
//!   catalog.ferrodns.invalid.                SOA invalid. invalid. <serial> …
//!   catalog.ferrodns.invalid.                NS  invalid.
//!   version.catalog.ferrodns.invalid.        TXT "2"
//!   <unique-id>.zones.catalog.ferrodns.invalid. PTR example.com.
//!   <id>.forward.ext.catalog.ferrodns.invalid. TXT "corp.example." "192.0.2.53" …
//! ```
//!
//! Forward zones are no members (a secondary could not transfer them): they
//! ride as RFC 9432 custom properties under `ext`, which BIND and Knot
//! ignore, one TXT RRset a zone holding its apex and then its forwarders,
//! so that a ferrodns secondary forwards what its primary forwards.
//!
//! A member's unique id is the zone's `catalog_id`, made when the zone is
//! created and kept while it exists; a zone deleted and created again gets a
//! new one, which tells consumers to drop their old copy (RFC 9432 §5.4).
//!
//! What the catalog holds and under which serial is decided in the database
//! (see `ferrodns_api::catalog`): every node publishes the same members under
//! the same serial, so a consumer may transfer it from any of them. This type
//! only builds and publishes what it is given, adding the zones this node
//! serves from files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_zone::live::LiveZones;
use ferrodns_zone::{Zone, ZoneBuilder};
use sha2::{Digest, Sha256};

/// The default catalog name.
pub const DEFAULT_CATALOG: &str = "catalog.ferrodns.invalid.";

/// The catalog zone this node serves.
pub struct Catalog {
    name: Name,
    live: Arc<LiveZones>,
    /// Zones served from `--zone-file`s (apex → unique id), as of the last
    /// load or reload of the files.
    file_members: Mutex<BTreeMap<Name, String>>,
    /// The serial and member digest last published.
    published: Mutex<Option<(Serial, String)>>,
    /// Held while one task reads and writes the catalog state, so that a
    /// node does not race itself.
    pub sync: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// A catalog named `name`; nothing is published until [`Catalog::publish`].
    pub fn new(name: Name, live: Arc<LiveZones>, file_members: impl IntoIterator<Item = (Name, String)>) -> Catalog {
        Catalog {
            name: name.to_lowercase(),
            live,
            file_members: Mutex::new(file_members.into_iter().map(|(apex, id)| (apex.to_lowercase(), id)).collect()),
            published: Mutex::new(None),
            sync: tokio::sync::Mutex::new(()),
        }
    }

    /// The catalog's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The serial and member digest last published, if any.
    pub fn published(&self) -> Option<(Serial, String)> {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the zone-file members (after a reload); true if they changed.
    pub fn set_file_members(&self, members: impl IntoIterator<Item = (Name, String)>) -> bool {
        let members: BTreeMap<Name, String> = members.into_iter().map(|(apex, id)| (apex.to_lowercase(), id)).collect();
        let mut current = self.file_members.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *current != members;
        *current = members;
        changed
    }

    /// Publishes `members` (apex, unique id), the file zones and the
    /// forward zones under `serial`.
    pub fn publish(&self, serial: Serial, digest: &str, members: &[(Name, String)], forwards: &[ForwardEntry]) {
        let mut all = self.file_members.lock().unwrap_or_else(|e| e.into_inner()).clone();
        all.extend(members.iter().map(|(apex, id)| (apex.to_lowercase(), id.clone())));
        match build(&self.name, serial, &all, forwards) {
            Ok(zone) => {
                self.live.publish_zone(zone);
                *self.published.lock().unwrap_or_else(|e| e.into_inner()) = Some((serial, digest.to_string()));
            }
            Err(errors) => tracing::error!(catalog = %self.name, ?errors, "catalog zone does not build"),
        }
    }
}

/// A forward zone as the catalog carries it: its apex and its forwarders
/// as text (`ADDR`, `ADDR:PORT`, `tls://ADDR[:PORT]#NAME`).
pub type ForwardEntry = (Name, Vec<String>);

/// A digest of a member list (apex, unique id) and the forward zones, the
/// same on every node for the same members and zones in any order.
pub fn digest(members: &[(Name, String)], forwards: &[ForwardEntry]) -> String {
    let mut sorted: Vec<(Name, &str)> = members.iter().map(|(apex, id)| (apex.to_lowercase(), id.as_str())).collect();
    sorted.sort();
    let mut hash = Sha256::new();
    for (apex, id) in sorted {
        hash.update(apex.as_wire());
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    let mut forwards: Vec<(Name, &[String])> =
        forwards.iter().map(|(apex, list)| (apex.to_lowercase(), list.as_slice())).collect();
    forwards.sort();
    for (apex, list) in forwards {
        hash.update([1]);
        hash.update(apex.as_wire());
        for forwarder in list {
            hash.update(forwarder.as_bytes());
            hash.update([0]);
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
    forwards: &[ForwardEntry],
) -> Result<Zone, Vec<ferrodns_zone::ZoneError>> {
    let invalid = Name::parse("invalid.", None).expect("valid literal");
    let mut builder = ZoneBuilder::new(name.clone());
    let soa = ferrodns_proto::rdata::soa_rdata(&invalid, &invalid, serial, [60, 30, 2_419_200, 0]);
    builder.add(name.clone(), RecordType::SOA, 0, &soa, None);
    builder.add(name.clone(), RecordType::NS, 0, invalid.as_wire(), None);
    let version = Name::parse("version", Some(name)).expect("short label");
    builder.add(version, RecordType::TXT, 0, b"\x012", None);
    for (apex, id) in members {
        let Ok(owner) = Name::parse(&format!("{id}.zones"), Some(name)) else { continue };
        builder.add(owner, RecordType::PTR, 0, apex.as_wire(), None);
    }
    for (apex, forwarders) in forwards {
        let Ok(owner) = Name::parse(&format!("{}.forward.ext", file_zone_id(apex)), Some(name)) else { continue };
        let mut rdata = Vec::new();
        for text in std::iter::once(apex.to_string()).chain(forwarders.iter().cloned()) {
            let bytes = &text.as_bytes()[..text.len().min(255)];
            rdata.push(bytes.len() as u8);
            rdata.extend_from_slice(bytes);
        }
        builder.add(owner, RecordType::TXT, 0, &rdata, None);
    }
    builder.finish().map(|(zone, _)| zone)
}

/// The forward zones a catalog carries (see the module docs), as
/// (apex, forwarders as text); entries that do not read are left out.
pub fn forward_zones(catalog: &Zone) -> Vec<ForwardEntry> {
    let mut zones = Vec::new();
    let Ok(forward) = Name::parse("forward.ext", Some(catalog.apex())) else { return zones };
    let forward = forward.to_lowercase();
    for node in catalog.nodes() {
        let Ok(owner) = Name::from_wire(node.name()) else { continue };
        if owner.to_lowercase().parent().as_ref() != Some(&forward) {
            continue;
        }
        let Some(txt) = node.rrset(RecordType::TXT) else { continue };
        let mut strings = Vec::new();
        let rdata = txt.first();
        let mut at = 0;
        while at < rdata.len() {
            let len = rdata[at] as usize;
            let Some(bytes) = rdata.get(at + 1..at + 1 + len) else { break };
            strings.push(String::from_utf8_lossy(bytes).to_string());
            at += 1 + len;
        }
        let mut strings = strings.into_iter();
        let Some(Ok(apex)) = strings.next().map(|text| Name::parse(&text, None)) else { continue };
        zones.push((apex.to_lowercase(), strings.collect()));
    }
    zones
}
