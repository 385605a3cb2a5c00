//! A node started in process, as the library runs it: `App::build`,
//! `Listeners::bind` on port 0 (so no port is probed and released first),
//! and `App::run` until the test's own shutdown signal.

mod support;

use std::time::{Duration, Instant};

use ferrodns::config::ServeSettings;
use ferrodns::{App, Listeners};
use reqwest::blocking::Client;
use serde_json::json;
use support::control::{dns_lookup, json};

#[test]
fn a_node_runs_in_process_on_port_zero_and_stops_on_its_signal() {
    let dir = support::temp_dir("in-process");
    let data_dir = dir.to_str().unwrap();
    let settings = ServeSettings::from_flags([
        "--dns-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--udp-workers",
        "1",
    ])
    .unwrap();
    let listeners = Listeners::bind(&settings).unwrap();
    let dns = listeners.dns_addresses()[0];
    let api = format!("http://{}", listeners.api_address().unwrap());
    assert_ne!(dns.port(), 0);
    let app = App::build(settings).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let node = std::thread::spawn(move || runtime.block_on(app.run(listeners, shutdown)));

    let http = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{api}/v1/health/ready")).send().is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the node did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_string();
    let created = http.post(format!("{api}/v1/zones")).bearer_auth(&token).json(&json!({"name": "inproc.test"})).send();
    assert_eq!(json(created.unwrap()).0, 201);
    let put = http
        .put(format!("{api}/v1/zones/inproc.test/rrsets/www/A"))
        .bearer_auth(&token)
        .json(&json!({"ttl": 60, "records": ["192.0.2.7"]}))
        .send();
    assert_eq!(json(put.unwrap()).0, 200);
    assert_eq!(dns_lookup(dns, "www.inproc.test.", 1).1, ["192.0.2.7"]);

    stop.send(true).unwrap();
    node.join().unwrap().unwrap();
    assert!(http.get(format!("{api}/v1/health/live")).send().is_err(), "the API still answers after shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
