//! Two control nodes on one PostgreSQL: a write on either is served by the
//! other's DNS within moments (LISTEN/NOTIFY, polling as a safety net), one
//! node leads, and when the leader is killed the other takes over within
//! the lease. The full failover suite (load, SIGSTOP, partitions, rolling
//! restarts, 20 kills) is the next step; see docs/ha.md.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{dns_lookup, json, Database, Node};

const HA: [&str; 4] = ["--ha-lease-ms", "1000", "--ha-renew-ms", "250"];

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
}
