//! Zone transfer answers: AXFR (RFC 5936) and IXFR (RFC 1995), written one
//! DNS message at a time for the caller to frame, sign and send. No I/O.
//!
//! A [`ZoneTransfer`] owns the zone snapshot (an `Arc`) and a cursor into it,
//! so a transfer of any size holds one message in memory, and the caller
//! writes each message before asking for the next: a slow client slows the
//! transfer rather than growing a queue. A record that does not fit in an
//! empty message cannot be sent at all; the transfer then stops with
//! [`RecordTooLarge`] rather than leave the record out.
//!
//! An AXFR is the SOA, every other record, and the SOA again. An IXFR from
//! serial N is the current SOA, then for each step the old SOA, the removed
//! records, the new SOA and the added records, then the current SOA. When the
//! steps do not reach back to N, or would be bigger than the zone, the answer
//! is the whole zone in AXFR form, which RFC 1995 §4 allows. A client at the
//! current serial (or newer) gets the current SOA alone.

use std::fmt;
use std::sync::Arc;

use ferrodns_proto::message::{flags, Section};
use ferrodns_proto::name::{self, NameBuf};
use ferrodns_proto::rdata;
use ferrodns_proto::{parse_query, Class, MessageWriter, Query, QueryError, RecordType, Serial};
use ferrodns_zone::edit::{Diff, RecordRef};
use ferrodns_zone::{NodeCursor, Zone};

/// Room left in each message for a TSIG record.
pub const TSIG_RESERVE: usize = 512;

/// A transfer request.
pub struct TransferRequest {
    pub query: Query,
    /// For IXFR: the client's serial, from the SOA in the authority section.
    pub client_serial: Option<Serial>,
}

/// Reads an AXFR or IXFR request. An IXFR without an SOA in its authority
/// section is malformed (RFC 1995 §3).
pub fn parse_request(packet: &[u8]) -> Result<TransferRequest, QueryError> {
    let query = parse_query(packet)?;
    let mut client_serial = None;
    if query.qtype == RecordType::IXFR {
        client_serial = Some(section_soa_serial(packet, Section::Authority).ok_or(QueryError::FormErr)?);
    }
    Ok(TransferRequest { query, client_serial })
}

/// The serial of the first SOA in a message's answer or authority section
/// (an IXFR request's authority, a NOTIFY's answer).
pub fn section_soa_serial(packet: &[u8], section: Section) -> Option<Serial> {
    let count = |at: usize| Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]) as usize);
    let (ancount, nscount) = (count(6)?, count(8)?);
    let (first, end) = match section {
        Section::Answer => (0, ancount),
        Section::Authority => (ancount, ancount + nscount),
        Section::Additional => return None,
    };
    let mut scratch = NameBuf::new();
    let mut pos = name::read_compressed(packet, 12, &mut scratch).ok()? + 4;
    for index in 0..end {
        let after = name::read_compressed(packet, pos, &mut scratch).ok()?;
        let rtype = u16::from_be_bytes([*packet.get(after)?, *packet.get(after + 1)?]);
        let rdlen = u16::from_be_bytes([*packet.get(after + 8)?, *packet.get(after + 9)?]) as usize;
        let start = after + 10;
        packet.get(start..start + rdlen)?;
        if index >= first && rtype == RecordType::SOA.0 {
            // MNAME and RNAME may be compressed.
            let mut soa = Vec::with_capacity(rdlen + 64);
            rdata::decompress(packet, start, start + rdlen, RecordType::SOA, &mut soa).ok()?;
            return rdata::soa_serial(&soa);
        }
        pos = start + rdlen;
    }
    None
}

/// How an IXFR will be answered.
#[derive(Debug)]
pub enum IxfrPlan {
    /// The client is current: the SOA alone.
    UpToDate,
    /// These steps, oldest first, lead from the client's serial to ours.
    Steps(Vec<Arc<Diff>>),
    /// The whole zone, AXFR-style.
    Full,
}

/// Picks the answer to an IXFR from `client` given the steps that are known
/// (`history`, oldest first, ending at the zone's serial).
pub fn plan_ixfr(zone: &Zone, client: Serial, history: &[Arc<Diff>]) -> IxfrPlan {
    let current = zone.serial();
    if client == current || client.is_newer_than(current) {
        return IxfrPlan::UpToDate;
    }
    let Some(start) = history.iter().position(|d| d.old_serial == client && !d.removed.is_empty()) else {
        return IxfrPlan::Full;
    };
    let steps = &history[start..];
    let chained = steps.windows(2).all(|w| w[0].new_serial == w[1].old_serial);
    if !chained || steps.last().map(|d| d.new_serial) != Some(current) {
        return IxfrPlan::Full;
    }
    let records: usize = steps.iter().map(|d| d.removed.len() + d.added.len()).sum();
    if records > zone.record_count() {
        return IxfrPlan::Full;
    }
    IxfrPlan::Steps(steps.to_vec())
}

/// One record to put in a transfer.
struct Item<'a> {
    owner: &'a [u8],
    rtype: RecordType,
    ttl: u32,
    rdata: &'a [u8],
}

/// The record a transfer writes next.
#[derive(Clone, Copy, Debug)]
enum Position {
    OpeningSoa,
    /// In the zone's body: the node the cursor stood before, and the RRset
    /// (not counting the apex SOA) and record within it.
    Node {
        before: NodeCursor,
        rrset: usize,
        rdata: usize,
    },
    /// In an IXFR's steps: each step's removed records, then its added ones.
    Step {
        step: usize,
        record: usize,
    },
    ClosingSoa,
    Done,
}

/// A record that does not fit in a message on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordTooLarge {
    /// The owner, as a wire name.
    pub owner: Vec<u8>,
    pub rtype: RecordType,
    pub rdata_len: usize,
}

impl fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = ferrodns_proto::Name::from_wire(&self.owner).map(|n| n.to_string()).unwrap_or_default();
        write!(f, "{owner} {} ({} octets of RDATA) does not fit in a message", self.rtype, self.rdata_len)
    }
}

/// An AXFR, or an IXFR answer, written message by message.
pub struct ZoneTransfer {
    zone: Arc<Zone>,
    request: Query,
    limit: usize,
    /// For an incremental IXFR: the steps, oldest first.
    steps: Vec<Arc<Diff>>,
    next: Position,
    messages: usize,
    records: usize,
}

impl ZoneTransfer {
    /// The whole zone: the SOA, every other record, the SOA again (also the
    /// answer to an IXFR that the steps cannot serve). Messages are at most
    /// `limit` octets, less room for a TSIG.
    pub fn axfr(zone: Arc<Zone>, request: &Query, limit: usize) -> ZoneTransfer {
        ZoneTransfer::new(zone, request, limit, Vec::new())
    }

    /// An incremental IXFR over `steps` (oldest first), framed by the current SOA.
    pub fn ixfr(zone: Arc<Zone>, request: &Query, steps: Vec<Arc<Diff>>, limit: usize) -> ZoneTransfer {
        ZoneTransfer::new(zone, request, limit, steps)
    }

    fn new(zone: Arc<Zone>, request: &Query, limit: usize, steps: Vec<Arc<Diff>>) -> ZoneTransfer {
        let limit = limit.max(TSIG_RESERVE + 512);
        ZoneTransfer {
            zone,
            request: request.clone(),
            limit,
            steps,
            next: Position::OpeningSoa,
            messages: 0,
            records: 0,
        }
    }

    /// Messages written so far.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Records written so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Writes the next message into `out`, replacing what it held. `Ok(false)`
    /// once the transfer is complete.
    pub fn next_message(&mut self, out: &mut Vec<u8>) -> Result<bool, RecordTooLarge> {
        if matches!(self.next, Position::Done) {
            return Ok(false);
        }
        out.clear();
        let zone = self.zone.clone();
        let mut writer = MessageWriter::new(out, self.limit - TSIG_RESERVE);
        writer.set_header(self.request.id, flags::QR | flags::AA | (self.request.flags & flags::OPCODE));
        if self.messages == 0 {
            let _ = writer.push_question(self.request.qname(), self.request.qtype, Class::IN);
        }
        let mut wrote = 0;
        loop {
            let Some((item, after)) = self.item(&zone, self.next) else {
                self.next = Position::Done;
                break;
            };
            if writer.push_record(Section::Answer, item.owner, item.rtype, item.ttl, item.rdata).is_err() {
                if wrote == 0 {
                    let error =
                        RecordTooLarge { owner: item.owner.to_vec(), rtype: item.rtype, rdata_len: item.rdata.len() };
                    self.next = Position::Done;
                    return Err(error);
                }
                break;
            }
            wrote += 1;
            self.next = after;
        }
        self.records += wrote;
        self.messages += 1;
        Ok(true)
    }

    /// The record at `at` and the position after it; `None` at the end.
    fn item<'z>(&'z self, zone: &'z Zone, mut at: Position) -> Option<(Item<'z>, Position)> {
        let apex = zone.apex().as_wire();
        loop {
            match at {
                Position::OpeningSoa => {
                    let after = if self.steps.is_empty() {
                        Position::Node { before: NodeCursor::default(), rrset: 0, rdata: 0 }
                    } else {
                        Position::Step { step: 0, record: 0 }
                    };
                    return Some((soa_item(zone), after));
                }
                Position::Node { before, rrset, rdata } => {
                    let mut cursor = before;
                    let Some(node) = zone.next_node(&mut cursor) else {
                        at = Position::ClosingSoa;
                        continue;
                    };
                    let at_apex = node.name().eq_ignore_ascii_case(apex);
                    let set = node.rrsets().filter(|r| !(at_apex && r.rtype == RecordType::SOA)).nth(rrset);
                    let Some(set) = set else {
                        at = Position::Node { before: cursor, rrset: 0, rdata: 0 };
                        continue;
                    };
                    let Some(bytes) = set.rdatas().nth(rdata) else {
                        at = Position::Node { before, rrset: rrset + 1, rdata: 0 };
                        continue;
                    };
                    let item = Item { owner: node.name(), rtype: set.rtype, ttl: set.ttl, rdata: bytes };
                    return Some((item, Position::Node { before, rrset, rdata: rdata + 1 }));
                }
                Position::Step { step, record } => {
                    let Some(diff) = self.steps.get(step) else {
                        at = Position::ClosingSoa;
                        continue;
                    };
                    let Some(found) = diff.removed.get(record).or_else(|| diff.added.get(record - diff.removed.len()))
                    else {
                        at = Position::Step { step: step + 1, record: 0 };
                        continue;
                    };
                    return Some((record_item(found), Position::Step { step, record: record + 1 }));
                }
                Position::ClosingSoa => return Some((soa_item(zone), Position::Done)),
                Position::Done => return None,
            }
        }
    }
}

fn soa_item(zone: &Zone) -> Item<'_> {
    let soa = zone.soa();
    Item { owner: zone.apex().as_wire(), rtype: RecordType::SOA, ttl: soa.ttl, rdata: soa.first() }
}

fn record_item(record: RecordRef<'_>) -> Item<'_> {
    Item { owner: record.owner, rtype: record.rtype, ttl: record.ttl, rdata: record.rdata }
}

/// The one message answering an IXFR from a current client (or an IXFR
/// over UDP that does not fit): the current SOA.
pub fn current_soa(zone: &Zone, request: &Query) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut writer = MessageWriter::new(&mut out, u16::MAX as usize);
    writer.set_header(request.id, flags::QR | flags::AA | (request.flags & flags::OPCODE));
    let _ = writer.push_question(request.qname(), request.qtype, Class::IN);
    let soa = soa_item(zone);
    let _ = writer.push_record(Section::Answer, soa.owner, soa.rtype, soa.ttl, soa.rdata);
    out
}

/// The number of records an IXFR over `steps` carries (for fitting a UDP answer).
pub fn ixfr_records(steps: &[Arc<Diff>]) -> usize {
    steps.iter().map(|d| d.removed.len() + d.added.len()).sum::<usize>() + 2
}
