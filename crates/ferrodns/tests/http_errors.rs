//! Every error the API answers is problem+json (issue 14, item 17), also
//! those the HTTP framework writes itself.

mod support;

use reqwest::Method;
use support::control::{Database, Node};

#[test]
fn framework_errors_are_problems_too() {
    let node = Node::start_in_process(&Database::sqlite(), &[]);
    // A method the route lacks: 405 with its Allow header.
    let response = node.request(Method::PATCH, "/v1/tokens").send().unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
    assert!(allow.as_deref().is_some_and(|a| a.contains("GET") && a.contains("POST")), "{allow:?}");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["status"], 405, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    // A path parameter that is not UTF-8.
    let response = node.request(Method::GET, "/v1/zones/%FF%FE").send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["status"], 400, "{body}");
}

/// Issue 14, item 15: a Unicode zone name becomes its A-labels (IDNA 2008),
/// never raw UTF-8 octets in a label; and DNS answers for the A-label name.
#[test]
fn unicode_zone_names_become_a_labels() {
    let node = Node::start_in_process(&Database::sqlite(), &[]);
    let created =
        node.request(Method::POST, "/v1/zones").json(&serde_json::json!({"name": "bücher.test"})).send().unwrap();
    let (status, zone, _) = support::control::json(created);
    assert_eq!(status, 201, "{zone}");
    assert_eq!(zone["name"], "xn--bcher-kva.test.");
    let put = node
        .request(Method::PUT, "/v1/zones/bücher.test/rrsets/www/A")
        .json(&serde_json::json!({"ttl": 60, "records": ["192.0.2.8"]}))
        .send()
        .unwrap();
    assert_eq!(support::control::json(put).0, 200);
    let (_, data) = support::control::dns_lookup(node.dns, "www.xn--bcher-kva.test.", 1);
    assert_eq!(data, ["192.0.2.8"]);
    let bad =
        node.request(Method::POST, "/v1/zones").json(&serde_json::json!({"name": "a\u{0}ü.test"})).send().unwrap();
    assert!(support::control::json(bad).0 >= 400);
}
