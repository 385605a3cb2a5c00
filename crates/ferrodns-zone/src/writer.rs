//! Writes a zone as an RFC 1035 master file: `$ORIGIN` first, the apex SOA
//! first among records, then every RRset in canonical name order with absolute
//! owner names, so the output reads back through [`crate::masterfile`] unchanged.

use std::fmt::Write as _;

use ferrodns_proto::name;
use ferrodns_proto::rdata::write_rdata;
use ferrodns_proto::RecordType;

use crate::zone::{Node, Zone};

/// The zone as master-file text.
pub fn write_zone(zone: &Zone) -> String {
    let mut text = String::with_capacity(zone.record_count() * 48);
    write_zone_chunks(zone, usize::MAX, &mut |chunk| {
        text.push_str(&chunk);
        true
    });
    text
}

/// The zone as master-file text, handed to `sink` in pieces of about
/// `chunk` octets (whole lines), so that a large zone is never held as one
/// text; stops early when `sink` returns false.
pub fn write_zone_chunks(zone: &Zone, chunk: usize, sink: &mut dyn FnMut(String) -> bool) {
    let mut out = String::with_capacity(chunk.min(zone.record_count() * 48) + 512);
    let _ = writeln!(out, "$ORIGIN {}", zone.apex());
    let nodes = zone.nodes_sorted();
    // The SOA leads so that readers that want it first find it there.
    if let Some(soa) = zone.apex_node().rrset(RecordType::SOA) {
        write_rrset(&zone.apex_node(), soa.rtype, soa.ttl, soa.rdatas(), &mut out);
    }
    for node in nodes {
        for rrset in node.rrsets() {
            if rrset.rtype == RecordType::SOA && node.name().eq_ignore_ascii_case(zone.apex_lower()) {
                continue;
            }
            // Record by record, so that one large RRset is cut into chunks
            // like the rest.
            for rdata in rrset.rdatas() {
                write_record(&node, rrset.rtype, rrset.ttl, rdata, &mut out);
                if out.len() >= chunk && !sink(std::mem::replace(&mut out, String::with_capacity(chunk + 512))) {
                    return;
                }
            }
        }
    }
    if !out.is_empty() {
        sink(out);
    }
}

fn write_rrset<'a>(
    node: &Node<'_>,
    rtype: RecordType,
    ttl: u32,
    rdatas: impl Iterator<Item = &'a [u8]>,
    out: &mut String,
) {
    for rdata in rdatas {
        write_record(node, rtype, ttl, rdata, out);
    }
}

fn write_record(node: &Node<'_>, rtype: RecordType, ttl: u32, rdata: &[u8], out: &mut String) {
    let _ = name::write_presentation(node.name(), out);
    let _ = write!(out, " {ttl} IN {rtype} ");
    write_rdata(rtype, rdata, out);
    out.push('\n');
}
