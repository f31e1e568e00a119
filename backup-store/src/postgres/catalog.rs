//! The [`Catalog`] implementation: each step in one transaction, reads as single queries.

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
use tokio_postgres::IsolationLevel;

use super::error::pg_error;
use super::rows::{
    self, AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS, int, ts,
};
use super::statements::Cached;
use super::{PostgresCatalog, apply, snapshot, state};

#[async_trait]
impl Catalog for PostgresCatalog {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
        let op = if query.label.is_empty() { "transact" } else { query.label };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error(op))?;
        let out = async {
            if query.relaxed {
                // Harmless to lose in a crash (recover() repairs it): no wait for the log flush.
                tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_error(op))?;
            }
            let loaded = state::load(&tx, &query, true).await?;
            let mutations = decide(&loaded)?;
            apply::apply_all(&tx, &mutations).await
        }
        .await;
        match out {
            Ok(()) => tx.commit().await.map_err(pg_error(op)),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn load(&self, query: StateQuery) -> Result<LoadedState> {
        let op = if query.label.is_empty() { "load" } else { query.label };
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error(op))?;
        let loaded = state::load(&tx, &query, false).await?;
        tx.commit().await.map_err(pg_error(op))?;
        Ok(loaded)
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = $1");
        match client.cquery_opt(&sql, &[&id.as_str()]).await.map_err(pg_error("read collection"))? {
            Some(row) => Ok(rows::collection(&row)?.0),
            None => Err(Error::CollectionNotFound { collection: id.clone() }),
        }
    }

    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        let client = self.client().await?;
        let after = after.map_or("", |a| a.as_str());
        let found = client
            .cquery(
                &format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list collections"))?;
        found.iter().map(|r| rows::collection(r).map(|(c, _)| c)).collect()
    }

    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let client = self.client().await?;
        let found = match selector {
            VersionSelector::Latest => client
                .cquery_opt(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND state = 'committed' \
                         ORDER BY number DESC LIMIT 1"
                    ),
                    &[&collection.as_str()],
                )
                .await
                .map_err(pg_error("get version"))?,
            // A number no catalog can hold is simply not there.
            VersionSelector::Number(n) => match i64::try_from(n) {
                Err(_) => None,
                Ok(n) => client
                    .cquery_opt(
                        &format!(
                            "SELECT {VERSION_COLUMNS} FROM versions \
                             WHERE collection = $1 AND number = $2 AND state = 'committed'"
                        ),
                        &[&collection.as_str(), &n],
                    )
                    .await
                    .map_err(pg_error("get version"))?,
            },
        };
        match found {
            Some(row) => rows::version(&row),
            None => {
                self.get_collection(collection).await?;
                Err(Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
            }
        }
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        self.get_collection(collection).await?;
        let Ok(after) = i64::try_from(query.after.unwrap_or(0)) else { return Ok(Vec::new()) };
        let client = self.client().await?;
        let states = if query.include_trashed { "('committed', 'trashed')" } else { "('committed')" };
        let found = client
            .cquery(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND state IN {states} \
                     AND number > $2 ORDER BY number LIMIT $3"
                ),
                &[&collection.as_str(), &after, &(query.limit as i64)],
            )
            .await
            .map_err(pg_error("list versions"))?;
        found.iter().map(rows::version).collect()
    }

    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'pending' \
                     AND ($1::timestamptz IS NULL OR lease_until <= $1) AND ($2::text IS NULL OR owner = $2) \
                     ORDER BY lease_until, id LIMIT $3"
                ),
                &[&filter.expired_at.map(ts), &filter.owner, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list pending"))?;
        found.iter().map(rows::pending).collect()
    }

    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'trashed' AND trashed_at < $1 \
                     ORDER BY trashed_at, id LIMIT $2"
                ),
                &[&ts(before), &(limit as i64)],
            )
            .await
            .map_err(pg_error("list trashed"))?;
        found.iter().map(rows::version).collect()
    }

    async fn list_tombstones(
        &self,
        collection: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!(
                    "SELECT {TOMBSTONE_COLUMNS} FROM tombstones WHERE ($1::text IS NULL OR collection = $1) \
                     AND ($2::text IS NULL OR object_key > $2) ORDER BY object_key LIMIT $3"
                ),
                &[&collection.map(|c| c.as_str()), &after, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list tombstones"))?;
        found.iter().map(rows::tombstone).collect()
    }

    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!(
                    "SELECT {VERSION_COLUMNS}, undescribed FROM versions \
                     WHERE undescribed IS NOT NULL AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
                ),
                &[&after.map(|a| a.as_uuid()), &(limit as i64)],
            )
            .await
            .map_err(pg_error("list undescribed"))?;
        found.iter().map(rows::undescribed).collect()
    }

    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                "SELECT object_key, state = 'purged' FROM versions WHERE object_key = ANY($1) \
                 UNION ALL SELECT object_key, true FROM tombstones WHERE object_key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(pg_error("classify object keys"))?;
        let mut live = std::collections::HashSet::new();
        let mut garbage = std::collections::HashSet::new();
        for row in &found {
            let key: String = row.try_get(0).map_err(pg_error("classify object keys"))?;
            if row.try_get::<_, bool>(1).map_err(pg_error("classify object keys"))? {
                garbage.insert(key);
            } else {
                live.insert(key);
            }
        }
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
    }

    async fn repository(&self) -> Result<RepositoryInfo> {
        let client = self.client().await?;
        let (id, holds) = futures::try_join!(state::repository(&client), async {
            let row = client
                .cquery_opt("SELECT EXISTS (SELECT 1 FROM versions)", &[])
                .await
                .map_err(pg_error("repository"))?;
            row.map(|r| r.try_get::<_, bool>(0).map_err(pg_error("repository"))).transpose().map(|b| b.unwrap_or(false))
        })?;
        Ok(RepositoryInfo::new(id, holds))
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE $1::text IS NULL OR user_name = $1 \
                     ORDER BY issued_at DESC, id LIMIT $2"
                ),
                &[&user, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list sessions"))?;
        found.iter().map(rows::session).collect()
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        let client = self.client().await?;
        let found = client
            .cquery(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&int(after.unwrap_or(0))?, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list audit"))?;
        found.iter().map(rows::audit).collect()
    }

    async fn audit_checkpoint(&self) -> Result<Option<backup_core::audit::AuditHead>> {
        super::audit::checkpoint(&self.client().await?).await
    }

    async fn audit_head(&self) -> Result<backup_core::audit::AuditHead> {
        super::audit::head(&self.client().await?).await
    }

    async fn list_cursors(&self) -> Result<Vec<backup_core::audit::LogCursor>> {
        super::audit::cursors(&self.client().await?).await
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        snapshot::export(self.client().await?).await
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        snapshot::import(&mut self.client().await?, records).await
    }
}
