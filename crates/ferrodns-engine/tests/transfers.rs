//! Zone transfers written message by message: every record exactly once,
//! the SOA first and last, messages within their limit, the question in the
//! first message only, and a record too large for any message stops the
//! transfer instead of being left out.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrodns_engine::transfer::{RecordTooLarge, ZoneTransfer};
use ferrodns_proto::{parse_query, Name, RecordType, Serial};
use ferrodns_zone::edit::{Diff, Record};
use ferrodns_zone::Zone;

fn axfr_query(zone: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(Name::parse(zone, None).unwrap().as_wire());
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// Every message of a transfer; each message's question and answer counts.
fn collect(mut transfer: ZoneTransfer) -> (Vec<Vec<u8>>, Result<(), RecordTooLarge>) {
    let mut messages = Vec::new();
    let mut out = Vec::new();
    loop {
        match transfer.next_message(&mut out) {
            Ok(true) => messages.push(out.clone()),
            Ok(false) => return (messages, Ok(())),
            Err(e) => return (messages, Err(e)),
        }
    }
}

/// The answer records of a message as (owner, type, RDATA), parsed by
/// hickory-proto, an implementation independent of ours.
fn records(message: &[u8]) -> Vec<(String, u16, String)> {
    let parsed = hickory_proto::op::Message::from_vec(message).expect("a well-formed message");
    parsed
        .answers
        .iter()
        .map(|r| (r.name.to_string().to_lowercase(), u16::from(r.record_type()), r.data.to_string()))
        .collect()
}

fn zone(text: &str) -> Arc<Zone> {
    let set = support::zone_set("example.", text);
    let zone = set.iter().next().unwrap().clone();
    zone
}

const ZONE: &str = "$ORIGIN example.\n$TTL 300\n@ SOA ns h 7 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n";

#[test]
fn an_axfr_carries_every_record_once_with_the_soa_around_it() {
    let mut text = ZONE.to_string();
    for i in 0..5000 {
        text.push_str(&format!("h{i} A 10.0.{}.{}\nh{i} TXT \"record {i} of the zone\"\n", i / 256, i % 256));
    }
    let zone = zone(&text);
    let request = parse_query(&axfr_query("example.", 252)).unwrap();
    let (messages, result) = collect(ZoneTransfer::axfr(zone.clone(), &request, 16_384));
    result.unwrap();
    assert!(messages.len() > 10, "{} messages", messages.len());
    let mut seen: BTreeMap<(String, u16, String), usize> = BTreeMap::new();
    let mut all = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        assert!(message.len() <= 16_384 - ferrodns_engine::transfer::TSIG_RESERVE, "message {i}: {}", message.len());
        let qdcount = u16::from_be_bytes([message[4], message[5]]);
        assert_eq!(qdcount, u16::from(i == 0), "the question goes in the first message only");
        for record in records(message) {
            *seen.entry(record.clone()).or_default() += 1;
            all.push(record);
        }
    }
    assert_eq!(all.first().map(|r| r.1), Some(6));
    assert_eq!(all.last().map(|r| r.1), Some(6));
    assert_eq!(all.len(), zone.record_count() + 1, "the SOA twice, everything else once");
    assert!(seen.iter().all(|(r, n)| *n == 1 || r.1 == 6), "a record came twice");
}

#[test]
fn an_ixfr_lists_each_step_between_the_current_soa() {
    let zone = zone(ZONE);
    let apex = Name::parse("example.", None).unwrap();
    let soa = |serial: u32| Record {
        owner: apex.clone(),
        rtype: RecordType::SOA,
        ttl: 300,
        rdata: zone
            .soa()
            .first()
            .to_vec()
            .iter()
            .copied()
            .take(zone.soa().first().len() - 20)
            .chain([serial, 3600, 600, 86400, 60].iter().flat_map(|v| v.to_be_bytes()))
            .collect(),
    };
    let a = |last: u8| Record {
        owner: Name::parse("www.example.", None).unwrap(),
        rtype: RecordType::A,
        ttl: 300,
        rdata: vec![192, 0, 2, last],
    };
    let steps = vec![
        Arc::new(Diff {
            old_serial: Serial(5),
            new_serial: Serial(6),
            removed: vec![soa(5)].into(),
            added: vec![soa(6), a(1)].into(),
        }),
        Arc::new(Diff {
            old_serial: Serial(6),
            new_serial: Serial(7),
            removed: vec![soa(6), a(1)].into(),
            added: vec![soa(7), a(2)].into(),
        }),
    ];
    let request = parse_query(&axfr_query("example.", 251)).unwrap();
    let (messages, result) = collect(ZoneTransfer::ixfr(zone, &request, steps, u16::MAX as usize));
    result.unwrap();
    let types: Vec<u16> = messages.iter().flat_map(|m| records(m)).map(|r| r.1).collect();
    assert_eq!(types, [6, 6, 6, 1, 6, 1, 6, 1, 6]);
}

#[test]
fn a_record_too_large_for_a_message_stops_the_transfer() {
    // The zone rules keep every stored record small enough for a 65,535-octet
    // message (`rules::MAX_RDATA_LEN`), so the guard is shown with smaller
    // messages: 80 strings of 250 octets, 20,080 octets of RDATA, against
    // messages of at most 16,384.
    let big: String =
        (0..80).map(|i| format!(" \"{}\"", ((b'a' + (i % 26) as u8) as char).to_string().repeat(250))).collect();
    let zone = zone(&format!("{ZONE}big TXT{big}\nafter A 192.0.2.9\n"));
    let request = parse_query(&axfr_query("example.", 252)).unwrap();
    let (messages, result) = collect(ZoneTransfer::axfr(zone, &request, 16_384));
    let error = result.expect_err("the transfer must not complete without the record");
    assert_eq!(error.rtype, RecordType::TXT);
    assert_eq!(error.rdata_len, 20_080);
    assert!(error.to_string().contains("big.example."), "{error}");
    let soas = messages.iter().flat_map(|m| records(m)).filter(|r| r.1 == 6).count();
    assert_eq!(soas, 1, "no closing SOA after a record was left out");
}
