//! RRsets and change batches, and the change history.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrodns_control::ControlError;
use ferrodns_proto::name::write_presentation;
use ferrodns_proto::rdata::write_rdata;
use ferrodns_proto::{Name, RecordType};
use ferrodns_store::{ChangeRecord, Committed, StoreError};
use ferrodns_zone::edit::{Action, Change, Checked, Fault, Field, RRsetData, Records};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Role};
use crate::input::{self, json_body, rfc3339};
use crate::problem::{field_pointer, Problem};
use crate::zones::{etag, if_match, zone_for};
use crate::ApiState;

/// An RRset as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct RRsetView {
    /// Absolute owner name.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// Presentation-format RDATA, one string per record.
    pub records: Vec<String>,
}

impl From<&RRsetData> for RRsetView {
    fn from(set: &RRsetData) -> RRsetView {
        RRsetView {
            name: set.owner.to_string(),
            rtype: set.rtype.to_string(),
            ttl: set.ttl,
            records: set
                .rdatas
                .iter()
                .map(|r| {
                    let mut text = String::new();
                    write_rdata(set.rtype, r, &mut text);
                    text
                })
                .collect(),
        }
    }
}

/// Query of `GET …/rrsets`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRRsets {
    /// Only this owner (relative to the zone, or absolute).
    pub name: Option<String>,
    /// Only this type.
    #[serde(rename = "type")]
    pub rtype: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A page of RRsets.
#[derive(Serialize, ToSchema)]
pub struct RRsetPage {
    pub items: Vec<RRsetView>,
    pub next_cursor: Option<String>,
}

/// Lists a zone's RRsets by owner, then type.
#[utoipa::path(get, path = "/v1/zones/{zone}/rrsets", params(("zone" = String, Path, description = "zone name"), ListRRsets),
    responses((status = 200, body = RRsetPage), (status = 404, body = Problem)))]
pub async fn list_rrsets(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
    query: Result<Query<ListRRsets>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RRsetPage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::invalid(e.body_text()))?;
    let zone = zone_for(&state, &caller, &zone).await?;
    let limit = input::page_limit(query.limit)?;
    let owner = match &query.name {
        Some(text) => {
            Some(input::owner_name(text, &zone.name).map_err(|m| Problem::invalid(m.clone()).with_error("", m))?)
        }
        None => None,
    };
    let rtype = match &query.rtype {
        Some(text) => Some(input::record_type(text).map_err(|m| Problem::invalid(m.clone()).with_error("", m))?),
        None => None,
    };
    let after = match &query.cursor {
        Some(cursor) => {
            let text = input::decode_cursor(cursor)?;
            let (owner, rtype) = text.rsplit_once(' ').ok_or_else(|| Problem::invalid("bad cursor"))?;
            Some((owner.to_string(), rtype.parse::<u16>().map_err(|_| Problem::invalid("bad cursor"))?))
        }
        None => None,
    };
    let sets = state
        .control
        .store
        .list_rrsets(zone.id, owner.as_ref(), rtype, after.as_ref().map(|(o, t)| (o.as_str(), *t)), limit + 1)
        .await?;
    let more = sets.len() > limit as usize;
    let page = &sets[..sets.len().min(limit as usize)];
    let next_cursor =
        if more { page.last().map(|s| input::encode_cursor(&format!("{} {}", s.owner, s.rtype.0))) } else { None };
    Ok(Json(RRsetPage { items: page.iter().map(RRsetView::from).collect(), next_cursor }))
}

fn path_rrset(apex: &Name, name: &str, rtype: &str) -> Result<(Name, RecordType), Problem> {
    let owner = input::owner_name(name, apex).map_err(Problem::not_found)?;
    let rtype = input::record_type(rtype).map_err(Problem::not_found)?;
    Ok((owner, rtype))
}

/// One RRset.
#[utoipa::path(get, path = "/v1/zones/{zone}/rrsets/{name}/{type}",
    params(("zone" = String, Path, description = "zone name"), ("name" = String, Path, description = "owner, relative or absolute"), ("type" = String, Path, description = "record type")),
    responses((status = 200, body = RRsetView), (status = 404, body = Problem)))]
pub async fn get_rrset(
    State(state): State<ApiState>,
    caller: Caller,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Result<Json<RRsetView>, Problem> {
    let zone = zone_for(&state, &caller, &zone).await?;
    let (owner, rtype) = path_rrset(&zone.name, &name, &rtype)?;
    match state.control.store.rrset(zone.id, &owner, rtype).await {
        Ok(set) => Ok(Json(RRsetView::from(&set))),
        Err(StoreError::NotFound) => Err(Problem::not_found(format!("no {rtype} RRset at {owner}"))),
        Err(e) => Err(e.into()),
    }
}

/// The body of a PUT of one RRset.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRRset {
    pub ttl: u32,
    pub records: Vec<String>,
}

/// Creates or replaces one RRset.
#[utoipa::path(put, path = "/v1/zones/{zone}/rrsets/{name}/{type}", request_body = PutRRset,
    params(("zone" = String, Path, description = "zone name"), ("name" = String, Path, description = "owner"), ("type" = String, Path, description = "record type"), ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    responses((status = 200, body = RRsetView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn put_rrset(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((zone, name, rtype)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Editor)?;
    let request: PutRRset = json_body(body, state.settings.max_body_bytes)?;
    // The zone is read once, as the change locks it.
    let apex = input::zone_name(&zone)?;
    let owner = input::owner_name(&name, &apex).map_err(|m| Problem::invalid(m.clone()).with_error("", m))?;
    let rtype = input::record_type(&rtype).map_err(|m| Problem::invalid(m.clone()).with_error("", m))?;
    let rdatas = input::parse_records(&apex, rtype, &request.records).map_err(|errors| {
        let mut problem = Problem::invalid("records are not valid for their type");
        for (i, message) in errors {
            problem = problem.with_error(format!("/records/{i}"), message);
        }
        problem
    })?;
    let change = Change { action: Action::Upsert, owner, rtype, ttl: Some(request.ttl), rdatas };
    // The RRset as this change left it (a later change may have moved it on).
    let set = change.rrset();
    let pointer = |_, field| field_pointer("", field);
    let batch = checked(&state, &apex, vec![change], pointer)?;
    let committed = apply(&state, &caller, &headers, batch, pointer).await?;
    let mut response = Json(RRsetView::from(&set)).into_response();
    response.headers_mut().insert(header::ETAG, etag(committed.zone.version));
    Ok(response)
}

/// Deletes one RRset.
#[utoipa::path(delete, path = "/v1/zones/{zone}/rrsets/{name}/{type}",
    params(("zone" = String, Path, description = "zone name"), ("name" = String, Path, description = "owner"), ("type" = String, Path, description = "record type"), ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn delete_rrset(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    caller.require(Role::Editor)?;
    let apex = input::zone_name(&zone)?;
    let (owner, rtype) = path_rrset(&apex, &name, &rtype)?;
    let change = Change { action: Action::Delete, owner, rtype, ttl: None, rdatas: Vec::new() };
    let pointer = |_, field| field_pointer("", field);
    let batch = checked(&state, &apex, vec![change], pointer)?;
    let committed = apply(&state, &caller, &headers, batch, pointer).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::ETAG, etag(committed.zone.version));
    Ok(response)
}

/// Checks changes to the zone at `apex` on their own (`edit::Checked`),
/// under the store's limits; `pointer` places each fault in the request.
fn checked(
    state: &ApiState,
    apex: &Name,
    changes: Vec<Change>,
    pointer: impl Fn(usize, Field) -> String,
) -> Result<Checked, Problem> {
    Checked::new(apex, changes, &state.control.store.options().limits)
        .map_err(|errors| Problem::from_edit_errors(&errors, &pointer))
}

/// Hands a checked batch to the control plane, and maps the rejections of
/// the rules that depend on the zone's data to pointers.
async fn apply(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    batch: Checked,
    pointer: impl Fn(usize, Field) -> String,
) -> Result<Committed, Problem> {
    let expected = if_match(headers)?;
    let apex = batch.apex().clone();
    state.control.change(caller.actor(), expected.as_deref(), batch).await.map_err(|e| match e {
        ControlError::Store(StoreError::Rejected(errors)) => Problem::from_edit_errors(&errors, &pointer),
        ControlError::Store(StoreError::NotFound) => Problem::not_found(format!("no zone {apex}")),
        other => Problem::from(other),
    })
}

/// One change of a batch, as sent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    /// `create`, `upsert` or `delete`.
    pub action: ActionInput,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    #[serde(default)]
    pub records: Vec<String>,
}

/// The action of a change.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ActionInput {
    Create,
    Upsert,
    Delete,
}

/// The body of `POST …/changes`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBatch {
    pub changes: Vec<ChangeInput>,
}

/// A change-history entry.
#[derive(Serialize, ToSchema)]
pub struct ChangeView {
    /// Null when the batch changed nothing.
    pub id: Option<i64>,
    pub zone: String,
    /// The zone's serial after the change.
    pub serial: u32,
    pub serial_from: Option<u32>,
    /// The display name of the token that made the change; any token's
    /// creator chooses it, so `actor_token` and `actor_tenant` say whose it is.
    pub actor: Option<String>,
    /// The id of the token that made the change (empty for changes from
    /// before ids were recorded).
    pub actor_token: Option<String>,
    /// That token's tenant (empty for changes from before tenants were recorded).
    pub actor_tenant: Option<String>,
    pub at: Option<String>,
    /// What was asked.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    /// `pending` until every configured secondary holds the change's serial,
    /// then `insync` (at once without secondaries); `unchanged`: nothing to do.
    pub status: &'static str,
    /// Records removed and added (RFC 1995 order), on single-change reads:
    /// the first 10,000 of each side at most (and at most 1 MiB of each as
    /// the journal holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<String>>,
    /// On single-change reads, whether `removed` or `added` stops short of
    /// the whole change (an import, say); IXFR serves it whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

fn change_view(state: &ApiState, apex: &ferrodns_proto::Name, change: &ChangeRecord) -> ChangeView {
    let zone = apex.to_string();
    ChangeView {
        id: Some(change.id),
        zone,
        serial: change.serial_to.0,
        serial_from: Some(change.serial_from.0),
        actor: Some(change.actor.clone()),
        actor_token: Some(change.actor_token.clone()),
        actor_tenant: Some(change.actor_tenant.clone()),
        at: Some(rfc3339(change.at)),
        changes: serde_json::from_str(&change.summary).unwrap_or(serde_json::Value::Null),
        status: crate::replication::change_status(state, apex, change.serial_to),
        removed: None,
        added: None,
        truncated: None,
    }
}

fn record_lines(records: &Records) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let mut text = String::new();
            let _ = write_presentation(r.owner, &mut text);
            text.push_str(&format!(" {} IN {} ", r.ttl, r.rtype));
            write_rdata(r.rtype, r.rdata, &mut text);
            text
        })
        .collect()
}

/// The response to a committed batch or import.
pub async fn change_response(state: &ApiState, committed: &Committed) -> Result<Response, Problem> {
    let zone = committed.zone.name.to_string();
    let view = match &committed.change {
        Some(change) => change_view(state, &committed.zone.name, change),
        None => ChangeView {
            id: None,
            zone,
            serial: committed.zone.serial.0,
            serial_from: None,
            actor: None,
            actor_token: None,
            actor_tenant: None,
            at: None,
            changes: serde_json::Value::Array(Vec::new()),
            status: "unchanged",
            removed: None,
            added: None,
            truncated: None,
        },
    };
    let mut response = Json(view).into_response();
    response.headers_mut().insert(header::ETAG, etag(committed.zone.version));
    Ok(response)
}

/// Applies a batch of changes atomically: all or none. Changes apply in
/// order, each seeing the ones before it.
#[utoipa::path(post, path = "/v1/zones/{zone}/changes", request_body = ChangeBatch,
    params(("zone" = String, Path, description = "zone name"), ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    responses((status = 200, body = ChangeView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn post_changes(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(zone): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Editor)?;
    let body = input::body_bytes(body, state.settings.max_body_bytes)?;
    let apex = input::zone_name(&zone)?;
    let limits = state.control.store.options().limits;
    let batch = parse_batch(&apex, &body, state.settings.max_changes_per_batch, &limits)?;
    let committed = apply(&state, &caller, &headers, batch, crate::problem::change_pointer).await?;
    change_response(&state, &committed).await
}

/// Reads a `/changes` body into a checked batch for `apex`: the JSON, each
/// name, type and record, and the checks that hold whatever the zone holds
/// (`edit::Checked`). Every fault is reported with its pointer. The rules
/// that depend on the zone's data are the control plane's.
pub fn parse_batch(
    apex: &ferrodns_proto::Name,
    body: &[u8],
    max_changes: usize,
    limits: &ferrodns_zone::edit::Limits,
) -> Result<Checked, Problem> {
    let batch: ChangeBatch = input::json_from_slice(body)?;
    if batch.changes.len() > max_changes {
        return Err(Problem::invalid(format!(
            "{} changes exceed the limit of {max_changes} per batch",
            batch.changes.len()
        ))
        .with_error("/changes", "too many changes"));
    }
    if batch.changes.is_empty() {
        return Err(Problem::invalid("the batch is empty").with_error("/changes", "at least one change is needed"));
    }
    let mut problem = Problem::invalid("the batch has invalid changes; nothing was changed");
    // The changes that parsed, and where each is in the batch.
    let mut changes = Vec::with_capacity(batch.changes.len());
    let mut positions = Vec::with_capacity(batch.changes.len());
    for (i, input) in batch.changes.iter().enumerate() {
        let owner = input::owner_name(&input.name, apex);
        let rtype = input::record_type(&input.rtype);
        if let Err(m) = &owner {
            problem = problem.with_error(format!("/changes/{i}/name"), m.clone());
        }
        if let Err(m) = &rtype {
            problem = problem.with_error(format!("/changes/{i}/type"), m.clone());
        }
        let (Ok(owner), Ok(rtype)) = (owner, rtype) else { continue };
        let rdatas = match input::parse_records(apex, rtype, &input.records) {
            Ok(rdatas) => rdatas,
            Err(errors) => {
                for (j, message) in errors {
                    problem = problem.with_error(format!("/changes/{i}/records/{j}"), message);
                }
                continue;
            }
        };
        let action = match input.action {
            ActionInput::Create => Action::Create,
            ActionInput::Upsert => Action::Upsert,
            ActionInput::Delete => Action::Delete,
        };
        changes.push(Change { action, owner, rtype, ttl: input.ttl, rdatas });
        positions.push(i);
    }
    match Checked::new(apex, changes, limits) {
        Ok(checked) if problem.errors.is_empty() => Ok(checked),
        Ok(_) => Err(problem),
        Err(errors) => {
            for error in errors {
                let (Fault::Invalid(message) | Fault::Conflict(message) | Fault::Missing(message)) = error.fault;
                problem =
                    problem.with_error(crate::problem::change_pointer(positions[error.change], error.field), message);
            }
            Err(problem)
        }
    }
}

/// Query of `GET …/changes`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListChanges {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A page of history, newest first.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub items: Vec<ChangeView>,
    pub next_cursor: Option<String>,
}

/// The zone's change history, newest first.
#[utoipa::path(get, path = "/v1/zones/{zone}/changes", params(("zone" = String, Path, description = "zone name"), ListChanges),
    responses((status = 200, body = ChangePage), (status = 404, body = Problem)))]
pub async fn list_changes(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
    query: Result<Query<ListChanges>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangePage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::invalid(e.body_text()))?;
    let zone = zone_for(&state, &caller, &zone).await?;
    let limit = input::page_limit(query.limit)?;
    let before = match &query.cursor {
        Some(cursor) => Some(input::decode_cursor(cursor)?.parse::<i64>().map_err(|_| Problem::invalid("bad cursor"))?),
        None => None,
    };
    let changes = state.control.store.list_changes(zone.id, before, limit + 1).await?;
    let more = changes.len() > limit as usize;
    let page = &changes[..changes.len().min(limit as usize)];
    let next_cursor = if more { page.last().map(|c| input::encode_cursor(&c.id.to_string())) } else { None };
    Ok(Json(ChangePage { items: page.iter().map(|c| change_view(&state, &zone.name, c)).collect(), next_cursor }))
}

/// One history entry, with the records it removed and added.
#[utoipa::path(get, path = "/v1/zones/{zone}/changes/{id}",
    params(("zone" = String, Path, description = "zone name"), ("id" = i64, Path, description = "change id")),
    responses((status = 200, body = ChangeView), (status = 404, body = Problem)))]
pub async fn get_change(
    State(state): State<ApiState>,
    caller: Caller,
    Path((zone, id)): Path<(String, String)>,
) -> Result<Json<ChangeView>, Problem> {
    let zone = zone_for(&state, &caller, &zone).await?;
    let id: i64 = id.parse().map_err(|_| Problem::not_found(format!("no change {id:?}")))?;
    let (change, head) = match state.control.store.change(zone.id, id).await {
        Err(StoreError::NotFound) => return Err(Problem::not_found(format!("no change {id} in {}", zone.name))),
        other => other?,
    };
    let mut view = change_view(&state, &zone.name, &change);
    view.removed = Some(record_lines(&head.removed));
    view.added = Some(record_lines(&head.added));
    view.truncated = Some(head.truncated);
    Ok(Json(view))
}
