//! The DNS transports: UDP workers and the TCP server, both answering through
//! [`ferrodns_engine::respond`] from a shared, atomically swapped [`ZoneSet`].
//!
//! This crate owns the sockets and nothing else: it takes its listeners'
//! addresses, the zone set handle and a shutdown signal from the caller
//! (tests bind `127.0.0.1:0`).

pub mod cookies;
pub mod dnstap;
pub mod rrl;
pub mod shares;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ferrodns_engine::ServerIdentity;
use ferrodns_zone::ZoneSet;
use tokio::sync::watch;

use ferrodns_forward::{HostedZones, Recursion};
pub use tcp::TcpSettings;
pub use udp::{ControlPacket, CpuPin, UdpSettings};

/// A boxed future, for the control handler's one method.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Answers control traffic the engine hands off (NOTIFY, AXFR, IXFR,
/// TSIG-signed messages). It may await (the journal, peers), so it runs on
/// the async runtime, never on a UDP worker thread.
pub trait ControlHandler: Send + Sync + 'static {
    /// The messages to send back, in order (none to stay silent), made as
    /// the transport sends them.
    fn handle<'a>(
        &'a self,
        packet: &'a [u8],
        peer: SocketAddr,
        transport: ferrodns_engine::Transport,
    ) -> BoxFuture<'a, Box<dyn ferrodns_engine::Replies>>;
}

/// Where and how to serve DNS.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// Addresses to serve on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// UDP worker threads per address (each with its own SO_REUSEPORT socket).
    pub udp_workers: usize,
    pub udp: UdpSettings,
    pub tcp: TcpSettings,
    pub protections: Protections,
    /// Sampled queries and responses to dnstap, when on.
    pub query_log: Option<Arc<dnstap::QueryLog>>,
    /// The NSID and CH-class answers about this server.
    pub identity: Arc<ServerIdentity>,
}

/// What the transports do beyond answering: DNS cookies (UDP and TCP) and
/// response rate limiting (UDP). Both off by default.
#[derive(Clone, Default)]
pub struct Protections {
    pub cookies: Option<Arc<cookies::CookieSecrets>>,
    pub rrl: Option<Arc<rrl::Limiter>>,
}

impl std::fmt::Debug for Protections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protections")
            .field("cookies", &self.cookies.is_some())
            .field("rrl", &self.rrl.is_some())
            .finish()
    }
}

/// Sockets bound and ready to serve.
pub struct BoundDns {
    udp: Vec<UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    local: Vec<SocketAddr>,
    udp_settings: UdpSettings,
    tcp_settings: TcpSettings,
    protections: Protections,
    recursion: Option<Arc<Recursion>>,
    query_log: Option<Arc<dnstap::QueryLog>>,
    identity: Arc<ServerIdentity>,
}

/// The hosted zones of a served zone set, as forwarding routes by them.
pub struct HostedZoneSet(pub Arc<ArcSwap<ZoneSet>>);

impl HostedZones for HostedZoneSet {
    fn deepest_apex_len(&self, name_lower: &[u8]) -> usize {
        hosted_apex_len(&self.0.load(), name_lower)
    }
}

/// The length of the apex of the deepest zone of `zones` holding
/// `name_lower`, 0 when none does: how deep a forward zone must be to
/// answer for the name instead.
pub fn hosted_apex_len(zones: &ZoneSet, name_lower: &[u8]) -> usize {
    zones.find(name_lower).map_or(0, |zone| zone.apex_lower().len())
}

/// Most forwarded UDP queries waiting for an answer at once; more are
/// dropped, as a resolver out of room does (the client asks again).
const MAX_FORWARDED_WAITING: usize = 16_384;

/// Binds every listen address for UDP and TCP. A port of 0 picks one free
/// port and uses it for both transports of that address.
pub fn bind(settings: &DnsSettings) -> io::Result<BoundDns> {
    let workers = settings.udp_workers.max(1);
    let mut bound = BoundDns {
        udp: Vec::new(),
        tcp: Vec::new(),
        local: Vec::new(),
        udp_settings: settings.udp,
        tcp_settings: settings.tcp,
        protections: settings.protections.clone(),
        recursion: None,
        query_log: settings.query_log.clone(),
        identity: settings.identity.clone(),
    };
    for &requested in &settings.listen {
        if !requested.ip().is_unspecified() && is_not_local(requested.ip()) {
            // It binds all the same (IP_FREEBIND): a VIP moved here later.
            tracing::warn!(address = %requested.ip(), "the DNS listen address is not one of this host's (yet); answering on it once it is, as for a VIP");
        }
        let (udp, tcp, local) = bind_one(requested, workers)?;
        bound.udp.extend(udp);
        bound.tcp.push(tcp);
        bound.local.push(local);
    }
    Ok(bound)
}

fn bind_one(requested: SocketAddr, workers: usize) -> io::Result<(Vec<UdpSocket>, std::net::TcpListener, SocketAddr)> {
    // With port 0 the TCP port the kernel gave UDP may be taken; try a few.
    let attempts = if requested.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let first = udp::bind_udp(requested).map_err(|e| annotate(e, "UDP", requested))?;
        let local = first.local_addr()?;
        match tcp::bind_tcp(local) {
            Ok(tcp) => {
                let mut sockets = vec![first];
                for _ in 1..workers {
                    sockets.push(udp::bind_udp(local).map_err(|e| annotate(e, "UDP", local))?);
                }
                return Ok((sockets, tcp, local));
            }
            Err(e) => last_error = Some(annotate(e, "TCP", local)),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// True when `ip` is not (now) an address of this host: binding it
/// without IP_FREEBIND fails.
fn is_not_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_err_and(|e| e.kind() == io::ErrorKind::AddrNotAvailable)
}

fn annotate(e: io::Error, transport: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind DNS {transport} {addr}: {e}"))
}

impl BoundDns {
    /// Forwards queries for forward zones through `recursion`, for the
    /// clients it allows.
    pub fn with_recursion(mut self, recursion: Arc<Recursion>) -> BoundDns {
        self.recursion = Some(recursion);
        self
    }

    /// The bound addresses, one per listen address, ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Serves until `shutdown` turns true; returns once every socket is closed.
    /// Control traffic goes to `control`, or is answered as plain queries.
    pub async fn run(
        self,
        zones: Arc<ArcSwap<ZoneSet>>,
        control: Option<Arc<dyn ControlHandler>>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        self.start(zones, control, shutdown)?.finished().await
    }

    /// Starts serving: the UDP worker threads are spawned from the calling
    /// thread, and so take its scheduling priority (the binary calls this
    /// from its main thread, whose priority is the default, while its async
    /// threads run at a lower one), and the TCP listeners become tasks.
    /// Must be called inside a tokio runtime. [`RunningDns::finished`]
    /// returns once `shutdown` has turned true and every socket is closed.
    pub fn start(
        self,
        zones: Arc<ArcSwap<ZoneSet>>,
        control: Option<Arc<dyn ControlHandler>>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<RunningDns> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let hand_off = control.as_ref().map(|control| {
            let (queue, mut packets) = tokio::sync::mpsc::channel::<ControlPacket>(1024);
            let control = control.clone();
            tokio::spawn(async move {
                while let Some(packet) = packets.recv().await {
                    let control = control.clone();
                    tokio::spawn(async move {
                        let mut replies =
                            control.handle(&packet.packet, packet.peer, ferrodns_engine::Transport::Udp).await;
                        let mut reply = Vec::new();
                        while replies.next_message(&mut reply) {
                            if let Err(e) = udp::send_reply(&packet.socket, &reply, packet.peer, packet.local) {
                                tracing::debug!(peer = %packet.peer, error = %e, "control reply not sent");
                            }
                        }
                    });
                }
            });
            udp::HandOff { queue }
        });
        let metrics = self.udp_settings.metrics;
        let forwarding = self.recursion.clone().map(|recursion| spawn_forwarding(recursion, metrics)).transpose()?;
        // Read before any worker pins itself (which narrows what the
        // process may use, as seen from a new thread).
        let cpus = self.udp_settings.cpu_pin.cpus();
        let fallback = if self.udp_settings.cpu_pin == CpuPin::Online { CpuPin::Allowed.cpus() } else { Vec::new() };
        for (index, socket) in self.udp.into_iter().enumerate() {
            let pin = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let fallback = (!fallback.is_empty()).then(|| fallback[index % fallback.len()]);
            let zones = zones.clone();
            let stop = stop.clone();
            let udp_settings = self.udp_settings;
            let hand_off = hand_off.clone();
            let protections = self.protections.clone();
            let forwarding = forwarding.clone();
            let query_log = self.query_log.clone();
            let identity = self.identity.clone();
            threads.push(std::thread::Builder::new().name(format!("dns-udp-{index}")).spawn(move || {
                if let Some(cpu) = pin {
                    if !udp::pin_current_thread(cpu) && !fallback.is_some_and(udp::pin_current_thread) {
                        tracing::warn!(cpu, "cannot keep a UDP worker to its CPU; it runs unpinned");
                    }
                }
                let extras = udp::Extras { protections, hand_off, forwarding, query_log, identity };
                udp::run_worker(socket, zones, stop, udp_settings, extras)
            })?);
        }
        let mut tcp_tasks = Vec::new();
        for listener in self.tcp {
            tcp_tasks.push(tokio::spawn(tcp::serve(
                listener,
                zones.clone(),
                self.tcp_settings,
                tcp::Extras {
                    cookies: self.protections.cookies.clone(),
                    control: control.clone(),
                    recursion: self.recursion.clone(),
                    query_log: self.query_log.clone(),
                    identity: self.identity.clone(),
                },
                shutdown.clone(),
            )));
        }
        Ok(RunningDns { stop, threads, tcp_tasks, shutdown })
    }
}

/// Starts the thread that answers the UDP queries a worker could not
/// answer from the cache: a runtime of its own on one thread, started from
/// the caller's (so at the UDP workers' priority, not the async threads'
/// lower one: a forwarded query is a DNS answer, not control-plane work).
/// Each query waits on its own task (at most [`MAX_FORWARDED_WAITING`] at
/// once) and its reply leaves from the socket it came in on. The thread
/// ends when the workers, which hold the queue, are gone.
fn spawn_forwarding(recursion: Arc<Recursion>, metrics: bool) -> io::Result<udp::Forwarding> {
    use ferrodns_metrics::dns::Transport::Udp;
    let stats = metrics.then(|| ferrodns_metrics::global().dns.shared());
    let (queue, mut packets) = tokio::sync::mpsc::channel::<udp::ForwardPacket>(4096);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answering = recursion.clone();
    std::thread::Builder::new().name("dns-forward".into()).spawn(move || {
        let waiting = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDED_WAITING));
        runtime.block_on(async move {
            while let Some(packet) = packets.recv().await {
                let Ok(permit) = waiting.clone().try_acquire_owned() else {
                    tracing::debug!(peer = %packet.peer, "too many forwarded queries waiting; dropping one");
                    if let Some(stats) = &stats {
                        stats.dropped(Udp);
                    }
                    continue;
                };
                let recursion = answering.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut query = Box::new(ferrodns_proto::Query::new());
                    if ferrodns_proto::parse_query_into(&packet.packet, &mut query).is_err() {
                        return;
                    }
                    let mut reply = Vec::new();
                    let limit = ferrodns_forward::wire::udp_limit(&query);
                    // The worker counted the miss, and the query.
                    if recursion.answer_missed(&query, packet.zone, limit, &mut reply).await {
                        if let Some(stats) = &stats {
                            stats.response(Udp, &reply);
                            stats.answered(Udp, packet.handed_at.elapsed().as_nanos() as u64, 1);
                        }
                        if let Err(e) = udp::send_reply(&packet.socket, &reply, packet.peer, packet.local) {
                            tracing::debug!(peer = %packet.peer, error = %e, "forwarded reply not sent");
                        }
                    }
                });
            }
        });
    })?;
    Ok(udp::Forwarding { recursion, queue })
}

/// DNS being served: the UDP worker threads and the TCP listener tasks.
pub struct RunningDns {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp_tasks: Vec<tokio::task::JoinHandle<io::Result<()>>>,
    shutdown: watch::Receiver<bool>,
}

impl RunningDns {
    /// Waits for the shutdown signal, stops the workers and listeners, and
    /// returns once every socket is closed.
    pub async fn finished(self) -> io::Result<()> {
        let RunningDns { stop, threads, tcp_tasks, mut shutdown } = self;
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in tcp_tasks {
            let _ = task.await;
        }
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await
        .map_err(io::Error::other)?;
        Ok(())
    }
}
