//! Any bytes through the whole answer path, over both transports, against the
//! differential corpus zones. Checks that every reply parses as a DNS header
//! with the query's id and stays within the transport's size limit.
#![no_main]

use std::sync::{Arc, OnceLock};

use ferrodns_engine::{respond, Outcome, Transport};
use ferrodns_zone::{load_zone_file, ZoneSet};
use libfuzzer_sys::fuzz_target;

fn zones() -> &'static ZoneSet {
    static ZONES: OnceLock<ZoneSet> = OnceLock::new();
    ZONES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-data/zones");
        let mut set = ZoneSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            set.insert(Arc::new(load_zone_file(&path, false).unwrap().zone));
        }
        set
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        if respond(zones(), data, transport, &mut out) == Outcome::Reply {
            assert!(out.len() >= 12);
            assert_eq!(out[..2], data[..2]);
            assert!(out[2] & 0x80 != 0, "QR set");
            if transport == Transport::Udp {
                assert!(out.len() <= ferrodns_engine::MAX_UDP_PAYLOAD as usize);
            }
        }
    }
});
