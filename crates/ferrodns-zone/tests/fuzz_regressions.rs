//! Inputs the fuzzers once crashed on, replayed through the same steps as the
//! `masterfile` fuzz target: parse, build, write back, parse again.

use std::path::Path;

use ferrodns_proto::Name;
use ferrodns_zone::masterfile::{parse_str, ParseOptions};
use ferrodns_zone::writer::write_zone;
use ferrodns_zone::ZoneBuilder;

#[test]
fn masterfile_regressions_parse_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/fuzz-regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("masterfile-") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let options = ParseOptions { origin: Some(Name::parse("example.", None).unwrap()), ..ParseOptions::default() };
        let parsed = parse_str(&data, "fuzz", &options);
        let mut builder = ZoneBuilder::new(Name::parse("example.", None).unwrap());
        for record in parsed.records {
            builder.add(record.owner, record.rtype, record.ttl, &record.rdata, Some(record.line));
        }
        if let Ok((zone, _)) = builder.finish() {
            let text = write_zone(&zone);
            let again = parse_str(text.as_bytes(), "written", &ParseOptions::default());
            assert!(again.errors.is_empty(), "{}: {:?}", path.display(), again.errors);
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no regression inputs found");
}
