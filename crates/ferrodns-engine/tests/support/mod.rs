//! Helpers the engine's integration tests share.

use std::sync::Arc;

use ferrodns_proto::Name;
use ferrodns_zone::masterfile::{parse_str, ParseOptions};
use ferrodns_zone::{ZoneBuilder, ZoneSet};

/// A zone set holding one zone, `apex`, built from master-file `text`
/// (which must parse cleanly).
pub fn zone_set(apex: &str, text: &str) -> ZoneSet {
    let parsed = parse_str(text.as_bytes(), "t", &ParseOptions::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let mut builder = ZoneBuilder::new(Name::parse(apex, None).unwrap());
    for r in parsed.records {
        builder.add(r.owner, r.rtype, r.ttl, &r.rdata, Some(r.line));
    }
    let mut set = ZoneSet::new();
    set.insert(Arc::new(builder.finish().unwrap().0));
    set
}
