//! Zones: create, list, show, delete, and master-file import and export.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrodns_control::{ControlError, NewZone};
use ferrodns_forward::table::{ForwarderAddr, MAX_FORWARDERS};
use ferrodns_proto::{Name, RecordType};
use ferrodns_store::{StoreError, ZoneRecord, FORWARD_KIND, SECONDARY_KIND};
use ferrodns_zone::edit::{ImportMode, PackedZone, PackedZoneBuilder};
use ferrodns_zone::live::build_zone;
use ferrodns_zone::masterfile::{stream_str, ParseOptions};
use ferrodns_zone::rules;
use ferrodns_zone::writer::{write_zone, write_zone_chunks};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Role};
use crate::input::{self, json_body, rfc3339};
use crate::problem::{Problem, ProblemItem};
use crate::ApiState;
use ferrodns_control::tokens::new_id;

/// A zone as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ZoneView {
    pub name: String,
    pub kind: String,
    pub tenant: String,
    pub serial: u32,
    /// Counts committed changes; the ETag is this number in quotes.
    pub version: i64,
    pub rrset_count: i64,
    pub created_at: String,
    pub updated_at: String,
    /// The zone's own response rate limit; null when it follows the server's.
    pub rate_limit: Option<RateLimitView>,
    /// A forward zone's forwarders (`ADDR` or `ADDR:PORT`); absent for a
    /// hosted zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarders: Option<Vec<String>>,
    /// A secondary zone's primaries; absent for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primaries: Option<Vec<String>>,
}

/// A zone's response rate limit: `rate` responses a second per client
/// network, kind of response and name (0: none), and every `slip`-th
/// limited response sent truncated rather than dropped (0 to 10).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitView {
    pub rate: u32,
    /// The server's slip when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slip: Option<u32>,
}

impl From<&ZoneRecord> for ZoneView {
    fn from(zone: &ZoneRecord) -> ZoneView {
        ZoneView {
            name: zone.name.to_string(),
            kind: zone.kind.clone(),
            tenant: zone.tenant.clone(),
            serial: zone.serial.0,
            version: zone.version,
            rrset_count: zone.rrset_count,
            created_at: rfc3339(zone.created_at),
            updated_at: rfc3339(zone.updated_at),
            rate_limit: zone.rate_limit.map(|l| RateLimitView { rate: l.rate, slip: Some(l.slip) }),
            forwarders: zone.forwarders.clone(),
            primaries: zone.primaries.clone(),
        }
    }
}

/// The ETag of a zone version.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value")
}

/// Reads `If-Match` (RFC 9110 §13.1.1): `*`, or a list of entity tags.
/// Returns the zone versions the list names, or `None` when any version
/// will do. A tag this server never hands out names no version, so it can
/// only fail the precondition (412); a header that is not a list of tags at
/// all is a bad request (400).
pub fn if_match(headers: &HeaderMap) -> Result<Option<Vec<i64>>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let malformed = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            "If-Match is neither * nor a list of quoted entity tags such as \"4\"",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let mut versions = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        // Weak tags are taken as their strong twins: ours are all strong,
        // and a proxy may have weakened one on the way.
        let quoted = rest.strip_prefix("W/").unwrap_or(rest).strip_prefix('"').ok_or_else(malformed)?;
        let end = quoted.find('"').ok_or_else(malformed)?;
        versions.extend(quoted[..end].parse::<i64>().ok());
        rest = &quoted[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
            return Err(malformed());
        }
    }
    if versions.is_empty() && !text.contains('"') {
        return Err(malformed());
    }
    Ok(Some(versions))
}

/// Answers with a zone and its ETag.
pub fn zone_response(status: StatusCode, zone: &ZoneRecord) -> Response {
    let mut response = (status, Json(ZoneView::from(zone))).into_response();
    response.headers_mut().insert(header::ETAG, etag(zone.version));
    response
}

/// The body of `POST /v1/zones`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateZone {
    /// The apex, with or without the final dot.
    pub name: String,
    /// `primary` (the default): a zone of records this server answers
    /// for; `forward`: a zone whose queries go to `forwarders`; or
    /// `secondary`: a zone transferred from `primaries` outside ferrodns
    /// (BIND, PowerDNS, Knot), first when it is created (the request waits
    /// for that AXFR) and then at its SOA refresh and on their NOTIFY.
    #[serde(default = "primary")]
    pub kind: String,
    /// A secondary zone's primaries, `ADDR`, `ADDR:PORT` or `NAME:PORT`;
    /// 1 to 8. Transfers are signed with the server's first TSIG key.
    pub primaries: Option<Vec<String>>,
    /// A forward zone's resolvers, `ADDR` or `ADDR:PORT` (IPv6 with a port
    /// in brackets), port 53 by default; 1 to 16 of them.
    pub forwarders: Option<Vec<String>>,
    /// The owning tenant; only operator tokens may name another tenant.
    pub tenant: Option<String>,
    /// The apex NS RRset; the server's default nameservers if absent.
    pub nameservers: Option<Vec<String>>,
    /// TTL of the SOA and NS.
    pub ttl: Option<u32>,
    /// Create the zone even where the name policy refuses it (a top-level
    /// or reserved name, or one overlapping another tenant's zone or a zone
    /// file's): only the operator may ask.
    #[serde(default)]
    pub allow_overlap: bool,
}

fn primary() -> String {
    "primary".to_string()
}

/// Creates a zone with the server's SOA and the given or default NS.
#[utoipa::path(post, path = "/v1/zones", request_body = CreateZone,
    responses((status = 201, body = ZoneView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_zone(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Editor)?;
    let request: CreateZone = json_body(body, state.settings.max_body_bytes)?;
    let mut problem = Problem::invalid("the zone cannot be created as asked");
    let parsed = input::ascii_form(&request.name).and_then(|text| {
        let absolute = if text.ends_with('.') { text.into_owned() } else { format!("{text}.") };
        Name::parse(&absolute, None).map_err(|e| format!("{:?} is not a valid zone name: {e}", request.name))
    });
    let forward = request.kind == FORWARD_KIND;
    let apex = match parsed {
        // The root as a forward zone is the default upstream.
        Ok(name) if !name.is_root() || forward => Some(name.to_lowercase()),
        Ok(_) => {
            problem = problem.with_error("/name", "the root zone cannot be created here, but as a forward zone");
            None
        }
        Err(message) => {
            problem = problem.with_error("/name", message);
            None
        }
    };
    let secondary = request.kind == SECONDARY_KIND;
    if request.kind != "primary" && !forward && !secondary {
        problem = problem.with_error(
            "/kind",
            format!("kind {:?} is not supported; use \"primary\", \"secondary\" or \"forward\"", request.kind),
        );
    }
    match (&request.primaries, secondary) {
        (Some(list), true) => {
            if let Err(message) = ferrodns_control::secondary::parse_primaries(list) {
                problem = problem.with_error("/primaries", message);
            }
        }
        (None, true) => problem = problem.with_error("/primaries", "a secondary zone needs primaries"),
        (Some(_), false) => problem = problem.with_error("/primaries", "only a secondary zone has primaries"),
        (None, false) => {}
    }
    if secondary && (request.nameservers.is_some() || request.ttl.is_some()) {
        problem = problem.with_error("", "a secondary zone takes its nameservers and TTLs from its primary");
    }
    let mut forwarders = None;
    match (&request.forwarders, forward) {
        (Some(list), true) => {
            let (parsed, faults) = parse_forwarders(list);
            for (at, message) in faults {
                problem = problem.with_error(at, message);
            }
            forwarders = Some(parsed);
        }
        (None, true) => problem = problem.with_error("/forwarders", "a forward zone needs forwarders"),
        (Some(_), false) => problem = problem.with_error("/forwarders", "only a forward zone has forwarders"),
        (None, false) => {}
    }
    if forward && (request.nameservers.is_some() || request.ttl.is_some()) {
        problem = problem.with_error("", "a forward zone has no nameservers or TTL: it holds no records");
    }
    if let Some(ttl) = request.ttl {
        if let Err(message) = state.control.store.options().limits.check_ttl(ttl) {
            problem = problem.with_error("/ttl", message);
        }
    }
    let mut nameservers = None;
    match &request.nameservers {
        Some(list) if list.is_empty() => {
            problem = problem.with_error("/nameservers", "a zone needs at least one nameserver")
        }
        Some(list) => {
            let mut names = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match Name::parse(text, apex.as_ref()) {
                    Ok(name) => names.push(name),
                    Err(e) => problem = problem.with_error(format!("/nameservers/{i}"), format!("{text:?}: {e}")),
                }
            }
            nameservers = Some(names);
        }
        None => {}
    }
    let tenant = match &request.tenant {
        Some(tenant) if tenant.is_empty() => {
            problem = problem.with_error("/tenant", "the tenant is empty");
            String::new()
        }
        Some(tenant) => tenant.clone(),
        None => caller.token.tenant.clone(),
    };
    let Some(apex) = apex.filter(|_| problem.errors.is_empty()) else { return Err(problem) };
    if !problem.errors.is_empty() {
        return Err(problem);
    }
    let new_zone = NewZone {
        apex: apex.clone(),
        tenant,
        nameservers,
        ttl: request.ttl,
        catalog_id: new_id(8),
        allow_overlap: request.allow_overlap,
        forwarders,
        primaries: request.primaries.filter(|_| secondary),
    };
    let zone = match state.control.create_zone(caller.actor(), new_zone).await {
        Err(ControlError::Store(StoreError::Exists)) => {
            return Err(Problem::conflict(format!("the zone {apex} exists already")))
        }
        other => other?,
    };
    let mut response = zone_response(StatusCode::CREATED, &zone);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/zones/{}", zone.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Query of `GET /v1/zones`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListZones {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Only zones whose name contains this text.
    pub name: Option<String>,
}

/// A page of zones.
#[derive(Serialize, ToSchema)]
pub struct ZonePage {
    pub items: Vec<ZoneView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the caller's zones in name order.
#[utoipa::path(get, path = "/v1/zones", params(ListZones), responses((status = 200, body = ZonePage)))]
pub async fn list_zones(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListZones>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ZonePage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::invalid(e.body_text()))?;
    let limit = input::page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(input::decode_cursor).transpose()?;
    let zones =
        state.control.store.list_zones(&caller.scope(), query.name.as_deref(), after.as_deref(), limit + 1).await?;
    let more = zones.len() > limit as usize;
    let items: Vec<ZoneView> = zones.iter().take(limit as usize).map(ZoneView::from).collect();
    let next_cursor = if more { items.last().map(|z| input::encode_cursor(&z.name)) } else { None };
    Ok(Json(ZonePage { items, next_cursor }))
}

/// Finds a zone the caller may see, or 404.
pub async fn zone_for(state: &ApiState, caller: &Caller, text: &str) -> Result<ZoneRecord, Problem> {
    let apex = input::zone_name(text)?;
    match state.control.store.zone_in_scope(&apex, &caller.scope()).await {
        Err(StoreError::NotFound) => Err(Problem::not_found(format!("no zone {apex}"))),
        other => Ok(other?),
    }
}

/// One zone, with its version as the ETag.
#[utoipa::path(get, path = "/v1/zones/{zone}", params(("zone" = String, Path, description = "zone name")),
    responses((status = 200, body = ZoneView), (status = 404, body = Problem)))]
pub async fn get_zone(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
) -> Result<Response, Problem> {
    let zone = zone_for(&state, &caller, &zone).await?;
    Ok(zone_response(StatusCode::OK, &zone))
}

/// The body of `PATCH /v1/zones/{zone}`: the settings to change; a field
/// left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateZone {
    /// The zone's own response rate limit, or null to follow the server's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimitView>)]
    pub rate_limit: Option<Option<RateLimitView>>,
    /// A forward zone's forwarders, replacing the ones it has.
    pub forwarders: Option<Vec<String>>,
    /// A secondary zone's primaries, replacing the ones it has.
    pub primaries: Option<Vec<String>>,
    /// `primary`, for a secondary zone: stop following its primaries and
    /// take writes through the API from its current data and serial.
    pub kind: Option<String>,
}

/// A list of forwarders as given, parsed; and the faults found in it as
/// (JSON pointer, message) pairs.
fn parse_forwarders(list: &[String]) -> (Vec<ForwarderAddr>, Vec<(String, String)>) {
    let mut faults = Vec::new();
    if list.is_empty() || list.len() > MAX_FORWARDERS {
        faults.push(("/forwarders".to_string(), format!("give 1 to {MAX_FORWARDERS} forwarders")));
    }
    let mut parsed = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match ForwarderAddr::parse(text) {
            Ok(forwarder) if !parsed.contains(&forwarder) => parsed.push(forwarder),
            Ok(_) => faults.push((format!("/forwarders/{i}"), format!("{text:?} is given twice"))),
            Err(message) => faults.push((format!("/forwarders/{i}"), message)),
        }
    }
    (parsed, faults)
}

/// A field that is there, even as null (`Some(None)`); `default` makes an
/// absent one `None`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Changes a zone's settings (today its response rate limit); the zone's
/// data and serial stay as they are, its version moves on.
#[utoipa::path(patch, path = "/v1/zones/{zone}", request_body = UpdateZone,
    params(("zone" = String, Path, description = "zone name"), ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    responses((status = 200, body = ZoneView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update_zone(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let expected = if_match(&headers)?;
    let request: UpdateZone = json_body(body, state.settings.max_body_bytes)?;
    let asked = [
        request.forwarders.is_some(),
        request.rate_limit.is_some(),
        request.primaries.is_some(),
        request.kind.is_some(),
    ];
    if asked.iter().filter(|&&a| a).count() > 1 {
        return Err(Problem::invalid("two things at once")
            .with_error("", "give one of rate_limit, forwarders, primaries or kind in one request"));
    }
    if let Some(kind) = &request.kind {
        if kind != "primary" {
            return Err(Problem::invalid("the zone's kind cannot be changed so")
                .with_error("/kind", "only a secondary zone changes kind, and only to \"primary\""));
        }
        let zone = zone_for(&state, &caller, &zone).await?;
        let zone = state.control.set_primaries(caller.actor(), &zone, expected.as_deref(), None).await?;
        return Ok(zone_response(StatusCode::OK, &zone));
    }
    if let Some(list) = request.primaries {
        if let Err(message) = ferrodns_control::secondary::parse_primaries(&list) {
            return Err(Problem::invalid("the primaries cannot be set as asked").with_error("/primaries", message));
        }
        let zone = zone_for(&state, &caller, &zone).await?;
        let zone = state.control.set_primaries(caller.actor(), &zone, expected.as_deref(), Some(list)).await?;
        return Ok(zone_response(StatusCode::OK, &zone));
    }
    if let (Some(list), None) = (&request.forwarders, &request.rate_limit) {
        let (forwarders, faults) = parse_forwarders(list);
        if !faults.is_empty() {
            let problem = Problem::invalid("the forwarders cannot be set as asked");
            return Err(faults.into_iter().fold(problem, |problem, (at, message)| problem.with_error(at, message)));
        }
        let zone = zone_for(&state, &caller, &zone).await?;
        let zone = state.control.set_forwarders(caller.actor(), &zone, expected.as_deref(), &forwarders).await?;
        return Ok(zone_response(StatusCode::OK, &zone));
    }
    let (Some(rate_limit), None) = (request.rate_limit, &request.forwarders) else {
        return Err(Problem::invalid("nothing to change, or two things at once").with_error(
            "",
            "give rate_limit (an object, or null) for a hosted zone, or forwarders (a list) for a forward zone",
        ));
    };
    let zone = zone_for(&state, &caller, &zone).await?;
    let server = state.control.defaults.rate_limit;
    let limit = rate_limit.map(|l| ferrodns_zone::RateLimit { rate: l.rate, slip: l.slip.unwrap_or(server.slip) });
    let zone = state.control.set_rate_limit(caller.actor(), &zone, expected.as_deref(), limit).await?;
    Ok(zone_response(StatusCode::OK, &zone))
}

/// Deletes a zone; DNS stops answering for it before the response.
#[utoipa::path(delete, path = "/v1/zones/{zone}", params(("zone" = String, Path, description = "zone name"), ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem)))]
pub async fn delete_zone(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    caller.require(Role::Editor)?;
    let expected = if_match(&headers)?;
    let zone = zone_for(&state, &caller, &zone).await?;
    state.control.delete_zone(&zone, expected.as_deref()).await?;
    let by = &caller.token;
    tracing::info!(zone = %zone.name, tenant = %zone.tenant, actor = %by.name, actor_token = %by.id, "zone deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The zone as an RFC 1035 master file.
#[utoipa::path(get, path = "/v1/zones/{zone}/export", params(("zone" = String, Path, description = "zone name")),
    responses((status = 200, content_type = "text/dns", body = String), (status = 404, body = Problem)))]
pub async fn export_zone(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
) -> Result<Response, Problem> {
    let zone = zone_for(&state, &caller, &zone).await?;
    if zone.is_forward() {
        return Err(ControlError::Forward(zone.name).into());
    }
    let Ok(permit) = state.heavy.clone().try_acquire_owned() else { return Err(Problem::busy_with_heavy()) };
    // The zone as this node serves it, when that is the stored version: it
    // is written out in pieces as the client reads, never held as one text.
    let live = &state.control.live;
    let served = live
        .snapshot()
        .get(zone.name.as_wire())
        .cloned()
        .filter(|served| served.serial() == zone.serial && !live.is_file_zone(zone.name.as_wire()));
    if let Some(served) = served {
        let (chunks, body) = tokio::sync::mpsc::channel::<Bytes>(4);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // A client that stops reading for 30 s ends its export, and frees
            // the thread.
            write_zone_chunks(&served, 64 << 10, &mut |chunk| {
                runtime.block_on(chunks.send_timeout(Bytes::from(chunk), std::time::Duration::from_secs(30))).is_ok()
            });
        });
        // The body holds the permit: an export counts until its last chunk
        // is sent or its client is gone, not only while it is written.
        let body = Chunks(body, permit, ReleaseFreedMemory);
        let mut response = ([(header::CONTENT_TYPE, "text/dns")], axum::body::Body::from_stream(body)).into_response();
        response.headers_mut().insert(header::ETAG, etag(zone.version));
        return Ok(response);
    }
    let _permit = permit;
    let rrsets = state.control.store.zone_rrsets(zone.id).await?;
    let apex = zone.name.clone();
    let text = tokio::task::spawn_blocking(move || {
        build_zone(&apex, rrsets.iter()).map(|built| write_zone(&built)).map_err(|errors| format!("{errors:?}"))
    })
    .await
    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", e.to_string()))?
    .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", e))?;
    let mut response = ([(header::CONTENT_TYPE, "text/dns")], text).into_response();
    response.headers_mut().insert(header::ETAG, etag(zone.version));
    Ok(response)
}

/// An export's pieces, as the response body reads them, its place among
/// the heavy requests, and, once it is sent or abandoned, its buffers handed
/// back to the kernel (fields drop in order: the place goes first).
struct Chunks(
    tokio::sync::mpsc::Receiver<Bytes>,
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    #[allow(dead_code)] ReleaseFreedMemory,
);

/// On drop, hands what a heavy request freed back to the kernel (off the
/// async threads: it walks the allocator's arenas).
struct ReleaseFreedMemory;

impl Drop for ReleaseFreedMemory {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(ferrodns_zone::memory::release_freed_memory);
        }
    }
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// Query of `POST /v1/zones/{zone}/import`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `replace` (default) makes the zone hold exactly the file; `merge`
    /// replaces only the RRsets the file has.
    pub mode: Option<String>,
}

/// Imports a master file atomically: every bad line is reported and then
/// nothing is applied. The file's SOA gives the zone's SOA names and timers;
/// the serial moves on from the zone's, or to the file's when that is newer.
#[utoipa::path(post, path = "/v1/zones/{zone}/import", params(("zone" = String, Path, description = "zone name"), ImportQuery, ("If-Match" = Option<String>, Header, description = "ETags of the zone versions this write may apply to (RFC 9110), or *")),
    request_body(content = String, content_type = "text/dns"),
    responses((status = 200, body = crate::records::ChangeView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn import_zone(
    State(state): State<ApiState>,
    caller: Caller,
    Path(zone): Path<String>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(Role::Editor)?;
    let mode = match query.mode.as_deref() {
        None | Some("replace") => ImportMode::Replace,
        Some("merge") => ImportMode::Merge,
        Some(other) => return Err(Problem::invalid(format!("mode {other:?} is neither replace nor merge"))),
    };
    let Ok(_permit) = state.heavy.clone().try_acquire_owned() else { return Err(Problem::busy_with_heavy()) };
    // Declared after the permit, so dropped before it, whatever the outcome.
    let _release = ReleaseFreedMemory;
    let body = input::read_large_body(body, &headers, state.settings.max_body_bytes).await?;
    let expected = if_match(&headers)?;
    let zone = zone_for(&state, &caller, &zone).await?;
    let apex = zone.name.clone();
    let limits = state.control.store.options().limits;
    let parse_apex = apex.clone();
    let parsed = tokio::task::spawn_blocking(move || parse_import(&parse_apex, &body, &limits))
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", e.to_string()))?;
    let (working, soa) = parsed?;
    let committed =
        state.control.import(caller.actor(), &zone, expected.as_deref(), mode, working, soa).await.map_err(
            |e| match e {
                ControlError::Store(StoreError::Rejected(errors)) => {
                    Problem::from_edit_errors(&errors, |_, _| String::new())
                }
                ControlError::Store(StoreError::NotFound) => Problem::not_found(format!("no zone {apex}")),
                other => Problem::from(other),
            },
        )?;
    crate::records::change_response(&state, &committed).await
}

/// Parses an imported file into RRsets, checking each record the way the
/// change API would. Returns every error with its line.
fn parse_import(
    apex: &Name,
    body: &[u8],
    limits: &ferrodns_zone::edit::Limits,
) -> Result<(PackedZone, Option<Vec<u8>>), Problem> {
    let options =
        ParseOptions { origin: Some(apex.clone()), default_ttl: None, allow_include: false, max_errors: 1000 };
    let mut errors: Vec<ProblemItem> = Vec::new();
    let line_error = |errors: &mut Vec<ProblemItem>, line: usize, message: String| {
        errors.push(ProblemItem {
            pointer: String::new(),
            message: format!("line {line}: {message}"),
            line: Some(line),
        });
    };
    // Each record is packed as it is read (see `PackedZone`): the file is
    // never held as owned records or RRsets.
    let mut records = PackedZoneBuilder::new();
    let mut lines: Vec<u32> = Vec::new();
    let mut soa = None;
    let report = stream_str(body, "import", &options, &mut |record| {
        if !record.owner.is_subdomain_of(apex) {
            line_error(&mut errors, record.line, format!("{} is not inside the zone {apex}", record.owner));
            return;
        }
        if let Err(message) = limits.check_ttl(record.ttl) {
            line_error(&mut errors, record.line, message);
            return;
        }
        if let Err(problem) = rules::check_record(record.rtype, record.rdata) {
            line_error(&mut errors, record.line, problem.to_string());
            return;
        }
        if record.rtype == RecordType::SOA {
            if record.owner != apex {
                line_error(&mut errors, record.line, "an SOA can only be at the apex".to_string());
            } else if soa.replace(record.rdata.to_vec()).is_some() {
                line_error(&mut errors, record.line, "a zone has one SOA record".to_string());
            }
            return;
        }
        records.push(record.owner, record.rtype, record.ttl, record.rdata);
        lines.push(u32::try_from(record.line).unwrap_or(u32::MAX));
    });
    for e in &report.errors {
        line_error(&mut errors, e.line, e.message.clone());
    }
    let zone = records.finish();
    for set in zone.rrsets().filter(|set| set.len() > limits.max_records_per_rrset) {
        line_error(
            &mut errors,
            lines[set.first_pushed()] as usize,
            format!(
                "{} {} has {} records, over the limit of {}",
                set.owner_name(),
                set.rtype,
                set.len(),
                limits.max_records_per_rrset
            ),
        );
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        let mut problem =
            Problem::invalid(format!("{} problem(s) in the master file; nothing was imported", errors.len()));
        problem.errors = errors;
        return Err(problem);
    }
    Ok((zone, soa))
}
