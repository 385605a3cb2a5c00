//! Start-up with many stored zones: DNS listens before the stored zones are
//! loaded and answers those loaded so far while the rest load; every zone
//! answers once the load is over.

mod support;

use std::time::{Duration, Instant};

use support::control::{dns_lookup, Database, Node};

/// Stores `count` zones `pN.start.test` (SOA and NS each) behind a stopped
/// node's back, as a database restored from a backup would hold them.
fn store_zones(node: &Node, count: usize) {
    let path = node.data_dir.join("ferrodns.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let statements = [
            format!(
                "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {last})
                 INSERT INTO zones (name, tenant, kind, serial, version, rrset_count, catalog_id, created_at, updated_at)
                 SELECT 'p' || i || '.start.test.', 'system', 'primary', 1, 1, 2, printf('%032x', i), 0, 0 FROM seq",
                last = count - 1
            ),
            // Each RDATA as stored: its length, then its wire form. The SOA is
            // ns.invalid. hostmaster.invalid. 1 3600 600 604800 300.
            "INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata)
             SELECT id, name, 6, 3600, X'0034026e7307696e76616c6964000a686f73746d617374657207696e76616c6964000000000100000e100000025800093a800000012c'
             FROM zones WHERE name LIKE '%.start.test.'"
                .to_string(),
            "INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata)
             SELECT id, name, 2, 3600, X'000c026e7307696e76616c696400' FROM zones WHERE name LIKE '%.start.test.'"
                .to_string(),
        ];
        for statement in &statements {
            sqlx::query(statement).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    });
}

#[test]
fn dns_answers_the_zones_loaded_so_far_while_the_rest_load() {
    const ZONES: usize = 50_000;
    let database = Database::sqlite();
    let mut node = Node::start(&database, &[]);
    node.stop();
    store_zones(&node, ZONES);
    let before = node.log().len();
    let (dns, log_path) = (node.dns, node.data_dir.join("server.log"));
    // Asks for the first stored zone from the moment the node is started
    // until it answers, then notes whether the load had finished by then.
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let launched = log.get(before..).is_some_and(|l| l.contains("serving DNS"));
            if launched && dns_lookup(dns, "p0.start.test.", 6).0 == "NoError" {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return log[before..].contains("stored zones loaded");
            }
            assert!(Instant::now() < deadline, "p0.start.test. never answered");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    node.relaunch();
    let loaded_when_first_answered = watcher.join().unwrap();
    let log = node.log()[before..].to_string();
    let serving = log.find("serving DNS").expect("DNS started");
    let loaded = log.find("stored zones loaded").expect("the zones loaded");
    assert!(serving < loaded, "DNS started only once every stored zone was loaded:\n{log}");
    assert!(log.contains(&format!("zones={ZONES}")), "{log}");
    assert!(!loaded_when_first_answered, "the first zone answered only once all {ZONES} were loaded:\n{log}");
    let last = format!("p{}.start.test.", ZONES - 1);
    assert_eq!(dns_lookup(node.dns, &last, 2), ("NoError".to_string(), vec!["ns.invalid.".to_string()]));
}
