//! Who is asking, and what they may do: the one home of the rules on roles,
//! tenants and zone lists, and the token writes that follow them.
//!
//! A token is `fdns_` and 43 characters of base64url (256 random bits). The
//! store keeps only its SHA-256: tokens are long and random, so a fast hash
//! is as strong as a password hash here and keeps every request cheap. A
//! token found is kept for [`TOKEN_CACHE_TTL`] ([`TokenCache`]), so that a
//! burst of requests reads it once. Revoking it drops it from the cache of
//! the node that revoked it at once, and from every other node's when the
//! revocation's notification arrives (PostgreSQL), or at the latest when
//! its entry expires (a node that lost the notification clears its cache on
//! reconnecting). Unknown secrets are never cached: each is looked up.
//!
//! Roles: `viewer` reads, `editor` also writes zones and records, `admin`
//! also manages tokens. A token sees only its tenant's zones, and only the
//! listed zones if it has a zone list. The operator is an admin of the
//! `system` tenant *without* a zone list: it acts on every tenant and owns
//! what is server-wide (TSIG keys, every tenant's tokens). A zone list
//! always narrows: a `system` admin limited to some zones is a tenant admin
//! of those zones, nothing more.
//!
//! An admin manages the tokens it *covers*: those of its tenant whose reach
//! is within its own (every token, for the operator). A token with no zone
//! list reaches further than any token with one, so a zone-limited admin
//! neither sees nor revokes its tenant's unlimited tokens, and cannot mint
//! one.

use ferrodns_proto::Name;
pub use ferrodns_store::OPERATOR_TENANT;
use ferrodns_store::{Author, Scope, StoreError, TokenRecord, TsigKeyRecord};
use sha2::{Digest, Sha256};

use crate::{now_micros, Actor, ControlError, ControlPlane};

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

/// An authenticated caller: its token, and the role it carries.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token: TokenRecord,
    pub role: Role,
}

impl Principal {
    /// The principal a stored token stands for; `None` for a role this
    /// server does not know.
    pub fn new(token: TokenRecord) -> Option<Principal> {
        let role = Role::parse(&token.role)?;
        Some(Principal { token, role })
    }

    /// True for the operator: an admin of the operator tenant with no zone
    /// list, who acts on every tenant.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Admin && self.token.tenant == OPERATOR_TENANT && self.token.zones.is_none()
    }

    /// What this principal may see.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            tenant: if self.is_operator() { None } else { Some(&self.token.tenant) },
            zones: self.token.zones.as_deref(),
        }
    }

    /// Refuses principals below `role`.
    pub fn require(&self, role: Role) -> Result<(), ControlError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ControlError::Forbidden(format!(
                "this token's role is {}; this needs {} or above",
                self.role.as_str(),
                role.as_str()
            )))
        }
    }

    /// Refuses all but the operator, for what is server-wide.
    pub fn require_operator(&self, what: &str) -> Result<(), ControlError> {
        self.require(Role::Admin)?;
        if self.is_operator() {
            Ok(())
        } else {
            Err(ControlError::Forbidden(format!(
                "{what} server-wide; only the operator's admin tokens (tenant {OPERATOR_TENANT:?}, no zone list) may"
            )))
        }
    }

    /// This principal as the actor of a write: the history records its
    /// token's name, id and tenant.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            author: Author { name: &self.token.name, token: &self.token.id, tenant: &self.token.tenant },
            scope: self.scope(),
        }
    }

    /// True if the token's zone list (if any) includes this zone.
    pub fn may_touch_zone(&self, apex: &Name) -> bool {
        let name = apex.to_lowercase().to_string();
        self.token.zones.as_ref().is_none_or(|list| list.contains(&name))
    }

    /// True if `token` is within this principal's reach: the operator covers
    /// every token; anyone else covers the tokens of its own tenant, and,
    /// when it has a zone list, only those limited to zones in that list.
    pub fn covers(&self, token: &TokenRecord) -> bool {
        if self.is_operator() {
            return true;
        }
        if token.tenant != self.token.tenant {
            return false;
        }
        match (&self.token.zones, &token.zones) {
            (None, _) => true,
            (Some(own), Some(theirs)) => theirs.iter().all(|zone| own.contains(zone)),
            (Some(_), None) => false,
        }
    }
}

impl Principal {
    /// True if a TSIG key made through the API is within this principal's
    /// reach: every key for the operator; otherwise a key limited to its
    /// tenant and, when it has a zone list, to zones in that list.
    pub fn covers_key(&self, key: &TsigKeyRecord) -> bool {
        if self.is_operator() {
            return true;
        }
        if key.tenant.as_deref() != Some(self.token.tenant.as_str()) {
            return false;
        }
        match (&self.token.zones, &key.zones) {
            (None, _) => true,
            (Some(own), Some(theirs)) => theirs.iter().all(|zone| own.contains(zone)),
            (Some(_), None) => false,
        }
    }
}

/// A token to create.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Shown as the actor in change history.
    pub name: String,
    pub role: Role,
    /// The creator's tenant when `None`.
    pub tenant: Option<String>,
    /// Lowercase zone names the token is limited to.
    pub zones: Option<Vec<String>>,
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

/// How long an authenticated token is taken from [`TokenCache`] before it is
/// read again.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// The most tokens [`TokenCache`] holds; past it, it starts over.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Live tokens recently authenticated, by the hash of their secret.
#[derive(Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (Principal, std::time::Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8]) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(hash).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(principal, _)| principal.clone())
    }

    fn put(&self, hash: Vec<u8>, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (principal, std::time::Instant::now()));
    }

    /// Drops a revoked token.
    pub fn forget(&self, id: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (principal, _)| principal.token.id != id);
    }

    /// Drops every token (revocations may have been missed).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl ControlPlane {
    /// The principal a secret stands for, if it is a live token.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, ControlError> {
        let hash = hash_secret(secret);
        if let Some(principal) = self.tokens.get(&hash) {
            return Ok(Some(principal));
        }
        let Some(token) = self.store.token_by_hash(&hash).await? else { return Ok(None) };
        let principal = Principal::new(token.clone())
            .ok_or_else(|| ControlError::Forbidden(format!("the token has an unknown role {:?}", token.role)))?;
        self.tokens.put(hash, principal.clone());
        Ok(Some(principal))
    }

    /// Creates a token as `by`, who must be an admin covering it. Returns
    /// the record and its secret, which is stored only as a hash.
    pub async fn create_token(&self, by: &Principal, new: NewToken) -> Result<(TokenRecord, String), ControlError> {
        by.require(Role::Admin)?;
        let token = TokenRecord {
            id: new_id(8),
            name: new.name,
            tenant: new.tenant.unwrap_or_else(|| by.token.tenant.clone()),
            role: new.role.as_str().to_string(),
            zones: new.zones,
            created_at: now_micros(),
            revoked_at: None,
        };
        if token.tenant != by.token.tenant && !by.is_operator() {
            return Err(ControlError::Forbidden("only the operator may create tokens for another tenant".into()));
        }
        if !by.covers(&token) {
            return Err(ControlError::Forbidden(
                "this token is limited to some zones and cannot create a token that reaches others".into(),
            ));
        }
        let secret = new_secret();
        self.store.create_token(&token, &hash_secret(&secret)).await?;
        Ok((token, secret))
    }

    /// The tokens `by` covers (never their secrets).
    pub async fn list_tokens(&self, by: &Principal) -> Result<Vec<TokenRecord>, ControlError> {
        by.require(Role::Admin)?;
        let tenant = if by.is_operator() { None } else { Some(by.token.tenant.as_str()) };
        let mut tokens = self.store.list_tokens(tenant).await?;
        tokens.retain(|token| by.covers(token));
        Ok(tokens)
    }

    /// Revokes a live token that `by` covers; any other id is not found, so
    /// that nothing is learnt of tokens beyond `by`'s reach.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<(), ControlError> {
        by.require(Role::Admin)?;
        let tenant = if by.is_operator() { None } else { Some(by.token.tenant.as_str()) };
        let covered = self.store.list_tokens(tenant).await?.iter().any(|t| t.id == id && by.covers(t));
        if !covered {
            return Err(ControlError::Store(StoreError::NotFound));
        }
        self.store.revoke_token(id, tenant, now_micros()).await?;
        self.tokens.forget(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, role: &str, zones: Option<&[&str]>) -> Principal {
        Principal::new(TokenRecord {
            id: "id".into(),
            name: "n".into(),
            tenant: tenant.into(),
            role: role.into(),
            zones: zones.map(|z| z.iter().map(|s| s.to_string()).collect()),
            created_at: 0,
            revoked_at: None,
        })
        .unwrap()
    }

    #[test]
    fn a_zone_list_always_narrows() {
        let root = principal(OPERATOR_TENANT, "admin", None);
        let limited_system = principal(OPERATOR_TENANT, "admin", Some(&["alpha.test."]));
        let tenant_admin = principal("ty", "admin", None);
        let limited_admin = principal("ty", "admin", Some(&["b.test."]));
        assert!(root.is_operator());
        assert!(!limited_system.is_operator());
        assert!(limited_system.require_operator("TSIG keys are").is_err());
        assert_eq!(limited_system.scope().tenant, Some(OPERATOR_TENANT));

        assert!(root.covers(&tenant_admin.token));
        assert!(!limited_system.covers(&root.token));
        assert!(!limited_system.covers(&tenant_admin.token));
        assert!(tenant_admin.covers(&limited_admin.token));
        assert!(!limited_admin.covers(&tenant_admin.token));
        assert!(limited_admin.covers(&principal("ty", "viewer", Some(&["b.test."])).token));
        assert!(!limited_admin.covers(&principal("ty", "viewer", Some(&["b.test.", "c.test."])).token));
        assert!(!tenant_admin.covers(&principal("tx", "viewer", None).token));
    }
}
