//! Any bytes as a primary's answer to our SOA query or transfer: the
//! client's parser never panics, and what it accepts is well formed (every
//! record's RDATA passes the zone rules' record check, so it can be built).

use ferrodns_transfer::client::parse_response;

pub fn check(data: &[u8]) {
    let id = if data.len() >= 2 { u16::from_be_bytes([data[0], data[1]]) } else { 0 };
    let Ok(parsed) = parse_response(data, id) else { return };
    assert!(parsed.rcode < 16);
    for record in &parsed.answers {
        assert!(
            ferrodns_proto::rdata::validate_wire(record.rtype, &record.rdata).is_ok(),
            "accepted {} {} with bad RDATA",
            record.owner,
            record.rtype
        );
        assert!(record.rdata.len() <= u16::MAX as usize);
    }
}
