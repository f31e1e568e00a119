//! Rows of the PostgreSQL schema to and from the core types.

use crate::metadata_column::metadata_from;
use backup_core::audit::{AuditHead, LogCursor};
use backup_core::catalog::protocol::{Counters, VersionRow};
use backup_core::catalog::{PendingUpload, Tombstone, TombstoneKind};
use backup_core::{
    AuditEvent, Collection, CollectionId, CollectionSpec, Error, ErrorKind, Result, Session, SessionId, Timestamp,
    Uploader, Version, VersionId, VersionState,
};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::backend(ErrorKind::Internal, "postgres catalog", "read row", format!("unreadable row: {what}"))
}

/// Sizes and counters are stored as BIGINT; spec validation keeps them in range.
pub(crate) fn int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::internal(format!("{v} does not fit a BIGINT")))
}

/// A time as the driver stores it.
pub(crate) fn ts(t: Timestamp) -> DateTime<Utc> {
    t.to_datetime()
}

/// A column, or an error instead of a panic for a NULL or a type the schema does not have.
fn g<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(corrupt)
}

fn time(row: &Row, idx: usize) -> Result<Timestamp> {
    g::<DateTime<Utc>>(row, idx).map(Timestamp::from)
}

fn opt_time(row: &Row, idx: usize) -> Result<Option<Timestamp>> {
    Ok(g::<Option<DateTime<Utc>>>(row, idx)?.map(Timestamp::from))
}

fn uint(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative count {v}")))
}

fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> Result<T> {
    s.parse().map_err(corrupt)
}

pub(crate) const COLLECTION_COLUMNS: &str = "id, spec, created_at, updated_at, revision, next_number, \
     committed_versions, committed_bytes, committed_overage, protected_versions, held_versions, last_committed_at, \
     quarantined_versions";

pub(crate) fn collection(row: &Row) -> Result<(Collection, Counters)> {
    let spec: CollectionSpec = serde_json::from_str(g::<&str>(row, 1)?).map_err(corrupt)?;
    let c = Collection::new(parse::<CollectionId>(g(row, 0)?)?, spec, time(row, 2)?)
        .with_updated_at(time(row, 3)?)
        .with_revision(uint(g(row, 4)?)?);
    let mut counters = Counters::empty();
    counters.next_number = uint(g(row, 5)?)?;
    counters.versions = uint(g(row, 6)?)?;
    counters.bytes = uint(g(row, 7)?)?;
    counters.overage = uint(g(row, 8)?)?;
    counters.protected = uint(g(row, 9)?)?;
    counters.held = uint(g(row, 10)?)?;
    counters.last_committed_at = opt_time(row, 11)?;
    counters.quarantined = uint(g(row, 12)?)?;
    Ok((c, counters))
}

pub(crate) const VERSION_COLUMNS: &str = "id, collection, state, number, filename, object_key, size, digest, reserved, \
     pool_share, lease_until, created_at, committed_at, trashed_at, trash_reason, purged_at, uploader_user, \
     uploader_key, uploader_session, announced, owner, held, protected_until, verified_at, quarantined, staging, metadata, \
     lock_mode, locked_until";

pub(crate) fn version_row(row: &Row) -> Result<VersionRow> {
    let id = VersionId::from_uuid(g(row, 0)?);
    let collection: CollectionId = parse(g(row, 1)?)?;
    let state: VersionState = parse(g(row, 2)?)?;
    let uploader = Uploader::user(g::<String>(row, 16)?)
        .with_access_key(g(row, 17)?)
        .with_session(g::<Option<&str>>(row, 18)?.map(parse::<SessionId>).transpose()?);
    let object_key: String = g(row, 5)?;
    let created_at = time(row, 11)?;
    if state == VersionState::Pending {
        return Ok(VersionRow::Pending(
            PendingUpload::new(id, collection, object_key, created_at, time(row, 10)?)
                .with_reservation(
                    uint(g(row, 8)?)?,
                    uint(g(row, 9)?)?,
                    g::<Option<i64>>(row, 19)?.map(uint).transpose()?,
                )
                .with_uploader(uploader)
                .with_owner(g(row, 20)?)
                .with_staging(g(row, 25)?),
        ));
    }
    let trashed = match (opt_time(row, 13)?, g::<Option<String>>(row, 14)?) {
        (Some(at), reason) => Some((at, reason.unwrap_or_default())),
        (None, _) => None,
    };
    Ok(VersionRow::Version(
        Version::new(id, collection, uint(g(row, 3)?)?, object_key, uint(g(row, 6)?)?, parse(g(row, 7)?)?)
            .with_filename(g::<String>(row, 4)?)
            .with_times(created_at, time(row, 12)?)
            .with_uploader(uploader)
            .with_state(state, trashed, opt_time(row, 15)?)
            .with_protection(g(row, 21)?, opt_time(row, 22)?)
            .with_verification(opt_time(row, 23)?, g(row, 24)?)
            .with_metadata(metadata_from(g(row, 26)?).map_err(corrupt)?)
            .with_lock(lock(row, 27)?),
    ))
}

/// A version's lock from its `lock_mode` (at `i`) and `locked_until` (at `i + 1`) columns.
fn lock(row: &Row, i: usize) -> Result<Option<backup_core::VersionLock>> {
    match (g::<Option<&str>>(row, i)?.map(parse::<backup_core::LockMode>).transpose()?, opt_time(row, i + 1)?) {
        (Some(mode), Some(until)) => Ok(Some(backup_core::VersionLock::new(mode, until))),
        (None, None) => Ok(None),
        _ => Err(corrupt("a lock mode without its end, or an end without its mode")),
    }
}

pub(crate) fn version(row: &Row) -> Result<Version> {
    match version_row(row)? {
        VersionRow::Version(v) => Ok(v),
        _ => Err(corrupt("a pending row where a version was expected")),
    }
}

/// A version row followed by its `undescribed` mark.
pub(crate) fn undescribed(row: &Row) -> Result<backup_core::catalog::Undescribed> {
    Ok(backup_core::catalog::Undescribed::new(version(row)?, uint(g(row, 29)?)?))
}

pub(crate) fn pending(row: &Row) -> Result<PendingUpload> {
    match version_row(row)? {
        VersionRow::Pending(p) => Ok(p),
        _ => Err(corrupt("a version where a pending row was expected")),
    }
}

pub(crate) const SESSION_COLUMNS: &str = "id, user_name, access_key, issued_at, expires_at, requester_addr, \
     description, single_use, scope, revoked_at, credential, chain_started_at";

pub(crate) fn session(row: &Row) -> Result<Session> {
    let mut s = Session::new(
        parse::<SessionId>(g(row, 0)?)?,
        g::<String>(row, 1)?,
        time(row, 3)?,
        time(row, 4)?,
        g::<String>(row, 6)?,
    )
    .with_single_use(g(row, 7)?)
    .with_revoked_at(opt_time(row, 9)?);
    s.access_key = g(row, 2)?;
    s.requester_addr = g(row, 5)?;
    s.scope = g(row, 8)?;
    s.credential = g(row, 10)?;
    s.chain_started_at = opt_time(row, 11)?;
    Ok(s)
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, collection, version, detail, hash";

pub(crate) fn audit(row: &Row) -> Result<AuditEvent> {
    let mut e = AuditEvent::new(time(row, 1)?, g::<String>(row, 2)?, g::<String>(row, 3)?)
        .with_seq(uint(g(row, 0)?)?)
        .with_detail(g::<String>(row, 6)?);
    e.collection = g::<Option<&str>>(row, 4)?.map(parse::<CollectionId>).transpose()?;
    e.version = g::<Option<i64>>(row, 5)?.map(uint).transpose()?;
    e.hash = g::<Option<&str>>(row, 7)?.map(parse).transpose()?;
    Ok(e)
}

/// A cursor in a row of `audit::CURSOR_COLUMNS`.
pub(crate) fn cursor(row: &Row) -> Result<LogCursor> {
    let mut c = LogCursor::new(g::<String>(row, 0)?, uint(g(row, 1)?)?);
    c.owner = g(row, 2)?;
    c.lease_until = opt_time(row, 3)?;
    c.state = g(row, 4)?;
    Ok(c)
}

/// The head in a row of `seq, hash`.
pub(crate) fn audit_head(row: &Row) -> Result<AuditHead> {
    Ok(AuditHead { seq: uint(g(row, 0)?)?, hash: parse(g(row, 1)?)? })
}

pub(crate) const TOMBSTONE_COLUMNS: &str = "object_key, collection, version, kind, recorded_at, staging";

pub(crate) fn tombstone(row: &Row) -> Result<Tombstone> {
    let kind: TombstoneKind = parse(g(row, 3)?)?;
    Ok(Tombstone::new(g::<String>(row, 0)?, parse(g(row, 1)?)?, VersionId::from_uuid(g(row, 2)?), kind, time(row, 4)?)
        .with_staging(g(row, 5)?))
}
