//! Logs under attack (issue 14, item 11): a flood of UDP queries signed
//! with a key the server does not know wrote one WARN line per query. Each
//! call site now writes at most a burst of lines per window, and a line
//! with the count of the ones it dropped.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrodns_proto::tsig::{Key, Signer};
use ferrodns_proto::Name;
use support::{build_query, start_ferrodns, temp_dir, ZoneFile};

#[test]
fn a_flood_of_bad_signatures_writes_a_bounded_log() {
    let dir = temp_dir("log-flood");
    let path = dir.join("flood.test.zone");
    std::fs::write(&path, "$ORIGIN flood.test.\n@ 300 IN SOA ns hostmaster 1 60 60 600 60\n@ NS ns\nns A 192.0.2.1\n")
        .unwrap();
    let server = start_ferrodns(&[ZoneFile { origin: "flood.test.".to_string(), path }], &[]);
    let key = Key::parse("ghost:hmac-sha256:Z2hvc3Qta2V5LWdob3N0LWtleS1naG9zdC1rZXktMzI=").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for id in 0..5000u16 {
        let mut query = build_query(id, Name::parse("flood.test.", None).unwrap().as_wire(), 6, None, false);
        Signer::request(key.clone()).sign(&mut query, now, 0, &[]);
        socket.send_to(&query, server.addr).unwrap();
        if id % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The reporter writes the count once the window ends.
    let deadline = Instant::now() + Duration::from_secs(25);
    while !server.log().contains("log lines dropped") {
        assert!(Instant::now() < deadline, "no count of dropped lines:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.log();
    let refusals = log.lines().filter(|line| line.contains("refused")).count();
    println!("{refusals} refusal lines for 5,000 bad signatures");
    assert!(refusals <= 110, "{refusals} refusal lines for 5,000 bad signatures");
    assert!(refusals >= 50, "the first refusals are written: {refusals}");
}
