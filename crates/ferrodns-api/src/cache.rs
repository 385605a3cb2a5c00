//! The cache of forwarded answers: its counters, and flushing it.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::input;
use crate::problem::Problem;
use crate::ApiState;

/// This node's cache of forwarded answers.
#[derive(Serialize, ToSchema)]
pub struct CacheView {
    /// Answers held.
    pub entries: usize,
    /// Octets they take, as counted against `capacity_bytes`.
    pub memory_bytes: usize,
    /// `--cache-size`.
    pub capacity_bytes: usize,
    /// Queries answered from the cache since the start.
    pub hits: u64,
    /// Queries the cache could not answer fresh.
    pub misses: u64,
    /// Expired answers served because every forwarder failed (RFC 8767).
    pub stale_served: u64,
    /// Misses no forwarder answered.
    pub upstream_failures: u64,
}

/// The cache's counters. The cache is the node's, not a tenant's: the
/// operator's admin tokens only.
#[utoipa::path(get, path = "/v1/cache", responses((status = 200, body = CacheView)))]
pub async fn get_cache(State(state): State<ApiState>, caller: Caller) -> Result<Json<CacheView>, Problem> {
    caller.require_operator("the cache is")?;
    let stats = state.control.forward.as_ref().map(|forward| forward.cache().stats()).unwrap_or_default();
    Ok(Json(CacheView {
        entries: stats.entries,
        memory_bytes: stats.memory,
        capacity_bytes: stats.capacity,
        hits: stats.hits,
        misses: stats.misses,
        stale_served: stats.stale_served,
        upstream_failures: stats.upstream_failures,
    }))
}

/// Query of `DELETE /v1/cache`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlushQuery {
    /// Flush this name and the names below it only.
    pub name: Option<String>,
}

/// What a flush took out.
#[derive(Serialize, ToSchema)]
pub struct Flushed {
    pub flushed: usize,
}

/// Flushes the cache, or (`?name=N`) N and the names below it. The
/// operator's admin tokens only.
#[utoipa::path(delete, path = "/v1/cache", params(FlushQuery), responses((status = 200, body = Flushed)))]
pub async fn flush_cache(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<FlushQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Flushed>, Problem> {
    caller.require_operator("the cache is")?;
    let Query(query) = query.map_err(|e| Problem::invalid(e.body_text()))?;
    let name = match &query.name {
        Some(text) => Some(input::zone_name(text).map_err(|_| {
            Problem::invalid("bad query").with_error("/name", format!("{text:?} is not a domain name"))
        })?),
        None => None,
    };
    let flushed = match &state.control.forward {
        Some(forward) => forward.cache().flush(name.as_ref().map(|n| n.as_wire())),
        None => 0,
    };
    tracing::info!(name = ?name.map(|n| n.to_string()), flushed, by = %caller.token.id, "cache flushed");
    Ok(Json(Flushed { flushed }))
}
