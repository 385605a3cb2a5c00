//! Messages to and from forwarders, and the form an answer is kept in.
//!
//! A forwarder's reply is read once, when it arrives ([`read_reply`]): every
//! record is checked and decompressed, records that do not belong (outside
//! the forward zone that asked, or not on the question's CNAME chain) are
//! left out, TTLs are capped, OPT and TSIG are dropped, and what remains is
//! written again as a message of our own, with the positions of its TTL
//! fields, as a [`Packed`] answer. Answering a client from it
//! ([`Packed::write_reply`]) is then a copy and a few patches: the client's
//! id, flags and qname case, each TTL counted down by the answer's age, and
//! the client's OPT.

use ferrodns_proto::message::{ede, flags, opt_record, EdeOption, HEADER_LEN, OPT_LEN};
use ferrodns_proto::name::{self, NameBuf};
use ferrodns_proto::{rdata, Class, MessageWriter, Name, Query, Rcode, RecordType, Section};

/// The longest CNAME chain an answer may hold, across zones too.
pub const MAX_CHAIN: usize = 12;

/// The EDNS payload size we offer forwarders (DNS Flag Day 2020).
pub const UPSTREAM_PAYLOAD: u16 = 1232;
/// The largest UDP reply we send a client that allows it, as the answer
/// path does.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// How a reply is served, which its TTLs and its Extended DNS Error tell
/// (RFC 8914, with the codes BIND and Knot Resolver use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// From a forwarder or the cache, within its TTL.
    Fresh,
    /// From the cache past its TTL, every forwarder failing (RFC 8767):
    /// Stale Answer.
    Stale,
    /// SERVFAIL, every forwarder failing and nothing kept: No Reachable
    /// Authority.
    Unreachable,
}

impl Served {
    fn ede(self) -> Option<EdeOption> {
        match self {
            Served::Fresh => None,
            Served::Stale => Some(EdeOption::new(ede::STALE_ANSWER, "")),
            Served::Unreachable => Some(EdeOption::new(ede::NO_REACHABLE_AUTHORITY, "no forwarder answered")),
        }
    }
}

/// The TTL a stale answer is given (RFC 8767 §4 suggests 30 seconds).
pub const STALE_TTL: u32 = 30;

/// What an answer is cached and shared by: the question, lowercased, and
/// the two query flags that change the answer (DO brings RRSIGs; CD asks a
/// validating forwarder not to validate).
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    pub name_lower: &'a [u8],
    pub qtype: RecordType,
    pub qclass: Class,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl<'a> Question<'a> {
    /// The question of a client's query.
    pub fn of(query: &'a Query) -> Question<'a> {
        Question {
            name_lower: query.qname_lower(),
            qtype: query.qtype,
            qclass: query.qclass,
            dnssec_ok: query.edns.is_some_and(|edns| edns.dnssec_ok),
            checking_disabled: query.flags & flags::CD != 0,
        }
    }

    /// The flags of the key, as one octet.
    pub fn key_flags(&self) -> u8 {
        self.dnssec_ok as u8 | (self.checking_disabled as u8) << 1
    }

    /// The key as octets: name, type, class, flags.
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.name_lower.len() + 5);
        key.extend_from_slice(self.name_lower);
        key.extend_from_slice(&self.qtype.0.to_be_bytes());
        key.extend_from_slice(&self.qclass.0.to_be_bytes());
        key.push(self.key_flags());
        key
    }
}

/// Writes the query we send a forwarder: RD set (a forwarder resolves for
/// us), CD as the client sent it, and EDNS with our payload size and the
/// client's DO bit.
pub fn write_query(id: u16, question: &Question<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    let flag_word = flags::RD | if question.checking_disabled { flags::CD } else { 0 };
    out.extend_from_slice(&flag_word.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    out.extend_from_slice(question.name_lower);
    out.extend_from_slice(&question.qtype.0.to_be_bytes());
    out.extend_from_slice(&question.qclass.0.to_be_bytes());
    out.extend_from_slice(&opt_record(UPSTREAM_PAYLOAD, 0, question.dnssec_ok, 0));
}

/// Whether `reply` is a response to the query we sent with `id` for
/// `question`: the id, QR, opcode QUERY, and the one question, equal
/// ignoring case. Anything else on the socket is ignored.
pub fn answers(reply: &[u8], id: u16, question: &Question<'_>) -> bool {
    if reply.len() < HEADER_LEN || reply[..2] != id.to_be_bytes() {
        return false;
    }
    let flag_word = u16::from_be_bytes([reply[2], reply[3]]);
    if flag_word & flags::QR == 0 || flag_word & flags::OPCODE != 0 || reply[4..6] != [0, 1] {
        return false;
    }
    let name_end = HEADER_LEN + question.name_lower.len();
    let Some(name) = reply.get(HEADER_LEN..name_end) else { return false };
    // A compressed question is legal but nobody sends one; it is not ours.
    if !name::eq_ignore_case(name, question.name_lower) || name::wire_len(name) != Ok(name.len()) {
        return false;
    }
    reply
        .get(name_end..name_end + 4)
        .is_some_and(|rest| rest[..2] == question.qtype.0.to_be_bytes() && rest[2..] == question.qclass.0.to_be_bytes())
}

/// Bounds on what a cached answer may claim.
#[derive(Clone, Copy, Debug)]
pub struct TtlLimits {
    /// The longest any record is kept (a day, as Unbound and BIND).
    pub max: u32,
    /// The longest a negative answer is kept (RFC 2308 §5 suggests one to
    /// three hours; Unbound keeps one).
    pub max_negative: u32,
}

impl Default for TtlLimits {
    fn default() -> TtlLimits {
        TtlLimits { max: 86_400, max_negative: 3_600 }
    }
}

/// What a forwarder's reply amounts to.
#[derive(Debug)]
pub enum Reply {
    /// An answer (NOERROR or NXDOMAIN), checked and ready to serve; with
    /// the name its CNAME or DNAME chain ends at when the answer stops
    /// there (the forwarder left the rest to another zone), for the caller
    /// to follow ([`join`]).
    Answer(Packed, Option<Name>),
    /// TC was set: ask again over TCP.
    Truncated,
    /// Another rcode (SERVFAIL, REFUSED, ...): ask another forwarder.
    Failed(Rcode),
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    Malformed(String),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Malformed(what) => write!(f, "malformed reply: {what}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Reads a forwarder's reply to `question` (already matched with
/// [`answers`]). `belongs` says whether a record's owner (lowercase wire)
/// may be kept: inside the forward zone that asked and in no more specific
/// zone of ours. A reply that does not parse is an error as a whole.
pub fn read_reply(
    reply: &[u8],
    question: &Question<'_>,
    belongs: impl Fn(&[u8]) -> bool,
    limits: TtlLimits,
) -> Result<Reply, ReplyError> {
    let bad = |what: &str| ReplyError::Malformed(what.to_string());
    let flag_word = u16::from_be_bytes([reply[2], reply[3]]);
    if flag_word & flags::TC != 0 {
        return Ok(Reply::Truncated);
    }
    let rcode = Rcode(flag_word & 0x0f);
    if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
        return Ok(Reply::Failed(rcode));
    }
    let count = |at: usize| u16::from_be_bytes([reply[at], reply[at + 1]]) as usize;
    let counts = [count(6), count(8), count(10)];
    let mut pos = HEADER_LEN + question.name_lower.len() + 4;

    let mut message = Vec::with_capacity(reply.len());
    let mut writer = MessageWriter::new(&mut message, u16::MAX as usize);
    writer.set_header(0, flags::QR | flags::RA | rcode.header_bits() as u16);
    writer.push_question(question.name_lower, question.qtype, question.qclass).map_err(|_| bad("question"))?;

    // The names on the question's CNAME chain, lowercase: the answer
    // section keeps only their records.
    let mut chain: Vec<NameBuf> = vec![lowercase(question.name_lower)];
    let mut answered = false;
    let mut has_soa = false;
    let mut lifetime = limits.max;
    let mut owner = NameBuf::new();
    let mut owner_lower = NameBuf::new();
    let mut rdata = Vec::new();
    for (section_index, &records) in counts.iter().enumerate() {
        let section = [Section::Answer, Section::Authority, Section::Additional][section_index];
        for _ in 0..records {
            let after = name::read_compressed(reply, pos, &mut owner).map_err(|_| bad("owner name"))?;
            let fixed = reply.get(after..after + 10).ok_or_else(|| bad("record header"))?;
            let rtype = RecordType(u16::from_be_bytes([fixed[0], fixed[1]]));
            let class = Class(u16::from_be_bytes([fixed[2], fixed[3]]));
            let mut ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
            let end = after + 10 + u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
            if end > reply.len() {
                return Err(bad("RDATA runs past the message"));
            }
            pos = end;
            // OPT and TSIG are the hop's, not the answer's.
            if matches!(rtype, RecordType::OPT | RecordType::TSIG) || class != question.qclass {
                continue;
            }
            owner_lower.set_lowercase(owner.as_slice());
            let owner_lower = owner_lower.as_slice();
            if !belongs(owner_lower) {
                continue;
            }
            let on_chain = chain.iter().any(|name| name.as_slice() == owner_lower);
            if section == Section::Answer {
                let covers = |name: &NameBuf| name::is_subdomain(name.as_slice(), owner_lower);
                if !(on_chain || rtype == RecordType::DNAME && chain.iter().any(covers)) {
                    continue;
                }
            }
            rdata.clear();
            rdata::decompress(reply, after + 10, end, rtype, &mut rdata)
                .map_err(|e| ReplyError::Malformed(format!("{rtype} record: {e}")))?;
            if section == Section::Answer {
                // Asked for the CNAME itself, the chain is not followed.
                if rtype == RecordType::CNAME && on_chain && question.qtype != RecordType::CNAME {
                    let target = lowercase(&rdata);
                    // A chain that comes back to itself cannot be answered
                    // (Unbound and BIND answer SERVFAIL).
                    if chain.iter().any(|name| name.as_slice() == target.as_slice()) || chain.len() >= MAX_CHAIN {
                        return Ok(Reply::Failed(Rcode::SERVFAIL));
                    }
                    chain.push(target);
                }
                answered |= on_chain && (rtype == question.qtype || question.qtype == RecordType::ANY);
            }
            if rtype == RecordType::SOA && section == Section::Authority {
                // RFC 2308 §5: a negative answer lives as long as the lesser
                // of the SOA's TTL and its MINIMUM field.
                let minimum = rdata.len().checked_sub(4).map(|at| u32::from_be_bytes(rdata[at..].try_into().unwrap()));
                ttl = ttl.min(minimum.unwrap_or(0)).min(limits.max_negative);
                has_soa = true;
            }
            ttl = ttl.min(limits.max);
            lifetime = lifetime.min(ttl);
            writer.push_record(section, owner.as_slice(), rtype, ttl, &rdata).map_err(|_| bad("too large"))?;
        }
    }
    // A negative answer without an SOA says nothing of how long it holds
    // (RFC 2308 §5): it is served, not kept.
    let negative = rcode == Rcode::NXDOMAIN || !answered;
    // A chain that stops short, with nothing said of its end (no SOA): the
    // rest is another zone's, which the caller asks.
    let chase = (rcode == Rcode::NOERROR && !answered && !has_soa && chain.len() > 1)
        .then(|| chain.pop().and_then(|end| Name::from_wire(end.as_slice()).ok()))
        .flatten();
    if negative && !has_soa {
        lifetime = 0;
    }
    Ok(Reply::Answer(Packed::new(question.key_flags(), lifetime, message), chase))
}

fn lowercase(wire: &[u8]) -> NameBuf {
    let mut name = NameBuf::new();
    name.set_lowercase(&wire[..name::wire_len(wire).unwrap_or(wire.len())]);
    name
}

/// An answer as the cache keeps it, in one allocation:
///
/// ```text
///   [0]          the key's flags (DO, CD)
///   [1..5]       lifetime in seconds: how long it stays fresh
///   [5..7]       n, the number of records
///   [7..7+2n]    where each record's TTL sits in the message
///   [7+2n..]     the message: header (id 0), question (lowercase), records
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed").field("lifetime", &self.lifetime()).field("len", &self.message().len()).finish()
    }
}

impl Packed {
    fn new(key_flags: u8, lifetime: u32, message: Vec<u8>) -> Packed {
        let offsets = ttl_offsets(&message);
        let mut bytes = Vec::with_capacity(7 + 2 * offsets.len() + message.len());
        bytes.push(key_flags);
        bytes.extend_from_slice(&lifetime.to_be_bytes());
        bytes.extend_from_slice(&(offsets.len() as u16).to_be_bytes());
        for offset in &offsets {
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        bytes.extend_from_slice(&message);
        Packed(bytes.into_boxed_slice())
    }

    /// A failure to pass on (SERVFAIL when nothing could be had), never cached.
    pub fn failure(question: &Question<'_>, rcode: Rcode) -> Packed {
        let mut message = Vec::new();
        let mut writer = MessageWriter::new(&mut message, u16::MAX as usize);
        writer.set_header(0, flags::QR | flags::RA | rcode.header_bits() as u16);
        let _ = writer.push_question(question.name_lower, question.qtype, question.qclass);
        Packed::new(question.key_flags(), 0, message)
    }

    fn record_count(&self) -> usize {
        u16::from_be_bytes([self.0[5], self.0[6]]) as usize
    }

    fn message_start(&self) -> usize {
        7 + 2 * self.record_count()
    }

    /// The message as stored (id 0, TTLs as received, capped).
    pub fn message(&self) -> &[u8] {
        &self.0[self.message_start()..]
    }

    /// Seconds the answer stays fresh from when it was received; 0 means
    /// it is not to be cached.
    pub fn lifetime(&self) -> u32 {
        u32::from_be_bytes([self.0[1], self.0[2], self.0[3], self.0[4]])
    }

    /// The rcode the forwarder answered.
    pub fn rcode(&self) -> Rcode {
        Rcode((self.message()[3] & 0x0f) as u16)
    }

    /// Octets held, for the cache's memory count.
    pub fn size(&self) -> usize {
        self.0.len()
    }

    /// Whether the question's name is `name_lower` or below it.
    pub fn owner_is_at_or_below(&self, name_lower: &[u8]) -> bool {
        let message = self.message();
        let len = name::wire_len(&message[HEADER_LEN..]).unwrap_or(0);
        name::is_subdomain(&message[HEADER_LEN..HEADER_LEN + len], name_lower)
    }

    /// Whether this is the answer to `question` (the key's name, type,
    /// class and flags).
    pub fn is_for(&self, question: &Question<'_>) -> bool {
        let message = self.message();
        let name_end = HEADER_LEN + question.name_lower.len();
        self.0[0] == question.key_flags()
            && message.get(HEADER_LEN..name_end) == Some(question.name_lower)
            && message.get(name_end..name_end + 4).is_some_and(|rest| {
                rest[..2] == question.qtype.0.to_be_bytes() && rest[2..] == question.qclass.0.to_be_bytes()
            })
    }

    /// Writes the reply to `query` (whose question this answers) into
    /// `out`: the client's id, opcode, RD and CD, RA set, AA and AD clear;
    /// the qname as the client wrote it; every TTL less `age` seconds, or
    /// [`STALE_TTL`] when served stale; OPT when the query had one, with the
    /// Extended DNS Error that `served` calls for. An answer longer than
    /// `limit` is sent as its header and question with TC set, for the
    /// client to ask again over TCP.
    pub fn write_reply(&self, query: &Query, age: u32, served: Served, limit: usize, out: &mut Vec<u8>) {
        let message = self.message();
        let stale = served == Served::Stale;
        let opt = query.edns.is_some() && query.opt_count == 1;
        let ede = served.ede().filter(|_| opt);
        let ede = ede.as_ref().map_or(&[][..], EdeOption::as_bytes);
        let room = limit.saturating_sub(if opt { OPT_LEN + ede.len() } else { 0 });
        let question_end = HEADER_LEN + query.qname().len() + 4;
        out.clear();
        let truncated = message.len() > room;
        if truncated {
            out.extend_from_slice(&message[..question_end]);
            out[6..12].fill(0);
        } else {
            out.extend_from_slice(message);
            for k in 0..self.record_count() {
                let at = u16::from_be_bytes([self.0[7 + 2 * k], self.0[8 + 2 * k]]) as usize;
                let ttl = u32::from_be_bytes(out[at..at + 4].try_into().expect("four octets"));
                let ttl = if stale { STALE_TTL } else { ttl.saturating_sub(age) };
                out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
            }
        }
        out[..2].copy_from_slice(&query.id.to_be_bytes());
        let copied = query.flags & (flags::OPCODE | flags::RD | flags::CD);
        let stored = u16::from_be_bytes([message[2], message[3]]);
        let mut flag_word = flags::QR | flags::RA | copied | (stored & 0x0f);
        if truncated {
            flag_word |= flags::TC;
        }
        out[2..4].copy_from_slice(&flag_word.to_be_bytes());
        out[HEADER_LEN..HEADER_LEN + query.qname().len()].copy_from_slice(query.qname());
        if let Some(edns) = query.edns.filter(|_| opt) {
            out.extend_from_slice(&opt_record(MAX_UDP_PAYLOAD, 0, edns.dnssec_ok, ede.len()));
            out.extend_from_slice(ede);
            let additional = u16::from_be_bytes([out[10], out[11]]) + 1;
            out[10..12].copy_from_slice(&additional.to_be_bytes());
        }
    }
}

/// The answer to `question` whose chain `first` (an answer of one zone)
/// ends at the name `second` answers, from another zone: `first`'s answer
/// records, then `second`'s, and `second`'s rcode and authority (its SOA,
/// for a negative answer); it lives as long as the shorter of the two.
pub fn join(question: &Question<'_>, first: &Packed, second: &Packed) -> Packed {
    let mut message = Vec::with_capacity(first.message().len() + second.message().len());
    let mut writer = MessageWriter::new(&mut message, u16::MAX as usize);
    writer.set_header(0, flags::QR | flags::RA | second.rcode().header_bits() as u16);
    let _ = writer.push_question(question.name_lower, question.qtype, question.qclass);
    let mut rdata = Vec::new();
    let mut owner = NameBuf::new();
    for (packed, sections) in [(first, &[Section::Answer][..]), (second, &[Section::Answer, Section::Authority][..])] {
        let message = packed.message();
        let _ = each_record(message, &mut owner, &mut rdata, &mut |section, owner, rtype, ttl, rdata| {
            if sections.contains(&section) {
                let _ = writer.push_record(section, owner, rtype, ttl, rdata);
            }
        });
    }
    Packed::new(question.key_flags(), first.lifetime().min(second.lifetime()), message)
}

/// What [`each_record`] hands over: a record's section, owner, type, TTL
/// and RDATA.
type RecordVisitor<'a> = dyn FnMut(Section, &[u8], RecordType, u32, &[u8]) + 'a;

/// Calls `each` with every record of a message we wrote, names
/// decompressed.
fn each_record(
    message: &[u8],
    owner: &mut NameBuf,
    rdata: &mut Vec<u8>,
    each: &mut RecordVisitor<'_>,
) -> Result<(), ReplyError> {
    let bad = |what: &str| ReplyError::Malformed(what.to_string());
    let count = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]) as usize;
    let counts = [count(6), count(8), count(10)];
    let mut pos = HEADER_LEN + skip_name(message, HEADER_LEN) + 4;
    for (index, &records) in counts.iter().enumerate() {
        let section = [Section::Answer, Section::Authority, Section::Additional][index];
        for _ in 0..records {
            let after = name::read_compressed(message, pos, owner).map_err(|_| bad("owner"))?;
            let fixed = message.get(after..after + 10).ok_or_else(|| bad("record"))?;
            let rtype = RecordType(u16::from_be_bytes([fixed[0], fixed[1]]));
            let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
            let end = after + 10 + u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
            rdata.clear();
            rdata::decompress(message, after + 10, end, rtype, rdata).map_err(|e| bad(&e.to_string()))?;
            each(section, owner.as_slice(), rtype, ttl, rdata);
            pos = end;
        }
    }
    Ok(())
}

/// Where each record's TTL sits in a message we wrote (so well formed).
fn ttl_offsets(message: &[u8]) -> Vec<u16> {
    let count = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]) as usize;
    let records = count(6) + count(8) + count(10);
    let mut offsets = Vec::with_capacity(records);
    let mut pos = HEADER_LEN;
    pos += skip_name(message, pos) + 4;
    for _ in 0..records {
        pos += skip_name(message, pos);
        offsets.push((pos + 4) as u16);
        let rdlen = u16::from_be_bytes([message[pos + 8], message[pos + 9]]) as usize;
        pos += 10 + rdlen;
    }
    offsets
}

/// The length of the (possibly compressed) name at `pos` as it sits there.
fn skip_name(message: &[u8], mut pos: usize) -> usize {
    let start = pos;
    loop {
        let len = message[pos];
        if len & 0xc0 == 0xc0 {
            return pos + 2 - start;
        }
        pos += 1 + len as usize;
        if len == 0 {
            return pos - start;
        }
    }
}

/// Sets RA in a reply's header: recursion is available to its client.
pub fn set_recursion_available(message: &mut [u8]) {
    if let Some(flags_low) = message.get_mut(3) {
        *flags_low |= (flags::RA & 0xff) as u8;
    }
}

/// The size limit of a reply to `query` over UDP: 512 without EDNS, else
/// the client's payload size within 512..=1232.
pub fn udp_limit(query: &Query) -> usize {
    match query.edns {
        None => 512,
        Some(edns) => edns.udp_payload.clamp(512, MAX_UDP_PAYLOAD) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_proto::parse_query;

    fn wire(name: &str) -> Vec<u8> {
        Name::parse(name, None).unwrap().as_wire().to_vec()
    }

    /// A reply message as a forwarder might send it: records given as
    /// (section, owner, type, ttl, rdata), names uncompressed.
    fn reply(
        id: u16,
        rcode: u16,
        qname: &str,
        qtype: RecordType,
        records: &[(u8, &str, RecordType, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&(flags::QR | flags::RD | flags::RA | rcode).to_be_bytes());
        let mut counts = [0u16; 3];
        for record in records {
            counts[record.0 as usize] += 1;
        }
        out.extend_from_slice(&[0, 1]);
        for count in counts {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(&wire(qname));
        out.extend_from_slice(&qtype.0.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        for section in 0..3 {
            for (s, owner, rtype, ttl, rdata) in records {
                if *s != section {
                    continue;
                }
                out.extend_from_slice(&wire(owner));
                out.extend_from_slice(&rtype.0.to_be_bytes());
                out.extend_from_slice(&[0, 1]);
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                out.extend_from_slice(rdata);
            }
        }
        out
    }

    fn query(name: &str, qtype: RecordType, edns: bool) -> Query {
        let mut out = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8];
        out.extend_from_slice(&wire(name));
        out.extend_from_slice(&qtype.0.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        if edns {
            out.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        parse_query(&out).unwrap()
    }

    fn soa(minimum: u32) -> Vec<u8> {
        let mut rdata = wire("ns.corp.example.");
        rdata.extend_from_slice(&wire("admin.corp.example."));
        for value in [1u32, 3600, 600, 86400, minimum] {
            rdata.extend_from_slice(&value.to_be_bytes());
        }
        rdata
    }

    fn in_corp(owner: &[u8]) -> bool {
        name::is_subdomain(owner, &wire("corp.example."))
    }

    #[test]
    fn a_reply_is_matched_by_id_and_question() {
        let q = query("WWW.corp.example.", RecordType::A, false);
        let question = Question::of(&q);
        let good = reply(7, 0, "www.CORP.example.", RecordType::A, &[]);
        assert!(answers(&good, 7, &question));
        assert!(!answers(&good, 8, &question), "wrong id");
        assert!(!answers(&reply(7, 0, "ww2.corp.example.", RecordType::A, &[]), 7, &question), "wrong name");
        assert!(!answers(&reply(7, 0, "www.corp.example.", RecordType::AAAA, &[]), 7, &question), "wrong type");
        let mut query_not_reply = good.clone();
        query_not_reply[2] &= 0x7f;
        assert!(!answers(&query_not_reply, 7, &question), "QR clear");
        assert!(!answers(&good[..14], 7, &question), "cut short");
    }

    #[test]
    fn records_outside_the_zone_or_off_the_chain_are_left_out() {
        let q = query("www.corp.example.", RecordType::A, false);
        let question = Question::of(&q);
        let message = reply(
            1,
            0,
            "www.corp.example.",
            RecordType::A,
            &[
                (0, "www.corp.example.", RecordType::CNAME, 300, wire("web.corp.example.")),
                (0, "web.corp.example.", RecordType::A, 60, vec![192, 0, 2, 1]),
                // Off the chain, and out of the zone: both dropped.
                (0, "other.corp.example.", RecordType::A, 60, vec![192, 0, 2, 2]),
                (0, "www.victim.test.", RecordType::A, 60, vec![203, 0, 113, 66]),
                (1, "victim.test.", RecordType::NS, 60, wire("ns.evil.test.")),
                (2, "ns.evil.test.", RecordType::A, 60, vec![203, 0, 113, 67]),
            ],
        );
        let Reply::Answer(packed, _) = read_reply(&message, &question, in_corp, TtlLimits::default()).unwrap() else {
            panic!("an answer")
        };
        assert_eq!(packed.lifetime(), 60);
        let m = packed.message();
        assert_eq!(&m[6..12], &[0, 2, 0, 0, 0, 0], "two answers, nothing else");
        assert!(!m.windows(4).any(|w| w == [203, 0, 113, 66] || w == [192, 0, 2, 2]));
        assert!(packed.is_for(&question));
    }

    #[test]
    fn negative_answers_live_as_long_as_the_soa_says_and_not_without_one() {
        let q = query("nope.corp.example.", RecordType::A, false);
        let question = Question::of(&q);
        let records = [(1u8, "corp.example.", RecordType::SOA, 3600u32, soa(120))];
        let message = reply(1, 3, "nope.corp.example.", RecordType::A, &records);
        let Reply::Answer(packed, _) = read_reply(&message, &question, in_corp, TtlLimits::default()).unwrap() else {
            panic!()
        };
        assert_eq!((packed.lifetime(), packed.rcode()), (120, Rcode::NXDOMAIN));
        let bare = reply(1, 3, "nope.corp.example.", RecordType::A, &[]);
        let Reply::Answer(packed, _) = read_reply(&bare, &question, in_corp, TtlLimits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(packed.lifetime(), 0, "no SOA: served, not kept");
    }

    #[test]
    fn other_rcodes_truncation_and_garbage_are_told_apart() {
        let q = query("www.corp.example.", RecordType::A, false);
        let question = Question::of(&q);
        let failed = reply(1, 2, "www.corp.example.", RecordType::A, &[]);
        assert!(matches!(
            read_reply(&failed, &question, in_corp, TtlLimits::default()),
            Ok(Reply::Failed(Rcode::SERVFAIL))
        ));
        let mut truncated = reply(1, 0, "www.corp.example.", RecordType::A, &[]);
        truncated[2] |= 0x02;
        assert!(matches!(read_reply(&truncated, &question, in_corp, TtlLimits::default()), Ok(Reply::Truncated)));
        let records = [(0u8, "www.corp.example.", RecordType::A, 60u32, vec![1, 2, 3])];
        let short_rdata = reply(1, 0, "www.corp.example.", RecordType::A, &records);
        assert!(read_reply(&short_rdata, &question, in_corp, TtlLimits::default()).is_err());
        let mut cut = reply(
            1,
            0,
            "www.corp.example.",
            RecordType::A,
            &[(0, "www.corp.example.", RecordType::A, 60, vec![1, 2, 3, 4])],
        );
        cut.truncate(cut.len() - 2);
        assert!(read_reply(&cut, &question, in_corp, TtlLimits::default()).is_err());
    }

    #[test]
    fn a_reply_counts_ttls_down_and_takes_the_clients_id_case_and_opt() {
        let records = [(0u8, "www.corp.example.", RecordType::A, 300u32, vec![192, 0, 2, 1])];
        let message = reply(1, 0, "www.corp.example.", RecordType::A, &records);
        let lower = query("www.corp.example.", RecordType::A, false);
        let Reply::Answer(packed, _) =
            read_reply(&message, &Question::of(&lower), in_corp, TtlLimits::default()).unwrap()
        else {
            panic!()
        };
        let client = query("WwW.Corp.example.", RecordType::A, true);
        let mut out = Vec::new();
        packed.write_reply(&client, 100, Served::Fresh, 1232, &mut out);
        let parsed = hickory_like_ttl(&out);
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]) & !0x0f, flags::QR | flags::RD | flags::RA);
        assert_eq!(&out[12..12 + 18], wire("WwW.Corp.example.").as_slice());
        assert_eq!(parsed, 200);
        assert_eq!(&out[10..12], &[0, 1], "an OPT for the client's");
        assert_eq!(&out[out.len() - 2..], &[0, 0], "no options in a fresh answer's OPT");
        packed.write_reply(&client, 100, Served::Stale, 1232, &mut out);
        assert_eq!(hickory_like_ttl(&out), STALE_TTL);
        assert!(out.ends_with(&[0, 6, 0, 15, 0, 2, 0, 3]), "a stale answer says so (RFC 8914 code 3)");
        let failed = Packed::failure(&Question::of(&lower), Rcode::SERVFAIL);
        failed.write_reply(&client, 0, Served::Unreachable, 1232, &mut out);
        let text = b"no forwarder answered";
        assert!(out.ends_with(text) && out[..out.len() - text.len()].ends_with(&[0, 15, 0, 23, 0, 22]), "code 22");
        failed.write_reply(&query("www.corp.example.", RecordType::A, false), 0, Served::Unreachable, 512, &mut out);
        assert_eq!(&out[10..12], &[0, 0], "no OPT, so no EDE, for a query without EDNS");
        // Too long for the limit: header and question, TC.
        packed.write_reply(&client, 0, Served::Fresh, 40, &mut out);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]) & flags::TC, flags::TC);
        assert_eq!(&out[6..10], &[0, 0, 0, 0]);
    }

    /// The TTL of the first answer record of a message whose question is
    /// www.corp.example and whose answer owner is a pointer.
    fn hickory_like_ttl(message: &[u8]) -> u32 {
        let at = 12 + 18 + 4 + 2 + 4;
        u32::from_be_bytes(message[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn rrsigs_stay_with_their_rrsets_and_do_is_part_of_the_key() {
        let mut q = query("www.corp.example.", RecordType::A, true);
        assert!(q.edns.unwrap().dnssec_ok);
        let rrsig = vec![
            0, 1, 13, 3, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4, b'c', b'o', b'r', b'p', 7, b'e', b'x', b'a',
            b'm', b'p', b'l', b'e', 0, 0xaa, 0xbb,
        ];
        let records = [
            (0u8, "www.corp.example.", RecordType::A, 300u32, vec![192, 0, 2, 1]),
            (0u8, "www.corp.example.", RecordType::RRSIG, 300u32, rrsig),
        ];
        let message = reply(1, 0, "www.corp.example.", RecordType::A, &records);
        let Reply::Answer(packed, _) = read_reply(&message, &Question::of(&q), in_corp, TtlLimits::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(&packed.message()[6..8], &[0, 2], "the RRSIG kept beside its A");
        let mut out = Vec::new();
        write_query(1, &Question::of(&q), &mut out);
        assert!(parse_query(&out).unwrap().edns.unwrap().dnssec_ok, "DO passed on");
        assert!(packed.is_for(&Question::of(&q)));
        q.edns = None;
        assert!(!packed.is_for(&Question::of(&q)), "a query without DO is another key");
    }

    #[test]
    fn the_query_sent_upstream_asks_for_recursion_with_edns() {
        let q = query("www.corp.example.", RecordType::AAAA, true);
        let mut out = Vec::new();
        write_query(0xabcd, &Question::of(&q), &mut out);
        let parsed = parse_query(&out).unwrap();
        assert_eq!(parsed.id, 0xabcd);
        assert_eq!(parsed.flags & flags::RD, flags::RD);
        assert_eq!(parsed.qtype, RecordType::AAAA);
        let edns = parsed.edns.unwrap();
        assert_eq!((edns.udp_payload, edns.dnssec_ok), (UPSTREAM_PAYLOAD, true));
    }
}
