//! Transfer rules on the primary, checked with kdig: who may transfer (a
//! configured key or network, else REFUSED, Prohibited, and a log line), IXFR
//! over UDP when the answer fits, and the current SOA alone for a client that
//! is current; AXFR over UDP and NOTIFY from a stranger get what Knot answers.

mod support;

use std::process::Command;

use reqwest::Method;
use serde_json::json;
use support::control::{json, Database, Node};

const SECRET: &str = "dHJhbnNmZXItcnVsZXMtdGVzdC1rZXktMzItYnl0ZXMh";

fn kdig(node: &Node, args: &[&str]) -> String {
    let output = Command::new("kdig")
        .args([&format!("@{}", node.dns.ip()), "-p", &node.dns.port().to_string()])
        .args(args)
        .output()
        .expect("kdig (knot-dnsutils)");
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

fn setup(extra: &[&str]) -> (Database, Node) {
    let database = Database::sqlite();
    let key = format!("xfr:hmac-sha256:{SECRET}");
    let mut args = vec!["--tsig-key", key.as_str()];
    args.extend_from_slice(extra);
    let node = Node::start(&database, &args);
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "rules.test"})).send().unwrap()).0,
        201
    );
    let changes: Vec<_> = (0..10)
        .map(|i| json!({"action": "create", "name": format!("h{i}"), "type": "A", "ttl": 60, "records": [format!("192.0.2.{i}")]}))
        .collect();
    let response =
        node.request(Method::POST, "/v1/zones/rules.test/changes").json(&json!({"changes": changes})).send().unwrap();
    assert_eq!(json(response).0, 200);
    (database, node)
}

#[test]
fn transfers_need_a_key_or_an_allowed_network() {
    let (_database, node) = setup(&[]);
    let refused = kdig(&node, &["rules.test.", "AXFR"]);
    assert!(refused.contains("REFUSED"), "{refused}");
    let axfr = support::build_query(4, b"\x05rules\x04test\x00", 252, Some(1232), false);
    let reply = support::query_tcp(node.dns, &axfr, std::time::Duration::from_secs(2)).unwrap();
    let options = support::reply_options(&reply).unwrap();
    assert!(options.iter().any(|(code, data)| *code == 15 && data[..2] == [0, 18]), "RFC 8914 Prohibited: {options:?}");
    let not_ours = kdig(&node, &["other.test.", "AXFR"]);
    assert!(not_ours.contains("NOTAUTH"), "a zone not served, before the ACL: {not_ours}");
    assert!(node.log().contains("transfer refused"), "the refusal is logged");
    let signed = kdig(&node, &["-y", &format!("hmac-sha256:xfr:{SECRET}"), "rules.test.", "AXFR"]);
    assert!(signed.contains("h9.rules.test.") && signed.contains("NOERROR"), "{signed}");
    let wrong =
        kdig(&node, &["-y", "hmac-sha256:xfr:d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC0zMmJ5dGU=", "rules.test.", "AXFR"]);
    assert!(wrong.contains("BADSIG"), "{wrong}");
    let unknown = kdig(&node, &["-y", &format!("hmac-sha256:other:{SECRET}"), "rules.test.", "AXFR"]);
    assert!(unknown.contains("BADKEY"), "{unknown}");

    let (_database, open) = setup(&["--allow-transfer", "127.0.0.0/8"]);
    let allowed = kdig(&open, &["rules.test.", "AXFR"]);
    assert!(allowed.contains("h9.rules.test."), "{allowed}");
    // AXFR over UDP is NOTIMP (RFC 5936 §4.2) whoever asks, as Knot and NSD answer.
    for node in [&node, &open] {
        let axfr = support::build_query(5, b"\x05rules\x04test\x00", 252, Some(1232), false);
        let reply = support::query_udp(node.dns, &axfr, std::time::Duration::from_secs(2)).unwrap();
        assert_eq!(reply[3] & 0x0f, 4, "NOTIMP");
    }
}

/// A NOTIFY to a primary, which follows no zone: NOTAUTH, the question kept,
/// AA clear, as Knot answers (docs/differences.md).
#[test]
fn notify_from_a_stranger_is_notauth() {
    let (_database, node) = setup(&[]);
    for (zone, edns) in [(&b"\x05rules\x04test\x00"[..], Some(1232)), (b"\x05other\x04test\x00", None)] {
        let mut notify = support::build_query(6, zone, 6, edns, false);
        notify[2] = 0x24;
        for reply in [
            support::query_udp(node.dns, &notify, std::time::Duration::from_secs(2)).unwrap(),
            support::query_tcp(node.dns, &notify, std::time::Duration::from_secs(2)).unwrap(),
        ] {
            assert_eq!((reply[2], reply[3]), (0xa0, 0x09), "QR, opcode NOTIFY, AA clear, NOTAUTH");
            assert_eq!(&reply[4..6], &[0, 1], "the question is kept");
            assert_eq!(support::reply_options(&reply).is_some(), edns.is_some(), "OPT as asked");
        }
    }
}

#[test]
fn ixfr_over_udp_when_it_fits_and_the_soa_alone_when_current() {
    let (_database, node) = setup(&["--allow-transfer", "127.0.0.1"]);
    let body = json!({"ttl": 60, "records": ["198.51.100.1"]});
    assert_eq!(json(node.request(Method::PUT, "/v1/zones/rules.test/rrsets/h0/A").json(&body).send().unwrap()).0, 200);
    // Serial 2 -> 3 is one record out and one in: it fits a UDP answer.
    let udp = kdig(&node, &["+notcp", "rules.test.", "IXFR=2"]);
    assert!(udp.contains("198.51.100.1") && udp.contains("(UDP)"), "{udp}");
    assert!(!udp.contains("h9.rules.test."), "an incremental answer, not the whole zone: {udp}");
    let current = kdig(&node, &["rules.test.", "IXFR=3"]);
    assert_eq!(current.matches("\tSOA\t").count(), 1, "the current SOA alone: {current}");
}
