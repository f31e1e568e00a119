//! Rows of the SQLite schema to and from the core types.

use backup_core::rotation::VersionSummary;
use backup_core::{
    AuditEvent, Collection, CollectionId, CollectionSpec, Digest, PendingUpload, Session, SessionId, Uploader, Version,
    VersionId, VersionState,
};
use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

/// Times are stored as microseconds since the epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Sizes and counters are stored as signed 64-bit integers; spec validation keeps them in
/// range, so a failure here is a broken invariant, reported rather than wrapped.
pub(crate) fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

fn time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let v: i64 = row.get(idx)?;
    DateTime::from_timestamp_micros(v).ok_or_else(|| conversion(idx, std::fmt::Error))
}

fn opt_time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => DateTime::from_timestamp_micros(v).map(Some).ok_or_else(|| conversion(idx, std::fmt::Error)),
    }
}

fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|e| conversion(idx, e))
}

fn parse_at<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = backup_core::Error>,
{
    let s: String = row.get(idx)?;
    s.parse().map_err(|e| conversion(idx, e))
}

fn opt_parse_at<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>>
where
    T: std::str::FromStr<Err = backup_core::Error>,
{
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| conversion(idx, e)),
    }
}

pub(crate) const COLLECTION_COLUMNS: &str = "id, spec, created_at, updated_at, revision, next_number";

/// A collection row and its number counter.
pub(crate) fn collection(row: &Row<'_>) -> rusqlite::Result<(Collection, u64)> {
    let id: CollectionId = parse_at(row, 0)?;
    let spec_json: String = row.get(1)?;
    let spec: CollectionSpec = serde_json::from_str(&spec_json).map_err(|e| conversion(1, e))?;
    let mut c = Collection::new(id, spec, time_at(row, 2)?);
    c.updated_at = time_at(row, 3)?;
    c.revision = u64_at(row, 4)?;
    Ok((c, u64_at(row, 5)?))
}

pub(crate) const VERSION_COLUMNS: &str = "id, collection, state, number, filename, object_key, size, digest, reserved, \
     pool_share, lease_until, created_at, committed_at, trashed_at, trash_reason, purged_at, uploader_user, \
     uploader_key, uploader_session";

/// A row of the versions table: a pending upload or a version.
#[derive(Debug)]
pub(crate) enum VersionRow {
    Pending(PendingUpload),
    Version(Version),
}

impl VersionRow {
    pub(crate) fn into_version(self) -> rusqlite::Result<Version> {
        match self {
            VersionRow::Version(v) => Ok(v),
            VersionRow::Pending(p) => Err(conversion(2, PendingNotVersion(p.id))),
        }
    }
}

#[derive(Debug)]
struct PendingNotVersion(VersionId);
impl std::fmt::Display for PendingNotVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} is pending, not a version", self.0)
    }
}
impl std::error::Error for PendingNotVersion {}

pub(crate) fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionRow> {
    let id: VersionId = parse_at(row, 0)?;
    let collection: CollectionId = parse_at(row, 1)?;
    let state: VersionState = parse_at(row, 2)?;
    let uploader =
        Uploader { user: row.get(16)?, access_key: row.get(17)?, session: opt_parse_at::<SessionId>(row, 18)? };
    let created_at = time_at(row, 11)?;
    let object_key: String = row.get(5)?;
    if state == VersionState::Pending {
        return Ok(VersionRow::Pending(PendingUpload {
            id,
            collection,
            object_key,
            reserved: u64_at(row, 8)?,
            pool_share: u64_at(row, 9)?,
            created_at,
            lease_until: time_at(row, 10)?,
            uploader,
        }));
    }
    let digest: Digest = parse_at(row, 7)?;
    Ok(VersionRow::Version(Version {
        id,
        collection,
        number: u64_at(row, 3)?,
        filename: row.get(4)?,
        object_key,
        size: u64_at(row, 6)?,
        digest,
        created_at,
        committed_at: time_at(row, 12)?,
        uploader,
        state,
        trashed_at: opt_time_at(row, 13)?,
        trash_reason: row.get(14)?,
        purged_at: opt_time_at(row, 15)?,
    }))
}

pub(crate) const SUMMARY_COLUMNS: &str = "id, number, size, created_at, committed_at";

pub(crate) fn summary(row: &Row<'_>) -> rusqlite::Result<VersionSummary> {
    Ok(VersionSummary {
        id: parse_at(row, 0)?,
        number: u64_at(row, 1)?,
        size: u64_at(row, 2)?,
        created_at: time_at(row, 3)?,
        committed_at: time_at(row, 4)?,
    })
}

pub(crate) const SESSION_COLUMNS: &str =
    "id, user_name, access_key, issued_at, expires_at, requester_addr, description, single_use, scope, revoked_at";

pub(crate) fn session(row: &Row<'_>) -> rusqlite::Result<Session> {
    let id: SessionId = parse_at(row, 0)?;
    let user: String = row.get(1)?;
    let mut s = Session::new(id, user, time_at(row, 3)?, time_at(row, 4)?, row.get::<_, String>(6)?);
    s.access_key = row.get(2)?;
    s.requester_addr = row.get(5)?;
    s.single_use = row.get::<_, i64>(7)? != 0;
    s.scope = row.get(8)?;
    s.revoked_at = opt_time_at(row, 9)?;
    Ok(s)
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, collection, version, detail";

pub(crate) fn audit(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let mut e = AuditEvent::new(time_at(row, 1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?);
    e.seq = u64_at(row, 0)?;
    e.collection = opt_parse_at::<CollectionId>(row, 4)?;
    e.version =
        row.get::<_, Option<i64>>(5)?.map(|v| u64::try_from(v).map_err(|err| conversion(5, err))).transpose()?;
    e.detail = row.get(6)?;
    Ok(e)
}
