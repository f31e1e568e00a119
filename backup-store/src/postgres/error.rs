//! PostgreSQL errors converted at the crate boundary.

use backup_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

use super::BACKEND;

/// Maps a PostgreSQL error: connection failures, serialisation failures and deadlocks are
/// `Unavailable` (a retry may help), a unique violation is a `Conflict` and a full disk
/// `StorageFull` (by SQLSTATE, never by message), everything else `Internal`.
pub(crate) fn pg_error(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| {
        let kind = match e.code() {
            None => ErrorKind::Unavailable,
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => ErrorKind::Conflict,
            Some(c) if *c == SqlState::DISK_FULL => ErrorKind::StorageFull,
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                ErrorKind::Unavailable
            }
            Some(_) => ErrorKind::Internal,
        };
        Error::backend(kind, BACKEND, operation, e)
    }
}

/// Whether the error is a unique or primary key violation (by SQLSTATE).
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::backend(ErrorKind::Unavailable, BACKEND, "connect", e)
}
