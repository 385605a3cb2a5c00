//! A node's `/metrics`: the process's event counters (`ferrodns_metrics`)
//! and this node's state, read at each scrape; and the small HTTP listener
//! (`--metrics-listen`) that serves them, with the health probes, on nodes
//! that run no API (secondaries, `--api-listen off`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ferrodns_api::problem::Problem;
use ferrodns_control::{Election, Leadership};
use ferrodns_forward::Recursion;
use ferrodns_metrics::prometheus::proto::MetricFamily;
use ferrodns_metrics::Family;
use ferrodns_store::Store;
use ferrodns_transfer::peers::Peers;
use ferrodns_transfer::secondary::Secondary;
use ferrodns_zone::live::LiveZones;
use serde_json::json;
use tokio::sync::watch;

/// What a node reports about itself at each scrape.
pub struct NodeState {
    pub node: String,
    /// `control`, `secondary` or `files` (zone files only).
    pub role: &'static str,
    pub live: Arc<LiveZones>,
    /// The election, when this node runs the control plane.
    pub election: Option<Arc<Election>>,
    pub store: Option<Arc<Store>>,
    pub recursion: Arc<Recursion>,
    pub secondary: Option<Arc<Secondary>>,
    /// What each secondary of this node's zones holds.
    pub peers: Arc<Peers>,
    /// Per-zone series for at most this many zones.
    pub zone_limit: usize,
}

impl NodeState {
    /// The exposition the API and the metrics listener serve.
    pub fn exposition(self: Arc<Self>) -> ferrodns_api::Exposition {
        Arc::new(move || ferrodns_metrics::render(self.families()))
    }

    fn families(&self) -> Vec<MetricFamily> {
        let mut families = vec![Family::gauge("ferrodns_info", "This node: its id, role and version; always 1.")
            .sample(&[("node", &self.node), ("role", self.role), ("version", env!("CARGO_PKG_VERSION"))], 1.0)
            .build()];
        let zones = self.live.snapshot();
        families
            .push(Family::gauge("ferrodns_zones", "Zones this node serves.").sample(&[], zones.len() as f64).build());
        if zones.len() <= self.zone_limit {
            let mut serials = Family::gauge("ferrodns_zone_serial", "The SOA serial each zone is served at.");
            let mut records = Family::gauge("ferrodns_zone_records", "Records each served zone holds.");
            for zone in zones.iter() {
                let name = zone.apex().to_string();
                serials.push(&[("zone", &name)], zone.serial().0 as f64);
                records.push(&[("zone", &name)], zone.record_count() as f64);
            }
            families.push(serials.build());
            families.push(records.build());
        }
        if let Some(election) = &self.election {
            let snapshot = election.snapshot();
            families.push(
                Family::gauge("ferrodns_leader", "1 while this node holds the leader lease.")
                    .sample(&[], if snapshot.is_leader { 1.0 } else { 0.0 })
                    .build(),
            );
            families.push(
                Family::gauge("ferrodns_term", "The election term this node last saw.")
                    .sample(&[], snapshot.term.max(0) as f64)
                    .build(),
            );
        }
        if let Some(store) = &self.store {
            let (open, idle) = store.pool_usage();
            families.push(
                Family::gauge("ferrodns_db_pool_connections", "Database connections of the control plane's pool.")
                    .sample(&[("state", "idle")], idle as f64)
                    .sample(&[("state", "in_use")], open.saturating_sub(idle as u32) as f64)
                    .build(),
            );
        }
        let lags = self.peers.report(0);
        if !lags.is_empty() {
            let mut serials = Family::gauge(
                "ferrodns_secondary_lag_serials",
                "Serial steps each secondary is behind, in the zone where it is furthest behind.",
            );
            let mut seconds = Family::gauge(
                "ferrodns_secondary_lag_seconds",
                "Seconds each secondary has gone without a zone's current serial since it was published; 0 when in sync.",
            );
            for lag in &lags {
                serials.push(&[("secondary", &lag.peer)], lag.lag_serials as f64);
                seconds.push(&[("secondary", &lag.peer)], lag.lag_seconds);
            }
            families.push(serials.build());
            families.push(seconds.build());
        }
        let cache = self.recursion.cache().stats();
        let counters = [
            ("ferrodns_cache_hits_total", "Forwarded queries answered from the cache.", cache.hits),
            ("ferrodns_cache_misses_total", "Forwarded queries the cache could not answer.", cache.misses),
            ("ferrodns_cache_stale_served_total", "Stale answers served (RFC 8767).", cache.stale_served),
            ("ferrodns_forward_failures_total", "Forwarded queries no forwarder answered.", cache.upstream_failures),
        ];
        for (name, help, value) in counters {
            families.push(Family::counter(name, help).sample(&[], value as f64).build());
        }
        families.push(
            Family::gauge("ferrodns_cache_entries", "Answers in the cache.").sample(&[], cache.entries as f64).build(),
        );
        families.push(
            Family::gauge("ferrodns_cache_bytes", "Memory the cache's answers take, as counted against --cache-size.")
                .sample(&[], cache.memory as f64)
                .build(),
        );
        if let Some(secondary) = &self.secondary {
            let followed = secondary.followed_zones();
            let expired = followed.iter().filter(|zone| zone.expired).count();
            let loading = followed.iter().filter(|zone| zone.serial.is_none()).count();
            families.push(
                Family::gauge("ferrodns_secondary_zones", "Zones the secondary role follows, by state.")
                    .sample(&[("state", "expired")], expired as f64)
                    .sample(&[("state", "not_loaded")], loading as f64)
                    .sample(&[("state", "ready")], followed.iter().filter(|z| z.is_ready()).count() as f64)
                    .build(),
            );
            if followed.len() <= self.zone_limit {
                let mut age = Family::gauge(
                    "ferrodns_secondary_zone_confirmed_age_seconds",
                    "Seconds since a primary last confirmed each followed zone current.",
                );
                let mut expiry = Family::gauge(
                    "ferrodns_secondary_zone_expiry_seconds",
                    "Seconds until each followed zone expires (SOA expire) unless a primary is reached.",
                );
                for zone in followed.iter() {
                    let name = zone.apex.to_string();
                    if let Some(ago) = zone.confirmed_ago {
                        age.push(&[("zone", &name)], ago.as_secs_f64());
                    }
                    if let Some(left) = zone.expires_in() {
                        expiry.push(&[("zone", &name)], left.as_secs_f64());
                    }
                }
                families.push(age.build());
                families.push(expiry.build());
            }
        }
        families
    }
}

/// Serves `/metrics` and `/v1/health/{live,ready}` on `address` until
/// `shutdown`. Ready means: on a secondary, every followed zone loaded and
/// none expired; elsewhere, DNS is serving.
pub async fn serve_metrics(
    listener: std::net::TcpListener,
    state: Arc<NodeState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("cannot serve metrics")?;
    tracing::info!(metrics = %listener.local_addr()?, "serving /metrics and the health probes");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/health/live", get(ferrodns_api::live))
        .route("/v1/health/ready", get(ready))
        .route("/v1/secondary/zones", get(secondary_zones))
        .with_state(state);
    // A scraper and a few probes: a small cap, and slow clients cut off.
    let limits =
        crate::http::HttpLimits { header_timeout: Duration::from_secs(5), max_connections: 64, max_per_client: 16 };
    Ok(tokio::spawn(async move {
        crate::http::serve(listener, app, limits, None, shutdown).await.context("metrics server failed")
    }))
}

async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    ferrodns_api::metrics_response(state.exposition()).await
}

/// Query of the secondary's zone view.
#[derive(serde::Deserialize)]
struct ZonesQuery {
    /// At most this many zones (default 1000, at most 10,000).
    limit: Option<usize>,
    /// Zones after this one in name order: the `next` of the page before.
    after: Option<String>,
}

/// A secondary's zones, read-only, a page at a time: the serial served,
/// the primary that answered last, when a primary last confirmed it,
/// when it is refreshed next, how long until it expires, and why the last
/// refresh failed. 404 on a node without the secondary role.
async fn secondary_zones(
    State(state): State<Arc<NodeState>>,
    axum::extract::Query(query): axum::extract::Query<ZonesQuery>,
) -> Response {
    let Some(secondary) = &state.secondary else {
        return Problem::not_found("this node does not run the secondary role").into_response();
    };
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = query.after.map(|name| {
        let name = name.to_ascii_lowercase();
        if name.ends_with('.') {
            name
        } else {
            format!("{name}.")
        }
    });
    // Paged by the names as written, so that `after` means what it says.
    let mut followed: Vec<(String, _)> =
        secondary.followed_zones().into_iter().map(|z| (z.apex.to_string(), z)).collect();
    followed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut page: Vec<serde_json::Value> = Vec::new();
    let mut next = None;
    for (name, zone) in followed.iter().filter(|(name, _)| after.as_ref().is_none_or(|after| name > after)) {
        if page.len() == limit {
            next = page.last().and_then(|last| last["zone"].as_str().map(String::from));
            break;
        }
        page.push(json!({
            "zone": name,
            "serial": zone.serial.map(|s| s.0),
            "primary": zone.primary.map(|p| p.to_string()),
            "last_refresh_seconds_ago": zone.confirmed_ago.map(|d| d.as_secs()),
            "next_refresh_in_seconds": zone.next_refresh_in.map(|d| d.as_secs()),
            "expires_in_seconds": zone.expires_in().map(|d| d.as_secs()),
            "expired": zone.expired,
            "ready": zone.is_ready(),
            "last_error": zone.last_error,
        }));
    }
    Json(json!({"zones": page, "next": next})).into_response()
}

async fn ready(State(state): State<Arc<NodeState>>) -> Response {
    let Some(secondary) = &state.secondary else { return Json(json!({"status": "ready"})).into_response() };
    let waiting: Vec<String> = secondary
        .followed_zones()
        .iter()
        .filter(|zone| !zone.is_ready())
        .map(|zone| format!("{} ({})", zone.apex, if zone.expired { "expired" } else { "not loaded" }))
        .collect();
    if waiting.is_empty() {
        return Json(json!({"status": "ready"})).into_response();
    }
    let detail = format!(
        "{} followed zones are not served: {}",
        waiting.len(),
        waiting.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
    );
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", detail).into_response()
}
