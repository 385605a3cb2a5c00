//! The REST API: an HTTP adapter over the control plane.
//!
//! ```text
//!   request ─► axum router ─► Caller (bearer token → role, tenant, zone list)
//!                 │
//!                 ├─ input: JSON body (400 syntax / 422 shape, with pointers),
//!                 │         names, types, records (the master-file parser)
//!                 ├─ writes: ferrodns_control::ControlPlane (one transaction,
//!                 │         the zone rules, history, publication, catalog)
//!                 ├─ reads: ferrodns-store directly
//!                 └─ response, or a problem+json (problem.rs maps every error)
//! ```
//!
//! Handlers parse and authorize; every write is one call into the control
//! plane, which owns the rules. **Invariant:** a write answers 2xx only after
//! its change is committed *and* served by this node's DNS workers, so a
//! client that reads its own write over DNS right after the response sees it.

pub mod auth;
mod cache;
pub mod input;
pub mod observe;
pub mod problem;
pub mod records;
pub mod replication;
mod system;
pub use system::{live, metrics_response};
mod tokens;
mod zones;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use ferrodns_control::ControlPlane;
use utoipa::OpenApi;

/// Limits on requests.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most changes in one batch.
    pub max_changes_per_batch: usize,
    /// A request not answered within this long (its body read included)
    /// gets 408, so a client that trickles its body holds nothing for long.
    pub request_timeout: std::time::Duration,
    /// Most requests in flight at once; more get 503 with Retry-After.
    pub max_in_flight: usize,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            max_body_bytes: 32 << 20,
            max_changes_per_batch: 10_000,
            request_timeout: std::time::Duration::from_secs(60),
            max_in_flight: 256,
        }
    }
}

/// Imports and exports that may run at once: each can hold a whole zone's
/// worth of memory, so a few of them, by a viewer token even, must not add
/// up to the server's memory.
pub const HEAVY_AT_ONCE: usize = 4;

/// What every handler gets.
#[derive(Clone)]
pub struct ApiState {
    pub control: Arc<ControlPlane>,
    pub settings: Arc<ApiSettings>,
    /// One permit per import or export running.
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// This node's `/metrics` exposition (events and the node's state).
    pub metrics: Option<Exposition>,
}

/// Writes a node's metrics in Prometheus's text format.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

impl ApiState {
    pub fn new(control: Arc<ControlPlane>, settings: ApiSettings) -> ApiState {
        ApiState {
            control,
            settings: Arc::new(settings),
            heavy: Arc::new(tokio::sync::Semaphore::new(HEAVY_AT_ONCE)),
            metrics: None,
        }
    }
}

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "ferrodns", description = "Zones and records of the ferrodns authoritative DNS service."),
    paths(
        system::live,
        system::ready,
        system::ha,
        zones::create_zone,
        zones::list_zones,
        zones::get_zone,
        zones::update_zone,
        zones::delete_zone,
        zones::export_zone,
        zones::import_zone,
        records::list_rrsets,
        records::get_rrset,
        records::put_rrset,
        records::delete_rrset,
        records::post_changes,
        records::list_changes,
        records::get_change,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
        replication::create_tsig_key,
        replication::list_tsig_keys,
        replication::delete_tsig_key,
        replication::zone_secondaries,
        replication::secondaries,
        cache::get_cache,
        cache::flush_cache,
    ),
    components(schemas(problem::Problem, problem::ProblemItem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
        common_responses(openapi);
    }
}

/// Adds to every operation the problem statuses that any handler of its
/// kind can answer, which the handlers' own lists leave out: the token's
/// (401, 403), the body's (400, 413), and the store's (500, 503). Public
/// operations (`security(())`: the probes) answer none of them.
fn common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Ref;
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
            )
            .build()
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            if operation.security.is_some() {
                continue;
            }
            let mut common = vec![
                ("401", "no token, a malformed Authorization header, or an unknown or revoked token"),
                ("403", "the token's role or zone list does not allow this"),
                ("500", "the server failed; see its log"),
                ("503", "the database cannot be reached; DNS keeps answering"),
            ];
            if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) || operation.request_body.is_some() {
                common.push(("400", "a malformed request: a bad parameter, header or body"));
            }
            if operation.request_body.is_some() {
                common.push(("413", "the body is over --max-body-bytes"));
                common.push(("422", "the body is well-formed but wrong; errors[] points at each fault"));
            }
            for (status, description) in common {
                operation.responses.responses.entry(status.to_string()).or_insert_with(|| problem(description).into());
            }
        }
    }
}

/// The bounds every request is under: a slot among `max_in_flight` (503
/// when none is free) and `request_timeout` to be answered (408).
async fn bounded(
    slots: Arc<tokio::sync::Semaphore>,
    timeout: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(_slot) = slots.try_acquire_owned() else {
        return problem::Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too many requests in flight",
            "the server is answering as many requests as it takes at once; try again shortly",
        )
        .into_response();
    };
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem::Problem::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            format!("the request was not read and answered within {} s", timeout.as_secs()),
        )
        .into_response(),
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let limit = state.settings.max_body_bytes;
    let slots = Arc::new(tokio::sync::Semaphore::new(state.settings.max_in_flight.max(1)));
    let timeout = state.settings.request_timeout;
    Router::new()
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/health/live", get(system::live))
        .route("/v1/health/ready", get(system::ready))
        .route("/v1/ha", get(system::ha))
        .route("/metrics", get(system::metrics))
        .route("/v1/zones", post(zones::create_zone).get(zones::list_zones))
        .route("/v1/zones/{zone}", get(zones::get_zone).patch(zones::update_zone).delete(zones::delete_zone))
        .route("/v1/zones/{zone}/export", get(zones::export_zone))
        .route("/v1/zones/{zone}/import", post(zones::import_zone))
        .route("/v1/zones/{zone}/rrsets", get(records::list_rrsets))
        .route(
            "/v1/zones/{zone}/rrsets/{name}/{rtype}",
            get(records::get_rrset).put(records::put_rrset).delete(records::delete_rrset),
        )
        .route("/v1/zones/{zone}/changes", post(records::post_changes).get(records::list_changes))
        .route("/v1/zones/{zone}/changes/{id}", get(records::get_change))
        .route("/v1/tokens", post(tokens::create_token).get(tokens::list_tokens))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        .route("/v1/cache", get(cache::get_cache).delete(cache::flush_cache))
        .route("/v1/tsigkeys", post(replication::create_tsig_key).get(replication::list_tsig_keys))
        .route("/v1/tsigkeys/{name}", axum::routing::delete(replication::delete_tsig_key))
        .route("/v1/zones/{zone}/secondaries", get(replication::zone_secondaries))
        .route("/v1/secondaries", get(replication::secondaries))
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(problem::errors_as_problems))
        .layer(axum::middleware::from_fn(move |request, next| bounded(slots.clone(), timeout, request, next)))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}
