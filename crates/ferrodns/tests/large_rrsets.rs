//! Oversized RRsets and many RRsets at one name, the class of CVE-2024-1737
//! (BIND slowed to a crawl by names with very many records): a zone from a
//! file or a hostile primary can hold an RRset of 100,000 records, where the
//! API's own limit is 1,000. Asking for it must cost what asking for a small
//! one costs, and the answers must be right: too large for UDP or TCP, the
//! reply is truncated and empty; the name's other RRsets answer as usual.

mod support;

use std::time::Duration;

use ferrodns_proto::Name;
use support::{build_query, query_tcp, query_udp, start_ferrodns, temp_dir, ZoneFile};

const BIG: usize = 100_000;

fn zone_file() -> ZoneFile {
    let mut text = String::from(
        "$ORIGIN large.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 604800 300\n@ NS ns\nns A 192.0.2.53\n\
         small A 192.0.2.1\n",
    );
    for i in 0..BIG {
        text.push_str(&format!("big A 10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
    }
    // 254 more types at the same name, the most one name may hold with A (255).
    for t in 0..254 {
        text.push_str(&format!("big TYPE{} \\# 1 {:02x}\n", 1000 + t, t));
    }
    let path = temp_dir("large").join("large.test.zone");
    std::fs::write(&path, text).unwrap();
    ZoneFile { origin: "large.test.".to_string(), path }
}

/// The header's flags word and answer count of a reply.
fn header(reply: &[u8]) -> (u16, u16) {
    (u16::from_be_bytes([reply[2], reply[3]]), u16::from_be_bytes([reply[6], reply[7]]))
}

const TC: u16 = 0x0200;

#[test]
fn a_huge_rrset_costs_no_more_to_ask_for_than_a_small_one() {
    let server = start_ferrodns(&[zone_file()], &[]);
    let query = |name: &str, qtype: u16, id: u16| {
        build_query(id, Name::parse(name, None).unwrap().as_wire(), qtype, Some(1232), false)
    };
    let timeout = Duration::from_secs(5);
    // Answers: the 100,000 A records fit neither UDP nor TCP, so both are
    // truncated and empty; the small RRset and the other types answer.
    for ask in [query_udp, query_tcp] {
        let reply = ask(server.addr, &query("big.large.test.", 1, 1), timeout).expect("an answer");
        let (flags, answers) = header(&reply);
        assert_eq!((flags & TC, answers, flags & 0x000f), (TC, 0, 0));
        let reply = ask(server.addr, &query("big.large.test.", 1100, 2), timeout).expect("an answer");
        assert_eq!(header(&reply).1, 1);
        let reply = ask(server.addr, &query("small.large.test.", 1, 3), timeout).expect("an answer");
        assert_eq!(header(&reply), (header(&reply).0 & !TC, 1));
    }
    // Cost: the server's CPU time for 2,000 queries of each. Before the
    // fix, each query of the big RRset walked all 100,000 records (about
    // 30 times the small one's cost in a debug build).
    let cpu_for = |name: &str, qtype: u16| {
        let before = server.cpu_time();
        for i in 0..2_000u16 {
            query_udp(server.addr, &query(name, qtype, i), timeout).expect("an answer");
        }
        server.cpu_time() - before
    };
    let small = cpu_for("small.large.test.", 1);
    let big = cpu_for("big.large.test.", 1);
    println!("server CPU for 2,000 queries: small RRset {small:?}, 100,000-record RRset {big:?}");
    assert!(
        big < small * 3 + Duration::from_millis(150),
        "asking for the 100,000-record RRset cost {big:?} of CPU against {small:?} for a small one"
    );
}
