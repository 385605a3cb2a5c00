//! Eight clients each send 500 change batches to one zone at once. No update
//! may be lost, the serial rises by exactly one per batch, and replaying the
//! journal from the zone's first serial reproduces the final zone. Runs on
//! SQLite and on PostgreSQL.

mod support;

use std::collections::BTreeSet;

use ferrodns_proto::Serial;
use ferrodns_store::{working_from, Store, StoreOptions};
use ferrodns_zone::edit::{apply_diff, Working};
use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};

const CLIENTS: usize = 8;
const BATCHES: usize = 500;

fn concurrent_writers(database: Database) {
    let mut node = Node::start(&database, &["--journal-keep", "100000"]);
    let (status, zone, _) =
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "busy.test"})).send().unwrap());
    assert_eq!(status, 201, "{zone}");
    let first_serial = zone["serial"].as_u64().unwrap();

    let serials: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let node = &node;
                scope.spawn(move || {
                    let mut serials = Vec::with_capacity(BATCHES);
                    for i in 0..BATCHES {
                        let body = json!({"changes": [
                            {"action": "create", "name": format!("c{client}-{i}"), "type": "A", "ttl": 60,
                             "records": [format!("10.{client}.{}.{}", i / 256, i % 256)]},
                            {"action": "upsert", "name": format!("client{client}"), "type": "TXT", "ttl": 60,
                             "records": [format!("\"{i}\"")]},
                        ]});
                        let (status, change, _) =
                            json(node.request(Method::POST, "/v1/zones/busy.test/changes").json(&body).send().unwrap());
                        assert_eq!(status, 200, "client {client} batch {i}: {change}");
                        serials.push(change["serial"].as_u64().unwrap());
                    }
                    serials
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });

    // Each batch got its own serial, and together they are every serial from
    // first + 1 to first + 4000.
    let total = (CLIENTS * BATCHES) as u64;
    let distinct: BTreeSet<u64> = serials.iter().copied().collect();
    assert_eq!(distinct.len(), serials.len(), "two batches got the same serial");
    assert_eq!(distinct.first().copied(), Some(first_serial + 1));
    assert_eq!(distinct.last().copied(), Some(first_serial + total));

    let (_, zone, _) = json(node.request(Method::GET, "/v1/zones/busy.test").send().unwrap());
    assert_eq!(zone["serial"].as_u64(), Some(first_serial + total));
    assert_eq!(zone["rrset_count"].as_u64(), Some(2 + total + CLIENTS as u64), "{zone}");
    for client in 0..CLIENTS {
        assert_eq!(dns_lookup(node.dns, &format!("client{client}.busy.test."), 16).1, [format!("{}", BATCHES - 1)]);
        assert_eq!(dns_lookup(node.dns, &format!("c{client}-{}.busy.test.", BATCHES - 1), 1).0, "NoError");
    }

    // Replay the journal from the first serial, with the server stopped.
    node.stop();
    let url = database.url().map_or_else(|| Store::sqlite_url(&node.data_dir), str::to_string);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        let zone = store.zone(&ferrodns_proto::Name::parse("busy.test.", None).unwrap()).await.unwrap();
        let journal = store.journal(zone.id).await.unwrap();
        assert_eq!(journal.len() as u64, total + 1, "the creation plus one entry per batch");
        let mut replayed = Working::new();
        let mut serial: Option<Serial> = None;
        for (change, diff) in &journal {
            if let Some(serial) = serial {
                assert_eq!(diff.old_serial, serial, "journal entry {} does not follow on", change.id);
                assert_eq!(diff.new_serial, serial.plus(1));
            }
            apply_diff(&mut replayed, diff).unwrap_or_else(|e| panic!("entry {}: {e}", change.id));
            serial = Some(diff.new_serial);
        }
        let stored = working_from(store.zone_rrsets(zone.id).await.unwrap());
        assert_eq!(replayed, stored, "replaying the journal does not give the zone");

        // IXFR's read of the journal: the steps from the first batch's serial,
        // weighed by their kept record counts before any is read.
        let from = journal[1].1.old_serial;
        let records: usize = journal[1..].iter().map(|(_, d)| d.removed.len() + d.added.len()).sum();
        let steps = store.ixfr_steps(zone.id, from, records).await.unwrap().expect("the steps");
        assert_eq!(steps, journal[1..].iter().map(|(_, d)| d.clone()).collect::<Vec<_>>());
        assert!(store.ixfr_steps(zone.id, from, records - 1).await.unwrap().is_none(), "more than the zone holds");
        assert!(
            store.ixfr_steps(zone.id, serial.unwrap(), usize::MAX).await.unwrap().is_none(),
            "no step starts there"
        );
        store.close().await;
    });
}

#[test]
fn eight_writers_on_sqlite() {
    concurrent_writers(Database::sqlite());
}

#[test]
fn eight_writers_on_postgres() {
    concurrent_writers(Database::postgres());
}
