//! Probes, the HA state, the OpenAPI document and the fallback route.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::problem::Problem;
use crate::{ApiDoc, ApiState};

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

/// Readiness: the database answers, so writes can succeed.
#[utoipa::path(get, path = "/v1/health/ready", security(()),
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn ready(State(state): State<ApiState>) -> Result<Json<Health>, Problem> {
    state.store.ping().await?;
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

/// The HA state. A single node (SQLite, or one node on PostgreSQL without
/// election) leads itself in term 0.
#[utoipa::path(get, path = "/v1/ha", security(()), responses((status = 200, body = HaState)))]
pub async fn ha(State(state): State<ApiState>) -> Json<HaState> {
    let node = state.settings.node.clone();
    Json(HaState { node: node.clone(), role: "leader", term: 0, leader: node })
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
