//! Crash safety: SIGKILL the server in the middle of a stream of writes,
//! restart it, and find every acknowledged batch whole, no batch in part,
//! and a serial that counts exactly the batches present. On SQLite and on
//! PostgreSQL.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};

const WRITERS: usize = 2;
const PARTS: [&str; 3] = ["a", "b", "c"];

fn kill_during_writes(database: Database) {
    let mut node = Node::start(&database, &[]);
    let (status, zone, _) =
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "crash.test"})).send().unwrap());
    assert_eq!(status, 201);
    let first_serial = zone["serial"].as_u64().unwrap();
    let acked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let api = node.api.clone();
    let token = node.token.clone();

    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (acked, stop, api, token) = (&acked, &stop, api.clone(), token.clone());
            scope.spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let batch = format!("w{writer}-{i}");
                    let changes: Vec<_> = PARTS
                        .iter()
                        .map(|part| json!({"action": "create", "name": format!("{batch}-{part}"), "type": "A", "ttl": 60, "records": ["192.0.2.1"]}))
                        .collect();
                    let sent = http
                        .post(format!("{api}/v1/zones/crash.test/changes"))
                        .bearer_auth(&token)
                        .json(&json!({"changes": changes}))
                        .send();
                    match sent {
                        Ok(response) if response.status().is_success() => acked.lock().unwrap().push(batch),
                        // The server is gone: this batch is not acknowledged.
                        _ => return,
                    }
                }
            });
        }
        // Let a few hundred batches through, then kill mid-stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        node.kill();
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 300, "only {} batches before the deadline", acked.len());

    node.relaunch();
    // Every RRset now stored, grouped by batch.
    let mut present: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in node.rrset_names("crash.test") {
        if let Some(label) = name.strip_suffix(".crash.test.") {
            let (batch, part) = label.rsplit_once('-').unwrap();
            present.entry(batch.to_string()).or_default().insert(part.to_string());
        }
    }
    for batch in &acked {
        assert!(present.contains_key(batch), "acknowledged batch {batch} was lost");
    }
    for (batch, parts) in &present {
        assert_eq!(parts.len(), PARTS.len(), "batch {batch} is only partly present: {parts:?}");
    }
    let (_, zone, _) = json(node.request(Method::GET, "/v1/zones/crash.test").send().unwrap());
    assert_eq!(zone["serial"].as_u64(), Some(first_serial + present.len() as u64), "serial does not count the batches");
    let last = acked.last().unwrap();
    assert_eq!(dns_lookup(node.dns, &format!("{last}-c.crash.test."), 1).1, ["192.0.2.1"]);
    println!("{}: {} acknowledged, {} present after SIGKILL", database.label(), acked.len(), present.len());
}

#[test]
fn sigkill_during_writes_on_sqlite() {
    kill_during_writes(Database::sqlite());
}

#[test]
fn sigkill_during_writes_on_postgres() {
    kill_during_writes(Database::postgres());
}
