//! Any bytes through the answer path as a UDP worker runs it: parsed in
//! place, the prefetch stages, then `respond_parsed`, which may take the
//! one-pass writer. The reply must be the layered path's (`respond`) octet
//! for octet, carry the query's id with QR set, and fit in 1232 octets.

use ferrodns_engine::{prefetch, prefetch_node, prefetch_set, prefetch_set_entry, respond, respond_parsed};
use ferrodns_engine::{Outcome, Transport};
use ferrodns_proto::{parse_query_into, Query};

use super::zones::corpus_zones;

pub fn check(data: &[u8]) {
    let zones = corpus_zones();
    let mut query = Query::new();
    if parse_query_into(data, &mut query).is_err() {
        return;
    }
    let probe = prefetch_set(zones, query.qname_lower());
    prefetch_set_entry(zones, probe);
    let prefetched = prefetch(zones, query.qname_lower(), probe);
    if let Some(slot) = prefetched {
        prefetch_node(slot);
    }
    let mut fast = Vec::new();
    let outcome = respond_parsed(zones, &query, prefetched, Transport::Udp, &mut fast);
    let mut layered = Vec::new();
    let general = respond(zones, data, Transport::Udp, &mut layered);
    assert_eq!(outcome, general, "the UDP path and the layers disagree on the outcome");
    if outcome == Outcome::Reply {
        assert_eq!(fast, layered, "the UDP path's reply differs from the layers'");
        assert!(fast.len() >= 12 && fast.len() <= ferrodns_engine::MAX_UDP_PAYLOAD as usize);
        assert_eq!(fast[..2], data[..2]);
        assert!(fast[2] & 0x80 != 0, "QR set");
    }
}
