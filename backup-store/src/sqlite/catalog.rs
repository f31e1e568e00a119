//! The [`Catalog`] implementation: steps on the writer, reads on the readers.

use async_trait::async_trait;
use backup_core::catalog::protocol::{LoadedState, StateQuery};
use backup_core::catalog::{
    Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery,
};
use backup_core::catalog::{PendingUpload, Tombstone};
use backup_core::{
    AuditEvent, Collection, CollectionId, Error, Result, Session, Timestamp, Version, VersionId, VersionSelector,
};
use futures::stream::BoxStream;
use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{
    self, AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS, int, micros,
};
use super::{SqliteCatalog, apply, snapshot, state};
use crate::error::sqlite_error;

fn collection(tx: &Transaction<'_>, id: &CollectionId) -> Result<Collection> {
    tx.prepare_cached(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id.as_str()], rows::collection).optional())
        .map_err(sqlite_error("read collection"))?
        .map(|(c, _)| c)
        .ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
}

#[async_trait]
impl Catalog for SqliteCatalog {
    fn location(&self) -> String {
        format!("sqlite catalog {}", self.path().display())
    }

    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
        let op = if query.label.is_empty() { "transact" } else { query.label };
        self.write(op, query.relaxed, move |tx| {
            let loaded = state::load(tx, &query)?;
            for m in decide(&loaded)? {
                apply::apply(tx, &m)?;
            }
            Ok(())
        })
        .await
    }

    async fn load(&self, query: StateQuery) -> Result<LoadedState> {
        let op = if query.label.is_empty() { "load" } else { query.label };
        self.read(op, move |tx| state::load(tx, &query)).await
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        let id = id.clone();
        self.read("get collection", move |tx| collection(tx, &id)).await
    }

    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        let after = after.map(|a| a.as_str().to_owned()).unwrap_or_default();
        self.read("list collections", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {COLLECTION_COLUMNS} FROM collections WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![after, limit as i64], rows::collection)?
                    .map(|r| r.map(|(c, _)| c))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list collections"))
        })
        .await
    }

    async fn get_version(&self, collection_id: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let collection_id = collection_id.clone();
        self.read("get version", move |tx| {
            let found = match selector {
                VersionSelector::Latest => tx
                    .prepare_cached(&format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND state = 'committed' \
                         ORDER BY number DESC LIMIT 1"
                    ))
                    .and_then(|mut st| st.query_row([collection_id.as_str()], rows::version).optional()),
                // A number no catalog can hold is simply not there.
                VersionSelector::Number(n) => match i64::try_from(n) {
                    Err(_) => Ok(None),
                    Ok(n) => tx
                        .prepare_cached(&format!(
                            "SELECT {VERSION_COLUMNS} FROM versions \
                             WHERE collection = ?1 AND number = ?2 AND state = 'committed'"
                        ))
                        .and_then(|mut st| st.query_row(params![collection_id.as_str(), n], rows::version).optional()),
                },
            }
            .map_err(sqlite_error("get version"))?;
            match found {
                Some(v) => Ok(v),
                None => {
                    collection(tx, &collection_id)?;
                    Err(Error::VersionNotFound { collection: collection_id, selector: selector.to_string() })
                }
            }
        })
        .await
    }

    async fn list_versions(&self, collection_id: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let (collection_id, query) = (collection_id.clone(), *query);
        self.read("list versions", move |tx| {
            collection(tx, &collection_id)?;
            let Ok(after) = i64::try_from(query.after.unwrap_or(0)) else { return Ok(Vec::new()) };
            let states = if query.include_trashed { "('committed', 'trashed')" } else { "('committed')" };
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND state IN {states} AND number > ?2 \
                 ORDER BY number LIMIT ?3"
            ))
            .and_then(|mut st| {
                st.query_map(params![collection_id.as_str(), after, query.limit as i64], rows::version)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list versions"))
        })
        .await
    }

    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> {
        let filter = filter.clone();
        self.read("list pending", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'pending' \
                 AND (?1 IS NULL OR lease_until <= ?1) AND (?2 IS NULL OR owner = ?2) \
                 ORDER BY lease_until, id LIMIT ?3"
            ))
            .and_then(|mut st| {
                st.query_map(params![filter.expired_at.map(micros), filter.owner, limit as i64], rows::pending)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list pending"))
        })
        .await
    }

    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> {
        self.read("list trashed", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'trashed' AND trashed_at < ?1 \
                 ORDER BY trashed_at, id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![micros(before), limit as i64], rows::version)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list trashed"))
        })
        .await
    }

    async fn list_tombstones(
        &self,
        collection_id: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let collection_id = collection_id.map(|c| c.as_str().to_owned());
        let after = after.map(str::to_owned);
        self.read("list tombstones", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {TOMBSTONE_COLUMNS} FROM tombstones WHERE (?1 IS NULL OR collection = ?1) \
                 AND (?2 IS NULL OR object_key > ?2) ORDER BY object_key LIMIT ?3"
            ))
            .and_then(|mut st| {
                st.query_map(params![collection_id, after, limit as i64], rows::tombstone)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list tombstones"))
        })
        .await
    }

    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> {
        let after = after.map(|a| a.to_string());
        self.read("list undescribed", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS}, undescribed FROM versions \
                 WHERE undescribed IS NOT NULL AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![after, limit as i64], rows::undescribed)?.collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list undescribed"))
        })
        .await
    }

    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> {
        let keys = keys.to_vec();
        self.read("classify object keys", move |tx| {
            let json = serde_json::to_string(&keys).map_err(|e| Error::internal(e.to_string()))?;
            let (live, garbage) = {
                let mut live = std::collections::HashSet::new();
                let mut garbage = std::collections::HashSet::new();
                let mut st = tx
                    .prepare_cached(
                        "SELECT object_key, state = 'purged' FROM versions \
                         WHERE object_key IN (SELECT value FROM json_each(?1)) \
                         UNION ALL SELECT object_key, 1 FROM tombstones \
                         WHERE object_key IN (SELECT value FROM json_each(?1))",
                    )
                    .map_err(sqlite_error("classify object keys"))?;
                let rows = st
                    .query_map([json], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0)))
                    .map_err(sqlite_error("classify object keys"))?;
                for row in rows {
                    let (key, is_garbage) = row.map_err(sqlite_error("classify object keys"))?;
                    if is_garbage {
                        garbage.insert(key)
                    } else {
                        live.insert(key)
                    };
                }
                (live, garbage)
            };
            Ok(keys
                .iter()
                .map(|k| {
                    if live.contains(k) {
                        KeyClass::Live
                    } else if garbage.contains(k) {
                        KeyClass::Garbage
                    } else {
                        KeyClass::Unknown
                    }
                })
                .collect())
        })
        .await
    }

    async fn repository(&self) -> Result<RepositoryInfo> {
        self.read("repository", move |tx| {
            let holds: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM versions)", [], |r| r.get(0))
                .map_err(sqlite_error("repository"))?;
            Ok(RepositoryInfo::new(state::repository(tx)?, holds))
        })
        .await
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let user = user.map(str::to_owned);
        self.read("list sessions", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE ?1 IS NULL OR user_name = ?1 \
                 ORDER BY issued_at DESC, id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![user, limit as i64], rows::session)?.collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list sessions"))
        })
        .await
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        self.read("list audit", move |tx| {
            tx.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
                .and_then(|mut st| {
                    st.query_map(params![int(after.unwrap_or(0))?, limit as i64], rows::audit)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sqlite_error("list audit"))
        })
        .await
    }

    async fn audit_checkpoint(&self) -> Result<Option<backup_core::audit::AuditHead>> {
        self.read("audit checkpoint", super::audit::checkpoint).await
    }

    async fn audit_head(&self) -> Result<backup_core::audit::AuditHead> {
        self.read("audit head", super::audit::head).await
    }

    async fn list_cursors(&self) -> Result<Vec<backup_core::audit::LogCursor>> {
        self.read("list log cursors", super::audit::cursors).await
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        snapshot::export(self.path().to_path_buf())
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        snapshot::import(self, records).await
    }
}
