//! The authoritative answer path: query bytes in, response bytes out.
//!
//! [`respond`] is a fixed stack of layers, each of which either answers (with
//! an rcode) or lets the query continue:
//!
//! ```text
//!   bytes ─▶ parse ─▶ control? ─▶ opcode ─▶ edns ─▶ question ─▶ zone ─▶ resolve ─▶ bytes
//!            │        │           │         │       │            │         │
//!            drop/    hand off    NOTIMP/   BADVERS FORMERR/     REFUSED/  NOERROR/NXDOMAIN/
//!            FORMERR              NOTAUTH   FORMERR NOTIMP/      SERVFAIL  YXDOMAIN
//!                                                   REFUSED/
//!                                                   CH answers
//! ```
//!
//! Every answer to a query with EDNS carries the server's NSID when the
//! query asks for it and one is set ([`ServerIdentity`]), and the refusals
//! and failures that have a reason to tell carry an Extended DNS Error
//! (RFC 8914): Not Authoritative for a name in none of our zones, Invalid
//! Data for an expired zone, Prohibited for a transfer this path does not
//! serve or a version not told.
//!
//! Control traffic (NOTIFY, AXFR and IXFR, and anything TSIG-signed) is not
//! answered here: [`respond`] returns [`Outcome::HandOff`] and the transport
//! passes it to the replication service, which may await the journal and
//! signs what it sends. [`respond_unsigned`] answers such a message as a plain
//! query would be (NOTIMP, REFUSED, or an unsigned answer), for transports
//! without that service and for the service itself.
//!
//! The engine is synchronous and does no I/O; transports call it with a
//! borrowed zone set and a reusable output buffer. It does not allocate per
//! query: the message writer works in the caller's buffer and every scratch
//! space here is a fixed-size array on the stack.

pub mod identity;
pub mod transfer;

pub use identity::{ServerIdentity, ANONYMOUS};

use ferrodns_proto::message::{ede, flags, write_plain_answer, EdeOption, Section, HEADER_LEN, OPT_LEN};
use ferrodns_proto::name::{self, NameBuf, MAX_NAME_LEN};
use ferrodns_proto::rdata::additional_name_at;
use ferrodns_proto::{
    parse_query_into, Class, MessageWriter, Opcode, Query, QueryError, Rcode, RdataLayout, RecordType,
};
use ferrodns_zone::{Answer, Lookup, Node, RRset, SetProbe, Zone, ZoneSet};

/// The messages that answer a handed-off request (`Outcome::HandOff`), made
/// one at a time: a zone transfer is written as it is framed and never held
/// whole. The transport asks for the next message only once it has sent the
/// last one.
pub trait Replies: Send {
    /// Writes the next message into `out`, replacing what it held; false
    /// when there are no more.
    fn next_message(&mut self, out: &mut Vec<u8>) -> bool;
}

/// Messages already made.
impl Replies for std::vec::IntoIter<Vec<u8>> {
    fn next_message(&mut self, out: &mut Vec<u8>) -> bool {
        match self.next() {
            Some(message) => {
                *out = message;
                true
            }
            None => false,
        }
    }
}

/// The largest UDP response we send when the client's EDNS buffer allows it
/// (DNS Flag Day 2020 default, which also avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Longest CNAME/DNAME chain we follow before stopping, which also bounds loops.
const MAX_CHAIN: usize = 12;

/// The transport a query came over; it sets the response size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the transport should do with the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the bytes in the buffer.
    Reply,
    /// Send nothing (not a query, or too broken to answer).
    Drop,
    /// Control traffic (NOTIFY, a zone transfer, or a TSIG-signed message):
    /// nothing was written; the replication service answers it.
    HandOff,
}

/// Answers one query from `zones`, writing the response into `out`, or
/// hands control traffic back to the caller. The server tells nothing about
/// itself ([`ANONYMOUS`]).
pub fn respond(zones: &ZoneSet, packet: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
    respond_inner(zones, &ANONYMOUS, packet, transport, out, true)
}

/// As [`respond`] as `server`, but answers control traffic as a plain query:
/// NOTIFY gets NOTAUTH (we take it from no one), a transfer NOTIMP over UDP
/// (as Knot and NSD answer) and REFUSED over TCP, and a signed query an
/// unsigned answer.
pub fn respond_unsigned(
    zones: &ZoneSet,
    server: &ServerIdentity,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    respond_inner(zones, server, packet, transport, out, false)
}

/// True for what [`respond`] hands off: NOTIFY, AXFR, IXFR, TSIG-signed.
pub fn is_control(query: &Query) -> bool {
    query.opcode == Opcode::NOTIFY || query.signed || matches!(query.qtype, RecordType::AXFR | RecordType::IXFR)
}

#[inline]
fn respond_inner(
    zones: &ZoneSet,
    server: &ServerIdentity,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
    hand_off: bool,
) -> Outcome {
    let mut query = Query::new();
    match parse_query_into(packet, &mut query) {
        Ok(()) => answer(zones, server, &query, None, transport, &[], out, hand_off).0,
        Err(error) => unreadable(packet, error, out),
    }
}

/// As [`respond`], for a query the transport has already parsed (with
/// [`parse_query_into`]) and prefetched: the zone and hash that
/// [`prefetch`] found are used instead of being looked up again. `prefetched`
/// must come from the same `zones`.
pub fn respond_parsed(
    zones: &ZoneSet,
    query: &Query,
    prefetched: Option<Prefetched<'_>>,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    answer(zones, &ANONYMOUS, query, prefetched, transport, &[], out, true).0
}

/// What an answer was made from, for a transport that rate-limits responses
/// by kind ([`respond_parsed_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The answer was synthesized from a wildcard (RFC 4592).
    pub wildcard: bool,
}

/// As [`respond_parsed`] as `server`, adding `options` to the response's OPT
/// record when the query had EDNS (EDNS options already framed: code,
/// length, data; a DNS cookie, say), within the size limit; and telling what
/// the answer was made from.
pub fn respond_parsed_with(
    zones: &ZoneSet,
    server: &ServerIdentity,
    query: &Query,
    prefetched: Option<Prefetched<'_>>,
    transport: Transport,
    options: &[u8],
    out: &mut Vec<u8>,
) -> (Outcome, Facts) {
    answer(zones, server, query, prefetched, transport, options, out, true)
}

/// The outcome for a datagram [`parse_query_into`] could not read: nothing,
/// or FORMERR written into `out`.
pub fn unreadable(packet: &[u8], error: QueryError, out: &mut Vec<u8>) -> Outcome {
    match error {
        QueryError::Drop => Outcome::Drop,
        QueryError::FormErr => formerr(packet, out),
    }
}

/// Room for the options of one answer: a cookie (at most 44 octets) and an
/// NSID (at most 132).
const MAX_OPTIONS: usize = 192;

#[inline]
#[allow(clippy::too_many_arguments)]
fn answer(
    zones: &ZoneSet,
    server: &ServerIdentity,
    query: &Query,
    prefetched: Option<Prefetched<'_>>,
    transport: Transport,
    options: &[u8],
    out: &mut Vec<u8>,
    hand_off: bool,
) -> (Outcome, Facts) {
    if hand_off && is_control(query) {
        return (Outcome::HandOff, Facts::default());
    }
    let mut joined = [0u8; MAX_OPTIONS];
    let options = with_nsid(server, query, options, &mut joined);
    let limit = match (transport, query.edns) {
        (Transport::Tcp, _) => u16::MAX as usize,
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(edns)) => edns.udp_payload.clamp(512, MAX_UDP_PAYLOAD) as usize,
    };
    // Copy opcode, RD and CD from the query (RFC 1035 §4.1.1, RFC 6840 §5.9).
    let copied = query.flags & (flags::OPCODE | flags::RD | flags::CD);
    let mut first = None;
    if let Some(prefetched) = prefetched.filter(|p| plain(query, p.zone)) {
        let lookup = prefetched.zone.lookup_hashed(query.qname_lower(), prefetched.hash, query.qtype);
        if write_plain(query, lookup, flags::QR | copied, limit, options, out) {
            return (Outcome::Reply, Facts { wildcard: lookup.wildcard });
        }
        first = Some(lookup);
    }
    // The options are the transport's and small (a cookie is 28 octets).
    let reserve = if query.edns.is_some() { OPT_LEN + options.len() } else { 0 };
    let mut writer = MessageWriter::new(out, limit - reserve);
    writer.set_header(query.id, flags::QR | copied);
    let mut context =
        Context { zones, server, query, transport, prefetched, first, zone: None, wildcard: false, ede: None };
    let rcode = layers(&mut context, &mut writer);
    finish(query, rcode, options, context.ede, &mut writer);
    (Outcome::Reply, Facts { wildcard: context.wildcard })
}

/// The transport's `options` and, when the query asks for it (RFC 5001
/// §2.2: only then) and there is one, the NSID, in `joined`.
#[inline]
fn with_nsid<'o>(
    server: &ServerIdentity,
    query: &Query,
    options: &'o [u8],
    joined: &'o mut [u8; MAX_OPTIONS],
) -> &'o [u8] {
    match (query.edns.is_some_and(|edns| edns.nsid), server.nsid_option()) {
        (true, Some(nsid)) => joined_in(options, nsid, joined).unwrap_or(options),
        _ => options,
    }
}

/// `first` then `second` in `room`, or `None` when they do not fit.
#[inline]
fn joined_in<'o>(first: &[u8], second: &[u8], room: &'o mut [u8]) -> Option<&'o [u8]> {
    let len = first.len() + second.len();
    let joined = room.get_mut(..len)?;
    joined[..first.len()].copy_from_slice(first);
    joined[first.len()..].copy_from_slice(second);
    Some(joined)
}

/// REFUSED, Prohibited (RFC 8914), for a query the server could answer but
/// policy does not let this client have: one for a forward zone from a
/// client outside the recursion ACL, as BIND answers a denied recursion.
/// The question is echoed; `options` are the transport's, as for
/// [`respond_parsed_with`].
pub fn refuse_prohibited(server: &ServerIdentity, query: &Query, options: &[u8], out: &mut Vec<u8>) -> Outcome {
    let ede = EdeOption::new(ede::PROHIBITED, "recursion");
    write_error_reply(server, query, Rcode::REFUSED, false, options, Some(ede), out);
    Outcome::Reply
}

/// A reply of the question and `rcode` alone (AA when `authoritative`), and
/// OPT when the query had EDNS: with `options`, the NSID when asked, and
/// `ede`. The transfer service's refusals and errors are written so.
pub fn write_error_reply(
    server: &ServerIdentity,
    query: &Query,
    rcode: Rcode,
    authoritative: bool,
    options: &[u8],
    ede: Option<EdeOption>,
    out: &mut Vec<u8>,
) {
    let mut joined = [0u8; MAX_OPTIONS];
    let options = with_nsid(server, query, options, &mut joined);
    let reserve = if query.edns.is_some() { OPT_LEN + options.len() } else { 0 };
    let mut writer = MessageWriter::new(out, u16::MAX as usize - reserve);
    let aa = if authoritative { flags::AA } else { 0 };
    writer.set_header(query.id, flags::QR | aa | (query.flags & (flags::OPCODE | flags::RD | flags::CD)));
    let _ = writer.push_question(query.qname(), query.qtype, query.qclass);
    finish(query, rcode, options, ede, &mut writer);
}

/// True when no layer before the resolve layer has anything to say about
/// this query (QUERY, class IN, plain EDNS if any, an ordinary qtype, its
/// zone current and found by the prefetch): then a lookup's answer decides
/// everything, and [`write_plain`] may write it.
#[inline]
fn plain(query: &Query, zone: &Zone) -> bool {
    query.opcode == Opcode::QUERY
        && query.qclass == Class::IN
        && query.opt_count <= 1
        && query.edns.is_none_or(|edns| edns.version == 0)
        && !matches!(
            query.qtype,
            RecordType::AXFR
                | RecordType::IXFR
                | RecordType::OPT
                | RecordType::TSIG
                | RecordType::TKEY
                | RecordType::MAILA
                | RecordType::MAILB
                | RecordType::ANY
                | RecordType::DS
        )
        && !zone.is_expired()
}

/// The commonest answer in one pass: for a [`plain`] query whose lookup
/// found the RRset asked for (at the qname or from a wildcard), of a type
/// whose RDATA has no name to compress and that asks for no additional
/// section, the response is the question, that RRset and OPT, authoritative
/// and NOERROR, which `write_plain_answer` writes as the layers would.
/// False when the answer is anything else, or does not fit.
#[inline]
fn write_plain(
    query: &Query,
    lookup: Lookup<'_>,
    flag_word: u16,
    limit: usize,
    options: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Answer::Found(_, rrset) = lookup.answer else { return false };
    if RdataLayout::of(rrset.rtype) != RdataLayout::Opaque || additional_name_at(rrset.rtype).is_some() {
        return false;
    }
    let opt = query.edns.filter(|_| query.opt_count == 1).map(|edns| (MAX_UDP_PAYLOAD, edns.dnssec_ok, options));
    write_plain_answer(
        out,
        query.id,
        flag_word | flags::AA,
        query.qname(),
        rrset.rtype,
        query.qclass,
        rrset.ttl,
        rrset.packed(),
        opt,
        limit,
    )
}

/// What the layers share: the inputs, and what earlier layers decided.
struct Context<'a> {
    zones: &'a ZoneSet,
    server: &'a ServerIdentity,
    query: &'a Query,
    transport: Transport,
    /// What the transport's prefetch found for the qname, if it ran.
    prefetched: Option<Prefetched<'a>>,
    /// The qname's lookup in the prefetch's zone, when [`answer`] made it
    /// already: the resolve layer's first step.
    first: Option<Lookup<'a>>,
    /// The zone the zone layer chose for the qname.
    zone: Option<&'a Zone>,
    /// The resolve layer answered from a wildcard.
    wildcard: bool,
    /// Why the layer that decided the rcode decided it (RFC 8914), for an
    /// answer with EDNS.
    ede: Option<EdeOption>,
}

/// One layer of the stack: `Some(rcode)` decides the reply, `None` continues.
type Layer = fn(&mut Context<'_>, &mut MessageWriter<'_>) -> Option<Rcode>;

/// A query whose zone is on its way into cache: the zone its qname falls in
/// and the hash of the qname, for the later prefetch stages and then for
/// [`respond_parsed`], which looks neither up again.
#[derive(Clone, Copy)]
pub struct Prefetched<'z> {
    zone: &'z Zone,
    hash: u64,
}

impl<'z> Prefetched<'z> {
    /// The zone the qname falls in.
    pub fn zone(&self) -> &'z Zone {
        self.zone
    }

    /// The qname's [`ferrodns_zone::name_hash`].
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// The first prefetch stage: works out where the search for the qname's
/// zone starts and starts loading that slot of the zone set. A transport
/// holding a batch runs each stage over every packet before the next one
/// ([`prefetch_set`], [`prefetch_set_entry`], [`prefetch`], [`prefetch_node`]),
/// then answers them, so that the memory loads of one packet overlap those
/// of the others instead of stalling one by one; with many zones every step
/// of the way is cold.
/// Each stage takes the lowercase qname of the query the transport parsed
/// (with [`parse_query_into`]) for [`respond_parsed`]; packets that do not
/// parse skip the stages.
pub fn prefetch_set(zones: &ZoneSet, qname_lower: &[u8]) -> SetProbe {
    let probe = zones.probe(qname_lower);
    zones.prefetch(probe);
    probe
}

/// Once the slot is in cache: start loading the zone-set entry it points to.
pub fn prefetch_set_entry(zones: &ZoneSet, probe: SetProbe) {
    zones.prefetch_entry(probe);
}

/// Finds the zone of the qname and starts loading what the lookup reads
/// first: the zone's header, base header and apex, and the qname's index slot
/// (all at once: the zone set keeps their addresses).
pub fn prefetch<'z>(zones: &'z ZoneSet, qname_lower: &[u8], probe: SetProbe) -> Option<Prefetched<'z>> {
    let hash = ferrodns_zone::name_hash(qname_lower);
    let zone = zones.find_prefetching(qname_lower, probe, hash)?;
    Some(Prefetched { zone, hash })
}

/// Last stage: reads the slot [`prefetch`] loaded and starts loading the
/// node it points to.
pub fn prefetch_node(prefetched: Prefetched<'_>) {
    prefetched.zone.prefetch_node(prefetched.hash);
}

/// The layer stack, in order. Each layer returns `Some(rcode)` when it has
/// decided the answer, `None` to pass the query on.
fn layers(context: &mut Context<'_>, writer: &mut MessageWriter<'_>) -> Rcode {
    let stack: [Layer; 5] = [opcode_layer, edns_layer, question_layer, zone_layer, resolve_layer];
    for layer in stack {
        if let Some(rcode) = layer(context, writer) {
            return rcode;
        }
    }
    Rcode::SERVFAIL
}

/// Only QUERY is served; the rest get NOTIMP (RFC 1035 §4.1.1), but for a
/// NOTIFY that reaches this layer: the server does take NOTIFY, only not
/// from this sender, for no zone it follows (the secondary role answers the
/// others), and says NOTAUTH as Knot does (docs/differences.md). The
/// question is echoed for every opcode that carries one.
fn opcode_layer(context: &mut Context<'_>, writer: &mut MessageWriter<'_>) -> Option<Rcode> {
    let query = context.query;
    let _ = writer.push_question(query.qname(), query.qtype, query.qclass);
    match query.opcode {
        Opcode::QUERY => None,
        Opcode::NOTIFY => Some(Rcode::NOTAUTH),
        _ => Some(Rcode::NOTIMP),
    }
}

/// RFC 6891 §6.1.1: more than one OPT is FORMERR; §6.1.3: a version above 0 is BADVERS.
fn edns_layer(context: &mut Context<'_>, _: &mut MessageWriter<'_>) -> Option<Rcode> {
    let query = context.query;
    if query.opt_count > 1 {
        return Some(Rcode::FORMERR);
    }
    match query.edns {
        Some(edns) if edns.version > 0 => Some(Rcode::BADVERS),
        _ => None,
    }
}

/// Question checks: class IN (or ANY), or the server's CH-class names; no
/// transfers here; no meta types.
fn question_layer(context: &mut Context<'_>, writer: &mut MessageWriter<'_>) -> Option<Rcode> {
    let query = context.query;
    if query.qclass == Class::CH {
        return Some(chaos(context, writer));
    }
    if query.qclass != Class::IN && query.qclass != Class::ANY {
        return Some(Rcode::REFUSED);
    }
    match query.qtype {
        // A transfer over UDP is not a thing (RFC 5936 §4.2; IXFR over UDP
        // is answered by the transfer service, which has the journal): NOTIMP,
        // as Knot and NSD answer. Over TCP the transfer service serves them;
        // reaching this path, none is allowed.
        RecordType::AXFR | RecordType::IXFR if context.transport == Transport::Udp => Some(Rcode::NOTIMP),
        RecordType::AXFR | RecordType::IXFR => {
            context.ede = Some(EdeOption::new(ede::PROHIBITED, ""));
            Some(Rcode::REFUSED)
        }
        RecordType::OPT | RecordType::TSIG | RecordType::TKEY => Some(Rcode::FORMERR),
        RecordType::MAILA | RecordType::MAILB => Some(Rcode::NOTIMP),
        _ => None,
    }
}

/// The CH-class TXT names Knot and NSD answer: `id.server` and
/// `hostname.bind` with the identity, `version.bind` and `version.server`
/// with the version, when each is set; not authoritative, TTL 0, the owner
/// as asked. Anything else in class CH is REFUSED; a version not told says
/// Prohibited, as NSD's `hide-version` does.
fn chaos(context: &mut Context<'_>, writer: &mut MessageWriter<'_>) -> Rcode {
    let query = context.query;
    if query.qtype != RecordType::TXT {
        return Rcode::REFUSED;
    }
    match context.server.chaos_txt(query.qname_lower()) {
        Ok(rdata) => {
            if writer.push_at_question(Section::Answer, RecordType::TXT, Class::CH, 0, rdata).is_err() {
                writer.set_truncated();
            }
            Rcode::NOERROR
        }
        Err(policy) => {
            if policy {
                context.ede = Some(EdeOption::new(ede::PROHIBITED, ""));
            }
            Rcode::REFUSED
        }
    }
}

/// A qname outside every zone we serve is REFUSED (we are not a resolver),
/// Not Authoritative; an expired zone is SERVFAIL, Invalid Data (as Knot
/// says of a zone without contents).
fn zone_layer(context: &mut Context<'_>, _: &mut MessageWriter<'_>) -> Option<Rcode> {
    context.zone = match context.prefetched {
        // The prefetch found the qname's deepest zone, which is the answer
        // but for DS at an apex.
        Some(prefetched) if context.query.qtype != RecordType::DS => Some(prefetched.zone),
        _ => zone_for(context.zones, context.query.qname_lower(), context.query.qtype),
    };
    match context.zone {
        // A secondary's copy past its SOA expire must not be served (RFC 1035 §4.3.5).
        Some(zone) if zone.is_expired() => {
            context.ede = Some(EdeOption::new(ede::INVALID_DATA, "zone expired"));
            Some(Rcode::SERVFAIL)
        }
        Some(_) => None,
        None => {
            context.ede = Some(EdeOption::new(ede::NOT_AUTHORITATIVE, ""));
            Some(Rcode::REFUSED)
        }
    }
}

/// Picks the zone for a name. A DS query at a zone apex belongs to the parent
/// side of the cut (RFC 4035 §3.1.4.1), so it goes to the parent zone when we
/// serve that too.
fn zone_for<'z>(zones: &'z ZoneSet, name_lower: &[u8], qtype: RecordType) -> Option<&'z Zone> {
    let zone = zones.find(name_lower)?;
    if qtype == RecordType::DS && zone.apex_lower() == name_lower && name_lower.len() > 1 {
        let parent = &name_lower[1 + name_lower[0] as usize..];
        if let Some(parent_zone) = zones.find(parent) {
            return Some(parent_zone);
        }
    }
    Some(zone)
}

/// The current link of a CNAME/DNAME chain, as written and lowercased: the
/// qname itself until the chain moves on, so that most answers copy nothing.
struct ChainName<'q> {
    query: &'q Query,
    moved: bool,
    wire: NameBuf,
    lower: NameBuf,
}

impl<'q> ChainName<'q> {
    fn new(query: &'q Query) -> ChainName<'q> {
        ChainName { query, moved: false, wire: NameBuf::new(), lower: NameBuf::new() }
    }
    fn set(&mut self, wire: &[u8]) {
        self.wire.set(wire);
        self.lower.set_lowercase(wire);
        self.moved = true;
    }
    fn wire(&self) -> &[u8] {
        if self.moved {
            self.wire.as_slice()
        } else {
            self.query.qname()
        }
    }
    fn lower(&self) -> &[u8] {
        if self.moved {
            self.lower.as_slice()
        } else {
            self.query.qname_lower()
        }
    }
}

/// RFC 1034 §4.3.2 steps 3–6 across the zones we serve, following CNAME and
/// DNAME chains, then additional-section processing.
fn resolve_layer(context: &mut Context<'_>, writer: &mut MessageWriter<'_>) -> Option<Rcode> {
    let (zones, query) = (context.zones, context.query);
    let zone = context.zone?;
    // The prefetch's hash is the qname's, and good for the first lookup only
    // (and only in the zone it was found for).
    let in_prefetched_zone = context.prefetched.is_some_and(|p| std::ptr::eq(p.zone, zone));
    let mut qname_hash = context.prefetched.filter(|_| in_prefetched_zone).map(|p| p.hash);
    let mut first = context.first.take().filter(|_| in_prefetched_zone);
    let mut current = ChainName::new(query);
    let mut visited = [[0u8; 8]; MAX_CHAIN];
    let mut visited_count = 0;
    let mut rcode = Rcode::NOERROR;
    let qtype = query.qtype;
    writer.set_authoritative(true);
    for step in 0..MAX_CHAIN {
        let lookup = match (first.take(), qname_hash.take()) {
            (Some(lookup), _) => lookup,
            (None, Some(hash)) => zone.lookup_hashed(current.lower(), hash, qtype),
            (None, None) => zone.lookup(current.lower(), qtype),
        };
        let owner_is_qname = lookup.wildcard;
        context.wildcard |= lookup.wildcard;
        match lookup.answer {
            Answer::Found(node, rrset) => {
                let owner = if owner_is_qname { current.wire() } else { node.name() };
                if push_owned(writer, &current, owner, rrset).is_err() {
                    return Some(rcode);
                }
                additional_for(zone, zones, rrset, writer);
                break;
            }
            Answer::Any(node) => {
                // RFC 8482 §4.1: one RRset answers ANY. Like Knot (and NSD), the
                // lowest type, over UDP and TCP alike.
                let owner = if owner_is_qname { current.wire() } else { node.name() };
                if node.rrsets().next().is_some_and(|first| push_owned(writer, &current, owner, first).is_err()) {
                    return Some(rcode);
                }
                break;
            }
            Answer::NoData(_) => {
                push_soa(zone, writer);
                break;
            }
            Answer::NxDomain => {
                rcode = Rcode::NXDOMAIN;
                push_soa(zone, writer);
                break;
            }
            Answer::Referral(cut) => {
                if step == 0 {
                    writer.set_authoritative(false);
                }
                let ns = cut.rrset(RecordType::NS).expect("a referral node has NS");
                if push(writer, Section::Authority, cut.name(), ns).is_err() {
                    return Some(rcode);
                }
                additional_for(zone, zones, ns, writer);
                break;
            }
            Answer::Cname(node, cname) => {
                let owner = if owner_is_qname { current.wire() } else { node.name() };
                if push_owned(writer, &current, owner, cname).is_err() {
                    return Some(rcode);
                }
                current.set(cname.first());
                if !seen(&mut visited, &mut visited_count, current.lower()) {
                    break;
                }
            }
            Answer::Dname(node, dname) => {
                if push(writer, Section::Answer, node.name(), dname).is_err() {
                    return Some(rcode);
                }
                // RFC 6672 §2.2: replace the DNAME owner suffix of the qname with the target.
                let target = dname.first();
                let prefix_len = current.wire().len() - node.name().len();
                let new_len = prefix_len + target.len();
                if new_len > MAX_NAME_LEN {
                    return Some(Rcode::YXDOMAIN);
                }
                // The synthesized CNAME's RDATA, packed: length, then the new name. The
                // prefix comes from the qname lowercased, as Knot and NSD write it.
                let mut rdata_packed = [0u8; MAX_NAME_LEN + 2];
                rdata_packed[..2].copy_from_slice(&(new_len as u16).to_be_bytes());
                rdata_packed[2..2 + prefix_len].copy_from_slice(&current.lower()[..prefix_len]);
                rdata_packed[2 + prefix_len..2 + new_len].copy_from_slice(target);
                let synthesized_owner: &[u8] = current.wire();
                if writer
                    .push_rrset(
                        Section::Answer,
                        synthesized_owner,
                        RecordType::CNAME,
                        dname.ttl,
                        &rdata_packed[..2 + new_len],
                    )
                    .is_err()
                {
                    writer.set_truncated();
                    return Some(rcode);
                }
                // For qtype CNAME the synthesized CNAME is itself the answer.
                if qtype == RecordType::CNAME {
                    break;
                }
                current.set(&rdata_packed[2..2 + new_len]);
                if !seen(&mut visited, &mut visited_count, current.lower()) {
                    break;
                }
            }
        }
        // Like Knot, follow the chain only inside this zone: data from another
        // zone would ride on this zone's authority, and the resolver asks anyway.
        if !name::is_subdomain(current.lower(), zone.apex_lower()) {
            break;
        }
    }
    Some(rcode)
}

/// Remembers a chain target (lowercase) by a cheap fingerprint; false when seen
/// before, which means a loop.
fn seen(visited: &mut [[u8; 8]; MAX_CHAIN], count: &mut usize, target_lower: &[u8]) -> bool {
    let fingerprint = fingerprint(target_lower);
    if visited[..*count].contains(&fingerprint) {
        return false;
    }
    if *count < MAX_CHAIN {
        visited[*count] = fingerprint;
        *count += 1;
    }
    true
}

fn fingerprint(name_lower: &[u8]) -> [u8; 8] {
    // FNV-1a: collisions only shorten a chain early, never loop it.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name_lower {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    hash.to_be_bytes()
}

/// Writes an RRset into a section; on overflow sets TC (RFC 2181 §9) and reports it.
fn push(writer: &mut MessageWriter<'_>, section: Section, owner: &[u8], rrset: RRset<'_>) -> Result<(), ()> {
    writer.push_rrset(section, owner, rrset.rtype, rrset.ttl, rrset.packed()).map_err(|_| writer.set_truncated())
}

/// As [`push`] for an RRset owned by the chain's current name: while that is
/// still the qname, the writer points each owner at the question directly.
fn push_owned(
    writer: &mut MessageWriter<'_>,
    current: &ChainName<'_>,
    owner: &[u8],
    rrset: RRset<'_>,
) -> Result<(), ()> {
    if current.moved {
        return push(writer, Section::Answer, owner, rrset);
    }
    writer
        .push_rrset_at_question(Section::Answer, owner, rrset.rtype, rrset.ttl, rrset.packed())
        .map_err(|_| writer.set_truncated())
}

/// The zone's SOA in the authority section with the negative-caching TTL
/// (RFC 2308 §3). Leaving it out when it does not fit is harmless, so no TC.
fn push_soa(zone: &Zone, writer: &mut MessageWriter<'_>) {
    let apex = zone.apex_node();
    let soa = zone.soa();
    let _ = writer.push_rrset(Section::Authority, apex.name(), RecordType::SOA, zone.negative_ttl(), soa.packed());
}

/// RFC 1034 §4.3.2 step 6 and RFC 2782: addresses of NS, MX and SRV targets,
/// from the zone's own data or glue, as space allows.
fn additional_for(zone: &Zone, zones: &ZoneSet, rrset: RRset<'_>, writer: &mut MessageWriter<'_>) {
    let Some(offset) = additional_name_at(rrset.rtype) else { return };
    for rdata in rrset.rdatas() {
        // No address record (a pointer, ten octets and four) fits any more:
        // the rest of a large RRset's targets are not looked up.
        if writer.len() + 16 > writer.limit() {
            break;
        }
        let Some(target) = rdata.get(offset..) else {
            continue;
        };
        let mut lower = NameBuf::new();
        lower.set_lowercase(target);
        let target_lower = lower.as_slice();
        let node = if name::is_subdomain(target_lower, zone.apex_lower()) {
            zone.node(target_lower)
        } else {
            zones.find(target_lower).and_then(|z| z.node(target_lower))
        };
        if let Some(node) = node {
            push_addresses(node, writer);
        }
    }
}

fn push_addresses(node: Node<'_>, writer: &mut MessageWriter<'_>) {
    for rtype in [RecordType::A, RecordType::AAAA] {
        if let Some(rrset) = node.rrset(rtype) {
            let _ = writer.push_rrset(Section::Additional, node.name(), rtype, rrset.ttl, rrset.packed());
        }
    }
}

/// Sets the rcode and appends OPT when the query had EDNS, with `options`
/// and the EDE when there is one and it fits (the answers that have one are
/// a question and little else).
fn finish(query: &Query, rcode: Rcode, options: &[u8], ede: Option<EdeOption>, writer: &mut MessageWriter<'_>) {
    writer.set_rcode(rcode);
    if let Some(edns) = query.edns {
        if query.opt_count == 1 {
            let limit = writer.limit() + OPT_LEN + options.len();
            writer.set_limit(limit);
            let mut joined = [0u8; MAX_OPTIONS + 6 + ferrodns_proto::message::MAX_EDE_TEXT];
            let options = match &ede {
                Some(ede) if writer.len() + OPT_LEN + options.len() + ede.as_bytes().len() <= limit => {
                    joined_in(options, ede.as_bytes(), &mut joined).unwrap_or(options)
                }
                _ => options,
            };
            writer.push_opt(MAX_UDP_PAYLOAD, rcode.extended_bits(), edns.dnssec_ok, options);
        }
    }
}

/// FORMERR for a query that cannot be read: the header's id, opcode, RD and CD
/// echoed, no sections (RFC 1035 §4.1.1). Anything shorter than a header, or
/// with QR set, gets no reply. Transports use this too, for datagrams too long
/// to have been read whole.
pub fn formerr(packet: &[u8], out: &mut Vec<u8>) -> Outcome {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let rcode = Rcode::FORMERR;
    out.clear();
    out.extend_from_slice(&packet[..2]);
    let flag_word = u16::from_be_bytes([packet[2], packet[3]]);
    let copied = flag_word & (flags::OPCODE | flags::RD | flags::CD);
    out.extend_from_slice(&(flags::QR | copied | rcode.header_bits() as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Outcome::Reply
}
