//! The differential corpus zones (`test-data/zones`), loaded once: what the
//! answer-path targets answer from.

use std::sync::{Arc, OnceLock};

use ferrodns_zone::{load_zone_file, ZoneSet};

pub fn corpus_zones() -> &'static ZoneSet {
    static ZONES: OnceLock<ZoneSet> = OnceLock::new();
    ZONES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(super::TEST_DATA).join("zones");
        let mut set = ZoneSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            set.insert(Arc::new(load_zone_file(&path, false).unwrap().zone));
        }
        set
    })
}
