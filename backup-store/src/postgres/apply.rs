//! Applying a step's mutations: storage only, the rules were applied by the decision. The
//! statements of a step are sent together (pipelined); the first failure in order is the one
//! reported.

use std::collections::{HashMap, HashSet};

use backup_core::catalog::PendingUpload;
use backup_core::catalog::protocol::Mutation;
use backup_core::{Error, ErrorKind, Result, Session, Version, VersionId};
use deadpool_postgres::GenericClient;

use super::BACKEND;
use super::error::{is_unique_violation, pg_error};
use super::rows::{COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS, int, ts};
use super::statements::Cached;
use crate::metadata_column::metadata_text;

/// Applies every mutation in order; fails with the first error.
///
/// The statements run concurrently, so one may not depend on another's row: a version's mark
/// ([`Mutation::MarkUndescribed`]) of a step that writes the version's row (its commit, its
/// insertion, a change of its state) is written by that row's statement instead, the last mark
/// of the step in every one of them.
pub(super) async fn apply_all(client: &impl GenericClient, mutations: &[Mutation]) -> Result<()> {
    let written: HashSet<VersionId> = mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::CommitVersion(v) | Mutation::InsertVersion(v) | Mutation::UpdateVersion(v) => Some(v.id),
            _ => None,
        })
        .collect();
    let mut marks: HashMap<VersionId, u64> = HashMap::new();
    for m in mutations {
        if let Mutation::MarkUndescribed { id, mark } = m
            && written.contains(id)
        {
            marks.insert(*id, *mark);
        }
    }
    // The log's mutations go after the others, in order: an append waits for the head's lock
    // (held until the transaction ends), so it comes as late as it can.
    let (audit, rows): (Vec<&Mutation>, Vec<&Mutation>) = mutations.iter().partition(|m| {
        matches!(m, Mutation::AppendAudit(_) | Mutation::PruneAudit { .. } | Mutation::SetAuditCheckpoint(_))
    });
    // Plain appends (no number or hash given: not an import) go in the same pipeline, last,
    // each one statement that takes the head's lock, links the event in the database and
    // inserts it: the lock is held from there to the commit, one round trip.
    let plain = audit.iter().all(|m| matches!(m, Mutation::AppendAudit(e) if e.seq == 0 && e.hash.is_none()));
    let (linked, audit): (Vec<&Mutation>, Vec<&Mutation>) =
        if plain { (audit, Vec::new()) } else { (Vec::new(), audit) };
    let linked = futures::future::join_all(linked.into_iter().filter_map(|m| match m {
        Mutation::AppendAudit(e) => Some(super::audit::append_linked(client, e)),
        _ => None,
    }));
    let results = futures::future::join_all(rows.into_iter().map(|m| match m {
        Mutation::MarkUndescribed { id, .. } if marks.contains_key(id) => {
            futures::future::Either::Left(async { Ok(()) })
        }
        Mutation::CommitVersion(v) | Mutation::InsertVersion(v) | Mutation::UpdateVersion(v) => {
            futures::future::Either::Right(apply(client, m, marks.get(&v.id).copied()))
        }
        _ => futures::future::Either::Right(apply(client, m, None)),
    }));
    let (results, linked) = futures::future::join(results, linked).await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    linked.into_iter().collect::<Result<Vec<()>>>()?;
    super::audit::apply(client, &audit).await
}

/// Applies `m`, failing with the error its documentation names when a key is taken; a write of
/// a version's row also sets its mark to `mark`, if given (otherwise the mark stays as it is).
async fn apply(client: &impl GenericClient, m: &Mutation, mark: Option<u64>) -> Result<()> {
    let mark = mark.map(int).transpose()?;
    let e = pg_error("apply");
    let n = match m {
        Mutation::CreateCollection(c) => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            let r = client
                .cexecute(
                    &format!(
                        "INSERT INTO collections ({COLLECTION_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, 1, 0, 0, 0, 0, 0, NULL, 0)"
                    ),
                    &[&c.id.as_str(), &spec, &ts(c.created_at), &ts(c.updated_at), &int(c.revision)?],
                )
                .await;
            match r {
                Err(err) if is_unique_violation(&err) => {
                    return Err(Error::CollectionExists { collection: c.id.clone() });
                }
                other => other.map_err(&e)?,
            }
        }
        Mutation::UpdateCollection(c) => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            client
                .cexecute(
                    "UPDATE collections SET spec = $2, updated_at = $3, revision = $4 WHERE id = $1",
                    &[&c.id.as_str(), &spec, &ts(c.updated_at), &int(c.revision)?],
                )
                .await
                .map_err(&e)?
        }
        Mutation::DeleteCollection { id, at } => {
            client
                .cexecute(
                    "INSERT INTO tombstones (object_key, collection, version, kind, recorded_at) \
                     SELECT object_key, collection, id, 'purged', $2 FROM versions \
                     WHERE collection = $1 AND state = 'trashed' \
                     ON CONFLICT (object_key) DO UPDATE SET recorded_at = EXCLUDED.recorded_at",
                    &[&id.as_str(), &ts(*at)],
                )
                .await
                .map_err(&e)?;
            client.cexecute("DELETE FROM versions WHERE collection = $1", &[&id.as_str()]).await.map_err(&e)?;
            client.cexecute("DELETE FROM collections WHERE id = $1", &[&id.as_str()]).await.map_err(&e)?
        }
        Mutation::SetCounters { collection, counters: c } => client
            .cexecute(
                "UPDATE collections SET next_number = $2, committed_versions = $3, committed_bytes = $4, \
                 committed_overage = $5, protected_versions = $6, held_versions = $7, last_committed_at = $8, \
                 quarantined_versions = $9 WHERE id = $1",
                &[
                    &collection.as_str(),
                    &int(c.next_number)?,
                    &int(c.versions)?,
                    &int(c.bytes)?,
                    &int(c.overage)?,
                    &int(c.protected)?,
                    &int(c.held)?,
                    &c.last_committed_at.map(ts),
                    &int(c.quarantined)?,
                ],
            )
            .await
            .map_err(&e)?,
        Mutation::InsertPending(p) => insert_pending(client, p).await?,
        Mutation::UpdatePending(p) => {
            let n = client
                .cexecute(
                    "UPDATE versions SET reserved = $2, pool_share = $3, lease_until = $4, staging = $5 \
                     WHERE id = $1 AND state = 'pending'",
                    &[&p.id.as_uuid(), &int(p.reserved)?, &int(p.pool_share)?, &ts(p.lease_until), &p.staging],
                )
                .await
                .map_err(&e)?;
            gone_if_zero(n, &format!("upload {} is not pending any more", p.id))?
        }
        Mutation::RemovePending(id) => {
            let n = client
                .cexecute("DELETE FROM versions WHERE id = $1 AND state = 'pending'", &[&id.as_uuid()])
                .await
                .map_err(&e)?;
            gone_if_zero(n, &format!("upload {id} is not pending any more"))?
        }
        Mutation::CommitVersion(v) => {
            let r = client
                .cexecute(
                    "UPDATE versions SET state = 'committed', number = $2, filename = $3, size = $4, digest = $5, \
                     committed_at = $6, reserved = NULL, pool_share = NULL, lease_until = NULL, metadata = $8, \
                     undescribed = coalesce($9, undescribed), lock_mode = $10, locked_until = $11 \
                     WHERE id = $1 AND state = 'pending' AND collection = $7",
                    &[
                        &v.id.as_uuid(),
                        &int(v.number)?,
                        &v.filename,
                        &int(v.size)?,
                        &v.digest.to_string(),
                        &ts(v.committed_at),
                        &v.collection.as_str(),
                        &metadata_text(&v.metadata),
                        &mark,
                        &v.lock.map(|l| l.mode.name()),
                        &v.lock.map(|l| ts(l.until)),
                    ],
                )
                .await;
            match r {
                Err(err) if is_unique_violation(&err) => {
                    return Err(Error::conflict(format!("version {} of {} exists already", v.number, v.collection)));
                }
                other => gone_if_zero(
                    other.map_err(&e)?,
                    &format!("upload {} to {} has no reservation any more", v.id, v.collection),
                )?,
            }
        }
        Mutation::UpdateVersion(v) => client
            .cexecute(
                "UPDATE versions SET state = $2, trashed_at = $3, trash_reason = $4, purged_at = $5, held = $6, \
                 protected_until = $7, verified_at = $8, quarantined = $9, undescribed = coalesce($10, undescribed), \
                 lock_mode = $11, locked_until = $12 WHERE id = $1 AND state <> 'pending'",
                &[
                    &v.id.as_uuid(),
                    &v.state.name(),
                    &v.trashed_at.map(ts),
                    &v.trash_reason,
                    &v.purged_at.map(ts),
                    &v.held,
                    &v.protected_until.map(ts),
                    &v.verified_at.map(ts),
                    &v.quarantined,
                    &mark,
                    &v.lock.map(|l| l.mode.name()),
                    &v.lock.map(|l| ts(l.until)),
                ],
            )
            .await
            .map_err(&e)?,
        Mutation::InsertVersion(v) => insert_version(client, v, mark).await?,
        Mutation::MarkUndescribed { id, mark } => client
            .cexecute(
                "UPDATE versions SET undescribed = $2 WHERE id = $1 AND state <> 'pending'",
                &[&id.as_uuid(), &int(*mark)?],
            )
            .await
            .map_err(&e)?,
        Mutation::ClearUndescribed { collection, id, mark } => {
            // A mark set again since stays: nothing to clear is not an error.
            client
                .cexecute(
                    "UPDATE versions SET undescribed = NULL WHERE id = $1 AND collection = $2 AND undescribed = $3",
                    &[&id.as_uuid(), &collection.as_str(), &int(*mark)?],
                )
                .await
                .map_err(&e)?;
            1
        }
        Mutation::InsertTombstone(t) => client
            .cexecute(
                &format!(
                    "INSERT INTO tombstones ({TOMBSTONE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (object_key) DO UPDATE SET collection = EXCLUDED.collection, \
                     version = EXCLUDED.version, kind = EXCLUDED.kind, recorded_at = EXCLUDED.recorded_at, \
                     staging = EXCLUDED.staging"
                ),
                &[
                    &t.object_key,
                    &t.collection.as_str(),
                    &t.version.as_uuid(),
                    &t.kind.name(),
                    &ts(t.recorded_at),
                    &t.staging,
                ],
            )
            .await
            .map_err(&e)?,
        Mutation::ForgetTombstone(key) => {
            client.cexecute("DELETE FROM tombstones WHERE object_key = $1", &[key]).await.map_err(&e)?;
            1
        }
        Mutation::InsertSession(s) => match insert_session(client, s).await {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::AlreadyExists { what: format!("session {}", s.id) });
            }
            other => other.map_err(&e)?,
        },
        Mutation::RevokeSession { id, at } => client
            .cexecute(
                "UPDATE sessions SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                &[&id.as_str(), &ts(*at)],
            )
            .await
            .map_err(&e)?,
        Mutation::DeleteSessionsExpiredBefore(before) => {
            client.cexecute("DELETE FROM sessions WHERE expires_at < $1", &[&ts(*before)]).await.map_err(&e)?;
            1
        }
        Mutation::AppendAudit(_) | Mutation::PruneAudit { .. } | Mutation::SetAuditCheckpoint(_) => {
            return Err(Error::internal("postgres catalog: audit mutations are applied by `audit::apply`"));
        }
        Mutation::ClaimCursor { .. } | Mutation::AdvanceCursor { .. } | Mutation::SetCursor(_) => {
            super::audit::apply_cursor(client, m).await?;
            1
        }
        Mutation::SetRepository(id) => {
            client
                .cexecute(
                    "INSERT INTO repository (singleton, id) VALUES (1, $1) ON CONFLICT (singleton) DO NOTHING",
                    &[&id.as_uuid()],
                )
                .await
                .map_err(&e)?;
            match super::state::repository(client).await? {
                Some(current) if current != *id => {
                    return Err(Error::conflict(format!("the catalog belongs to repository {current}, not {id}")));
                }
                _ => 1,
            }
        }
        other => {
            return Err(Error::internal(format!("postgres catalog: a mutation this build does not know: {other:?}")));
        }
    };
    if n == 0 {
        return Err(Error::backend(ErrorKind::Internal, BACKEND, "apply", format!("{m:?} matched no row")));
    }
    Ok(())
}

/// A pending row that another step removed meanwhile: a conflict, not a bug.
fn gone_if_zero(n: u64, what: &str) -> Result<u64> {
    if n == 0 {
        return Err(Error::conflict(format!("the upload changed meanwhile: {what}")));
    }
    Ok(n)
}

pub(super) async fn insert_pending(client: &impl GenericClient, p: &PendingUpload) -> Result<u64> {
    let (reserved, pool_share, announced) = (int(p.reserved)?, int(p.pool_share)?, p.announced.map(int).transpose()?);
    client
        .cexecute(
            "INSERT INTO versions (id, collection, state, object_key, reserved, pool_share, lease_until, created_at, \
             uploader_user, uploader_key, uploader_session, announced, owner, staging) \
             VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &p.id.as_uuid(),
                &p.collection.as_str(),
                &p.object_key,
                &reserved,
                &pool_share,
                &ts(p.lease_until),
                &ts(p.created_at),
                &p.uploader.user,
                &p.uploader.access_key,
                &p.uploader.session.as_ref().map(|s| s.as_str()),
                &announced,
                &p.owner,
                &p.staging,
            ],
        )
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                Error::AlreadyExists { what: format!("upload {}", p.id) }
            } else {
                pg_error("insert pending upload")(err)
            }
        })
}

pub(super) async fn insert_version(client: &impl GenericClient, v: &Version, mark: Option<i64>) -> Result<u64> {
    let (number, size) = (int(v.number)?, int(v.size)?);
    client
        .cexecute(
            &format!(
                "INSERT INTO versions ({VERSION_COLUMNS}, undescribed) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, $10, $11, $12, $13, $14, $15, $16, \
                  NULL, NULL, $17, $18, $19, $20, NULL, $21, $23, $24, $22)"
            ),
            &[
                &v.id.as_uuid(),
                &v.collection.as_str(),
                &v.state.name(),
                &number,
                &v.filename,
                &v.object_key,
                &size,
                &v.digest.to_string(),
                &ts(v.created_at),
                &ts(v.committed_at),
                &v.trashed_at.map(ts),
                &v.trash_reason,
                &v.purged_at.map(ts),
                &v.uploader.user,
                &v.uploader.access_key,
                &v.uploader.session.as_ref().map(|s| s.as_str()),
                &v.held,
                &v.protected_until.map(ts),
                &v.verified_at.map(ts),
                &v.quarantined,
                &metadata_text(&v.metadata),
                &mark,
                &v.lock.map(|l| l.mode.name()),
                &v.lock.map(|l| ts(l.until)),
            ],
        )
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                Error::AlreadyExists { what: format!("version {} of {} ({})", v.number, v.collection, v.id) }
            } else {
                pg_error("insert version")(err)
            }
        })
}

pub(super) async fn insert_session(
    client: &impl GenericClient,
    s: &Session,
) -> std::result::Result<u64, tokio_postgres::Error> {
    client
        .cexecute(
            &format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &s.id.as_str(),
                &s.user,
                &s.access_key,
                &ts(s.issued_at),
                &ts(s.expires_at),
                &s.requester_addr,
                &s.description,
                &s.single_use,
                &s.scope,
                &s.revoked_at.map(ts),
                &s.credential,
                &s.chain_started_at.map(ts),
            ],
        )
        .await
}
