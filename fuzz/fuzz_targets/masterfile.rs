//! Any bytes as a master file: parse, build the zone if it parses, write it
//! back out, and check that the written form parses to the same records.
#![no_main]

use ferrodns_proto::Name;
use ferrodns_zone::masterfile::{parse_str, ParseOptions};
use ferrodns_zone::writer::write_zone;
use ferrodns_zone::ZoneBuilder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ParseOptions { origin: Some(Name::parse("example.", None).unwrap()), ..ParseOptions::default() };
    let parsed = parse_str(data, "fuzz", &options);
    let mut builder = ZoneBuilder::new(Name::parse("example.", None).unwrap());
    for record in parsed.records {
        builder.add(record.owner, record.rtype, record.ttl, &record.rdata, Some(record.line));
    }
    let Ok((zone, _)) = builder.finish() else { return };
    let text = write_zone(&zone);
    let again = parse_str(text.as_bytes(), "written", &ParseOptions::default());
    assert!(again.errors.is_empty(), "written zone does not parse: {:?}\n{text}", again.errors);
    assert_eq!(again.records.len(), zone.record_count(), "{text}");
});
