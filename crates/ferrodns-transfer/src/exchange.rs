//! Queries over UDP that share their sockets: one socket per address family
//! for every SOA query or NOTIFY a component sends, one receive buffer for
//! each, and replies matched to their query by message id and source
//! address. A secondary following 100,000 zones, or a primary announcing
//! them, holds two descriptors and two buffers for it, not one of each per
//! query in flight.
//!
//! Message ids come from the OS's randomness and are never reused while a
//! query to the same peer waits. A shared socket keeps one source port, so
//! a forged reply has to guess only the id; what it could then claim is
//! bounded: a serial (which only starts a transfer over TCP from the real
//! primary, checked whole) or an acknowledgement (which only ends NOTIFY's
//! retries; the drift checker finds a secondary left behind). Where TSIG is
//! configured the caller checks it on every reply, which no forger passes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, OnceCell};

type Waiting = Mutex<HashMap<(u16, SocketAddr), oneshot::Sender<Vec<u8>>>>;

/// The socket of one address family, the queries waiting on it, and the
/// task that receives for them.
struct Family {
    socket: Arc<UdpSocket>,
    waiting: Arc<Waiting>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for Family {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// Shared UDP sockets for queries; see the module docs. Opened at first use.
#[derive(Default)]
pub struct UdpExchange {
    v4: OnceCell<Family>,
    v6: OnceCell<Family>,
}

/// Why an exchange got no reply.
#[derive(Debug)]
pub enum ExchangeError {
    Network(String),
    Timeout,
}

impl UdpExchange {
    /// Sends the message `make` builds for a fresh id to `peer`, and waits
    /// up to `wait` for the reply from `peer` with that id. `make` also
    /// returns what the caller needs to check the reply (a TSIG signer).
    pub async fn exchange<T>(
        &self,
        peer: SocketAddr,
        wait: Duration,
        make: impl FnOnce(u16) -> (Vec<u8>, T),
    ) -> Result<(Vec<u8>, T), ExchangeError> {
        let family = self.family(peer.is_ipv4()).await?;
        let (reply, pending) = oneshot::channel();
        let id = loop {
            let id = random_id();
            let mut waiting = family.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let std::collections::hash_map::Entry::Vacant(entry) = waiting.entry((id, peer)) {
                entry.insert(reply);
                break id;
            }
        };
        // Whatever happens next (a reply, a timeout, the caller giving up),
        // the id is no longer waited for.
        let _waiting = Forget { waiting: &family.waiting, key: (id, peer) };
        let (message, check) = make(id);
        family.socket.send_to(&message, peer).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
        match tokio::time::timeout(wait, pending).await {
            Ok(Ok(reply)) => Ok((reply, check)),
            Ok(Err(_)) => Err(ExchangeError::Network("the receiving task stopped".to_string())),
            Err(_) => Err(ExchangeError::Timeout),
        }
    }

    async fn family(&self, ipv4: bool) -> Result<&Family, ExchangeError> {
        let (cell, bind) = if ipv4 { (&self.v4, "0.0.0.0:0") } else { (&self.v6, "[::]:0") };
        cell.get_or_try_init(|| async {
            let socket = UdpSocket::bind(bind).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
            let (socket, waiting) = (Arc::new(socket), Arc::new(Waiting::default()));
            let receiver = tokio::spawn(receive(socket.clone(), waiting.clone()));
            Ok(Family { socket, waiting, receiver })
        })
        .await
    }

    /// Queries waiting for their reply (for tests).
    pub fn waiting(&self) -> usize {
        [&self.v4, &self.v6]
            .iter()
            .filter_map(|cell| cell.get())
            .map(|family| family.waiting.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Removes a waiting query's entry when dropped.
struct Forget<'a> {
    waiting: &'a Waiting,
    key: (u16, SocketAddr),
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

/// Hands each reply to the query waiting for its id from its sender, and
/// drops the rest.
async fn receive(socket: Arc<UdpSocket>, waiting: Arc<Waiting>) {
    let mut buffer = vec![0u8; 65_535];
    loop {
        match socket.recv_from(&mut buffer).await {
            // A reply has a header; its QR bit and the rest are the caller's to check.
            Ok((len, from)) if len >= 12 => {
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                let waiter = waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&(id, from));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(buffer[..len].to_vec());
                }
            }
            Ok(_) => {}
            // An ICMP error reported on the socket, say: nothing to hand over.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A message id from the OS's randomness (a clock-derived one if that fails).
pub fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        return (nanos ^ (nanos >> 16)) as u16;
    }
    u16::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many queries in flight to peers that answer some and ignore others:
    /// each reply reaches its own query, the silent ones time out, and one
    /// socket carried them all.
    #[tokio::test]
    async fn replies_reach_their_queries_over_one_socket() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = peer.local_addr().unwrap();
        // Echoes every even-numbered query (its payload's first octet after
        // the header), in reverse order of arrival.
        let echo = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buffer = [0u8; 512];
            peer.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            while let Ok((len, from)) = peer.recv_from(&mut buffer) {
                got.push((buffer[..len].to_vec(), from));
                if got.len() == 40 {
                    break;
                }
            }
            for (message, from) in got.iter().rev() {
                if message[12] % 2 == 0 {
                    peer.send_to(message, from).unwrap();
                }
            }
        });
        let exchange = Arc::new(UdpExchange::default());
        let queries = (0..40u8).map(|n| {
            let exchange = exchange.clone();
            tokio::spawn(async move {
                let made = |id: u16| {
                    let mut message = id.to_be_bytes().to_vec();
                    message.extend_from_slice(&[0; 10]);
                    message.push(n);
                    (message, n)
                };
                exchange.exchange(address, Duration::from_secs(2), made).await
            })
        });
        let results: Vec<_> = futures_collect(queries.collect()).await;
        echo.join().unwrap();
        for (n, result) in results.into_iter().enumerate() {
            match result {
                Ok((reply, check)) => {
                    assert_eq!((n % 2, reply[12] as usize, check as usize), (0, n, n));
                }
                Err(ExchangeError::Timeout) => assert_eq!(n % 2, 1),
                Err(e) => panic!("query {n}: {e:?}"),
            }
        }
        assert_eq!(exchange.waiting(), 0, "every finished query forgot its id");
    }

    async fn futures_collect<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
