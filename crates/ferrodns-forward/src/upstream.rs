//! Asking one forwarder: a query over UDP from a fresh socket (so a fresh
//! random source port) with a random id, the reply taken only when it
//! matches, TCP when the reply is truncated; and each forwarder's smoothed
//! round-trip time, by which the forwarders of a zone are tried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::table::ForwarderAddr;
use crate::wire::{answers, write_query, Question};

/// The shortest and longest wait for one forwarder's reply over UDP.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_millis(1500);
/// The wait assumed for a forwarder not yet measured.
const UNKNOWN_TIMEOUT: Duration = Duration::from_millis(400);
/// Room for a UDP reply: more than the 1232 octets we offer.
const UDP_RECEIVE_BUFFER: usize = 4096;
/// The highest smoothed RTT a forwarder is given, in microseconds.
const MAX_SRTT_US: u32 = 5_000_000;

/// One forwarder and what we have measured of it.
pub struct Upstream {
    address: ForwarderAddr,
    /// Smoothed round-trip time in microseconds; 0 until measured.
    srtt_us: AtomicU32,
    /// A TLS forwarder's open connections, kept for the next queries
    /// (RFC 7858 §3.4 asks clients to reuse them).
    idle_tls: Mutex<Vec<TlsStream<TcpStream>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("address", &self.address).field("srtt_us", &self.srtt_us).finish()
    }
}

/// Most idle TLS connections kept to one forwarder.
const MAX_IDLE_TLS: usize = 4;

/// Why a forwarder gave no usable reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    Timeout,
    Network(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => write!(f, "no reply in time"),
            ExchangeError::Network(e) => write!(f, "{e}"),
        }
    }
}

impl Upstream {
    pub fn new(address: ForwarderAddr) -> Upstream {
        Upstream { address, srtt_us: AtomicU32::new(0), idle_tls: Mutex::new(Vec::new()) }
    }

    pub fn address(&self) -> &ForwarderAddr {
        &self.address
    }

    /// The smoothed round-trip time, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        match self.srtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us as u64)),
        }
    }

    /// How long to wait for this forwarder over UDP: four smoothed RTTs
    /// and 10 ms of slack, within 100 ms and 1.5 s.
    pub fn timeout(&self) -> Duration {
        match self.srtt() {
            None => UNKNOWN_TIMEOUT,
            Some(srtt) => (srtt * 4 + Duration::from_millis(10)).clamp(MIN_TIMEOUT, MAX_TIMEOUT),
        }
    }

    /// Folds in a measured RTT, weighted 1/8 as TCP's SRTT (RFC 6298) and
    /// Unbound's are.
    pub fn record_rtt(&self, rtt: Duration) {
        ferrodns_metrics::global().upstream_rtt.observe(rtt.as_secs_f64());
        let sample = (rtt.as_micros() as u32).clamp(1, MAX_SRTT_US);
        let _ = self.srtt_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |srtt| {
            Some(if srtt == 0 { sample } else { ((srtt as u64 * 7 + sample as u64) / 8) as u32 })
        });
    }

    /// A timeout or a refusal: the forwarder is taken as at least as slow
    /// as the wait, and twice as slow as it was, so that the others go first.
    pub fn record_failure(&self, waited: Duration) {
        let waited = (waited.as_micros() as u32).clamp(1, MAX_SRTT_US);
        let _ = self.srtt_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |srtt| {
            Some(srtt.saturating_mul(2).max(waited).min(MAX_SRTT_US))
        });
    }

    /// A forwarder passed over: its SRTT decays (by 1/32, as BIND's does),
    /// so that one that was slow or down is tried again in time.
    pub fn decay(&self) {
        let _ = self.srtt_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |srtt| Some(srtt - srtt / 32));
    }
}

/// The order to try `upstreams` in for one query: unmeasured first (so each
/// gets measured), then by smoothed RTT; those after the first decay.
pub fn order(upstreams: &[std::sync::Arc<Upstream>]) -> Vec<std::sync::Arc<Upstream>> {
    let mut ordered = upstreams.to_vec();
    // A random rotation first, so that equals share the load.
    if ordered.len() > 1 {
        let turn = crate::random_u16() as usize % ordered.len();
        ordered.rotate_left(turn);
    }
    ordered.sort_by_key(|upstream| upstream.srtt_us.load(Ordering::Relaxed));
    for upstream in ordered.iter().skip(1) {
        upstream.decay();
    }
    ordered
}

/// Asks `upstream` over UDP from a new socket. Returns the reply that
/// matches (address and port by the connected socket; id and question
/// here), or why there was none; anything else that arrives is ignored.
pub async fn query_udp(upstream: &Upstream, question: &Question<'_>) -> Result<Vec<u8>, ExchangeError> {
    let address = upstream.address().address;
    let network = |e: std::io::Error| ExchangeError::Network(format!("{address}: {e}"));
    let local: SocketAddr = if address.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(network)?;
    socket.connect(address).await.map_err(network)?;
    let id = crate::random_u16();
    let mut message = Vec::with_capacity(64 + question.name_lower.len());
    write_query(id, question, &mut message);
    let started = Instant::now();
    let wait = upstream.timeout();
    socket.send(&message).await.map_err(network)?;
    // We offer 1232 octets; a reply that fills this buffer broke that
    // limit and is cut, so it fails to parse like any malformed one.
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
    let receive = async {
        loop {
            let len = socket.recv(&mut buffer).await?;
            if answers(&buffer[..len], id, question) {
                return Ok::<usize, std::io::Error>(len);
            }
            tracing::debug!(forwarder = %address, "ignored a datagram that does not answer our query");
        }
    };
    match tokio::time::timeout(wait, receive).await {
        Ok(Ok(len)) => {
            upstream.record_rtt(started.elapsed());
            buffer.truncate(len);
            Ok(buffer)
        }
        // ICMP port unreachable, say: the forwarder is down.
        Ok(Err(e)) => Err(failed(upstream, wait, network(e))),
        Err(_) => Err(failed(upstream, wait, ExchangeError::Timeout)),
    }
}

/// Counts a failed exchange against `upstream` (which waited `wait`) and
/// passes on why it failed.
fn failed(upstream: &Upstream, wait: Duration, why: ExchangeError) -> ExchangeError {
    upstream.record_failure(wait);
    why
}

/// Asks `upstream` over TCP (after a truncated UDP reply), within `wait`.
pub async fn query_tcp(upstream: &Upstream, question: &Question<'_>, wait: Duration) -> Result<Vec<u8>, ExchangeError> {
    let address = upstream.address().address;
    let network = |e: std::io::Error| ExchangeError::Network(format!("{address} over TCP: {e}"));
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        exchange_framed(&mut stream, question).await
    };
    match tokio::time::timeout(wait, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(network(e)),
        Err(_) => Err(ExchangeError::Timeout),
    }
}

/// Asks a TLS forwarder (RFC 7858) within `wait`: on a connection kept
/// from an earlier query when there is one (and on a new one if that has
/// been closed meanwhile), its certificate checked against the forwarder's
/// name by `connector`.
pub async fn query_tls(
    upstream: &Upstream,
    question: &Question<'_>,
    wait: Duration,
    connector: &TlsConnector,
) -> Result<Vec<u8>, ExchangeError> {
    let forwarder = upstream.address();
    let address = forwarder.address;
    let network = |e: std::io::Error| ExchangeError::Network(format!("{forwarder} over TLS: {e}"));
    let name = forwarder.tls_name.as_deref().unwrap_or_default();
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| ExchangeError::Network(format!("{forwarder}: {name:?} is not a certificate name")))?;
    let started = Instant::now();
    let exchange = async {
        let kept = upstream.idle_tls.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(mut stream) = kept {
            if let Ok(reply) = exchange_framed(&mut stream, question).await {
                return Ok((reply, stream));
            }
        }
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let mut stream = connector.connect(server_name, tcp).await?;
        let reply = exchange_framed(&mut stream, question).await?;
        Ok::<_, std::io::Error>((reply, stream))
    };
    match tokio::time::timeout(wait, exchange).await {
        Ok(Ok((reply, stream))) => {
            upstream.record_rtt(started.elapsed());
            let mut idle = upstream.idle_tls.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_TLS {
                idle.push(stream);
            }
            Ok(reply)
        }
        Ok(Err(e)) => Err(failed(upstream, wait, network(e))),
        Err(_) => Err(failed(upstream, wait, ExchangeError::Timeout)),
    }
}

/// One query and its reply over a stream in TCP framing (RFC 1035 §4.2.2),
/// a fresh id each time; what else arrives is skipped.
async fn exchange_framed(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    question: &Question<'_>,
) -> std::io::Result<Vec<u8>> {
    let id = crate::random_u16();
    let mut query = Vec::new();
    write_query(id, question, &mut query);
    let mut message = (query.len() as u16).to_be_bytes().to_vec();
    message.extend_from_slice(&query);
    stream.write_all(&message).await?;
    stream.flush().await?;
    loop {
        let len = stream.read_u16().await? as usize;
        let mut reply = vec![0u8; len];
        stream.read_exact(&mut reply).await?;
        if answers(&reply, id, question) {
            return Ok(reply);
        }
    }
}

/// The TLS client forwarders over TLS are reached with: the system's
/// trusted roots and the CA certificates in `extra_roots` (PEM), if given.
pub fn tls_connector(extra_roots: Option<&std::path::Path>) -> Result<TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for certificate in native.certs {
        let _ = roots.add(certificate);
    }
    if let Some(path) = extra_roots {
        let certificates: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("no certificate in {}", path.display()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(port: u16) -> Upstream {
        Upstream::new(ForwarderAddr::plain(SocketAddr::from(([127, 0, 0, 1], port))))
    }

    #[test]
    fn rtt_is_smoothed_and_failures_push_a_forwarder_back() {
        let u = upstream(53);
        assert_eq!(u.timeout(), UNKNOWN_TIMEOUT);
        u.record_rtt(Duration::from_millis(8));
        assert_eq!(u.srtt(), Some(Duration::from_millis(8)));
        u.record_rtt(Duration::from_millis(16));
        assert_eq!(u.srtt(), Some(Duration::from_millis(9)));
        assert_eq!(u.timeout(), MIN_TIMEOUT);
        u.record_failure(Duration::from_millis(400));
        assert_eq!(u.srtt(), Some(Duration::from_millis(400)));
        u.record_failure(Duration::from_millis(400));
        assert_eq!(u.srtt(), Some(Duration::from_millis(800)));
        u.decay();
        assert_eq!(u.srtt(), Some(Duration::from_micros(775_000)));
    }

    #[test]
    fn the_fastest_goes_first_and_the_unmeasured_before_it() {
        let (slow, fast, new) = (Arc::new(upstream(1)), Arc::new(upstream(2)), Arc::new(upstream(3)));
        slow.record_rtt(Duration::from_millis(50));
        fast.record_rtt(Duration::from_millis(2));
        let ordered = order(&[slow.clone(), fast.clone(), new.clone()]);
        let ports: Vec<u16> = ordered.iter().map(|u| u.address().address.port()).collect();
        assert_eq!(ports, [3, 2, 1]);
    }
}
