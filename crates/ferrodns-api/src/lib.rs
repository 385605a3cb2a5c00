//! The REST API: the only crate that speaks HTTP and JSON.
//!
//! ```text
//!   request ─► axum router ─► Caller (bearer token → role, tenant, zone list)
//!                 │
//!                 ├─ input: JSON body (400 syntax / 422 shape, with pointers),
//!                 │         names, types, records (the master-file parser)
//!                 ├─ ferrodns-store: one transaction per change (zone row lock,
//!                 │         plan, write, serial, journal)
//!                 ├─ publish: the diff reaches the served zone set
//!                 └─ response, or a problem+json (problem.rs maps every error)
//! ```
//!
//! **Invariant:** a write answers 2xx only after its change is committed
//! *and* served by this node's DNS workers, so a client that reads its own
//! write over DNS right after the response sees it.

pub mod auth;
pub mod catalog;
pub mod input;
pub mod problem;
mod records;
pub mod replication;
mod system;
mod tokens;
mod zones;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use ferrodns_proto::Name;
use ferrodns_store::{Store, StoreError, ZoneRecord};
use ferrodns_zone::edit::Diff;
use ferrodns_zone::live::{build_zone, Applied, LiveZones};
use utoipa::OpenApi;

use crate::problem::Problem;

/// Defaults for new zones and limits on requests.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// The NS RRset of a new zone, unless the request names its own.
    pub default_nameservers: Vec<Name>,
    /// TTL of a new zone's SOA and NS.
    pub default_ttl: u32,
    /// SOA refresh, retry, expire and minimum (negative-caching TTL) of new zones.
    pub soa_timers: [u32; 4],
    /// Most changes in one batch.
    pub max_changes_per_batch: usize,
    /// This node's name, for `/v1/ha`.
    pub node: String,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            max_body_bytes: 32 << 20,
            default_nameservers: vec![Name::parse("ns.invalid.", None).expect("valid name")],
            default_ttl: 3600,
            soa_timers: [3600, 600, 1_209_600, 300],
            max_changes_per_batch: 10_000,
            node: "ferrodns".to_string(),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub live: Arc<LiveZones>,
    pub settings: Arc<ApiSettings>,
    pub zone_locks: Arc<ZoneLocks>,
    /// The catalog zone to keep in step with created and deleted zones.
    pub catalog: Option<Arc<ferrodns_transfer::catalog::Catalog>>,
    /// TSIG keys and secondaries' serials, when replication runs.
    pub replication: Option<Arc<replication::Replication>>,
    /// This node's place in the control plane.
    pub leadership: Option<Arc<dyn Leadership>>,
}

/// A node's view of the leader election, for `/v1/ha` and readiness.
#[derive(Clone, Debug)]
pub struct HaSnapshot {
    pub node: String,
    pub leader: Option<String>,
    pub term: i64,
    pub is_leader: bool,
}

/// Who leads; implemented by the binary's election.
pub trait Leadership: Send + Sync {
    fn snapshot(&self) -> HaSnapshot;
}

/// One async lock per zone, held from a change's transaction to its
/// publication. The database already serializes writers to a zone; holding
/// this too makes this node publish its own changes in commit order, so a
/// burst of writers does not force full reloads (and a delete cannot be
/// overtaken by the publication of an earlier change, which would serve
/// the deleted zone again).
#[derive(Default)]
pub struct ZoneLocks {
    locks: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
}

impl ZoneLocks {
    /// Waits for the zone's lock.
    pub async fn lock(&self, apex: &Name) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(apex.to_lowercase().as_wire().to_vec()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Forgets a deleted zone's lock.
    pub fn forget(&self, apex: &Name) {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(apex.to_lowercase().as_wire());
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

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/health/live", get(system::live))
        .route("/v1/health/ready", get(system::ready))
        .route("/v1/ha", get(system::ha))
        .route("/v1/zones", post(zones::create_zone).get(zones::list_zones))
        .route("/v1/zones/{zone}", get(zones::get_zone).delete(zones::delete_zone))
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
        .route("/v1/tsigkeys", post(replication::create_tsig_key).get(replication::list_tsig_keys))
        .route("/v1/tsigkeys/{name}", axum::routing::delete(replication::delete_tsig_key))
        .route("/v1/zones/{zone}/secondaries", get(replication::zone_secondaries))
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Makes a committed change visible to this node's DNS workers: applies the
/// diff on top of the served zone, or reloads the zone from the store when
/// the served copy is not at the diff's starting serial.
pub async fn publish(state: &ApiState, zone: &ZoneRecord, diff: Option<Diff>) -> Result<(), Problem> {
    let apex_lower = zone.name.as_wire().to_vec();
    if let Some(diff) = diff {
        let live = state.live.clone();
        let key = apex_lower.clone();
        let applied = tokio::task::spawn_blocking(move || live.apply(&key, &diff))
            .await
            .map_err(|e| internal(format!("publishing task failed: {e}")))?;
        match applied {
            Ok(Applied::Applied | Applied::AlreadyServed) => return Ok(()),
            Ok(Applied::Gap) => {}
            Err(errors) => {
                tracing::error!(zone = %zone.name, ?errors, "a committed change did not apply to the served zone; reloading it");
            }
        }
    }
    reload_zone(state, zone).await
}

/// Loads a zone from the store and serves it.
pub async fn reload_zone(state: &ApiState, zone: &ZoneRecord) -> Result<(), Problem> {
    let rrsets = state.store.zone_rrsets(zone.id).await.map_err(|e| match e {
        StoreError::Unavailable(_) => Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "committed-not-served",
            "Committed but not yet served",
            format!(
                "the change to {} was committed, but the database went away before this node could serve it",
                zone.name
            ),
        ),
        other => Problem::from(other),
    })?;
    let live = state.live.clone();
    let apex = zone.name.clone();
    tokio::task::spawn_blocking(move || {
        let built = build_zone(&apex, rrsets.iter())
            .map_err(|errors| internal(format!("stored zone {apex} does not build: {errors:?}")))?;
        live.publish_zone(built);
        Ok(())
    })
    .await
    .map_err(|e| internal(format!("publishing task failed: {e}")))?
}

fn internal(detail: String) -> Problem {
    tracing::error!(%detail, "internal error");
    Problem::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail)
}
