//! The crate's one public error type and its [`ErrorKind`].

use std::time::Duration;

use crate::id::{CollectionId, IdRule};

/// A boxed error from a backend or a body producer, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it (an HTTP layer maps it to a status code).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A collection, version, session or object does not exist.
    NotFound,
    /// Something with that identity exists already.
    AlreadyExists,
    /// The upload does not fit the collection's quota.
    QuotaExceeded,
    /// The actor is known but not allowed to do this.
    PermissionDenied,
    /// The actor could not be identified (bad credentials, revoked or expired token).
    Unauthenticated,
    /// Too many requests; try again later.
    RateLimited,
    /// No backup window of the collection is open now.
    OutsideWindow,
    /// An argument or a specification breaks a validation rule.
    InvalidInput,
    /// The uploaded content breaks the collection's content rule.
    ContentRejected,
    /// The request conflicts with the current state (a concurrent change, an expired lease).
    Conflict,
    /// Stored bytes no longer match what was committed.
    Corrupted,
    /// The upload body failed or was cancelled by its producer.
    Interrupted,
    /// A backend (object store, catalog) is unreachable or failed; retrying may help.
    Unavailable,
    /// The disk (or the quota of the account) under the object store or the catalog is full:
    /// nothing more can be written until space is freed or added.
    StorageFull,
    /// Whether the operation took effect is not known: the backend failed and did not answer
    /// the question afterwards. Find out (by the version's id, or an upload's idempotency
    /// key) before trying again: a blind retry may do it twice.
    OutcomeUnknown,
    /// A bug or a broken contract inside the engine or one of its plug-ins.
    Internal,
}

impl ErrorKind {
    /// Whether the same call may succeed if tried again later without any change: the backend
    /// was unavailable, a rate limit or a window applied, or a concurrent change got in the
    /// way. Everything else (a refused input, a missing collection, a full quota, corrupted
    /// bytes) needs a change first.
    ///
    /// ```
    /// use backup_core::ErrorKind;
    /// assert!(ErrorKind::Unavailable.is_retryable());
    /// assert!(!ErrorKind::QuotaExceeded.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::RateLimited | ErrorKind::OutsideWindow | ErrorKind::Conflict)
    }

    /// The closest `std::io::ErrorKind`.
    pub fn to_io(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as Io;
        match self {
            ErrorKind::NotFound => Io::NotFound,
            ErrorKind::AlreadyExists => Io::AlreadyExists,
            ErrorKind::QuotaExceeded => Io::QuotaExceeded,
            ErrorKind::PermissionDenied | ErrorKind::Unauthenticated | ErrorKind::OutsideWindow => Io::PermissionDenied,
            ErrorKind::RateLimited | ErrorKind::Conflict => Io::ResourceBusy,
            ErrorKind::InvalidInput | ErrorKind::ContentRejected => Io::InvalidInput,
            ErrorKind::Corrupted => Io::InvalidData,
            ErrorKind::Interrupted => Io::Interrupted,
            ErrorKind::Unavailable => Io::ConnectionRefused,
            ErrorKind::StorageFull => Io::StorageFull,
            ErrorKind::OutcomeUnknown => Io::TimedOut,
            ErrorKind::Internal => Io::Other,
        }
    }
}

/// The error of every fallible operation of this crate.
///
/// `Display` is one line and names the collection, version or object key involved; the
/// source chain of backend errors is kept. Branch on [`Error::kind`], show the structured
/// fields (for example [`Error::QuotaExceeded`]'s limit and attempted size).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A collection id breaks one of the id rules.
    #[error("invalid collection id {id:?}: {rule}")]
    InvalidCollectionId {
        /// The refused id (truncated to 32 characters).
        id: String,
        /// The rule it breaks.
        rule: IdRule,
    },
    /// A collection specification breaks a validation rule.
    #[error("invalid collection spec: {field}: {reason}")]
    InvalidSpec {
        /// The offending field, for example `limits.max_collection_size`.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Any other argument breaks a validation rule.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was refused, for example `version selector`.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The collection does not exist.
    #[error("collection {collection} not found")]
    CollectionNotFound {
        /// The collection asked for.
        collection: CollectionId,
    },
    /// The collection has no (visible) version matching the selector.
    #[error("collection {collection} has no version {selector}")]
    VersionNotFound {
        /// The collection asked for.
        collection: CollectionId,
        /// The selector as given (`latest`, `3`, `v3`).
        selector: String,
    },
    /// A version asked to be restored was deleted and its bytes are gone: it stayed in the
    /// trash for the trash retention only.
    #[error(
        "version {number} of collection {collection} was deleted and purged at {purged_at}: a deleted version can be \
         restored only during the trash retention (EngineBuilder::trash_retention)"
    )]
    VersionPurged {
        /// The collection.
        collection: CollectionId,
        /// The version's number.
        number: u64,
        /// When its bytes went.
        purged_at: crate::time::Timestamp,
    },
    /// A session (token registration) does not exist.
    #[error("session {session} not found")]
    SessionNotFound {
        /// The session id asked for.
        session: String,
    },
    /// A collection with this id exists already.
    #[error("collection {collection} already exists")]
    CollectionExists {
        /// The collection id.
        collection: CollectionId,
    },
    /// Something else with this identity exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, for example `session 5f2c…`.
        what: String,
    },
    /// The upload passed the largest size the collection allows now.
    #[error("upload exceeds the quota: allowed {allowed} bytes, received at least {received_at_least}")]
    QuotaExceeded {
        /// The largest size allowed for this upload, in bytes.
        allowed: u64,
        /// How many bytes had arrived (or were announced) when it was refused.
        received_at_least: u64,
    },
    /// The content breaks the collection's content rule.
    #[error("content refused by rule {rule}: {reason}")]
    ContentRejected {
        /// The rule's name.
        rule: String,
        /// Why the content was refused.
        reason: String,
        /// Whether the end of the body was refused (its start had passed).
        at_end: bool,
    },
    /// An upload's commit failed, and the catalog did not answer afterwards whether it had
    /// committed it: the version may exist. Look for it (by [`Error::OutcomeUnknown::id`], or
    /// the upload's idempotency key) before uploading again.
    #[error("the outcome of upload {id} to {collection} is unknown: {source}")]
    OutcomeUnknown {
        /// The collection.
        collection: CollectionId,
        /// The id the version has, if it was committed.
        id: crate::id::VersionId,
        /// Why the commit failed.
        source: Box<Error>,
    },
    /// Held or protected versions take the room an upload needs.
    #[error("collection {collection} is full: {reason}")]
    CollectionFull {
        /// The collection.
        collection: CollectionId,
        /// What fills it.
        reason: String,
    },
    /// The version is held or protected: it cannot be deleted.
    #[error("version {version} of collection {collection} is {reason}")]
    VersionProtected {
        /// The collection.
        collection: CollectionId,
        /// The version number.
        version: u64,
        /// `held`, or `protected until …`.
        reason: String,
    },
    /// A retention lock forbids it: removing a locked version (deleting, rotating out,
    /// purging), deleting its collection, or weakening a lock policy. Nothing changed.
    #[error("collection {collection}: {reason}")]
    Locked {
        /// The collection.
        collection: CollectionId,
        /// What the lock forbids, and until when.
        reason: String,
    },
    /// The catalog and the store belong to different repositories (or one of them is not
    /// what it should be): nothing was touched.
    #[error("repository mismatch between {catalog} and {store}: {reason}")]
    RepositoryMismatch {
        /// The catalog's location.
        catalog: String,
        /// The store's location.
        store: String,
        /// What differs, and what to do.
        reason: String,
    },
    /// The actor is not allowed to do this.
    #[error("permission denied: {reason}")]
    PermissionDenied {
        /// Why, in words fit for the actor.
        reason: String,
    },
    /// The actor could not be identified.
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Why, in words fit for the actor.
        reason: String,
    },
    /// No backup window of the collection is open now.
    #[error("outside backup windows: {reason}")]
    OutsideWindow {
        /// Why, in words fit for the actor.
        reason: String,
        /// The windows of the collection, as configured.
        windows: Vec<String>,
    },
    /// Too many requests.
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {} ms", d.as_millis())).unwrap_or_default())]
    RateLimited {
        /// How long to wait before the next attempt, when known.
        retry_after: Option<Duration>,
    },
    /// The collection has as many uploads in progress as it may.
    #[error(
        "collection {collection} has {limit} uploads in progress, as many as it takes at once; retry when one ends"
    )]
    TooManyUploads {
        /// The collection.
        collection: CollectionId,
        /// How many may run at once.
        limit: u32,
    },
    /// The request conflicts with the current state.
    #[error("conflict: {reason}")]
    Conflict {
        /// What conflicts.
        reason: String,
    },
    /// Stored bytes do not match what was committed.
    #[error("version {version} of collection {collection} is corrupted: {reason}")]
    Corrupted {
        /// The collection.
        collection: CollectionId,
        /// The version number.
        version: u64,
        /// What does not match.
        reason: String,
    },
    /// The upload body failed or was cancelled by its producer.
    #[error("upload body failed: {source}")]
    Body {
        /// The producer's error.
        #[source]
        source: BoxError,
    },
    /// The object store failed.
    #[error("object store {operation} of {key} failed: {source}")]
    Store {
        /// The store operation (`put_part`, `get`, …).
        operation: &'static str,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A catalog or another backend failed.
    #[error("{backend} {operation} failed: {source}")]
    Backend {
        /// How a caller should treat the failure.
        kind: ErrorKind,
        /// Which backend (`sqlite catalog`, `postgres catalog`, …).
        backend: &'static str,
        /// The backend operation.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A bug or a broken plug-in contract.
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
            Error::InvalidCollectionId { .. } | Error::InvalidSpec { .. } | Error::InvalidInput { .. } => {
                ErrorKind::InvalidInput
            }
            Error::CollectionNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::VersionPurged { .. }
            | Error::SessionNotFound { .. } => ErrorKind::NotFound,
            Error::CollectionExists { .. } | Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::QuotaExceeded { .. } | Error::CollectionFull { .. } => ErrorKind::QuotaExceeded,
            Error::VersionProtected { .. } | Error::Locked { .. } | Error::RepositoryMismatch { .. } => {
                ErrorKind::Conflict
            }
            Error::ContentRejected { .. } => ErrorKind::ContentRejected,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Error::OutsideWindow { .. } => ErrorKind::OutsideWindow,
            Error::RateLimited { .. } | Error::TooManyUploads { .. } => ErrorKind::RateLimited,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Corrupted { .. } => ErrorKind::Corrupted,
            Error::Body { .. } => ErrorKind::Interrupted,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::Store { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
                object_store::Error::Precondition { .. } => ErrorKind::Conflict,
                object_store::Error::InvalidPath { .. } => ErrorKind::InvalidInput,
                other if disk_full(other) => ErrorKind::StorageFull,
                _ => ErrorKind::Unavailable,
            },
            Error::Backend { kind, source, .. } if *kind == ErrorKind::Unavailable && disk_full(source.as_ref()) => {
                ErrorKind::StorageFull
            }
            Error::Backend { kind, .. } => *kind,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps a backend's error, for implementations of the crate's traits.
    pub fn backend(
        kind: ErrorKind,
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend { kind, backend, operation, source: source.into() }
    }

    /// A conflict with the current state.
    pub fn conflict(reason: impl Into<String>) -> Self {
        Error::Conflict { reason: reason.into() }
    }

    /// A broken internal contract.
    pub fn internal(reason: impl Into<String>) -> Self {
        Error::Internal { reason: reason.into() }
    }

    /// A refused argument.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput { what, reason: reason.into() }
    }

    /// Wraps an object store error with the operation and key.
    pub(crate) fn store(operation: &'static str, key: &object_store::path::Path, source: object_store::Error) -> Self {
        Error::Store { operation, key: key.to_string(), source }
    }
}

/// Whether an I/O error in `e`'s source chain says the disk (or a disk quota) is full: a
/// local-disk store reports `ENOSPC` inside its own error types.
fn disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        next = e.source();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
                return true;
            }
            // An I/O error wrapping another one: its `source()` skips the wrapped error.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
    }
    false
}

/// An [`Error`] as an I/O error of the closest kind, the error kept as the source: for
/// callers that move versions through `std::io` (a `Read` of a download, a `tokio` copy).
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::new(e.kind().to_io(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_anywhere_in_the_chain_is_storage_full() {
        let enospc = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let wrapped: BoxError = Box::new(std::io::Error::other(enospc));
        let e = Error::store(
            "put",
            &object_store::path::Path::from("a/b"),
            object_store::Error::Generic { store: "LocalFileSystem", source: wrapped },
        );
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        let other: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let e = Error::store(
            "put",
            &object_store::path::Path::from("a"),
            object_store::Error::Generic { store: "x", source: other },
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let sqlite_like = Error::backend(
            ErrorKind::Unavailable,
            "sqlite",
            "write",
            std::io::Error::from(std::io::ErrorKind::QuotaExceeded),
        );
        assert_eq!(sqlite_like.kind(), ErrorKind::StorageFull);
        assert_eq!(ErrorKind::StorageFull.to_io(), std::io::ErrorKind::StorageFull);
    }

    #[test]
    fn store_not_found_is_not_found() {
        let e = Error::store(
            "get",
            &object_store::path::Path::from("a/b"),
            object_store::Error::NotFound { path: "a/b".into(), source: "gone".into() },
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("a/b"), "{e}");
    }

    #[test]
    fn converts_to_io_errors_keeping_the_source() {
        let e: std::io::Error = Error::conflict("x").into();
        assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
        assert_eq!(e.get_ref().unwrap().to_string(), "conflict: x");
    }

    #[test]
    fn rate_limited_display_names_the_wait() {
        let e = Error::RateLimited { retry_after: Some(Duration::from_millis(1500)) };
        assert_eq!(e.to_string(), "rate limited, retry after 1500 ms");
        assert_eq!(Error::RateLimited { retry_after: None }.to_string(), "rate limited");
    }
}
