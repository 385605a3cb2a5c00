//! `/metrics`, the request log and the probes (issue 16), on real
//! processes: what a scrape shows after known traffic, that promtool
//! accepts it, and that a secondary without the API can be probed and
//! scraped on `--metrics-listen`.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node};
use support::secondary::SecondaryNode;

/// The value of the sample `series` (name and labels as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on a scrape: Prometheus's own lint.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scrape_counts_what_was_asked_and_promtool_accepts_it() {
    let node = Node::start(&Database::sqlite(), &[]);
    let created = node.request(Method::POST, "/v1/zones").json(&json!({"name": "metrics.test"})).send().unwrap();
    let request_id = created.headers().get("x-request-id").expect("a request id").to_str().unwrap().to_string();
    assert_eq!(created.status(), 201);
    let put = node
        .request(Method::PUT, "/v1/zones/metrics.test/rrsets/www/A")
        .json(&json!({"ttl": 300, "records": ["192.0.2.1"]}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    for _ in 0..3 {
        assert_eq!(dns_lookup(node.dns, "www.metrics.test.", 1).0, "NoError");
    }
    assert_eq!(dns_lookup(node.dns, "nothing.metrics.test.", 28).0, "NXDomain");
    let (status, _, _) = json(node.anonymous(Method::GET, "/v1/zones").send().unwrap());
    assert_eq!(status, 401);

    let scrape = node.anonymous(Method::GET, "/metrics").send().unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = scrape.text().unwrap();
    promtool_accepts(&text);
    let at_least = |series: &str, floor: f64| {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(value >= floor, "{series} is {value}, want at least {floor}");
    };
    at_least(r#"ferrodns_dns_queries_total{qtype="A",transport="udp"}"#, 3.0);
    at_least(r#"ferrodns_dns_queries_total{qtype="AAAA",transport="udp"}"#, 1.0);
    at_least(r#"ferrodns_dns_responses_total{rcode="NXDOMAIN",transport="udp"}"#, 1.0);
    at_least(r#"ferrodns_dns_answer_duration_seconds_count{transport="udp"}"#, 4.0);
    at_least(
        r#"ferrodns_api_requests_total{method="PUT",route="/v1/zones/{zone}/rrsets/{name}/{rtype}",status="200"}"#,
        1.0,
    );
    at_least(r#"ferrodns_api_requests_total{method="GET",route="/v1/zones",status="401"}"#, 1.0);
    at_least(r#"ferrodns_db_transaction_duration_seconds_count{operation="change"}"#, 1.0);
    at_least(r#"ferrodns_zone_serial{zone="metrics.test."}"#, 2.0);
    at_least(r#"ferrodns_zone_records{zone="metrics.test."}"#, 3.0);
    at_least("ferrodns_leader", 1.0);
    at_least("ferrodns_zones", 1.0);
    assert!(!text.contains("zone=\"metrics.test\",route"), "routes are templates, not paths");

    // One line per request, with its id and actor; the failed token too.
    let log = node.log();
    let line =
        log.lines().find(|l| l.contains(&request_id)).unwrap_or_else(|| panic!("no line for {request_id}:\n{log}"));
    assert!(
        line.contains("actor=\"admin (") && line.contains("status=201") && line.contains("route=\"/v1/zones\""),
        "{line}"
    );
    assert!(log.contains("API authentication failed"), "{log}");
}

#[test]
fn per_zone_series_stop_at_the_zone_limit() {
    let node = Node::start(&Database::sqlite(), &["--metrics-zone-limit", "1"]);
    for name in ["one.test", "two.test"] {
        node.create_zone(name);
    }
    let text = node.anonymous(Method::GET, "/metrics").send().unwrap().text().unwrap();
    assert!(sample(&text, "ferrodns_zones").unwrap() >= 2.0);
    assert!(!text.contains("ferrodns_zone_serial{"), "{text}");
}

/// The metrics listener's address, from the secondary's log.
fn metrics_address(secondary: &SecondaryNode) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = secondary.log();
        if let Some(line) = log.lines().find(|l| l.contains("serving /metrics")) {
            let rest = &line[line.find("metrics=").unwrap() + 8..];
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no metrics listener logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A secondary runs no API: it is probed and scraped on --metrics-listen,
/// and is ready only once every zone it follows is served.
#[test]
fn a_secondary_is_probed_and_scraped_on_its_metrics_listener() {
    let primary = Node::start(&Database::sqlite(), &["--allow-transfer", "127.0.0.1/32"]);
    primary.create_zone("followed.test");
    let secondary = SecondaryNode::start(
        0,
        &[primary.dns],
        &[
            "--secondary-zone",
            "followed.test.",
            "--secondary-zone",
            "missing.test.",
            "--catalog-zone",
            "off",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let base = format!("http://{}", metrics_address(&secondary));
    let http = reqwest::blocking::Client::new();
    assert_eq!(http.get(format!("{base}/v1/health/live")).send().unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dns_lookup(secondary.dns, "followed.test.", 6).0 != "NoError" {
        assert!(Instant::now() < deadline, "followed.test never transferred:\n{}", secondary.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = http.get(format!("{base}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status(), 503);
    let problem: serde_json::Value = ready.json().unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("missing.test. (not loaded)"), "{problem}");

    let text = http.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    promtool_accepts(&text);
    assert_eq!(sample(&text, r#"ferrodns_secondary_zones{state="ready"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"ferrodns_secondary_zones{state="not_loaded"}"#), Some(1.0), "{text}");
    assert!(sample(&text, r#"ferrodns_transfers_in_total{result="ok",type="AXFR"}"#).is_some(), "{text}");
    assert!(text.contains(r#"ferrodns_info{node="#) && text.contains(r#"role="secondary""#), "{text}");
    let primary_text = primary.anonymous(Method::GET, "/metrics").send().unwrap().text().unwrap();
    assert!(
        sample(&primary_text, r#"ferrodns_transfers_out_total{result="ok",type="AXFR"}"#).is_some(),
        "{primary_text}"
    );
    assert_eq!(
        sample(&primary_text, r#"ferrodns_secondary_lag_serials{secondary="127.0.0.1"}"#),
        Some(0.0),
        "{primary_text}"
    );

    // The dashboard and the alert rules name only metrics a real scrape
    // has: a renamed metric fails here, not silently on a graph. The
    // secondary's refresh of missing.test fails (its SOA query is refused),
    // which the transfer-failure alert reads.
    let deadline = Instant::now() + Duration::from_secs(20);
    let secondary_text = loop {
        let text = http.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
        if text.contains(r#"ferrodns_transfers_in_total{result="failed""#) {
            break text;
        }
        assert!(Instant::now() < deadline, "no failed refresh counted:\n{text}\n{}", secondary.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let scraped = format!("{primary_text}{secondary_text}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = root.join("deploy/helm/ferrodns/files/alerts.yaml");
    for file in [root.join("deploy/grafana/ferrodns.json"), rules.clone()] {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut named: Vec<&str> = text
            .match_indices("ferrodns_")
            .map(|(at, _)| {
                let end =
                    text[at..].find(|c: char| !(c.is_ascii_lowercase() || c == '_')).map_or(text.len(), |n| at + n);
                &text[at..end]
            })
            .collect();
        named.sort();
        named.dedup();
        assert!(named.len() > 5, "{}: {named:?}", file.display());
        for name in named {
            let series = name.strip_suffix("_bucket").map_or(name.to_string(), |base| format!("{base}_bucket{{"));
            let present = scraped.lines().any(|line| line.starts_with(&series) && !line.starts_with('#'));
            assert!(present, "{} names {name}, which no scrape has", file.display());
        }
    }
    let checked = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));

    // The secondary's own view of its zones, read-only and paged.
    let view: serde_json::Value =
        http.get(format!("{base}/v1/secondary/zones?limit=1")).send().unwrap().json().unwrap();
    assert_eq!(view["zones"][0]["zone"], "followed.test.", "{view}");
    assert_eq!(view["zones"][0]["primary"], primary.dns.to_string(), "{view}");
    assert_eq!(view["zones"][0]["ready"], true, "{view}");
    assert!(view["zones"][0]["next_refresh_in_seconds"].as_u64().is_some(), "{view}");
    assert!(view["zones"][0]["expires_in_seconds"].as_u64().unwrap() > 0, "{view}");
    assert_eq!(view["next"], "followed.test.", "{view}");
    let rest: serde_json::Value =
        http.get(format!("{base}/v1/secondary/zones?after=followed.test.")).send().unwrap().json().unwrap();
    assert_eq!(rest["zones"][0]["zone"], "missing.test.", "{rest}");
    assert_eq!(rest["zones"][0]["ready"], false, "{rest}");
    assert!(rest["zones"][0]["last_error"].as_str().is_some_and(|e| e.contains("SOA")), "{rest}");

    // `ferrodns status`: the control node, the secondary as the primary
    // sees it, and as it sees itself.
    let status = primary.cli(&["status", "--token", &primary.token, "--secondary", &base]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{out}{}", String::from_utf8_lossy(&status.stderr));
    assert!(out.contains("Control nodes") && out.contains("leader"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("127.0.0.1") && l.contains(" 1 ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&base) && l.contains(" 2 ")), "{out}");
}
