//! The abuse suite: several attacks on one node, one after another, while a
//! legitimate client asks DNS over UDP and over TCP every 20 ms. Each attack
//! must fail in the way it should (a refusal, a 503, a closed connection),
//! and through all of them the legitimate client's answers must keep coming,
//! none slower than the bound below. Bounded to about a minute.
//!
//! The attacks: slow HTTP clients from many addresses, DNS/TCP clients that
//! never read their replies, a flood of unreadable and unknown-key-signed UDP
//! packets, a tenant reaching for another tenant's names and zones, and more
//! concurrent exports than the server takes. (A hostile catalog is
//! `tests/secondary.rs`'s and `tests/bad_peers.rs`'s; the full-size
//! slow-client attack is `bench/slowclients.py`.)

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{json, Database, Node};
use support::{build_query, query_tcp, query_udp};

/// The slowest answer the legitimate client may get while an attack runs.
/// Generous for a loaded CI machine; a healthy run stays far below it.
const BOUND: Duration = Duration::from_millis(500);

fn wire(name: &str) -> Vec<u8> {
    ferrodns_proto::Name::parse(name, None).unwrap().as_wire().to_vec()
}

/// Asks `www.abuse.test` over UDP and TCP every 20 ms until stopped; keeps
/// the worst latency of each and every failure.
struct Legitimate {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<(Duration, Duration, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Legitimate {
    fn start(dns: SocketAddr) -> Legitimate {
        let stop = Arc::new(AtomicBool::new(false));
        let worst: Arc<Mutex<(Duration, Duration, Vec<String>)>> = Arc::default();
        let (stop_flag, record) = (stop.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            let query = build_query(42, &wire("www.abuse.test."), 1, Some(1232), false);
            while !stop_flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let udp = query_udp(dns, &query, Duration::from_secs(2));
                let udp_took = started.elapsed();
                let started = Instant::now();
                let tcp = query_tcp(dns, &query, Duration::from_secs(2));
                let tcp_took = started.elapsed();
                let mut worst = record.lock().unwrap_or_else(|e| e.into_inner());
                worst.0 = worst.0.max(udp_took);
                worst.1 = worst.1.max(tcp_took);
                for (transport, reply) in [("UDP", udp), ("TCP", tcp)] {
                    match reply {
                        Some(reply) if reply[3] & 0x0f == 0 && u16::from_be_bytes([reply[6], reply[7]]) == 1 => {}
                        other => worst.2.push(format!("{transport}: {other:?}")),
                    }
                }
                drop(worst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Legitimate { stop, worst, thread: Some(thread) }
    }

    /// The worst latencies so far, and resets them; panics on any failure.
    fn check(&self, attack: &str) {
        let (udp, tcp, failures) = {
            let mut worst = self.worst.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *worst, (Duration::ZERO, Duration::ZERO, Vec::new()))
        };
        println!("{attack}: worst legitimate answer over UDP {udp:?}, over TCP {tcp:?}");
        assert!(failures.is_empty(), "{attack}: the legitimate client failed: {failures:?}");
        assert!(udp < BOUND && tcp < BOUND, "{attack}: UDP {udp:?}, TCP {tcp:?}, bound {BOUND:?}");
    }
}

impl Drop for Legitimate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn connect_from(from: &str, server: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).ok()?;
    socket.connect_timeout(&server.into(), Duration::from_millis(500)).ok()?;
    Some(socket.into())
}

#[test]
fn dns_keeps_answering_through_every_attack() {
    let database = Database::sqlite();
    let node = Node::start(&database, &["--tcp-idle-timeout", "2", "--api-header-timeout", "3"]);
    node.create_zone("abuse.test.");
    let www = json!({"ttl": 300, "records": ["192.0.2.80"]});
    assert_eq!(json(node.request(Method::PUT, "/v1/zones/abuse.test./rrsets/www/A").json(&www).send().unwrap()).0, 200);
    // A TXT RRset whose answer is about 15 KB, for readers that never read.
    let big: Vec<String> = (0..60).map(|i| format!("\"{i:03}{}\"", "x".repeat(240))).collect();
    let body = json!({"ttl": 300, "records": big});
    assert_eq!(
        json(node.request(Method::PUT, "/v1/zones/abuse.test./rrsets/big/TXT").json(&body).send().unwrap()).0,
        200
    );
    // And about 7 MB of text to export: more than a stalled reader's socket
    // buffers take, so its export stays open.
    let huge: Vec<String> = (0..120)
        .map(|i| (0..235).map(|j| format!("\"{i:03}{j:03}{}\"", "y".repeat(249))).collect::<Vec<_>>().join(" "))
        .collect();
    let body = json!({"ttl": 300, "records": huge});
    let (status, body, _) =
        json(node.request(Method::PUT, "/v1/zones/abuse.test./rrsets/huge/TXT").json(&body).send().unwrap());
    assert_eq!(status, 200, "{body}");
    let api: SocketAddr = node.api.trim_start_matches("http://").parse().unwrap();
    let legitimate = Legitimate::start(node.dns);
    std::thread::sleep(Duration::from_millis(300));
    legitimate.check("no attack");

    // Slow HTTP: 600 half-sent requests from sixteen addresses.
    let mut slow = Vec::new();
    for i in 0..600 {
        if let Some(mut stream) = connect_from(&format!("127.0.0.{}", 2 + i % 16), api) {
            let _ = stream.write_all(b"GET /v1/zones HTTP/1.1\r\nHost: slow\r\n");
            slow.push(stream);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let (status, _, _) = json(node.anonymous(Method::GET, "/v1/health/live").send().unwrap());
    assert_eq!(status, 200, "the API answers a prompt client during the slow-HTTP attack");
    drop(slow);
    legitimate.check("slow HTTP clients");

    // DNS/TCP clients that ask for 15 KB answers and never read them.
    let query = build_query(9, &wire("big.abuse.test."), 16, None, false);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let burst: Vec<u8> = framed.iter().copied().cycle().take(framed.len() * 500).collect();
    let mut readers = Vec::new();
    for i in 0..40 {
        if let Some(mut stream) = connect_from(&format!("127.0.1.{}", 2 + i % 8), node.dns) {
            stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
            let _ = stream.write_all(&burst);
            readers.push(stream);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    drop(readers);
    legitimate.check("TCP clients that never read");

    // A UDP flood: garbage, queries signed with a key nobody has, responses,
    // at about 40,000 packets a second. (Sent as fast as one core can, from
    // this machine, it takes the CPU the server's async threads need: DNS
    // over TCP, which runs there at a lower priority than the UDP workers,
    // then waited 0.6 s at worst in a debug build.)
    let flood = UdpSocket::bind("127.0.0.9:0").unwrap();
    let mut signed = build_query(3, &wire("www.abuse.test."), 1, None, false);
    signed[11] = 1;
    signed.extend_from_slice(&wire("no-such-key."));
    signed.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0, 0, 26]);
    signed.extend_from_slice(&wire("hmac-sha256."));
    signed.extend_from_slice(&[0, 0, 0x6b, 0x11, 0xac, 0x93, 1, 44, 0, 0, 0, 3, 0, 0, 0, 0]);
    let mut response = build_query(4, &wire("www.abuse.test."), 1, None, false);
    response[2] |= 0x80;
    let started = Instant::now();
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        for packet in [&[0xffu8; 7][..], &signed, &response, &[0u8; 512][..]] {
            let _ = flood.send_to(packet, node.dns);
            sent += 1;
        }
        if sent % 400 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!("UDP flood: {sent} packets in 3 s");
    legitimate.check("a UDP flood of unreadable, unknown-key and response packets");

    // A tenant reaching for another tenant's names.
    let (_, tenant, _) = json(
        node.request(Method::POST, "/v1/tokens")
            .json(&json!({"name": "intruder", "role": "admin", "tenant": "intruder"}))
            .send()
            .unwrap(),
    );
    let intruder = tenant["token"].as_str().unwrap().to_string();
    for name in ["www.abuse.test.", "abuse.test.", "test.", "sub.www.abuse.test."] {
        let (status, body, _) =
            json(node.request_as(&intruder, Method::POST, "/v1/zones").json(&json!({"name": name})).send().unwrap());
        assert_eq!(status, 403, "a tenant created {name}: {body}");
    }
    for (method, path) in [
        (Method::GET, "/v1/zones/abuse.test./export"),
        (Method::DELETE, "/v1/zones/abuse.test."),
        (Method::PUT, "/v1/zones/abuse.test./rrsets/www/A"),
    ] {
        let (status, _, _) = json(node.request_as(&intruder, method.clone(), path).json(&www).send().unwrap());
        assert_eq!(status, 404, "{method} {path} reached another tenant's zone");
    }
    legitimate.check("a tenant reaching for another's zone");

    // More concurrent exports than the server takes: readers that read one
    // chunk and then stall hold their export; one more is turned away.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&api.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        let request = format!(
            "GET /v1/zones/abuse.test./export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            node.token
        );
        stream.write_all(request.as_bytes()).unwrap();
        holders.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (status, body, headers) = json(node.request(Method::GET, "/v1/zones/abuse.test./export").send().unwrap());
    assert_eq!(status, 503, "a fifth concurrent export: {body}");
    assert!(headers.contains_key("retry-after"));
    drop(holders);
    legitimate.check("more concurrent exports than the server takes");
}
