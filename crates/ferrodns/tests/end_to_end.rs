//! End to end: `ferrodns serve` as a process, zones and records made with
//! the CLI, answers read with dig and kdig, the export checked by
//! named-checkzone and kzonecheck, then a restart that loses nothing. Runs on
//! SQLite and on PostgreSQL.

mod support;

use std::process::{Command, Output};

use support::control::{Database, Node};

fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `dig +short` (or kdig), sorted lines.
fn short(tool: &str, node: &Node, name: &str, rtype: &str) -> Vec<String> {
    let output = Command::new(tool)
        .args([
            &format!("@{}", node.dns.ip()),
            "-p",
            &node.dns.port().to_string(),
            "+short",
            "+norec",
            "+time=2",
            name,
            rtype,
        ])
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (apt-get install bind9-dnsutils knot-dnsutils): {e}"));
    let mut lines: Vec<String> = ok(output).lines().map(|l| l.trim_end().to_string()).collect();
    lines.sort();
    lines
}

fn cli(node: &Node, args: &[&str]) -> String {
    ok(node.cli(args))
}

fn rcode(node: &Node, name: &str, rtype: &str) -> String {
    let output = Command::new("dig")
        .args([&format!("@{}", node.dns.ip()), "-p", &node.dns.port().to_string(), "+norec", "+time=2", name, rtype])
        .output()
        .unwrap();
    let text = ok(output);
    text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("").to_string()
}

/// What the test expects DNS to answer, as (name, type, sorted `+short` lines).
fn expected() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("www.example.org.", "A", vec!["192.0.2.10", "192.0.2.11"]),
        ("www.example.org.", "AAAA", vec!["2001:db8::10"]),
        ("example.org.", "MX", vec!["10 mail.example.org."]),
        ("example.org.", "TXT", vec!["\"v=spf1 mx -all\""]),
        ("_sip._tcp.example.org.", "SRV", vec!["10 60 5060 sip.example.org."]),
        ("example.org.", "CAA", vec!["0 issue \"letsencrypt.org\""]),
        ("ns1.example.org.", "A", vec!["192.0.2.53"]),
    ]
}

fn check_answers(node: &Node) {
    for tool in ["dig", "kdig"] {
        for (name, rtype, want) in expected() {
            assert_eq!(short(tool, node, name, rtype), want, "{tool} {name} {rtype}");
        }
        // The CNAME is followed inside the zone.
        assert_eq!(short(tool, node, "web.example.org.", "A"), ["192.0.2.10", "192.0.2.11", "www.example.org."]);
    }
    assert_eq!(rcode(node, "gone.example.org.", "A"), "NXDOMAIN");
}

fn end_to_end(database: Database) {
    let mut node = Node::start(&database, &[]);
    let table = cli(&node, &["zone", "create", "example.org", "--ns", "ns1.example.org."]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("example.org."), "{table}");
    cli(&node, &["rrset", "set", "example.org", "ns1", "A", "192.0.2.53"]);
    cli(&node, &["rrset", "set", "example.org", "www", "A", "192.0.2.10", "192.0.2.11", "--ttl", "600"]);
    cli(&node, &["rrset", "set", "example.org", "www", "AAAA", "2001:db8::10"]);
    cli(&node, &["rrset", "set", "example.org", "web", "CNAME", "www"]);
    cli(&node, &["rrset", "set", "example.org", "@", "MX", "10 mail"]);
    cli(&node, &["rrset", "set", "example.org", "mail", "A", "192.0.2.25"]);
    cli(&node, &["rrset", "set", "example.org", "@", "TXT", "\"v=spf1 mx -all\""]);
    cli(&node, &["rrset", "set", "example.org", "_sip._tcp", "SRV", "10 60 5060 sip"]);
    cli(&node, &["rrset", "set", "example.org", "sip", "A", "192.0.2.60"]);
    cli(&node, &["rrset", "set", "example.org", "@", "CAA", "0 issue \"letsencrypt.org\""]);
    cli(&node, &["rrset", "set", "example.org", "gone", "A", "192.0.2.99"]);
    cli(&node, &["rrset", "delete", "example.org", "gone", "A"]);
    check_answers(&node);

    // Tables by default, JSON on request.
    let listing = cli(&node, &["rrset", "list", "example.org"]);
    assert!(
        listing.lines().any(|l| l.starts_with("www.example.org.") && l.contains("192.0.2.10, 192.0.2.11")),
        "{listing}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli(&node, &["--output", "json", "zone", "show", "example.org"])).unwrap();
    assert_eq!(json["name"], "example.org.");
    let zones: serde_json::Value = serde_json::from_str(&cli(&node, &["zone", "list", "--output", "json"])).unwrap();
    assert_eq!(zones.as_array().unwrap().len(), 1);

    // An API error: the problem's title, detail and pointers, and a non-zero exit.
    let failed = node.cli(&["rrset", "set", "example.org", "www", "A", "192.0.2.300"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("Invalid request (422)"), "{stderr}");
    assert!(stderr.contains("/records/0:"), "{stderr}");
    let failed = node.cli(&["zone", "create", "example.org"]);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("Conflict (409)"));
    let failed = node.cli(&["--token", "fdns_wrong", "zone", "list"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("Unauthorized (401)"));

    // Tokens through the CLI.
    let created: serde_json::Value =
        serde_json::from_str(&cli(&node, &["token", "create", "ci", "--role", "viewer", "--output", "json"])).unwrap();
    let viewer = created["token"].as_str().unwrap().to_string();
    let listing = ok(node.cli(&["--token", &viewer, "zone", "list"]));
    assert!(listing.contains("example.org."));
    let denied = node.cli(&["--token", &viewer, "rrset", "set", "example.org", "x", "A", "192.0.2.1"]);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Forbidden (403)"));
    assert!(cli(&node, &["token", "list"]).contains("ci"));
    cli(&node, &["token", "revoke", created["id"].as_str().unwrap()]);
    assert!(!node.cli(&["--token", &viewer, "zone", "list"]).status.success());

    // The export passes BIND's and Knot's checkers, and imports back unchanged.
    let exported = cli(&node, &["zone", "export", "example.org"]);
    let file = node.data_dir.join("example.org.zone");
    std::fs::write(&file, &exported).unwrap();
    ok(Command::new("named-checkzone").arg("example.org").arg(&file).output().expect("named-checkzone (bind9-utils)"));
    ok(Command::new("kzonecheck")
        .arg("-o")
        .arg("example.org")
        .arg(&file)
        .output()
        .expect("kzonecheck (knot-dnssecutils)"));
    let imported = cli(&node, &["zone", "import", "example.org", file.to_str().unwrap()]);
    assert!(imported.contains("unchanged"), "{imported}");

    // A restart keeps everything.
    node.restart();
    check_answers(&node);
    assert_eq!(cli(&node, &["zone", "export", "example.org"]), exported);
}

#[test]
fn cli_dig_kdig_and_restart_on_sqlite() {
    end_to_end(Database::sqlite());
}

#[test]
fn cli_dig_kdig_and_restart_on_postgres() {
    end_to_end(Database::postgres());
}
