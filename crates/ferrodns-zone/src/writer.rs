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
    let mut out = String::with_capacity(zone.record_count() * 48);
    let _ = writeln!(out, "$ORIGIN {}", zone.apex());
    let nodes = zone.nodes_sorted();
    for node in &nodes {
        // The SOA leads so that readers that want it first find it there.
        if node.name().eq_ignore_ascii_case(zone.apex_lower()) {
            if let Some(soa) = node.rrset(RecordType::SOA) {
                write_rrset(node, soa.rtype, soa.ttl, soa.rdatas(), &mut out);
            }
        }
    }
    for node in nodes {
        for rrset in node.rrsets() {
            if rrset.rtype == RecordType::SOA && node.name().eq_ignore_ascii_case(zone.apex_lower()) {
                continue;
            }
            write_rrset(&node, rrset.rtype, rrset.ttl, rrset.rdatas(), &mut out);
        }
    }
    out
}

fn write_rrset<'a>(
    node: &Node<'_>,
    rtype: RecordType,
    ttl: u32,
    rdatas: impl Iterator<Item = &'a [u8]>,
    out: &mut String,
) {
    for rdata in rdatas {
        let _ = name::write_presentation(node.name(), out);
        let _ = write!(out, " {ttl} IN {rtype} ");
        write_rdata(rtype, rdata, out);
        out.push('\n');
    }
}
