//! RFC 9457 problem details: the one error shape of the API, and the one
//! place where control-plane, store and edit errors become HTTP statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferrodns_control::ControlError;

use crate::HEAVY_AT_ONCE;
use ferrodns_store::StoreError;
use ferrodns_zone::edit::{EditError, Fault, Field};
use serde::Serialize;
use utoipa::ToSchema;

/// One failing part of a request.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProblemItem {
    /// JSON pointer (RFC 6901) into the request body; empty for the whole body.
    pub pointer: String,
    pub message: String,
    /// For master-file bodies: the line the problem is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// An `application/problem+json` body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

impl Problem {
    /// A problem with a status, a short stable title and a specific detail.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://ferrodns.dev/problems/{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// Adds one pointed-at error.
    pub fn with_error(mut self, pointer: impl Into<String>, message: impl Into<String>) -> Problem {
        self.errors.push(ProblemItem { pointer: pointer.into(), message: message.into(), line: None });
        self
    }

    pub fn bad_json(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON", detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 503: as many imports and exports are running as the server takes at once.
    pub fn busy_with_heavy() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too many imports and exports",
            format!("{HEAVY_AT_ONCE} imports and exports are running, as many as the server takes at once; try again shortly"),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn too_large(limit: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// Turns edit errors into one problem. Errors that hold whatever the zone
    /// contains come first (422); otherwise missing things (404), then
    /// conflicts (409). `pointer` maps a change index and field to a pointer.
    pub fn from_edit_errors(errors: &[EditError], pointer: impl Fn(usize, Field) -> String) -> Problem {
        let class = |e: &EditError| match e.fault {
            Fault::Invalid(_) => 0,
            Fault::Missing(_) => 1,
            Fault::Conflict(_) => 2,
        };
        let worst = errors.iter().map(class).min().unwrap_or(0);
        let chosen: Vec<&EditError> = errors.iter().filter(|e| class(e) == worst).collect();
        let mut problem = match worst {
            0 => Problem::invalid(format!("{} problem(s) in the request; nothing was changed", chosen.len())),
            1 => Problem::not_found(format!(
                "{} thing(s) the request refers to do not exist; nothing was changed",
                chosen.len()
            )),
            _ => Problem::conflict("the request conflicts with the zone's data; nothing was changed"),
        };
        for error in chosen {
            let message = match &error.fault {
                Fault::Invalid(m) | Fault::Missing(m) | Fault::Conflict(m) => m.clone(),
            };
            problem = problem.with_error(pointer(error.change, error.field), message);
        }
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body over the limit is left unread, so the connection cannot
            // carry another request; saying so keeps clients from reusing it.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Every error answers problem+json (RFC 9457), also those axum writes
/// itself as plain text or with no body: 405 for a method a route lacks
/// (its `Allow` header kept), 400 for a path that is not UTF-8, and the
/// like. The original text, cut to 512 octets, becomes the detail.
pub async fn errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/problem+json");
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 512)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let (slug, title) = match status {
        StatusCode::BAD_REQUEST => ("bad-request", "Bad request"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        _ => ("http", status.canonical_reason().unwrap_or("Error")),
    };
    let detail = match (text.is_empty(), status, &allow) {
        (false, ..) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("this endpoint takes {}", allow.to_str().unwrap_or("other methods"))
        }
        _ => title.to_lowercase(),
    };
    let mut problem = Problem::new(status, slug, title, detail).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database-unavailable",
                    "Database unavailable",
                    "the database cannot be reached; DNS keeps answering from memory, but changes cannot be made now",
                )
            }
            StoreError::NotFound => Problem::not_found("no such resource"),
            StoreError::Exists => Problem::conflict("it exists already"),
            StoreError::Conflict(detail) => Problem::conflict(detail),
            // The control plane turns this into its own reason; a bare one
            // still says what it is.
            error @ StoreError::NotWritable(_) => Problem::conflict(error.to_string()),
            StoreError::VersionMismatch { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale-version",
                "Precondition failed",
                format!("If-Match does not name the zone's current version {current} (ETag \"{current}\")"),
            ),
            StoreError::Rejected(errors) => Problem::from_edit_errors(&errors, change_pointer),
            StoreError::Corrupt(detail) | StoreError::Database(detail) => {
                tracing::error!(%detail, "store error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the store failed; see the server log",
                )
            }
        }
    }
}

impl From<ControlError> for Problem {
    fn from(error: ControlError) -> Problem {
        match error {
            ControlError::Store(error) => Problem::from(error),
            ControlError::Shadowed(_)
            | ControlError::Reserved { .. }
            | ControlError::Forward(_)
            | ControlError::Secondary(_) => Problem::conflict(error.to_string()),
            ControlError::Invalid(detail) => Problem::invalid(detail),
            ControlError::Forbidden(detail) => Problem::forbidden(detail),
            ControlError::Unavailable(_) => Problem::forbidden(error.to_string()),
            ControlError::CommittedNotServed { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "committed-not-served",
                "Committed but not yet served",
                error.to_string(),
            ),
            ControlError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail)
            }
        }
    }
}

/// The pointer for a field of change `index` in a `/changes` batch body.
pub fn change_pointer(index: usize, field: Field) -> String {
    let base = format!("/changes/{index}");
    field_pointer(&base, field)
}

/// The pointer for a field under `base`.
pub fn field_pointer(base: &str, field: Field) -> String {
    match field {
        Field::Change => base.to_string(),
        Field::Name => format!("{base}/name"),
        Field::Type => format!("{base}/type"),
        Field::Ttl => format!("{base}/ttl"),
        Field::Records => format!("{base}/records"),
        Field::Record(i) => format!("{base}/records/{i}"),
    }
}
