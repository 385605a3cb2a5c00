//! Two control nodes on one PostgreSQL: a write on either is served by the
//! other's DNS within moments (LISTEN/NOTIFY, polling as a safety net), one
//! node leads, both serve one catalog (same serial, same members), the
//! leader compacts the journals under its term, and when the leader is
//! killed the other takes over within the lease. The full failover suite
//! (load, SIGSTOP, partitions, rolling restarts, 20 kills) is failover.rs.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{axfr_lines, dns_lookup, json, psql, Database, Node};

const HA: [&str; 10] = [
    "--ha-lease-ms",
    "1000",
    "--ha-renew-ms",
    "250",
    "--ha-poll-ms",
    "100",
    "--journal-keep",
    "5",
    "--allow-transfer",
    "127.0.0.1/32",
];
const CATALOG: &str = "catalog.ferrodns.invalid.";

fn catalog(node: &Node) -> Vec<String> {
    axfr_lines(node.dns, CATALOG, None)
}

/// Waits until both nodes serve the same catalog listing `zones`; returns it.
fn same_catalog(a: &Node, b: &Node, zones: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (on_a, on_b) = (catalog(a), catalog(b));
        let members = on_a.iter().filter(|l| l.contains(" PTR ")).count();
        let listed = zones.iter().all(|z| on_a.iter().any(|l| l.ends_with(&format!(" PTR {z}"))));
        if on_a == on_b && members == zones.len() && listed {
            return on_a;
        }
        assert!(Instant::now() < deadline, "the catalogs differ or miss {zones:?}:\n{on_a:#?}\n{on_b:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ha(node: &Node) -> Value {
    json(node.anonymous(Method::GET, "/v1/ha").send().unwrap()).1
}

fn wait_for_answer(node: &Node, name: &str, address: &str) -> Duration {
    let started = Instant::now();
    loop {
        if dns_lookup(node.dns, name, 1).1 == [address] {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{name} never showed {address}:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_nodes_share_writes_and_fail_over() {
    let database = Database::postgres();
    let mut a = Node::start(&database, &[&["--node-id", "a"][..], &HA].concat());
    let mut b = Node::start(&database, &[&["--node-id", "b"][..], &HA].concat());
    b.token = a.token.clone();
    // The second node finds the schema made: nothing to say about it.
    assert!(!b.log().contains("already exists"), "{}", b.log());

    // A zone and a change made on one node are served by the other.
    assert_eq!(json(a.request(Method::POST, "/v1/zones").json(&json!({"name": "ha.test"})).send().unwrap()).0, 201);
    let put = |node: &Node, address: &str| {
        let body = json!({"ttl": 60, "records": [address]});
        let (status, body, _) =
            json(node.request(Method::PUT, "/v1/zones/ha.test/rrsets/www/A").json(&body).send().unwrap());
        assert_eq!(status, 200, "{body}");
    };
    put(&a, "192.0.2.1");
    let took = wait_for_answer(&b, "www.ha.test.", "192.0.2.1");
    println!("a -> b: {took:?}");
    let mut delays = Vec::new();
    for i in 2..22 {
        let (writer, reader) = if i % 2 == 0 { (&b, &a) } else { (&a, &b) };
        put(writer, &format!("192.0.2.{i}"));
        delays.push(wait_for_answer(reader, "www.ha.test.", &format!("192.0.2.{i}")));
    }
    delays.sort();
    println!("other node served the write after: p50 {:?}, max {:?}", delays[delays.len() / 2], delays.last().unwrap());
    assert!(*delays.last().unwrap() < Duration::from_millis(1000), "{delays:?}");

    // Serials stay gap-free across nodes.
    let (_, zone, _) = json(a.request(Method::GET, "/v1/zones/ha.test").send().unwrap());
    assert_eq!(zone["serial"], 22, "1 for the creation, then 21 changes");

    // One catalog: a zone made on either node is listed by both, under one
    // serial, written once by the leader under its term.
    let first = same_catalog(&a, &b, &["ha.test."]);
    assert_eq!(json(b.request(Method::POST, "/v1/zones").json(&json!({"name": "two.test"})).send().unwrap()).0, 201);
    let second = same_catalog(&a, &b, &["ha.test.", "two.test."]);
    // Each node says truly where a zone was made: b made two.test itself
    // (it logged "created on another node" for it before).
    let created_elsewhere =
        |node: &Node, zone: &str| node.log().lines().any(|l| l.contains("created on another node") && l.contains(zone));
    assert!(!created_elsewhere(&b, "two.test."), "{}", b.log());
    assert!(created_elsewhere(&a, "two.test."), "{}", a.log());
    let serial = |lines: &[String]| -> u64 {
        let soa = lines.iter().find(|l| l.contains(" SOA ")).expect("a catalog SOA");
        soa.split_whitespace().nth(6).unwrap().parse().unwrap()
    };
    assert!(serial(&second) > serial(&first), "{first:?} -> {second:?}");
    let written: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|n| n.log().lines().filter(|l| l.contains("catalog written")).map(String::from).collect::<Vec<_>>())
        .collect();
    assert!(written.iter().all(|l| l.contains("term=")), "{written:?}");

    // The leader compacts the journal to --journal-keep (5) under its term,
    // once a zone has moved 16 versions since its last trim (its first trim
    // comes at any version past 5). So the journal holds 5 + the versions
    // since the last trim; a trim may have come in the middle of the writes
    // above, and then writing until 16 versions have passed makes the next
    // one due. No trim can come between those writes until the last.
    let kept = || -> usize {
        let (_, history, _) = json(a.request(Method::GET, "/v1/zones/ha.test/changes?limit=1000").send().unwrap());
        history["items"].as_array().unwrap().len()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = 22;
    loop {
        let now = kept();
        if now == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the journal still holds {now} entries");
        for _ in now..21 {
            put(if next % 2 == 0 { &a } else { &b }, &format!("192.0.2.{next}"));
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let compacted = format!("{}{}", a.log(), b.log());
    assert!(compacted.lines().any(|l| l.contains("journal compacted") && l.contains("term=")), "{compacted}");

    // One leader; readiness for a VIP says which.
    let deadline = Instant::now() + Duration::from_secs(5);
    let leader = loop {
        let (ha_a, ha_b) = (ha(&a), ha(&b));
        let leaders: Vec<&Value> = [&ha_a, &ha_b].into_iter().filter(|h| h["role"] == "leader").collect();
        if leaders.len() == 1 {
            break leaders[0]["node"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no single leader: {ha_a} {ha_b}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (leader_node, follower_node) = if leader == "a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    assert_eq!(json(leader_node.anonymous(Method::GET, "/v1/health/ready?role=leader").send().unwrap()).0, 200);
    assert_eq!(json(follower_node.anonymous(Method::GET, "/v1/health/ready?role=leader").send().unwrap()).0, 503);
    let old_term = ha(leader_node)["term"].as_u64().unwrap();

    // Kill the leader: the follower takes over within the lease.
    leader_node.kill();
    let killed = Instant::now();
    let took = loop {
        let state = ha(follower_node);
        if state["role"] == "leader" {
            assert!(state["term"].as_u64().unwrap() > old_term, "{state}");
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "no takeover: {state}");
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("failover took {took:?}");
    assert!(took < Duration::from_secs(3), "failover took {took:?}");
    assert!(follower_node.log().contains("became leader"));

    // A clean SIGTERM of the leader is planned: said at INFO, no warning
    // (it logged "no longer leader: shutting down" at WARN before).
    follower_node.stop();
    let log = follower_node.log();
    assert!(log.contains("shutting down: gave the lease up"), "{log}");
    let shutdown = &log[log.find("shutting down").unwrap_or(0)..];
    assert!(!log.lines().any(|l| l.contains("WARN") && l.contains("no longer leader")), "{log}");
    assert!(!shutdown.contains("WARN"), "{shutdown}");
}

/// Nodes keep authenticated tokens for a moment, so that a burst of
/// requests reads each token once; a token revoked on one node must still
/// be refused by the others at once, well before that moment is over.
#[test]
fn a_token_revoked_on_one_node_is_refused_by_the_other_at_once() {
    let database = Database::postgres();
    let a = Node::start(&database, &[&["--node-id", "a"][..], &HA].concat());
    let mut b = Node::start(&database, &[&["--node-id", "b"][..], &HA].concat());
    b.token = a.token.clone();
    let (status, created, _) = json(
        a.request(Method::POST, "/v1/tokens").json(&json!({"name": "short-lived", "role": "viewer"})).send().unwrap(),
    );
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    // Node b authenticates it, and keeps it.
    assert_eq!(json(b.request_as(secret, Method::GET, "/v1/zones").send().unwrap()).0, 200);
    assert_eq!(json(b.request_as(secret, Method::GET, "/v1/zones").send().unwrap()).0, 200);

    assert_eq!(json(a.request(Method::DELETE, &format!("/v1/tokens/{id}")).send().unwrap()).0, 204);
    let revoked = Instant::now();
    assert_eq!(json(a.request_as(secret, Method::GET, "/v1/zones").send().unwrap()).0, 401, "on the revoking node");
    loop {
        let status = json(b.request_as(secret, Method::GET, "/v1/zones").send().unwrap()).0;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_millis(1000),
            "node b still takes the revoked token {:?} after its revocation",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node that missed other nodes' notifications (its listening connection
/// ended while it was stopped) catches up with what changed meanwhile in
/// passes over many zones: the changed zones from their journals in one
/// read, the new ones loaded together, the deleted one dropped; none read
/// on its own, as a notification's zone is.
#[test]
fn a_node_that_missed_notifications_catches_up_in_passes() {
    let database = Database::postgres();
    let a = Node::start(&database, &[&["--node-id", "a"][..], &HA].concat());
    let mut b = Node::start(&database, &[&["--node-id", "b"][..], &HA].concat());
    b.token = a.token.clone();
    let put = |zone: &str, address: &str| {
        let body = json!({"ttl": 60, "records": [address]});
        let (status, body, _) =
            json(a.request(Method::PUT, &format!("/v1/zones/{zone}/rrsets/www/A")).json(&body).send().unwrap());
        assert_eq!(status, 200, "{body}");
    };
    for k in 0..20 {
        a.create_zone(&format!("c{k}.test"));
        put(&format!("c{k}.test"), "192.0.2.1");
    }
    a.create_zone("gone.test");
    put("gone.test", "192.0.2.1");
    for zone in (0..20).map(|k| format!("c{k}.test")).chain(["gone.test".to_string()]) {
        wait_for_answer(&b, &format!("www.{zone}."), "192.0.2.1");
    }

    // b stops, and its listening connection is ended (a's too; a
    // reconnects at once): whatever is announced now, b never hears.
    b.signal(libc::SIGSTOP);
    let db = database.url().unwrap().rsplit('/').next().unwrap().to_string();
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND query ILIKE 'LISTEN%'"
    ));
    for k in 0..20 {
        put(&format!("c{k}.test"), "192.0.2.2");
        put(&format!("c{k}.test"), "192.0.2.3");
    }
    for k in 0..10 {
        a.create_zone(&format!("n{k}.test"));
        put(&format!("n{k}.test"), "192.0.2.9");
    }
    assert_eq!(a.request(Method::DELETE, "/v1/zones/gone.test").send().unwrap().status(), 204);
    b.signal(libc::SIGCONT);

    for k in 0..20 {
        wait_for_answer(&b, &format!("www.c{k}.test."), "192.0.2.3");
    }
    for k in 0..10 {
        wait_for_answer(&b, &format!("www.n{k}.test."), "192.0.2.9");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while dns_lookup(b.dns, "www.gone.test.", 1).0 != "Refused" {
        assert!(Instant::now() < deadline, "b still serves the deleted zone");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("caught up with the database") && l.contains("zones=30"))
        .unwrap_or_else(|| panic!("no catch-up of the 30 zones:\n{log}"));
    assert!(
        line.contains("from_journal=20") && line.contains("reloaded=10") && line.contains("one_by_one=0"),
        "{line}"
    );
}
