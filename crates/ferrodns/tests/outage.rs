//! The database goes away: DNS keeps answering from memory, the API answers
//! 503 with a clear problem, and writes work again once it is back. And when
//! PostgreSQL ends the node's connections between requests, the next writes
//! succeed.
//!
//! The node reaches PostgreSQL through a TCP relay that the test can cut,
//! which is what a failed database host or a network partition looks like
//! to ferrodns (connections reset, new ones refused).

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};
use support::relay::Relay;

#[test]
fn dns_answers_and_api_says_503_while_postgres_is_away() {
    let database = Database::postgres();
    let relay = Relay::start();
    let Database::Postgres { name, .. } = &database else { unreachable!() };
    let url = relay.url(name);
    let node = Node::start_with_url(&url, &[]);
    let put = |address: &str| {
        node.request(Method::PUT, "/v1/zones/outage.test/rrsets/www/A")
            .json(&json!({"ttl": 60, "records": [address]}))
            .send()
            .unwrap()
    };
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "outage.test"})).send().unwrap()).0,
        201
    );
    assert_eq!(json(put("192.0.2.1")).0, 200);

    relay.cut();
    assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1), ("NoError".into(), vec!["192.0.2.1".into()]));
    let started = Instant::now();
    let (status, problem, _) = json(put("192.0.2.2"));
    assert_eq!(status, 503, "{problem}");
    assert!(problem["type"].as_str().unwrap().ends_with("/database-unavailable"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("DNS keeps answering"), "{problem}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 503 took {:?}", started.elapsed());
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/ready").send().unwrap()).0, 503);
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/live").send().unwrap()).0, 200);
    assert_eq!(json(node.request(Method::GET, "/v1/zones/outage.test").send().unwrap()).0, 503);
    for _ in 0..50 {
        assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1).1, ["192.0.2.1"], "DNS stopped during the outage");
    }

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = json(put("192.0.2.3"));
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not come back: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1).1, ["192.0.2.3"]);
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/ready").send().unwrap()).0, 200);

    // ferrodns itself says the database went and came back, once each
    // (only sqlx's pool said anything before).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.log().contains("the database answers again") {
        assert!(Instant::now() < deadline, "no word of the database's return:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.log();
    let losses = log
        .lines()
        .filter(|l| l.contains("lost the database connection") || l.contains("cannot reach the database"))
        .count();
    assert!((1..=2).contains(&losses), "{losses} lines about the loss:\n{log}");
}

/// PostgreSQL ends every connection of the node (a restart, a failover, an
/// administrator's `pg_terminate_backend`) between two requests: the pool
/// must find out before it hands a dead connection to a request, so the next
/// writes succeed instead of answering 503.
#[test]
fn writes_right_after_postgres_drops_every_connection_succeed() {
    let database = Database::postgres();
    let Database::Postgres { name, .. } = &database else { unreachable!() };
    let node = Node::start_in_process(&database, &[]);
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "drop.test"})).send().unwrap()).0,
        201
    );
    let put = |i: usize| {
        json(
            node.request(Method::PUT, &format!("/v1/zones/drop.test/rrsets/h{}/A", i % 7))
                .json(&json!({"ttl": 60, "records": [format!("192.0.2.{}", i % 250 + 1)]}))
                .send()
                .unwrap(),
        )
    };
    let mut i = 0;
    for round in 0..3 {
        // Writes keep several pooled connections busy: the token lookup, the
        // change, and the follower reading back its own commit.
        for _ in 0..20 {
            i += 1;
            assert_eq!(put(i).0, 200);
        }
        support::control::psql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ));
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..10 {
            i += 1;
            let (status, body, _) = put(i);
            assert_eq!(status, 200, "round {round}, request {i} after the connections were dropped: {body}");
        }
    }
}

/// A node that starts while PostgreSQL does not answer (the database
/// restarting, the node's host up first) waits for it and then serves,
/// instead of exiting at once.
#[test]
fn a_node_started_before_its_database_answers_waits_for_it() {
    let database = Database::postgres();
    let relay = Relay::start();
    let Database::Postgres { name, .. } = &database else { unreachable!() };
    let url = relay.url(name);
    relay.cut();
    let restore = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        relay.restore();
        relay
    });
    let started = Instant::now();
    let node = Node::start_with_url(&url, &[]);
    assert!(started.elapsed() >= Duration::from_secs(3), "ready before the database answered");
    assert!(node.log().contains("the database does not answer yet; waiting for it"), "{}", node.log());
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "late.test"})).send().unwrap()).0,
        201
    );
    drop(restore.join().unwrap());
}
