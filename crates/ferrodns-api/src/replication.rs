//! Replication through the API: TSIG keys (`/v1/tsigkeys`) and what each
//! secondary holds (`/v1/zones/{zone}/secondaries`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrodns_control::ControlError;
use ferrodns_proto::tsig::Algorithm;
use ferrodns_proto::{Name, Serial};
use ferrodns_store::{StoreError, TsigKeyRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::input::{self, json_body, rfc3339};
use crate::problem::Problem;
use crate::zones::zone_for;
use crate::ApiState;
use ferrodns_control::now_micros;

/// The body of `POST /v1/tsigkeys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTsigKey {
    /// The key's name, e.g. `xfr-secondaries`.
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub algorithm: Option<String>,
    /// Base64; 32 random bytes are made when absent.
    pub secret: Option<String>,
    /// The key transfers and NOTIFYs only this tenant's zones. The caller's
    /// tenant when absent, except for the operator, whose keys without a
    /// tenant or zones reach every zone.
    pub tenant: Option<String>,
    /// The key reaches only these zones (within the caller's zone list).
    pub zones: Option<Vec<String>>,
}

/// A TSIG key as listed (never the secret).
#[derive(Serialize, ToSchema)]
pub struct TsigKeyView {
    pub name: String,
    pub algorithm: String,
    /// Null for keys from the server's configuration.
    pub created_at: Option<String>,
    /// The tenant whose zones the key reaches; null for every tenant.
    pub tenant: Option<String>,
    /// The zones the key reaches; null for all of the tenant's (or every zone).
    pub zones: Option<Vec<String>>,
    /// A key from the server's configuration (`--tsig-key`): it reaches every
    /// zone, and only the configuration changes it.
    pub read_only: bool,
    /// Only in the response that creates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn key_view(key: &TsigKeyRecord, secret: Option<String>) -> TsigKeyView {
    TsigKeyView {
        name: key.name.clone(),
        algorithm: key.algorithm.clone(),
        created_at: Some(rfc3339(key.created_at)),
        tenant: key.tenant.clone(),
        zones: key.zones.clone(),
        read_only: false,
        secret,
    }
}

/// Creates a TSIG key for transfers and NOTIFY, limited to a tenant's zones
/// (or to listed zones); the secret is returned once.
#[utoipa::path(post, path = "/v1/tsigkeys", request_body = CreateTsigKey,
    responses((status = 201, body = TsigKeyView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_tsig_key(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let request: CreateTsigKey = json_body(body, state.settings.max_body_bytes)?;
    let mut problem = Problem::invalid("the key cannot be created as asked");
    let name = input::zone_name(&request.name).ok();
    if name.is_none() {
        problem = problem.with_error("/name", format!("{:?} is not a valid key name", request.name));
    }
    let algorithm_text = request.algorithm.clone().unwrap_or_else(|| "hmac-sha256".to_string());
    let algorithm = Algorithm::from_name(&algorithm_text);
    if algorithm.is_none() {
        problem = problem
            .with_error("/algorithm", format!("{algorithm_text:?} is not hmac-sha256, hmac-sha384 or hmac-sha512"));
    }
    let secret = match &request.secret {
        Some(text) => match data_encoding::BASE64.decode(text.trim().as_bytes()) {
            Ok(bytes) if bytes.len() >= 16 => Some(bytes),
            Ok(_) => {
                problem = problem.with_error("/secret", "a secret of at least 16 bytes is needed");
                None
            }
            Err(e) => {
                problem = problem.with_error("/secret", format!("not base64: {e}"));
                None
            }
        },
        None => {
            let mut bytes = vec![0u8; 32];
            getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
            Some(bytes)
        }
    };
    if request.tenant.as_ref().is_some_and(|t| t.trim().is_empty() || t.len() > 200) {
        problem = problem.with_error("/tenant", "a tenant of 1 to 200 characters is needed");
    }
    let mut zones = None;
    if let Some(list) = &request.zones {
        let (names, faults) = input::zone_list(list);
        for (pointer, message) in faults {
            problem = problem.with_error(pointer, message);
        }
        zones = Some(names);
    }
    let (Some(name), Some(algorithm), Some(secret)) = (name, algorithm, secret) else { return Err(problem) };
    if !problem.errors.is_empty() {
        return Err(problem);
    }
    let record = TsigKeyRecord {
        name: name.to_string(),
        algorithm: algorithm.name().to_string(),
        secret,
        created_at: now_micros(),
        tenant: request.tenant.clone(),
        zones,
    };
    let record = match state.control.create_tsig_key(&caller, record).await {
        Err(ControlError::Store(StoreError::Exists)) => {
            return Err(Problem::conflict(format!("a key named {name} exists")))
        }
        other => other?,
    };
    let secret = Some(data_encoding::BASE64.encode(&record.secret));
    Ok((StatusCode::CREATED, Json(key_view(&record, secret))).into_response())
}

/// Lists the TSIG keys the caller covers; for the operator, also the keys
/// of the server's configuration, read-only.
#[utoipa::path(get, path = "/v1/tsigkeys", responses((status = 200, body = Vec<TsigKeyView>), (status = 403, body = Problem)))]
pub async fn list_tsig_keys(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<TsigKeyView>>, Problem> {
    let mut views: Vec<TsigKeyView> =
        state.control.list_tsig_keys(&caller).await?.iter().map(|key| key_view(key, None)).collect();
    if caller.is_operator() {
        let configured = state.control.replication.as_ref().map(|r| r.access.keys.clone()).unwrap_or_default();
        for key in configured {
            views.push(TsigKeyView {
                name: key.name.to_string(),
                algorithm: key.algorithm.name().to_string(),
                created_at: None,
                tenant: None,
                zones: None,
                read_only: true,
                secret: None,
            });
        }
    }
    Ok(Json(views))
}

/// Deletes a TSIG key; transfers signed with it fail from then on. Keys of
/// the server's configuration answer 409; keys beyond the caller's reach 404.
#[utoipa::path(delete, path = "/v1/tsigkeys/{name}", params(("name" = String, Path, description = "key name")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_tsig_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    let name = input::zone_name(&name)?;
    match state.control.delete_tsig_key(&caller, &name).await {
        Err(ControlError::Store(StoreError::NotFound)) => return Err(Problem::not_found(format!("no key {name}"))),
        other => other?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What one secondary holds of a zone.
#[derive(Serialize, ToSchema)]
pub struct SecondaryView {
    /// The secondary's address (a configured NOTIFY target, or a peer that transferred).
    pub address: String,
    /// Whether it is a configured secondary (changes wait for these).
    pub configured: bool,
    /// The serial it holds, if known.
    pub serial: Option<u32>,
    /// How many serials it is behind (RFC 1982), if known.
    pub lag: Option<u32>,
    pub last_contact: Option<String>,
    pub insync: bool,
    /// The leader's drift checker found it behind (or silent) and re-sent NOTIFY.
    pub drift: bool,
}

/// Each secondary's serial, lag and last contact for a zone.
#[utoipa::path(get, path = "/v1/zones/{zone}/secondaries", params(("zone" = String, Path, description = "zone name")),
    responses((status = 200, body = Vec<SecondaryView>), (status = 404, body = Problem)))]
pub async fn zone_secondaries(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
) -> Result<Json<Vec<SecondaryView>>, Problem> {
    let zone = zone_for(&state, &caller, &zone).await?;
    Ok(Json(secondaries_of(&state, &zone.name, zone.serial)))
}

/// The secondaries of a zone at serial `current`.
pub fn secondaries_of(state: &ApiState, apex: &Name, current: Serial) -> Vec<SecondaryView> {
    let Some(replication) = &state.control.replication else { return Vec::new() };
    let known = replication.peers.of_zone(apex);
    let view = |address: String, configured: bool, held: Option<(Serial, u64)>, drift: bool| {
        let lag = held.map(|(serial, _)| current.0.wrapping_sub(serial.0)).filter(|lag| *lag < 1 << 31);
        SecondaryView {
            address,
            configured,
            serial: held.map(|(s, _)| s.0),
            lag: lag.or(held.map(|_| 0)),
            last_contact: held.map(|(_, at)| rfc3339(at as i64 * 1_000_000)),
            insync: held.is_some_and(|(s, _)| s == current || s.is_newer_than(current)),
            drift,
        }
    };
    let configured: Vec<std::net::SocketAddr> =
        replication.secondaries.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    let mut list: Vec<SecondaryView> = configured
        .iter()
        .map(|target| {
            let state = known.iter().find(|(peer, _)| *peer == target.to_string()).map(|(_, s)| *s);
            // A peer marked drifting before it ever answered holds nothing we know of.
            let held = state.filter(|s| s.serial.0 != 0 || !s.drifting).map(|s| (s.serial, s.last_contact));
            view(target.to_string(), true, held, state.is_some_and(|s| s.drifting))
        })
        .collect();
    for (peer, state) in &known {
        if !configured.iter().any(|t| t.to_string() == *peer) {
            list.push(view(peer.clone(), false, Some((state.serial, state.last_contact)), state.drifting));
        }
    }
    list
}

/// A change's replication status: `insync` once every configured secondary
/// holds `serial` (or a later one), else `pending`.
pub fn change_status(state: &ApiState, apex: &Name, serial: Serial) -> &'static str {
    let Some(replication) = &state.control.replication else { return "insync" };
    let known = replication.peers.of_zone(apex);
    let configured = replication.secondaries.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let all = configured.iter().all(|target| {
        known
            .iter()
            .find(|(peer, _)| *peer == target.to_string())
            .is_some_and(|(_, s)| s.serial == serial || s.serial.is_newer_than(serial))
    });
    if all {
        "insync"
    } else {
        "pending"
    }
}

/// One secondary over every zone it serves for this node.
#[derive(Serialize, ToSchema)]
pub struct SecondarySummary {
    /// Its address, as it reached us or as we NOTIFY it.
    pub address: String,
    /// Zones it has told us of, or we sent it.
    pub zones: usize,
    /// Zones it holds at an older serial than this node serves.
    pub zones_behind: usize,
    pub last_contact: Option<String>,
    /// Up to 20 of the zones it is behind in, longest behind first.
    pub behind: Vec<ZoneBehind>,
}

/// A zone a secondary holds at an older serial.
#[derive(Serialize, ToSchema)]
pub struct ZoneBehind {
    pub zone: String,
    pub serial: u32,
    pub current: u32,
    /// Serial steps behind (RFC 1982).
    pub lag: u32,
    /// Seconds since the current serial was published.
    pub seconds: u64,
}

/// Every secondary this node has heard from or sent to, with the zones it
/// lags in, as this node sees them (each node tracks the secondaries that
/// talk to it; the leader sends NOTIFY). Operator only: it spans tenants.
#[utoipa::path(get, path = "/v1/secondaries", responses((status = 200, body = Vec<SecondarySummary>), (status = 403, body = Problem)))]
pub async fn secondaries(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<SecondarySummary>>, Problem> {
    caller.require_operator("secondaries are")?;
    let Some(replication) = &state.control.replication else { return Ok(Json(Vec::new())) };
    let summaries = replication
        .peers
        .report(20)
        .into_iter()
        .map(|report| SecondarySummary {
            address: report.peer,
            zones: report.zones,
            zones_behind: report.behind_count,
            last_contact: (report.last_contact > 0).then(|| rfc3339(report.last_contact as i64 * 1_000_000)),
            behind: report
                .behind
                .into_iter()
                .map(|behind| ZoneBehind {
                    zone: behind.zone,
                    serial: behind.holds.0,
                    current: behind.current.0,
                    lag: behind.current.0.wrapping_sub(behind.holds.0),
                    seconds: behind.seconds as u64,
                })
                .collect(),
        })
        .collect();
    Ok(Json(summaries))
}
