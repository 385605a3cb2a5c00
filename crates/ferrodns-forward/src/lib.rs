//! Forward zones and their cache: the part of ferrodns that answers for
//! names it does not host, by asking named resolvers.
//!
//! [`Recursion`] holds what the transports need: who may use it
//! (`--recursion-allow`), the forward zones ([`table::ForwardTable`]), the
//! cache ([`cache::Cache`]) and the misses in flight. A UDP worker asks
//! [`Recursion::route`] which forward zone, if any, answers a query (the
//! most specific zone wins, hosted or forward), answers hits from the cache
//! itself ([`Recursion::answer_cached`]), and hands misses to the async
//! side, where [`Recursion::answer`] coalesces identical misses into one
//! upstream query, tries the zone's forwarders by measured RTT, keeps what
//! may be kept, and falls back to a stale answer (RFC 8767) or SERVFAIL.
//!
//! A chain that leaves a forward zone is followed into the forward zone
//! that answers for its end ([`wire::join`]). The plan for what is still
//! missing (forward zones on secondaries, forwarders over TLS, the
//! benchmark figures) is in ARCHITECTURE.md.

pub mod cache;
pub mod table;
pub mod upstream;
pub mod wire;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrodns_proto::message::flags;
use ferrodns_proto::name;
use ferrodns_proto::network::Network;
use ferrodns_proto::{Class, Opcode, Query, Rcode, RecordType};
use tokio::sync::{oneshot, Semaphore};

use cache::{Cache, Lookup};
use table::{ForwardTable, ForwardZone};
use wire::{read_reply, Packed, Question, Reply, Served, TtlLimits};

/// Misses one server asks forwarders about at once; more wait for a turn
/// (Unbound's `num-queries-per-thread` is 1024 a thread).
pub const MAX_FETCHES: usize = 2048;
/// Client queries that may wait on one miss; more are dropped (the client
/// asks again).
pub const MAX_WAITERS: usize = 1024;
/// The longest one miss may take over all its forwarders.
const FETCH_DEADLINE: Duration = Duration::from_secs(4);

/// The hosted zones, as routing needs them: the length of the apex of the
/// deepest hosted zone holding a name (0 when none does).
pub trait HostedZones: Send + Sync + 'static {
    fn deepest_apex_len(&self, name_lower: &[u8]) -> usize;
}

/// Recursion's settings.
#[derive(Clone, Debug)]
pub struct RecursionSettings {
    /// Clients whose queries may be forwarded.
    pub allow: Vec<Network>,
    /// The cache's memory cap, in octets.
    pub cache_size: usize,
    /// How long past its TTL an answer may be served stale; zero turns
    /// serve-stale off.
    pub serve_stale: Duration,
    pub ttl_limits: TtlLimits,
    /// CA certificates (PEM) trusted for forwarders over TLS besides the
    /// system's (`--forward-tls-ca`).
    pub tls_roots: Option<std::path::PathBuf>,
}

impl Default for RecursionSettings {
    fn default() -> RecursionSettings {
        RecursionSettings {
            allow: default_allow(),
            cache_size: 64 << 20,
            serve_stale: Duration::from_secs(86_400),
            ttl_limits: TtlLimits::default(),
            tls_roots: None,
        }
    }
}

/// Loopback only: a new install is never an open resolver.
pub fn default_allow() -> Vec<Network> {
    vec![Network::parse("127.0.0.0/8").expect("literal"), Network::parse("::1").expect("literal")]
}

/// A forward zone: its apex and forwarders.
pub type ZoneSpec = (ferrodns_proto::Name, Vec<table::ForwarderAddr>);

#[derive(Default)]
struct ZoneSources {
    fixed: Vec<ZoneSpec>,
    stored: Vec<ZoneSpec>,
}

type Waiters = Mutex<HashMap<Vec<u8>, Vec<oneshot::Sender<Option<Packed>>>>>;

/// Forwarding and its cache; see the crate docs.
pub struct Recursion {
    allow: Vec<Network>,
    table: ArcSwap<ForwardTable>,
    cache: Arc<Cache>,
    hosted: Arc<dyn HostedZones>,
    limits: TtlLimits,
    /// The zones given at start (`--forward-zone`) and the stored ones
    /// (the API's), which make the table together.
    zones: Mutex<ZoneSources>,
    /// Misses being fetched, by question key, with the queries waiting.
    waiting: Arc<Waiters>,
    fetches: Arc<Semaphore>,
    /// How forwarders over TLS are reached.
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Recursion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursion").field("zones", &self.table.load().len()).finish()
    }
}

impl Recursion {
    /// Fails when the TLS roots cannot be read.
    pub fn new(settings: &RecursionSettings, hosted: Arc<dyn HostedZones>) -> Result<Arc<Recursion>, String> {
        let tls = upstream::tls_connector(settings.tls_roots.as_deref())?;
        Ok(Arc::new(Recursion {
            allow: settings.allow.clone(),
            table: ArcSwap::from_pointee(ForwardTable::default()),
            cache: Arc::new(Cache::new(
                settings.cache_size,
                settings.serve_stale.as_secs().min(u32::MAX as u64) as u32,
            )),
            hosted,
            limits: settings.ttl_limits,
            zones: Mutex::default(),
            waiting: Arc::default(),
            fetches: Arc::new(Semaphore::new(MAX_FETCHES)),
            tls,
        }))
    }

    /// Sets the forward zones given at start (`--forward-zone`).
    pub fn set_fixed_zones(&self, zones: Vec<ZoneSpec>) {
        let mut sources = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        sources.fixed = zones;
        self.rebuild(&sources);
    }

    /// Sets the stored forward zones (the API's). A stored zone named like
    /// one given at start is left out: the one given at start answers.
    pub fn set_stored_zones(&self, zones: Vec<ZoneSpec>) {
        let mut sources = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        sources.stored = zones;
        self.rebuild(&sources);
    }

    /// Sets the stored forward zones from their text form (a database's
    /// or a catalog's, as `ForwarderAddr` writes it); a forwarder that does
    /// not read is left out and logged, and its zone kept, so that its
    /// names never fall through to a less specific forwarder.
    pub fn set_stored_zones_text(&self, zones: Vec<(ferrodns_proto::Name, Vec<String>)>, from: &str) {
        let zones = zones
            .into_iter()
            .map(|(apex, texts)| {
                let forwarders = texts
                    .iter()
                    .filter_map(|text| {
                        table::ForwarderAddr::parse(text)
                            .inspect_err(|error| {
                                tracing::warn!(zone = %apex, error, from, "a stored forwarder does not read; left out")
                            })
                            .ok()
                    })
                    .collect();
                (apex, forwarders)
            })
            .collect();
        self.set_stored_zones(zones);
    }

    /// Whether `apex` (lowercase) is a forward zone given at start.
    pub fn is_fixed_zone(&self, apex: &ferrodns_proto::Name) -> bool {
        self.zones.lock().unwrap_or_else(|e| e.into_inner()).fixed.iter().any(|(name, _)| name == apex)
    }

    fn rebuild(&self, sources: &ZoneSources) {
        let mut zones = sources.fixed.clone();
        for zone in &sources.stored {
            if !zones.iter().any(|(apex, _)| *apex == zone.0) {
                zones.push(zone.clone());
            }
        }
        let previous = self.table.load();
        self.table.store(Arc::new(ForwardTable::new(&zones, Some(&previous))));
    }

    pub fn table(&self) -> Arc<ForwardTable> {
        self.table.load_full()
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// True when there is any forward zone: only then is recursion offered
    /// (RA set, queries forwarded).
    pub fn is_active(&self) -> bool {
        !self.table.load().is_empty()
    }

    /// Whether `client` may have its queries forwarded.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = ferrodns_proto::network::canonical(client);
        self.allow.iter().any(|network| network.contains(client))
    }

    /// The forward zone that answers `query`, when one does: an ordinary
    /// query (QUERY, class IN, RD set, not signed, a type a resolver answers) for a
    /// name inside a forward zone deeper than `hosted_apex_len`, the apex
    /// length of the deepest hosted zone holding it (0 for none). The caller
    /// has checked the client with [`Recursion::allows`].
    pub fn route(&self, query: &Query, hosted_apex_len: usize) -> Option<Arc<ForwardZone>> {
        if !forwardable(query) {
            return None;
        }
        self.table.load().find(query.qname_lower(), hosted_apex_len).cloned()
    }

    /// Answers `query` from the cache when it can.
    pub fn answer_cached(&self, query: &Query, limit: usize, out: &mut Vec<u8>) -> Lookup {
        self.cache.answer(query, self.cache.now(), limit, out)
    }

    /// Answers `query`, which `zone` answers for: from the cache, else from
    /// the zone's forwarders (one fetch for every identical miss in
    /// flight), else stale, else SERVFAIL. False when the query is dropped
    /// instead (too many already waiting on that miss).
    pub async fn answer(&self, query: &Query, zone: Arc<ForwardZone>, limit: usize, out: &mut Vec<u8>) -> bool {
        if self.answer_cached(query, limit, out) == Lookup::Hit {
            return true;
        }
        self.answer_from_forwarders(query, zone, limit, out).await
    }

    /// As [`Recursion::answer`], for a query whose cache miss was counted
    /// already (a UDP worker's): the cache is looked at again, uncounted,
    /// since the answer may have arrived meanwhile.
    pub async fn answer_missed(&self, query: &Query, zone: Arc<ForwardZone>, limit: usize, out: &mut Vec<u8>) -> bool {
        if self.cache.answer_again(query, self.cache.now(), limit, out) == Lookup::Hit {
            return true;
        }
        self.answer_from_forwarders(query, zone, limit, out).await
    }

    /// The answer to a query the cache missed: one fetch for every
    /// identical miss in flight, else stale, else SERVFAIL; false when the
    /// query is dropped (too many waiting on that miss).
    async fn answer_from_forwarders(
        &self,
        query: &Query,
        zone: Arc<ForwardZone>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let question = Question::of(query);
        let key = question.key();
        let (sender, receiver) = oneshot::channel();
        let first = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get_mut(&key) {
                Some(waiters) if waiters.len() >= MAX_WAITERS => return false,
                Some(waiters) => {
                    waiters.push(sender);
                    false
                }
                None => {
                    waiting.insert(key.clone(), vec![sender]);
                    true
                }
            }
        };
        if first {
            self.spawn_fetch(query, zone, key);
        }
        match receiver.await.ok().flatten() {
            Some(packed) => {
                packed.write_reply(query, 0, Served::Fresh, limit, out);
                true
            }
            None => {
                if !self.cache.answer_stale(query, self.cache.now(), limit, out) {
                    Packed::failure(&question, Rcode::SERVFAIL).write_reply(query, 0, Served::Unreachable, limit, out);
                }
                true
            }
        }
    }

    /// Fetches the answer to `query` on a task of its own, so that a client
    /// that leaves does not cancel it for the others, and hands it to every
    /// query waiting on `key`.
    fn spawn_fetch(&self, query: &Query, zone: Arc<ForwardZone>, key: Vec<u8>) {
        let query = query.clone();
        let waiting = self.waiting.clone();
        let fetches = self.fetches.clone();
        let hosted = self.hosted.clone();
        let table = self.table.load_full();
        let limits = self.limits;
        let cache = self.cache.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let question = Question::of(&query);
            let result = match tokio::time::timeout(FETCH_DEADLINE, fetches.acquire()).await {
                Ok(Ok(_permit)) => resolve(&question, zone, &table, hosted.as_ref(), limits, &tls).await,
                _ => None,
            };
            match &result {
                Some(packed) => cache.insert(&question, packed.clone(), cache.now()),
                None => {
                    cache.upstream_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let waiters = waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&key).unwrap_or_default();
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        });
    }
}

/// Whether a record owned by `owner` (lowercase) may be kept from an answer
/// of `zone`'s forwarders: it lies in `zone`, and in no zone of ours, hosted
/// or forward, more specific than it.
fn belongs(owner: &[u8], zone: &Arc<ForwardZone>, table: &ForwardTable, hosted: &dyn HostedZones) -> bool {
    let apex = zone.apex().as_wire();
    name::is_subdomain(owner, apex)
        && hosted.deepest_apex_len(owner) < apex.len()
        && table.find(owner, 0).is_some_and(|deepest| Arc::ptr_eq(deepest, zone))
}

/// The answer to `question` from `zone`'s forwarders, its CNAME or DNAME
/// chain followed into the forward zones that answer for the names it
/// leads to (as Unbound follows it), at most [`wire::MAX_CHAIN`] zones
/// deep; None when no forwarder answered or the chain runs too long. A
/// chain that leads to a hosted zone or to no zone ends there.
async fn resolve(
    question: &Question<'_>,
    zone: Arc<ForwardZone>,
    table: &ForwardTable,
    hosted: &dyn HostedZones,
    limits: TtlLimits,
    tls: &tokio_rustls::TlsConnector,
) -> Option<Packed> {
    let in_zone = |zone: &Arc<ForwardZone>| {
        let zone = zone.clone();
        move |owner: &[u8]| belongs(owner, &zone, table, hosted)
    };
    let (mut answer, mut chase) = fetch(question, &zone, in_zone(&zone), limits, tls).await?;
    let mut hops = 0;
    while let Some(target) = chase.take() {
        hops += 1;
        if hops > wire::MAX_CHAIN {
            return None;
        }
        let Some(next) = table.find(target.as_wire(), hosted.deepest_apex_len(target.as_wire())).cloned() else {
            break;
        };
        let step = Question { name_lower: target.as_wire(), ..*question };
        let (rest, next_chase) = fetch(&step, &next, in_zone(&next), limits, tls).await?;
        answer = wire::join(question, &answer, &rest);
        chase = next_chase;
    }
    Some(answer)
}

/// Asks `zone`'s forwarders, fastest first, until one answers with
/// something usable; a forwarder over TLS always over TLS, the others over
/// TCP when a reply comes truncated, and at once for ANY (a forwarder answers ANY over UDP with one RRset, RFC 8482, and
/// in full over TCP, which Unbound asks for too).
async fn fetch(
    question: &Question<'_>,
    zone: &ForwardZone,
    belongs: impl Fn(&[u8]) -> bool,
    limits: TtlLimits,
    tls: &tokio_rustls::TlsConnector,
) -> Option<(Packed, Option<ferrodns_proto::Name>)> {
    let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
    for upstream in upstream::order(zone.upstreams()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let first_try = async {
            if upstream.address().tls_name.is_some() {
                upstream::query_tls(&upstream, question, left, tls).await
            } else if question.qtype == RecordType::ANY {
                upstream::query_tcp(&upstream, question, left).await
            } else {
                upstream::query_udp(&upstream, question).await
            }
        };
        let mut reply = match tokio::time::timeout(left, first_try).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!(forwarder = %upstream.address(), error = %e, "forwarder gave no reply");
                continue;
            }
            Err(_) => break,
        };
        // A reply over TCP or TLS is never truncated for size.
        let mut over_tcp = question.qtype == RecordType::ANY || upstream.address().tls_name.is_some();
        loop {
            match read_reply(&reply, question, &belongs, limits) {
                Ok(Reply::Answer(packed, chase)) => return Some((packed, chase)),
                Ok(Reply::Truncated) if !over_tcp => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match upstream::query_tcp(&upstream, question, left).await {
                        Ok(tcp_reply) => {
                            reply = tcp_reply;
                            over_tcp = true;
                        }
                        Err(e) => {
                            tracing::debug!(forwarder = %upstream.address(), error = %e, "no reply over TCP");
                            break;
                        }
                    }
                }
                Ok(Reply::Truncated) => break,
                Ok(Reply::Failed(rcode)) => {
                    tracing::debug!(forwarder = %upstream.address(), rcode = rcode.0, "forwarder failed the query");
                    break;
                }
                Err(e) => {
                    tracing::debug!(forwarder = %upstream.address(), error = %e, "unusable reply");
                    break;
                }
            }
        }
    }
    None
}

/// Whether a query may be forwarded at all.
fn forwardable(query: &Query) -> bool {
    query.opcode == Opcode::QUERY
        && query.qclass == Class::IN
        && !query.signed
        && query.opt_count <= 1
        && query.edns.is_none_or(|edns| edns.version == 0)
        && query.flags & flags::QR == 0
        // A query without RD asks what we hold ourselves, as Unbound takes it.
        && query.flags & flags::RD != 0
        // ANY goes to the forwarder; transfers, OPT, TSIG and the rest do not.
        && (!query.qtype.is_meta_or_question_only() || query.qtype == RecordType::ANY)
}

/// A random 16-bit number from the OS (query ids).
pub(crate) fn random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        return (nanos ^ (nanos >> 16)) as u16;
    }
    u16::from_be_bytes(bytes)
}
