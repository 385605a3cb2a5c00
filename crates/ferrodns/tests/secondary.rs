//! ferrodns as a secondary of a ferrodns primary, through the catalog and
//! with TSIG: new zones and changes arrive; a restart while the primary is
//! down still serves the kept copy; past the SOA expire the zone answers
//! SERVFAIL; when the primary returns, the zone is served again.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};
use support::free_port;
use support::secondary::SecondaryNode;

const KEY: &str = "xfr:hmac-sha256:c2Vjb25kYXJ5LXRlc3Qta2V5LWZvci1mZXJyb2Rucy0zMg==";

/// Waits until `check` holds for the answer to `name`/`qtype` from `server`.
pub fn wait_until(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
    log: impl Fn() -> String,
    check: impl Fn(&str, &[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok((rcode, data)) = std::panic::catch_unwind(|| dns_lookup(server, name, qtype)) {
            if check(&rcode, &data) {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < timeout, "{name}: condition not met in {timeout:?}:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ferrodns_follows_ferrodns_through_restarts_and_expiry() {
    let database = Database::sqlite();
    let secondary_port = free_port();
    let mut primary = Node::start(&database, &["--tsig-key", KEY, "--notify", &format!("127.0.0.1:{secondary_port}")]);
    let mut secondary = SecondaryNode::start(secondary_port, &[primary.dns], &["--tsig-key", KEY]);

    // A zone with short SOA timers, so that the test can watch it expire.
    assert_eq!(
        json(primary.request(Method::POST, "/v1/zones").json(&json!({"name": "sec.test"})).send().unwrap()).0,
        201
    );
    let file = "$ORIGIN sec.test.\n@ 60 IN SOA ns.sec.test. hostmaster.sec.test. 1 1 1 6 60\n@ 60 IN NS ns.sec.test.\n\
                ns 60 IN A 192.0.2.53\nwww 60 IN A 192.0.2.1\n";
    let response = primary
        .request(Method::POST, "/v1/zones/sec.test/import?mode=replace")
        .header("content-type", "text/dns")
        .body(file)
        .send()
        .unwrap();
    assert_eq!(json(response).0, 200);
    let log = || secondary.log();
    wait_until(secondary.dns, "www.sec.test.", 1, Duration::from_secs(20), log, |_, d| d == ["192.0.2.1"]);

    // A change arrives by NOTIFY and IXFR.
    let body = json!({"ttl": 60, "records": ["192.0.2.2"]});
    assert_eq!(
        json(primary.request(Method::PUT, "/v1/zones/sec.test/rrsets/www/A").json(&body).send().unwrap()).0,
        200
    );
    let took = wait_until(
        secondary.dns,
        "www.sec.test.",
        1,
        Duration::from_secs(10),
        || secondary.log(),
        |_, d| d == ["192.0.2.2"],
    );
    println!("the change reached the secondary in {took:?}");
    let incremental = primary.log().lines().any(|l| l.contains("IXFR served") && l.contains("incremental"));
    assert!(incremental, "{}", primary.log());

    // A burst of changes: the secondary ends at the last one.
    for i in 10..40 {
        let body = json!({"ttl": 60, "records": [format!("192.0.2.{i}")]});
        assert_eq!(
            json(primary.request(Method::PUT, "/v1/zones/sec.test/rrsets/burst/A").json(&body).send().unwrap()).0,
            200
        );
    }
    let took = wait_until(
        secondary.dns,
        "burst.sec.test.",
        1,
        Duration::from_secs(10),
        || secondary.log(),
        |_, d| d == ["192.0.2.39"],
    );
    println!("the last of 30 quick changes reached the secondary {took:?} after it was acknowledged");
    // Put www back where the rest of the test expects it.
    let body = json!({"ttl": 60, "records": ["192.0.2.2"]});
    assert_eq!(
        json(primary.request(Method::PUT, "/v1/zones/sec.test/rrsets/www/A").json(&body).send().unwrap()).0,
        200
    );

    // The primary goes away; a restarted secondary serves its kept copy at once.
    primary.kill();
    secondary.kill();
    secondary.launch();
    let (rcode, data) = dns_lookup(secondary.dns, "www.sec.test.", 1);
    assert_eq!((rcode.as_str(), data), ("NoError", vec!["192.0.2.2".to_string()]), "{}", secondary.log());

    // Past the SOA expire (6 s) with no primary: SERVFAIL.
    let took = wait_until(
        secondary.dns,
        "www.sec.test.",
        1,
        Duration::from_secs(20),
        || secondary.log(),
        |rcode, _| rcode == "ServFail",
    );
    println!("expired {took:?} after the restart");
    assert!(secondary.log().contains("answering SERVFAIL"));
    // And says why (RFC 8914 Invalid Data, as Knot says of a zone without contents).
    let query = support::build_query(9, b"\x03www\x03sec\x04test\x00", 1, Some(1232), false);
    let reply = support::query_udp(secondary.dns, &query, Duration::from_secs(2)).unwrap();
    let options = support::reply_options(&reply).unwrap();
    assert!(options.iter().any(|(code, data)| *code == 15 && data[..2] == [0, 24]), "{options:?}");

    // The primary returns: the zone is served again.
    primary.relaunch();
    wait_until(
        secondary.dns,
        "www.sec.test.",
        1,
        Duration::from_secs(20),
        || secondary.log(),
        |rcode, d| rcode == "NoError" && d == ["192.0.2.2"],
    );
}

/// With the first primary down, the secondary gets its zones from the next,
/// which is given by name (resolved at each refresh).
#[test]
fn a_dead_first_primary_is_skipped() {
    let database = Database::sqlite();
    let primary = Node::start(&database, &["--tsig-key", KEY]);
    assert_eq!(
        json(primary.request(Method::POST, "/v1/zones").json(&json!({"name": "failover.test"})).send().unwrap()).0,
        201
    );
    let body = json!({"ttl": 60, "records": ["192.0.2.99"]});
    assert_eq!(
        json(primary.request(Method::PUT, "/v1/zones/failover.test/rrsets/www/A").json(&body).send().unwrap()).0,
        200
    );
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let by_name = format!("localhost:{}", primary.dns.port());
    let secondary = SecondaryNode::start(0, &[dead], &["--primary", &by_name, "--tsig-key", KEY]);
    wait_until(
        secondary.dns,
        "www.failover.test.",
        1,
        Duration::from_secs(30),
        || secondary.log(),
        |_, d| d == ["192.0.2.99"],
    );
    assert!(secondary.log().contains(&dead.to_string()), "the dead primary was tried first:\n{}", secondary.log());
}

/// The leader's drift checker: a secondary that stops answering is reported
/// drifting; once it is back it is sent the zone again and reported in sync.
#[test]
fn drift_is_reported_and_repaired() {
    let database = Database::sqlite();
    let port = free_port();
    let notify = format!("127.0.0.1:{port}");
    let primary = Node::start(&database, &["--tsig-key", KEY, "--notify", &notify, "--drift-interval-ms", "300"]);
    let secondary = SecondaryNode::start(port, &[primary.dns], &["--tsig-key", KEY]);
    assert_eq!(
        json(primary.request(Method::POST, "/v1/zones").json(&json!({"name": "drift.test"})).send().unwrap()).0,
        201
    );
    let put = |address: &str| {
        let body = json!({"ttl": 60, "records": [address]});
        assert_eq!(
            json(primary.request(Method::PUT, "/v1/zones/drift.test/rrsets/www/A").json(&body).send().unwrap()).0,
            200
        );
    };
    put("192.0.2.1");
    wait_until(
        secondary.dns,
        "www.drift.test.",
        1,
        Duration::from_secs(20),
        || secondary.log(),
        |_, d| d == ["192.0.2.1"],
    );

    let status = |want_drift: bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, list, _) = json(primary.request(Method::GET, "/v1/zones/drift.test/secondaries").send().unwrap());
            let configured = list.as_array().unwrap().iter().find(|s| s["address"] == notify.as_str()).cloned();
            if configured.as_ref().is_some_and(|s| s["drift"] == want_drift && (want_drift || s["insync"] == true)) {
                return configured.unwrap();
            }
            assert!(Instant::now() < deadline, "drift never became {want_drift}: {list}\n{}", primary.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    secondary.signal(19);
    put("192.0.2.2");
    let drifting = status(true);
    println!("reported while the secondary is stopped: {drifting}");
    secondary.signal(18);
    let healed = status(false);
    println!("after it is back: {healed}");
    wait_until(
        secondary.dns,
        "www.drift.test.",
        1,
        Duration::from_secs(20),
        || secondary.log(),
        |_, d| d == ["192.0.2.2"],
    );
    assert!(primary.log().contains("drift:"), "{}", primary.log());
}
