//! Bearer tokens: how callers are identified and what they may do.
//!
//! A token is `fdns_` and 43 characters of base64url (256 random bits). The
//! store keeps only its SHA-256: tokens are long and random, so a fast hash
//! is as strong as a password hash here and keeps every request cheap. Each
//! request looks the hash up, so a revoked token fails on the next request.
//!
//! Roles: `viewer` reads, `editor` also writes zones and records, `admin`
//! also manages tokens. A token sees only its tenant's zones (others are
//! 404), and only the listed zones if it has a zone list. Tokens of the
//! operator tenant (`system`, which the first admin token belongs to) that
//! are admins act on every tenant.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ferrodns_proto::Name;
use ferrodns_store::{Scope, TokenRecord};
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::ApiState;

/// The tenant of the operator's own tokens.
pub const OPERATOR_TENANT: &str = "system";

/// A token's role, least to most powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token: TokenRecord,
    pub role: Role,
}

impl Caller {
    /// True for admins of the operator tenant, who act on every tenant.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Admin && self.token.tenant == OPERATOR_TENANT
    }

    /// What this caller may see.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            tenant: if self.is_operator() { None } else { Some(&self.token.tenant) },
            zones: self.token.zones.as_deref(),
        }
    }

    /// Refuses callers below `role`.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this token's role is {}; this needs {} or above",
                self.role.as_str(),
                role.as_str()
            )))
        }
    }

    /// The name history records for this caller.
    pub fn actor(&self) -> String {
        self.token.name.clone()
    }

    /// True if the token's zone list (if any) includes this zone.
    pub fn may_touch_zone(&self, apex: &Name) -> bool {
        let name = apex.to_lowercase().to_string();
        self.token.zones.as_ref().is_none_or(|list| list.contains(&name))
    }
}

/// SHA-256 of a token's secret, as stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new random token secret.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    format!("fdns_{}", data_encoding::BASE64URL_NOPAD.encode(&bytes))
}

/// A new random identifier of `bytes` random bytes, in lowercase hex.
pub fn new_id(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    fill_random(&mut buffer);
    data_encoding::HEXLOWER.encode(&buffer)
}

fn fill_random(buffer: &mut [u8]) {
    // The operating system's generator does not fail on Linux once booted;
    // if it ever did, a predictable token would be worse than stopping.
    getrandom::fill(buffer).expect("the operating system's random generator failed");
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, Problem> {
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
        let token = state
            .control
            .store
            .token_by_hash(&hash_secret(secret))
            .await?
            .ok_or_else(|| Problem::unauthorized("the token is unknown or revoked"))?;
        let role = Role::parse(&token.role).ok_or_else(|| Problem::forbidden("the token has an unknown role"))?;
        Ok(Caller { token, role })
    }
}
