//! How a control-plane operation failed, in terms any front end (the HTTP
//! API, later DNS UPDATE) can map to its own answers.

use std::fmt;

use ferrodns_proto::Name;
use ferrodns_store::StoreError;

/// Why a write or a publication failed.
#[derive(Debug)]
pub enum ControlError {
    /// The store refused or failed: rules broken, not found, a stale
    /// `If-Match`, the database away.
    Store(StoreError),
    /// The zone is stored but this server serves it from a `--zone-file`,
    /// so a write would never be served.
    Shadowed(Name),
    /// The zone is a forward zone, which holds no RRsets and no settings
    /// of a hosted zone.
    Forward(Name),
    /// The zone is a secondary zone, which only transfers from its
    /// primaries write.
    Secondary(Name),
    /// The name is taken by something that is not a stored zone.
    Reserved { zone: Name, why: &'static str },
    /// The request is wrong on its face.
    Invalid(String),
    /// The principal may not do this; says why.
    Forbidden(String),
    /// A zone name the name policy keeps from this tenant (reserved, or
    /// overlapping a zone it does not own); deliberately says no more.
    Unavailable(Name),
    /// The change committed, but the database went away before this node
    /// could read the zone back to serve it.
    CommittedNotServed { zone: Name, detail: String },
    /// A bug: a stored zone that does not build, a task that died.
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(error: StoreError) -> ControlError {
        ControlError::Store(error)
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Store(error) => write!(f, "{error}"),
            ControlError::Shadowed(zone) => write!(
                f,
                "{zone} is also loaded from a --zone-file on this server, and DNS serves the file; \
                 change the file, or remove it from the server's zone files to manage the zone here"
            ),
            ControlError::Reserved { zone, why } => write!(f, "{zone} cannot be used: {why}"),
            ControlError::Forward(zone) => write!(
                f,
                "{zone} is a forward zone: its queries go to its forwarders, so it holds no records; \
                 change its forwarders with PATCH /v1/zones/{zone}"
            ),
            ControlError::Secondary(zone) => write!(
                f,
                "{zone} is a secondary zone: its data comes from its primaries by zone transfer; \
                 make it a primary first (PATCH /v1/zones/{zone} with {{\"kind\": \"primary\"}})"
            ),
            ControlError::Unavailable(zone) => write!(
                f,
                "{zone} is not available to this tenant: it is reserved, or it overlaps a zone this tenant does not hold"
            ),
            ControlError::Invalid(detail) | ControlError::Forbidden(detail) => f.write_str(detail),
            ControlError::CommittedNotServed { zone, detail } => write!(
                f,
                "the change to {zone} was committed, but the database went away before this node could serve it ({detail})"
            ),
            ControlError::Internal(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for ControlError {}
