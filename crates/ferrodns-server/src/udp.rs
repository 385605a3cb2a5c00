//! UDP serving: one blocking OS thread per socket, batching with recvmmsg and
//! sendmmsg.
//!
//! Each listen address gets one SO_REUSEPORT socket per worker so the kernel
//! spreads queries across workers without a shared queue. A worker loads the
//! current zone set once per batch (an atomic pointer load, no lock), answers
//! every datagram of the batch into buffers it owns, and sends the replies with
//! one system call; replies to the same client socket go out as one segmented
//! (GSO) message ([`gso`]). Nothing on this path allocates once the buffers
//! are warm.
//!
//! Under heavy load a worker coalesces: when queries arrive faster than about
//! 100,000 a second and a batch comes back less than full, it pauses for up
//! to `coalesce` (100 µs by default) so that the next batch is bigger. The
//! kernel then wakes the worker, and the clients, once per batch instead of
//! once per few packets, which cuts the kernel time per answer by about a
//! tenth at full load (docs/benchmarks.md). Below that rate a pause collects
//! too few extra queries to pay for the latency it adds (at 50,000 queries a
//! second a pause doubled the average latency and saved no CPU).
//!
//! Busy polling (`busy_poll`, off by default) trades CPU for latency: a
//! worker that is seeing more than about 10,000 queries a second keeps
//! polling its socket without blocking for up to that long before it goes to
//! sleep. On virtual machines, where waking an idle vCPU costs tens of
//! microseconds, this takes most of that out of each answer's latency, at the
//! price of a core kept busy while the rate lasts (docs/benchmarks.md). Below
//! that rate the worker always sleeps, so an idle server uses no CPU.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ferrodns_engine::{
    formerr, prefetch, prefetch_node, prefetch_set, prefetch_set_entry, refuse_prohibited, respond_parsed_with,
    respond_unsigned, unreadable, Facts, Outcome, Prefetched, ServerIdentity, Transport,
};
use ferrodns_forward::cache::Lookup;
use ferrodns_forward::table::ForwardZone;
use ferrodns_forward::wire::{set_recursion_available, udp_limit};
use ferrodns_forward::Recursion;
use ferrodns_metrics::dns::{Transport as Counted, WorkerStats};
use ferrodns_proto::{parse_query_into, Query, QueryError, RecordType};

use crate::cookies::{self, CookieSecrets};
use crate::dnstap::{self, Entry, QueryLog, Sampler};
use crate::rrl::{self, Kind, Limiter};
use crate::Protections;
use ferrodns_zone::ZoneSet;
use socket2::{Domain, Protocol, Socket, Type};

mod gso;

/// Datagrams read or written per system call.
const BATCH: usize = 64;
/// The transport this module's counts go under.
const UDP: Counted = Counted::Udp;
/// Largest query we read; anything longer is cut and then answered FORMERR.
const RECEIVE_BUFFER: usize = 4096;
/// Distance between receive buffers: one cache line more than a page, so the
/// starts of the 64 buffers fall in different cache sets instead of all
/// competing for the same eight ways.
const RECEIVE_STRIDE: usize = RECEIVE_BUFFER + 64;
/// How often a blocked worker wakes to check for shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// UDP worker settings.
#[derive(Clone, Copy, Debug)]
pub struct UdpSettings {
    /// Longest pause to let a batch fill under load; zero turns coalescing off.
    pub coalesce: Duration,
    /// Send the replies of a batch that go to one client socket as one
    /// `UDP_SEGMENT` (GSO) send. A worker whose kernel or route refuses it
    /// turns it off for itself and sends those replies one by one.
    pub segment_offload: bool,
    /// How long a worker under load polls its socket before it sleeps;
    /// zero (the default) means it sleeps as soon as the socket is empty.
    pub busy_poll: Duration,
    /// Which CPU each worker keeps to, if any.
    pub cpu_pin: CpuPin,
    /// Count queries, responses and answer times for `/metrics`
    /// (`ferrodns_metrics::dns`). Off only to measure what counting costs.
    pub metrics: bool,
}

/// Where UDP workers run. Pinned, worker `i` keeps to the `i`-th CPU of a
/// list (round robin when there are more workers than CPUs), so that its
/// socket, buffers and zone lines stay in one core's caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuPin {
    /// Workers run wherever the scheduler puts them, within the CPUs the
    /// process may use (the default).
    #[default]
    None,
    /// Each worker keeps to one of the CPUs the process was started with.
    Allowed,
    /// Each worker keeps to one of the machine's online CPUs, counted from
    /// 0, whatever CPUs the process was started with: Knot's placement of
    /// its UDP workers. Where the kernel refuses a CPU (a cpuset that
    /// excludes it), the worker keeps to the allowed CPUs as with `Allowed`.
    Online,
}

impl CpuPin {
    pub fn parse(text: &str) -> Option<CpuPin> {
        match text {
            "none" | "off" => Some(CpuPin::None),
            "allowed" => Some(CpuPin::Allowed),
            "online" => Some(CpuPin::Online),
            _ => None,
        }
    }

    /// The CPUs workers are spread over, in order; empty when not pinned.
    /// Read once, before any worker pins itself.
    pub fn cpus(self) -> Vec<usize> {
        match self {
            CpuPin::None => Vec::new(),
            CpuPin::Allowed => allowed_cpus(),
            CpuPin::Online => {
                // SAFETY: sysconf only reads a system value.
                let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
                (0..online.max(1) as usize).collect()
            }
        }
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is empty, and sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect()
}

/// Keeps the calling thread to `cpu`; false when the kernel refuses.
pub fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: the set is a plain value built here; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

impl Default for UdpSettings {
    fn default() -> UdpSettings {
        UdpSettings {
            coalesce: Duration::from_micros(100),
            segment_offload: true,
            busy_poll: Duration::ZERO,
            cpu_pin: CpuPin::None,
            metrics: true,
        }
    }
}

/// Coalescing starts when a worker sees more queries than this in one window
/// (100,000 a second).
const BUSY_PACKETS_PER_WINDOW: usize = 1000;
/// Busy polling (when turned on) starts above this many queries in one
/// window (10,000 a second): below it the next query is usually further
/// away than a poll is worth.
const POLLING_PACKETS_PER_WINDOW: usize = 100;
const WINDOW: Duration = Duration::from_millis(10);

/// Binds one UDP socket for `addr` with SO_REUSEPORT set, so that more can
/// share the port.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // Room for bursts of a few thousand queries; the send side keeps the kernel default.
    socket.set_recv_buffer_size(1 << 20).ok();
    if addr.is_ipv4() {
        // Set DF and ignore path-MTU updates (IP_PMTUDISC_PROBE). Replies are at
        // most 1232 octets, sized to cross any path unfragmented (DNS Flag Day
        // 2020), so DF costs nothing; ignoring PMTU updates means a forged ICMP
        // "fragmentation needed" cannot make us fragment or drop answers; and with
        // DF set the kernel skips the hashed IP-ID generator on every packet.
        set_int_option(&socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)?;
    }
    if addr.ip().is_unspecified() {
        // A wildcard socket must answer from the address each query came
        // to, or a client of any address but the route's preferred one gets
        // its answer from a stranger and drops it: the destination comes in
        // with each datagram and goes back as the reply's source.
        match addr {
            SocketAddr::V4(_) => set_int_option(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
            SocketAddr::V6(_) => set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?,
        }
    }
    set_freebind(&socket, addr)?;
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    Ok(socket.into())
}

/// Lets the socket bind an address this host does not hold yet (a VIP that
/// keepalived or a cluster manager moves here on failover), as Knot does;
/// it starts receiving once the address arrives.
pub fn set_freebind(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => set_int_option(socket, libc::IPPROTO_IP, libc::IP_FREEBIND, 1),
        SocketAddr::V6(_) => set_int_option(socket, libc::IPPROTO_IPV6, IPV6_FREEBIND, 1),
    }
}

/// `IPV6_FREEBIND` (Linux 4.15), which the libc crate does not name.
const IPV6_FREEBIND: libc::c_int = 78;

fn set_int_option(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`, which outlives the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A control message (NOTIFY, IXFR, a TSIG-signed query) received over UDP,
/// on its way to the control handler, with the socket to answer from.
pub struct ControlPacket {
    pub packet: Vec<u8>,
    pub peer: std::net::SocketAddr,
    pub socket: Arc<UdpSocket>,
    /// Where it came to: the reply's source.
    pub local: Local,
}

/// Where a worker sends control traffic: a bounded queue (full means the
/// packet is dropped, as UDP allows; control traffic is retried by peers).
#[derive(Clone)]
pub struct HandOff {
    pub queue: tokio::sync::mpsc::Sender<ControlPacket>,
}

/// A query for a forward zone that missed the cache, on its way to the
/// async side, with the socket to answer from.
pub struct ForwardPacket {
    pub packet: Vec<u8>,
    pub peer: SocketAddr,
    pub socket: Arc<UdpSocket>,
    pub zone: Arc<ForwardZone>,
    /// Where it came to: the reply's source.
    pub local: Local,
    /// When the worker handed it over: its answer is timed from here.
    pub handed_at: Instant,
}

/// Where a worker routes queries for forward zones: the cache it answers
/// hits from, and a bounded queue for misses (full means the query is
/// dropped, and the client asks again).
#[derive(Clone)]
pub struct Forwarding {
    pub recursion: Arc<Recursion>,
    pub queue: tokio::sync::mpsc::Sender<ForwardPacket>,
}

/// What a UDP worker answers with, besides its zones and settings.
pub struct Extras {
    pub protections: Protections,
    pub hand_off: Option<HandOff>,
    pub forwarding: Option<Forwarding>,
    pub query_log: Option<Arc<QueryLog>>,
    pub identity: Arc<ServerIdentity>,
}

/// Runs a worker on `socket` until `stop` is set.
pub fn run_worker(
    socket: UdpSocket,
    zones: Arc<ArcSwap<ZoneSet>>,
    stop: Arc<AtomicBool>,
    settings: UdpSettings,
    extras: Extras,
) {
    let Extras { protections, hand_off, forwarding, query_log, identity } = extras;
    let mut worker = Worker::new(settings.segment_offload);
    worker.identity = identity;
    worker.local = socket.local_addr().ok();
    worker.pktinfo = worker.local.is_some_and(|local| local.ip().is_unspecified());
    worker.query_log = query_log.map(|log| {
        let sampler = log.sampler();
        (log, sampler)
    });
    worker.stats = settings.metrics.then(|| ferrodns_metrics::global().dns.owned());
    worker.cookies = protections.cookies;
    worker.rrl = protections.rrl;
    let reply_socket = match (hand_off.is_some() || forwarding.is_some(), socket.try_clone()) {
        (true, Ok(clone)) => Some(Arc::new(clone)),
        _ => None,
    };
    worker.hand_off = hand_off.zip(reply_socket.clone());
    worker.forwarding = forwarding.zip(reply_socket);
    let mut rate = Rate::new();
    while !stop.load(Ordering::Relaxed) {
        let received = if rate.polling && !settings.busy_poll.is_zero() {
            worker.poll(&socket, settings.busy_poll)
        } else {
            worker.receive(&socket)
        };
        match received {
            Ok(0) => rate.count(0),
            Ok(count) => {
                // One clock read per batch, not per query: every answer in
                // the batch is timed from the batch's read to its send.
                let read_at = worker.stats.is_some().then(Instant::now);
                let zone_set = zones.load();
                worker.answer(&zone_set, count);
                if let Err(e) = worker.send(&socket) {
                    tracing::debug!(error = %e, "sendmmsg failed");
                }
                if let (Some(stats), Some(read_at)) = (&worker.stats, read_at) {
                    let replies = worker.reply[..count].iter().filter(|&&r| r).count() as u64;
                    stats.answered(UDP, read_at.elapsed().as_nanos() as u64, replies);
                }
                rate.count(count);
                if rate.busy && count < BATCH && !settings.coalesce.is_zero() {
                    std::thread::sleep(settings.coalesce);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                rate.count(0)
            }
            Err(e) => {
                tracing::warn!(error = %e, "recvmmsg failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A worker's query rate, judged over fixed windows: whether it is high
/// enough to coalesce and to busy-poll.
struct Rate {
    window_start: Instant,
    window_packets: usize,
    busy: bool,
    polling: bool,
}

impl Rate {
    fn new() -> Rate {
        Rate { window_start: Instant::now(), window_packets: 0, busy: false, polling: false }
    }

    fn count(&mut self, packets: usize) {
        self.count_at(packets, Instant::now());
    }

    fn count_at(&mut self, packets: usize, now: Instant) {
        self.window_packets += packets;
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= WINDOW {
            // A window that ran long (the worker slept through a quiet spell)
            // counts for its whole length.
            let windows = (elapsed.as_micros() / WINDOW.as_micros()).max(1) as usize;
            let per_window = self.window_packets / windows;
            self.busy = per_window >= BUSY_PACKETS_PER_WINDOW;
            self.polling = per_window >= POLLING_PACKETS_PER_WINDOW;
            self.window_start = now;
            self.window_packets = 0;
        }
    }
}

struct Worker {
    /// BATCH receive buffers, RECEIVE_STRIDE apart.
    inputs: Vec<u8>,
    input_lengths: [usize; BATCH],
    input_truncated: [bool; BATCH],
    /// Each datagram parsed once, for the prefetch stages and the answer.
    queries: Vec<Query>,
    parsed: [Result<(), QueryError>; BATCH],
    outputs: Vec<Vec<u8>>,
    reply: [bool; BATCH],
    addresses: Vec<libc::sockaddr_storage>,
    address_lengths: [libc::socklen_t; BATCH],
    /// recvmmsg's headers and buffers, pointed at `inputs` and `addresses`
    /// once; only the address lengths are reset before each call.
    receive_iovecs: Vec<libc::iovec>,
    receive_headers: Vec<libc::mmsghdr>,
    /// The batch's replies (indices into `outputs`) in sending order, and
    /// the messages they go in: one per reply, or per peer with GSO.
    order: [u8; BATCH],
    messages: [gso::Message; BATCH],
    message_count: usize,
    /// sendmmsg's: one iovec per reply in `order`, one header and one
    /// UDP_SEGMENT control message per message.
    send_iovecs: Vec<libc::iovec>,
    send_headers: Vec<libc::mmsghdr>,
    controls: Vec<SendControl>,
    /// True on a wildcard socket: each query's destination is read from
    /// its IP_PKTINFO / IPV6_PKTINFO and its reply sent from it.
    pktinfo: bool,
    receive_controls: Vec<ReceiveControl>,
    /// The address each query of the batch came to (wildcard sockets;
    /// `Unknown` on the others, whose replies then carry no source).
    locals: [Local; BATCH],
    segment_offload: bool,
    hand_off: Option<(HandOff, Arc<UdpSocket>)>,
    forwarding: Option<(Forwarding, Arc<UdpSocket>)>,
    cookies: Option<Arc<CookieSecrets>>,
    identity: Arc<ServerIdentity>,
    /// The COOKIE option each reply carries, when its query had one.
    cookie_replies: Vec<[u8; cookies::OPTION_LEN]>,
    rrl: Option<Arc<Limiter>>,
    /// This worker's count of limited responses, for the slip ratio.
    slip_count: u32,
    /// This worker's counts for `/metrics`; it is their only writer.
    stats: Option<Arc<WorkerStats>>,
    /// The query log and this worker's place in its sampling.
    query_log: Option<(Arc<QueryLog>, Sampler)>,
    /// The socket's own address (its port, and its address when not a wildcard).
    local: Option<SocketAddr>,
}

/// Room for the control messages of one send: the reply's source address
/// (IPV6_PKTINFO: 40 octets with its header) and a UDP_SEGMENT size (24),
/// aligned as `cmsghdr` wants.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SendControl([u8; 64]);

/// Room for the control messages a wildcard socket receives with a query.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct ReceiveControl([u8; 64]);

/// The address a query came to, as IP_PKTINFO / IPV6_PKTINFO gave it on
/// a wildcard socket; its reply leaves from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Local {
    /// Not a wildcard socket (or no PKTINFO came): the kernel picks.
    #[default]
    Unknown,
    /// `s_addr`, in network order.
    V4(u32),
    /// The address, and the interface for a link-local one (else 0).
    V6([u8; 16], u32),
}

impl Worker {
    fn new(segment_offload: bool) -> Worker {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zeroed_storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zeroed_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let empty_iovec = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        let mut worker = Worker {
            inputs: vec![0u8; RECEIVE_STRIDE * BATCH],
            input_lengths: [0; BATCH],
            input_truncated: [false; BATCH],
            queries: (0..BATCH).map(|_| Query::new()).collect(),
            parsed: [Err(QueryError::Drop); BATCH],
            // Staggered capacities keep the reply buffers out of each other's cache sets too.
            outputs: (0..BATCH).map(|i| Vec::with_capacity(RECEIVE_BUFFER + 64 * (i % 16))).collect(),
            reply: [false; BATCH],
            addresses: vec![zeroed_storage; BATCH],
            address_lengths: [0; BATCH],
            receive_iovecs: vec![empty_iovec; BATCH],
            receive_headers: vec![zeroed_header; BATCH],
            order: [0; BATCH],
            messages: [gso::Message { start: 0, end: 0, segment: 0 }; BATCH],
            message_count: 0,
            send_iovecs: vec![empty_iovec; BATCH],
            send_headers: vec![zeroed_header; BATCH],
            controls: vec![SendControl([0; 64]); BATCH],
            pktinfo: false,
            receive_controls: vec![ReceiveControl([0; 64]); BATCH],
            locals: [Local::Unknown; BATCH],
            segment_offload,
            hand_off: None,
            forwarding: None,
            cookies: None,
            identity: Arc::default(),
            cookie_replies: vec![[0; cookies::OPTION_LEN]; BATCH],
            rrl: None,
            slip_count: 0,
            stats: None,
            query_log: None,
            local: None,
        };
        // The buffers are heap allocations that never move, so these pointers
        // stay good for the worker's life.
        for i in 0..BATCH {
            let buffer = &mut worker.inputs[i * RECEIVE_STRIDE..i * RECEIVE_STRIDE + RECEIVE_BUFFER];
            worker.receive_iovecs[i] = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: RECEIVE_BUFFER };
            let header = &mut worker.receive_headers[i].msg_hdr;
            header.msg_name = (&mut worker.addresses[i] as *mut libc::sockaddr_storage).cast();
            header.msg_iov = &mut worker.receive_iovecs[i];
            header.msg_iovlen = 1;
        }
        worker
    }

    /// Reads up to BATCH datagrams, blocking until at least one arrives or the
    /// poll interval passes.
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.receive_with(socket, libc::MSG_WAITFORONE)
    }

    /// Like `receive`, but first polls the socket without blocking for up to
    /// `limit`, so that a query arriving soon finds the worker awake.
    fn poll(&mut self, socket: &UdpSocket, limit: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            match self.receive_with(socket, libc::MSG_DONTWAIT) {
                Ok(0) => {}
                Ok(count) => return Ok(count),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return self.receive(socket);
            }
            std::hint::spin_loop();
        }
    }

    fn receive_with(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        for (i, header) in self.receive_headers.iter_mut().enumerate() {
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if self.pktinfo {
                header.msg_hdr.msg_control = self.receive_controls[i].0.as_mut_ptr().cast();
                header.msg_hdr.msg_controllen = self.receive_controls[i].0.len();
            }
        }
        // SAFETY: every header points at live buffers owned by self, sized as declared.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.receive_headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        let count = count as usize;
        for i in 0..count {
            let header = &self.receive_headers[i];
            self.input_lengths[i] = header.msg_len as usize;
            self.input_truncated[i] = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.address_lengths[i] = header.msg_hdr.msg_namelen;
            if self.pktinfo {
                self.locals[i] = destination(&header.msg_hdr);
            }
        }
        Ok(count)
    }

    fn answer(&mut self, zones: &ZoneSet, count: usize) {
        for i in 0..count {
            let packet = &self.inputs[i * RECEIVE_STRIDE..i * RECEIVE_STRIDE + self.input_lengths[i]];
            self.parsed[i] = parse_query_into(packet, &mut self.queries[i]);
        }
        let mut probes = [None; BATCH];
        for i in (0..count).filter(|&i| self.parsed[i].is_ok()) {
            probes[i] = Some(prefetch_set(zones, self.queries[i].qname_lower()));
        }
        for probe in probes.iter().take(count).flatten() {
            prefetch_set_entry(zones, *probe);
        }
        let mut prefetched = [None; BATCH];
        for (i, probe) in probes.iter().enumerate().take(count) {
            if let Some(probe) = *probe {
                prefetched[i] = prefetch(zones, self.queries[i].qname_lower(), probe);
            }
        }
        for slot in prefetched.iter().take(count).flatten() {
            prefetch_node(*slot);
        }
        // Most answers are positive: their buckets are found and start
        // loading now, and the check uses them once the answer is written.
        let mut positive_buckets = [None; BATCH];
        if let Some(limiter) = self.rrl.as_ref().filter(|l| l.default_limit().rate != 0) {
            for (i, slot) in prefetched.iter().enumerate().take(count) {
                if let Some(slot) = slot {
                    let network = network(limiter, &self.addresses[i]);
                    let bucket = limiter.bucket(network, Kind::Positive, slot.hash());
                    limiter.prefetch(bucket);
                    positive_buckets[i] = Some((network, bucket));
                }
            }
        }
        // Cookie timestamps and rate-limit buckets count seconds.
        let now = if self.cookies.is_some() || self.rrl.is_some() { cookies::unix_now() } else { 0 };
        // Recursion is offered only while there is a forward zone.
        let forwarding = self.forwarding.as_ref().filter(|(forwarding, _)| forwarding.recursion.is_active());
        for (i, prefetched) in prefetched.into_iter().enumerate().take(count) {
            let packet = &self.inputs[i * RECEIVE_STRIDE..i * RECEIVE_STRIDE + self.input_lengths[i]];
            if let Some(stats) = &self.stats {
                match self.parsed[i] {
                    Ok(()) if !self.input_truncated[i] => stats.query(UDP, self.queries[i].qtype.0),
                    _ => stats.malformed(UDP),
                }
            }
            let mut recursion_available = false;
            let mut prohibited = false;
            if let (Some((forwarding, socket)), Ok(()), false) = (forwarding, self.parsed[i], self.input_truncated[i]) {
                recursion_available = forwarding.recursion.allows(peer_ip(&self.addresses[i]));
                // A forward zone's name from a client that may not recurse.
                let hosted = prefetched.map_or(0, |p| p.zone().apex_lower().len());
                prohibited = !recursion_available && forwarding.recursion.route(&self.queries[i], hosted).is_some();
                let client = (&self.addresses[i], self.address_lengths[i], self.locals[i]);
                let output = &mut self.outputs[i];
                let stats = self.stats.as_deref();
                let forwarded = match recursion_available {
                    true => forward(forwarding, socket, &self.queries[i], prefetched, client, packet, output, stats),
                    false => None,
                };
                if let Some(outcome) = forwarded {
                    self.reply[i] = outcome == Outcome::Reply;
                    if let (Some(stats), true) = (stats, self.reply[i]) {
                        stats.response(UDP, output);
                    }
                    if self.reply[i] {
                        sample(&mut self.query_log, self.local, client, packet, output);
                    }
                    continue;
                }
            }
            let output = &mut self.outputs[i];
            let mut proven = false;
            let mut options: &[u8] = &[];
            if let (Some(secrets), Ok(()), Some((at, len))) =
                (&self.cookies, self.parsed[i], self.queries[i].edns.and_then(|edns| edns.cookie))
            {
                let cookie = &packet[at as usize..at as usize + len as usize];
                let reply = &mut self.cookie_replies[i];
                proven = secrets.answer(cookie, peer_ip(&self.addresses[i]), now, reply) == cookies::Verdict::Valid;
                options = reply;
            }
            let (mut outcome, facts) = match self.parsed[i] {
                // Longer than any sane query: answer with just the header, FORMERR.
                _ if self.input_truncated[i] => (formerr(packet, output), Facts::default()),
                Err(error) => (unreadable(packet, error, output), Facts::default()),
                Ok(()) if prohibited => {
                    (refuse_prohibited(&self.identity, &self.queries[i], options, output), Facts::default())
                }
                Ok(()) => {
                    let query = &self.queries[i];
                    respond_parsed_with(zones, &self.identity, query, prefetched, Transport::Udp, options, output)
                }
            };
            if let (Some(limiter), Outcome::Reply, false) = (&self.rrl, outcome, proven) {
                let query = self.parsed[i].ok().map(|()| &self.queries[i]);
                let found = (prefetched, positive_buckets[i]);
                outcome = limit(limiter, &self.addresses[i], query, found, facts, now, &mut self.slip_count, output);
            }
            let handed_off = outcome == Outcome::HandOff && self.hand_off.is_some();
            if outcome == Outcome::HandOff {
                outcome = match &self.hand_off {
                    Some((hand_off, socket)) => {
                        if let Some(peer) = socket_addr(&self.addresses[i], self.address_lengths[i]) {
                            let local = self.locals[i];
                            let control =
                                ControlPacket { packet: packet.to_vec(), peer, socket: socket.clone(), local };
                            if hand_off.queue.try_send(control).is_err() {
                                tracing::debug!(%peer, "control queue full; dropping a control packet");
                            }
                        }
                        Outcome::Drop
                    }
                    None => respond_unsigned(zones, &self.identity, packet, Transport::Udp, output),
                };
            }
            if recursion_available && outcome == Outcome::Reply {
                set_recursion_available(output);
            }
            self.reply[i] = outcome == Outcome::Reply;
            if self.reply[i] {
                let client = (&self.addresses[i], self.address_lengths[i], self.locals[i]);
                sample(&mut self.query_log, self.local, client, packet, output);
            }
            if let Some(stats) = &self.stats {
                match outcome {
                    Outcome::Reply => stats.response(UDP, output),
                    // Handed-off control traffic is answered (and counted) elsewhere.
                    Outcome::Drop if !handed_off => stats.dropped(UDP),
                    _ => {}
                }
            }
        }
        self.plan_send(count);
    }

    /// Orders the batch's replies and lays out sendmmsg's messages: one per
    /// reply, or with GSO one per run of equal-sized replies to one peer.
    fn plan_send(&mut self, count: usize) {
        // The replies by position, with the batch index of each.
        let mut planned = [gso::Reply::default(); BATCH];
        let mut batch_index = [0u8; BATCH];
        let mut replies = 0;
        for i in 0..count {
            if self.reply[i] {
                batch_index[replies] = i as u8;
                planned[replies] =
                    gso::Reply { peer: peer_key(&self.addresses[i]), length: self.outputs[i].len() as u16 };
                replies += 1;
            }
        }
        self.message_count = if self.segment_offload && replies > 1 {
            let (addresses, lengths, locals) = (&self.addresses, &self.address_lengths, &self.locals);
            let count = gso::plan(
                &planned[..replies],
                |a, b| {
                    let (a, b) = (batch_index[a] as usize, batch_index[b] as usize);
                    // IPv4 keys are the address and port themselves. On a
                    // wildcard socket a message also leaves from one address.
                    (addresses[a].ss_family as libc::c_int == libc::AF_INET
                        || peer_bytes(addresses, lengths, a) == peer_bytes(addresses, lengths, b))
                        && locals[a] == locals[b]
                },
                &mut self.order,
                &mut self.messages,
            );
            for position in &mut self.order[..replies] {
                *position = batch_index[*position as usize];
            }
            count
        } else {
            for k in 0..replies {
                self.order[k] = batch_index[k];
                self.messages[k] = gso::Message { start: k, end: k + 1, segment: planned[k].length as usize };
            }
            replies
        };
        for k in 0..replies {
            let output = &mut self.outputs[self.order[k] as usize];
            self.send_iovecs[k] = libc::iovec { iov_base: output.as_mut_ptr().cast(), iov_len: output.len() };
        }
        for m in 0..self.message_count {
            let message = self.messages[m];
            let first = self.order[message.start] as usize;
            let header = &mut self.send_headers[m].msg_hdr;
            header.msg_name = (&mut self.addresses[first] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = self.address_lengths[first];
            header.msg_iov = &mut self.send_iovecs[message.start];
            header.msg_iovlen = message.len();
            header.msg_flags = 0;
            let control = &mut self.controls[m];
            let mut length = write_source_control(&mut control.0, self.locals[first]);
            if message.len() > 1 {
                length += write_segment_control(&mut control.0[length..], message.segment as u16);
            }
            if length > 0 {
                header.msg_control = control.0.as_mut_ptr().cast();
                header.msg_controllen = length;
            } else {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
        }
    }

    fn send(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let total = self.message_count;
        let mut sent = 0;
        let mut failure = None;
        while sent < total {
            // SAFETY: send_headers[sent..total] were filled by plan_send() and point into self.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.send_headers[sent..].as_mut_ptr(),
                    (total - sent) as libc::c_uint,
                    0,
                )
            };
            if n >= 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let message = self.messages[sent];
            if message.len() > 1 && refuses_segmentation(&e) {
                // This kernel, route or device cannot segment: say so once,
                // stop asking, and send this message's replies one by one.
                if self.segment_offload {
                    tracing::info!(error = %e, "UDP segmentation offload refused; sending replies one by one");
                    self.segment_offload = false;
                }
                for k in message.start..message.end {
                    if let Err(e) = self.send_one(socket, k) {
                        failure = Some(e);
                    }
                }
            } else {
                // Skip the message that failed (e.g. an unreachable peer) and go on.
                failure = Some(e);
            }
            sent += 1;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Sends the reply at `order[k]` alone.
    fn send_one(&self, socket: &UdpSocket, k: usize) -> io::Result<()> {
        let reply = self.order[k] as usize;
        let peer = (&self.addresses[reply] as *const libc::sockaddr_storage).cast();
        send_from(socket, (peer, self.address_lengths[reply]), &self.send_iovecs[k], self.locals[reply])
    }
}

/// Answers a query from a client recursion allows, when a forward zone
/// answers for it: from the cache, or by handing it to the forwarding
/// thread (and sending nothing now). None when the query is not the
/// forwarder's (a name a hosted zone answers, a query not to forward).
#[allow(clippy::too_many_arguments)]
#[inline]
fn forward(
    forwarding: &Forwarding,
    socket: &Arc<UdpSocket>,
    query: &Query,
    prefetched: Option<Prefetched<'_>>,
    (address, address_length, local): (&libc::sockaddr_storage, libc::socklen_t, Local),
    packet: &[u8],
    output: &mut Vec<u8>,
    stats: Option<&WorkerStats>,
) -> Option<Outcome> {
    let recursion = &forwarding.recursion;
    // The prefetch found the deepest hosted zone holding the qname.
    let hosted_apex_len = prefetched.map_or(0, |p| p.zone().apex_lower().len());
    let zone = recursion.route(query, hosted_apex_len)?;
    if recursion.answer_cached(query, udp_limit(query), output) == Lookup::Hit {
        return Some(Outcome::Reply);
    }
    let peer = socket_addr(address, address_length)?;
    let packet =
        ForwardPacket { packet: packet.to_vec(), peer, socket: socket.clone(), zone, local, handed_at: Instant::now() };
    if forwarding.queue.try_send(packet).is_err() {
        tracing::debug!(%peer, "forwarding queue full; dropping a query");
        if let Some(stats) = stats {
            stats.dropped(UDP);
        }
    }
    Some(Outcome::Drop)
}

/// Hands every `n`-th answered query and its reply to the query log.
#[inline]
fn sample(
    query_log: &mut Option<(Arc<QueryLog>, Sampler)>,
    socket: Option<SocketAddr>,
    (address, address_length, local): (&libc::sockaddr_storage, libc::socklen_t, Local),
    packet: &[u8],
    output: &[u8],
) {
    let Some((log, sampler)) = query_log else { return };
    if !sampler.take() {
        return;
    }
    let Some(client) = socket_addr(address, address_length) else { return };
    // On a wildcard socket, the address the query came to.
    let server = socket.map(|socket| match local {
        Local::V4(address) => SocketAddr::from((std::net::Ipv4Addr::from(u32::from_be(address)), socket.port())),
        Local::V6(address, _) => SocketAddr::from((std::net::Ipv6Addr::from(address), socket.port())),
        Local::Unknown => socket,
    });
    log.log(Entry {
        protocol: dnstap::Protocol::Udp,
        client,
        server,
        query: packet.to_vec(),
        response: output.to_vec(),
        time: std::time::SystemTime::now(),
    });
}

/// A peer's address as the kernel wrote it with recvmmsg.
fn socket_addr(address: &libc::sockaddr_storage, length: libc::socklen_t) -> Option<SocketAddr> {
    // SAFETY: the kernel filled this storage and its length.
    unsafe { socket2::SockAddr::new(std::ptr::read(address as *const libc::sockaddr_storage as *const _), length) }
        .as_socket()
}

/// A 64-bit key of a peer's address and port: exact for IPv4, a hash for
/// IPv6 (equal keys are then checked with [`peer_bytes`]).
fn peer_key(address: &libc::sockaddr_storage) -> u64 {
    match address.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let v4 = unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            (v4.sin_addr.s_addr as u64) << 16 | v4.sin_port as u64
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let v6 = unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let address = u128::from_ne_bytes(v6.sin6_addr.s6_addr);
            let mixed = (address as u64) ^ ((address >> 64) as u64).rotate_left(29) ^ (v6.sin6_scope_id as u64) << 17;
            // Any bits the IPv4 keys (48 bits) cannot have, so the two never meet.
            (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ v6.sin6_port as u64) | 1 << 63
        }
        _ => u64::MAX,
    }
}

/// The rate limiter's verdict on a response about to go to `address`: send
/// it, drop it, or send the truncated slip answer in its place.
#[allow(clippy::too_many_arguments)]
#[inline]
fn limit(
    limiter: &Limiter,
    address: &libc::sockaddr_storage,
    query: Option<&Query>,
    (prefetched, positive): (Option<Prefetched<'_>>, Option<(u64, u64)>),
    facts: Facts,
    now: u32,
    slip_count: &mut u32,
    output: &mut Vec<u8>,
) -> Outcome {
    // The zone's own limit, or the server's; a rate of 0 is no limit.
    let limit = prefetched.and_then(|p| p.zone().rate_limit()).unwrap_or(limiter.default_limit());
    if limit.rate == 0 || (limiter.has_exemptions() && limiter.exempt(peer_ip(address))) {
        return Outcome::Reply;
    }
    let kind = Kind::of(output, query.is_some_and(|q| q.qtype == RecordType::ANY), facts.wildcard);
    let bucket = match (kind, positive) {
        // Found with the prefetch (the client's network and the qname).
        (Kind::Positive, Some((_, bucket))) => bucket,
        (kind, positive) => {
            let network = positive.map_or_else(|| network(limiter, address), |(network, _)| network);
            // The qname's hash, which the prefetch made, or the zone's apex's.
            let name_hash = match (kind, prefetched) {
                (Kind::Error, _) | (_, None) => 0,
                (kind, Some(prefetched)) if kind.by_qname() => prefetched.hash(),
                (_, Some(prefetched)) => ferrodns_zone::name_hash(prefetched.zone().apex_lower()),
            };
            limiter.bucket(network, kind, name_hash)
        }
    };
    match limiter.check(limit, bucket, now, slip_count) {
        rrl::Verdict::Send => Outcome::Reply,
        rrl::Verdict::Drop => Outcome::Drop,
        rrl::Verdict::Slip => slip(query, output),
    }
}

/// The client's network, as the limiter keys buckets.
#[inline]
fn network(limiter: &Limiter, address: &libc::sockaddr_storage) -> u64 {
    match address.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let v4 = unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            limiter.network_v4(u32::from_be(v4.sin_addr.s_addr))
        }
        _ => limiter.network(peer_ip(address)),
    }
}

/// Rewrites `output` as the slip answer to `query`.
#[cold]
fn slip(query: Option<&Query>, output: &mut Vec<u8>) -> Outcome {
    // The question is echoed when the response has one.
    let question_end = match query {
        Some(query) if output.len() > 5 && output[5] == 1 => 12 + query.qname().len() + 4,
        _ => 12,
    };
    let edns = query.and_then(|q| q.edns.filter(|_| q.opt_count == 1)).map(|edns| edns.dnssec_ok);
    if rrl::slip(output, question_end, edns) {
        Outcome::Reply
    } else {
        Outcome::Drop
    }
}

/// The client's address from the kernel's sockaddr.
fn peer_ip(address: &libc::sockaddr_storage) -> std::net::IpAddr {
    match address.ss_family as libc::c_int {
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let v6 = unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr).into()
        }
        _ => {
            // SAFETY: a datagram socket of ours is IPv4 when not IPv6.
            let v4 = unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)).into()
        }
    }
}

/// The destination of reply `i` as octets, compared to group replies by peer.
fn peer_bytes<'a>(addresses: &'a [libc::sockaddr_storage], lengths: &[libc::socklen_t], i: usize) -> &'a [u8] {
    let length = (lengths[i] as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: sockaddr_storage is plain bytes, and `length` is within it.
    unsafe { std::slice::from_raw_parts((&addresses[i] as *const libc::sockaddr_storage).cast::<u8>(), length) }
}

/// Writes one control message of `level`/`kind` carrying `data` at the
/// start of `buffer`, which must start 8-aligned (every control message
/// before it in the buffer takes a multiple of 8 octets); returns the
/// octets it takes (CMSG_SPACE).
fn write_control<T: Copy>(buffer: &mut [u8], level: libc::c_int, kind: libc::c_int, data: T) -> usize {
    let size = std::mem::size_of::<T>() as libc::c_uint;
    // SAFETY: CMSG_LEN and CMSG_SPACE only compute sizes.
    let (length, space) = unsafe { (libc::CMSG_LEN(size) as usize, libc::CMSG_SPACE(size) as usize) };
    assert!(space <= buffer.len() && buffer.as_ptr() as usize % 8 == 0, "a control buffer too small or misaligned");
    let header = libc::cmsghdr { cmsg_len: length as _, cmsg_level: level, cmsg_type: kind };
    // SAFETY: checked above: the buffer is aligned for cmsghdr and holds
    // CMSG_SPACE(size) octets, the header and then the data CMSG_DATA
    // points to.
    unsafe {
        let cmsg = buffer.as_mut_ptr().cast::<libc::cmsghdr>();
        cmsg.write(header);
        libc::CMSG_DATA(cmsg).cast::<T>().write_unaligned(data);
    }
    space
}

/// Writes a `SOL_UDP`/`UDP_SEGMENT` control message with this segment size.
fn write_segment_control(buffer: &mut [u8], segment: u16) -> usize {
    write_control(buffer, libc::SOL_UDP, libc::UDP_SEGMENT, segment)
}

/// Writes the control message that sends a reply from `local` (nothing for
/// an unknown one: the kernel then picks the source, as without PKTINFO).
fn write_source_control(buffer: &mut [u8], local: Local) -> usize {
    match local {
        Local::Unknown => 0,
        Local::V4(address) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: address },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            write_control(buffer, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
        }
        Local::V6(address, interface) => {
            let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: address }, ipi6_ifindex: interface };
            write_control(buffer, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
        }
    }
}

/// Sends one reply to `peer` from `local` (the address its query came to,
/// on a wildcard socket), outside a worker's batch: control replies and
/// forwarded answers.
pub fn send_reply(socket: &UdpSocket, reply: &[u8], peer: SocketAddr, local: Local) -> io::Result<()> {
    let peer = socket2::SockAddr::from(peer);
    let iovec = libc::iovec { iov_base: reply.as_ptr().cast_mut().cast(), iov_len: reply.len() };
    send_from(socket, (peer.as_ptr().cast(), peer.len()), &iovec, local)
}

/// Sends the datagram `iovec` points at to the socket address `peer` (a
/// pointer and a length), from `local` when it is known.
fn send_from(
    socket: &UdpSocket,
    (peer, peer_length): (*const libc::c_void, libc::socklen_t),
    iovec: &libc::iovec,
    local: Local,
) -> io::Result<()> {
    let mut control = SendControl([0; 64]);
    let length = write_source_control(&mut control.0, local);
    // SAFETY: all-zero is a valid msghdr; every pointer set below is to
    // memory that outlives the call, and sendmsg only reads through them.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = peer.cast_mut();
    header.msg_namelen = peer_length;
    header.msg_iov = (iovec as *const libc::iovec).cast_mut();
    header.msg_iovlen = 1;
    if length > 0 {
        header.msg_control = control.0.as_mut_ptr().cast();
        header.msg_controllen = length;
    }
    // SAFETY: see above.
    if unsafe { libc::sendmsg(socket.as_raw_fd(), &header, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination of a received datagram, from its PKTINFO control message.
fn destination(header: &libc::msghdr) -> Local {
    // SAFETY: the kernel filled msg_control up to msg_controllen; the CMSG
    // macros walk it within those bounds, and each data read is of the
    // type the level and kind name, unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                let info = libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>().read_unaligned();
                return Local::V4(info.ipi_addr.s_addr);
            }
            if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                let info = libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>().read_unaligned();
                let address = info.ipi6_addr.s6_addr;
                // A link-local address means something only on its link.
                let link_local = address[0] == 0xfe && address[1] & 0xc0 == 0x80;
                return Local::V6(address, if link_local { info.ipi6_ifindex } else { 0 });
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    Local::Unknown
}

/// Errors that mean the kernel, the route or the device cannot do UDP GSO,
/// rather than that this one peer cannot be reached.
fn refuses_segmentation(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

#[cfg(test)]
impl Worker {
    /// Sets slot `i`'s client address, as recvmmsg would.
    fn set_peer(&mut self, i: usize, peer: &socket2::SockAddr) {
        // SAFETY: both are sockaddr storage, and a SockAddr's length fits in one.
        unsafe {
            std::ptr::copy_nonoverlapping(
                peer.as_ptr().cast::<u8>(),
                (&mut self.addresses[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                peer.len() as usize,
            );
        }
        self.address_lengths[i] = peer.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_worker_keeps_to_its_cpu() {
        let allowed = CpuPin::Allowed.cpus();
        assert!(!allowed.is_empty());
        assert!(CpuPin::Online.cpus().len() >= allowed.len());
        assert!(CpuPin::None.cpus().is_empty());
        let cpu = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || (pin_current_thread(cpu), allowed_cpus())).join().unwrap();
        assert_eq!(seen, (true, vec![cpu]));
    }

    #[test]
    fn the_rate_turns_polling_and_coalescing_on_and_off_by_window() {
        // The clock is the test's: a sleep on a loaded machine can overshoot
        // a 10 ms window several times over (it did, under CI), which made
        // 300 packets look like a low rate.
        let mut rate = Rate::new();
        let mut now = rate.window_start;
        rate.count_at(300, now + WINDOW / 2);
        assert!(!rate.polling, "nothing is judged before a window ends");
        now += WINDOW;
        rate.count_at(0, now);
        assert!(rate.polling && !rate.busy, "300 in a window: poll, do not coalesce");
        rate.count_at(3000, now);
        now += WINDOW;
        rate.count_at(0, now);
        assert!(rate.polling && rate.busy, "3,000 in a window: both");
        rate.count_at(150, now);
        now += WINDOW * 3;
        rate.count_at(0, now);
        assert!(!rate.polling && !rate.busy, "150 over three windows: neither");
        // 1,500 spread over a long quiet spell is a low rate.
        rate.count_at(1500, now);
        now += WINDOW * 20;
        rate.count_at(0, now);
        assert!(!rate.polling && !rate.busy, "1,500 over twenty windows: neither");
    }

    /// A worker holding `replies` (payloads) to `peer`, as answer() leaves them.
    fn worker_with_replies(peer: SocketAddr, replies: &[Vec<u8>], segment_offload: bool) -> Worker {
        let mut worker = Worker::new(segment_offload);
        let peer = socket2::SockAddr::from(peer);
        for (i, reply) in replies.iter().enumerate() {
            worker.outputs[i].clear();
            worker.outputs[i].extend_from_slice(reply);
            worker.reply[i] = true;
            worker.set_peer(i, &peer);
        }
        worker.plan_send(replies.len());
        worker
    }

    fn received(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buffer = [0u8; 2048];
        let mut got: Vec<Vec<u8>> =
            (0..count).map(|_| socket.recv(&mut buffer).map(|n| buffer[..n].to_vec()).unwrap()).collect();
        got.sort();
        got
    }

    fn replies() -> Vec<Vec<u8>> {
        // Five of one size and a shorter one: one GSO message.
        (0..6u8).map(|i| vec![i; if i == 5 { 40 } else { 100 }]).collect()
    }

    #[test]
    fn replies_to_one_peer_leave_as_one_message_and_arrive_apart() {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut worker = worker_with_replies(client.local_addr().unwrap(), &replies(), true);
        assert_eq!(worker.message_count, 1);
        worker.send(&server).unwrap();
        assert_eq!(received(&client, 6), replies());
        assert!(worker.segment_offload);
    }

    /// On a wildcard socket each reply leaves from the address its query
    /// came to, and replies to one client from two addresses are never
    /// joined into one segmented send (which has one source).
    #[test]
    fn wildcard_replies_leave_from_the_address_asked_even_when_segmented() {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
        let mut worker = Worker::new(true);
        worker.pktinfo = true;
        let peer = socket2::SockAddr::from(client.local_addr().unwrap());
        let sources = [[127, 0, 0, 2], [127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 3], [127, 0, 0, 2]];
        for (i, source) in sources.iter().enumerate() {
            worker.outputs[i].clear();
            worker.outputs[i].extend_from_slice(&[i as u8; 40]);
            worker.reply[i] = true;
            worker.set_peer(i, &peer);
            worker.locals[i] = Local::V4(u32::from_ne_bytes(*source));
        }
        worker.plan_send(sources.len());
        assert_eq!(worker.message_count, 2, "one segmented send per source address");
        worker.send(&server).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let mut buffer = [0u8; 64];
        for _ in 0..sources.len() {
            let (_, from) = client.recv_from(&mut buffer).unwrap();
            got.push((buffer[0], from.ip().to_string()));
        }
        got.sort();
        let want: Vec<(u8, String)> =
            sources.iter().enumerate().map(|(i, s)| (i as u8, std::net::Ipv4Addr::from(*s).to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_socket_that_refuses_segmentation_gets_the_replies_one_by_one() {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Without UDP checksums the kernel refuses GSO (EINVAL).
        set_int_option(&socket2::SockRef::from(&server), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let mut worker = worker_with_replies(client.local_addr().unwrap(), &replies(), true);
        worker.send(&server).unwrap();
        assert_eq!(received(&client, 6), replies());
        assert!(!worker.segment_offload, "the worker stops asking for segmentation");
        let mut worker = worker_with_replies(client.local_addr().unwrap(), &replies(), false);
        assert_eq!(worker.message_count, 6, "without GSO, one message per reply");
        worker.send(&server).unwrap();
        assert_eq!(received(&client, 6), replies());
    }
}

/// A deterministic load for profiling the worker's user-space path without
/// sockets: `FERRODNS_REPLAY_ZONE` (a master file) and
/// `FERRODNS_REPLAY_QUERIES` (dnsperf's `name type` lines) are answered in
/// batches of 50, queries as dnsperf sends them (no EDNS, RD set), replies
/// planned for eight client sockets. Run the release test binary with
/// `--ignored --exact udp::replay::replay_for_profiling` under callgrind or perf.
#[cfg(test)]
mod replay {
    use super::*;

    #[test]
    #[ignore = "a profiling load, not a check; see the module docs"]
    fn replay_for_profiling() {
        let (Some(zone), Some(queries)) =
            (std::env::var_os("FERRODNS_REPLAY_ZONE"), std::env::var_os("FERRODNS_REPLAY_QUERIES"))
        else {
            eprintln!("set FERRODNS_REPLAY_ZONE and FERRODNS_REPLAY_QUERIES");
            return;
        };
        let zone = ferrodns_zone::load_zone_file(std::path::Path::new(&zone), false).expect("the zone loads").zone;
        let mut set = ZoneSet::new();
        set.insert(Arc::new(zone));
        let text = std::fs::read_to_string(queries).unwrap();
        let packets: Vec<Vec<u8>> = text
            .lines()
            .filter_map(|line| {
                let (name, rtype) = line.split_once(' ')?;
                let name = ferrodns_proto::Name::parse(name, None).ok()?;
                let rtype = ferrodns_proto::RecordType::from_mnemonic(rtype.trim())?;
                let mut packet = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                packet.extend_from_slice(name.as_wire());
                packet.extend_from_slice(&rtype.0.to_be_bytes());
                packet.extend_from_slice(&[0, 1]);
                Some(packet)
            })
            .collect();
        let rounds: usize = std::env::var("FERRODNS_REPLAY_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
        let mut worker = Worker::new(true);
        let clients: Vec<socket2::SockAddr> =
            (0..8).map(|i| socket2::SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 40000 + i)))).collect();
        let started = Instant::now();
        let mut answered = 0;
        for _ in 0..rounds {
            for batch in packets.chunks(50) {
                for (i, packet) in batch.iter().enumerate() {
                    worker.inputs[i * RECEIVE_STRIDE..i * RECEIVE_STRIDE + packet.len()].copy_from_slice(packet);
                    worker.input_lengths[i] = packet.len();
                    worker.input_truncated[i] = false;
                    worker.set_peer(i, &clients[(answered + i) % clients.len()]);
                }
                worker.answer(&set, batch.len());
                answered += batch.len();
            }
        }
        let elapsed = started.elapsed();
        eprintln!("{answered} answers, {:.0} ns each", elapsed.as_nanos() as f64 / answered as f64);
    }
}
