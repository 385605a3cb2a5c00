//! Forward zones: which domain's queries go to which forwarders, and the
//! rule that the most specific zone answers, hosted or forward.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferrodns_proto::name;
use ferrodns_proto::Name;

use crate::upstream::Upstream;

/// A forwarder as configured: `ADDR` or `ADDR:PORT` (IPv6 in brackets
/// with a port: `[2001:db8::53]:5300`), port 53 by default; or over TLS
/// (RFC 7858), `tls://ADDR[:PORT]#NAME`, port 853 by default, its
/// certificate checked against NAME.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForwarderAddr {
    pub address: SocketAddr,
    /// The name the forwarder's certificate must carry, for DNS over TLS.
    pub tls_name: Option<Box<str>>,
}

impl ForwarderAddr {
    pub fn plain(address: SocketAddr) -> ForwarderAddr {
        ForwarderAddr { address, tls_name: None }
    }

    pub fn parse(text: &str) -> Result<ForwarderAddr, String> {
        let text = text.trim();
        let (rest, tls_name, port) = match text.strip_prefix("tls://") {
            Some(rest) => {
                let (rest, name) = rest.split_once('#').ok_or_else(|| {
                    format!("{text:?}: a TLS forwarder is tls://ADDR[:PORT]#NAME, NAME what its certificate names")
                })?;
                let name = name.trim().trim_end_matches('.');
                if rustls_pki_types::ServerName::try_from(name).is_err() {
                    return Err(format!("{text:?}: {name:?} is not a name a certificate can carry"));
                }
                (rest, Some(Box::<str>::from(name)), 853)
            }
            None => (text, None, 53),
        };
        let address = match rest.parse::<SocketAddr>() {
            Ok(address) => address,
            Err(_) => match rest.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port),
                Err(_) => {
                    return Err(format!(
                        "{text:?} is not ADDR, ADDR:PORT or tls://ADDR[:PORT]#NAME (an IPv6 address with a port goes in brackets)"
                    ))
                }
            },
        };
        Ok(ForwarderAddr { address, tls_name })
    }
}

impl std::fmt::Display for ForwarderAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls_name {
            Some(name) if self.address.port() == 853 => write!(f, "tls://{}#{name}", bracketed(self.address.ip())),
            Some(name) => write!(f, "tls://{}#{name}", self.address),
            None if self.address.port() == 53 => write!(f, "{}", self.address.ip()),
            None => write!(f, "{}", self.address),
        }
    }
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
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

    pub fn forwarders(&self) -> impl Iterator<Item = &ForwarderAddr> + '_ {
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
                    kept.and_then(|zone| zone.upstreams.iter().find(|u| u.address() == address).cloned())
                        .unwrap_or_else(|| Arc::new(Upstream::new(address.clone())))
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
        let address = |text: &str| ForwarderAddr::parse(text).unwrap().address;
        assert_eq!(address("192.0.2.53"), "192.0.2.53:53".parse().unwrap());
        assert_eq!(address("192.0.2.54:5300"), "192.0.2.54:5300".parse().unwrap());
        assert_eq!(address("2001:db8::53"), "[2001:db8::53]:53".parse().unwrap());
        assert_eq!(address("[2001:db8::53]:5300"), "[2001:db8::53]:5300".parse().unwrap());
        let tls = ForwarderAddr::parse("tls://192.0.2.53#dns.example").unwrap();
        assert_eq!((tls.address, tls.tls_name.as_deref()), ("192.0.2.53:853".parse().unwrap(), Some("dns.example")));
        assert_eq!(tls.to_string(), "tls://192.0.2.53#dns.example");
        assert_eq!(
            ForwarderAddr::parse("tls://[2001:db8::53]:8853#dns.example").unwrap().to_string(),
            "tls://[2001:db8::53]:8853#dns.example"
        );
        assert!(ForwarderAddr::parse("tls://192.0.2.53").unwrap_err().contains("#NAME"));
        assert!(ForwarderAddr::parse("tls://192.0.2.53#").is_err());
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
