//! The failover suite: three control nodes on the local PostgreSQL (each
//! through its own TCP relay, which the test can cut), two ferrodns
//! secondaries, writers and resolvers running the whole time, and faults:
//! 20 SIGKILLs of the leader, SIGSTOP past the lease, a cut between the
//! leader and PostgreSQL, and a rolling restart. Zones are created and
//! deleted throughout, so the catalog changes under every fault. Afterwards:
//! every acknowledged write is stored and served by both secondaries, no
//! batch is half-applied, no query failed, serials have no gaps, every node
//! serves one and the same catalog, and no NOTIFY or catalog write was made
//! under a term after a newer term began. Figures go to stdout and
//! docs/ha.md.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{axfr_lines, dns_lookup, json, Database, Node};
use support::relay::Relay;
use support::secondary::SecondaryNode;
use support::{free_port, send_signal};

const KEY: &str = "xfr:hmac-sha256:ZmFpbG92ZXItc3VpdGUta2V5LWZvci1mZXJyb2Rucy0zMg==";
const KILLS: usize = 20;
/// The test database, for the report when no leader comes.
static DB_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn ha_state(node: &Node) -> Option<Value> {
    let response = node.anonymous(Method::GET, "/v1/ha").timeout(Duration::from_millis(500)).send().ok()?;
    Some(json(response).1)
}

/// The index of the node that says it leads, and the term.
fn leader(nodes: &[Node], alive: &[bool]) -> Option<(usize, u64)> {
    nodes.iter().enumerate().filter(|(i, _)| alive[*i]).find_map(|(i, n)| {
        let state = ha_state(n)?;
        (state["role"] == "leader").then(|| (i, state["term"].as_u64().unwrap_or(0)))
    })
}

/// Waits for a leader with a term above `above`; returns who, the term and how long it took.
fn wait_new_leader(nodes: &[Node], alive: &[bool], above: u64, since: Instant) -> (usize, u64, Duration) {
    loop {
        if let Some((i, term)) = leader(nodes, alive) {
            if term > above {
                return (i, term, since.elapsed());
            }
        }
        if since.elapsed() >= Duration::from_secs(15) {
            let mut report = String::new();
            for (i, node) in nodes.iter().enumerate() {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                report += &format!(
                    "\n--- node{i} alive={} ha={:?}\n{}",
                    alive[i],
                    ha_state(node),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if let Some(db) = DB_NAME.get() {
                let sql = format!(
                    "SELECT a.pid, a.client_port, a.state, a.wait_event_type, a.wait_event, now() - a.xact_start AS xact_age, \
                     now() - a.query_start AS query_age, pg_blocking_pids(a.pid) AS blocked_by, left(a.query, 160) \
                     FROM pg_stat_activity a WHERE a.datname = '{db}' ORDER BY a.xact_start NULLS LAST"
                );
                let out = std::process::Command::new("psql")
                    .args(["-h", "127.0.0.1", "-d", "postgres", "-c", &sql])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                let locks = std::process::Command::new("psql")
                    .args(["-h", "127.0.0.1", "-d", "postgres", "-c", "SELECT l.pid, l.locktype, l.relation::regclass, l.mode, l.granted, l.page, l.tuple, l.transactionid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.datname IS NOT NULL AND l.locktype <> 'virtualxid' ORDER BY l.pid"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                report += &format!("\n--- PostgreSQL\n{out}\n{locks}");
            }
            panic!("no new leader after {:?}{report}", since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When node `new` says it became leader in `term`, after `since` (wall
/// clock): from its log, which the node writes as it takes the lease, so the
/// figure does not include how long the test's own polling of the API took
/// to notice (under CPU pressure the API threads, which run at a lower
/// priority, answer late). None if the line is not there.
fn lease_taken_after(node: &Node, term: u64, since: SystemTime) -> Option<Duration> {
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("became leader") && l.split_whitespace().any(|w| w == format!("term={term}")))?;
    let at = parse_log_time(line.split_whitespace().next()?)?;
    at.duration_since(since).ok()
}

/// A log line's `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamp.
fn parse_log_time(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let nanos = format!("{fraction:0<9}")[..9].parse::<u64>().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?) + Duration::from_nanos(nanos))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn failover_suite() {
    let database = Database::postgres();
    let Database::Postgres { name: db_name, .. } = &database else { unreachable!() };
    let _ = DB_NAME.set(db_name.clone());
    let secondary_ports = [free_port(), free_port()];
    let relays: Vec<Relay> = (0..3).map(|_| Relay::start()).collect();
    let mut nodes: Vec<Node> = Vec::new();
    for (i, relay) in relays.iter().enumerate() {
        let url = relay.url(db_name);
        let node_id = format!("node{i}");
        let notify: Vec<String> = secondary_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let args = [
            "--log-level",
            "info,ferrodns_control::election=debug",
            "--node-id",
            &node_id,
            "--tsig-key",
            KEY,
            "--notify",
            &notify[0],
            "--notify",
            &notify[1],
        ];
        nodes.push(Node::start_with_url(&url, &args));
    }
    let token = nodes[0].token.clone();
    for node in &mut nodes {
        node.token = token.clone();
    }
    let mut alive = vec![true; 3];
    assert_eq!(
        json(nodes[0].request(Method::POST, "/v1/zones").json(&json!({"name": "fo.test"})).send().unwrap()).0,
        201
    );
    let body = json!({"ttl": 60, "records": ["192.0.2.1"]});
    assert_eq!(
        json(nodes[0].request(Method::PUT, "/v1/zones/fo.test/rrsets/www/A").json(&body).send().unwrap()).0,
        200
    );
    let primaries: Vec<SocketAddr> = nodes.iter().map(|n| n.dns).collect();
    let secondaries: Vec<SecondaryNode> =
        secondary_ports.iter().map(|p| SecondaryNode::start(*p, &primaries, &["--tsig-key", KEY])).collect();
    let secondary_addrs: Vec<SocketAddr> =
        secondary_ports.iter().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))).collect();
    for addr in &secondary_addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::panic::catch_unwind(|| dns_lookup(*addr, "www.fo.test.", 1).1 == ["192.0.2.1"]).ok() != Some(true) {
            assert!(Instant::now() < deadline, "secondary {addr} never got the zone");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Load for the whole run: writers, and resolvers asking the secondaries.
    let stop = Arc::new(AtomicBool::new(false));
    let apis: Vec<String> = nodes.iter().map(|n| n.api.clone()).collect();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for writer in 0..3 {
        let (stop, apis, acked, failed, attempted, token) =
            (stop.clone(), apis.clone(), acked.clone(), failed.clone(), attempted.clone(), token.clone());
        workers.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch = format!("w{writer}-{i}");
                let changes: Vec<_> = ["a", "b"]
                    .iter()
                    .map(|part| json!({"action": "create", "name": format!("{batch}-{part}"), "type": "A", "ttl": 60, "records": ["192.0.2.7"]}))
                    .collect();
                attempted.fetch_add(1, Ordering::Relaxed);
                let api = &apis[(writer + i) % apis.len()];
                let sent = http
                    .post(format!("{api}/v1/zones/fo.test/changes"))
                    .bearer_auth(&token)
                    .json(&json!({"changes": changes}))
                    .send();
                match sent {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(batch),
                    _ => failed.lock().unwrap().push(batch),
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    // Zone churn: create zones and delete every other one, through any node.
    // Outcomes that are not clear (no answer) are left out of the checks.
    let kept: Arc<Mutex<Vec<String>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (stop, apis, token, kept, deleted) =
            (stop.clone(), apis.clone(), token.clone(), kept.clone(), deleted.clone());
        workers.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let zone = format!("churn{i}.test.");
                let api = &apis[i % apis.len()];
                let created =
                    http.post(format!("{api}/v1/zones")).bearer_auth(&token).json(&json!({"name": zone})).send();
                if matches!(&created, Ok(r) if r.status() == 201) {
                    if i % 2 == 0 {
                        kept.lock().unwrap().push(zone);
                    } else {
                        std::thread::sleep(Duration::from_millis(100));
                        let api = &apis[(i + 1) % apis.len()];
                        let gone = http.delete(format!("{api}/v1/zones/{zone}")).bearer_auth(&token).send();
                        if matches!(&gone, Ok(r) if r.status() == 204) {
                            deleted.lock().unwrap().push(zone);
                        }
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
    }
    let queries = Arc::new(AtomicUsize::new(0));
    let query_failures: Arc<Mutex<Vec<String>>> = Arc::default();
    for addr in secondary_addrs.clone() {
        let (stop, queries, query_failures) = (stop.clone(), queries.clone(), query_failures.clone());
        workers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                queries.fetch_add(1, Ordering::Relaxed);
                match std::panic::catch_unwind(|| dns_lookup(addr, "www.fo.test.", 1)) {
                    Ok((rcode, data)) if rcode == "NoError" && data == ["192.0.2.1"] => {}
                    other => query_failures.lock().unwrap().push(format!("{addr}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }

    // Fault 1: SIGKILL the leader, KILLS times.
    // Failovers as the new leaders' logs date them, and as the test's
    // polling of the API saw them.
    let mut failovers = Vec::new();
    let mut seen_failovers = Vec::new();
    let mut slow_failovers: Vec<String> = Vec::new();
    let (_, mut term) = {
        let since = Instant::now();
        let (i, t, _) = wait_new_leader(&nodes, &alive, 0, since);
        (i, t)
    };
    for _ in 0..KILLS {
        let (victim, current) = leader(&nodes, &alive).unwrap_or_else(|| {
            let (i, t, _) = wait_new_leader(&nodes, &alive, 0, Instant::now());
            (i, t)
        });
        term = term.max(current);
        let killed_at = SystemTime::now();
        nodes[victim].kill();
        alive[victim] = false;
        let killed = Instant::now();
        let (new_leader, new_term, seen) = wait_new_leader(&nodes, &alive, term, killed);
        let took = lease_taken_after(&nodes[new_leader], new_term, killed_at).unwrap_or(seen);
        if took > Duration::from_millis(2500) {
            // Keep the election's lines of the slow ones, for the report.
            let lines: Vec<String> = nodes
                .iter()
                .enumerate()
                .flat_map(|(i, node)| {
                    node.log()
                        .lines()
                        .filter(|l| l.contains("ferrodns_control::election"))
                        .filter(|l| {
                            let at = l.split_whitespace().next().and_then(parse_log_time);
                            at.is_some_and(|at| at + Duration::from_secs(3) >= killed_at && at <= killed_at + took)
                        })
                        .map(|l| format!("node{i}: {l}"))
                        .collect::<Vec<_>>()
                })
                .collect();
            slow_failovers.push(format!("failover of {took:?} to node{new_leader}:\n{}", lines.join("\n")));
        }
        failovers.push(took);
        seen_failovers.push(seen);
        term = new_term;
        nodes[victim].relaunch();
        alive[victim] = true;
    }

    // Fault 2: SIGSTOP the leader past its lease, then SIGCONT.
    let (victim, current) = leader(&nodes, &alive).unwrap();
    let pid = nodes[victim].pid().unwrap();
    let stopped_at = SystemTime::now();
    send_signal(pid, 19);
    alive[victim] = false;
    let stopped = Instant::now();
    let (new_leader, new_term, seen) = wait_new_leader(&nodes, &alive, current.max(term), stopped);
    let took_stop = lease_taken_after(&nodes[new_leader], new_term, stopped_at).unwrap_or(seen);
    term = new_term;
    std::thread::sleep(Duration::from_millis(3000u64.saturating_sub(stopped.elapsed().as_millis() as u64)));
    send_signal(pid, 18);
    alive[victim] = true;
    std::thread::sleep(Duration::from_millis(1500));

    // Fault 3: cut the leader off from PostgreSQL, then restore.
    let (victim, current) = leader(&nodes, &alive).unwrap();
    let cut_at = SystemTime::now();
    relays[victim].cut();
    let cut = Instant::now();
    let others: Vec<bool> = (0..3).map(|i| i != victim).collect();
    let (new_leader, new_term, seen) = wait_new_leader(&nodes, &others, current.max(term), cut);
    let took_cut = lease_taken_after(&nodes[new_leader], new_term, cut_at).unwrap_or(seen);
    term = new_term;
    relays[victim].restore();
    std::thread::sleep(Duration::from_millis(1500));

    // Fault 4: a rolling restart.
    for node in nodes.iter_mut() {
        node.restart();
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = wait_new_leader(&nodes, &alive, 0, Instant::now());

    // Stop the load and let everything settle.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();

    // Every acknowledged batch is stored whole; none is half-applied.
    let api = &nodes[0];
    let mut present: BTreeMap<String, usize> = BTreeMap::new();
    for name in api.rrset_names("fo.test") {
        if let Some((batch, _)) = name.strip_suffix(".fo.test.").and_then(|l| l.rsplit_once('-')) {
            *present.entry(batch.to_string()).or_default() += 1;
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|b| present.get(*b) != Some(&2)).collect();
    assert!(lost.is_empty(), "acknowledged batches lost or partial: {lost:?}");
    let half: Vec<(&String, &usize)> = present.iter().filter(|(_, n)| **n != 2).collect();
    assert!(half.is_empty(), "half-applied batches: {half:?}");

    // Serials have no gaps: the zone's serial counts its changes.
    let (_, zone, _) = json(api.request(Method::GET, "/v1/zones/fo.test").send().unwrap());
    let serial = zone["serial"].as_u64().unwrap();
    assert_eq!(serial, 2 + present.len() as u64, "serial {serial} for {} batches plus creation and www", present.len());

    // Both secondaries serve every acknowledged write.
    for addr in &secondary_addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let soa = dns_lookup(*addr, "fo.test.", 6).1;
            if soa.first().and_then(|s| s.split(' ').nth(2)).and_then(|s| s.parse::<u64>().ok()) == Some(serial) {
                break;
            }
            assert!(Instant::now() < deadline, "secondary {addr} stuck at {soa:?}, want serial {serial}");
            std::thread::sleep(Duration::from_millis(100));
        }
        for batch in &acked {
            assert_eq!(dns_lookup(*addr, &format!("{batch}-b.fo.test."), 1).0, "NoError", "{addr} lacks {batch}");
        }
    }

    // Every node serves one catalog, listing the kept zones and none of the
    // deleted ones, and both secondaries follow it.
    let kept = kept.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let catalogs = loop {
        let catalogs: Vec<Vec<String>> =
            nodes.iter().map(|n| axfr_lines(n.dns, "catalog.ferrodns.invalid.", Some(KEY))).collect();
        let first = &catalogs[0];
        let lists = |zone: &String| first.iter().any(|l| l.ends_with(&format!(" PTR {zone}")));
        if catalogs.iter().all(|c| c == first) && kept.iter().all(lists) && !deleted.iter().any(lists) {
            break catalogs;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' catalogs differ or are wrong: {:?}",
            catalogs.iter().map(|c| c.len()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for addr in &secondary_addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        for zone in &kept {
            while dns_lookup(*addr, zone, 6).0 != "NoError" {
                assert!(Instant::now() < deadline, "secondary {addr} does not serve {zone}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for zone in &deleted {
            while dns_lookup(*addr, zone, 6).0 == "NoError" {
                assert!(Instant::now() < deadline, "secondary {addr} still serves the deleted {zone}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    println!(
        "catalog: {} zones kept and {} deleted under load; {} records, the same on all three nodes",
        kept.len(),
        deleted.len(),
        catalogs[0].len()
    );

    // No query to the secondaries failed.
    let query_failures = query_failures.lock().unwrap().clone();
    if !query_failures.is_empty() {
        // What the secondaries did with their zones, for the report.
        for secondary in &secondaries {
            let log = secondary.log();
            let lines: Vec<&str> =
                log.lines().filter(|l| l.contains("fo.test") || l.contains("catalog") || l.contains("WARN")).collect();
            println!("secondary {}:\n{}", secondary.dns, lines.join("\n"));
        }
    }
    assert!(
        query_failures.is_empty(),
        "{} failed queries: {:?}",
        query_failures.len(),
        &query_failures[..query_failures.len().min(5)]
    );

    // No NOTIFY or catalog write was made under a term after a newer term began.
    let mut events: Vec<(String, &'static str, u64, usize)> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for stripped in node.log().lines() {
            let Some(term) = stripped
                .split("term=")
                .nth(1)
                .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|t| t.parse().ok())
            else {
                continue;
            };
            let at = stripped.split_whitespace().next().unwrap_or("").to_string();
            if stripped.contains("became leader") {
                events.push((at, "lead", term, index));
            } else if stripped.contains("NOTIFY sent") {
                events.push((at, "notify", term, index));
            } else if stripped.contains("catalog written") {
                events.push((at, "catalog", term, index));
            }
        }
    }
    events.sort();
    let notifies = events.iter().filter(|e| e.1 == "notify").count();
    let leads = events.iter().filter(|e| e.1 == "lead").count();
    let catalog_writes = events.iter().filter(|e| e.1 == "catalog").count();
    assert!(
        notifies > 0 && leads > KILLS && catalog_writes > 0,
        "the logs hold {notifies} NOTIFYs, {catalog_writes} catalog writes and {leads} elections"
    );
    println!(
        "term check: {notifies} NOTIFYs, {catalog_writes} catalog writes and {leads} elections in the logs, none under a superseded term"
    );
    let mut newest = 0;
    for (i, (at, kind, term, node)) in events.iter().enumerate() {
        if *kind == "lead" {
            newest = newest.max(*term);
        } else {
            let context: Vec<_> = events[i.saturating_sub(6)..(i + 2).min(events.len())].to_vec();
            assert!(
                *term >= newest,
                "{kind} from node{node} under term {term} at {at}, after term {newest} began: {context:?}"
            );
        }
    }

    failovers.sort();
    seen_failovers.sort();
    println!(
        "failover after SIGKILL x{}: p50 {:?}, max {:?}; after SIGSTOP {:?}; after a cut from PostgreSQL {:?} \
         (the new leader's log); the test's API polling saw the SIGKILL ones after p50 {:?}, max {:?}",
        failovers.len(),
        percentile(&failovers, 50),
        failovers.last().unwrap(),
        took_stop,
        took_cut,
        percentile(&seen_failovers, 50),
        seen_failovers.last().unwrap(),
    );
    println!(
        "writes: {} attempted, {} acknowledged, {} failed, 0 lost; DNS queries: {} sent, 0 failed; final term {term}, serial {serial}",
        attempted.load(Ordering::Relaxed),
        acked.len(),
        failed.len(),
        queries.load(Ordering::Relaxed)
    );
    assert!(
        *failovers.last().unwrap() < Duration::from_secs(3),
        "{failovers:?} (seen {seen_failovers:?})\n{}",
        slow_failovers.join("\n")
    );
    drop(secondaries);
}
