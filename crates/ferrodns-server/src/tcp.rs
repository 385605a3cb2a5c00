//! DNS over TCP (RFC 7766): 2-octet length framing, several queries per
//! connection answered in order, and bounds on what a client can hold: a
//! cap on connections with a share per client (an IPv4 address, an IPv6
//! /64), an idle timeout that shortens as the slots run out (§6.2.3), and
//! the same timeout on every write, so a client that stops reading loses
//! its slot.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ferrodns_engine::{
    refuse_prohibited, respond_parsed_with, respond_unsigned, unreadable, Outcome, ServerIdentity, Transport,
};
use ferrodns_forward::wire::set_recursion_available;
use ferrodns_forward::Recursion;
use ferrodns_metrics::dns::{Transport as Counted, WorkerStats};
use ferrodns_proto::{parse_query_into, Query};

use crate::cookies::{self, CookieSecrets};
use crate::dnstap::{Entry, Protocol, QueryLog};
use crate::shares::{client_of, Clients};
use crate::ControlHandler;
use ferrodns_zone::ZoneSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The transport this module's counts go under.
const TCP: Counted = Counted::Tcp;

/// TCP settings.
#[derive(Clone, Copy, Debug)]
pub struct TcpSettings {
    /// Close a connection with no complete query for this long (RFC 7766
    /// §6.2.3), or whose reply cannot be written for this long.
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones are closed at accept.
    pub max_connections: usize,
    /// Most connections from one client (an IPv4 address, an IPv6 /64).
    pub max_per_client: usize,
    /// Count queries, responses and answer times for `/metrics`.
    pub metrics: bool,
}

impl Default for TcpSettings {
    fn default() -> TcpSettings {
        TcpSettings { idle_timeout: Duration::from_secs(10), max_connections: 512, max_per_client: 64, metrics: true }
    }
}

impl TcpSettings {
    /// The idle timeout with `in_use` of the slots taken: the full timeout
    /// up to half of them, then shorter, down to a tenth of it when all are
    /// taken, so that idle clients make room for new ones (RFC 7766 §6.2.3).
    pub fn idle_timeout_at(&self, in_use: usize) -> Duration {
        let max = self.max_connections.max(1);
        if in_use * 2 <= max {
            return self.idle_timeout;
        }
        let free = max.saturating_sub(in_use);
        let shortest = self.idle_timeout / 10;
        shortest + (self.idle_timeout - shortest).mul_f64(free as f64 * 2.0 / max as f64)
    }
}

/// Binds a TCP listener with SO_REUSEADDR, as servers restart often, and
/// IP_FREEBIND.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // An address this host does not hold yet (a VIP) binds, as for UDP.
    crate::udp::set_freebind(&socket, addr)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What a TCP listener answers with, besides its zones and settings.
pub struct Extras {
    pub cookies: Option<Arc<CookieSecrets>>,
    pub control: Option<Arc<dyn ControlHandler>>,
    pub recursion: Option<Arc<Recursion>>,
    pub query_log: Option<Arc<QueryLog>>,
    pub identity: Arc<ServerIdentity>,
}

/// Accepts and serves connections until `shutdown` turns true.
pub async fn serve(
    listener: std::net::TcpListener,
    zones: Arc<ArcSwap<ZoneSet>>,
    settings: TcpSettings,
    extras: Extras,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let Extras { cookies, control, recursion, query_log, identity } = extras;
    let listener = TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let clients = Arc::new(Clients::default());
    let stats = settings.metrics.then(|| ferrodns_metrics::global().dns.shared());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(share) = clients.enter(client_of(peer.ip()), settings.max_per_client.max(1)) else {
            tracing::debug!(%peer, "TCP connections from this client at its limit; closing");
            drop(stream);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "TCP connection limit reached; closing");
            drop(stream);
            continue;
        };
        let zones = zones.clone();
        let shutdown = shutdown.clone();
        let control = control.clone();
        let slots = slots.clone();
        let cookies = cookies.clone();
        let recursion = recursion.clone();
        let stats = stats.clone();
        let query_log = query_log.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let served = Served { zones, settings, cookies, control, recursion, stats, query_log, identity };
            if let Err(e) = connection(stream, peer, &served, &slots, shutdown).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
            drop(permit);
            drop(share);
        });
    }
}

/// What every connection of a listener shares.
struct Served {
    zones: Arc<ArcSwap<ZoneSet>>,
    settings: TcpSettings,
    cookies: Option<Arc<CookieSecrets>>,
    control: Option<Arc<dyn ControlHandler>>,
    recursion: Option<Arc<Recursion>>,
    stats: Option<Arc<WorkerStats>>,
    query_log: Option<Arc<QueryLog>>,
    identity: Arc<ServerIdentity>,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    served: &Served,
    slots: &Semaphore,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let Served { zones, settings, cookies, control, recursion, stats, query_log, identity } = served;
    let local = stream.local_addr().ok();
    // Queries from this client may be forwarded while there are forward
    // zones; from a client outside the ACL they are refused as prohibited.
    let (recursion, refused_recursion) = match recursion.as_ref() {
        Some(recursion) if recursion.allows(peer.ip()) => (Some(recursion), None),
        other => (None, other),
    };
    stream.set_nodelay(true)?;
    // A reply that cannot be written within the timeout (a client that
    // stopped reading) ends the connection.
    let write_timeout = settings.idle_timeout;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let mut query = vec![0u8; u16::MAX as usize];
    let mut response = Vec::with_capacity(u16::MAX as usize + 2);
    let mut answer = Vec::with_capacity(u16::MAX as usize);
    let mut parsed = Box::new(Query::new());
    let mut cookie_reply = [0u8; cookies::OPTION_LEN];
    loop {
        let read = async {
            let len = reader.read_u16().await? as usize;
            reader.read_exact(&mut query[..len]).await?;
            Ok::<usize, io::Error>(len)
        };
        let in_use = settings.max_connections.saturating_sub(slots.available_permits());
        let len = tokio::select! {
            result = tokio::time::timeout(settings.idle_timeout_at(in_use), read) => match result {
                Ok(Ok(len)) => len,
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let packet = &query[..len];
        let read_at = Instant::now();
        let parsed_ok = parse_query_into(packet, &mut parsed);
        if let Some(stats) = stats {
            match parsed_ok {
                Ok(()) => stats.query(TCP, parsed.qtype.0),
                Err(_) => stats.malformed(TCP),
            }
        }
        // Counts (and maybe logs) a response about to be written.
        let answered = |answer: &[u8]| {
            if let Some(stats) = stats {
                stats.response(TCP, answer);
                stats.answered(TCP, read_at.elapsed().as_nanos() as u64, 1);
            }
            if let Some(log) = query_log.as_ref().filter(|log| log.take_shared()) {
                log.log(Entry {
                    protocol: Protocol::Tcp,
                    client: peer,
                    server: local,
                    query: packet.to_vec(),
                    response: answer.to_vec(),
                    time: std::time::SystemTime::now(),
                });
            }
        };
        let recursion = recursion.filter(|recursion| recursion.is_active());
        if let (Some(recursion), Ok(())) = (recursion, parsed_ok) {
            let hosted = crate::hosted_apex_len(&zones.load(), parsed.qname_lower());
            if let Some(zone) = recursion.route(&parsed, hosted) {
                if recursion.answer(&parsed, zone, u16::MAX as usize, &mut answer).await {
                    answered(&answer);
                    response.clear();
                    response.extend_from_slice(&(answer.len() as u16).to_be_bytes());
                    response.extend_from_slice(&answer);
                    write_within(&mut writer, &response, write_timeout).await?;
                }
                continue;
            }
        }
        let prohibited = parsed_ok.is_ok()
            && refused_recursion.is_some_and(|recursion| {
                recursion.is_active()
                    && recursion.route(&parsed, crate::hosted_apex_len(&zones.load(), parsed.qname_lower())).is_some()
            });
        let mut outcome = match parsed_ok {
            Err(error) => unreadable(packet, error, &mut answer),
            Ok(()) => {
                // Cookies are answered over TCP too (RFC 7873 §5.2), though
                // TCP itself proves the address.
                let options: &[u8] = match (cookies, parsed.edns.and_then(|edns| edns.cookie)) {
                    (Some(secrets), Some((at, cookie_len))) => {
                        let cookie = &packet[at as usize..at as usize + cookie_len as usize];
                        secrets.answer(cookie, peer.ip(), cookies::unix_now(), &mut cookie_reply);
                        &cookie_reply
                    }
                    _ => &[],
                };
                if prohibited {
                    refuse_prohibited(identity, &parsed, options, &mut answer)
                } else {
                    respond_parsed_with(&zones.load(), identity, &parsed, None, Transport::Tcp, options, &mut answer).0
                }
            }
        };
        if outcome == Outcome::HandOff {
            match &control {
                Some(control) => {
                    // A transfer is many messages; each is made only once the
                    // one before it is written, so a slow reader holds one.
                    let mut replies = control.handle(&query[..len], peer, Transport::Tcp).await;
                    while replies.next_message(&mut answer) {
                        response.clear();
                        response.extend_from_slice(&(answer.len() as u16).to_be_bytes());
                        response.extend_from_slice(&answer);
                        write_within(&mut writer, &response, write_timeout).await?;
                    }
                    continue;
                }
                None => outcome = respond_unsigned(&zones.load(), identity, &query[..len], Transport::Tcp, &mut answer),
            }
        }
        if outcome != Outcome::Reply {
            if let Some(stats) = stats {
                stats.dropped(TCP);
            }
            continue;
        }
        if recursion.is_some() {
            set_recursion_available(&mut answer);
        }
        answered(&answer);
        response.clear();
        response.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        response.extend_from_slice(&answer);
        // Answer queries as they come; a pipelining client reads them in order.
        write_within(&mut writer, &response, write_timeout).await?;
    }
}

async fn write_within(writer: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8], timeout: Duration) -> io::Result<()> {
    match tokio::time::timeout(timeout, writer.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client did not read its reply in time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeouts_shorten_as_slots_run_out() {
        let settings = TcpSettings { max_connections: 100, max_per_client: 10, ..TcpSettings::default() };
        assert_eq!(settings.idle_timeout_at(0), Duration::from_secs(10));
        assert_eq!(settings.idle_timeout_at(50), Duration::from_secs(10));
        assert_eq!(settings.idle_timeout_at(75), Duration::from_millis(5500));
        assert_eq!(settings.idle_timeout_at(100), Duration::from_secs(1));
    }
}
