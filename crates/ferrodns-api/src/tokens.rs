//! Tokens: create (the secret is shown once), list, revoke.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferrodns_store::{StoreError, TokenRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::input::{self, json_body, rfc3339};
use crate::problem::Problem;
use crate::ApiState;
use ferrodns_control::tokens::NewToken;
use ferrodns_control::ControlError;

/// The body of `POST /v1/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Shown as the actor in change history.
    pub name: String,
    /// `admin`, `editor` or `viewer`.
    pub role: String,
    /// Defaults to the caller's tenant; only operator tokens may name another.
    pub tenant: Option<String>,
    /// Limits the token to these zones.
    pub zones: Option<Vec<String>>,
}

/// A token as listed (never the secret).
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: String,
    pub zones: Option<Vec<String>>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Only in the response that creates the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn view(token: &TokenRecord, secret: Option<String>) -> TokenView {
    TokenView {
        id: token.id.clone(),
        name: token.name.clone(),
        tenant: token.tenant.clone(),
        role: token.role.clone(),
        zones: token.zones.clone(),
        created_at: rfc3339(token.created_at),
        revoked_at: token.revoked_at.map(rfc3339),
        token: secret,
    }
}

/// Creates a token; the response is the only place its secret appears.
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = TokenView), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let request: CreateToken = json_body(body, state.settings.max_body_bytes)?;
    let mut problem = Problem::invalid("the token cannot be created as asked");
    if request.name.trim().is_empty() || request.name.len() > 200 {
        problem = problem.with_error("/name", "a name of 1 to 200 characters is needed");
    }
    let role = Role::parse(&request.role);
    if role.is_none() {
        problem = problem.with_error("/role", format!("{:?} is not admin, editor or viewer", request.role));
    }
    let tenant = request.tenant.clone().unwrap_or_else(|| caller.token.tenant.clone());
    if tenant.trim().is_empty() || tenant.len() > 200 {
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
    if !problem.errors.is_empty() {
        return Err(problem);
    }
    let new = NewToken {
        name: request.name.trim().to_string(),
        role: role.expect("checked above"),
        tenant: Some(tenant),
        zones,
    };
    let (token, secret) = state.control.create_token(&caller, new).await?;
    let by = &caller.token;
    tracing::info!(
        token = %token.id, name = %token.name, role = %token.role, tenant = %token.tenant, zones = ?token.zones,
        actor = %by.name, actor_token = %by.id, "token created"
    );
    Ok((StatusCode::CREATED, Json(view(&token, Some(secret)))).into_response())
}

/// Lists the tokens the caller covers: its tenant's, within its zone list
/// if it has one (every tenant's, for the operator).
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = Vec<TokenView>), (status = 403, body = Problem)))]
pub async fn list_tokens(State(state): State<ApiState>, caller: Caller) -> Result<Json<Vec<TokenView>>, Problem> {
    let tokens = state.control.list_tokens(&caller).await?;
    Ok(Json(tokens.iter().map(|t| view(t, None)).collect()))
}

/// Revokes a token the caller covers; it fails from the next request on.
/// Tokens beyond the caller's reach are not found. The last operator token
/// is kept (409), so that the API never locks every admin out.
#[utoipa::path(delete, path = "/v1/tokens/{id}", params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    match state.control.revoke_token(&caller, &id).await {
        Ok(()) => {
            let by = &caller.token;
            tracing::info!(token = %id, actor = %by.name, actor_token = %by.id, "token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(ControlError::Store(StoreError::NotFound)) => Err(Problem::not_found(format!("no live token {id:?}"))),
        Err(e) => Err(e.into()),
    }
}
