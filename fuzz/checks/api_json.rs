//! Any bytes as the body of `POST /v1/zones/{zone}/changes`, through the
//! API's parser and into the control plane's planner against a zone with
//! CNAMEs, a DNAME, a delegation with glue and DS, and a wildcard. Whatever
//! the planner accepts must build as a zone: a write the server cannot
//! publish is never committed.

use std::sync::OnceLock;

use ferrodns_proto::{Name, RecordType};
use ferrodns_zone::edit::{self, Limits, RRsetData, Working};
use ferrodns_zone::live::build_zone;
use ferrodns_zone::masterfile::{parse_str, ParseOptions};

const ZONE: &str = "$ORIGIN fuzz.test.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n\
                    www A 192.0.2.2\nalias CNAME www\nd DNAME example.net.\nsub NS ns.sub\nns.sub A 192.0.2.3\n\
                    sub DS 1 8 2 ABCD\n*.wild TXT \"w\"\n";

fn zone() -> &'static (Name, Working) {
    static ZONE_DATA: OnceLock<(Name, Working)> = OnceLock::new();
    ZONE_DATA.get_or_init(|| {
        let apex = Name::parse("fuzz.test.", None).unwrap();
        let parsed = parse_str(ZONE.as_bytes(), "fuzz", &ParseOptions::default());
        let mut sets: std::collections::BTreeMap<_, (u32, Vec<Vec<u8>>)> = Default::default();
        for record in parsed.records {
            sets.entry((record.owner.to_lowercase(), record.rtype))
                .or_insert((record.ttl, Vec::new()))
                .1
                .push(record.rdata);
        }
        let working = sets
            .into_iter()
            .map(|((owner, rtype), (ttl, rdatas))| {
                let set = RRsetData::new(&owner, rtype, ttl, rdatas);
                (set.key(), set)
            })
            .collect();
        (apex, working)
    })
}

pub fn check(data: &[u8]) {
    let (apex, state) = zone();
    let limits = Limits { max_records_per_rrset: 50, ..Limits::default() };
    let Ok(batch) = ferrodns_api::records::parse_batch(apex, data, 100, &limits) else { return };
    let owners = batch.owners();
    let current: Working =
        state.iter().filter(|(key, _)| owners.contains(&key.owner)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let Ok(plan) = edit::plan(current, &batch) else { return };
    let mut after = state.clone();
    for (key, set) in plan.writes {
        match set {
            Some(set) => after.insert(key, set),
            None => after.remove(&key),
        };
    }
    assert!(after.keys().any(|k| k.rtype == RecordType::SOA), "the SOA is the server's");
    if let Err(errors) = build_zone(apex, after.values()) {
        panic!("the planner accepted {:?}, which does not build: {errors:?}", batch.changes());
    }
}
