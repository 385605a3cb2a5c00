//! Zone transfer answers: AXFR (RFC 5936) and IXFR (RFC 1995), as a list of
//! DNS messages for the caller to frame, sign and send. No I/O.
//!
//! An AXFR is the SOA, every other record, and the SOA again. An IXFR from
//! serial N is the current SOA, then for each step the old SOA, the removed
//! records, the new SOA and the added records, then the current SOA. When the
//! steps do not reach back to N, or would be bigger than the zone, the answer
//! is the whole zone in AXFR form, which RFC 1995 §4 allows. A client at the
//! current serial (or newer) gets the current SOA alone.

use std::sync::Arc;

use ferrodns_proto::message::{flags, Section};
use ferrodns_proto::name::{self, NameBuf};
use ferrodns_proto::{parse_query, Class, MessageWriter, Query, QueryError, RecordType, Serial};
use ferrodns_zone::edit::{Diff, Record};
use ferrodns_zone::Zone;

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
            // MNAME and RNAME may be compressed: step over them in the message.
            let after_mname = name::read_compressed(packet, start, &mut scratch).ok()?;
            let after_rname = name::read_compressed(packet, after_mname, &mut scratch).ok()?;
            let serial = packet.get(after_rname..after_rname + 4)?;
            return Some(Serial(u32::from_be_bytes(serial.try_into().ok()?)));
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

/// Packs records into messages of at most `limit` bytes (less the TSIG
/// reserve); the question goes in the first message only.
fn pack<'a>(request: &Query, items: impl Iterator<Item = Item<'a>>, limit: usize) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut items = items.peekable();
    let mut buffer = Vec::with_capacity(limit);
    loop {
        let mut writer = MessageWriter::new(&mut buffer, limit - TSIG_RESERVE);
        writer.set_header(request.id, flags::QR | flags::AA | (request.flags & 0x7800));
        if messages.is_empty() {
            let _ = writer.push_question(request.qname(), request.qtype, Class::IN);
        }
        let mut wrote = 0;
        while let Some(item) = items.peek() {
            if writer.push_record(Section::Answer, item.owner, item.rtype, item.ttl, item.rdata).is_err() {
                break;
            }
            items.next();
            wrote += 1;
        }
        if wrote == 0 && items.peek().is_some() {
            // A record bigger than a message cannot be sent; skip it rather than loop.
            items.next();
        }
        messages.push(buffer.clone());
        if items.peek().is_none() {
            return messages;
        }
    }
}

fn zone_items(zone: &Zone) -> impl Iterator<Item = Item<'_>> {
    let soa = zone.soa();
    let apex = zone.apex().as_wire();
    let soa_item = move || Item { owner: apex, rtype: RecordType::SOA, ttl: soa.ttl, rdata: soa.first() };
    let body = zone.nodes().flat_map(move |node| {
        let at_apex = node.name().eq_ignore_ascii_case(apex);
        node.rrsets().filter(move |rrset| !(at_apex && rrset.rtype == RecordType::SOA)).flat_map(move |rrset| {
            rrset.rdatas().map(move |rdata| Item { owner: node.name(), rtype: rrset.rtype, ttl: rrset.ttl, rdata })
        })
    });
    std::iter::once(soa_item()).chain(body).chain(std::iter::once(soa_item()))
}

/// The messages of an AXFR (or of a full-zone IXFR answer).
pub fn axfr(zone: &Zone, request: &Query, limit: usize) -> Vec<Vec<u8>> {
    pack(request, zone_items(zone), limit)
}

/// The one message answering an IXFR from a current client (or an IXFR
/// over UDP that does not fit): the current SOA.
pub fn current_soa(zone: &Zone, request: &Query) -> Vec<u8> {
    let soa = zone.soa();
    let item = Item { owner: zone.apex().as_wire(), rtype: RecordType::SOA, ttl: soa.ttl, rdata: soa.first() };
    pack(request, std::iter::once(item), u16::MAX as usize).remove(0)
}

fn record_item(record: &Record) -> Item<'_> {
    Item { owner: record.owner.as_wire(), rtype: record.rtype, ttl: record.ttl, rdata: &record.rdata }
}

/// The messages of an incremental IXFR answer over `steps`.
pub fn ixfr(zone: &Zone, request: &Query, steps: &[Arc<Diff>], limit: usize) -> Vec<Vec<u8>> {
    let soa = zone.soa();
    let apex = zone.apex().as_wire();
    let current = move || Item { owner: apex, rtype: RecordType::SOA, ttl: soa.ttl, rdata: soa.first() };
    let body = steps.iter().flat_map(|d| d.removed.iter().chain(&d.added)).map(record_item);
    pack(request, std::iter::once(current()).chain(body).chain(std::iter::once(current())), limit)
}

/// The number of records an IXFR over `steps` carries (for fitting a UDP answer).
pub fn ixfr_records(steps: &[Arc<Diff>]) -> usize {
    steps.iter().map(|d| d.removed.len() + d.added.len()).sum::<usize>() + 2
}
