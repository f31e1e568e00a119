//! Reads: the state a [`StateQuery`] asks for, and the listings, each from its index.

use backup_core::audit::{AuditHead, LogCursor};
use backup_core::catalog::protocol::{
    CollectionQuery, CollectionState, LoadedState, StateQuery, VersionRange, VersionRow,
};
use backup_core::catalog::{KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery};
use backup_core::catalog::{PendingUpload, Tombstone};
use backup_core::{
    AuditEvent, Collection, CollectionId, Error, RepositoryId, Session, Timestamp, Version, VersionId, VersionState,
};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use crate::tables::*;

/// A version row by id.
pub(crate) fn row(versions: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Res<Option<VersionRow>> {
    versions.get(id)?.map(|g| decode_row(g.value())).transpose()
}

/// A row that must be a version (an index of versions points to it).
fn version(versions: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Res<Version> {
    match row(versions, id)? {
        Some(VersionRow::Version(v)) => Ok(v),
        other => Err(Error::internal(format!("{BACKEND}: an index names {id}, which is {other:?}")).into()),
    }
}

/// A collection row by id.
pub(crate) fn collection(
    collections: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Res<Option<CollectionRow>> {
    collections.get(id)?.map(|g| from_json(g.value())).transpose()
}

/// A session by id.
pub(crate) fn session(sessions: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Res<Option<Session>> {
    sessions.get(id)?.map(|g| from_json(g.value())).transpose()
}

/// The repository id, if set.
pub(crate) fn repository_id(meta: &impl ReadableTable<&'static str, &'static str>) -> Res<Option<RepositoryId>> {
    meta.get("repository")?.map(|g| g.value().parse().map_err(Fail::Step)).transpose()
}

/// Loads what `query` asks for, from one read transaction: a consistent snapshot.
pub(crate) fn load(tx: &ReadTransaction, query: &StateQuery) -> Res<LoadedState> {
    let versions = tx.open_table(VERSIONS)?;
    let collection = match &query.collection {
        Some(q) => collection_state(tx, q)?,
        None => None,
    };
    let mut rows = Vec::new();
    for id in &query.versions {
        rows.extend(row(&versions, &id.to_string())?);
    }
    let table = tx.open_table(SESSIONS)?;
    let mut sessions = Vec::new();
    for id in &query.sessions {
        sessions.extend(session(&table, id.as_str())?);
    }
    if let Some(user) = &query.sessions_of {
        for s in sessions_of(tx, user, usize::MAX)? {
            if s.revoked_at.is_none() && !query.sessions.contains(&s.id) {
                sessions.push(s);
            }
        }
    }
    let repository = if query.repository { repository_id(&tx.open_table(META)?)? } else { None };
    Ok(LoadedState::new(collection, rows, sessions, repository))
}

/// A collection, its counters, its pending uploads and the versions the query names.
fn collection_state(tx: &ReadTransaction, q: &CollectionQuery) -> Res<Option<CollectionState>> {
    let Some((collection, counters)) = collection(&tx.open_table(COLLECTIONS)?, q.id.as_str())? else {
        return Ok(None);
    };
    let (versions, c) = (tx.open_table(VERSIONS)?, q.id.as_str());
    let states = tx.open_table(STATES)?;
    let committed = state_code(VersionState::Committed);
    let mut range = states.range((c, committed, 0)..=(c, committed, u64::MAX))?;
    let take = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut ids = Vec::new();
    match q.committed.resolve(&collection, &counters) {
        VersionRange::Oldest(n) => {
            for entry in range.by_ref().take(take(n)) {
                ids.push(entry?.1.value().to_owned());
            }
        }
        VersionRange::Newest(n) => {
            for entry in range.by_ref().rev().take(take(n)) {
                ids.push(entry?.1.value().to_owned());
            }
            ids.reverse();
        }
        VersionRange::All => {
            for entry in range {
                ids.push(entry?.1.value().to_owned());
            }
        }
        VersionRange::None => {}
        other => return Err(Error::internal(format!("{BACKEND}: a range this build does not know: {other:?}")).into()),
    }
    let committed = ids.iter().map(|id| version(&versions, id)).collect::<Res<Vec<_>>>()?;
    let mut wanted = q.numbers.clone();
    wanted.sort_unstable();
    wanted.dedup();
    let numbers = tx.open_table(NUMBERS)?;
    let mut by_number = Vec::new();
    for n in wanted {
        if let Some(id) = numbers.get((c, n))? {
            by_number.push(version(&versions, id.value())?);
        }
    }
    let mut pending = Vec::new();
    for entry in tx.open_table(PENDING)?.range((c, "")..)? {
        let (key, _) = entry?;
        let (of, id) = key.value();
        if of != c {
            break;
        }
        match row(&versions, id)? {
            Some(VersionRow::Pending(p)) => pending.push(p),
            other => return Err(Error::internal(format!("{BACKEND}: pending index names {other:?}")).into()),
        }
    }
    Ok(Some(CollectionState::new(collection, counters, pending, committed, by_number)))
}

/// A user's sessions, newest first.
fn sessions_of(tx: &ReadTransaction, user: &str, limit: usize) -> Res<Vec<Session>> {
    let table = tx.open_table(SESSIONS)?;
    let mut out = Vec::new();
    for entry in tx.open_table(SESSIONS_BY_USER)?.range((user, 0, "")..)?.take(limit) {
        let (key, _) = entry?;
        let (of, _, id) = key.value();
        if of != user {
            break;
        }
        out.extend(session(&table, id)?);
    }
    Ok(out)
}

/// A collection, or [`Error::CollectionNotFound`].
pub(crate) fn get_collection(tx: &ReadTransaction, id: &CollectionId) -> Res<Collection> {
    match collection(&tx.open_table(COLLECTIONS)?, id.as_str())? {
        Some((c, _)) => Ok(c),
        None => Err(Error::CollectionNotFound { collection: id.clone() }.into()),
    }
}

/// Collections by id, after `after`.
pub(crate) fn list_collections(tx: &ReadTransaction, after: Option<&str>, limit: usize) -> Res<Vec<Collection>> {
    let table = tx.open_table(COLLECTIONS)?;
    let range = match after {
        Some(a) => table.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?,
        None => table.range::<&str>(..)?,
    };
    range.take(limit).map(|entry| Ok(from_json::<CollectionRow>(entry?.1.value())?.0)).collect()
}

/// Committed (and trashed) versions ascending by number: one range per state, merged.
pub(crate) fn list_versions(tx: &ReadTransaction, id: &CollectionId, query: &VersionQuery) -> Res<Vec<Version>> {
    get_collection(tx, id)?;
    let Some(start) = query.after.map_or(Some(0), |a| a.checked_add(1)) else { return Ok(Vec::new()) };
    let (states, c) = (tx.open_table(STATES)?, id.as_str());
    let mut wanted = vec![VersionState::Committed];
    if query.include_trashed {
        wanted.push(VersionState::Trashed);
    }
    let mut found: Vec<(u64, String)> = Vec::new();
    for state in wanted {
        let s = state_code(state);
        for entry in states.range((c, s, start)..=(c, s, u64::MAX))?.take(query.limit) {
            let (key, id) = entry?;
            found.push((key.value().2, id.value().to_owned()));
        }
    }
    found.sort_unstable();
    found.truncate(query.limit);
    let versions = tx.open_table(VERSIONS)?;
    found.iter().map(|(_, id)| version(&versions, id)).collect()
}

/// Pending uploads by lease end then id: from the owner's index, or the leases' in order.
pub(crate) fn list_pending(tx: &ReadTransaction, filter: &PendingFilter, limit: usize) -> Res<Vec<PendingUpload>> {
    let versions = tx.open_table(VERSIONS)?;
    let expired = |p: &PendingUpload| filter.expired_at.is_none_or(|now| !p.is_live(now));
    let pending = |id: &str| match row(&versions, id)? {
        Some(VersionRow::Pending(p)) => Ok(p),
        other => Err(Fail::Step(Error::internal(format!("{BACKEND}: pending index names {other:?}")))),
    };
    let mut out = Vec::new();
    if let Some(owner) = &filter.owner {
        for entry in tx.open_table(OWNERS)?.range((owner.as_str(), "")..)? {
            let (key, _) = entry?;
            let (of, id) = key.value();
            if of != owner {
                break;
            }
            out.push(pending(id)?);
        }
        out.retain(expired);
        out.sort_by_key(|p| (p.lease_until, p.id));
        out.truncate(limit);
        return Ok(out);
    }
    for entry in tx.open_table(LEASES)?.range::<(i64, &str)>(..)? {
        let (key, _) = entry?;
        let p = pending(key.value().1)?;
        if out.len() == limit || !expired(&p) {
            break;
        }
        out.push(p);
    }
    Ok(out)
}

/// Trashed versions trashed before `before`, oldest first.
pub(crate) fn list_trashed(tx: &ReadTransaction, before: Timestamp, limit: usize) -> Res<Vec<Version>> {
    let versions = tx.open_table(VERSIONS)?;
    let mut out = Vec::new();
    for entry in tx.open_table(TRASH)?.range(..(micros(before), ""))?.take(limit) {
        out.push(version(&versions, entry?.0.value().1)?);
    }
    Ok(out)
}

/// Tombstones by object key after `after`, of one collection (from its index) or of all.
pub(crate) fn list_tombstones(
    tx: &ReadTransaction,
    collection: Option<&CollectionId>,
    after: Option<&str>,
    limit: usize,
) -> Res<Vec<Tombstone>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let table = tx.open_table(TOMBSTONES)?;
    let mut keys = Vec::new();
    match collection {
        Some(c) => {
            let c = c.as_str();
            let from = match after {
                Some(a) => Excluded((c, a)),
                None => Included((c, "")),
            };
            for entry in tx.open_table(TOMBSTONES_BY_COLLECTION)?.range((from, Unbounded))? {
                let (key, _) = entry?;
                let (of, object) = key.value();
                if of != c || keys.len() == limit {
                    break;
                }
                keys.push(object.to_owned());
            }
        }
        None => {
            let from = after.map_or(Unbounded, Excluded);
            for entry in table.range::<&str>((from, Unbounded))?.take(limit) {
                keys.push(entry?.0.value().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for key in keys {
        if let Some(t) = table.get(key.as_str())? {
            out.push(from_json(t.value())?);
        }
    }
    Ok(out)
}

/// The marked versions by id, after `after`, from the marks' table.
pub(crate) fn list_undescribed(tx: &ReadTransaction, after: Option<VersionId>, limit: usize) -> Res<Vec<Undescribed>> {
    use std::ops::Bound::{Excluded, Unbounded};
    let (versions, marks) = (tx.open_table(VERSIONS)?, tx.open_table(UNDESCRIBED)?);
    let after = after.map(|a| a.to_string());
    let from = after.as_deref().map_or(Unbounded, Excluded);
    let mut out = Vec::new();
    for entry in marks.range::<&str>((from, Unbounded))?.take(limit) {
        let (id, mark) = entry?;
        out.push(Undescribed::new(version(&versions, id.value())?, mark.value()));
    }
    Ok(out)
}

/// Live if a pending, committed or trashed row names the key; garbage if only a purged row or
/// a tombstone does; unknown otherwise.
pub(crate) fn classify_object_keys(tx: &ReadTransaction, keys: &[String]) -> Res<Vec<KeyClass>> {
    let (versions, index, tombstones) =
        (tx.open_table(VERSIONS)?, tx.open_table(OBJECT_KEYS)?, tx.open_table(TOMBSTONES)?);
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let (mut live, mut garbage) = (false, tombstones.get(key.as_str())?.is_some());
        for entry in index.range((key.as_str(), "")..)? {
            let (k, _) = entry?;
            let (of, id) = k.value();
            if of != key {
                break;
            }
            match row(&versions, id)? {
                Some(VersionRow::Version(v)) if v.state == VersionState::Purged => garbage = true,
                Some(_) => live = true,
                None => {}
            }
        }
        out.push(match (live, garbage) {
            (true, _) => KeyClass::Live,
            (false, true) => KeyClass::Garbage,
            (false, false) => KeyClass::Unknown,
        });
    }
    Ok(out)
}

/// The repository id, and whether any version row exists.
pub(crate) fn repository(tx: &ReadTransaction) -> Res<RepositoryInfo> {
    let holds = !tx.open_table(VERSIONS)?.is_empty()?;
    Ok(RepositoryInfo::new(repository_id(&tx.open_table(META)?)?, holds))
}

/// Sessions newest first, of one user (from their index) or of everyone.
pub(crate) fn list_sessions(tx: &ReadTransaction, user: Option<&str>, limit: usize) -> Res<Vec<Session>> {
    if let Some(user) = user {
        return sessions_of(tx, user, limit);
    }
    let table = tx.open_table(SESSIONS)?;
    let mut out = Vec::new();
    for entry in tx.open_table(SESSIONS_BY_TIME)?.range::<(u64, &str)>(..)?.take(limit) {
        out.extend(session(&table, entry?.0.value().1)?);
    }
    Ok(out)
}

/// The audit log's checkpoint, in [`META`] under `audit_checkpoint` (JSON).
pub(crate) fn audit_checkpoint(meta: &impl ReadableTable<&'static str, &'static str>) -> Res<Option<AuditHead>> {
    meta.get("audit_checkpoint")?.map(|g| from_json(g.value().as_bytes())).transpose()
}

/// The log's head: the last event's, else the checkpoint's.
pub(crate) fn audit_head(tx: &ReadTransaction) -> Res<AuditHead> {
    match tx.open_table(AUDIT)?.last()? {
        Some((_, last)) => Ok(from_json::<backup_core::AuditEvent>(last.value())?.head_for_append()),
        None => Ok(audit_checkpoint(&tx.open_table(META)?)?.unwrap_or(AuditHead::GENESIS)),
    }
}

/// Every log cursor, by name.
pub(crate) fn list_cursors(tx: &ReadTransaction) -> Res<Vec<LogCursor>> {
    let mut out = Vec::new();
    for entry in tx.open_table(LOG_CURSORS)?.range::<&str>(..)? {
        out.push(from_json(entry?.1.value())?);
    }
    Ok(out)
}

/// Audit events after `after`, in order.
pub(crate) fn list_audit(tx: &ReadTransaction, after: Option<u64>, limit: usize) -> Res<Vec<AuditEvent>> {
    let Some(start) = after.unwrap_or(0).checked_add(1) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in tx.open_table(AUDIT)?.range(start..)?.take(limit) {
        out.push(from_json(entry?.1.value())?);
    }
    Ok(out)
}
