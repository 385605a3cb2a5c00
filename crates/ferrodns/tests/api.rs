//! One battery of API tests, run black-box over HTTP against `ferrodns serve`
//! on SQLite and on PostgreSQL. It covers every endpoint and every error
//! class (400, 401, 403, 404, 409, 412, 413, 422, 503), checks that a
//! rejected request changes nothing, and that DNS answers reflect each
//! write as soon as the API acknowledges it.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{dns_lookup, json, Database, Node};

const A: u16 = 1;
const MX: u16 = 15;
const TXT: u16 = 16;

/// Asserts a problem+json response with this status, and returns its body.
fn problem(response: reqwest::blocking::Response, status: u16) -> Value {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let (got, body, _) = json(response);
    assert_eq!(got, status, "body: {body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "body: {body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    assert_eq!(body["status"], status);
    body
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map_or_else(Vec::new, |e| e.iter().map(|e| e["pointer"].as_str().unwrap().to_string()).collect())
}

fn zone_version(node: &Node, zone: &str) -> i64 {
    let (status, body, _) = json(node.request(Method::GET, &format!("/v1/zones/{zone}")).send().unwrap());
    assert_eq!(status, 200, "{body}");
    body["version"].as_i64().unwrap()
}

fn battery(database: Database) {
    // In process, on ports the kernel picks: the battery needs no signals.
    let node = Node::start_in_process(&database, &["--max-records-per-rrset", "5", "--max-body-bytes", "65536"]);
    let label = database.label();

    // Probes, the HA state and the OpenAPI document need no token.
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/live").send().unwrap()).0, 200);
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/ready").send().unwrap()).0, 200);
    let (status, ha, _) = json(node.anonymous(Method::GET, "/v1/ha").send().unwrap());
    assert_eq!((status, ha["role"].as_str()), (200, Some("leader")));
    let (status, openapi, _) = json(node.anonymous(Method::GET, "/v1/openapi.json").send().unwrap());
    assert_eq!(status, 200);
    for path in [
        "/v1/zones",
        "/v1/zones/{zone}/changes",
        "/v1/zones/{zone}/rrsets/{name}/{type}",
        "/v1/tokens/{id}",
        "/v1/tsigkeys",
    ] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    problem(node.anonymous(Method::GET, "/v1/nothing-here").send().unwrap(), 404);

    // 401: no token, a malformed header, an unknown token.
    problem(node.anonymous(Method::GET, "/v1/zones").send().unwrap(), 401);
    problem(node.anonymous(Method::GET, "/v1/zones").header("authorization", "Basic eDp5").send().unwrap(), 401);
    problem(node.request_as("fdns_not-a-token", Method::GET, "/v1/zones").send().unwrap(), 401);

    // Zones: create, 409 on a duplicate, 400 and 422 on bad bodies.
    let response = node
        .request(Method::POST, "/v1/zones")
        .json(&json!({"name": "example.com", "kind": "primary"}))
        .send()
        .unwrap();
    let (status, zone, headers) = json(response);
    assert_eq!(status, 201, "{zone}");
    assert_eq!(zone["name"], "example.com.");
    assert_eq!(zone["serial"], 1);
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(headers["location"], "/v1/zones/example.com.");
    assert_eq!(dns_lookup(node.dns, "example.com.", 6).0, "NoError", "a new zone is served at once");
    let dup =
        problem(node.request(Method::POST, "/v1/zones").json(&json!({"name": "EXAMPLE.com."})).send().unwrap(), 409);
    assert!(dup["detail"].as_str().unwrap().contains("exists"));
    problem(
        node.request(Method::POST, "/v1/zones")
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .unwrap(),
        400,
    );
    let bad = problem(node.request(Method::POST, "/v1/zones").json(&json!({"name": "a..b"})).send().unwrap(), 422);
    assert_eq!(pointers(&bad), ["/name"]);
    let bad = problem(
        node.request(Method::POST, "/v1/zones").json(&json!({"name": "x.test", "ttl": "long"})).send().unwrap(),
        422,
    );
    assert_eq!(pointers(&bad), ["/ttl"]);
    let bad = problem(
        node.request(Method::POST, "/v1/zones").json(&json!({"name": "x.test", "colour": 1})).send().unwrap(),
        422,
    );
    assert!(bad["errors"][0]["message"].as_str().unwrap().contains("colour"));
    let bad = problem(
        node.request(Method::POST, "/v1/zones").json(&json!({"name": "x.test", "kind": "stub"})).send().unwrap(),
        422,
    );
    assert_eq!(pointers(&bad), ["/kind"]);
    let long_label = format!("{}.test", "a".repeat(64));
    let bad = problem(node.request(Method::POST, "/v1/zones").json(&json!({"name": long_label})).send().unwrap(), 422);
    assert_eq!(pointers(&bad), ["/name"]);

    // Listing pages through every zone exactly once; the name filter narrows.
    for i in 0..5 {
        let body = json!({"name": format!("z{i}.list.test"), "nameservers": ["ns1.example.net.", "ns2.example.net."]});
        assert_eq!(json(node.request(Method::POST, "/v1/zones").json(&body).send().unwrap()).0, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/zones?limit=2&cursor={c}"),
            None => "/v1/zones?limit=2".to_string(),
        };
        let (status, page, _) = json(node.request(Method::GET, &path).send().unwrap());
        assert_eq!(status, 200);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(page["items"].as_array().unwrap().iter().map(|z| z["name"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    let (_, page, _) = json(node.request(Method::GET, "/v1/zones?name=list").send().unwrap());
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    problem(node.request(Method::GET, "/v1/zones?limit=0").send().unwrap(), 422);
    problem(node.request(Method::GET, "/v1/zones?cursor=%%%").send().unwrap(), 422);
    let (_, listed, _) = json(node.request(Method::GET, "/v1/zones/z0.list.test/rrsets/@/NS").send().unwrap());
    assert_eq!(listed["records"], json!(["ns1.example.net.", "ns2.example.net."]));

    // One zone: ETag, 404s.
    let (status, zone, headers) = json(node.request(Method::GET, "/v1/zones/example.com").send().unwrap());
    assert_eq!((status, zone["rrset_count"].as_i64()), (200, Some(2)));
    assert_eq!(headers["etag"], "\"1\"");
    problem(node.request(Method::GET, "/v1/zones/missing.test").send().unwrap(), 404);
    problem(node.request(Method::GET, "/v1/zones/bad..name").send().unwrap(), 404);

    // RRsets: PUT creates and replaces, DNS reflects it on return.
    let put = |name: &str, rtype: &str, body: Value| {
        node.request(Method::PUT, &format!("/v1/zones/example.com/rrsets/{name}/{rtype}")).json(&body).send().unwrap()
    };
    let (status, set, headers) =
        json(put("www", "A", json!({"ttl": 300, "records": ["192.0.2.2", "192.0.2.1", "192.0.2.1"]})));
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set,
        json!({"name": "www.example.com.", "type": "A", "ttl": 300, "records": ["192.0.2.1", "192.0.2.2"]})
    );
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        dns_lookup(node.dns, "www.example.com.", A),
        ("NoError".into(), vec!["192.0.2.1".into(), "192.0.2.2".into()])
    );
    let (status, _, _) = json(put("www.example.com.", "a", json!({"ttl": 60, "records": ["192.0.2.9"]})));
    assert_eq!(status, 200);
    assert_eq!(dns_lookup(node.dns, "www.example.com.", A).1, ["192.0.2.9"]);
    assert_eq!(json(put("@", "MX", json!({"ttl": 300, "records": ["10 mail", "20 mail.example.net."]}))).0, 200);
    assert_eq!(dns_lookup(node.dns, "example.com.", MX).1, ["10 mail.example.com.", "20 mail.example.net."]);
    assert_eq!(json(put("txt", "TXT", json!({"ttl": 300, "records": ["\"v=spf1 -all\" \"second\""]}))).0, 200);
    assert_eq!(dns_lookup(node.dns, "txt.example.com.", TXT).1.len(), 1);
    let (status, got, _) = json(node.request(Method::GET, "/v1/zones/example.com/rrsets/www/A").send().unwrap());
    assert_eq!((status, got["records"].clone()), (200, json!(["192.0.2.9"])));

    // Rejected PUTs: RDATA syntax, CNAME rules, TTL range, the size limit, SOA.
    let version = zone_version(&node, "example.com");
    let bad = problem(put("www", "A", json!({"ttl": 300, "records": ["192.0.2.1", "300.1.1.1"]})), 422);
    assert_eq!(pointers(&bad), ["/records/1"]);
    let bad = problem(put("www", "A", json!({"ttl": 300, "records": []})), 422);
    assert_eq!(pointers(&bad), ["/records"]);
    let bad = problem(put("@", "CNAME", json!({"ttl": 300, "records": ["other.example."]})), 422);
    assert_eq!(pointers(&bad), ["/type"]);
    let bad = problem(put("www", "CNAME", json!({"ttl": 300, "records": ["other.example."]})), 409);
    assert_eq!(pointers(&bad), ["/type"]);
    let bad = problem(put("www", "A", json!({"ttl": 2147483648u64, "records": ["192.0.2.1"]})), 422);
    assert_eq!(pointers(&bad), ["/ttl"]);
    let six: Vec<String> = (1..=6).map(|i| format!("192.0.2.{i}")).collect();
    let bad = problem(put("many", "A", json!({"ttl": 300, "records": six})), 422);
    assert_eq!(pointers(&bad), ["/records"]);
    problem(put("@", "SOA", json!({"ttl": 300, "records": ["a. b. 1 2 3 4 5"]})), 422);
    problem(put("www", "NOTATYPE", json!({"ttl": 300, "records": ["x"]})), 422);
    let bad = problem(put("www", "A", json!({"ttl": 300})), 422);
    assert!(bad["errors"][0]["message"].as_str().unwrap().contains("records"));
    let deep = format!("{}.{}.{}.{}", "a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(60));
    problem(put(&deep, "A", json!({"ttl": 300, "records": ["192.0.2.1"]})), 422);
    assert_eq!(zone_version(&node, "example.com"), version, "rejected requests changed the zone");
    assert_eq!(dns_lookup(node.dns, "www.example.com.", A).1, ["192.0.2.9"]);

    // Listing RRsets, filtered and paged.
    let (_, page, _) = json(node.request(Method::GET, "/v1/zones/example.com/rrsets?limit=2").send().unwrap());
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest, _) =
        json(node.request(Method::GET, &format!("/v1/zones/example.com/rrsets?cursor={cursor}")).send().unwrap());
    assert_eq!(rest["items"].as_array().unwrap().len(), 3, "NS, SOA, MX, txt TXT, www A: {rest}");
    let (_, filtered, _) =
        json(node.request(Method::GET, "/v1/zones/example.com/rrsets?name=www&type=A").send().unwrap());
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    problem(node.request(Method::GET, "/v1/zones/example.com/rrsets/nothing/A").send().unwrap(), 404);

    // DELETE of an RRset, then 404 for it; the apex NS cannot go.
    assert_eq!(json(node.request(Method::DELETE, "/v1/zones/example.com/rrsets/txt/TXT").send().unwrap()).0, 204);
    assert_eq!(dns_lookup(node.dns, "txt.example.com.", TXT).0, "NXDomain");
    problem(node.request(Method::DELETE, "/v1/zones/example.com/rrsets/txt/TXT").send().unwrap(), 404);
    problem(node.request(Method::DELETE, "/v1/zones/example.com/rrsets/@/NS").send().unwrap(), 422);

    // Change batches: all or nothing, serial +1 per batch, If-Match.
    let batch = |body: Value, if_match: Option<&str>| {
        let mut request = node.request(Method::POST, "/v1/zones/example.com/changes").json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().unwrap()
    };
    let (_, before, _) = json(node.request(Method::GET, "/v1/zones/example.com").send().unwrap());
    let serial = before["serial"].as_u64().unwrap();
    let (status, change, headers) = json(batch(
        json!({"changes": [
            {"action": "create", "name": "api", "type": "A", "ttl": 60, "records": ["198.51.100.1"]},
            {"action": "upsert", "name": "www", "type": "AAAA", "ttl": 60, "records": ["2001:db8::1"]},
            {"action": "delete", "name": "@", "type": "MX"},
            {"action": "create", "name": "alias", "type": "CNAME", "ttl": 60, "records": ["www"]},
        ]}),
        None,
    ));
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["serial"].as_u64(), Some(serial + 1));
    assert_eq!(change["status"], "insync", "no secondaries are configured, so nothing is pending");
    assert_eq!(change["actor"], "admin");
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(dns_lookup(node.dns, "api.example.com.", A).1, ["198.51.100.1"]);
    assert_eq!(dns_lookup(node.dns, "example.com.", MX).1.len(), 0);
    assert_eq!(dns_lookup(node.dns, "example.com.", 6).1[0].split(' ').nth(2), Some((serial + 1).to_string().as_str()));

    // A batch with one bad change applies nothing, and points at each problem.
    let bad = problem(
        batch(
            json!({"changes": [
                {"action": "create", "name": "fine", "type": "A", "ttl": 60, "records": ["198.51.100.2"]},
                {"action": "create", "name": "broken", "type": "A", "ttl": 60, "records": ["not-an-address"]},
                {"action": "upsert", "name": "out.of.zone.", "type": "A", "ttl": 60, "records": ["198.51.100.3"]},
            ]}),
            None,
        ),
        422,
    );
    assert_eq!(pointers(&bad), ["/changes/1/records/0", "/changes/2/name"]);
    assert_eq!(dns_lookup(node.dns, "fine.example.com.", A).0, "NXDomain");
    let bad = problem(
        batch(
            json!({"changes": [{"action": "create", "name": "api", "type": "A", "ttl": 60, "records": ["198.51.100.9"]}]}),
            None,
        ),
        409,
    );
    assert_eq!(pointers(&bad), ["/changes/0"]);
    let bad = problem(
        batch(
            json!({"changes": [
            {"action": "create", "name": "fresh", "type": "A", "ttl": 60, "records": ["198.51.100.9"]},
            {"action": "delete", "name": "ghost", "type": "A"}]}),
            None,
        ),
        404,
    );
    assert_eq!(pointers(&bad), ["/changes/1"]);
    assert_eq!(dns_lookup(node.dns, "fresh.example.com.", A).0, "NXDomain");
    let bad = problem(
        batch(
            json!({"changes": [{"action": "create", "name": "alias", "type": "TXT", "ttl": 60, "records": ["\"x\""]}]}),
            None,
        ),
        409,
    );
    assert_eq!(pointers(&bad), ["/changes/0/type"]);
    let bad = problem(batch(json!({"changes": [{"action": "rename", "name": "x", "type": "A"}]}), None), 422);
    assert_eq!(pointers(&bad), ["/changes/0/action"]);
    problem(batch(json!({"changes": []}), None), 422);
    problem(batch(json!({"changes": [{"action": "delete", "name": "@", "type": "NS"}]}), None), 422);
    problem(
        batch(
            json!({"changes": [{"action": "upsert", "name": "@", "type": "SOA", "ttl": 1, "records": ["a. b. 1 2 3 4 5"]}]}),
            None,
        ),
        422,
    );
    assert_eq!(zone_version(&node, "example.com"), etag.trim_matches('"').parse::<i64>().unwrap());
    let ok = json!({"changes": [{"action": "upsert", "name": "tagged", "type": "A", "ttl": 60, "records": ["198.51.100.4"]}]});
    problem(batch(ok.clone(), Some("\"1\"")), 412);
    let (status, _, headers) = json(batch(ok.clone(), Some(&etag)));
    assert_eq!(status, 200);
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
    // The same upsert again changes nothing and moves no serial.
    let (status, unchanged, _) = json(batch(ok, None));
    assert_eq!((status, unchanged["status"].as_str(), unchanged["id"].is_null()), (200, Some("unchanged"), true));

    // History: newest first, actor and time, paged, and one entry with its records.
    let (status, history, _) = json(node.request(Method::GET, "/v1/zones/example.com/changes?limit=2").send().unwrap());
    assert_eq!(status, 200);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["id"].as_i64() > items[1]["id"].as_i64());
    assert_eq!(items[0]["changes"][0]["name"], "tagged.example.com.");
    assert!(items[0]["at"].as_str().unwrap().ends_with('Z'));
    let next = history["next_cursor"].as_str().unwrap();
    let (_, older, _) =
        json(node.request(Method::GET, &format!("/v1/zones/example.com/changes?cursor={next}")).send().unwrap());
    assert!(older["items"].as_array().unwrap().iter().all(|c| c["id"].as_i64() < items[1]["id"].as_i64()));
    let id = items[0]["id"].as_i64().unwrap();
    let (status, one, _) =
        json(node.request(Method::GET, &format!("/v1/zones/example.com/changes/{id}")).send().unwrap());
    assert_eq!(status, 200);
    assert!(one["removed"][0].as_str().unwrap().contains(" SOA "));
    assert!(one["added"][1].as_str().unwrap().starts_with("tagged.example.com. 60 IN A 198.51.100.4"), "{one}");
    assert_eq!(one["truncated"], false);
    problem(node.request(Method::GET, "/v1/zones/example.com/changes/999999").send().unwrap(), 404);

    // Export, then import of the export changes nothing.
    let response = node.request(Method::GET, "/v1/zones/example.com/export").send().unwrap();
    assert_eq!(response.headers()["content-type"], "text/dns");
    let exported = response.text().unwrap();
    assert!(exported.starts_with("$ORIGIN example.com.\nexample.com. 3600 IN SOA "), "{exported}");
    let import = |mode: &str, body: String| {
        node.request(Method::POST, &format!("/v1/zones/example.com/import?mode={mode}"))
            .header("content-type", "text/dns")
            .body(body)
            .send()
            .unwrap()
    };
    let (status, result, _) = json(import("replace", exported.clone()));
    assert_eq!((status, result["status"].as_str()), (200, Some("unchanged")), "{result}");
    // Every bad line is reported, and nothing is applied.
    let broken = format!("{exported}bad1 60 IN A 999.1.1.1\ngood 60 IN A 192.0.2.50\nbad2 60 IN MX x y z\nelsewhere.test. 60 IN A 192.0.2.1\n");
    let bad = problem(import("replace", broken), 422);
    let lines: Vec<u64> = bad["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    let base = exported.lines().count() as u64;
    assert_eq!(lines, [base + 1, base + 3, base + 4], "{bad}");
    assert_eq!(dns_lookup(node.dns, "good.example.com.", A).0, "NXDomain");
    problem(import("sideways", exported.clone()), 422);
    let (status, merged, _) = json(import("merge", "$ORIGIN example.com.\nmerged 120 IN A 192.0.2.60\n".to_string()));
    assert_eq!((status, merged["status"].as_str()), (200, Some("insync")));
    assert_eq!(dns_lookup(node.dns, "merged.example.com.", A).1, ["192.0.2.60"]);
    assert_eq!(dns_lookup(node.dns, "www.example.com.", A).1, ["192.0.2.9"], "merge keeps other RRsets");
    let (status, _, _) = json(import("replace", exported.clone()));
    assert_eq!(status, 200);
    assert_eq!(dns_lookup(node.dns, "merged.example.com.", A).0, "NXDomain", "replace drops what the file lacks");
    let reexported = node.request(Method::GET, "/v1/zones/example.com/export").send().unwrap().text().unwrap();
    let strip_serial = |text: &str| text.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(strip_serial(&reexported), strip_serial(&exported), "round trip through import");

    // The request size limit.
    let huge = "x".repeat(70_000);
    let refused = import("merge", huge);
    // The rest of the body goes unread: the client must not reuse the connection.
    assert_eq!(refused.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
    problem(refused, 413);

    // Tenancy and tokens.
    let token = |body: Value| {
        let (status, created, _) = json(node.request(Method::POST, "/v1/tokens").json(&body).send().unwrap());
        assert_eq!(status, 201, "{created}");
        (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string())
    };
    let (_, acme_admin) = token(json!({"name": "acme-admin", "role": "admin", "tenant": "acme"}));
    let (_, acme_editor) = token(json!({"name": "acme-ci", "role": "editor", "tenant": "acme"}));
    let (viewer_id, acme_viewer) = token(json!({"name": "acme-viewer", "role": "viewer", "tenant": "acme"}));
    let bad = problem(
        node.request(Method::POST, "/v1/tokens").json(&json!({"name": "x", "role": "root"})).send().unwrap(),
        422,
    );
    assert_eq!(pointers(&bad), ["/role"]);
    let created =
        node.request_as(&acme_editor, Method::POST, "/v1/zones").json(&json!({"name": "acme.test"})).send().unwrap();
    assert_eq!(json(created).0, 201);
    let (_, acme_zone, _) = json(node.request_as(&acme_viewer, Method::GET, "/v1/zones/acme.test").send().unwrap());
    assert_eq!(acme_zone["tenant"], "acme");
    problem(node.request_as(&acme_viewer, Method::GET, "/v1/zones/example.com").send().unwrap(), 404);
    problem(node.request_as(&acme_editor, Method::GET, "/v1/zones/example.com/rrsets").send().unwrap(), 404);
    let (_, acme_list, _) = json(node.request_as(&acme_viewer, Method::GET, "/v1/zones").send().unwrap());
    assert_eq!(acme_list["items"].as_array().unwrap().len(), 1);
    let viewer_put = node
        .request_as(&acme_viewer, Method::PUT, "/v1/zones/acme.test/rrsets/www/A")
        .json(&json!({"ttl": 60, "records": ["192.0.2.1"]}))
        .send()
        .unwrap();
    problem(viewer_put, 403);
    problem(node.request_as(&acme_editor, Method::GET, "/v1/tokens").send().unwrap(), 403);
    let (status, acme_tokens, _) = json(node.request_as(&acme_admin, Method::GET, "/v1/tokens").send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(acme_tokens.as_array().unwrap().len(), 3, "an acme admin sees acme's tokens only");
    assert!(acme_tokens.as_array().unwrap().iter().all(|t| t.get("token").is_none()), "secrets are never listed");
    let cross = node
        .request_as(&acme_admin, Method::POST, "/v1/tokens")
        .json(&json!({"name": "x", "role": "admin", "tenant": "other"}))
        .send()
        .unwrap();
    problem(cross, 403);
    // A zone-limited token sees only its zones.
    let (_, limited) = token(json!({"name": "z1-only", "role": "editor", "zones": ["z1.list.test"]}));
    let (_, page, _) = json(node.request_as(&limited, Method::GET, "/v1/zones").send().unwrap());
    assert_eq!(
        page["items"].as_array().unwrap().iter().map(|z| z["name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["z1.list.test."]
    );
    problem(node.request_as(&limited, Method::GET, "/v1/zones/z2.list.test").send().unwrap(), 404);
    // Revocation takes effect on the next request; history names the actor.
    let edit = node
        .request_as(&acme_editor, Method::PUT, "/v1/zones/acme.test/rrsets/www/A")
        .json(&json!({"ttl": 60, "records": ["192.0.2.77"]}))
        .send()
        .unwrap();
    assert_eq!(json(edit).0, 200);
    let (_, history, _) =
        json(node.request_as(&acme_viewer, Method::GET, "/v1/zones/acme.test/changes").send().unwrap());
    assert_eq!(history["items"][0]["actor"], "acme-ci");
    assert_eq!(json(node.request(Method::DELETE, &format!("/v1/tokens/{viewer_id}")).send().unwrap()).0, 204);
    problem(node.request_as(&acme_viewer, Method::GET, "/v1/zones").send().unwrap(), 401);
    problem(node.request(Method::DELETE, &format!("/v1/tokens/{viewer_id}")).send().unwrap(), 404);

    // TSIG keys through the API: the secret once, then usable for transfers at once.
    let (status, key, _) =
        json(node.request(Method::POST, "/v1/tsigkeys").json(&json!({"name": "xfr-api"})).send().unwrap());
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["algorithm"], "hmac-sha256");
    let secret = key["secret"].as_str().unwrap().to_string();
    let (status, keys, _) = json(node.request(Method::GET, "/v1/tsigkeys").send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert!(keys[0].get("secret").is_none(), "secrets are never listed");
    problem(node.request(Method::POST, "/v1/tsigkeys").json(&json!({"name": "xfr-api"})).send().unwrap(), 409);
    let bad = problem(
        node.request(Method::POST, "/v1/tsigkeys")
            .json(&json!({"name": "k2", "algorithm": "hmac-md5"}))
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(pointers(&bad), ["/algorithm"]);
    let (status, acme_keys, _) = json(node.request_as(&acme_admin, Method::GET, "/v1/tsigkeys").send().unwrap());
    assert_eq!((status, acme_keys), (200, json!([])), "a tenant admin sees none of the operator's keys");
    let axfr = |secret: &str| {
        let output = std::process::Command::new("kdig")
            .args([&format!("@{}", node.dns.ip()), "-p", &node.dns.port().to_string(), "-y"])
            .arg(format!("hmac-sha256:xfr-api:{secret}"))
            .args(["example.com.", "AXFR"])
            .output()
            .expect("kdig (knot-dnsutils)");
        String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
    };
    assert!(axfr(&secret).contains("IN\tSOA"), "{}", axfr(&secret));
    assert_eq!(json(node.request(Method::DELETE, "/v1/tsigkeys/xfr-api").send().unwrap()).0, 204);
    assert!(axfr(&secret).contains("BADKEY"), "a deleted key fails at once: {}", axfr(&secret));
    problem(node.request(Method::DELETE, "/v1/tsigkeys/xfr-api").send().unwrap(), 404);
    // No secondary is configured; kdig's AXFR shows as a peer holding the zone.
    let (status, secondaries, _) = json(node.request(Method::GET, "/v1/zones/example.com/secondaries").send().unwrap());
    assert_eq!(status, 200);
    let peers = secondaries.as_array().unwrap();
    assert_eq!(peers.len(), 1, "{secondaries}");
    assert_eq!(
        (peers[0]["address"].as_str(), peers[0]["configured"].as_bool(), peers[0]["insync"].as_bool()),
        (Some("127.0.0.1"), Some(false), Some(true))
    );

    // Deleting a zone stops DNS for it before the response.
    assert_eq!(json(node.request(Method::DELETE, "/v1/zones/z4.list.test").send().unwrap()).0, 204);
    assert_eq!(dns_lookup(node.dns, "z4.list.test.", 6).0, "Refused");
    problem(node.request(Method::DELETE, "/v1/zones/z4.list.test").send().unwrap(), 404);
    println!("{label}: API battery passed");
}

#[test]
fn battery_on_sqlite() {
    battery(Database::sqlite());
}

#[test]
fn battery_on_postgres() {
    battery(Database::postgres());
}

/// The journal keeps about `--journal-keep` entries per zone: it is trimmed
/// every 16 changes, so it never holds more than keep + 15.
#[test]
fn journal_retention_is_bounded() {
    let database = Database::sqlite();
    let node = Node::start(&database, &["--journal-keep", "5"]);
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "short.test"})).send().unwrap()).0,
        201
    );
    for i in 0..40 {
        let body = json!({"ttl": 60, "records": [format!("192.0.2.{i}")]});
        assert_eq!(
            json(node.request(Method::PUT, "/v1/zones/short.test/rrsets/www/A").json(&body).send().unwrap()).0,
            200
        );
    }
    let (_, history, _) = json(node.request(Method::GET, "/v1/zones/short.test/changes?limit=1000").send().unwrap());
    let kept = history["items"].as_array().unwrap();
    assert!(kept.len() >= 5 && kept.len() <= 5 + 15, "{} entries kept", kept.len());
    assert_eq!(kept[0]["serial"].as_u64(), Some(41), "the newest entries are the ones kept");
}
