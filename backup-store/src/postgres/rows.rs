//! Rows of the PostgreSQL schema to and from the core types.

use backup_core::{
    AuditEvent, Collection, CollectionId, CollectionSpec, Error, ErrorKind, PendingUpload, Result, Session, SessionId,
    Uploader, Version, VersionId, VersionState,
};
use tokio_postgres::Row;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::backend(ErrorKind::Internal, "postgres catalog", "read row", format!("unreadable row: {what}"))
}

/// Sizes and counters are stored as BIGINT; spec validation keeps them in range.
pub(crate) fn int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::internal(format!("{v} does not fit a BIGINT")))
}

/// A column, or an error instead of a panic for a NULL or a type the schema does not have.
fn g<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(corrupt)
}

fn uint(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative count {v}")))
}

fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> Result<T> {
    s.parse().map_err(corrupt)
}

pub(crate) const COLLECTION_COLUMNS: &str = "id, spec, created_at, updated_at, revision, next_number";

pub(crate) fn collection(row: &Row) -> Result<(Collection, u64)> {
    let spec: CollectionSpec = serde_json::from_str(g::<&str>(row, 1)?).map_err(corrupt)?;
    let c = Collection {
        id: parse::<CollectionId>(g(row, 0)?)?,
        spec,
        created_at: g(row, 2)?,
        updated_at: g(row, 3)?,
        revision: uint(g(row, 4)?)?,
    };
    Ok((c, uint(g(row, 5)?)?))
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
    pub(crate) fn into_version(self) -> Result<Version> {
        match self {
            VersionRow::Version(v) => Ok(v),
            VersionRow::Pending(p) => Err(corrupt(format!("row {} is pending, not a version", p.id))),
        }
    }
}

pub(crate) fn version_row(row: &Row) -> Result<VersionRow> {
    let id = VersionId::from_uuid(g(row, 0)?);
    let collection: CollectionId = parse(g(row, 1)?)?;
    let state: VersionState = parse(g(row, 2)?)?;
    let uploader = Uploader {
        user: g(row, 16)?,
        access_key: g(row, 17)?,
        session: g::<Option<&str>>(row, 18)?.map(parse::<SessionId>).transpose()?,
    };
    let object_key: String = g(row, 5)?;
    let created_at = g(row, 11)?;
    if state == VersionState::Pending {
        return Ok(VersionRow::Pending(PendingUpload {
            id,
            collection,
            object_key,
            reserved: uint(g(row, 8)?)?,
            pool_share: uint(g(row, 9)?)?,
            created_at,
            lease_until: g(row, 10)?,
            uploader,
        }));
    }
    Ok(VersionRow::Version(Version {
        id,
        collection,
        number: uint(g(row, 3)?)?,
        filename: g(row, 4)?,
        object_key,
        size: uint(g(row, 6)?)?,
        digest: parse(g(row, 7)?)?,
        created_at,
        committed_at: g(row, 12)?,
        uploader,
        state,
        trashed_at: g(row, 13)?,
        trash_reason: g(row, 14)?,
        purged_at: g(row, 15)?,
    }))
}

pub(crate) const SESSION_COLUMNS: &str =
    "id, user_name, access_key, issued_at, expires_at, requester_addr, description, single_use, scope, revoked_at";

pub(crate) fn session(row: &Row) -> Result<Session> {
    Ok(Session {
        id: parse(g(row, 0)?)?,
        user: g(row, 1)?,
        access_key: g(row, 2)?,
        issued_at: g(row, 3)?,
        expires_at: g(row, 4)?,
        requester_addr: g(row, 5)?,
        description: g(row, 6)?,
        single_use: g(row, 7)?,
        scope: g(row, 8)?,
        revoked_at: g(row, 9)?,
    })
}

pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, collection, version, detail";

pub(crate) fn audit(row: &Row) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: uint(g(row, 0)?)?,
        at: g(row, 1)?,
        actor: g(row, 2)?,
        action: g(row, 3)?,
        collection: g::<Option<&str>>(row, 4)?.map(parse::<CollectionId>).transpose()?,
        version: g::<Option<i64>>(row, 5)?.map(uint).transpose()?,
        detail: g(row, 6)?,
    })
}
