//! Forward zones: which domain's queries go to which forwarders, and the
//! rule that the most specific zone answers, hosted or forward.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferrodns_proto::name;
use ferrodns_proto::Name;

use crate::upstream::Upstream;

/// A forwarder as configured: `ADDR` or `ADDR:PORT` (IPv6 in brackets
/// with a port: `[2001:db8::53]:5300`), port 53 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ForwarderAddr(pub SocketAddr);

impl ForwarderAddr {
    pub fn parse(text: &str) -> Result<ForwarderAddr, String> {
        let text = text.trim();
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(ForwarderAddr(address));
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => Ok(ForwarderAddr(SocketAddr::new(ip, 53))),
            Err(_) => Err(format!("{text:?} is not ADDR or ADDR:PORT (an IPv6 address with a port goes in brackets)")),
        }
    }
}

impl std::fmt::Display for ForwarderAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.port() == 53 {
            write!(f, "{}", self.0.ip())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The most forwarders one zone may name.
pub const MAX_FORWARDERS: usize = 16;

/// One forward zone: its apex and the forwarders that answer for it,
/// each with its measured round-trip time.
#[derive(Debug)]
pub struct ForwardZone {
    apex: Name,
    upstreams: Vec<Arc<Upstream>>,
}

impl ForwardZone {
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn forwarders(&self) -> impl Iterator<Item = ForwarderAddr> + '_ {
        self.upstreams.iter().map(|upstream| upstream.address())
    }
}

/// Every forward zone, by apex. Swapped whole when the set changes; an
/// upstream's RTT is kept across swaps when its zone keeps it.
#[derive(Debug, Default)]
pub struct ForwardTable {
    zones: HashMap<Box<[u8]>, Arc<ForwardZone>>,
    /// The most labels any apex has, to start the suffix walk there.
    max_labels: usize,
}

impl ForwardTable {
    /// A table of `zones` (apex, forwarders), reusing the upstream state of
    /// `previous` for forwarders it already had.
    pub fn new(zones: &[(Name, Vec<ForwarderAddr>)], previous: Option<&ForwardTable>) -> ForwardTable {
        let mut table = ForwardTable::default();
        for (apex, forwarders) in zones {
            let apex = apex.to_lowercase();
            let kept = previous.and_then(|p| p.zones.get(apex.as_wire()));
            let upstreams = forwarders
                .iter()
                .take(MAX_FORWARDERS)
                .map(|address| {
                    kept.and_then(|zone| zone.upstreams.iter().find(|u| u.address() == *address).cloned())
                        .unwrap_or_else(|| Arc::new(Upstream::new(*address)))
                })
                .collect();
            table.max_labels = table.max_labels.max(name::label_count(apex.as_wire()));
            table.zones.insert(key(apex.as_wire()), Arc::new(ForwardZone { apex, upstreams }));
        }
        table
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn zones(&self) -> impl Iterator<Item = &Arc<ForwardZone>> {
        self.zones.values()
    }

    /// The deepest forward zone holding `name_lower` whose apex is longer
    /// than `deeper_than` octets: the forward zone that answers for the
    /// name when the deepest hosted zone holding it has an apex of that
    /// length (0 when none does). Two zones holding one name are nested, so
    /// the longer apex is the more specific.
    pub fn find(&self, name_lower: &[u8], deeper_than: usize) -> Option<&Arc<ForwardZone>> {
        if self.zones.is_empty() {
            return None;
        }
        let mut starts = [0u8; 128];
        let labels = name::label_starts(name_lower, &mut starts);
        // Suffixes from the longest a zone could have down to the root.
        let first = labels.saturating_sub(self.max_labels);
        let root = std::iter::once(name_lower.len() - 1);
        for start in starts[first..labels].iter().map(|&s| s as usize).chain(root) {
            let suffix = &name_lower[start..];
            if suffix.len() <= deeper_than {
                return None;
            }
            if let Some(zone) = self.zones.get(suffix) {
                return Some(zone);
            }
        }
        None
    }

    /// The forward zone with this apex (lowercase wire).
    pub fn get(&self, apex_lower: &[u8]) -> Option<&Arc<ForwardZone>> {
        self.zones.get(apex_lower)
    }
}

fn key(wire: &[u8]) -> Box<[u8]> {
    wire.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text, None).unwrap()
    }

    fn table(zones: &[&str]) -> ForwardTable {
        let forwarder = vec![ForwarderAddr::parse("192.0.2.53").unwrap()];
        let zones: Vec<(Name, Vec<ForwarderAddr>)> = zones.iter().map(|z| (name(z), forwarder.clone())).collect();
        ForwardTable::new(&zones, None)
    }

    #[test]
    fn forwarders_parse_with_and_without_ports() {
        assert_eq!(ForwarderAddr::parse("192.0.2.53").unwrap().0, "192.0.2.53:53".parse().unwrap());
        assert_eq!(ForwarderAddr::parse("192.0.2.54:5300").unwrap().0, "192.0.2.54:5300".parse().unwrap());
        assert_eq!(ForwarderAddr::parse("2001:db8::53").unwrap().0, "[2001:db8::53]:53".parse().unwrap());
        assert_eq!(ForwarderAddr::parse("[2001:db8::53]:5300").unwrap().0, "[2001:db8::53]:5300".parse().unwrap());
        assert!(ForwarderAddr::parse("ns1.example").is_err());
        assert!(ForwarderAddr::parse("192.0.2.1:99999").is_err());
        assert_eq!(ForwarderAddr::parse("192.0.2.54:5300").unwrap().to_string(), "192.0.2.54:5300");
        assert_eq!(ForwarderAddr::parse("192.0.2.53").unwrap().to_string(), "192.0.2.53");
    }

    #[test]
    fn the_most_specific_zone_answers() {
        let t = table(&["corp.example.", "lab.corp.example.", "."]);
        let apex = |n: &str, deeper: usize| t.find(name(n).as_wire(), deeper).map(|z| z.apex().to_string());
        assert_eq!(apex("www.corp.example.", 0).as_deref(), Some("corp.example."));
        assert_eq!(apex("x.lab.corp.example.", 0).as_deref(), Some("lab.corp.example."));
        assert_eq!(apex("www.other.test.", 0).as_deref(), Some("."));
        // A hosted corp.example. (14 octets) inside the root forward zone
        // answers for its names, but not for lab.corp.example.'s.
        let hosted = name("corp.example.").as_wire().len();
        assert_eq!(apex("www.corp.example.", hosted), None);
        assert_eq!(apex("x.lab.corp.example.", hosted).as_deref(), Some("lab.corp.example."));
        // A hosted zone inside a forward zone answers from its data.
        let hosted = name("h.lab.corp.example.").as_wire().len();
        assert_eq!(apex("a.h.lab.corp.example.", hosted), None);
        assert!(table(&[]).find(name("www.corp.example.").as_wire(), 0).is_none());
    }

    #[test]
    fn upstream_state_survives_a_new_table() {
        let old = table(&["corp.example."]);
        let upstream = old.zones().next().unwrap().upstreams()[0].clone();
        let forwarder = vec![ForwarderAddr::parse("192.0.2.53").unwrap()];
        let new = ForwardTable::new(&[(name("CORP.example."), forwarder)], Some(&old));
        assert!(Arc::ptr_eq(&new.zones().next().unwrap().upstreams()[0], &upstream));
    }
}
