//! Per-client shares of a listener's connections: DNS over TCP and the
//! HTTP API both close, at accept, a connection from a client that already
//! holds its share, so that one client cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The client a connection counts against: an IPv4 address (also when
/// mapped into IPv6), or the /64 of an IPv6 address, since one host holds
/// a whole /64.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

/// Connections open per client.
#[derive(Default)]
pub struct Clients(Mutex<HashMap<IpAddr, usize>>);

impl Clients {
    /// Counts a new connection from `client`, unless it holds `limit`.
    pub fn enter(self: &Arc<Self>, client: IpAddr, limit: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { clients: self.clone(), client })
    }
}

/// One open connection of a client; dropping it frees the share.
pub struct ClientSlot {
    clients: Arc<Clients>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_and_ipv6_prefixes() {
        let v6 = |text: &str| client_of(text.parse().unwrap());
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:bbbb::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), v6("192.0.2.1"));
        let clients = Arc::new(Clients::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = clients.enter(ip, 2).unwrap();
        let _second = clients.enter(ip, 2).unwrap();
        assert!(clients.enter(ip, 2).is_none());
        drop(first);
        assert!(clients.enter(ip, 2).is_some());
    }
}
