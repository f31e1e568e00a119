//! The tables, their keys, how rows are encoded, and how redb's errors become the engine's.
//!
//! Every row is JSON in a table keyed by its id; every question the engine asks has an index
//! table whose key order answers it (redb compares tuple keys element by element), so a read
//! costs what it returns, not the history.

use backup_core::catalog::CatalogRecord;
use backup_core::catalog::protocol::{Counters, VersionRow};
use backup_core::{Collection, Error, ErrorKind, Timestamp, VersionState};
use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What every error names as the backend.
pub(crate) const BACKEND: &str = "redb catalog";

/// id → a version row, pending or not, as its snapshot record
/// ([`CatalogRecord::Pending`] or [`CatalogRecord::Version`]).
pub(crate) const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
/// (collection, number) → id, for every row but pending ones: a number is taken once.
pub(crate) const NUMBERS: TableDefinition<(&str, u64), &str> = TableDefinition::new("numbers");
/// (collection, state, number) → id: the oldest or newest committed versions, the trashed ones.
pub(crate) const STATES: TableDefinition<(&str, u8, u64), &str> = TableDefinition::new("states");
/// (collection, id) of the pending uploads.
pub(crate) const PENDING: TableDefinition<(&str, &str), ()> = TableDefinition::new("pending");
/// (lease end, id) of the pending uploads: expired leases first.
pub(crate) const LEASES: TableDefinition<(i64, &str), ()> = TableDefinition::new("leases");
/// (owner, id) of the pending uploads that name their engine instance.
pub(crate) const OWNERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("owners");
/// (trashed at, id) of the trashed versions: those due for deletion first.
pub(crate) const TRASH: TableDefinition<(i64, &str), ()> = TableDefinition::new("trash");
/// (object key, id) of every row: what the catalog knows of a key.
pub(crate) const OBJECT_KEYS: TableDefinition<(&str, &str), ()> = TableDefinition::new("object_keys");
/// id → mark, of the versions whose description is not written yet.
pub(crate) const UNDESCRIBED: TableDefinition<&str, u64> = TableDefinition::new("undescribed");
/// id → (collection, counters).
pub(crate) const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections");
/// object key → tombstone.
pub(crate) const TOMBSTONES: TableDefinition<&str, &[u8]> = TableDefinition::new("tombstones");
/// (collection, object key) of the tombstones.
pub(crate) const TOMBSTONES_BY_COLLECTION: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("tombstones_by_collection");
/// id → session.
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (user, [`newest_first`] issue time, id) of the sessions.
pub(crate) const SESSIONS_BY_USER: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("sessions_by_user");
/// ([`newest_first`] issue time, id) of the sessions.
pub(crate) const SESSIONS_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("sessions_by_time");
/// (expiry, id) of the sessions.
pub(crate) const SESSIONS_BY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("sessions_by_expiry");
/// sequence number → audit event.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// name → log cursor.
pub(crate) const LOG_CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("log_cursors");
/// `format`, `repository` and `audit_checkpoint`.
pub(crate) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The layout this build writes, in [`META`] under `format`.
pub(crate) const FORMAT: &str = "1";

/// A state in [`STATES`]' keys.
pub(crate) fn state_code(state: VersionState) -> u8 {
    match state {
        VersionState::Pending => 0,
        VersionState::Committed => 1,
        VersionState::Trashed => 2,
        VersionState::Purged => 3,
    }
}

/// A time as a key.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_micros()
}

/// A time as a key that sorts the newest first (flip the sign bit, then every bit), so a
/// forward scan lists sessions newest first and, among equal times, by id.
pub(crate) fn newest_first(t: Timestamp) -> u64 {
    !((t.as_micros() as u64) ^ (1 << 63))
}

/// An error inside a transaction: redb's own, or the step's (a decision's refusal, a taken
/// key). `?` converts both; [`Fail::into_error`] names the operation at the boundary.
#[derive(Debug)]
pub(crate) enum Fail {
    /// redb failed.
    Db(redb::Error),
    /// The step failed.
    Step(Error),
}

macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail::Db(e.into())
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Step(e)
    }
}

impl Fail {
    /// The engine's error: the step's as it is, redb's wrapped with the operation. An I/O
    /// failure is `Unavailable` (a full disk is recognised from it as `StorageFull`).
    pub(crate) fn into_error(self, operation: &'static str) -> Error {
        let e = match self {
            Fail::Step(e) => return e,
            Fail::Db(e) => e,
        };
        let kind = match &e {
            redb::Error::Io(_)
            | redb::Error::DatabaseAlreadyOpen
            | redb::Error::PreviousIo
            | redb::Error::LockPoisoned(_) => ErrorKind::Unavailable,
            redb::Error::Corrupted(_) => ErrorKind::Corrupted,
            _ => ErrorKind::Internal,
        };
        Error::backend(kind, BACKEND, operation, e)
    }
}

/// A result inside a transaction.
pub(crate) type Res<T> = std::result::Result<T, Fail>;

fn corrupt(what: impl std::fmt::Display) -> Fail {
    Fail::Step(Error::internal(format!("{BACKEND}: unreadable row: {what}")))
}

/// A row as JSON.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Res<Vec<u8>> {
    serde_json::to_vec(value).map_err(corrupt)
}

/// A row from JSON.
pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Res<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// A collection row.
pub(crate) type CollectionRow = (Collection, Counters);

/// A version row as stored.
pub(crate) fn encode_row(row: &VersionRow) -> Res<Vec<u8>> {
    match row {
        VersionRow::Pending(p) => to_json(&CatalogRecord::Pending(p.clone())),
        VersionRow::Version(v) => to_json(&CatalogRecord::Version(v.clone())),
        other => Err(corrupt(format!("a kind of row this build does not know: {other:?}"))),
    }
}

/// A version row from storage.
pub(crate) fn decode_row(bytes: &[u8]) -> Res<VersionRow> {
    match from_json(bytes)? {
        CatalogRecord::Pending(p) => Ok(VersionRow::Pending(p)),
        CatalogRecord::Version(v) => Ok(VersionRow::Version(v)),
        other => Err(corrupt(format!("not a version: {other:?}"))),
    }
}
