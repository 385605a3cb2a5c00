//! Bearer tokens: how callers are identified. What a token may do is
//! decided in the control plane (`ferrodns_control::tokens`: roles, tenants,
//! zone lists, the operator); this module only reads the `Authorization`
//! header and asks the control plane whose token it is.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
pub use ferrodns_control::tokens::{Principal, Role, OPERATOR_TENANT};

use crate::observe::ActorSlot;
use crate::problem::Problem;
use crate::ApiState;

/// The authenticated caller of a request: a [`Principal`], whose methods
/// (`require`, `scope`, `is_operator`, `covers` …) the handlers call.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, Problem> {
        let principal = match authenticate(parts, state).await {
            Ok(principal) => principal,
            Err(problem) => {
                if problem.status == 401 {
                    // The request's own line follows with its id and route.
                    tracing::warn!(reason = %problem.detail, "API authentication failed");
                }
                return Err(problem);
            }
        };
        if let Some(slot) = parts.extensions.get::<ActorSlot>() {
            let token = &principal.token;
            slot.set(&token.name, &token.id, &token.tenant);
        }
        Ok(Caller(principal))
    }
}

async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Principal, Problem> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("send a token in the Authorization header: `Bearer <token>`"))?;
    let secret = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::unauthorized("the Authorization header must be `Bearer <token>`"))?;
    state.control.authenticate(secret).await?.ok_or_else(|| Problem::unauthorized("the token is unknown or revoked"))
}
