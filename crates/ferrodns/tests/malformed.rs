//! Hostile input over the wire: truncated, oversized, compression-loop and
//! random packets over UDP and TCP. The server must stay up, answer what it
//! should with FORMERR, and keep answering good queries correctly.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use ferrodns_proto::Name;
use support::{build_query, corpus_zones, query_tcp, query_udp, start_ferrodns};

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn good_query(id: u16) -> Vec<u8> {
    build_query(id, Name::parse("www.example.com.", None).unwrap().as_wire(), 1, Some(1232), false)
}

/// The server still gives the right answer to a normal query, on both transports.
fn assert_healthy(addr: SocketAddr, context: &str) {
    for (transport, reply) in [
        ("udp", query_udp(addr, &good_query(0xbeef), Duration::from_secs(2))),
        ("tcp", query_tcp(addr, &good_query(0xbeef), Duration::from_secs(2))),
    ] {
        let reply = reply.unwrap_or_else(|| panic!("no {transport} answer after {context}"));
        assert_eq!(reply[3] & 0x0f, 0, "rcode after {context}");
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer after {context}");
        assert!(reply.ends_with(&[192, 0, 2, 80]) || reply.windows(4).any(|w| w == [192, 0, 2, 80]));
    }
}

fn rcode_of(addr: SocketAddr, packet: &[u8]) -> Option<u8> {
    query_udp(addr, packet, Duration::from_millis(300)).map(|reply| reply[3] & 0x0f)
}

#[test]
fn survives_hostile_udp_and_tcp_input() {
    let zones = corpus_zones();
    let server = start_ferrodns(&zones, &[]);
    let addr = server.addr;
    let good = good_query(0x1234);

    // Every truncation of a valid query: FORMERR from 12 bytes on, silence below.
    for cut in 12..good.len() - 11 {
        assert_eq!(rcode_of(addr, &good[..cut]), Some(1), "truncated to {cut} bytes");
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for cut in 0..12 {
        socket.send_to(&good[..cut], addr).unwrap();
    }
    assert_healthy(addr, "truncated queries");

    // Compression loops and forward pointers in the question.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode_of(addr, &looped), Some(1), "pointer to itself");
    let mut forward = good[..12].to_vec();
    forward.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 0xc0, 12]);
    assert_eq!(rcode_of(addr, &forward), Some(1), "forward pointer");
    let mut two_step = good[..12].to_vec();
    two_step.extend_from_slice(&[1, b'a', 0xc0, 14, 0, 1, 0, 1]);
    assert_eq!(rcode_of(addr, &two_step), Some(1), "pointer into its own name");
    let mut bad_label = good[..12].to_vec();
    bad_label.extend_from_slice(&[0x41, b'a', 0, 0, 1, 0, 1]);
    assert_eq!(rcode_of(addr, &bad_label), Some(1), "extended label type");

    // Counts that lie, and several OPT records.
    let mut no_question = good.clone();
    no_question[5] = 0;
    assert_eq!(rcode_of(addr, &no_question), Some(1), "qdcount 0");
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    assert_eq!(rcode_of(addr, &two_questions), Some(1), "qdcount 2 with one question");
    let mut lying_arcount = good.clone();
    lying_arcount[11] = 5;
    assert_eq!(rcode_of(addr, &lying_arcount), Some(1), "arcount past the end");
    let mut two_opts = good.clone();
    two_opts[11] = 2;
    two_opts.extend_from_slice(&good[good.len() - 11..]);
    assert_eq!(rcode_of(addr, &two_opts), Some(1), "two OPT records");

    // A response is never answered (no reflection loops).
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(rcode_of(addr, &response), None, "a packet with QR set");

    // Oversized datagrams: padding after a valid query, and a huge garbage one.
    let mut padded = good.clone();
    padded.resize(9000, 0xff);
    assert!(rcode_of(addr, &padded).is_some(), "a query padded to 9000 bytes gets an answer");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut huge = rng.bytes(65_000);
    huge[2] &= 0x7f;
    socket.send_to(&huge, addr).unwrap();
    assert_healthy(addr, "oversized datagrams");

    // Random datagrams, and random bytes after a valid header.
    for i in 0..3000 {
        let len = (rng.next() % 600) as usize;
        let mut packet = rng.bytes(len);
        if i % 2 == 0 && packet.len() > 12 {
            packet[..12].copy_from_slice(&good[..12]);
        }
        socket.send_to(&packet, addr).unwrap();
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_healthy(addr, "random datagrams");

    // TCP: garbage frames, a frame longer than what follows, a zero-length frame,
    // random bytes, and a connection that says nothing.
    for i in 0..200 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let payload = match i % 4 {
            0 => {
                let len = (rng.next() % 300) as usize;
                let body = rng.bytes(len);
                [(body.len() as u16).to_be_bytes().to_vec(), body].concat()
            }
            1 => [vec![0xff, 0xff], good.clone()].concat(),
            2 => [vec![0, 0], vec![0, good.len() as u8], good.clone()].concat(),
            _ => {
                let len = (rng.next() % 100) as usize;
                rng.bytes(len)
            }
        };
        let _ = stream.write_all(&payload);
        let mut sink = [0u8; 512];
        let _ = stream.read(&mut sink);
    }
    let _idle = TcpStream::connect(addr).unwrap();
    // A valid query after a framed FORMERR on the same connection still gets its answer.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut pipelined = [vec![0, 12], good[..12].to_vec()].concat();
    pipelined[5] = 0;
    pipelined.extend_from_slice(&(good.len() as u16).to_be_bytes());
    pipelined.extend_from_slice(&good);
    stream.write_all(&pipelined).unwrap();
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).unwrap();
        replies.push(reply);
    }
    assert_eq!(replies[0][3] & 0x0f, 1, "the bad query is FORMERR");
    assert_eq!(replies[1][3] & 0x0f, 0, "the good one after it is answered");
    assert_healthy(addr, "hostile TCP input");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let zones = corpus_zones();
    let mut server = start_ferrodns(&zones, &[]);
    // An open idle TCP connection must not hold up shutdown.
    let _idle = TcpStream::connect(server.addr).unwrap();
    let started = std::time::Instant::now();
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}

#[test]
fn tcp_idle_timeout_and_connection_cap_hold() {
    let zones = corpus_zones();
    let server = start_ferrodns(&zones, &["--tcp-idle-timeout", "1", "--tcp-max-connections", "2"]);
    let closed_within = |stream: &mut TcpStream, limit: Duration| {
        stream.set_read_timeout(Some(limit)).unwrap();
        let mut byte = [0u8; 1];
        matches!(stream.read(&mut byte), Ok(0))
    };
    let mut first = TcpStream::connect(server.addr).unwrap();
    let mut second = TcpStream::connect(server.addr).unwrap();
    // Both slots are taken, so a third connection is closed at once.
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(server.addr).unwrap();
    assert!(closed_within(&mut third, Duration::from_millis(500)), "third connection over the cap stays open");
    // Idle connections are closed after the timeout.
    assert!(closed_within(&mut first, Duration::from_secs(3)), "idle connection outlived the timeout");
    assert!(closed_within(&mut second, Duration::from_secs(3)), "idle connection outlived the timeout");
    // With the slots free again, queries are answered.
    assert!(query_tcp(server.addr, &good_query(7), Duration::from_secs(2)).is_some());
}
