//! Backend errors converted at the crate boundary into [`backup_core::Error`].

use backup_core::{Error, ErrorKind};

/// Maps a SQLite error: busy and locked databases and I/O failures are `Unavailable` (a retry
/// may help), a full disk is `StorageFull`; everything else is `Internal`.
pub(crate) fn sqlite_error(operation: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| {
        use rusqlite::ErrorCode::*;
        let kind = match e.sqlite_error_code() {
            Some(DiskFull) => ErrorKind::StorageFull,
            Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | OutOfMemory) => ErrorKind::Unavailable,
            Some(ConstraintViolation) => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        };
        Error::backend(kind, "sqlite catalog", operation, e)
    }
}

/// Whether a SQLite error is a unique or primary key violation (by code, never by text).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ),
        _ => false,
    }
}

/// A database written by a newer build: refuse to guess.
pub(crate) fn migration_error(backend: &'static str, found: i64, supported: i64) -> Error {
    Error::backend(
        ErrorKind::Internal,
        backend,
        "open",
        format!(
            "the database has schema version {found}, newer than the {supported} this build knows; \
             use a newer build of backup-store (or restore a catalog export made by this one)"
        ),
    )
}
