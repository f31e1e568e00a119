//! Loading the state a step asks for, locking it inside a step.

use backup_core::catalog::protocol::{CollectionState, LoadedState, StateQuery, VersionRange, VersionRow};
use backup_core::{RepositoryId, Result};
use deadpool_postgres::GenericClient;

use super::error::pg_error;
use super::rows::{self, COLLECTION_COLUMNS, SESSION_COLUMNS, VERSION_COLUMNS, int};
use super::statements::Cached;

/// Loads what `query` asks for; with `lock`, the collection row, the rows by id and the
/// sessions stay locked (`FOR UPDATE`) until the transaction ends. The collection row is
/// locked first, then rows, then sessions, each set in id order: no two steps wait for each
/// other in a cycle. The queries after the collection's are sent together (pipelined).
pub(super) async fn load(client: &impl GenericClient, query: &StateQuery, lock: bool) -> Result<LoadedState> {
    let op = if query.label.is_empty() { "load" } else { query.label };
    let e = pg_error(op);
    let for_update = if lock { " FOR UPDATE" } else { "" };
    let collection = async {
        let Some(q) = &query.collection else { return Ok(None) };
        let sql = format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = $1{for_update}");
        let Some(row) = client.cquery_opt(&sql, &[&q.id.as_str()]).await.map_err(&e)? else { return Ok(None) };
        let (collection, counters) = rows::collection(&row)?;
        let id = q.id.as_str();
        let committed = async {
            let (order, limit) = match q.committed.resolve(&collection, &counters) {
                VersionRange::Oldest(n) => ("ORDER BY number", Some(n)),
                VersionRange::Newest(n) => ("ORDER BY number DESC", Some(n)),
                VersionRange::All => ("ORDER BY number", None),
                _ => return Ok(Vec::new()),
            };
            let base =
                format!("SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND state = 'committed' {order}");
            let found = match limit {
                Some(n) => client.cquery(&format!("{base} LIMIT $2"), &[&id, &int(n.min(i64::MAX as u64))?]).await,
                None => client.cquery(&base, &[&id]).await,
            }
            .map_err(&e)?;
            let mut versions = found.iter().map(rows::version).collect::<Result<Vec<_>>>()?;
            if matches!(q.committed.resolve(&collection, &counters), VersionRange::Newest(_)) {
                versions.reverse();
            }
            Ok::<_, backup_core::Error>(versions)
        };
        let by_number = async {
            // A number no catalog can hold is simply not there.
            let numbers: Vec<i64> = q.numbers.iter().filter_map(|n| i64::try_from(*n).ok()).collect();
            if numbers.is_empty() {
                return Ok(Vec::new());
            }
            let found = client
                .cquery(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND number = ANY($2) \
                         AND state <> 'pending' ORDER BY number"
                    ),
                    &[&id, &numbers],
                )
                .await
                .map_err(&e)?;
            found.iter().map(rows::version).collect::<Result<Vec<_>>>()
        };
        let pending = async {
            let found = client
                .cquery(
                    &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND state = 'pending'"),
                    &[&id],
                )
                .await
                .map_err(&e)?;
            found.iter().map(rows::pending).collect::<Result<Vec<_>>>()
        };
        let (committed, by_number, pending) = futures::try_join!(committed, by_number, pending)?;
        Ok::<_, backup_core::Error>(Some(CollectionState::new(collection, counters, pending, committed, by_number)))
    }
    .await?;
    let versions = async {
        if query.versions.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<uuid::Uuid> = query.versions.iter().map(|v| v.as_uuid()).collect();
        ids.sort_unstable();
        let found = client
            .cquery(
                &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE id = ANY($1) ORDER BY id{for_update}"),
                &[&ids],
            )
            .await
            .map_err(&e)?;
        found.iter().map(rows::version_row).collect::<Result<Vec<VersionRow>>>()
    };
    let sessions = async {
        let mut out = Vec::new();
        if !query.sessions.is_empty() {
            let mut ids: Vec<&str> = query.sessions.iter().map(|s| s.as_str()).collect();
            ids.sort_unstable();
            let found = client
                .cquery(
                    &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ANY($1) ORDER BY id{for_update}"),
                    &[&ids],
                )
                .await
                .map_err(&e)?;
            out.extend(found.iter().map(rows::session).collect::<Result<Vec<_>>>()?);
        }
        if let Some(user) = &query.sessions_of {
            let found = client
                .cquery(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_name = $1 AND revoked_at IS NULL \
                         ORDER BY id{for_update}"
                    ),
                    &[user],
                )
                .await
                .map_err(&e)?;
            for s in found.iter().map(rows::session) {
                let s = s?;
                if !query.sessions.contains(&s.id) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    };
    let repository = async { if query.repository { repository(client).await } else { Ok(None) } };
    let (versions, sessions, repository) = futures::try_join!(versions, sessions, repository)?;
    Ok(LoadedState::new(collection, versions, sessions, repository))
}

/// The repository id, if set.
pub(super) async fn repository(client: &impl GenericClient) -> Result<Option<RepositoryId>> {
    let row = client
        .cquery_opt("SELECT id FROM repository WHERE singleton = 1", &[])
        .await
        .map_err(pg_error("repository"))?;
    row.map(|r| r.try_get::<_, uuid::Uuid>(0).map(RepositoryId::from_uuid).map_err(pg_error("repository"))).transpose()
}
