//! What every API request leaves behind: a request id (returned in
//! `X-Request-Id`), one log line with the actor, the route, the status and
//! the time taken, and the request counters and latency histogram of
//! `/metrics`, labelled by route template (`/v1/zones/{zone}`), never by
//! the zone or token in the path, so that their number stays bounded.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The response header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Who made a request, filled in by the [`crate::auth::Caller`] extractor
/// once the token is known, and read when the request is logged.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<OnceLock<String>>);

impl ActorSlot {
    /// Records the actor as `name (id, tenant)`.
    pub fn set(&self, name: &str, id: &str, tenant: &str) {
        let _ = self.0.set(format!("{name} ({id}, tenant {tenant})"));
    }
}

/// The middleware: id, metrics and the log line.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = ferrodns_control::tokens::new_id(8);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unrouted".to_string());
    let method = request.method().clone();
    let actor = ActorSlot::default();
    request.extensions_mut().insert(actor.clone());
    let mut response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let metrics = ferrodns_metrics::global();
    metrics.api_requests.with_label_values(&[route.as_str(), method.as_str(), status.as_str()]).inc();
    metrics.api_duration.with_label_values(&[route.as_str(), method.as_str()]).observe(elapsed.as_secs_f64());
    // Probes and scrapes come every few seconds: they are counted, not logged.
    if !route.starts_with("/v1/health/") && route != "/metrics" {
        let actor = actor.0.get().map_or("anonymous", String::as_str);
        let ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
        if status.is_server_error() {
            tracing::warn!(request_id = %id, actor, %method, route, status = status.as_u16(), ms, "API request");
        } else {
            tracing::info!(request_id = %id, actor, %method, route, status = status.as_u16(), ms, "API request");
        }
    }
    response
}
