//! The zone rules, end to end over the API, on SQLite and PostgreSQL: what
//! the API accepts the server publishes, before and after a restart, and
//! what it cannot publish is refused with a 4xx before anything commits.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{axfr_lines, dns_lookup, json, Database, Node};

const SOA: u16 = 6;
const DNAME: u16 = 39;

fn batch(node: &Node, zone: &str, changes: Value) -> (u16, Value) {
    let (status, body, _) = json(
        node.request(Method::POST, &format!("/v1/zones/{zone}/changes"))
            .json(&json!({ "changes": changes }))
            .send()
            .unwrap(),
    );
    (status, body)
}

/// The request from the report that took a tenant's zone off the air: a
/// DNAME RRset of two records committed, answered 500, blocked every later
/// write, and after a restart the zone was not served at all.
fn two_dnames_are_refused_before_the_commit(database: Database) {
    let mut node = Node::start(&database, &[]);
    node.create_zone("dn.test");
    let (status, body) = batch(
        &node,
        "dn.test.",
        json!([{"action": "upsert", "name": "d", "type": "DNAME", "ttl": 60, "records": ["a.example.", "b.example."]}]),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/changes/0/records", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("DNAME"), "{body}");
    // The zone stays writable and served, then and after a restart.
    let (status, body) = batch(
        &node,
        "dn.test.",
        json!([{"action": "upsert", "name": "d", "type": "DNAME", "ttl": 60, "records": ["a.example."]}]),
    );
    assert_eq!(status, 200, "{body}");
    node.restart();
    let (rcode, answers) = dns_lookup(node.dns, "d.dn.test.", DNAME);
    assert_eq!((rcode.as_str(), answers.len()), ("NoError", 1));
    assert!(!node.log().contains("does not build"), "{}", node.log());
}

#[test]
fn two_dnames_are_refused_on_sqlite() {
    two_dnames_are_refused_before_the_commit(Database::sqlite());
}

#[test]
fn two_dnames_are_refused_on_postgres() {
    two_dnames_are_refused_before_the_commit(Database::postgres());
}

/// A BIND zone imported with its serial keeps a serial at least as new
/// (RFC 1982), so secondaries that hold the file's serial keep following.
fn import_never_moves_the_serial_back(database: Database) {
    let node = Node::start_in_process(&database, &[]);
    node.create_zone("moved.test");
    let file =
        "$ORIGIN moved.test.\n@ 300 IN SOA ns1.moved.test. hostmaster.moved.test. 2024061501 3600 600 86400 300\n\
                @ 300 IN NS ns1.moved.test.\nns1 300 IN A 192.0.2.1\n";
    let response = node
        .request(Method::POST, "/v1/zones/moved.test/import?mode=replace")
        .header("content-type", "text/dns")
        .body(file)
        .send()
        .unwrap();
    let (status, body, _) = json(response);
    assert_eq!(status, 200, "{body}");
    let serial = |node: &Node| {
        let soa = dns_lookup(node.dns, "moved.test.", SOA).1;
        soa[0].split(' ').nth(2).unwrap().parse::<u32>().unwrap()
    };
    assert_eq!(serial(&node), 2024061501);
    let (status, _) = batch(
        &node,
        "moved.test",
        json!([{"action": "upsert", "name": "www", "type": "A", "ttl": 60, "records": ["192.0.2.2"]}]),
    );
    assert_eq!(status, 200);
    assert_eq!(serial(&node), 2024061502);
    // A file with an older serial never moves the zone back.
    let older = file.replace("2024061501", "7");
    let response = node
        .request(Method::POST, "/v1/zones/moved.test/import?mode=replace")
        .header("content-type", "text/dns")
        .body(older)
        .send()
        .unwrap();
    assert_eq!(json(response).0, 200);
    assert_eq!(serial(&node), 2024061503);
}

#[test]
fn import_keeps_the_serial_on_sqlite() {
    import_never_moves_the_serial_back(Database::sqlite());
}

#[test]
fn import_keeps_the_serial_on_postgres() {
    import_never_moves_the_serial_back(Database::postgres());
}

struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One random change as the API takes it: CNAMEs, DNAMEs, cuts with DS and
/// glue, wildcards, and the apex NS and SOA, so that many break a rule.
fn random_change(random: &mut Random) -> Value {
    const OWNERS: &[&str] = &["@", "a", "b", "c.b", "*", "*.b", "sub", "ns.sub", "x.sub", "d", "y.d"];
    const TYPES: &[&str] = &["A", "AAAA", "CNAME", "DNAME", "NS", "DS", "TXT", "MX", "SOA"];
    const ACTIONS: &[&str] = &["create", "upsert", "upsert", "delete"];
    let owner = OWNERS[random.below(OWNERS.len())];
    let rtype = TYPES[random.below(TYPES.len())];
    let action = ACTIONS[random.below(ACTIONS.len())];
    let records: Vec<String> = (0..1 + random.below(3))
        .map(|i| {
            let n = random.below(3) + i;
            match rtype {
                "A" => format!("192.0.2.{n}"),
                "AAAA" => format!("2001:db8::{n}"),
                "CNAME" | "DNAME" | "NS" => format!("t{n}.example.net."),
                "DS" => format!("{n} 8 2 0102030405"),
                "TXT" => format!("\"text {n}\""),
                "MX" => format!("{n} mx.example.net."),
                _ => format!("ns.example.net. h.example.net. {n} 3600 600 86400 60"),
            }
        })
        .collect();
    if action == "delete" && random.below(2) == 0 {
        json!({"action": action, "name": owner, "type": rtype})
    } else {
        json!({"action": action, "name": owner, "type": rtype, "ttl": 300, "records": records})
    }
}

/// Random batches through the API: none may answer 5xx, every 2xx must be
/// served at once, and a restart must serve the zone exactly as before.
fn random_batches_publish_and_survive_a_restart(database: Database) {
    let mut node = Node::start(&database, &["--allow-transfer", "127.0.0.0/8"]);
    node.create_zone("rules.test");
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..150 {
        let changes: Vec<Value> = (0..1 + random.below(3)).map(|_| random_change(&mut random)).collect();
        let (status, body) = batch(&node, "rules.test", Value::Array(changes.clone()));
        assert!(status < 500, "step {step}: {changes:?} answered {status}: {body}");
        if status == 200 {
            accepted += 1;
            let serial = body["serial"].as_u64().unwrap().to_string();
            let soa = dns_lookup(node.dns, "rules.test.", SOA).1;
            assert_eq!(soa[0].split(' ').nth(2), Some(serial.as_str()), "step {step}: not served");
        } else {
            refused += 1;
        }
    }
    assert!(accepted > 20 && refused > 20, "accepted {accepted}, refused {refused}");
    let before = axfr_lines(node.dns, "rules.test.", None);
    assert!(before.len() > 2, "{before:?}");
    node.restart();
    assert_eq!(axfr_lines(node.dns, "rules.test.", None), before, "the zone changed across a restart");
    assert!(!node.log().contains("does not build"), "{}", node.log());
}

#[test]
fn random_batches_on_sqlite() {
    random_batches_publish_and_survive_a_restart(Database::sqlite());
}

#[test]
fn random_batches_on_postgres() {
    random_batches_publish_and_survive_a_restart(Database::postgres());
}
