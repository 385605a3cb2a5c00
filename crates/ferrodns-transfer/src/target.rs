//! Peers given by address or by name: `192.0.2.1`, `[2001:db8::1]:5353`,
//! `ns1.example.net`, `control.dns.svc:5353`. Names are resolved each time the
//! peer is used, so a Kubernetes headless Service that lists several pods,
//! or an address that changes, is followed without a restart.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A peer: `host:port`, port 53 when omitted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(String);

impl Target {
    /// Checks and normalizes a peer.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Target(address.to_string()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Target(SocketAddr::new(ip, 53).to_string()));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("bad port in {text:?}"))?),
            None => (text, 53),
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!("{text:?} is not ADDR, ADDR:PORT, NAME or NAME:PORT"));
        }
        Ok(Target(format!("{host}:{port}")))
    }

    /// The address, when the peer was given as one.
    pub fn address(&self) -> Option<SocketAddr> {
        self.0.parse().ok()
    }

    /// Every address the peer stands for now (none when a name does not resolve).
    pub async fn resolve(&self) -> Vec<SocketAddr> {
        if let Some(address) = self.address() {
            return vec![address];
        }
        match tokio::net::lookup_host(self.0.as_str()).await {
            Ok(addresses) => addresses.collect(),
            Err(e) => {
                tracing::warn!(peer = %self.0, error = %e, "cannot resolve");
                Vec::new()
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        assert_eq!(Target::parse("192.0.2.1").unwrap().to_string(), "192.0.2.1:53");
        assert_eq!(Target::parse("[2001:db8::1]:5353").unwrap().to_string(), "[2001:db8::1]:5353");
        assert_eq!(Target::parse("2001:db8::1").unwrap().to_string(), "[2001:db8::1]:53");
        assert_eq!(Target::parse("control.dns.svc:5353").unwrap().to_string(), "control.dns.svc:5353");
        assert_eq!(Target::parse("ns1.example.net").unwrap().to_string(), "ns1.example.net:53");
        assert!(Target::parse("bad name:53").is_err());
        assert!(Target::parse("host:99999").is_err());
    }
}
