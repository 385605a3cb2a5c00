//! Forward zones through the API and the CLI: created, changed, refused
//! records, deleted, kept across a restart, under the tenant and name
//! rules, and applied on a second node of one PostgreSQL database.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{json, Database, Node};
use support::{start_knot, temp_dir, ZoneFile};

/// A Knot answering for corp.example. and partner.test., the forwarders' side.
fn upstream() -> support::Server {
    let dir = temp_dir("forward-api-zones");
    let mut zones = Vec::new();
    for (origin, address) in [("corp.example.", "192.0.2.10"), ("partner.test.", "198.51.100.20")] {
        let path = dir.join(format!("{origin}zone"));
        let text = format!(
            "$ORIGIN {origin}\n$TTL 300\n@ SOA ns admin 1 3600 600 86400 120\n@ NS ns\nns A 192.0.2.53\nwww A {address}\n"
        );
        std::fs::write(&path, text).unwrap();
        zones.push(ZoneFile { origin: origin.to_string(), path });
    }
    start_knot(&zones)
}

/// Asks `server` as a stub resolver does (RD set); the rcode and the
/// answers' RDATA, sorted.
fn dns_lookup(server: std::net::SocketAddr, name: &str, qtype: u16) -> (String, Vec<String>) {
    let qname = ferrodns_proto::Name::parse(name, None).unwrap();
    let mut query = support::build_query(7, qname.as_wire(), qtype, Some(1232), false);
    query[2] |= 0x01;
    let reply = support::query_udp(server, &query, Duration::from_secs(3)).expect("a DNS answer");
    let message = hickory_proto::op::Message::from_vec(&reply).unwrap();
    let mut data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    (format!("{:?}", message.metadata.response_code), data)
}

fn create(node: &Node, token: Option<&str>, body: Value) -> (u16, Value) {
    let request = match token {
        Some(token) => node.request_as(token, Method::POST, "/v1/zones"),
        None => node.request(Method::POST, "/v1/zones"),
    };
    let (status, body, _) = json(request.json(&body).send().unwrap());
    (status, body)
}

fn patch(node: &Node, zone: &str, body: Value) -> (u16, Value) {
    let (status, body, _) = json(node.request(Method::PATCH, &format!("/v1/zones/{zone}")).json(&body).send().unwrap());
    (status, body)
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn forward_zones_through_the_api(database: Database) {
    let knot = upstream();
    let mut node = Node::start(&database, &[]);
    let forwarder = knot.addr.to_string();
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1).0, "Refused");

    let (status, zone) =
        create(&node, None, json!({"name": "corp.example", "kind": "forward", "forwarders": [forwarder]}));
    assert_eq!(status, 201, "{zone}");
    assert_eq!((zone["kind"].as_str(), zone["forwarders"][0].as_str()), (Some("forward"), Some(forwarder.as_str())));
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1), ("NoError".to_string(), vec!["192.0.2.10".to_string()]));
    let (status, shown, _) = json(node.request(Method::GET, "/v1/zones/corp.example").send().unwrap());
    assert_eq!((status, shown["forwarders"].clone()), (200, json!([forwarder])));

    // A forward zone holds no records.
    let www = json!({"ttl": 60, "records": ["192.0.2.99"]});
    let (status, problem, _) =
        json(node.request(Method::PUT, "/v1/zones/corp.example/rrsets/www/A").json(&www).send().unwrap());
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("forward zone"), "{problem}");
    let (status, _) = patch(&node, "corp.example", json!({"rate_limit": {"rate": 5}}));
    assert_eq!(status, 409);

    // Bad requests name their field.
    for (body, pointer) in [
        (json!({"name": "a.example", "kind": "forward"}), "/forwarders"),
        (json!({"name": "a.example", "kind": "forward", "forwarders": ["ns1.example"]}), "/forwarders/0"),
        (json!({"name": "a.example", "kind": "forward", "forwarders": []}), "/forwarders"),
        (json!({"name": "a.example", "forwarders": ["192.0.2.1"]}), "/forwarders"),
        (json!({"name": "a.example", "kind": "stub"}), "/kind"),
    ] {
        let (status, problem) = create(&node, None, body.clone());
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{body}: {problem}");
    }

    // New forwarders, with the version checked and the history kept.
    let (status, zone) = patch(&node, "corp.example", json!({"forwarders": ["192.0.2.1:5300"]}));
    assert_eq!((status, zone["forwarders"].clone()), (200, json!(["192.0.2.1:5300"])), "{zone}");
    let (status, zone) = patch(&node, "corp.example", json!({"forwarders": [forwarder]}));
    assert_eq!(status, 200, "{zone}");
    let (status, changes, _) = json(node.request(Method::GET, "/v1/zones/corp.example/changes").send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(changes["items"].as_array().unwrap().len(), 3, "{changes}");

    // The root zone is the default upstream; only the operator takes it,
    // and says so.
    let (_, tenant) = {
        let (status, created, _) = json(
            node.request(Method::POST, "/v1/tokens")
                .json(&json!({"name": "t-admin", "role": "admin", "tenant": "t"}))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 201, "{created}");
        ((), created["token"].as_str().unwrap().to_string())
    };
    let root = json!({"name": ".", "kind": "forward", "forwarders": [forwarder]});
    assert_eq!(create(&node, Some(&tenant), root.clone()).0, 403);
    assert_eq!(create(&node, None, root.clone()).0, 403, "not without allow_overlap");
    let (status, zone) =
        create(&node, None, json!({"name": ".", "kind": "forward", "forwarders": [forwarder], "allow_overlap": true}));
    assert_eq!(status, 201, "{zone}");
    assert_eq!(dns_lookup(node.dns, "www.partner.test.", 1).1, ["198.51.100.20"]);
    // A tenant cannot forward another tenant's names.
    let (status, problem) =
        create(&node, Some(&tenant), json!({"name": "x.corp.example", "kind": "forward", "forwarders": [forwarder]}));
    assert_eq!(status, 403, "{problem}");

    // The cache: its counters and flushes, for the operator only.
    dns_lookup(node.dns, "www.corp.example.", 1);
    let (status, cache, _) = json(node.request(Method::GET, "/v1/cache").send().unwrap());
    assert_eq!(status, 200, "{cache}");
    assert!(cache["entries"].as_u64().unwrap() >= 2 && cache["hits"].as_u64().unwrap() >= 1, "{cache}");
    assert!(cache["memory_bytes"].as_u64().unwrap() > 0 && cache["capacity_bytes"] == 64 << 20, "{cache}");
    assert_eq!(json(node.request_as(&tenant, Method::GET, "/v1/cache").send().unwrap()).0, 403);
    assert_eq!(json(node.request_as(&tenant, Method::DELETE, "/v1/cache").send().unwrap()).0, 403);
    let (status, flushed, _) = json(node.request(Method::DELETE, "/v1/cache?name=corp.example").send().unwrap());
    assert_eq!((status, flushed["flushed"].as_u64()), (200, Some(1)), "{flushed}");
    let (status, flushed, _) = json(node.request(Method::DELETE, "/v1/cache").send().unwrap());
    assert_eq!((status, flushed["flushed"].as_u64()), (200, Some(1)), "partner.test's answer: {flushed}");
    assert_eq!(json(node.request(Method::DELETE, "/v1/cache?name=a..b").send().unwrap()).0, 422);

    // The CLI: create, show, change forwarders, delete.
    let output = node.cli(&["zone", "create", "partner.test", "--forward", &forwarder]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(table.contains("forward") && table.contains(&forwarder), "{table}");
    let output = node.cli(&["zone", "forwarders", "partner.test", "192.0.2.7", "192.0.2.8:5300"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("192.0.2.7, 192.0.2.8:5300"), "{output:?}");
    let output = node.cli(&["zone", "show", "."]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("forward"), "{output:?}");

    // Kept across a restart.
    node.restart();
    until("the forward zone answers after a restart", || {
        dns_lookup(node.dns, "www.corp.example.", 1).1 == ["192.0.2.10"]
    });

    // Deleted: the names go to the default upstream, then nowhere.
    let (status, ..) = json(node.request(Method::DELETE, "/v1/zones/corp.example").send().unwrap());
    assert_eq!(status, 204);
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1).1, ["192.0.2.10"], "through the root forward zone");
    let (status, ..) = json(node.request(Method::DELETE, "/v1/zones/=2E").send().unwrap());
    assert_eq!(status, 204);
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1).0, "Refused");
}

#[test]
fn forward_zones_through_the_api_on_sqlite() {
    forward_zones_through_the_api(Database::sqlite());
}

#[test]
fn forward_zones_through_the_api_on_postgres() {
    forward_zones_through_the_api(Database::postgres());
}

#[test]
fn a_forward_zone_made_on_one_node_forwards_on_the_other() {
    let knot = upstream();
    let database = Database::postgres();
    let ha = ["--ha-lease-ms", "1000", "--ha-renew-ms", "250", "--ha-poll-ms", "100"];
    let a = Node::start(&database, &[&["--node-id", "a"][..], &ha].concat());
    let mut b = Node::start(&database, &[&["--node-id", "b"][..], &ha].concat());
    b.token = a.token.clone();
    let forwarder = knot.addr.to_string();
    let (status, zone) =
        create(&a, None, json!({"name": "corp.example", "kind": "forward", "forwarders": [forwarder]}));
    assert_eq!(status, 201, "{zone}");
    until("b forwards the zone", || dns_lookup(b.dns, "www.corp.example.", 1).1 == ["192.0.2.10"]);
    let (status, ..) = json(b.request(Method::DELETE, "/v1/zones/corp.example").send().unwrap());
    assert_eq!(status, 204);
    until("a drops the zone", || dns_lookup(a.dns, "www.corp.example.", 1).0 == "Refused");
}

#[test]
fn a_ferrodns_secondary_forwards_what_its_primary_forwards() {
    let knot = upstream();
    let port = support::free_port();
    let key = "xfr-key:hmac-sha256:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    let primary = Node::start(&Database::sqlite(), &["--tsig-key", key, "--notify", &format!("127.0.0.1:{port}")]);
    let secondary = support::secondary::SecondaryNode::start(port, &[primary.dns], &["--tsig-key", key]);
    let forwarder = knot.addr.to_string();
    let (status, zone) =
        create(&primary, None, json!({"name": "corp.example", "kind": "forward", "forwarders": [forwarder]}));
    assert_eq!(status, 201, "{zone}");
    until("the secondary forwards the zone", || dns_lookup(secondary.dns, "www.corp.example.", 1).1 == ["192.0.2.10"]);
    // The catalog carries it as a custom property, not a member.
    let catalog = support::control::axfr_lines(primary.dns, "catalog.ferrodns.invalid.", Some(key));
    assert!(catalog.iter().any(|line| line.contains(".forward.ext.") && line.contains(&forwarder)), "{catalog:?}");
    assert!(!catalog.iter().any(|line| line.contains("PTR corp.example.")), "{catalog:?}");
    let (status, ..) = json(primary.request(Method::DELETE, "/v1/zones/corp.example").send().unwrap());
    assert_eq!(status, 204);
    until("the secondary stops forwarding", || dns_lookup(secondary.dns, "www.corp.example.", 1).0 == "Refused");
}

#[test]
fn the_cache_counts_each_query_once() {
    let knot = upstream();
    let node = Node::start(&Database::sqlite(), &[]);
    let forwarder = knot.addr.to_string();
    let (status, zone) =
        create(&node, None, json!({"name": "corp.example", "kind": "forward", "forwarders": [forwarder]}));
    assert_eq!(status, 201, "{zone}");
    let counters = || {
        let (status, cache, _) = json(node.request(Method::GET, "/v1/cache").send().unwrap());
        assert_eq!(status, 200, "{cache}");
        (cache["hits"].as_u64().unwrap(), cache["misses"].as_u64().unwrap())
    };
    // Over UDP a miss is looked up on the worker and again where it is
    // fetched; it is one query, one miss.
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1).1, ["192.0.2.10"]);
    assert_eq!(counters(), (0, 1));
    assert_eq!(dns_lookup(node.dns, "www.corp.example.", 1).1, ["192.0.2.10"]);
    assert_eq!(counters(), (1, 1));
}
