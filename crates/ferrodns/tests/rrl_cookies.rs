//! DNS cookies (RFC 7873, RFC 9018) and response rate limiting, against the
//! real binary: cookies are made, checked and echoed over UDP and TCP; past
//! the rate a client network gets every second limited response truncated
//! and the rest dropped, per kind and name, with random names under one zone
//! sharing its bucket; a valid server cookie, TCP and exempt networks are
//! never limited. A zone may have its own rate through the API, which only
//! the operator may loosen; it survives changes and restarts.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ferrodns_server::cookies::{unix_now, CookieSecrets, Verdict, OPTION_LEN};
use reqwest::Method;
use serde_json::{json, Value};
use support::control::{json, Database, Node};
use support::{build_query, query_tcp, query_udp, start_ferrodns, temp_dir, ZoneFile};

const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";
const WAIT: Duration = Duration::from_secs(2);

fn zone() -> ZoneFile {
    let dir = temp_dir("rrl");
    let text = "$ORIGIN rrl.test.\n@ 300 IN SOA ns hostmaster 1 60 60 600 60\n@ NS ns\nns A 192.0.2.1\n\
                www A 192.0.2.2\n*.wild TXT \"synthesized\"\n";
    let path = dir.join("rrl.test.zone");
    std::fs::write(&path, text).unwrap();
    ZoneFile { origin: "rrl.test.".to_string(), path }
}

fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query with EDNS and a COOKIE option holding `cookie`.
fn with_cookie(id: u16, name: &str, qtype: u16, cookie: &[u8]) -> Vec<u8> {
    let mut query = build_query(id, &wire(name), qtype, Some(1232), false);
    let rdlen_at = query.len() - 2;
    query[rdlen_at..].copy_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
    query.extend_from_slice(&10u16.to_be_bytes());
    query.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    query.extend_from_slice(cookie);
    query
}

/// The COOKIE option data of a reply of ours (the last option of the last
/// record), if there is one.
fn reply_cookie(reply: &[u8]) -> Option<Vec<u8>> {
    let at = reply.len().checked_sub(OPTION_LEN)?;
    (reply[at..at + 4] == [0, 10, 0, 24]).then(|| reply[at + 4..].to_vec())
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[test]
fn cookies_are_made_checked_and_echoed() {
    let server = start_ferrodns(&[zone()], &["--cookie-secret", SECRET]);
    let addr = server.addr;
    let client_cookie = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
    let reply = query_udp(addr, &with_cookie(1, "www.rrl.test.", 1, &client_cookie), WAIT).expect("a reply");
    assert_eq!(rcode(&reply), 0);
    let cookie = reply_cookie(&reply).expect("a COOKIE option in the reply");
    assert_eq!(cookie[..8], client_cookie, "the client cookie is echoed");
    // The server cookie is RFC 9018's, made with the configured secret.
    let secrets = CookieSecrets::new(CookieSecrets::parse_hex(SECRET).unwrap(), None);
    let mut made = [0u8; OPTION_LEN];
    let client = "127.0.0.1".parse().unwrap();
    assert_eq!(secrets.answer(&cookie, client, unix_now(), &mut made), Verdict::Valid);

    // Sent back, a fresh cookie comes back unchanged.
    let again = query_udp(addr, &with_cookie(2, "www.rrl.test.", 1, &cookie), WAIT).unwrap();
    assert_eq!(reply_cookie(&again).unwrap(), cookie);
    // A forged server cookie is not accepted: a new one is made.
    let mut forged = cookie.clone();
    forged[20] ^= 1;
    let answer = query_udp(addr, &with_cookie(3, "www.rrl.test.", 1, &forged), WAIT).unwrap();
    assert_eq!(rcode(&answer), 0);
    let fresh = reply_cookie(&answer).unwrap();
    assert_ne!(fresh, forged);
    assert_eq!(secrets.answer(&fresh, client, unix_now(), &mut made), Verdict::Valid);
    // Over TCP too.
    let tcp = query_tcp(addr, &with_cookie(4, "www.rrl.test.", 1, &client_cookie), WAIT).unwrap();
    assert_eq!(reply_cookie(&tcp).unwrap()[..8], client_cookie);
    // A COOKIE of a length RFC 7873 §5.2.2 does not allow is FORMERR.
    for len in [0, 7, 9, 15, 41] {
        let bad = query_udp(addr, &with_cookie(5, "www.rrl.test.", 1, &vec![7; len]), WAIT).unwrap();
        assert_eq!(rcode(&bad), 1, "a cookie of {len} octets");
    }
    // A query without a cookie gets none.
    let plain = query_udp(addr, &build_query(6, &wire("www.rrl.test."), 1, Some(1232), false), WAIT).unwrap();
    assert_eq!(reply_cookie(&plain), None);

    let off = start_ferrodns(&[zone()], &["--cookies", "false"]);
    let reply = query_udp(off.addr, &with_cookie(7, "www.rrl.test.", 1, &client_cookie), WAIT).unwrap();
    assert_eq!((rcode(&reply), reply_cookie(&reply)), (0, None));
}

/// What a burst of queries got back.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    truncated: usize,
    silent: usize,
}

/// Sends `queries` from one socket as fast as it can, then collects the
/// replies for a second.
fn burst(server: SocketAddr, queries: &[Vec<u8>]) -> Tally {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for query in queries {
        socket.send_to(query, server).unwrap();
    }
    let mut tally = Tally::default();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(1);
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while Instant::now() < deadline && tally.answered + tally.truncated < queries.len() {
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if buf[2] & 0x02 != 0 {
                assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 0, "a slip carries no records");
                tally.truncated += 1;
            } else {
                assert!(len > 12);
                tally.answered += 1;
            }
        }
    }
    tally.silent = queries.len() - tally.answered - tally.truncated;
    tally
}

const RATE: usize = 20;
const BURST: usize = 200;

/// Within one second a bucket gives `RATE`; a burst may straddle a second.
fn assert_limited(tally: &Tally, what: &str) {
    assert!((RATE..=2 * RATE).contains(&tally.answered), "{what}: {tally:?}");
    let limited = BURST - tally.answered;
    // --rrl-slip 2 and one worker: every second limited response slips.
    assert!(tally.truncated.abs_diff(limited / 2) <= 1, "{what}: {tally:?}");
}

#[test]
fn rate_limiting_drops_and_slips_past_the_rate() {
    let rate = RATE.to_string();
    let args = ["--rrl-rate", &rate, "--rrl-slip", "2", "--udp-workers", "1", "--cookie-secret", SECRET];
    let server = start_ferrodns(&[zone()], &args);
    let addr = server.addr;

    let same: Vec<Vec<u8>> =
        (0..BURST).map(|i| build_query(i as u16, &wire("www.rrl.test."), 1, None, false)).collect();
    assert_limited(&burst(addr, &same), "one name");

    // Random names that do not exist share the zone's NXDOMAIN bucket, and
    // random names under a wildcard its wildcard bucket.
    let nx: Vec<Vec<u8>> =
        (0..BURST).map(|i| build_query(i as u16, &wire(&format!("n{i}.rrl.test.")), 1, None, false)).collect();
    assert_limited(&burst(addr, &nx), "random NXDOMAIN names");
    let wild: Vec<Vec<u8>> =
        (0..BURST).map(|i| build_query(i as u16, &wire(&format!("w{i}.wild.rrl.test.")), 16, None, false)).collect();
    assert_limited(&burst(addr, &wild), "random names under a wildcard");

    // A client that returns a valid server cookie has proved its address.
    let first = query_tcp(addr, &with_cookie(1, "www.rrl.test.", 1, &[1; 8]), WAIT).unwrap();
    let cookie = reply_cookie(&first).unwrap();
    let proven: Vec<Vec<u8>> = (0..BURST).map(|i| with_cookie(i as u16, "www.rrl.test.", 1, &cookie)).collect();
    let tally = burst(addr, &proven);
    assert_eq!(tally.answered, BURST, "{tally:?}");

    // TCP is never limited.
    for i in 0..50 {
        let reply = query_tcp(addr, &build_query(i, &wire("www.rrl.test."), 1, None, false), WAIT).unwrap();
        assert_eq!(reply[2] & 0x02, 0);
    }
}

#[test]
fn exempt_networks_are_not_limited() {
    let args = ["--rrl-rate", "5", "--udp-workers", "1", "--rrl-exempt", "127.0.0.0/8"];
    let server = start_ferrodns(&[zone()], &args);
    let same: Vec<Vec<u8>> =
        (0..BURST).map(|i| build_query(i as u16, &wire("www.rrl.test."), 1, None, false)).collect();
    let tally = burst(server.addr, &same);
    assert_eq!(tally.answered, BURST, "{tally:?}");
}

#[test]
fn bad_settings_are_refused_at_start() {
    let dir = temp_dir("rrl-bad");
    for (flags, message) in [
        (&["--cookie-secret", "abc"][..], "bad --cookie-secret"),
        (&["--cookie-secret-previous", SECRET][..], "--cookie-secret-previous needs --cookie-secret"),
        (&["--rrl-exempt", "example.com"][..], "bad --rrl-exempt"),
        (&["--rrl-rate", "20000000"][..], "bad --rrl-rate"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferrodns"))
            .args(["serve", "--dns-listen", "127.0.0.1:0", "--api-listen", "off", "--data-dir"])
            .arg(&dir)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(message), "{flags:?}: {stderr}");
    }
}

/// Sets `zone`'s rate limit through the API as `token` (the admin's when
/// `None`); the status and the zone as answered.
fn set_rate_limit(node: &Node, token: Option<&str>, zone: &str, limit: Value) -> (u16, Value) {
    let path = format!("/v1/zones/{zone}");
    let request = match token {
        Some(token) => node.request_as(token, Method::PATCH, &path),
        None => node.request(Method::PATCH, &path),
    };
    let (status, body, _) = json(request.json(&json!({ "rate_limit": limit })).send().unwrap());
    (status, body)
}

fn www_burst(node: &Node, zone: &str) -> Tally {
    let name = format!("www.{zone}.");
    let queries: Vec<Vec<u8>> = (0..BURST).map(|i| build_query(i as u16, &wire(&name), 1, None, false)).collect();
    burst(node.dns, &queries)
}

fn zone_with_www(node: &Node, zone: &str) {
    node.create_zone(zone);
    let www = json!({"ttl": 60, "records": ["192.0.2.80"]});
    let path = format!("/v1/zones/{zone}/rrsets/www/A");
    assert_eq!(json(node.request(Method::PUT, &path).json(&www).send().unwrap()).0, 200);
}

#[test]
fn a_zone_has_its_own_rate_limit_through_the_api() {
    // The server limits nothing; one zone gets a rate of its own.
    let mut node = Node::start(&Database::sqlite(), &["--cookies", "false"]);
    zone_with_www(&node, "limited.test");
    zone_with_www(&node, "free.test");
    assert_eq!(www_burst(&node, "limited.test").answered, BURST);

    let (status, zone) = set_rate_limit(&node, None, "limited.test", json!({"rate": RATE, "slip": 2}));
    assert_eq!((status, &zone["rate_limit"]), (200, &json!({"rate": RATE, "slip": 2})), "{zone}");
    assert_limited(&www_burst(&node, "limited.test"), "a zone's own rate");
    assert_eq!(www_burst(&node, "free.test").answered, BURST, "another zone is not limited");

    // A new version of the zone keeps it, and so does a restart.
    std::thread::sleep(Duration::from_millis(1100));
    let www = json!({"ttl": 60, "records": ["192.0.2.81"]});
    assert_eq!(
        json(node.request(Method::PUT, "/v1/zones/limited.test/rrsets/www/A").json(&www).send().unwrap()).0,
        200
    );
    assert_limited(&www_burst(&node, "limited.test"), "after a change");
    node.restart();
    assert_limited(&www_burst(&node, "limited.test"), "after a restart");
    let (_, shown, _) = json(node.request(Method::GET, "/v1/zones/limited.test").send().unwrap());
    assert_eq!(shown["rate_limit"], json!({"rate": RATE, "slip": 2}));

    // Back to the server's: nothing is limited.
    let (status, zone) = set_rate_limit(&node, None, "limited.test", Value::Null);
    assert_eq!((status, &zone["rate_limit"]), (200, &Value::Null), "{zone}");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(www_burst(&node, "limited.test").answered, BURST);

    // Bad values are refused with a pointer-free problem; nothing changes.
    let (status, body) = set_rate_limit(&node, None, "limited.test", json!({"rate": 20, "slip": 11}));
    assert_eq!(status, 422, "{body}");
    let (status, body) = set_rate_limit(&node, None, "limited.test", json!({"rate": -1}));
    assert_eq!(status, 422, "{body}");
}

#[test]
fn only_the_operator_loosens_the_servers_rate_limit() {
    let node = Node::start(&Database::sqlite(), &["--rrl-rate", "50", "--cookies", "false"]);
    let token = |role: &str| {
        let body = json!({"name": format!("t-{role}"), "tenant": "t", "role": role});
        let (status, created, _) = json(node.request(Method::POST, "/v1/tokens").json(&body).send().unwrap());
        assert_eq!(status, 201, "{created}");
        created["token"].as_str().unwrap().to_string()
    };
    let (admin, editor) = (token("admin"), token("editor"));
    let body = json!({"name": "t.test"});
    assert_eq!(json(node.request_as(&admin, Method::POST, "/v1/zones").json(&body).send().unwrap()).0, 201);

    for (limit, why) in [(json!({"rate": 0}), "unlimited"), (json!({"rate": 51}), "above the server's")] {
        let (status, body) = set_rate_limit(&node, Some(&admin), "t.test", limit);
        assert_eq!(status, 403, "a tenant admin set a rate {why}: {body}");
    }
    let (status, body) = set_rate_limit(&node, Some(&editor), "t.test", json!({"rate": 10}));
    assert_eq!(status, 403, "an editor changed a zone setting: {body}");
    let (status, body) = set_rate_limit(&node, Some(&admin), "t.test", json!({"rate": 10}));
    assert_eq!((status, &body["rate_limit"]), (200, &json!({"rate": 10, "slip": 2})), "{body}");
    // Another tenant's zone looks absent.
    node.create_zone("other.test");
    let (status, _) = set_rate_limit(&node, Some(&admin), "other.test", json!({"rate": 10}));
    assert_eq!(status, 404);
    // The operator may exempt a zone from the server's limit.
    let (status, body) = set_rate_limit(&node, None, "t.test", json!({"rate": 0}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_zones_rate_limit_reaches_the_other_node() {
    let database = Database::postgres();
    let ha = ["--ha-lease-ms", "1000", "--ha-renew-ms", "250", "--ha-poll-ms", "100", "--cookies", "false"];
    let a = Node::start(&database, &[&["--node-id", "a"][..], &ha].concat());
    let mut b = Node::start(&database, &[&["--node-id", "b"][..], &ha].concat());
    b.token = a.token.clone();
    zone_with_www(&a, "shared.test");
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::control::dns_lookup(b.dns, "www.shared.test.", 1).1.is_empty() {
        assert!(Instant::now() < deadline, "b never served the zone");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = set_rate_limit(&a, None, "shared.test", json!({"rate": RATE, "slip": 2}));
    assert_eq!(status, 200, "{body}");
    // LISTEN/NOTIFY brings it at once; the poll (100 ms) otherwise.
    std::thread::sleep(Duration::from_millis(500));
    assert_limited(&www_burst(&b, "shared.test"), "the other node");
    let (status, body) = set_rate_limit(&b, None, "shared.test", Value::Null);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(www_burst(&a, "shared.test").answered, BURST, "cleared on the other node");
}
