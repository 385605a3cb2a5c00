//! The RDATA table's wire check, writer and parser agree: wire RDATA that
//! `validate_wire` accepts is written as master-file text that reads back
//! to the same octets, through the same tokenizer zone files go through.

use ferrodns_proto::rdata::{parse_rdata, validate_wire, write_rdata, Token};
use ferrodns_proto::{Name, RecordType};
use ferrodns_zone::masterfile::{parse_str, ParseOptions};

/// Reads one record's RDATA text as a zone file line would be read.
fn read_back(rtype: RecordType, text: &str) -> Result<Vec<u8>, String> {
    let zone = format!("$ORIGIN example.com.\n@ 300 IN {rtype} {text}\n");
    let mut parsed = parse_str(zone.as_bytes(), "written", &ParseOptions::default());
    match (parsed.records.pop(), parsed.errors.first()) {
        (Some(record), None) => Ok(record.rdata),
        (_, Some(error)) => Err(error.message.clone()),
        (None, None) => Err("no record".into()),
    }
}

/// Any wire RDATA the check accepts is written as text that parses back to
/// the same octets (in the type's own form, or the generic one when a field
/// has no text form); whatever it refuses is written generically, and that
/// text does not read for the type either. Mutations of every listed type's
/// RDATA: cut, lengthened, octets changed.
#[test]
fn checked_wire_round_trips_through_text() {
    let origin = Name::parse("example.com.", None).unwrap();
    let samples = [
        (RecordType::A, "192.0.2.1"),
        (RecordType::AAAA, "2001:db8::1"),
        (RecordType::NS, "ns1"),
        (RecordType::SOA, "ns1 host 1 3600 900 604800 300"),
        (RecordType::MX, "10 mail"),
        (RecordType::KX, "10 kx"),
        (RecordType::AFSDB, "1 afs"),
        (RecordType::RP, "admin txt"),
        (RecordType::TXT, "hello-world two"),
        (RecordType::HINFO, "x86 linux"),
        (RecordType::SRV, "0 5 5060 sip"),
        (RecordType::CAA, "0 issue ca.example.net"),
        (RecordType::NAPTR, "100 10 S SIP+D2U - _sip._udp"),
        (RecordType::DS, "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"),
        (RecordType::SSHFP, "4 2 abcdef0123"),
        (RecordType::TLSA, "3 1 1 0011AABB"),
        (
            RecordType::DNSKEY,
            "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==",
        ),
        (RecordType::DNAME, "example.net."),
        (RecordType::HTTPS, "1 . alpn=h3,h2 port=8443 ipv6hint=2001:db8::1"),
        (
            RecordType::RRSIG,
            "A 13 2 300 20261231000000 20261201000000 12345 example.com. mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==",
        ),
        (RecordType::NSEC, "next.example.com. A NS SOA RRSIG NSEC DNSKEY TYPE65280"),
        (RecordType::NSEC3, "1 0 10 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG"),
        (RecordType::NSEC3PARAM, "1 0 10 -"),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut refused) = (0, 0);
    for (rtype, text) in samples {
        let tokens: Vec<Token<'_>> = text.split(' ').map(Token::bare).collect();
        let mut wire = Vec::new();
        parse_rdata(rtype, &tokens, &origin, &mut wire).unwrap_or_else(|e| panic!("{rtype} {text}: {e}"));
        for round in 0..400 {
            let mut mutated = wire.clone();
            if round > 0 {
                for _ in 0..1 + next() % 3 {
                    let at = next() as usize % (mutated.len() + 1);
                    match next() % 3 {
                        0 => mutated.truncate(at),
                        1 => mutated.insert(at, next() as u8 % 8),
                        _ if at < mutated.len() => mutated[at] = next() as u8,
                        _ => {}
                    }
                }
            }
            let mut shown = String::new();
            write_rdata(rtype, &mutated, &mut shown);
            let reparsed = read_back(rtype, &shown);
            if validate_wire(rtype, &mutated).is_ok() {
                accepted += 1;
                assert_eq!(reparsed.as_ref(), Ok(&mutated), "{rtype} {mutated:?} written as {shown}");
                // Only a field without a text form (an empty digest, key,
                // signature or hash, a CAA tag of other octets, SvcParams out
                // of order or with a malformed value) sends well-formed RDATA
                // to the generic form.
                let may_be_generic = [
                    RecordType::DS,
                    RecordType::SSHFP,
                    RecordType::TLSA,
                    RecordType::DNSKEY,
                    RecordType::CAA,
                    RecordType::HTTPS,
                    RecordType::RRSIG,
                    RecordType::NSEC3,
                ]
                .contains(&rtype);
                assert!(may_be_generic || !shown.starts_with("\\# "), "{rtype} {mutated:?} written as {shown}");
            } else {
                refused += 1;
                assert!(shown.starts_with("\\# "), "{rtype} {mutated:?} refused yet written as {shown}");
                assert!(reparsed.is_err(), "{rtype} {mutated:?} refused yet {shown} reads");
            }
        }
    }
    assert!(accepted > 500 && refused > 500, "{accepted} accepted, {refused} refused");
}
