//! Bad primaries: a ferrodns secondary is fed a good version, then a
//! truncated AXFR, an IXFR that starts at the wrong serial, a transfer that
//! fails TSIG, a zone over its record limit and one over its byte limit, a
//! transfer that stalls past the time limit, and an AXFR whose closing SOA
//! disagrees with its opening one (transfer size and time limits are the
//! class of CVE-2016-6170 and its kin). Each time it must keep serving the
//! good version and log why.
//!
//! No real server misbehaves on demand, so the primary here is a small
//! scripted one: it answers SOA queries over UDP and transfers over TCP with
//! messages built by hand, signed with TSIG like a real primary.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrodns_proto::message::{flags, Section};
use ferrodns_proto::tsig::{self, Key, Signer};
use ferrodns_proto::{parse_query, Class, MessageWriter, Name, RecordType};
use support::control::dns_lookup;
use support::free_port;
use support::secondary::SecondaryNode;

const KEY: &str = "xfr:hmac-sha256:YmFkLXBlZXJzLXRlc3Qta2V5LWZvci1mZXJyb2Rucy0zMg==";
const WRONG_KEY: &str = "xfr:hmac-sha256:d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMzI=";
const ZONE: &str = "bad.test.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Serial 1, a correct AXFR.
    Good,
    /// Serial 2; the AXFR stops before its closing SOA and the connection closes.
    TruncatedAxfr,
    /// Serial 2; the IXFR's step starts at serial 7, which the secondary never had.
    WrongSerialIxfr,
    /// Serial 2; transfers are signed with another key.
    BadTsig,
    /// Serial 2; an AXFR of 200 records, over the secondary's limit of 50.
    Oversized,
    /// Serial 2; the AXFR's closing SOA says serial 3.
    MismatchedClosingSoa,
    /// Serial 2; an AXFR of 30 TXT records of 1,000 octets, within the
    /// record limit but over the secondary's limit of 20,000 bytes.
    Bulky,
    /// Serial 2; the AXFR's first message comes, then nothing, on a
    /// connection the primary keeps open: the secondary's limit of 2 s for
    /// a transfer ends it.
    Stalled,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn soa_rdata(serial: u32) -> Vec<u8> {
    let mut rdata = Name::parse("ns.bad.test.", None).unwrap().as_wire().to_vec();
    rdata.extend_from_slice(Name::parse("hostmaster.bad.test.", None).unwrap().as_wire());
    // Refresh and retry 1 s, so that the secondary keeps asking.
    for value in [serial, 1, 1, 86400, 60] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    rdata
}

type Rr = (String, RecordType, Vec<u8>);

fn zone_records(serial: u32, hosts: usize) -> Vec<Rr> {
    let mut records = vec![
        (ZONE.to_string(), RecordType::SOA, soa_rdata(serial)),
        (ZONE.to_string(), RecordType::NS, Name::parse("ns.bad.test.", None).unwrap().as_wire().to_vec()),
        ("ns.bad.test.".to_string(), RecordType::A, vec![192, 0, 2, 53]),
        ("www.bad.test.".to_string(), RecordType::A, vec![192, 0, 2, serial as u8]),
    ];
    for i in 0..hosts {
        records.push((format!("h{i}.bad.test."), RecordType::A, vec![10, 0, (i >> 8) as u8, i as u8]));
    }
    records.push((ZONE.to_string(), RecordType::SOA, soa_rdata(serial)));
    records
}

/// One answer message to `query` holding `records`.
fn message(query: &ferrodns_proto::Query, records: &[Rr]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = MessageWriter::new(&mut out, 65000);
    writer.set_header(query.id, flags::QR | flags::AA);
    writer.push_question(query.qname(), query.qtype, Class::IN).unwrap();
    for (owner, rtype, rdata) in records {
        let owner = Name::parse(owner, None).unwrap();
        writer.push_record(Section::Answer, owner.as_wire(), *rtype, 60, rdata).unwrap();
    }
    out
}

fn signed(packet: &[u8], mut messages: Vec<Vec<u8>>, sign_with: &Key) -> Vec<Vec<u8>> {
    let right = Key::parse(KEY).unwrap();
    let verified =
        tsig::verify_request(packet, |_| Some(right.clone()), now()).expect("requests are signed").expect("signed");
    let verified = tsig::Verified { key: sign_with.clone(), ..verified };
    let mut signer = Signer::response(verified);
    for message in &mut messages {
        signer.sign(message, now(), 0, &[]);
    }
    messages
}

/// The scripted primary.
struct ScriptedPrimary {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
}

impl ScriptedPrimary {
    fn start() -> ScriptedPrimary {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mode = Arc::new(Mutex::new(Mode::Good));
        let udp = UdpSocket::bind(addr).unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        let udp_mode = mode.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                let packet = &buffer[..len];
                let Ok(query) = parse_query(packet) else { continue };
                let serial = if *udp_mode.lock().unwrap() == Mode::Good { 1 } else { 2 };
                let reply = message(&query, &[(ZONE.to_string(), RecordType::SOA, soa_rdata(serial))]);
                for reply in signed(packet, vec![reply], &Key::parse(KEY).unwrap()) {
                    let _ = udp.send_to(&reply, peer);
                }
            }
        });
        let tcp_mode = mode.clone();
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mode = *tcp_mode.lock().unwrap();
                let Some(packet) = support::read_framed(&mut stream) else { continue };
                let Ok(query) = parse_query(&packet) else { continue };
                let right = Key::parse(KEY).unwrap();
                let messages = match mode {
                    Mode::Good => signed(&packet, vec![message(&query, &zone_records(1, 0))], &right),
                    Mode::TruncatedAxfr => {
                        let mut records = zone_records(2, 20);
                        records.truncate(10);
                        signed(&packet, vec![message(&query, &records)], &right)
                    }
                    Mode::WrongSerialIxfr => {
                        let records = vec![
                            (ZONE.to_string(), RecordType::SOA, soa_rdata(2)),
                            (ZONE.to_string(), RecordType::SOA, soa_rdata(7)),
                            ("www.bad.test.".to_string(), RecordType::A, vec![192, 0, 2, 1]),
                            (ZONE.to_string(), RecordType::SOA, soa_rdata(2)),
                            ("www.bad.test.".to_string(), RecordType::A, vec![192, 0, 2, 2]),
                            (ZONE.to_string(), RecordType::SOA, soa_rdata(2)),
                        ];
                        signed(&packet, vec![message(&query, &records)], &right)
                    }
                    Mode::BadTsig => {
                        signed(&packet, vec![message(&query, &zone_records(2, 0))], &Key::parse(WRONG_KEY).unwrap())
                    }
                    Mode::Oversized => signed(&packet, vec![message(&query, &zone_records(2, 200))], &right),
                    Mode::MismatchedClosingSoa => {
                        let mut records = zone_records(2, 0);
                        records.last_mut().unwrap().2 = soa_rdata(3);
                        signed(&packet, vec![message(&query, &records)], &right)
                    }
                    Mode::Bulky => {
                        let mut records = zone_records(2, 0);
                        let text = [&[250u8][..], &[b'x'; 250]].concat().repeat(4);
                        for i in 0..30 {
                            records.insert(1, (format!("t{i}.bad.test."), RecordType::TXT, text.clone()));
                        }
                        signed(&packet, vec![message(&query, &records)], &right)
                    }
                    Mode::Stalled => {
                        let mut records = zone_records(2, 5);
                        records.pop();
                        signed(&packet, vec![message(&query, &records)], &right)
                    }
                };
                for message in messages {
                    let _ = stream.write_all(&(message.len() as u16).to_be_bytes());
                    let _ = stream.write_all(&message);
                }
                // Closing ends the connection, mid-transfer for the truncated
                // one; the stalled one is held open well past the limit.
                if mode == Mode::Stalled {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(20));
                        drop(stream);
                    });
                }
            }
        });
        ScriptedPrimary { addr, mode }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn start_secondary(primary: SocketAddr) -> SecondaryNode {
    let extra = [
        "--catalog-zone",
        "off",
        "--secondary-zone",
        ZONE,
        "--tsig-key",
        KEY,
        "--xfr-max-records",
        "50",
        "--xfr-max-bytes",
        "20000",
        "--xfr-timeout",
        "2",
    ];
    SecondaryNode::start(0, &[primary], &extra)
}

fn wait_for_log(secondary: &SecondaryNode, text: &str, after: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = secondary.log();
        if log[after.min(log.len())..].contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "the secondary never logged {text:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_transfers_leave_the_served_version_alone() {
    let primary = ScriptedPrimary::start();
    let secondary = start_secondary(primary.addr);
    wait_for_log(&secondary, "zone transferred", 0);
    let good = || {
        let (rcode, data) = dns_lookup(secondary.dns, "www.bad.test.", 1);
        assert_eq!(
            (rcode.as_str(), data.as_slice()),
            ("NoError", &["192.0.2.1".to_string()][..]),
            "{}",
            secondary.log()
        );
    };
    good();
    let cases = [
        (Mode::TruncatedAxfr, "transfer cut short"),
        (Mode::WrongSerialIxfr, "the IXFR step starts at serial 7 but we hold 1"),
        (Mode::BadTsig, "MAC does not verify"),
        (Mode::Oversized, "over 50 records"),
        (Mode::MismatchedClosingSoa, "the closing SOA has serial 3, the opening one 2"),
        (Mode::Bulky, "over 20000 bytes"),
        (Mode::Stalled, "XFR: timed out"),
    ];
    for (mode, reason) in cases {
        let mark = secondary.log().len();
        primary.set(mode);
        wait_for_log(&secondary, reason, mark);
        good();
        println!("{mode:?}: kept serving; logged {reason:?}");
    }
    assert!(!secondary.log().contains("panicked"));
}
