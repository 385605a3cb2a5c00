//! The abuse suite: several attacks on one node, one after another, while a
//! legitimate client asks DNS over UDP and over TCP every 20 ms. Each attack
//! must fail in the way it should (a refusal, a 503, a closed connection),
//! and through all of them the legitimate client's answers must keep coming,
//! none slower than the bound below. Bounded to about a minute.
//!
//! The attacks: slow HTTP clients from many addresses, DNS/TCP clients that
//! never read their replies, a flood of unreadable and unknown-key-signed UDP
//! packets, a tenant reaching for another tenant's names and zones, and more
//! concurrent exports than the server takes. A second run attacks a
//! secondary: its primary's catalog lists 20,000 members whose SOA queries
//! are never answered, and the secondary must keep answering its good zone
//! with bounded descriptors, memory and log. (The full-size slow-client
//! attack is `bench/slowclients.py`.)

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{json, Database, Node};
use support::secondary::SecondaryNode;
use support::{build_query, query_tcp, query_udp, read_framed};

/// The slowest answer the legitimate client may get while an attack runs.
/// Generous for a loaded CI machine; a healthy run stays far below it.
const BOUND: Duration = Duration::from_millis(500);

fn wire(name: &str) -> Vec<u8> {
    ferrodns_proto::Name::parse(name, None).unwrap().as_wire().to_vec()
}

/// Asks for `name`'s A record over UDP and TCP every 20 ms until stopped;
/// keeps the worst latency of each and every failure.
struct Legitimate {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<(Duration, Duration, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Legitimate {
    fn start(dns: SocketAddr, name: &str) -> Legitimate {
        let stop = Arc::new(AtomicBool::new(false));
        let worst: Arc<Mutex<(Duration, Duration, Vec<String>)>> = Arc::default();
        let (stop_flag, record, name) = (stop.clone(), worst.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let query = build_query(42, &wire(&name), 1, Some(1232), false);
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
    let legitimate = Legitimate::start(node.dns, "www.abuse.test.");
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

const CATALOG: &str = "catalog.hostile.test.";
const GOOD: &str = "good.test.";
const MEMBERS: usize = 20_000;

/// A hostile primary: its catalog lists [`MEMBERS`] zones besides
/// [`GOOD`], and it never answers a member's SOA query nor transfers one.
/// Counts the member queries it ignores, and the good zone's SOA queries.
struct HostilePrimary {
    addr: SocketAddr,
    ignored: Arc<std::sync::atomic::AtomicUsize>,
    good_asked: Arc<std::sync::atomic::AtomicUsize>,
}

/// Answer messages to `query` holding `records`, as many as they need.
fn messages(query: &ferrodns_proto::Query, records: &[(String, u16, Vec<u8>)]) -> Vec<Vec<u8>> {
    use ferrodns_proto::message::{flags, Section};
    use ferrodns_proto::{Class, MessageWriter, Name, RecordType};
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let mut message = Vec::new();
        let mut writer = MessageWriter::new(&mut message, 60_000);
        writer.set_header(query.id, flags::QR | flags::AA);
        writer.push_question(query.qname(), query.qtype, Class::IN).unwrap();
        let mut written = 0;
        for (owner, rtype, rdata) in rest {
            let owner = Name::parse(owner, None).unwrap();
            if writer.push_record(Section::Answer, owner.as_wire(), RecordType(*rtype), 60, rdata).is_err() {
                break;
            }
            written += 1;
        }
        rest = &rest[written..];
        out.push(message);
    }
    out
}

fn soa(zone: &str) -> (String, u16, Vec<u8>) {
    let mut rdata = wire(&format!("ns.{zone}"));
    rdata.extend_from_slice(&wire(&format!("hostmaster.{zone}")));
    for value in [1u32, 5, 5, 86_400, 60] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    (zone.to_string(), 6, rdata)
}

fn zone_records(apex: &str) -> Vec<(String, u16, Vec<u8>)> {
    let mut records = vec![soa(apex), (apex.to_string(), 2, wire("ns.invalid."))];
    if apex == CATALOG {
        records.push((format!("version.{CATALOG}"), 16, b"\x012".to_vec()));
        records.push((format!("good.zones.{CATALOG}"), 12, wire(GOOD)));
        for i in 0..MEMBERS {
            records.push((format!("m{i}.zones.{CATALOG}"), 12, wire(&format!("m{i}.silent.test."))));
        }
    } else {
        records.push((format!("www.{apex}"), 1, vec![192, 0, 2, 80]));
    }
    records.push(soa(apex));
    records
}

impl HostilePrimary {
    fn start() -> HostilePrimary {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        let ignored = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let good_asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, good_counter) = (ignored.clone(), good_asked.clone());
        let known = |qname: &[u8]| [CATALOG, GOOD].into_iter().find(|apex| wire(apex).eq_ignore_ascii_case(qname));
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                let Ok(query) = ferrodns_proto::parse_query(&buffer[..len]) else { continue };
                match known(query.qname()) {
                    Some(apex) => {
                        if apex == GOOD {
                            good_counter.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = udp.send_to(&messages(&query, &[soa(apex)])[0], peer);
                    }
                    None => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(packet) = read_framed(&mut stream) else { continue };
                let Ok(query) = ferrodns_proto::parse_query(&packet) else { continue };
                // IXFR or AXFR alike: the whole zone (RFC 1995 §4 allows it).
                let Some(apex) = known(query.qname()) else { continue };
                for message in messages(&query, &zone_records(apex)) {
                    let _ = stream.write_all(&(message.len() as u16).to_be_bytes());
                    let _ = stream.write_all(&message);
                }
            }
        });
        HostilePrimary { addr, ignored, good_asked }
    }
}

/// Open descriptors and resident memory (KiB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

#[test]
fn a_secondary_keeps_answering_while_a_hostile_catalog_floods_it() {
    let primary = HostilePrimary::start();
    let secondary = SecondaryNode::start(0, &[primary.addr], &["--catalog-zone", CATALOG]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while support::control::dns_lookup(secondary.dns, "www.good.test.", 1).1.is_empty() {
        assert!(Instant::now() < deadline, "the good zone never arrived:\n{}", secondary.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = secondary.pid().expect("running");
    let legitimate = Legitimate::start(secondary.dns, "www.good.test.");
    let good_before = primary.good_asked.load(Ordering::Relaxed);
    let (mut most_fds, mut most_rss) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let (fds, rss) = usage(pid);
        (most_fds, most_rss) = (most_fds.max(fds), most_rss.max(rss));
        std::thread::sleep(Duration::from_millis(100));
    }
    let ignored = primary.ignored.load(Ordering::Relaxed);
    let good_asked = primary.good_asked.load(Ordering::Relaxed) - good_before;
    let log_bytes = secondary.log().len();
    println!(
        "hostile catalog of {MEMBERS} silent members: {ignored} SOA queries ignored in 10 s; the secondary held at \
         most {most_fds} descriptors and {} MiB, and logged {log_bytes} bytes; the good zone (refresh 5 s) was \
         checked {good_asked} times",
        most_rss / 1024
    );
    legitimate.check("hostile catalog");
    assert!(ignored > 0, "the secondary never asked the members:\n{}", secondary.log());
    // 32 refreshes in flight, each with one socket, and the server's own.
    assert!(most_fds < 150, "the secondary held {most_fds} descriptors");
    assert!(most_rss < 300 * 1024, "the secondary held {} MiB", most_rss / 1024);
    assert!(log_bytes < 1 << 20, "the secondary logged {log_bytes} bytes in 10 s");
    // The silent members queue behind each other, not in front of a zone
    // whose primary answers: its 5 s refresh keeps its pace.
    assert!(good_asked >= 1, "the good zone was not refreshed in 10 s behind {MEMBERS} silent members");
}
