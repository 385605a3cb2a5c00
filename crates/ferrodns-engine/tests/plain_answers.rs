//! The one-pass writer for plain answers against the layers: a transport
//! that parsed and prefetched a query (`respond_parsed` with the prefetch)
//! may take the one-pass path, `respond` never does, and for every query
//! here both must give the same octets. The queries cover what the one-pass
//! path takes (one RRset without names to compress, at the qname or from a
//! wildcard, with and without EDNS and DO) and what it must leave to the
//! layers (names to compress, additional sections, CNAME chains, referrals,
//! NODATA, NXDOMAIN, TC, class ANY, DS, EDNS versions, other opcodes).

mod support;

use ferrodns_engine::{prefetch, prefetch_set, respond, respond_parsed, Transport};
use ferrodns_proto::{parse_query_into, Name, Query};
use ferrodns_zone::ZoneSet;

fn zones() -> ZoneSet {
    let mut text = String::from(
        "$ORIGIN Example.\n$TTL 300\n@ SOA ns h 1 2 3 4 60\n@ NS ns\n@ MX 10 mail\nns A 192.0.2.1\nmail A 192.0.2.25\n\
         mail AAAA 2001:db8::25\nWww A 192.0.2.80\nwww A 192.0.2.81\nwww AAAA 2001:db8::80\nwww TXT \"hello\" \"world\"\n\
         www HINFO cpu os\nwww CAA 0 issue \"ca.example\"\nwww SSHFP 1 1 0123456789abcdef\nalias CNAME www\n\
         *.wild A 192.0.2.99\n*.wild TXT wildcard\nsrv SRV 0 0 53 ns\nsub NS ns.sub\nns.sub A 192.0.2.53\nsub DS 1 8 2 ABCD\n\
         deep.er.ent A 192.0.2.7\nnaptr NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:x@example.!\" .\nunknown TYPE999 \\# 2 abcd\n",
    );
    for i in 0..60 {
        text.push_str(&format!("big TXT \"record {i} of a set too big for 512 octets\"\n"));
    }
    for i in 0..40 {
        text.push_str(&format!("many A 198.51.100.{i}\n"));
    }
    support::zone_set("example.", &text)
}

fn query(flags: u16, qname: &str, qtype: u16, qclass: u16, opt: Option<(u16, u8, bool)>) -> Vec<u8> {
    let mut msg = vec![0x12, 0x34];
    msg.extend_from_slice(&flags.to_be_bytes());
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    msg.extend_from_slice(Name::parse(qname, None).unwrap().as_wire());
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&qclass.to_be_bytes());
    if let Some((payload, version, dnssec_ok)) = opt {
        msg.extend_from_slice(&[0, 0, 41]);
        msg.extend_from_slice(&payload.to_be_bytes());
        msg.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    msg
}

/// The reply the UDP worker's path gives: parsed once, prefetched, answered.
fn prefetched_reply(zones: &ZoneSet, packet: &[u8]) -> Vec<u8> {
    let mut query = Query::new();
    parse_query_into(packet, &mut query).unwrap();
    let probe = prefetch_set(zones, query.qname_lower());
    let prefetched = prefetch(zones, query.qname_lower(), probe);
    let mut out = Vec::new();
    respond_parsed(zones, &query, prefetched, Transport::Udp, &mut out);
    out
}

#[test]
fn one_pass_answers_equal_the_layers() {
    let zones = zones();
    let names = [
        "www.example.",
        "WWW.EXAMPLE.",
        "wWw.eXaMpLe.",
        "example.",
        "alias.example.",
        "x.wild.example.",
        "X.Y.WILD.example.",
        "srv.example.",
        "sub.example.",
        "ns.sub.example.",
        "ent.example.",
        "er.ent.example.",
        "deep.er.ent.example.",
        "naptr.example.",
        "unknown.example.",
        "big.example.",
        "many.example.",
        "mail.example.",
        "nowhere.example.",
        "ns.example.",
        "other.test.",
    ];
    // A, NS, CNAME, SOA, MX, TXT, AAAA, HINFO, CAA, SSHFP, SRV, NAPTR, DS, TYPE999, ANY.
    let types = [1u16, 2, 5, 6, 15, 16, 28, 13, 257, 44, 33, 35, 43, 999, 255];
    let edns = [None, Some((1232, 0, false)), Some((512, 0, true)), Some((4096, 0, true)), Some((1232, 1, false))];
    let mut compared = 0;
    let mut one_pass_shaped = 0;
    for name in names {
        for qtype in types {
            for opt in edns {
                for (flags, qclass) in [(0x0100, 1), (0x0000, 1), (0x0110, 1), (0x0100, 255), (0x2100, 1)] {
                    let packet = query(flags, name, qtype, qclass, opt);
                    let mut general = Vec::new();
                    respond(&zones, &packet, Transport::Udp, &mut general);
                    let fast = prefetched_reply(&zones, &packet);
                    assert_eq!(fast, general, "{name} type {qtype} class {qclass} flags {flags:#06x} opt {opt:?}");
                    compared += 1;
                    // Answers of the shape the one pass writes: NOERROR, AA, one question, answers only.
                    if general.len() > 12
                        && general[3] & 0x0f == 0
                        && general[2] & 0x04 != 0
                        && general[8..10] == [0, 0]
                    {
                        one_pass_shaped += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 7000 && one_pass_shaped > 500, "{compared} compared, {one_pass_shaped} one-pass shaped");
}
