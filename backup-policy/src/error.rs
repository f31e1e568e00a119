//! The crate's error type: core's errors, plus the one kind only this crate has (a manifest
//! that breaks a rule, with its file and field).

use std::path::PathBuf;
use std::time::Duration;

pub use backup_core::ErrorKind;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a policy operation failed: a configuration error (file and field named), or one of
/// core's errors (a denied or unauthenticated request, a closed window, a rate limit, a
/// backend failure), which keeps its variant and fields.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest breaks a rule.
    #[error("{}: {}{reason}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Manifest {
        /// The file.
        file: PathBuf,
        /// The field, as written in the manifest (`spec.windows[0].from`), or empty.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// One of core's errors: [`backup_core::Error::Unauthenticated`],
    /// [`backup_core::Error::PermissionDenied`], [`backup_core::Error::OutsideWindow`],
    /// [`backup_core::Error::RateLimited`], [`backup_core::Error::InvalidInput`], …
    #[error(transparent)]
    Core(#[from] backup_core::Error),
}

impl Error {
    /// What went wrong, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Manifest { .. } => ErrorKind::InvalidInput,
            Error::Core(e) => e.kind(),
        }
    }

    /// Core's error, unless this is a manifest error.
    pub fn as_core(&self) -> Option<&backup_core::Error> {
        match self {
            Error::Core(e) => Some(e),
            Error::Manifest { .. } => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Core(backup_core::Error::invalid(what, reason))
    }

    pub(crate) fn unauthenticated(reason: impl Into<String>) -> Self {
        Error::Core(backup_core::Error::Unauthenticated { reason: reason.into() })
    }

    pub(crate) fn denied(reason: impl Into<String>) -> Self {
        Error::Core(backup_core::Error::PermissionDenied { reason: reason.into() })
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Error::Core(backup_core::Error::internal(reason))
    }

    pub(crate) fn rate_limited(retry_after: Duration) -> Self {
        Error::Core(backup_core::Error::RateLimited { retry_after: Some(retry_after) })
    }

    pub(crate) fn outside_window(reason: impl Into<String>, windows: Vec<String>) -> Self {
        Error::Core(backup_core::Error::OutsideWindow { reason: reason.into(), windows })
    }
}

impl From<Error> for backup_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            e @ Error::Manifest { .. } => backup_core::Error::InvalidInput { what: "manifest", reason: e.to_string() },
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::new(e.kind().to_io(), e)
    }
}
