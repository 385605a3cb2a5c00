//! A node started in process, as the library runs it (`App::build`,
//! `Listeners::bind` on port 0, `App::run` until its shutdown signal; see
//! `support::control::Node::start_in_process`): it serves writes and
//! answers, and stops, sockets closed, when told to.

mod support;

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};

#[test]
fn a_node_runs_in_process_on_port_zero_and_stops_on_its_signal() {
    let database = Database::sqlite();
    let node = Node::start_in_process(&database, &[]);
    assert_ne!(node.dns.port(), 0);
    node.create_zone("inproc.test");
    let put = node
        .request(Method::PUT, "/v1/zones/inproc.test/rrsets/www/A")
        .json(&json!({"ttl": 60, "records": ["192.0.2.7"]}))
        .send();
    assert_eq!(json(put.unwrap()).0, 200);
    assert_eq!(dns_lookup(node.dns, "www.inproc.test.", 1).1, ["192.0.2.7"]);
    let api = node.api.clone();
    // Dropping the node sends its shutdown signal and waits for App::run to
    // return Ok (the drop fails the test otherwise).
    drop(node);
    let after = reqwest::blocking::Client::new().get(format!("{api}/v1/health/live")).send();
    assert!(after.is_err(), "the API still answers after shutdown");
}
