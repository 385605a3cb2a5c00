//! Transfer rules on the primary, checked with kdig: who may transfer (a
//! configured key or network, else REFUSED and a log line), IXFR over UDP when
//! the answer fits, and the current SOA alone for a client that is current.

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
