//! Loading the state a step asks for.

use backup_core::catalog::protocol::{CollectionState, LoadedState, StateQuery, VersionRange, VersionRow};
use backup_core::{Error, RepositoryId, Result};
use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{self, COLLECTION_COLUMNS, SESSION_COLUMNS, VERSION_COLUMNS, int};
use crate::error::sqlite_error;

/// Loads what `query` asks for inside `tx` (the writer's transaction holds SQLite's write
/// lock, so nothing changes until the step's writes are applied).
pub(super) fn load(tx: &Transaction<'_>, query: &StateQuery) -> Result<LoadedState> {
    let op = if query.label.is_empty() { "load" } else { query.label };
    let e = sqlite_error(op);
    let collection = match &query.collection {
        None => None,
        Some(q) => {
            let row = tx
                .prepare_cached(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"))
                .and_then(|mut st| st.query_row([q.id.as_str()], rows::collection).optional())
                .map_err(&e)?;
            match row {
                None => None,
                Some((collection, counters)) => {
                    let committed = match q.committed.resolve(&collection, &counters) {
                        VersionRange::Oldest(n) => {
                            versions(tx, "AND state = 'committed' ORDER BY number LIMIT ?2", q.id.as_str(), Some(n))
                        }
                        VersionRange::Newest(n) => versions(
                            tx,
                            "AND state = 'committed' ORDER BY number DESC LIMIT ?2",
                            q.id.as_str(),
                            Some(n),
                        )
                        .map(|mut v| {
                            v.reverse();
                            v
                        }),
                        VersionRange::All => {
                            versions(tx, "AND state = 'committed' ORDER BY number", q.id.as_str(), None)
                        }
                        _ => Ok(Vec::new()),
                    }
                    .map_err(&e)?;
                    let mut by_number = Vec::new();
                    for n in &q.numbers {
                        // A number no catalog can hold is simply not there.
                        let Ok(n) = i64::try_from(*n) else { continue };
                        let found = tx
                            .prepare_cached(&format!(
                                "SELECT {VERSION_COLUMNS} FROM versions \
                                 WHERE collection = ?1 AND number = ?2 AND state <> 'pending'"
                            ))
                            .and_then(|mut st| st.query_row(params![q.id.as_str(), n], rows::version).optional())
                            .map_err(&e)?;
                        by_number.extend(found);
                    }
                    by_number.sort_by_key(|v| v.number);
                    by_number.dedup_by_key(|v| v.number);
                    let pending = tx
                        .prepare_cached(&format!(
                            "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND state = 'pending'"
                        ))
                        .and_then(|mut st| {
                            st.query_map([q.id.as_str()], rows::pending)?.collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(&e)?;
                    Some(CollectionState::new(collection, counters, pending, committed, by_number))
                }
            }
        }
    };
    let mut versions_by_id: Vec<VersionRow> = Vec::new();
    for id in &query.versions {
        let row = tx
            .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id.to_string()], rows::version_row).optional())
            .map_err(&e)?;
        versions_by_id.extend(row);
    }
    let mut sessions = Vec::new();
    for id in &query.sessions {
        let s = tx
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id.as_str()], rows::session).optional())
            .map_err(&e)?;
        sessions.extend(s);
    }
    if let Some(user) = &query.sessions_of {
        let active = tx
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_name = ?1 AND revoked_at IS NULL"
            ))
            .and_then(|mut st| st.query_map([user], rows::session)?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&e)?;
        sessions.extend(active.into_iter().filter(|s| !query.sessions.contains(&s.id)));
    }
    let repository = if query.repository { repository(tx)? } else { None };
    Ok(LoadedState::new(collection, versions_by_id, sessions, repository))
}

fn versions(
    tx: &Transaction<'_>,
    filter_and_order: &str,
    collection: &str,
    limit: Option<u64>,
) -> rusqlite::Result<Vec<backup_core::Version>> {
    let mut st =
        tx.prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 {filter_and_order}"))?;
    match limit {
        Some(n) => st.query_map(params![collection, int(n.min(i64::MAX as u64))?], rows::version)?.collect(),
        None => st.query_map([collection], rows::version)?.collect(),
    }
}

/// The repository id, if set.
pub(super) fn repository(tx: &Transaction<'_>) -> Result<Option<RepositoryId>> {
    let id: Option<String> = tx
        .query_row("SELECT id FROM repository WHERE singleton = 1", [], |r| r.get(0))
        .optional()
        .map_err(sqlite_error("repository"))?;
    id.map(|s| s.parse().map_err(|e: Error| Error::internal(format!("sqlite catalog: repository id: {e}")))).transpose()
}
