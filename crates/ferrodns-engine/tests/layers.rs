//! The engine's layers, case by case: header handling, opcodes, EDNS, the
//! question checks and truncation, driven from one table. Answers to ordinary
//! queries are checked against Knot and NSD by the differential test.

mod support;

use ferrodns_engine::{
    respond, respond_parsed_with, respond_unsigned, Outcome, ServerIdentity, Transport, ANONYMOUS, MAX_UDP_PAYLOAD,
};
use ferrodns_proto::parse_query;
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
#[derive(Clone, Copy)]
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
        (
            "NOTIFY is handed off, and NOTAUTH as a plain query (from no primary)",
            Ask { flags: 0x2000, ..base },
            expect(9, "qr", 0, None),
        ),
        ("UPDATE is NOTIMP here", Ask { flags: 0x2800, ..base }, expect(4, "qr", 0, None)),
        ("class CH is REFUSED when the server tells nothing", Ask { qclass: 3, ..base }, expect(5, "qr rd", 0, None)),
        ("class HS is REFUSED", Ask { qclass: 4, ..base }, expect(5, "qr rd", 0, None)),
        ("AXFR over UDP is NOTIMP, as Knot and NSD answer", Ask { qtype: 252, ..base }, expect(4, "qr rd", 0, None)),
        ("IXFR over UDP too, as a plain query", Ask { qtype: 251, ..base }, expect(4, "qr rd", 0, None)),
        (
            "AXFR over TCP is handed off, and REFUSED as a plain query",
            Ask { qtype: 252, transport: Transport::Tcp, ..base },
            expect(5, "qr rd", 0, None),
        ),
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
            Outcome::HandOff => respond_unsigned(&zones, &ANONYMOUS, &packet, ask.transport, &mut out),
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

/// A query with EDNS and the given options (framed), for the identity tests.
fn query_with_options(ask: &Ask, options: &[u8]) -> Vec<u8> {
    let mut packet = query(&Ask { opt: Some((1232, 0)), ..*ask });
    let rdlen_at = packet.len() - 2;
    packet[rdlen_at..].copy_from_slice(&(options.len() as u16).to_be_bytes());
    packet.extend_from_slice(options);
    packet
}

/// The options of a reply's OPT record (the last record), as (code, data).
fn reply_options(bytes: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    // Skip the question and every record before the OPT, which is last.
    let counts: Vec<usize> =
        (0..4).map(|i| u16::from_be_bytes([bytes[4 + 2 * i], bytes[5 + 2 * i]]) as usize).collect();
    let mut at = 12;
    let skip_name = |mut at: usize| loop {
        match bytes[at] {
            0 => return at + 1,
            len if len >= 0xc0 => return at + 2,
            len => at += 1 + len as usize,
        }
    };
    for _ in 0..counts[0] {
        at = skip_name(at) + 4;
    }
    let mut opt = None;
    for _ in 0..counts[1] + counts[2] + counts[3] {
        let fixed = skip_name(at);
        let rtype = u16::from_be_bytes([bytes[fixed], bytes[fixed + 1]]);
        let rdlen = u16::from_be_bytes([bytes[fixed + 8], bytes[fixed + 9]]) as usize;
        if rtype == 41 {
            opt = Some((fixed + 10, rdlen));
        }
        at = fixed + 10 + rdlen;
    }
    assert_eq!(at, bytes.len(), "the reply's records fill it");
    let (start, rdlen) = opt?;
    let mut options = Vec::new();
    let mut pos = start;
    while pos < start + rdlen {
        let code = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]);
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        options.push((code, bytes[pos + 4..pos + 4 + len].to_vec()));
        pos += 4 + len;
    }
    Some(options)
}

/// The EDE info-code of a reply, if it has one.
fn ede_code(bytes: &[u8]) -> Option<u16> {
    reply_options(bytes)?
        .into_iter()
        .find(|(code, _)| *code == 15)
        .map(|(_, data)| u16::from_be_bytes([data[0], data[1]]))
}

/// RFC 5001 NSID, the CH-class names Knot and NSD answer, and RFC 8914
/// Extended DNS Errors on the refusals and failures that have a reason to
/// tell, through the path the transports call.
#[test]
fn the_server_says_who_it_is_and_why_it_refuses() {
    let mut zones = zones();
    let expired =
        support::zone_set("gone.", "$ORIGIN gone.\n$TTL 300\n@ SOA ns h 1 2 3 4 60\n@ NS ns\nns A 192.0.2.9\n");
    let gone = expired.get(b"\x04gone\x00").unwrap().clone();
    gone.set_expired(true);
    zones.insert(gone);
    let server = ServerIdentity::new(Some(b"node-a"), Some("node-a.example"), None).unwrap();
    let nsid_asked: &[u8] = &[0, 3, 0, 0];
    let base = Ask { flags: 0x0100, qname: "ns.example.", qtype: 1, qclass: 1, opt: None, transport: Transport::Udp };
    let mut out = Vec::new();
    let mut ask = |server: &ServerIdentity, packet: &[u8], transport: Transport| {
        let query = parse_query(packet).unwrap();
        let outcome = respond_parsed_with(&zones, server, &query, None, transport, &[], &mut out).0;
        assert_eq!(outcome, Outcome::Reply);
        out.clone()
    };

    // The NSID goes to queries that ask for it, on every kind of answer.
    for (what, q) in [
        ("an answer", base),
        ("a refusal", Ask { qname: "example.org.", ..base }),
        ("a TCP answer", Ask { transport: Transport::Tcp, ..base }),
    ] {
        let reply = ask(&server, &query_with_options(&q, nsid_asked), q.transport);
        let options = reply_options(&reply).unwrap();
        assert!(options.contains(&(3, b"node-a".to_vec())), "{what}: {options:?}");
        let reply = ask(&server, &query_with_options(&q, &[]), q.transport);
        assert!(!reply_options(&reply).unwrap().iter().any(|(code, _)| *code == 3), "{what}: not asked, not sent");
        let reply = ask(&ANONYMOUS, &query_with_options(&q, nsid_asked), q.transport);
        assert!(!reply_options(&reply).unwrap().iter().any(|(code, _)| *code == 3), "{what}: none set, none sent");
    }
    let mut badvers = query_with_options(&base, nsid_asked);
    let version_at = badvers.len() - 4 - 2 - 3;
    badvers[version_at] = 1;
    assert!(reply_options(&ask(&server, &badvers, Transport::Udp)).unwrap().contains(&(3, b"node-a".to_vec())));

    // CH TXT id.server and hostname.bind: the identity, TTL 0, class CH, not authoritative.
    for name in ["id.server.", "hostname.bind.", "ID.Server."] {
        let packet = query(&Ask { qname: name, qtype: 16, qclass: 3, ..base });
        let reply_bytes = ask(&server, &packet, Transport::Udp);
        assert_eq!(reply(&reply_bytes), expect(0, "qr rd", 1, None), "{name}");
        let record = &reply_bytes[packet.len()..];
        assert_eq!(&record[..2], &[0xc0, 12], "{name}: owned by the question, as asked");
        assert_eq!(&record[2..10], &[0, 16, 0, 3, 0, 0, 0, 0], "{name}: TXT, CH, TTL 0");
        assert_eq!(&record[10..], b"\x00\x0f\x0enode-a.example", "{name}");
    }
    for (what, q, rcode, ede) in [
        ("a version not told", Ask { qname: "version.bind.", qtype: 16, qclass: 3, ..base }, 5, Some(18)),
        ("version.server too", Ask { qname: "version.server.", qtype: 16, qclass: 3, ..base }, 5, Some(18)),
        ("another CH name", Ask { qname: "authors.bind.", qtype: 16, qclass: 3, ..base }, 5, None),
        ("another CH type", Ask { qname: "id.server.", qtype: 1, qclass: 3, ..base }, 5, None),
        ("a name in none of our zones", Ask { qname: "example.org.", ..base }, 5, Some(20)),
        ("an expired zone", Ask { qname: "ns.gone.", ..base }, 2, Some(24)),
        ("a transfer over TCP on this path", Ask { qtype: 252, transport: Transport::Tcp, ..base }, 5, Some(18)),
        ("a transfer over UDP", Ask { qtype: 252, ..base }, 4, None),
        ("an answer", base, 0, None),
    ] {
        let packet = query_with_options(&q, &[]);
        let mut out = Vec::new();
        let outcome = respond_unsigned(&zones, &server, &packet, q.transport, &mut out);
        assert_eq!(outcome, Outcome::Reply, "{what}");
        assert_eq!(out[3] & 0x0f, rcode, "{what}");
        assert_eq!(ede_code(&out), ede, "{what}");
        // Without EDNS there is no OPT to carry one.
        let plain = query(&q);
        respond_unsigned(&zones, &server, &plain, q.transport, &mut out);
        assert_eq!((out[3] & 0x0f, reply_options(&out)), (rcode, None), "{what}, without EDNS");
    }
    let told = ServerIdentity::new(None, None, Some("ferrodns 9.9")).unwrap();
    let packet = query(&Ask { qname: "version.bind.", qtype: 16, qclass: 3, ..base });
    let reply_bytes = ask(&told, &packet, Transport::Udp);
    assert!(reply_bytes.ends_with(b"\x0cferrodns 9.9"));
    let packet = query(&Ask { qname: "id.server.", qtype: 16, qclass: 3, ..base });
    assert_eq!(reply(&ask(&told, &packet, Transport::Udp)).rcode, 5, "an identity turned off is refused");
}
