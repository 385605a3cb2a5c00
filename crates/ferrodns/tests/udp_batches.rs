//! Bursts of UDP queries from one client socket, so that the worker answers
//! them in batches and (by default) sends the replies to that socket with
//! UDP segmentation offload: every reply must arrive as its own datagram,
//! byte for byte what the same query gets when it is asked alone, with GSO
//! on and off, over IPv4 and IPv6, and with busy polling.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{build_query, corpus_zones, query_udp, read_corpus, start_ferrodns};

/// Sends every query from one socket in bursts of `burst` without waiting,
/// and returns each id's replies.
fn burst(server: SocketAddr, local: &str, queries: &[Vec<u8>], burst: usize) -> HashMap<u16, Vec<Vec<u8>>> {
    let socket = UdpSocket::bind(local).unwrap();
    set_receive_buffer(&socket, 8 << 20);
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut replies: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    let mut buffer = vec![0u8; 65535];
    for chunk in queries.chunks(burst) {
        for query in chunk {
            socket.send_to(query, server).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut received = 0;
        while received < chunk.len() && Instant::now() < deadline {
            let Ok((len, from)) = socket.recv_from(&mut buffer) else { break };
            assert_eq!(from, server, "a reply from the server's own address and port");
            let id = u16::from_be_bytes([buffer[0], buffer[1]]);
            replies.entry(id).or_default().push(buffer[..len].to_vec());
            received += 1;
        }
    }
    replies
}

/// Room for a whole burst of replies, so none is dropped before it is read.
fn set_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_RCVBUF");
}

fn check_bursts(server: SocketAddr, local: &str, label: &str) {
    // The differential corpus's UDP queries: replies of many sizes (short
    // NXDOMAINs, referrals, answers cut short with TC).
    let queries: Vec<Vec<u8>> = read_corpus()
        .iter()
        .filter(|case| !case.tcp)
        .enumerate()
        .map(|(i, case)| build_query(i as u16, &case.qname, case.qtype, case.edns, false))
        .collect();
    assert!(queries.len() > 2000, "the corpus has its queries");
    // What each query gets asked alone (dnsperf-like bursts would batch them).
    let alone: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| query_udp(server, q, Duration::from_secs(2)).unwrap_or_else(|| panic!("{label}: no answer alone")))
        .collect();
    for size in [64, 300] {
        let replies = burst(server, local, &queries, size);
        for (i, expected) in alone.iter().enumerate() {
            let got = replies.get(&(i as u16)).unwrap_or_else(|| panic!("{label}, bursts of {size}: no reply to {i}"));
            assert_eq!(got.len(), 1, "{label}, bursts of {size}: one reply to query {i}");
            assert_eq!(&got[0], expected, "{label}, bursts of {size}: reply to query {i} as when asked alone");
        }
    }
}

#[test]
fn replies_to_bursts_arrive_whole_and_unchanged() {
    let zones = corpus_zones();
    for gso in ["true", "false"] {
        let server = start_ferrodns(&zones, &["--udp-gso", gso, "--udp-workers", "1"]);
        check_bursts(server.addr, "127.0.0.1:0", &format!("IPv4, GSO {gso}"));
    }
}

#[test]
fn a_busy_polling_worker_answers_the_same_and_sleeps_once_traffic_stops() {
    let zones = corpus_zones();
    let server = start_ferrodns(&zones, &["--udp-busy-poll-us", "1000", "--udp-workers", "1"]);
    // The bursts run well above the polling threshold, so the worker polls.
    check_bursts(server.addr, "127.0.0.1:0", "IPv4, busy polling");
    // Once the queries stop the worker must go back to sleeping: a second
    // of idling costs next to no CPU (a worker still polling would use it all).
    std::thread::sleep(Duration::from_millis(300));
    let before = server.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = server.cpu_time() - before;
    assert!(used < Duration::from_millis(200), "an idle busy-polling server used {used:?} of CPU in one second");
}

#[test]
fn replies_to_bursts_over_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let zones = corpus_zones();
    let port = support::free_port();
    let listen = format!("[::1]:{port}");
    let v4 = start_ferrodns(&zones, &["--dns-listen", &listen, "--udp-workers", "1"]);
    let server: SocketAddr = listen.parse().unwrap();
    check_bursts(server, "[::1]:0", "IPv6, GSO true");
    drop(v4);
}
