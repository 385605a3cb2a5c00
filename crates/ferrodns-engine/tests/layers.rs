//! The engine's layers, case by case: header handling, opcodes, EDNS, the
//! question checks and truncation, driven from one table. Answers to ordinary
//! queries are checked against Knot and NSD by the differential test.

mod support;

use ferrodns_engine::{respond, respond_unsigned, Outcome, Transport, MAX_UDP_PAYLOAD};
use ferrodns_proto::Name;
use ferrodns_zone::ZoneSet;

fn zones() -> ZoneSet {
    let mut text = String::from("$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 2 3 4 60\n@ NS ns\nns A 192.0.2.1\n");
    for i in 0..40 {
        text.push_str(&format!("big A 198.51.100.{i}\n"));
    }
    support::zone_set("example.", &text)
}

/// A query: flags word, qname, qtype, qclass, and an optional OPT (payload, version).
struct Ask {
    flags: u16,
    qname: &'static str,
    qtype: u16,
    qclass: u16,
    opt: Option<(u16, u8)>,
    transport: Transport,
}

fn query(ask: &Ask) -> Vec<u8> {
    let mut msg = vec![0xab, 0xcd];
    msg.extend_from_slice(&ask.flags.to_be_bytes());
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(ask.opt.is_some())]);
    msg.extend_from_slice(Name::parse(ask.qname, None).unwrap().as_wire());
    msg.extend_from_slice(&ask.qtype.to_be_bytes());
    msg.extend_from_slice(&ask.qclass.to_be_bytes());
    if let Some((payload, version)) = ask.opt {
        msg.extend_from_slice(&[0, 0, 41]);
        msg.extend_from_slice(&payload.to_be_bytes());
        msg.extend_from_slice(&[0, version, 0, 0, 0, 0]);
    }
    msg
}

/// What the reply must show.
#[derive(Debug, PartialEq)]
struct Reply {
    rcode: u16,
    flags: String,
    answers: u16,
    /// (advertised payload, extended rcode bits, version) of the reply's OPT.
    opt: Option<(u16, u8, u8)>,
}

fn expect(rcode: u16, flags: &str, answers: u16, opt: Option<(u16, u8, u8)>) -> Reply {
    Reply { rcode, flags: flags.to_string(), answers, opt }
}

fn reply(bytes: &[u8]) -> Reply {
    let flags_word = u16::from_be_bytes([bytes[2], bytes[3]]);
    let mut flags = String::new();
    for (bit, name) in
        [(0x8000, "qr "), (0x0400, "aa "), (0x0200, "tc "), (0x0100, "rd "), (0x0080, "ra "), (0x0010, "cd ")]
    {
        if flags_word & bit != 0 {
            flags.push_str(name);
        }
    }
    let arcount = u16::from_be_bytes([bytes[10], bytes[11]]);
    // The OPT record, when present, is last and has no options here.
    let opt = (arcount > 0
        && bytes.len() >= 11
        && bytes[bytes.len() - 11] == 0
        && bytes[bytes.len() - 10..bytes.len() - 8] == [0, 41])
    .then(|| {
        let at = bytes.len() - 11;
        (u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]), bytes[at + 5], bytes[at + 6])
    });
    let extended = opt.map_or(0, |(_, high, _)| (high as u16) << 4);
    Reply {
        rcode: extended | (flags_word & 0x000f),
        flags: flags.trim_end().to_string(),
        answers: u16::from_be_bytes([bytes[6], bytes[7]]),
        opt,
    }
}

#[test]
fn layers_answer_as_the_rfcs_say() {
    let zones = zones();
    let udp = Transport::Udp;
    let base = Ask { flags: 0x0100, qname: "ns.example.", qtype: 1, qclass: 1, opt: None, transport: udp };
    let cases: Vec<(&str, Ask, Reply)> = vec![
        ("plain query: AA, RD copied, RA clear", Ask { ..base }, expect(0, "qr aa rd", 1, None)),
        ("RD clear stays clear, CD is copied", Ask { flags: 0x0010, ..base }, expect(0, "qr aa cd", 1, None)),
        ("IQUERY is NOTIMP", Ask { flags: 0x0800, ..base }, expect(4, "qr", 0, None)),
        ("STATUS is NOTIMP", Ask { flags: 0x1000, ..base }, expect(4, "qr", 0, None)),
        ("NOTIFY is handed off, and NOTIMP as a plain query", Ask { flags: 0x2000, ..base }, expect(4, "qr", 0, None)),
        ("UPDATE is NOTIMP here", Ask { flags: 0x2800, ..base }, expect(4, "qr", 0, None)),
        ("class CH is REFUSED", Ask { qclass: 3, ..base }, expect(5, "qr rd", 0, None)),
        ("AXFR is handed off, and REFUSED as a plain query", Ask { qtype: 252, ..base }, expect(5, "qr rd", 0, None)),
        ("qtype OPT is FORMERR", Ask { qtype: 41, ..base }, expect(1, "qr rd", 0, None)),
        ("a name outside every zone is REFUSED", Ask { qname: "example.org.", ..base }, expect(5, "qr rd", 0, None)),
        (
            "EDNS: the reply carries OPT with our payload size",
            Ask { opt: Some((4096, 0)), ..base },
            expect(0, "qr aa rd", 1, Some((MAX_UDP_PAYLOAD, 0, 0))),
        ),
        (
            "EDNS version 1 is BADVERS (16), version 0 in the reply",
            Ask { opt: Some((1232, 1)), ..base },
            expect(16, "qr rd", 0, Some((MAX_UDP_PAYLOAD, 1, 0))),
        ),
        (
            "40 A records exceed 512 octets without EDNS: TC, nothing in the answer",
            Ask { qname: "big.example.", ..base },
            expect(0, "qr aa tc rd", 0, None),
        ),
        (
            "a 1232-octet EDNS buffer holds them",
            Ask { qname: "big.example.", opt: Some((1232, 0)), ..base },
            expect(0, "qr aa rd", 40, Some((MAX_UDP_PAYLOAD, 0, 0))),
        ),
        (
            "an EDNS buffer below 512 counts as 512",
            Ask { qname: "big.example.", opt: Some((100, 0)), ..base },
            expect(0, "qr aa tc rd", 0, Some((MAX_UDP_PAYLOAD, 0, 0))),
        ),
        (
            "TCP has no such limit",
            Ask { qname: "big.example.", transport: Transport::Tcp, ..base },
            expect(0, "qr aa rd", 40, None),
        ),
    ];
    let mut out = Vec::new();
    for (what, ask, expected) in cases {
        let packet = query(&ask);
        // Control traffic is handed off; answered as a plain query it gets these codes.
        let outcome = match respond(&zones, &packet, ask.transport, &mut out) {
            Outcome::HandOff => respond_unsigned(&zones, &packet, ask.transport, &mut out),
            other => other,
        };
        assert_eq!(outcome, Outcome::Reply, "{what}");
        assert_eq!(out[..2], [0xab, 0xcd], "{what}: id");
        assert_eq!(out[2] & 0x78, packet[2] & 0x78, "{what}: opcode");
        assert_eq!(reply(&out), expected, "{what}");
    }
}

#[test]
fn unknown_edns_options_are_ignored_and_bad_framing_is_formerr() {
    let zones = zones();
    let base = Ask {
        flags: 0x0100,
        qname: "ns.example.",
        qtype: 1,
        qclass: 1,
        opt: Some((1232, 0)),
        transport: Transport::Udp,
    };
    let mut packet = query(&base);
    // Give the OPT record one unknown option (code 65001, three octets) and a cookie-sized one.
    let options: &[u8] = &[0xfd, 0xe9, 0, 3, 1, 2, 3, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let rdlen_at = packet.len() - 2;
    packet[rdlen_at..].copy_from_slice(&(options.len() as u16).to_be_bytes());
    packet.extend_from_slice(options);
    let mut out = Vec::new();
    assert_eq!(respond(&zones, &packet, Transport::Udp, &mut out), Outcome::Reply);
    assert_eq!(reply(&out), expect(0, "qr aa rd", 1, Some((MAX_UDP_PAYLOAD, 0, 0))));
    // An option whose length runs past the OPT RDATA is malformed.
    let mut broken = packet.clone();
    let length_at = broken.len() - options.len() + 2;
    broken[length_at + 1] = 200;
    assert_eq!(respond(&zones, &broken, Transport::Udp, &mut out), Outcome::Reply);
    assert_eq!(out[3] & 0x0f, 1, "FORMERR");
}

/// NOTIFY, transfers and signed queries are handed off, not answered.
#[test]
fn control_traffic_is_handed_off() {
    let zones = zones();
    let mut out = Vec::new();
    let base = Ask { flags: 0x0100, qname: "ns.example.", qtype: 1, qclass: 1, opt: None, transport: Transport::Tcp };
    for ask in [Ask { flags: 0x2000, ..base }, Ask { qtype: 252, ..base }, Ask { qtype: 251, ..base }] {
        assert_eq!(respond(&zones, &query(&ask), ask.transport, &mut out), Outcome::HandOff);
    }
    assert_eq!(respond(&zones, &query(&base), base.transport, &mut out), Outcome::Reply);
}
