//! Applying a step's mutations: storage only, the rules were applied by the decision.

use backup_core::catalog::PendingUpload;
use backup_core::catalog::protocol::Mutation;
use backup_core::{Error, ErrorKind, Result, Session, Version};
use rusqlite::{Transaction, params};

use super::BACKEND;
use super::rows::{COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS, int, micros};
use crate::error::{is_unique_violation, sqlite_error};
use crate::metadata_column::metadata_text;

/// Applies `m`, failing with the error its documentation names when a key is taken.
pub(super) fn apply(tx: &Transaction<'_>, m: &Mutation) -> Result<()> {
    let op = "apply";
    let e = sqlite_error(op);
    let n = match m {
        Mutation::CreateCollection(c) => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            let r = tx
                .prepare_cached(&format!(
                    "INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 1, 0, 0, 0, 0, 0, NULL, 0)"
                ))
                .and_then(|mut st| {
                    st.execute(params![
                        c.id.as_str(),
                        spec,
                        micros(c.created_at),
                        micros(c.updated_at),
                        int(c.revision)?
                    ])
                });
            match r {
                Err(err) if is_unique_violation(&err) => {
                    return Err(Error::CollectionExists { collection: c.id.clone() });
                }
                other => other.map_err(&e)?,
            }
        }
        Mutation::UpdateCollection(c) => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            tx.prepare_cached("UPDATE collections SET spec = ?2, updated_at = ?3, revision = ?4 WHERE id = ?1")
                .and_then(|mut st| st.execute(params![c.id.as_str(), spec, micros(c.updated_at), int(c.revision)?]))
                .map_err(&e)?
        }
        Mutation::DeleteCollection { id, at } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO tombstones (object_key, collection, version, kind, recorded_at) \
                 SELECT object_key, collection, id, 'purged', ?2 FROM versions WHERE collection = ?1 AND state = 'trashed'",
            )
            .and_then(|mut st| st.execute(params![id.as_str(), micros(*at)]))
            .map_err(&e)?;
            tx.prepare_cached("DELETE FROM versions WHERE collection = ?1")
                .and_then(|mut st| st.execute([id.as_str()]))
                .map_err(&e)?;
            tx.prepare_cached("DELETE FROM collections WHERE id = ?1")
                .and_then(|mut st| st.execute([id.as_str()]))
                .map_err(&e)?
        }
        Mutation::SetCounters { collection, counters: c } => tx
            .prepare_cached(
                "UPDATE collections SET next_number = ?2, committed_versions = ?3, committed_bytes = ?4, \
                 committed_overage = ?5, protected_versions = ?6, held_versions = ?7, last_committed_at = ?8, \
                 quarantined_versions = ?9 WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    collection.as_str(),
                    int(c.next_number)?,
                    int(c.versions)?,
                    int(c.bytes)?,
                    int(c.overage)?,
                    int(c.protected)?,
                    int(c.held)?,
                    c.last_committed_at.map(micros),
                    int(c.quarantined)?,
                ])
            })
            .map_err(&e)?,
        Mutation::InsertPending(p) => match insert_pending(tx, p) {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::AlreadyExists { what: format!("upload {}", p.id) });
            }
            other => other.map_err(&e)?,
        },
        Mutation::UpdatePending(p) => tx
            .prepare_cached(
                "UPDATE versions SET reserved = ?2, pool_share = ?3, lease_until = ?4, staging = ?5 \
                 WHERE id = ?1 AND state = 'pending'",
            )
            .and_then(|mut st| {
                st.execute(params![
                    p.id.to_string(),
                    int(p.reserved)?,
                    int(p.pool_share)?,
                    micros(p.lease_until),
                    p.staging
                ])
            })
            .map_err(&e)
            .and_then(|n| gone_if_zero(n, m))?,
        Mutation::RemovePending(id) => tx
            .prepare_cached("DELETE FROM versions WHERE id = ?1 AND state = 'pending'")
            .and_then(|mut st| st.execute([id.to_string()]))
            .map_err(&e)
            .and_then(|n| gone_if_zero(n, m))?,
        Mutation::CommitVersion(v) => {
            let r = tx
                .prepare_cached(
                    "UPDATE versions SET state = 'committed', number = ?2, filename = ?3, size = ?4, digest = ?5, \
                     committed_at = ?6, reserved = NULL, pool_share = NULL, lease_until = NULL, metadata = ?8, \
                     lock_mode = ?9, locked_until = ?10 WHERE id = ?1 AND state = 'pending' AND collection = ?7",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        v.id.to_string(),
                        int(v.number)?,
                        v.filename,
                        int(v.size)?,
                        v.digest.to_string(),
                        micros(v.committed_at),
                        v.collection.as_str(),
                        metadata_text(&v.metadata),
                        v.lock.map(|l| l.mode.name()),
                        v.lock.map(|l| micros(l.until)),
                    ])
                });
            match r {
                Err(err) if is_unique_violation(&err) => {
                    return Err(Error::conflict(format!("version {} of {} exists already", v.number, v.collection)));
                }
                other => gone_if_zero(other.map_err(&e)?, m)?,
            }
        }
        Mutation::UpdateVersion(v) => tx
            .prepare_cached(
                "UPDATE versions SET state = ?2, trashed_at = ?3, trash_reason = ?4, purged_at = ?5, held = ?6, \
                 protected_until = ?7, verified_at = ?8, quarantined = ?9, lock_mode = ?10, locked_until = ?11 \
                 WHERE id = ?1 AND state <> 'pending'",
            )
            .and_then(|mut st| {
                st.execute(params![
                    v.id.to_string(),
                    v.state.name(),
                    v.trashed_at.map(micros),
                    v.trash_reason,
                    v.purged_at.map(micros),
                    i64::from(v.held),
                    v.protected_until.map(micros),
                    v.verified_at.map(micros),
                    v.quarantined,
                    v.lock.map(|l| l.mode.name()),
                    v.lock.map(|l| micros(l.until)),
                ])
            })
            .map_err(&e)?,
        Mutation::InsertVersion(v) => match insert_version(tx, v) {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::AlreadyExists {
                    what: format!("version {} of {} ({})", v.number, v.collection, v.id),
                });
            }
            other => other.map_err(&e)?,
        },
        Mutation::MarkUndescribed { id, mark } => tx
            .prepare_cached("UPDATE versions SET undescribed = ?2 WHERE id = ?1 AND state <> 'pending'")
            .and_then(|mut st| st.execute(params![id.to_string(), int(*mark)?]))
            .map_err(&e)?,
        Mutation::ClearUndescribed { collection, id, mark } => {
            // A mark set again since stays: nothing to clear is not an error.
            tx.prepare_cached(
                "UPDATE versions SET undescribed = NULL WHERE id = ?1 AND collection = ?2 AND undescribed = ?3",
            )
            .and_then(|mut st| st.execute(params![id.to_string(), collection.as_str(), int(*mark)?]))
            .map_err(&e)?;
            1
        }
        Mutation::InsertTombstone(t) => tx
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO tombstones ({TOMBSTONE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    t.object_key,
                    t.collection.as_str(),
                    t.version.to_string(),
                    t.kind.name(),
                    micros(t.recorded_at),
                    t.staging
                ])
            })
            .map_err(&e)?,
        Mutation::ForgetTombstone(key) => {
            tx.prepare_cached("DELETE FROM tombstones WHERE object_key = ?1")
                .and_then(|mut st| st.execute([key]))
                .map_err(&e)?;
            1
        }
        Mutation::InsertSession(s) => match insert_session(tx, s) {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::AlreadyExists { what: format!("session {}", s.id) });
            }
            other => other.map_err(&e)?,
        },
        Mutation::RevokeSession { id, at } => tx
            .prepare_cached("UPDATE sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id.as_str(), micros(*at)]))
            .map_err(&e)?,
        Mutation::DeleteSessionsExpiredBefore(before) => {
            tx.prepare_cached("DELETE FROM sessions WHERE expires_at < ?1")
                .and_then(|mut st| st.execute([micros(*before)]))
                .map_err(&e)?;
            1
        }
        Mutation::AppendAudit(a) => {
            super::audit::append(tx, a)?;
            1
        }
        Mutation::PruneAudit { through } => {
            super::audit::prune(tx, *through)?;
            1
        }
        Mutation::SetAuditCheckpoint(head) => {
            super::audit::set_checkpoint(tx, head)?;
            1
        }
        Mutation::ClaimCursor { name, owner, start_at, now, until } => {
            super::audit::claim_cursor(tx, name, owner, *start_at, *now, *until)?;
            1
        }
        Mutation::AdvanceCursor { name, owner, from, to, state } => {
            super::audit::advance_cursor(tx, name, owner, *from, *to, state)?;
            1
        }
        Mutation::SetCursor(c) => {
            super::audit::set_cursor(tx, c)?;
            1
        }
        Mutation::SetRepository(id) => {
            tx.prepare_cached("INSERT OR IGNORE INTO repository (singleton, id) VALUES (1, ?1)")
                .and_then(|mut st| st.execute([id.to_string()]))
                .map_err(&e)?;
            match super::state::repository(tx)? {
                Some(current) if current != *id => {
                    return Err(Error::conflict(format!("the catalog belongs to repository {current}, not {id}")));
                }
                _ => 1,
            }
        }
        other => {
            return Err(Error::internal(format!("sqlite catalog: a mutation this build does not know: {other:?}")));
        }
    };
    if n == 0 {
        return Err(Error::backend(ErrorKind::Internal, BACKEND, op, format!("{m:?} matched no row")));
    }
    Ok(())
}

/// A pending row that another step removed meanwhile: a conflict, not a bug.
fn gone_if_zero(n: usize, m: &Mutation) -> Result<usize> {
    if n == 0 {
        return Err(Error::conflict(format!("the upload changed meanwhile: {}", describe(m))));
    }
    Ok(n)
}

fn describe(m: &Mutation) -> String {
    match m {
        Mutation::UpdatePending(p) => format!("upload {} is not pending any more", p.id),
        Mutation::RemovePending(id) => format!("upload {id} is not pending any more"),
        Mutation::CommitVersion(v) => format!("upload {} to {} has no reservation any more", v.id, v.collection),
        other => format!("{other:?}"),
    }
}

pub(super) fn insert_pending(tx: &Transaction<'_>, p: &PendingUpload) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO versions (id, collection, state, object_key, reserved, pool_share, lease_until, created_at, \
         uploader_user, uploader_key, uploader_session, announced, owner, staging) \
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        p.id.to_string(),
        p.collection.as_str(),
        p.object_key,
        int(p.reserved)?,
        int(p.pool_share)?,
        micros(p.lease_until),
        micros(p.created_at),
        p.uploader.user,
        p.uploader.access_key,
        p.uploader.session.as_ref().map(|s| s.as_str()),
        p.announced.map(int).transpose()?,
        p.owner,
        p.staging,
    ])
}

pub(super) fn insert_version(tx: &Transaction<'_>, v: &Version) -> rusqlite::Result<usize> {
    tx.prepare_cached(&format!(
        "INSERT INTO versions ({VERSION_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, NULL, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
          NULL, NULL, ?17, ?18, ?19, ?20, NULL, ?21, ?22, ?23)"
    ))?
    .execute(params![
        v.id.to_string(),
        v.collection.as_str(),
        v.state.name(),
        int(v.number)?,
        v.filename,
        v.object_key,
        int(v.size)?,
        v.digest.to_string(),
        micros(v.created_at),
        micros(v.committed_at),
        v.trashed_at.map(micros),
        v.trash_reason,
        v.purged_at.map(micros),
        v.uploader.user,
        v.uploader.access_key,
        v.uploader.session.as_ref().map(|s| s.as_str()),
        i64::from(v.held),
        v.protected_until.map(micros),
        v.verified_at.map(micros),
        v.quarantined,
        metadata_text(&v.metadata),
        v.lock.map(|l| l.mode.name()),
        v.lock.map(|l| micros(l.until)),
    ])
}

pub(super) fn insert_session(tx: &Transaction<'_>, s: &Session) -> rusqlite::Result<usize> {
    tx.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        s.id.as_str(),
        s.user,
        s.access_key,
        micros(s.issued_at),
        micros(s.expires_at),
        s.requester_addr,
        s.description,
        i64::from(s.single_use),
        s.scope,
        s.revoked_at.map(micros),
        s.credential,
        s.chain_started_at.map(micros),
    ])
}
