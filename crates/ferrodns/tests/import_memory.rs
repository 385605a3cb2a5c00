//! An import's memory follows the size of its file (issue 14, item 9: a
//! 30 MB import peaked at 660 MB). The server's peak RSS (`VmHWM`) through
//! an import, above its RSS before, must stay within a few times the file:
//! a new zone, then a changed file replacing it (the zone's own records are
//! then read and compared too). Reading such a change back through the API
//! lists only its first records.

mod support;

use std::time::Instant;

use reqwest::blocking::Client;
use reqwest::Method;
use support::control::{json, Database, Node};

/// Records of the authbench shape (names with A, some AAAA, CNAME, TXT, MX).
const HOSTS: usize = 200_000;
/// The most an import may add to the server's peak RSS, in multiples of its
/// file. The served zone's new version and its build are part of the rise, so
/// it cannot be near one: on a debug build this file's imports rise by 13.4
/// and 8.4 times, where packing nothing (commit 19c4f68) rose by 27 times.
const FACTOR: u64 = 18;

fn zone_text(tag: &str) -> String {
    let mut text = String::from("$ORIGIN bulk.test.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n");
    text.push_str("@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n");
    for i in 0..HOSTS {
        text.push_str(&format!("h{i} A 10.{}.{}.{}\n", (i >> 16) & 255, (i >> 8) & 255, i & 255));
        if i % 4 == 0 {
            text.push_str(&format!("h{i} AAAA 2001:db8::{:x}:{:x}\n", i >> 16, i & 0xffff));
        }
        if i % 10 == 0 {
            text.push_str(&format!("c{i} CNAME h{}\n", (i * 7919) % HOSTS));
        }
        if i % 20 == 0 {
            text.push_str(&format!("h{i} TXT \"record {i} of the {tag} file\"\nh{i} MX 10 mail\n"));
        }
    }
    text
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Imports `text` and returns how far the peak RSS rose above the RSS
/// before, in KiB, and the change's id.
fn import(node: &Node, http: &Client, text: String) -> (u64, i64) {
    let pid = node.pid().expect("running");
    // Resets the peak (proc(5), clear_refs: 5).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status_kib(pid, "VmRSS:");
    let started = Instant::now();
    let response = http
        .request(Method::POST, format!("{}/v1/zones/bulk.test./import?mode=replace", node.api))
        .bearer_auth(&node.token)
        .header("content-type", "text/dns")
        .body(text)
        .send()
        .unwrap();
    let (status, body, _) = json(response);
    assert_eq!(status, 200, "{body}");
    let peak = status_kib(pid, "VmHWM:");
    println!(
        "import took {:?}; peak RSS {} KiB above the {before} KiB before, {} KiB after",
        started.elapsed(),
        peak - before,
        status_kib(pid, "VmRSS:")
    );
    (peak.saturating_sub(before), body["id"].as_i64().unwrap())
}

#[test]
fn an_import_holds_a_few_times_its_file() {
    let database = Database::sqlite();
    let node = Node::start(&database, &["--allow-transfer", "127.0.0.1/32"]);
    node.create_zone("bulk.test.");
    let (_, created, _) = json(node.request(Method::GET, "/v1/zones/bulk.test.").send().unwrap());
    let created_serial = created["serial"].as_u64().unwrap();
    let http = Client::builder().timeout(std::time::Duration::from_secs(600)).build().unwrap();

    let first = zone_text("first");
    let file_kib = first.len() as u64 / 1024;
    let (grew, id) = import(&node, &http, first);
    assert!(grew < FACTOR * file_kib, "a {file_kib} KiB import into a new zone raised the peak RSS by {grew} KiB");

    // Reading the change back lists its first 10,000 records, not all 290,000.
    let (status, change, _) =
        json(node.request(Method::GET, &format!("/v1/zones/bulk.test/changes/{id}")).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(change["added"].as_array().unwrap().len(), 10_000);
    assert!(change["removed"][0].as_str().unwrap().contains(" SOA "), "{}", change["removed"]);
    assert_eq!(change["truncated"], true);

    // Secondaries still at the serial before the import ask for IXFR, eight
    // at once: the steps hold more records than the zone, so each gets the
    // whole zone (RFC 1995 §4), decided from the journal's record counts
    // without reading the import's entry.
    let secondaries: Vec<_> = (0..8)
        .map(|_| {
            let (ip, port) = (node.dns.ip().to_string(), node.dns.port().to_string());
            std::thread::spawn(move || {
                let output = std::process::Command::new("kdig")
                    .args([
                        &format!("@{ip}"),
                        "-p",
                        &port,
                        "+timeout=120",
                        "bulk.test.",
                        &format!("IXFR={created_serial}"),
                    ])
                    .output()
                    .expect("kdig (knot-dnsutils)");
                let text = String::from_utf8_lossy(&output.stdout).to_string();
                let count = text.lines().filter(|l| l.split_whitespace().nth(3) == Some("A")).count();
                (count, text.chars().take(600).collect::<String>() + &String::from_utf8_lossy(&output.stderr))
            })
        })
        .collect();
    for secondary in secondaries {
        let (count, text) = secondary.join().unwrap();
        assert_eq!(count, HOSTS + 2, "every A record, AXFR-style:\n{text}");
    }

    // Every TXT record changes: the zone's records are read and compared.
    let second = zone_text("second");
    let (grew, _) = import(&node, &http, second);
    assert!(grew < FACTOR * file_kib, "a {file_kib} KiB import replacing a zone raised the peak RSS by {grew} KiB");
    let (status, zone, _) = json(node.request(Method::GET, "/v1/zones/bulk.test.").send().unwrap());
    assert_eq!(status, 200);
    println!("{zone}");
}
