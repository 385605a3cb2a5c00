//! Replication with real peers from Debian: Knot 3.2 and BIND 9.18 as
//! secondaries of a ferrodns primary, over TSIG, fed by NOTIFY. A zone made
//! through the API reaches both by AXFR; a change reaches both by IXFR, and
//! the primary's log shows that the transfers were incremental.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};
use support::free_port;

const SECRET: &str = "ZmVycm9kbnMtaW50ZXJvcC10ZXN0LXNlY3JldC1rZXktMzI=";

/// A peer server process in its own directory.
struct Peer {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Peer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrodns-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn(name: &'static str, port: u16, dir: PathBuf, command: &mut Command) -> Peer {
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = command.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap();
    Peer { name, port, dir, child }
}

fn binary(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed; .ci/run installs it"))
}

/// Knot as a secondary of `primary` that consumes its catalog zone.
fn knot_secondary(port: u16, primary: u16, catalog: &str) -> Peer {
    let dir = dir("knot");
    let config = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{d}\"\n\
         log:\n  - target: stderr\n    any: info\n\
         key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         remote:\n  - id: primary\n    address: 127.0.0.1@{primary}\n    key: xfr\n\
         acl:\n  - id: notify\n    address: 127.0.0.1\n    key: xfr\n    action: notify\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: changes\n\
         \x20 - id: member\n    storage: \"{d}\"\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: changes\n    master: primary\n    acl: notify\n\
         zone:\n  - domain: {catalog}\n    master: primary\n    acl: notify\n    catalog-role: interpret\n    catalog-template: member\n",
        d = dir.display()
    );
    std::fs::write(dir.join("knot.conf"), config).unwrap();
    let mut command = Command::new(binary("knotd"));
    command.arg("-c").arg(dir.join("knot.conf"));
    spawn("knot", port, dir, &mut command)
}

/// BIND as a secondary of `primary` that consumes its catalog zone.
fn bind_secondary(port: u16, primary: u16, catalog: &str) -> Peer {
    let dir = dir("bind");
    let config = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n\
         recursion no;\n  notify no;\n  dnssec-validation no;\n  allow-new-zones yes;\n\
         catalog-zones {{ zone \"{catalog}\" default-primaries {{ 127.0.0.1 port {primary} key xfr; }}; }};\n}};\n\
         controls {{ }};\n\
         key \"xfr\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         logging {{ channel out {{ stderr; severity info; print-time yes; }}; category default {{ out; }}; category xfer-in {{ out; }}; category notify {{ out; }}; }};\n\
         zone \"{catalog}\" {{\n  type secondary;\n  primaries {{ 127.0.0.1 port {primary} key xfr; }};\n  file \"catalog.db\";\n  allow-notify {{ key xfr; }};\n}};\n",
        d = dir.display()
    );
    std::fs::write(dir.join("named.conf"), config).unwrap();
    let mut command = Command::new(binary("named"));
    command.arg("-g").arg("-n").arg("1").arg("-c").arg(dir.join("named.conf"));
    spawn("bind", port, dir, &mut command)
}

/// Waits until `peer` answers `name` A with `address`.
fn wait_for(peer: &Peer, name: &str, address: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let answer = std::panic::catch_unwind(|| dns_lookup(peer.addr(), name, 1));
        if let Ok((_, data)) = answer {
            if data.iter().any(|d| d == address) {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < timeout, "{} does not serve {name} A {address}:\n{}", peer.name, peer.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `peer` answers `name` SOA with REFUSED or NOTAUTH: the zone is gone.
fn wait_gone(peer: &Peer, name: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let answer = std::panic::catch_unwind(|| dns_lookup(peer.addr(), name, 6));
        if let Ok((rcode, _)) = answer {
            if rcode == "Refused" || rcode == "NotAuth" {
                return;
            }
        }
        assert!(started.elapsed() < timeout, "{} still serves {name}:\n{}", peer.name, peer.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn knot_and_bind_follow_a_ferrodns_primary_through_its_catalog() {
    let database = Database::sqlite();
    let (knot_port, bind_port) = (free_port(), free_port());
    let key = format!("xfr:hmac-sha256:{SECRET}");
    let catalog = "catalog.ferrodns.invalid.";
    let node = Node::start(
        &database,
        &[
            "--tsig-key",
            &key,
            "--notify",
            &format!("127.0.0.1:{knot_port}"),
            "--notify",
            &format!("127.0.0.1:{bind_port}"),
        ],
    );
    let primary = node.dns.port();
    let knot = knot_secondary(knot_port, primary, catalog);
    let bind = bind_secondary(bind_port, primary, catalog);

    // A forward zone rides in the catalog under `ext`, which both ignore
    // (RFC 9432 §4.4) while they go on following its members.
    let forward = json!({"name": "corp.example", "kind": "forward", "forwarders": ["192.0.2.53", "tls://192.0.2.54#dns.example"]});
    assert_eq!(json(node.request(Method::POST, "/v1/zones").json(&forward).send().unwrap()).0, 201);

    // A zone made through the API reaches both through the catalog. It is
    // big enough that a one-record change is smaller than the zone.
    let (status, _, _) =
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "replica.test"})).send().unwrap());
    assert_eq!(status, 201);
    let mut changes: Vec<_> = (0..20)
        .map(|i| json!({"action": "create", "name": format!("host{i}"), "type": "A", "ttl": 300, "records": [format!("192.0.2.{i}")]}))
        .collect();
    changes.push(json!({"action": "create", "name": "www", "type": "A", "ttl": 300, "records": ["198.51.100.1"]}));
    let (status, body, _) = json(
        node.request(Method::POST, "/v1/zones/replica.test/changes").json(&json!({"changes": changes})).send().unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    for peer in [&knot, &bind] {
        let took = wait_for(peer, "www.replica.test.", "198.51.100.1", Duration::from_secs(30));
        println!("{} serves the new zone after {took:?}", peer.name);
    }

    // A change: NOTIFY, then IXFR, on both.
    let body = json!({"ttl": 300, "records": ["198.51.100.2"]});
    let (status, _, _) =
        json(node.request(Method::PUT, "/v1/zones/replica.test/rrsets/www/A").json(&body).send().unwrap());
    assert_eq!(status, 200);
    for peer in [&knot, &bind] {
        let took = wait_for(peer, "www.replica.test.", "198.51.100.2", Duration::from_secs(10));
        println!("{} served the change {took:?} after the API answered", peer.name);
    }
    let log = node.log();
    let incremental = log
        .lines()
        .filter(|l| l.contains("IXFR served") && l.contains("replica.test.") && l.contains("incremental"))
        .count();
    assert!(incremental >= 2, "expected an incremental IXFR to each secondary:\n{log}");
    assert!(!log.contains("transfer refused"), "{log}");

    // The primary knows both secondaries hold the change, and says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, secondaries, _) = json(node.request(Method::GET, "/v1/zones/replica.test/secondaries").send().unwrap());
        let (_, history, _) = json(node.request(Method::GET, "/v1/zones/replica.test/changes?limit=1").send().unwrap());
        let all =
            secondaries.as_array().unwrap().iter().filter(|s| s["configured"] == true).all(|s| s["insync"] == true);
        if all && history["items"][0]["status"] == "insync" {
            println!("secondaries: {secondaries}");
            break;
        }
        assert!(Instant::now() < deadline, "not in sync: {secondaries} {history}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deleting the zone removes it from the catalog, and both drop it.
    assert_eq!(json(node.request(Method::DELETE, "/v1/zones/replica.test").send().unwrap()).0, 204);
    for peer in [&knot, &bind] {
        wait_gone(peer, "replica.test.", Duration::from_secs(30));
    }
}

/// A zone file for a BIND or Knot primary.
fn primary_zone(dir: &Path, zone: &str) -> PathBuf {
    let path = dir.join(format!("{zone}zone"));
    let mut text = format!(
        "$ORIGIN {zone}\n$TTL 300\n@ SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 300\n@ NS ns.{zone}\nns A 192.0.2.53\n"
    );
    for i in 0..20 {
        text.push_str(&format!("host{i} A 192.0.2.{i}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Knot as a primary for `zone`, notifying `secondary`, taking signed updates.
fn knot_primary(port: u16, secondary: u16, zone: &str) -> Peer {
    let dir = dir("knot-primary");
    let file = primary_zone(&dir, zone);
    let config = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{d}\"\n\
         log:\n  - target: stderr\n    any: info\n\
         key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         remote:\n  - id: secondary\n    address: 127.0.0.1@{secondary}\n    key: xfr\n\
         acl:\n  - id: peers\n    address: 127.0.0.1\n    key: xfr\n    action: [transfer, update]\n\
         zone:\n  - domain: {zone}\n    file: \"{f}\"\n    storage: \"{d}\"\n    notify: secondary\n    acl: peers\n    zonefile-sync: -1\n    journal-content: changes\n",
        d = dir.display(),
        f = file.display()
    );
    std::fs::write(dir.join("knot.conf"), config).unwrap();
    let mut command = Command::new(binary("knotd"));
    command.arg("-c").arg(dir.join("knot.conf"));
    spawn("knot", port, dir, &mut command)
}

/// BIND as a primary for `zone`, notifying `secondary`, taking signed updates.
fn bind_primary(port: u16, secondary: u16, zone: &str) -> Peer {
    let dir = dir("bind-primary");
    primary_zone(&dir, zone);
    let config = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n\
         recursion no;\n  dnssec-validation no;\n  notify explicit;\n  also-notify {{ 127.0.0.1 port {secondary} key xfr; }};\n}};\n\
         controls {{ }};\n\
         key \"xfr\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         logging {{ channel out {{ stderr; severity info; print-time yes; }}; category default {{ out; }}; category xfer-out {{ out; }}; category notify {{ out; }}; }};\n\
         zone \"{zone}\" {{\n  type primary;\n  file \"{zone}zone\";\n  allow-transfer {{ key xfr; }};\n  allow-update {{ key xfr; }};\n}};\n",
        d = dir.display()
    );
    std::fs::write(dir.join("named.conf"), config).unwrap();
    let mut command = Command::new(binary("named"));
    command.arg("-g").arg("-n").arg("1").arg("-c").arg(dir.join("named.conf"));
    spawn("bind", port, dir, &mut command)
}

/// Sends a signed RFC 2136 update with nsupdate.
fn update(primary: &Peer, zone: &str, line: &str) {
    let script = format!("server 127.0.0.1 {}\nzone {zone}\nupdate {line}\nsend\n", primary.port);
    let mut child = Command::new("nsupdate")
        .arg("-y")
        .arg(format!("hmac-sha256:xfr:{SECRET}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsupdate (bind9-dnsutils)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "nsupdate failed: {}\n{}", String::from_utf8_lossy(&output.stderr), primary.log());
}

/// A ferrodns secondary of `primary` for `zone`, with the TSIG key.
fn ferrodns_secondary(port: u16, primary: u16, zone: &str) -> Peer {
    let dir = dir(&format!("ferrodns-secondary-{port}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrodns"));
    command.args([
        "serve",
        "--role",
        "secondary",
        "--primary",
        &format!("127.0.0.1:{primary}"),
        "--secondary-zone",
        zone,
        "--catalog-zone",
        "off",
        "--dns-listen",
        &format!("127.0.0.1:{port}"),
        "--udp-workers",
        "1",
        "--tsig-key",
        &format!("xfr:hmac-sha256:{SECRET}"),
        "--data-dir",
    ]);
    command.arg(&dir);
    spawn("ferrodns", port, dir, &mut command)
}

fn follow_a_foreign_primary(kind: &str) {
    let zone = format!("{kind}zone.test.");
    let (primary_port, secondary_port) = (free_port(), free_port());
    let primary = match kind {
        "knot" => knot_primary(primary_port, secondary_port, &zone),
        _ => bind_primary(primary_port, secondary_port, &zone),
    };
    let secondary = ferrodns_secondary(secondary_port, primary_port, &zone);
    wait_for(&secondary, &format!("host7.{zone}"), "192.0.2.7", Duration::from_secs(20));
    assert!(
        secondary.log().lines().any(|l| l.contains("zone transferred") && l.contains("AXFR")),
        "{}",
        secondary.log()
    );

    update(&primary, &zone, &format!("add new.{zone} 300 A 198.51.100.77"));
    let took = wait_for(&secondary, &format!("new.{zone}"), "198.51.100.77", Duration::from_secs(15));
    println!("{kind} primary: the update reached ferrodns in {took:?}");
    let incremental = secondary
        .log()
        .lines()
        .any(|l| l.contains("zone transferred") && l.contains("IXFR") && !l.contains("whole zone"));
    assert!(incremental, "the change did not arrive by incremental IXFR:\n{}\n{}", secondary.log(), primary.log());
    assert_eq!(dns_lookup(secondary.addr(), &format!("host7.{zone}"), 1).1, ["192.0.2.7"]);
}

#[test]
fn ferrodns_follows_a_knot_primary_with_tsig() {
    follow_a_foreign_primary("knot");
}

#[test]
fn ferrodns_follows_a_bind_primary_with_tsig() {
    follow_a_foreign_primary("bind");
}

/// Waits until `server` answers `name` A with `address`.
fn wait_for_at(server: std::net::SocketAddr, name: &str, address: &str, timeout: Duration, log: impl Fn() -> String) {
    let started = Instant::now();
    loop {
        let answer = std::panic::catch_unwind(|| dns_lookup(server, name, 1));
        if answer.is_ok_and(|(_, data)| data.iter().any(|d| d == address)) {
            return;
        }
        assert!(started.elapsed() < timeout, "{server} does not serve {name} A {address}:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Migrating a zone from BIND is API calls: the zone made as a secondary
/// of the BIND primary (a first AXFR, at BIND's serial), kept current by
/// BIND's NOTIFY, refused record writes while it follows, then made a
/// primary that keeps its data and serial and takes writes.
#[test]
fn a_zone_migrates_from_a_bind_primary_through_the_api() {
    let node = Node::start(&Database::sqlite(), &["--tsig-key", &format!("xfr:hmac-sha256:{SECRET}")]);
    let zone = "migrate.test.";
    let bind_port = free_port();
    let bind = bind_primary(bind_port, node.dns.port(), zone);
    wait_for(&bind, &format!("host7.{zone}"), "192.0.2.7", Duration::from_secs(20));

    // No primary that answers: nothing is made, and the answer says why.
    let dead = json!({"name": zone, "kind": "secondary", "primaries": ["127.0.0.1:1"]});
    let (status, problem, _) = json(node.request(Method::POST, "/v1/zones").json(&dead).send().unwrap());
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("cannot transfer"), "{problem}");
    let none = json!({"name": zone, "kind": "secondary"});
    assert_eq!(json(node.request(Method::POST, "/v1/zones").json(&none).send().unwrap()).0, 422);

    let body = json!({"name": zone, "kind": "secondary", "primaries": [format!("127.0.0.1:{bind_port}")]});
    let (status, created, _) = json(node.request(Method::POST, "/v1/zones").json(&body).send().unwrap());
    assert_eq!(status, 201, "{created}\n{}", node.log());
    assert_eq!((created["kind"].as_str(), created["serial"].as_u64()), (Some("secondary"), Some(1)), "{created}");
    assert_eq!(created["primaries"], json!([format!("127.0.0.1:{bind_port}")]));
    assert_eq!(dns_lookup(node.dns, &format!("host7.{zone}"), 1).1, ["192.0.2.7"]);
    let key = format!("xfr:hmac-sha256:{SECRET}");
    let theirs = support::control::axfr_lines(bind.addr(), zone, Some(&key));
    let ours = support::control::axfr_lines(node.dns, zone, Some(&key));
    assert_eq!(ours, theirs, "the secondary zone differs from BIND's");

    // Record writes are refused while it follows BIND.
    let put = |address: &str| {
        node.request(Method::PUT, &format!("/v1/zones/{zone}/rrsets/www/A"))
            .json(&json!({"ttl": 300, "records": [address]}))
            .send()
            .unwrap()
    };
    let (status, problem, _) = json(put("192.0.2.80"));
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("secondary zone"), "{problem}");

    // BIND's NOTIFY brings a change at once.
    update(&bind, zone, &format!("add new.{zone} 300 A 198.51.100.77"));
    wait_for_at(node.dns, &format!("new.{zone}"), "198.51.100.77", Duration::from_secs(15), || {
        format!("{}\n{}", node.log(), bind.log())
    });
    let (_, followed, _) = json(node.request(Method::GET, &format!("/v1/zones/{zone}")).send().unwrap());
    assert_eq!(followed["serial"], 2, "at BIND's serial: {followed}");

    // The last step: a primary from here on, at the same serial and data.
    let promote = node.cli(&["--token", &node.token, "--output", "json", "zone", "promote", zone]);
    assert!(promote.status.success(), "{}", String::from_utf8_lossy(&promote.stderr));
    let promoted: serde_json::Value = serde_json::from_slice(&promote.stdout).unwrap();
    assert_eq!((promoted["kind"].as_str(), promoted["serial"].as_u64()), (Some("primary"), Some(2)), "{promoted}");
    assert!(promoted.get("primaries").is_none(), "{promoted}");
    let (status, body, _) = json(put("192.0.2.80"));
    assert_eq!(status, 200, "{body}");
    let (_, after, _) = json(node.request(Method::GET, &format!("/v1/zones/{zone}")).send().unwrap());
    assert_eq!(after["serial"], 3, "{after}");
    assert_eq!(dns_lookup(node.dns, &format!("new.{zone}"), 1).1, ["198.51.100.77"]);
}
