//! What one DNS-over-TCP client can hold (issue 14, item 7): its share of
//! the connection slots, and no slot at all once it stops reading its
//! replies.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferrodns_proto::Name;
use support::{build_query, start_ferrodns, temp_dir, ZoneFile};

/// A zone whose `big` TXT RRset makes a reply of about 15 KB.
fn big_zone() -> ZoneFile {
    let dir = temp_dir("tcp-limits");
    let mut text =
        String::from("$ORIGIN limits.test.\n@ 300 IN SOA ns hostmaster 1 60 60 600 60\n@ NS ns\nns A 192.0.2.1\n");
    for i in 0..60 {
        text.push_str(&format!("big TXT \"{i:03}{}\"\n", "x".repeat(240)));
    }
    let path = dir.join("limits.test.zone");
    std::fs::write(&path, text).unwrap();
    ZoneFile { origin: "limits.test.".to_string(), path }
}

/// A TCP connection to `server` from the local address `from`.
fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&server.into()).unwrap();
    socket.into()
}

fn framed(query: &[u8]) -> Vec<u8> {
    let mut out = (query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(query);
    out
}

/// Sends one query and reads its reply; None if the server closed or
/// did not answer within two seconds.
fn ask(stream: &mut TcpStream, qname: &str) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let query = build_query(7, Name::parse(qname, None).unwrap().as_wire(), 1, None, false);
    stream.write_all(&framed(&query)).ok()?;
    support::read_framed(stream)
}

#[test]
fn one_client_holds_only_its_share_of_the_slots() {
    let server = start_ferrodns(&[big_zone()], &["--tcp-max-connections", "8", "--tcp-max-per-client", "2"]);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", server.addr)).collect();
    for stream in &mut held {
        assert!(ask(stream, "ns.limits.test.").is_some());
    }
    // A third from the same address is closed at accept.
    let mut third = connect_from("127.0.0.2", server.addr);
    assert!(ask(&mut third, "ns.limits.test.").is_none(), "a client got more than its share");
    // Another client is still served.
    let mut other = connect_from("127.0.0.3", server.addr);
    assert!(ask(&mut other, "ns.limits.test.").is_some());
}

#[test]
fn a_client_that_stops_reading_loses_its_slot() {
    let server = start_ferrodns(&[big_zone()], &["--tcp-idle-timeout", "2"]);
    let mut slow = connect_from("127.0.0.4", server.addr);
    // 3,000 queries for 15 KB replies, about 45 MB, far more than the socket
    // buffers hold; the client reads none of them for now.
    let query = framed(&build_query(9, Name::parse("big.limits.test.", None).unwrap().as_wire(), 16, None, false));
    let burst: Vec<u8> = query.iter().copied().cycle().take(query.len() * 3000).collect();
    slow.write_all(&burst).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // Reading now drains what the buffers held, then meets the closed end.
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut received, mut buffer, started) = (0usize, vec![0u8; 1 << 16], Instant::now());
    loop {
        match slow.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept a non-reading client's connection open: {e} after {received} octets"),
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    assert!(received < 3000 * 15_000, "every reply was written: {received} octets");
    // The server still answers others.
    let mut other = connect_from("127.0.0.5", server.addr);
    assert!(ask(&mut other, "ns.limits.test.").is_some());
}
