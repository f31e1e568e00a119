//! backup-repository's response envelopes, pretty-printed as Gin's `IndentedJSON` does (four
//! spaces, keys sorted), and the mapping of errors to statuses and texts.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::ErrorKind;
use serde::Serialize;
use serde_json::{Value, json};

/// A JSON response with `Content-Type: application/json; charset=utf-8`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut out = Vec::with_capacity(256);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    if body.serialize(&mut ser).is_err() {
        out = b"{}".to_vec();
    }
    let mut response = (status, out).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// `200 {"data": …, "status": true}`.
pub(crate) fn ok(data: Value) -> Response {
    json_response(StatusCode::OK, &json!({ "data": data, "status": true }))
}

/// An error of a handler: `{"data": {}, "error": "…", "status": false}`, or the JWT
/// middleware's form `{"code": …, "data": {}, "message": "…", "status": false}` with a
/// `WWW-Authenticate` header.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) jwt_form: bool,
    pub(crate) data: Value,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), jwt_form: false, data: json!({}), retry_after: None }
    }

    /// The JWT middleware's error form.
    pub(crate) fn jwt(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { jwt_form: true, ..ApiError::new(status, message) }
    }

    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// Maps an engine error; `denied` is backup-repository's text for a permission denial of
    /// this route.
    /// `507 Insufficient Storage`: the server's disk is full. Said plainly, with when to try
    /// again; deletions and logins keep working (see `space`).
    pub(crate) fn storage_full() -> Self {
        let mut e = ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the server's storage is full: delete versions to free space, or ask its operator for more",
        );
        e.retry_after = Some(60);
        e
    }

    /// `503` for an upload whose commit may or may not have happened (the catalog did not
    /// say): distinct from a failure, with the version's id and what to do.
    pub(crate) fn outcome_unknown(e: &backup_core::Error) -> Self {
        tracing::error!(error = %e, "an upload's outcome is unknown");
        let id = match e {
            backup_core::Error::OutcomeUnknown { id, .. } => Some(id.to_string()),
            _ => None,
        };
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the upload's outcome is unknown: the catalog did not answer whether it was committed. \
             Retry with the same Idempotency-Key (or look for the version's id) before uploading again",
        )
        .with_data(json!({ "outcome": "unknown", "versionId": id }));
        error.retry_after = Some(30);
        error
    }

    pub(crate) fn from_core(e: &backup_core::Error, denied: &str) -> Self {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            // A quarantined or damaged version: refused, saying why, never served.
            ErrorKind::AlreadyExists | ErrorKind::Conflict | ErrorKind::Corrupted => StatusCode::CONFLICT,
            ErrorKind::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::PermissionDenied | ErrorKind::OutsideWindow => StatusCode::FORBIDDEN,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::ContentRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Interrupted => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::StorageFull => return ApiError::storage_full(),
            ErrorKind::OutcomeUnknown => return ApiError::outcome_unknown(e),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e {
            backup_core::Error::CollectionNotFound { .. } => "cannot find specified collection".to_owned(),
            backup_core::Error::VersionNotFound { .. } => "cannot find specified version".to_owned(),
            // backup-repository's exact text; the engine's reason goes to `data`.
            backup_core::Error::PermissionDenied { reason } if !denied.is_empty() => {
                return ApiError::new(status, denied).with_data(json!({ "reason": reason }));
            }
            backup_core::Error::OutsideWindow { reason, .. } => reason.clone(),
            backup_core::Error::RateLimited { retry_after } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
                err.retry_after = retry_after.map(|d| d.as_secs().max(1));
                return err;
            }
            backup_core::Error::QuotaExceeded { allowed, received_at_least } => format!(
                "filesize reached allowed limit. Uploaded {received_at_least} bytes, allowed to upload only {allowed} bytes"
            ),
            backup_core::Error::Corrupted { .. } => {
                tracing::error!(error = %e, "a damaged version was refused");
                e.to_string()
            }
            // Backend failures are logged, not shown.
            e if status.is_server_error() => {
                tracing::error!(error = %e, "request failed");
                "internal error, the server log has the details".to_owned()
            }
            e => e.to_string(),
        };
        ApiError::new(status, message)
    }

    pub(crate) fn from_policy(e: &backup_policy::Error, denied: &str) -> Self {
        match e {
            backup_policy::Error::Core(core) => ApiError::from_core(core, denied),
            other => ApiError::from_core(&backup_core::Error::invalid("manifest", other.to_string()), denied),
        }
    }
}

/// A user at the cap of their uploads, downloads or simulations in progress: 429.
impl From<crate::state::per_user::Busy> for ApiError {
    fn from(busy: crate::state::per_user::Busy) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, busy.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.jwt_form {
            json!({ "code": self.status.as_u16(), "data": self.data, "message": self.message, "status": false })
        } else {
            json!({ "data": self.data, "error": self.message, "status": false })
        };
        let mut response = json_response(self.status, &body);
        if self.jwt_form {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("JWT realm=backup-repository"));
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_is_told_apart_from_a_failure() {
        let e = backup_core::Error::OutcomeUnknown {
            collection: "db".parse().unwrap(),
            id: backup_core::VersionId::generate(),
            source: Box::new(backup_core::Error::backend(ErrorKind::Unavailable, "catalog", "commit", "gone")),
        };
        let api = ApiError::from_core(&e, "");
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.data["outcome"], "unknown");
        assert!(api.data["versionId"].as_str().is_some_and(|id| id.len() == 36));
        assert!(api.message.contains("Idempotency-Key"), "{}", api.message);
        assert_eq!(api.retry_after, Some(30));
        let full = ApiError::from_core(
            &backup_core::Error::backend(
                ErrorKind::Unavailable,
                "sqlite",
                "commit",
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ),
            "",
        );
        assert_eq!(full.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(full.retry_after.is_some());
    }
}
