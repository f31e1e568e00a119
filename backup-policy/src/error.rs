//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

pub use backup_core::ErrorKind;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a policy operation failed: a configuration error (file and field named), a denied or
/// unauthenticated request, or a backend failure.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest breaks a rule.
    #[error("{}: {}{reason}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Manifest {
        /// The file.
        file: PathBuf,
        /// The field, as a path (`spec.windows[0].from`); empty when the parser's reason
        /// names it, or for the whole file.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// An argument breaks a rule.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was refused.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Credentials or a token were not accepted.
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Why, in words fit for the client.
        reason: String,
    },
    /// The actor may not do this.
    #[error("permission denied: {reason}")]
    PermissionDenied {
        /// Why, in words fit for the actor.
        reason: String,
    },
    /// No backup window is open.
    #[error("outside backup windows: {reason}")]
    OutsideWindow {
        /// Why.
        reason: String,
        /// The windows, as configured.
        windows: Vec<String>,
    },
    /// Too many requests.
    #[error("rate limited, retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The catalog (sessions) failed.
    #[error(transparent)]
    Core(#[from] backup_core::Error),
    /// A bug or a broken contract.
    #[error("internal error: {reason}")]
    Internal {
        /// What broke.
        reason: String,
    },
}

impl Error {
    /// What went wrong, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Manifest { .. } | Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::OutsideWindow { .. } => ErrorKind::OutsideWindow,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Core(e) => e.kind(),
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput { what, reason: reason.into() }
    }

    pub(crate) fn unauthenticated(reason: impl Into<String>) -> Self {
        Error::Unauthenticated { reason: reason.into() }
    }

    pub(crate) fn denied(reason: impl Into<String>) -> Self {
        Error::PermissionDenied { reason: reason.into() }
    }
}

impl From<Error> for backup_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Unauthenticated { reason } => backup_core::Error::Unauthenticated { reason },
            Error::PermissionDenied { reason } => backup_core::Error::PermissionDenied { reason },
            Error::OutsideWindow { reason, windows } => backup_core::Error::OutsideWindow { reason, windows },
            Error::RateLimited { retry_after } => backup_core::Error::RateLimited { retry_after: Some(retry_after) },
            Error::InvalidInput { what, reason } => backup_core::Error::InvalidInput { what, reason },
            e @ Error::Manifest { .. } => backup_core::Error::InvalidInput { what: "manifest", reason: e.to_string() },
            Error::Internal { reason } => backup_core::Error::Internal { reason },
        }
    }
}
