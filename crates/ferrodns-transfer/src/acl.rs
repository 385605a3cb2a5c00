//! Who may transfer zones: configured TSIG keys, or configured networks.

use std::net::IpAddr;

use ferrodns_proto::tsig::Key;
use ferrodns_proto::Name;

/// An IPv4 or IPv6 network, `192.0.2.0/24` or `2001:db8::/32`; a bare
/// address is a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| format!("{text:?} is not an address or CIDR"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("bad prefix in {text:?}"))?
            }
            None => max,
        };
        Ok(Network { address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The transfer policy: a request passes with a verified TSIG key (one
/// configured at start, or one made through the API), or from an address
/// inside `networks`.
#[derive(Debug, Default)]
pub struct Access {
    pub networks: Vec<Network>,
    /// Keys from the configuration.
    pub keys: Vec<Key>,
    /// Keys from the API (`/v1/tsigkeys`), replaced whole on each change.
    api_keys: arc_swap::ArcSwap<Vec<Key>>,
}

impl Clone for Access {
    fn clone(&self) -> Access {
        Access {
            networks: self.networks.clone(),
            keys: self.keys.clone(),
            api_keys: arc_swap::ArcSwap::new(self.api_keys.load_full()),
        }
    }
}

impl Access {
    /// The key named `name`, configured or from the API.
    pub fn key(&self, name: &Name) -> Option<Key> {
        self.keys
            .iter()
            .find(|k| k.name == *name)
            .cloned()
            .or_else(|| self.api_keys.load().iter().find(|k| k.name == *name).cloned())
    }

    /// True if `name` is a configured key (which the API cannot replace).
    pub fn is_configured(&self, name: &Name) -> bool {
        self.keys.iter().any(|k| k.name == *name)
    }

    /// Replaces the keys made through the API.
    pub fn set_api_keys(&self, keys: Vec<Key>) {
        self.api_keys.store(std::sync::Arc::new(keys));
    }

    /// True if `peer` is inside an allowed network.
    pub fn allows_address(&self, peer: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match() {
        let net = Network::parse("192.0.2.0/24").unwrap();
        assert!(net.contains("192.0.2.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        assert!(Network::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(Network::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
    }
}
