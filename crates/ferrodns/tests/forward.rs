//! Forward zones end to end: a ferrodns serving a hosted zone and
//! forwarding others, to a real Knot as the forwarder and to scripted
//! forwarders that misbehave (silent, spoofing, slow, out of zone).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_proto::{parse_query, Name};
use hickory_proto::op::{Message, ResponseCode};
use support::{build_query, query_tcp, query_udp, reply_options, start_ferrodns, start_knot, temp_dir, ZoneFile};

const WAIT: Duration = Duration::from_secs(3);

fn zone_file(origin: &str, text: &str) -> ZoneFile {
    let dir = temp_dir("forward-zone");
    let path = dir.join(format!("{origin}zone"));
    std::fs::write(&path, text).unwrap();
    ZoneFile { origin: origin.to_string(), path }
}

/// The zone the forwarders serve.
fn corp_zone() -> ZoneFile {
    let big: String = (0..40).map(|i| format!("big TXT \"{i:02} {}\"\n", "x".repeat(60))).collect();
    zone_file(
        "corp.example.",
        &format!(
            "$ORIGIN corp.example.\n$TTL 300\n\
             @ SOA ns admin 1 3600 600 86400 120\n@ NS ns\nns A 192.0.2.53\n\
             www A 192.0.2.10\nalias CNAME www\n*.wild A 192.0.2.77\n{big}"
        ),
    )
}

/// The zone this ferrodns hosts, with one inside the forward zone.
fn hosted_zones() -> Vec<ZoneFile> {
    vec![
        zone_file("hosted.test.", "$ORIGIN hosted.test.\n$TTL 60\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.2\n"),
        zone_file(
            "lab.corp.example.",
            "$ORIGIN lab.corp.example.\n$TTL 60\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nhost A 198.51.100.7\n",
        ),
    ]
}

/// A stub resolver's query: recursion desired.
fn recursive_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut query = build_query(id, Name::parse(name, None).unwrap().as_wire(), qtype, edns, false);
    query[2] |= 0x01;
    query
}

fn ask(server: SocketAddr, name: &str, qtype: u16, edns: Option<u16>) -> Message {
    let reply =
        query_udp(server, &recursive_query(1, name, qtype, edns), WAIT).unwrap_or_else(|| panic!("no reply to {name}"));
    Message::from_vec(&reply).unwrap()
}

fn ask_tcp(server: SocketAddr, name: &str, qtype: u16) -> Message {
    let reply = query_tcp(server, &recursive_query(7, name, qtype, None), WAIT).unwrap();
    Message::from_vec(&reply).unwrap()
}

fn answers(message: &Message) -> Vec<String> {
    let mut records: Vec<String> = message.answers.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
    records.sort();
    records
}

/// The Extended DNS Error code (RFC 8914) of a UDP reply to `name` asked
/// with EDNS, if it has one, and its rcode.
fn ede(server: SocketAddr, name: &str, qtype: u16) -> (u8, Option<u16>) {
    let reply = query_udp(server, &recursive_query(3, name, qtype, Some(1232)), WAIT).unwrap();
    let options = reply_options(&reply).expect("an OPT record");
    let code = options.iter().find(|(code, _)| *code == 15).map(|(_, data)| u16::from_be_bytes([data[0], data[1]]));
    (reply[3] & 0x0f, code)
}

fn ttls(message: &Message) -> Vec<u32> {
    message.answers.iter().map(|r| r.ttl).collect()
}

#[test]
fn forwarded_through_knot_cached_and_answered_alongside_hosted_zones() {
    let knot = start_knot(&[corp_zone()]);
    let forward = format!("corp.example={}", knot.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);

    let reply = ask(ferrodns.addr, "www.corp.example.", 1, Some(1232));
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"]);
    assert!(reply.metadata.recursion_available && !reply.metadata.authoritative, "RA=1, AA=0");

    // A CNAME inside the zone, a wildcard, NXDOMAIN with its SOA.
    let reply = ask(ferrodns.addr, "alias.corp.example.", 1, Some(1232));
    assert_eq!(answers(&reply), ["alias.corp.example. www.corp.example.", "www.corp.example. 192.0.2.10"]);
    assert_eq!(answers(&ask(ferrodns.addr, "x.wild.corp.example.", 1, None)), ["x.wild.corp.example. 192.0.2.77"]);
    let reply = ask(ferrodns.addr, "nope.corp.example.", 1, Some(1232));
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.authorities[0].ttl, 120, "RFC 2308: the lesser of the SOA's TTL and MINIMUM");

    // Too large for 512 octets: TC over UDP, whole over TCP (ferrodns
    // fetches it over TCP too, since Knot truncates it for us at 1232).
    let reply = ask(ferrodns.addr, "big.corp.example.", 16, None);
    assert!(reply.metadata.truncation);
    assert_eq!(ask_tcp(ferrodns.addr, "big.corp.example.", 16).answers.len(), 40);

    // The hosted zones answer from their data, with RA for this client,
    // including one inside the forward zone.
    let reply = ask(ferrodns.addr, "host.lab.corp.example.", 1, None);
    assert_eq!(answers(&reply), ["host.lab.corp.example. 198.51.100.7"]);
    assert!(reply.metadata.authoritative && reply.metadata.recursion_available);
    assert_eq!(answers(&ask(ferrodns.addr, "www.hosted.test.", 1, None)), ["www.hosted.test. 192.0.2.2"]);
    // Without RD the query asks what this server holds itself.
    let plain = query_udp(
        ferrodns.addr,
        &build_query(3, Name::parse("www.corp.example.", None).unwrap().as_wire(), 1, None, false),
        WAIT,
    );
    assert_eq!(Message::from_vec(&plain.unwrap()).unwrap().metadata.response_code, ResponseCode::Refused);
    // Names in no zone at all: REFUSED, as without forward zones.
    assert_eq!(ask(ferrodns.addr, "www.elsewhere.test.", 1, None).metadata.response_code, ResponseCode::Refused);

    // With Knot gone, the cache still answers, its TTLs counting down.
    std::thread::sleep(Duration::from_millis(1100));
    drop(knot);
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, Some(1232));
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"]);
    assert!(ttls(&reply)[0] < 300, "{:?}", ttls(&reply));
    let reply = ask_tcp(ferrodns.addr, "www.corp.example.", 1);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"], "over TCP from the cache");
    // What was never cached now fails.
    assert_eq!(ask(ferrodns.addr, "never.corp.example.", 1, None).metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn clients_outside_recursion_allow_get_todays_answers() {
    let knot = start_knot(&[corp_zone()]);
    let forward = format!("corp.example={}", knot.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward, "--recursion-allow", "192.0.2.0/24"]);
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, None);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
    let reply = ask(ferrodns.addr, "www.hosted.test.", 1, None);
    assert_eq!(answers(&reply), ["www.hosted.test. 192.0.2.2"]);
    assert!(!reply.metadata.recursion_available, "no RA for a client recursion does not serve");
    assert_eq!(ask_tcp(ferrodns.addr, "www.corp.example.", 1).metadata.response_code, ResponseCode::Refused);
    // Why (RFC 8914): recursion is prohibited for a forward zone's name, as
    // BIND says; a name in no zone at all is not ours.
    assert_eq!(ede(ferrodns.addr, "www.corp.example.", 1), (5, Some(18)));
    assert_eq!(ede(ferrodns.addr, "www.elsewhere.example.", 1), (5, Some(20)));
    assert_eq!(ede(ferrodns.addr, "www.hosted.test.", 1), (0, None));
}

/// A scripted forwarder: each query is handed to `answer`, which returns
/// the datagrams to send back (from this socket) in order.
struct Scripted {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<Mutex<bool>>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        *self.stop.lock().unwrap() = true;
    }
}

type Script = dyn Fn(&[u8], &UdpSocket, SocketAddr) + Send + 'static;

fn scripted(script: Box<Script>) -> Scripted {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Mutex::new(false));
    let (count, stopped) = (queries.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while !*stopped.lock().unwrap() {
            if let Ok((len, from)) = socket.recv_from(&mut buffer) {
                count.fetch_add(1, Ordering::SeqCst);
                script(&buffer[..len], &socket, from);
            }
        }
    });
    Scripted { addr, queries, stop }
}

/// A reply to `query` with one A record per (owner, address, ttl); owners
/// other than the qname are written out, the qname as a pointer.
fn reply_to(query: &[u8], records: &[(&str, [u8; 4], u32)]) -> Vec<u8> {
    let parsed = parse_query(query).unwrap();
    let question_end = 12 + parsed.qname().len() + 4;
    let mut out = query[..question_end].to_vec();
    out[2] = 0x81;
    out[3] = 0x80;
    out[6..12].copy_from_slice(&[0, records.len() as u8, 0, 0, 0, 0]);
    for (owner, address, ttl) in records {
        if owner.is_empty() {
            out.extend_from_slice(&[0xc0, 12]);
        } else {
            out.extend_from_slice(Name::parse(owner, None).unwrap().as_wire());
        }
        out.extend_from_slice(&[0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(address);
    }
    out
}

#[test]
fn spoofed_replies_are_ignored_and_the_real_one_taken() {
    let forwarder = scripted(Box::new(|query, socket, from| {
        let mut wrong_id = reply_to(query, &[("", [203, 0, 113, 1], 300)]);
        wrong_id[0] ^= 0xff;
        socket.send_to(&wrong_id, from).unwrap();
        // The right id for another question.
        let mut other = query.to_vec();
        let at = 12 + parse_query(query).unwrap().qname().len() + 1;
        other[at] = 28;
        let other_question = reply_to(&other, &[("", [203, 0, 113, 2], 300)]);
        socket.send_to(&other_question, from).unwrap();
        // The right reply from the wrong port.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(&reply_to(query, &[("", [203, 0, 113, 3], 300)]), from).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        socket.send_to(&reply_to(query, &[("", [192, 0, 2, 10], 300)]), from).unwrap();
    }));
    let forward = format!("corp.example={}", forwarder.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, None);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"]);
}

#[test]
fn records_outside_the_forward_zone_are_neither_passed_on_nor_cached() {
    let corp = scripted(Box::new(|query, socket, from| {
        let records = [("", [192, 0, 2, 10], 300), ("www.victim.test.", [203, 0, 113, 66], 300)];
        socket.send_to(&reply_to(query, &records), from).unwrap();
    }));
    let everything_else = scripted(Box::new(|query, socket, from| {
        socket.send_to(&reply_to(query, &[("", [192, 0, 2, 99], 300)]), from).unwrap();
    }));
    let (corp_zone, root) = (format!("corp.example={}", corp.addr), format!(".={}", everything_else.addr));
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &corp_zone, "--forward-zone", &root]);
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, None);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"], "the victim's record is dropped");
    let reply = ask(ferrodns.addr, "www.victim.test.", 1, None);
    assert_eq!(answers(&reply), ["www.victim.test. 192.0.2.99"], "asked of the default forwarder, not cached");
    assert_eq!(everything_else.queries.load(Ordering::SeqCst), 1);
}

#[test]
fn a_silent_or_dead_forwarder_is_passed_over() {
    let silent = scripted(Box::new(|_, _, _| {}));
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let good = scripted(Box::new(|query, socket, from| {
        socket.send_to(&reply_to(query, &[("", [192, 0, 2, 10], 300)]), from).unwrap();
    }));
    let forward = format!("corp.example={},{},{}", silent.addr, dead, good.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);
    let started = Instant::now();
    for i in 0..5 {
        let reply = ask(ferrodns.addr, &format!("h{i}.corp.example."), 1, None);
        assert_eq!(reply.answers.len(), 1, "query {i}");
    }
    // The silent one cost at most one wait; the others went to the good one.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(good.queries.load(Ordering::SeqCst) >= 4);
}

#[test]
fn a_hundred_identical_misses_make_one_upstream_query() {
    let forwarder = scripted(Box::new(|query, socket, from| {
        std::thread::sleep(Duration::from_millis(300));
        socket.send_to(&reply_to(query, &[("", [192, 0, 2, 10], 300)]), from).unwrap();
    }));
    let forward = format!("corp.example={}", forwarder.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);
    let server = ferrodns.addr;
    let clients: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let query = recursive_query(i, "www.corp.example.", 1, None);
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(WAIT)).unwrap();
                socket.send_to(&query, server).unwrap();
                let mut buffer = [0u8; 512];
                let len = socket.recv(&mut buffer).expect("an answer");
                Message::from_vec(&buffer[..len]).unwrap().answers.len()
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(answered, 100);
    assert_eq!(forwarder.queries.load(Ordering::SeqCst), 1, "one upstream query for the hundred");
}

#[test]
fn stale_answers_are_served_when_every_forwarder_fails() {
    let up = Arc::new(Mutex::new(true));
    let answering = up.clone();
    let forwarder = scripted(Box::new(move |query, socket, from| {
        if *answering.lock().unwrap() {
            socket.send_to(&reply_to(query, &[("", [192, 0, 2, 10], 1)]), from).unwrap();
        }
    }));
    let forward = format!("corp.example={}", forwarder.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);
    assert_eq!(ttls(&ask(ferrodns.addr, "www.corp.example.", 1, None)), [1]);
    *up.lock().unwrap() = false;
    std::thread::sleep(Duration::from_millis(2100));
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, None);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"]);
    assert_eq!(ttls(&reply), [30], "RFC 8767: stale answers carry TTL 30");
    assert_eq!(ede(ferrodns.addr, "www.corp.example.", 1), (0, Some(3)), "RFC 8914: Stale Answer");

    let no_stale = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward, "--serve-stale", "0"]);
    *up.lock().unwrap() = true;
    ask(no_stale.addr, "www.corp.example.", 1, None);
    *up.lock().unwrap() = false;
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(ask(no_stale.addr, "www.corp.example.", 1, None).metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(no_stale.addr, "www.corp.example.", 1), (2, Some(22)), "RFC 8914: No Reachable Authority");
}

/// A CA and a certificate for `name` it signed: (CA PEM, certificate PEM, key PEM).
fn issue(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "forwarding test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn forwarders_over_tls_are_used_and_their_certificates_checked() {
    let knot = start_knot(&[corp_zone()]);
    let dir = temp_dir("dot");
    let (ca, cert, key) = issue("dot.test");
    for (file, text) in [("ca.pem", &ca), ("cert.pem", &cert), ("key.pem", &key)] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let unbound = support::unbound::start_unbound(
        &["corp.example."],
        knot.addr,
        Some((dir.join("cert.pem"), dir.join("key.pem"))),
    );
    let ca_file = dir.join("ca.pem").display().to_string();
    let good = format!("corp.example=tls://{}#dot.test", unbound.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &good, "--forward-tls-ca", &ca_file]);
    let reply = ask(ferrodns.addr, "www.corp.example.", 1, None);
    assert_eq!(answers(&reply), ["www.corp.example. 192.0.2.10"]);
    // A second query reuses the connection (RFC 7858 §3.4) and gets its answer too.
    assert_eq!(ask(ferrodns.addr, "alias.corp.example.", 1, None).answers.len(), 2);

    // The certificate must name the forwarder's name, and be signed by a CA we trust.
    let wrong_name = format!("corp.example=tls://{}#other.test", unbound.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &wrong_name, "--forward-tls-ca", &ca_file]);
    assert_eq!(ask(ferrodns.addr, "www.corp.example.", 1, None).metadata.response_code, ResponseCode::ServFail);
    let unknown_ca = start_ferrodns(&hosted_zones(), &["--forward-zone", &good]);
    assert_eq!(ask(unknown_ca.addr, "www.corp.example.", 1, None).metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn a_forward_zone_inside_a_hosted_zone_forwards() {
    let forwarder = scripted(Box::new(|query, socket, from| {
        socket.send_to(&reply_to(query, &[("", [192, 0, 2, 55], 300)]), from).unwrap();
    }));
    // hosted.test. is hosted; lab.hosted.test. inside it is forwarded.
    let forward = format!("lab.hosted.test={}", forwarder.addr);
    let ferrodns = start_ferrodns(&hosted_zones(), &["--forward-zone", &forward]);
    let reply = ask(ferrodns.addr, "x.lab.hosted.test.", 1, None);
    assert_eq!(answers(&reply), ["x.lab.hosted.test. 192.0.2.55"]);
    assert!(!reply.metadata.authoritative && reply.metadata.recursion_available);
    let reply = ask(ferrodns.addr, "www.hosted.test.", 1, None);
    assert_eq!(answers(&reply), ["www.hosted.test. 192.0.2.2"]);
    assert!(reply.metadata.authoritative, "the hosted zone answers the rest from its data");
}
