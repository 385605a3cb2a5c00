//! Probes, the HA state, the OpenAPI document and the fallback route.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::problem::Problem;
use crate::{ApiDoc, ApiState, Exposition};

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/v1/health/live", security(()), responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Query of the readiness probe.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadyQuery {
    /// `leader`: ready only on the current leader (for a VIP or a Service selector).
    pub role: Option<String>,
}

/// Readiness: the database answers, so writes can succeed; with
/// `?role=leader`, also this node leads.
#[utoipa::path(get, path = "/v1/health/ready", security(()), params(ReadyQuery),
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn ready(
    State(state): State<ApiState>,
    axum::extract::Query(query): axum::extract::Query<ReadyQuery>,
) -> Result<Json<Health>, Problem> {
    state.control.store.ping().await?;
    if query.role.as_deref() == Some("leader") {
        let leads = state.control.leadership.snapshot().is_leader;
        if !leads {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-leader",
                "Not the leader",
                "this node is a follower; the leader answers 200 here",
            ));
        }
    }
    Ok(Json(Health { status: "ready" }))
}

/// This node's place in the control plane.
#[derive(Serialize, ToSchema)]
pub struct HaState {
    pub node: String,
    /// `leader` or `follower`.
    pub role: &'static str,
    pub term: u64,
    pub leader: String,
}

/// The HA state: this node, its role, the term, and the leader (empty while
/// no node holds the lease). A single SQLite node leads itself in term 1.
#[utoipa::path(get, path = "/v1/ha", security(()), responses((status = 200, body = HaState)))]
pub async fn ha(State(state): State<ApiState>) -> Json<HaState> {
    let snapshot = state.control.leadership.snapshot();
    Json(HaState {
        node: snapshot.node,
        role: if snapshot.is_leader { "leader" } else { "follower" },
        term: snapshot.term.max(0) as u64,
        leader: snapshot.leader.unwrap_or_default(),
    })
}

/// This node's metrics, in Prometheus's text format (no token: scrapers
/// and probes reach it as they reach the health endpoints).
pub async fn metrics(State(state): State<ApiState>) -> Response {
    match &state.metrics {
        Some(exposition) => metrics_response(exposition.clone()).await,
        None => not_found().await.into_response(),
    }
}

/// A scrape's response: the exposition written off the async workers
/// (summing the workers and reading the zones is quick, but not an async
/// worker's business), as Prometheus's text format. The metrics listener
/// of nodes without the API answers with it too.
pub async fn metrics_response(exposition: Exposition) -> Response {
    let text = tokio::task::spawn_blocking(move || exposition()).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, ferrodns_metrics::CONTENT_TYPE)], text).into_response()
}

/// The OpenAPI document.
pub async fn openapi() -> Response {
    let body = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Anything not routed.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", "no such endpoint; see /v1/openapi.json")
}
