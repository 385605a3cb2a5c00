//! Write semantics that must hold on every write path, on SQLite and
//! PostgreSQL: `If-Match` lists and zone deletion, no write to a zone that
//! DNS serves from a file, and quoted TXT.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{dns_lookup, json, Database, Node};

const TXT: u16 = 16;

fn version(node: &Node, zone: &str) -> i64 {
    let (status, body, _) = json(node.request(Method::GET, &format!("/v1/zones/{zone}")).send().unwrap());
    assert_eq!(status, 200, "{body}");
    body["version"].as_i64().unwrap()
}

fn put_txt(node: &Node, zone: &str, records: Value, if_match: Option<&str>) -> (u16, Value) {
    let mut request = node
        .request(Method::PUT, &format!("/v1/zones/{zone}/rrsets/txt/TXT"))
        .json(&json!({"ttl": 300, "records": records}));
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let (status, body, _) = json(request.send().unwrap());
    (status, body)
}

fn if_match_holds_everywhere(database: Database) {
    let node = Node::start_in_process(&database, &[]);
    node.create_zone("etag.test");
    let current = version(&node, "etag.test");
    let tag = |v: i64| format!("\"{v}\"");

    // A list naming the current version passes; a newer or older one fails,
    // and the answer names the current version without calling it "older".
    let (status, body) = put_txt(&node, "etag.test", json!(["\"a\""]), Some(&format!("\"1\", {}", tag(current))));
    assert_eq!(status, 200, "{body}");
    let current = version(&node, "etag.test");
    let (status, body) = put_txt(&node, "etag.test", json!(["\"b\""]), Some(&tag(current + 5)));
    assert_eq!(status, 412, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("version {current}")) && !detail.contains("older"), "{detail}");
    assert_eq!(put_txt(&node, "etag.test", json!(["\"b\""]), Some("W/\"0\", \"zz\"")).0, 412);
    assert_eq!(put_txt(&node, "etag.test", json!(["\"b\""]), Some("garbage")).0, 400);
    assert_eq!(put_txt(&node, "etag.test", json!(["\"b\""]), Some("*")).0, 200);

    // DELETE of a zone honours If-Match: stale and malformed tags keep it.
    let current = version(&node, "etag.test");
    let delete =
        |tag: &str| json(node.request(Method::DELETE, "/v1/zones/etag.test").header("if-match", tag).send().unwrap()).0;
    assert_eq!(delete(&tag(current - 1)), 412);
    assert_eq!(delete("garbage"), 400);
    assert_eq!(dns_lookup(node.dns, "txt.etag.test.", TXT).1.len(), 1, "the zone is still served");
    assert_eq!(delete(&format!("\"0\", {}", tag(current))), 204);
    assert_eq!(dns_lookup(node.dns, "txt.etag.test.", TXT).0, "Refused");

    // Import honours it too.
    node.create_zone("import.test");
    let current = version(&node, "import.test");
    let import = |tag: String| {
        let file = "$ORIGIN import.test.\n@ 300 IN NS ns.example.net.\nwww 300 IN A 192.0.2.1\n";
        let request = node
            .request(Method::POST, "/v1/zones/import.test/import?mode=merge")
            .header("content-type", "text/dns")
            .header("if-match", tag)
            .body(file);
        json(request.send().unwrap()).0
    };
    assert_eq!(import(tag(current + 1)), 412);
    assert_eq!(import(tag(current)), 200);

    // TXT with spaces must be quoted; quoted data keeps its spaces.
    node.create_zone("txt.test");
    let (status, body) = put_txt(&node, "txt.test", json!(["v=spf1 mx -all"]), None);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/records/0", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("quoted"), "{body}");
    assert_eq!(put_txt(&node, "txt.test", json!(["\"v=spf1 mx -all\""]), None).0, 200);
    assert_eq!(dns_lookup(node.dns, "txt.txt.test.", TXT).1, ["v=spf1 mx -all"]);
    let cli = node.cli(&["rrset", "set", "txt.test", "spf", "TXT", "v=spf1 mx -all"]);
    assert!(!cli.status.success(), "the CLI stored unquoted TXT");
    assert_eq!(dns_lookup(node.dns, "spf.txt.test.", TXT).0, "NXDomain");
}

#[test]
fn if_match_and_txt_on_sqlite() {
    if_match_holds_everywhere(Database::sqlite());
}

#[test]
fn if_match_and_txt_on_postgres() {
    if_match_holds_everywhere(Database::postgres());
}

/// A zone both stored and given by `--zone-file` is served from the file,
/// so API writes to it would answer 2xx and never be served: they are 409.
#[test]
fn writes_to_a_zone_served_from_a_file_are_refused() {
    let database = Database::postgres();
    let mut first = Node::start(&database, &[]);
    first.create_zone("shadow.test");
    let token = first.token.clone();
    first.stop();
    let dir = support::temp_dir("shadow");
    let file = dir.join("shadow.test.zone");
    std::fs::write(
        &file,
        "$ORIGIN shadow.test.\n@ 300 IN SOA ns.shadow.test. h.shadow.test. 2024061501 3600 600 86400 300\n\
         @ 300 IN NS ns.shadow.test.\nns 300 IN A 192.0.2.1\n",
    )
    .unwrap();
    let mut node = Node::start(&database, &["--zone-file", file.to_str().unwrap()]);
    node.token = token;
    let (status, body, _) = json(
        node.request(Method::PUT, "/v1/zones/shadow.test/rrsets/www/A")
            .json(&json!({"ttl": 300, "records": ["192.0.2.9"]}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("--zone-file"), "{body}");
    let (status, _, _) = json(
        node.request(Method::POST, "/v1/zones/shadow.test/changes")
            .json(&json!({"changes": [{"action": "delete", "name": "@", "type": "NS"}]}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 409);
    assert_eq!(dns_lookup(node.dns, "www.shadow.test.", 1).0, "NXDomain");
}
