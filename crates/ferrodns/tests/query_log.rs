//! The dnstap query log (issue 16): a file that BIND's `dnstap-read`
//! reads, sampling that logs one query in N, and a Unix socket reader that
//! gets the Frame Streams handshake (READY, ACCEPT, START).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use support::control::dns_lookup;
use support::{build_query, query_tcp, start_ferrodns, temp_dir, ZoneFile};

const ZONE: &str = "$ORIGIN tap.test.
$TTL 300
@    SOA ns hostmaster 1 3600 600 86400 300
@    NS  ns
ns   A   192.0.2.53
www  A   192.0.2.80
";

fn zone_file(dir: &std::path::Path) -> ZoneFile {
    let path = dir.join("tap.zone");
    std::fs::write(&path, ZONE).unwrap();
    ZoneFile { origin: "tap.test.".into(), path }
}

/// `dnstap-read -y` of a file: its messages as YAML documents.
fn dnstap_read(path: &std::path::Path) -> String {
    let out = Command::new("dnstap-read").arg("-y").arg(path).output().expect("dnstap-read (bind9-dnsutils) runs");
    assert!(out.status.success(), "dnstap-read failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_query_goes_to_a_file_that_dnstap_read_reads() {
    let dir = temp_dir("dnstap");
    let log = dir.join("queries.tap");
    let query_log = format!("file:{}", log.display());
    let mut server = start_ferrodns(&[zone_file(&dir)], &["--query-log", &query_log, "--node-id", "tap-node"]);
    for _ in 0..5 {
        assert_eq!(dns_lookup(server.addr, "www.tap.test.", 1).0, "NoError");
    }
    assert_eq!(dns_lookup(server.addr, "nope.tap.test.", 1).0, "NXDomain");
    let qname = ferrodns_proto::Name::parse("www.tap.test.", None).unwrap();
    assert!(query_tcp(server.addr, &build_query(9, qname.as_wire(), 28, None, false), Duration::from_secs(2)).is_some());
    // SIGTERM: the writer ends the stream with STOP before the process exits.
    assert!(server.terminate().success());

    let yaml = dnstap_read(&log);
    let count = |needle: &str| yaml.matches(needle).count();
    // Every exchange twice (query and response); the start-up probe's too.
    assert_eq!(count("type: AUTH_QUERY"), count("type: AUTH_RESPONSE"), "{yaml}");
    assert_eq!(count("'www.tap.test. IN A'"), 10, "{yaml}");
    assert_eq!(count("'nope.tap.test. IN A'"), 2, "{yaml}");
    assert_eq!(count("'www.tap.test. IN AAAA'"), 2, "{yaml}");
    assert_eq!(count("socket_protocol: TCP"), 2, "{yaml}");
    assert!(yaml.contains("identity: tap-node"), "{yaml}");
    assert!(yaml.contains("www.tap.test"), "{yaml}");
    assert!(yaml.contains("NXDOMAIN"), "{yaml}");
    assert!(yaml.contains("query_address: \"127.0.0.1\""), "{yaml}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_query_in_n_is_logged() {
    let dir = temp_dir("dnstap-sample");
    let log = dir.join("sampled.tap");
    let query_log = format!("file:{}", log.display());
    let mut server = start_ferrodns(
        &[zone_file(&dir)],
        &["--query-log", &query_log, "--query-log-sample", "10", "--udp-workers", "1"],
    );
    for _ in 0..100 {
        assert_eq!(dns_lookup(server.addr, "www.tap.test.", 1).0, "NoError");
    }
    assert!(server.terminate().success());
    let yaml = dnstap_read(&log);
    assert_eq!(yaml.matches("type: AUTH_QUERY").count(), 10, "{yaml}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads one Frame Streams control frame; returns its type.
fn control(stream: &mut impl Read) -> u32 {
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).unwrap();
    assert_eq!(word, [0; 4], "a control frame starts with the escape");
    stream.read_exact(&mut word).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
    stream.read_exact(&mut frame).unwrap();
    assert!(frame.windows(22).any(|w| w == b"protobuf:dnstap.Dnstap") || frame.len() == 4, "{frame:?}");
    u32::from_be_bytes(frame[..4].try_into().unwrap())
}

#[test]
fn a_socket_reader_gets_the_handshake_and_the_frames() {
    let dir = temp_dir("dnstap-socket");
    let socket = dir.join("tap.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let query_log = format!("unix:{}", socket.display());
    let server = start_ferrodns(&[zone_file(&dir)], &["--query-log", &query_log]);
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(control(&mut stream), 0x04, "READY first");
    // ACCEPT, with the content type.
    let content = b"protobuf:dnstap.Dnstap";
    let mut accept = 1u32.to_be_bytes().to_vec();
    accept.extend_from_slice(&1u32.to_be_bytes());
    accept.extend_from_slice(&(content.len() as u32).to_be_bytes());
    accept.extend_from_slice(content);
    stream.write_all(&0u32.to_be_bytes()).unwrap();
    stream.write_all(&(accept.len() as u32).to_be_bytes()).unwrap();
    stream.write_all(&accept).unwrap();
    assert_eq!(control(&mut stream), 0x02, "then START");
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(dns_lookup(server.addr, "www.tap.test.", 1).0, "NoError");
    // Two data frames: the query and the response.
    for _ in 0..2 {
        let mut word = [0u8; 4];
        stream.read_exact(&mut word).unwrap();
        let length = u32::from_be_bytes(word) as usize;
        assert!(length > 40 && length < 2048, "{length}");
        let mut frame = vec![0u8; length];
        stream.read_exact(&mut frame).unwrap();
        // (The start-up probe may come first: any query for the zone.)
        assert!(frame.windows(3).any(|w| w == b"tap"), "the message carries the query");
        assert!(Instant::now() < deadline);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
