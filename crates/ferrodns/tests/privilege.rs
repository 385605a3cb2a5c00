//! Least privilege for tokens (issue 14, items 2 and 3), through the API of
//! an in-process node:
//!
//! - a `system` admin limited to some zones is not the operator: it lists
//!   no other tenant's tokens, makes no TSIG key, and cannot revoke the
//!   operator's token;
//! - a zone-limited admin of a tenant sees and revokes only the tokens
//!   within its zones, never its tenant's unlimited ones, and mints none
//!   wider than itself.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::control::{json, Database, Node};

/// Creates a token as `as_token` (the operator when `None`): its id and secret.
fn token(node: &Node, as_token: Option<&str>, body: Value) -> (String, String) {
    let request = match as_token {
        Some(secret) => node.request_as(secret, Method::POST, "/v1/tokens"),
        None => node.request(Method::POST, "/v1/tokens"),
    };
    let (status, created, _) = json(request.json(&body).send().unwrap());
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string())
}

fn listed_ids(node: &Node, secret: &str) -> Vec<String> {
    let (status, list, _) = json(node.request_as(secret, Method::GET, "/v1/tokens").send().unwrap());
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
}

fn root_id(node: &Node) -> String {
    let (_, list, _) = json(node.request(Method::GET, "/v1/tokens").send().unwrap());
    let root = list.as_array().unwrap().iter().find(|t| t["name"] == "admin" && t["tenant"] == "system").unwrap();
    root["id"].as_str().unwrap().to_string()
}

#[test]
fn a_zone_limited_system_admin_is_not_the_operator() {
    let node = Node::start_in_process(&Database::sqlite(), &[]);
    let root = root_id(&node);
    let (tenant_token, _) = token(&node, None, json!({"name": "ty-admin", "role": "admin", "tenant": "ty"}));
    let (limited_id, limited) =
        token(&node, None, json!({"name": "alpha-admin", "role": "admin", "zones": ["alpha.test"]}));

    // Its own token only: not the root token, not another tenant's.
    let seen = listed_ids(&node, &limited);
    assert_eq!(seen, [limited_id], "a zone-limited system admin lists beyond its zones");
    assert!(!seen.contains(&tenant_token));

    // A TSIG key it makes reaches its zones only: another tenant's zone does
    // not transfer with it (the finding: it transferred every zone).
    let (_, ty_admin) = token(&node, None, json!({"name": "ty-zones", "role": "admin", "tenant": "ty"}));
    let created =
        node.request_as(&ty_admin, Method::POST, "/v1/zones").json(&json!({"name": "private.test"})).send().unwrap();
    assert_eq!(json(created).0, 201);
    let put = node
        .request_as(&ty_admin, Method::PUT, "/v1/zones/private.test/rrsets/secret/TXT")
        .json(&json!({"ttl": 60, "records": ["\"do not share\""]}))
        .send()
        .unwrap();
    assert_eq!(json(put).0, 200);
    let (status, key, _) =
        json(node.request_as(&limited, Method::POST, "/v1/tsigkeys").json(&json!({"name": "steal"})).send().unwrap());
    assert_eq!(status, 201, "{key}");
    assert_eq!((key["tenant"].as_str(), key["zones"].clone()), (Some("system"), json!(["alpha.test."])));
    let secret = format!("steal.:hmac-sha256:{}", key["secret"].as_str().unwrap());
    let stolen = support::control::axfr_lines(node.dns, "private.test.", Some(&secret));
    assert!(stolen.is_empty(), "another tenant's zone transferred with a zone-limited key: {stolen:?}");
    let (status, body, _) = json(
        node.request_as(&limited, Method::POST, "/v1/tsigkeys")
            .json(&json!({"name": "wide", "tenant": "ty"}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403, "{body}");

    // The operator's token is out of reach, and keeps working.
    let (status, body, _) =
        json(node.request_as(&limited, Method::DELETE, &format!("/v1/tokens/{root}")).send().unwrap());
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(node.request(Method::GET, "/v1/tokens").send().unwrap()).0, 200);

    // Nor may it act on another tenant's zones or mint for another tenant.
    let (status, _, _) = json(
        node.request_as(&limited, Method::POST, "/v1/tokens")
            .json(&json!({"name": "x", "role": "admin", "tenant": "ty", "zones": ["alpha.test"]}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403);
}

#[test]
fn a_zone_limited_admin_manages_only_tokens_within_its_zones() {
    let node = Node::start_in_process(&Database::sqlite(), &[]);
    let (wide_id, wide) = token(&node, None, json!({"name": "ty-admin", "role": "admin", "tenant": "ty"}));
    let (narrow_id, narrow) =
        token(&node, None, json!({"name": "b-admin", "role": "admin", "tenant": "ty", "zones": ["b.test"]}));
    let (other_id, _) =
        token(&node, None, json!({"name": "c-editor", "role": "editor", "tenant": "ty", "zones": ["c.test"]}));

    // It may mint tokens inside its zones, and none wider.
    let (own_id, _) = token(&node, Some(&narrow), json!({"name": "b-ci", "role": "editor", "zones": ["b.test"]}));
    for body in [
        json!({"name": "wide", "role": "editor"}),
        json!({"name": "more", "role": "editor", "zones": ["b.test", "c.test"]}),
    ] {
        let (status, problem, _) =
            json(node.request_as(&narrow, Method::POST, "/v1/tokens").json(&body).send().unwrap());
        assert_eq!(status, 403, "{body} → {problem}");
    }

    let mut seen = listed_ids(&node, &narrow);
    seen.sort();
    let mut expected = vec![narrow_id.clone(), own_id.clone()];
    expected.sort();
    assert_eq!(seen, expected, "a b.test admin lists tokens beyond b.test");

    // The tenant's unlimited admin and its other zones' tokens are not found;
    // they keep working.
    for id in [&wide_id, &other_id] {
        let (status, body, _) =
            json(node.request_as(&narrow, Method::DELETE, &format!("/v1/tokens/{id}")).send().unwrap());
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(json(node.request_as(&wide, Method::GET, "/v1/tokens").send().unwrap()).0, 200);
    assert_eq!(listed_ids(&node, &wide).len(), 4, "the tenant's unlimited admin sees all of its tokens");

    // What it covers, it revokes.
    let (status, _, _) =
        json(node.request_as(&narrow, Method::DELETE, &format!("/v1/tokens/{own_id}")).send().unwrap());
    assert_eq!(status, 204);
}

/// Issue 14, item 5: a tenant token may call itself `admin`, so the history
/// records whose token made each change: its id and tenant beside the name.
#[test]
fn history_says_whose_token_made_a_change() {
    let node = Node::start_in_process(&Database::sqlite(), &[]);
    let root = root_id(&node);
    let (impostor_id, impostor) = token(&node, None, json!({"name": "admin", "role": "admin", "tenant": "tx"}));
    let created =
        node.request_as(&impostor, Method::POST, "/v1/zones").json(&json!({"name": "history.test"})).send().unwrap();
    assert_eq!(json(created).0, 201);
    let put = node
        .request_as(&impostor, Method::PUT, "/v1/zones/history.test/rrsets/www/A")
        .json(&json!({"ttl": 60, "records": ["192.0.2.66"]}))
        .send()
        .unwrap();
    let (status, body, _) = json(put);
    assert_eq!(status, 200, "{body}");
    assert_ne!(impostor_id, root);
    let (_, history, _) =
        json(node.request_as(&impostor, Method::GET, "/v1/zones/history.test/changes").send().unwrap());
    let entries = history["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "the creation and the write: {history}");
    for entry in entries {
        assert_eq!(entry["actor"], "admin", "{entry}");
        assert_eq!(entry["actor_token"].as_str(), Some(impostor_id.as_str()), "{entry}");
        assert_eq!(entry["actor_tenant"], "tx", "{entry}");
    }
}

/// Issue 14, item 1: no tenant takes over another's names. A zone equal to,
/// inside or enclosing another tenant's zone or a zone file's is refused,
/// as are top-level, reverse-root and operator-reserved names; the refusal
/// never says another tenant holds the name. The operator may allow it.
#[test]
fn a_tenant_cannot_take_over_another_tenants_names() {
    let dir = support::temp_dir("names");
    let file = dir.join("corp.example.zone");
    std::fs::write(
        &file,
        "$ORIGIN corp.example.\n@ 300 IN SOA ns hostmaster 1 60 60 600 60\n@ NS ns\nns A 192.0.2.1\nlogin A 192.0.2.2\n",
    )
    .unwrap();
    let node = Node::start_in_process(
        &Database::sqlite(),
        &["--zone-file", file.to_str().unwrap(), "--reserved-zone", "co.uk"],
    );
    let (_, victim) = token(&node, None, json!({"name": "ty-admin", "role": "admin", "tenant": "ty"}));
    let (_, attacker) = token(&node, None, json!({"name": "tx-admin", "role": "admin", "tenant": "tx"}));
    let create = |secret: &str, body: Value| {
        let (status, problem, _) = json(node.request_as(secret, Method::POST, "/v1/zones").json(&body).send().unwrap());
        (status, problem)
    };
    assert_eq!(create(&victim, json!({"name": "victim.test"})).0, 201);
    assert_eq!(create(&victim, json!({"name": "a.b.deep.test"})).0, 201);
    let put = node
        .request_as(&victim, Method::PUT, "/v1/zones/victim.test/rrsets/www/A")
        .json(&json!({"ttl": 60, "records": ["192.0.2.10"]}))
        .send()
        .unwrap();
    assert_eq!(json(put).0, 200);

    for name in [
        "www.victim.test",
        "victim.test",
        "deep.test",
        "test",
        "com",
        "arpa",
        "in-addr.arpa",
        "login.corp.example",
        "example",
        "co.uk",
    ] {
        let (status, problem) = create(&attacker, json!({"name": name}));
        assert_eq!(status, 403, "{name}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(!detail.contains("exist") && !detail.contains("ty"), "{name}: {detail}");
    }
    assert_eq!(support::control::dns_lookup(node.dns, "www.victim.test.", 1).1, ["192.0.2.10"]);
    // Free names, the tenant's own nesting and a public suffix's children are fine.
    assert_eq!(create(&attacker, json!({"name": "attacker.test"})).0, 201);
    assert_eq!(create(&attacker, json!({"name": "shop.co.uk"})).0, 201);
    assert_eq!(create(&victim, json!({"name": "sub.victim.test"})).0, 201);
    assert_eq!(create(&victim, json!({"name": "victim.test"})).0, 409, "the tenant's own zone exists");
    // Only the operator may allow an overlap, and then it is explicit.
    assert_eq!(create(&attacker, json!({"name": "www.victim.test", "allow_overlap": true})).0, 403);
    let (status, body, _) = json(
        node.request(Method::POST, "/v1/zones")
            .json(&json!({"name": "ops.victim.test", "tenant": "tx", "allow_overlap": true}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 201, "{body}");
}

/// Issue 14, item 4: TSIG keys have a scope. A tenant's key transfers that
/// tenant's zones and no other's; keys of the server's configuration are
/// listed read-only and cannot be deleted through the API.
#[test]
fn tsig_keys_reach_only_their_scope() {
    const CONFIGURED: &str = "ops-xfr:hmac-sha256:b3BzLWtleS1vcHMta2V5LW9wcy1rZXktb3BzLWtleTE=";
    let node = Node::start_in_process(&Database::sqlite(), &["--tsig-key", CONFIGURED]);
    let (_, ty) = token(&node, None, json!({"name": "ty-admin", "role": "admin", "tenant": "ty"}));
    let (_, tx) = token(&node, None, json!({"name": "tx-admin", "role": "admin", "tenant": "tx"}));
    for (secret, zone) in [(&ty, "ours.test"), (&tx, "theirs.test")] {
        let created = node.request_as(secret, Method::POST, "/v1/zones").json(&json!({"name": zone})).send().unwrap();
        assert_eq!(json(created).0, 201);
    }
    let (status, key, _) =
        json(node.request_as(&ty, Method::POST, "/v1/tsigkeys").json(&json!({"name": "ty-xfr"})).send().unwrap());
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["tenant"], "ty");
    let ty_key = format!("ty-xfr.:hmac-sha256:{}", key["secret"].as_str().unwrap());
    assert!(!support::control::axfr_lines(node.dns, "ours.test.", Some(&ty_key)).is_empty());
    assert!(support::control::axfr_lines(node.dns, "theirs.test.", Some(&ty_key)).is_empty());
    // The configured key reaches every zone.
    assert!(!support::control::axfr_lines(node.dns, "theirs.test.", Some(CONFIGURED)).is_empty());
    // Another tenant neither sees nor deletes ty's key.
    let (_, listed, _) = json(node.request_as(&tx, Method::GET, "/v1/tsigkeys").send().unwrap());
    assert_eq!(listed, json!([]));
    assert_eq!(json(node.request_as(&tx, Method::DELETE, "/v1/tsigkeys/ty-xfr").send().unwrap()).0, 404);
    // The operator sees both, the configured one read-only, which stays.
    let (_, listed, _) = json(node.request(Method::GET, "/v1/tsigkeys").send().unwrap());
    let names: Vec<(&str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["read_only"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("ty-xfr.", false), ("ops-xfr.", true)]);
    assert_eq!(json(node.request(Method::DELETE, "/v1/tsigkeys/ops-xfr").send().unwrap()).0, 409);
    assert_eq!(json(node.request_as(&ty, Method::DELETE, "/v1/tsigkeys/ty-xfr").send().unwrap()).0, 204);
}

/// The last operator token cannot be revoked (the API would lock every
/// admin out for good: the finding); `ferrodns token create-admin` makes one
/// offline, which the running node takes at once, and then the old one goes.
#[test]
fn the_last_operator_token_stays_and_create_admin_recovers() {
    for database in [Database::sqlite(), Database::postgres()] {
        let node = Node::start(&database, &[]);
        let root = root_id(&node);
        // A zone-limited system admin does not count as the operator.
        token(&node, None, json!({"name": "alpha-admin", "role": "admin", "zones": ["alpha.test"]}));
        let (status, problem, _) = json(node.request(Method::DELETE, &format!("/v1/tokens/{root}")).send().unwrap());
        assert_eq!(status, 409, "{}: {problem}", database.label());
        assert!(problem["detail"].as_str().unwrap().contains("last admin token"), "{problem}");
        let (status, _, _) = json(node.request(Method::GET, "/v1/tokens").send().unwrap());
        assert_eq!(status, 200, "{}: the operator token was revoked", database.label());

        let mut args = vec!["token", "create-admin", "--name", "rescue"];
        if let Some(url) = database.url() {
            args.extend(["--database-url", url]);
        }
        let made = node.cli(&args);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let secret = String::from_utf8(made.stdout).unwrap().trim().to_string();
        assert!(secret.starts_with("fdns_"), "{secret}");
        let listed = listed_ids(&node, &secret);
        assert!(listed.contains(&root), "{}: the new token is no operator", database.label());

        // With a second operator token, the first may go.
        let (status, body, _) =
            json(node.request_as(&secret, Method::DELETE, &format!("/v1/tokens/{root}")).send().unwrap());
        assert_eq!(status, 204, "{body}");
        let (status, _, _) = json(node.request(Method::GET, "/v1/tokens").send().unwrap());
        assert_eq!(status, 401);
    }
}
