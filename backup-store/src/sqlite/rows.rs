//! Rows of the SQLite schema to and from the core types.

use crate::metadata_column::metadata_from;
use backup_core::audit::{AuditHead, LogCursor};
use backup_core::catalog::protocol::{Counters, VersionRow};
use backup_core::catalog::{PendingUpload, Tombstone, TombstoneKind};
use backup_core::{
    AuditEvent, Collection, CollectionId, CollectionSpec, Digest, Session, SessionId, Timestamp, Uploader, Version,
    VersionId, VersionState,
};
use rusqlite::Row;
use rusqlite::types::Type;

/// Times are stored as microseconds since the epoch.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_micros()
}

/// Sizes and counters are stored as signed 64-bit integers; spec validation keeps them in
/// range, so a failure here is a broken invariant, reported rather than wrapped.
pub(crate) fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn conversion(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

fn time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    let v: i64 = row.get(idx)?;
    Timestamp::from_micros(v).ok_or_else(|| conversion(idx, std::fmt::Error))
}

fn opt_time_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => Timestamp::from_micros(v).map(Some).ok_or_else(|| conversion(idx, std::fmt::Error)),
    }
}

fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|e| conversion(idx, e))
}

fn opt_u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    row.get::<_, Option<i64>>(idx)?.map(|v| u64::try_from(v).map_err(|e| conversion(idx, e))).transpose()
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

pub(crate) const COLLECTION_COLUMNS: &str = "id, spec, created_at, updated_at, revision, next_number, \
     committed_versions, committed_bytes, committed_overage, protected_versions, held_versions, last_committed_at, \
     quarantined_versions";

/// A collection row and its counters.
pub(crate) fn collection(row: &Row<'_>) -> rusqlite::Result<(Collection, Counters)> {
    let id: CollectionId = parse_at(row, 0)?;
    let spec_json: String = row.get(1)?;
    let spec: CollectionSpec = serde_json::from_str(&spec_json).map_err(|e| conversion(1, e))?;
    let c =
        Collection::new(id, spec, time_at(row, 2)?).with_updated_at(time_at(row, 3)?).with_revision(u64_at(row, 4)?);
    let mut counters = Counters::empty();
    counters.next_number = u64_at(row, 5)?;
    counters.versions = u64_at(row, 6)?;
    counters.bytes = u64_at(row, 7)?;
    counters.overage = u64_at(row, 8)?;
    counters.protected = u64_at(row, 9)?;
    counters.held = u64_at(row, 10)?;
    counters.last_committed_at = opt_time_at(row, 11)?;
    counters.quarantined = u64_at(row, 12)?;
    Ok((c, counters))
}

pub(crate) const VERSION_COLUMNS: &str = "id, collection, state, number, filename, object_key, size, digest, reserved, \
     pool_share, lease_until, created_at, committed_at, trashed_at, trash_reason, purged_at, uploader_user, \
     uploader_key, uploader_session, announced, owner, held, protected_until, verified_at, quarantined, staging, metadata, \
     lock_mode, locked_until";

pub(crate) fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionRow> {
    let id: VersionId = parse_at(row, 0)?;
    let collection: CollectionId = parse_at(row, 1)?;
    let state: VersionState = parse_at(row, 2)?;
    let uploader = Uploader::user(row.get::<_, String>(16)?)
        .with_access_key(row.get(17)?)
        .with_session(opt_parse_at::<SessionId>(row, 18)?);
    let created_at = time_at(row, 11)?;
    let object_key: String = row.get(5)?;
    if state == VersionState::Pending {
        return Ok(VersionRow::Pending(
            PendingUpload::new(id, collection, object_key, created_at, time_at(row, 10)?)
                .with_reservation(u64_at(row, 8)?, u64_at(row, 9)?, opt_u64_at(row, 19)?)
                .with_uploader(uploader)
                .with_owner(row.get(20)?)
                .with_staging(row.get(25)?),
        ));
    }
    let digest: Digest = parse_at(row, 7)?;
    let trashed = match (opt_time_at(row, 13)?, row.get::<_, Option<String>>(14)?) {
        (Some(at), reason) => Some((at, reason.unwrap_or_default())),
        (None, _) => None,
    };
    Ok(VersionRow::Version(
        Version::new(id, collection, u64_at(row, 3)?, object_key, u64_at(row, 6)?, digest)
            .with_filename(row.get::<_, String>(4)?)
            .with_times(created_at, time_at(row, 12)?)
            .with_uploader(uploader)
            .with_state(state, trashed, opt_time_at(row, 15)?)
            .with_protection(row.get::<_, i64>(21)? != 0, opt_time_at(row, 22)?)
            .with_verification(opt_time_at(row, 23)?, row.get(24)?)
            .with_metadata(metadata_from(row.get(26)?).map_err(|e| conversion(26, e))?)
            .with_lock(lock_at(row, 27)?),
    ))
}

/// A version's lock from its `lock_mode` (at `i`) and `locked_until` (at `i + 1`) columns.
fn lock_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<backup_core::VersionLock>> {
    match (opt_parse_at::<backup_core::LockMode>(row, i)?, opt_time_at(row, i + 1)?) {
        (Some(mode), Some(until)) => Ok(Some(backup_core::VersionLock::new(mode, until))),
        (None, None) => Ok(None),
        _ => Err(conversion(i, BadRow("a lock mode without its end, or an end without its mode"))),
    }
}

/// A row that must be a version (committed, trashed or purged).
pub(crate) fn version(row: &Row<'_>) -> rusqlite::Result<Version> {
    match version_row(row)? {
        VersionRow::Version(v) => Ok(v),
        _ => Err(conversion(2, PENDING_NOT_VERSION)),
    }
}

/// A version row followed by its `undescribed` mark.
pub(crate) fn undescribed(row: &Row<'_>) -> rusqlite::Result<backup_core::catalog::Undescribed> {
    Ok(backup_core::catalog::Undescribed::new(version(row)?, u64_at(row, 29)?))
}

/// A row that breaks the schema's rules (a kind of row where another was expected, half a
/// pair of columns), as a conversion error of the column that shows it.
#[derive(Debug)]
struct BadRow(&'static str);
impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for BadRow {}

/// A pending row where a version was expected.
const PENDING_NOT_VERSION: BadRow = BadRow("a pending row where a version was expected");

/// A row of the versions table as a snapshot record.
pub(crate) fn record(row: &Row<'_>) -> rusqlite::Result<backup_core::catalog::CatalogRecord> {
    use backup_core::catalog::CatalogRecord;
    match version_row(row)? {
        VersionRow::Pending(p) => Ok(CatalogRecord::Pending(p)),
        VersionRow::Version(v) => Ok(CatalogRecord::Version(v)),
        _ => Err(conversion(2, PENDING_NOT_VERSION)),
    }
}

/// A row that must be pending.
pub(crate) fn pending(row: &Row<'_>) -> rusqlite::Result<PendingUpload> {
    match version_row(row)? {
        VersionRow::Pending(p) => Ok(p),
        _ => Err(conversion(2, PENDING_NOT_VERSION)),
    }
}

pub(crate) const SESSION_COLUMNS: &str = "id, user_name, access_key, issued_at, expires_at, requester_addr, \
     description, single_use, scope, revoked_at, credential, chain_started_at";

pub(crate) fn session(row: &Row<'_>) -> rusqlite::Result<Session> {
    let id: SessionId = parse_at(row, 0)?;
    let user: String = row.get(1)?;
    let mut s = Session::new(id, user, time_at(row, 3)?, time_at(row, 4)?, row.get::<_, String>(6)?)
        .with_single_use(row.get::<_, i64>(7)? != 0)
        .with_revoked_at(opt_time_at(row, 9)?);
    s.access_key = row.get(2)?;
    s.requester_addr = row.get(5)?;
    s.scope = row.get(8)?;
    s.credential = row.get(10)?;
    s.chain_started_at = opt_time_at(row, 11)?;
    Ok(s)
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, collection, version, detail, hash";

pub(crate) fn audit(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let mut e = AuditEvent::new(time_at(row, 1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?)
        .with_seq(u64_at(row, 0)?)
        .with_detail(row.get::<_, String>(6)?);
    e.collection = opt_parse_at::<CollectionId>(row, 4)?;
    e.version = opt_u64_at(row, 5)?;
    e.hash = opt_parse_at(row, 7)?;
    Ok(e)
}

/// A cursor in a row of `audit::CURSOR_COLUMNS`.
pub(crate) fn cursor(row: &Row<'_>) -> rusqlite::Result<LogCursor> {
    let mut c = LogCursor::new(row.get::<_, String>(0)?, u64_at(row, 1)?);
    c.owner = row.get(2)?;
    c.lease_until = opt_time_at(row, 3)?;
    c.state = row.get(4)?;
    Ok(c)
}

/// The head in a row of `seq, hash`.
pub(crate) fn audit_head(row: &Row<'_>) -> rusqlite::Result<AuditHead> {
    Ok(AuditHead { seq: u64_at(row, 0)?, hash: parse_at(row, 1)? })
}

pub(crate) const TOMBSTONE_COLUMNS: &str = "object_key, collection, version, kind, recorded_at, staging";

pub(crate) fn tombstone(row: &Row<'_>) -> rusqlite::Result<Tombstone> {
    let kind: TombstoneKind = parse_at(row, 3)?;
    Ok(Tombstone::new(row.get::<_, String>(0)?, parse_at(row, 1)?, parse_at(row, 2)?, kind, time_at(row, 4)?)
        .with_staging(row.get(5)?))
}
