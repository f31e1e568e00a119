//! [`PostgresCatalog`]: the catalog for several server instances sharing one repository.

mod rows;
mod schema;

use std::time::Duration;

use async_trait::async_trait;
use backup_core::catalog::{AbortCondition, AbortOutcome, Catalog, CatalogRecord, ImportSummary, VersionQuery};
use backup_core::protocol::{self, CollectionState, CommitRequest, Committed, ReserveRequest};
use backup_core::{
    AuditEvent, Collection, CollectionId, Error, ErrorKind, PendingUpload, Result, Session, SessionId, Version,
    VersionId, VersionSelector, VersionState,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use crate::open::redact;
use rows::{AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, VERSION_COLUMNS, VersionRow, int};

const BACKEND: &str = "postgres catalog";

/// Maps a PostgreSQL error: connection failures, serialisation failures and deadlocks are
/// `Unavailable` (a retry may help), a unique violation is a `Conflict` (by SQLSTATE, never by
/// message), everything else `Internal`.
pub(crate) fn pg_error(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| {
        let kind = match e.code() {
            None => ErrorKind::Unavailable,
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => ErrorKind::Conflict,
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::TOO_MANY_CONNECTIONS =>
            {
                ErrorKind::Unavailable
            }
            Some(_) => ErrorKind::Internal,
        };
        Error::backend(kind, BACKEND, operation, e)
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Statements prepared once per connection and reused: half the round trips of preparing
/// each time.
trait Cached: GenericClient {
    async fn cquery(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query(&st, params).await
    }
    async fn cquery_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_opt(&st, params).await
    }
    async fn cquery_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_one(&st, params).await
    }
    async fn cexecute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.execute(&st, params).await
    }
}

impl<T: GenericClient> Cached for T {}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::backend(ErrorKind::Unavailable, BACKEND, "connect", e)
}

/// The PostgreSQL catalog: tokio-postgres with a connection pool. Every mutation of a
/// collection runs in a transaction that first locks the collection's row
/// (`SELECT … FOR UPDATE`), so reservations and commits are serialised per collection across
/// every instance sharing the database; a unique constraint on (collection, number) backs
/// the numbering up. Schema migrations run on connect, under an advisory lock.
///
/// ```no_run
/// use backup_store::PostgresCatalog;
///
/// # async fn f() -> backup_core::Result<()> {
/// let catalog = PostgresCatalog::builder("postgres://backup@db.internal/backups")
///     .pool_size(32)
///     .schema("backups")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresCatalog {
    pool: Pool,
}

/// Builds a [`PostgresCatalog`].
#[derive(Debug, Clone)]
pub struct PostgresCatalogBuilder {
    url: String,
    pool_size: usize,
    schema: Option<String>,
    connect_timeout: Duration,
}

impl PostgresCatalogBuilder {
    /// The most connections the pool opens (default 16).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Keeps the tables in this schema (created if missing) instead of the connection's
    /// default, so that several repositories can share one database.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long to wait for a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, creates the schema if asked to, and migrates it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL, a bad schema name or a zero pool size;
    /// [`Error::Backend`] (`Unavailable`) if the server cannot be reached; a clear error if
    /// the database was written by a newer build.
    pub async fn build(self) -> Result<PostgresCatalog> {
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| Error::invalid("catalog URL", format!("{}: {e}", redact(&self.url))))?;
        if self.pool_size == 0 {
            return Err(Error::invalid("pool size", "must be at least 1"));
        }
        config.connect_timeout(self.connect_timeout);
        if let Some(schema) = &self.schema {
            if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Error::invalid("schema", format!("{schema:?} is not a name of [A-Za-z0-9_]")));
            }
            // Create it with a plain connection first: the pooled ones use it as search path.
            let (client, conn) = config.connect(NoTls).await.map_err(pg_error("connect"))?;
            let task = tokio::spawn(conn);
            match client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await {
                // Instances starting together race on IF NOT EXISTS; the loser finds it made.
                Err(e) if is_unique_violation(&e) => {}
                other => other.map_err(pg_error("create schema"))?,
            }
            drop(client);
            let _ = task.await;
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::invalid("pool", e.to_string()))?;
        let catalog = PostgresCatalog { pool };
        let mut client = catalog.client().await?;
        schema::migrate(&mut client).await?;
        Ok(catalog)
    }
}

impl PostgresCatalog {
    /// A builder for the database at `url` (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresCatalogBuilder {
        PostgresCatalogBuilder {
            url: url.into(),
            pool_size: 16,
            schema: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Connects with the defaults.
    ///
    /// # Errors
    /// As [`PostgresCatalogBuilder::build`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).build().await
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_error)
    }
}

async fn insert_audit(tx: &impl GenericClient, e: &AuditEvent) -> Result<()> {
    let version = e.version.map(int).transpose()?;
    tx.cexecute(
        "INSERT INTO audit (at, actor, action, collection, version, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&e.at, &e.actor, &e.action, &e.collection.as_ref().map(|c| c.as_str()), &version, &e.detail],
    )
    .await
    .map_err(pg_error("append audit"))?;
    Ok(())
}

/// Reads a collection row, locking it for the rest of the transaction when `lock`.
async fn collection_row(tx: &impl GenericClient, id: &CollectionId, lock: bool) -> Result<(Collection, u64)> {
    let sql =
        format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    match tx.cquery_opt(&sql, &[&id.as_str()]).await.map_err(pg_error("read collection"))? {
        Some(row) => rows::collection(&row),
        None => Err(Error::CollectionNotFound { collection: id.clone() }),
    }
}

async fn state(tx: &impl GenericClient, id: &CollectionId, lock: bool) -> Result<CollectionState> {
    let (collection, next_number) = collection_row(tx, id, lock).await?;
    // One round trip for both the committed versions and the pending uploads.
    let mut committed = Vec::new();
    let mut pending = Vec::new();
    let rows = tx
        .cquery(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = $1 AND state IN ('committed', 'pending') \
                 ORDER BY number NULLS LAST"
            ),
            &[&id.as_str()],
        )
        .await
        .map_err(pg_error("read collection state"))?;
    for row in &rows {
        match rows::version_row(row)? {
            VersionRow::Pending(p) => pending.push(p),
            VersionRow::Version(v) => committed.push(backup_core::rotation::VersionSummary {
                id: v.id,
                number: v.number,
                size: v.size,
                created_at: v.created_at,
                committed_at: v.committed_at,
            }),
        }
    }
    Ok(CollectionState::new(collection, next_number, committed, pending))
}

async fn version_by_id(tx: &impl GenericClient, id: &VersionId, lock: bool) -> Result<Option<VersionRow>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    tx.cquery_opt(&sql, &[&id.as_uuid()])
        .await
        .map_err(pg_error("read version"))?
        .as_ref()
        .map(rows::version_row)
        .transpose()
}

async fn insert_pending(tx: &impl GenericClient, p: &PendingUpload) -> Result<()> {
    tx.cexecute(
        "INSERT INTO versions (id, collection, state, object_key, reserved, pool_share, lease_until, created_at, \
         uploader_user, uploader_key, uploader_session) VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &p.id.as_uuid(),
            &p.collection.as_str(),
            &p.object_key,
            &int(p.reserved)?,
            &int(p.pool_share)?,
            &p.lease_until,
            &p.created_at,
            &p.uploader.user,
            &p.uploader.access_key,
            &p.uploader.session.as_ref().map(|s| s.as_str()),
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::AlreadyExists { what: format!("upload {}", p.id) }
        } else {
            pg_error("insert pending upload")(e)
        }
    })?;
    Ok(())
}

async fn insert_version(tx: &impl GenericClient, v: &Version) -> std::result::Result<(), tokio_postgres::Error> {
    tx.cexecute(
        &format!(
            "INSERT INTO versions ({VERSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, $10, $11, $12, $13, $14, $15, $16)"
        ),
        &[
            &v.id.as_uuid(),
            &v.collection.as_str(),
            &v.state.name(),
            &(v.number as i64),
            &v.filename,
            &v.object_key,
            &(v.size as i64),
            &v.digest.to_string(),
            &v.created_at,
            &v.committed_at,
            &v.trashed_at,
            &v.trash_reason,
            &v.purged_at,
            &v.uploader.user,
            &v.uploader.access_key,
            &v.uploader.session.as_ref().map(|s| s.as_str()),
        ],
    )
    .await
    .map(|_| ())
}

async fn insert_session(tx: &impl GenericClient, s: &Session) -> std::result::Result<(), tokio_postgres::Error> {
    tx.cexecute(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &s.id.as_str(),
            &s.user,
            &s.access_key,
            &s.issued_at,
            &s.expires_at,
            &s.requester_addr,
            &s.description,
            &s.single_use,
            &s.scope,
            &s.revoked_at,
        ],
    )
    .await
    .map(|_| ())
}

async fn get_session(tx: &impl GenericClient, id: &SessionId) -> Result<Session> {
    match tx
        .cquery_opt(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"), &[&id.as_str()])
        .await
        .map_err(pg_error("read session"))?
    {
        Some(row) => rows::session(&row),
        None => Err(Error::SessionNotFound { session: id.to_string() }),
    }
}

async fn versions_where(
    tx: &impl GenericClient,
    sql_tail: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Version>> {
    tx.cquery(&format!("SELECT {VERSION_COLUMNS} FROM versions {sql_tail}"), params)
        .await
        .map_err(pg_error("read versions"))?
        .iter()
        .map(|r| rows::version_row(r)?.into_version())
        .collect()
}

/// Runs `f` in a transaction that commits if it returns `Ok`.
macro_rules! transaction {
    ($self:ident, $op:literal, |$tx:ident| $body:block) => {{
        let mut client = $self.client().await?;
        let $tx = client.transaction().await.map_err(pg_error($op))?;
        let out = async { $body }.await;
        match out {
            Ok(v) => {
                $tx.commit().await.map_err(pg_error($op))?;
                Ok(v)
            }
            Err(e) => {
                let _ = $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

#[async_trait]
impl Catalog for PostgresCatalog {
    async fn create_collection(&self, collection: &Collection, audit: &AuditEvent) -> Result<()> {
        let spec = serde_json::to_string(&collection.spec).map_err(|e| Error::internal(e.to_string()))?;
        transaction!(self, "create collection", |tx| {
            let inserted = tx
                .cexecute(
                    &format!("INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 1)"),
                    &[
                        &collection.id.as_str(),
                        &spec,
                        &collection.created_at,
                        &collection.updated_at,
                        &int(collection.revision)?,
                    ],
                )
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(Error::CollectionExists { collection: collection.id.clone() }),
                Err(e) => Err(pg_error("create collection")(e)),
                Ok(_) => insert_audit(&tx, audit).await,
            }
        })
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        let client = self.client().await?;
        Ok(collection_row(&client, id, false).await?.0)
    }

    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        let client = self.client().await?;
        let after = after.map(|a| a.as_str()).unwrap_or("");
        client
            .cquery(
                &format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list collections"))?
            .iter()
            .map(|r| rows::collection(r).map(|(c, _)| c))
            .collect()
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected_revision: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let spec = serde_json::to_string(&collection.spec).map_err(|e| Error::internal(e.to_string()))?;
        transaction!(self, "update collection", |tx| {
            let (current, _) = collection_row(&tx, &collection.id, true).await?;
            if current.revision != expected_revision {
                return Err(Error::conflict(format!(
                    "collection {} is at revision {}, not {expected_revision}",
                    collection.id, current.revision
                )));
            }
            tx.cexecute(
                "UPDATE collections SET spec = $2, updated_at = $3, revision = $4 WHERE id = $1",
                &[&collection.id.as_str(), &spec, &collection.updated_at, &int(collection.revision)?],
            )
            .await
            .map_err(pg_error("update collection"))?;
            insert_audit(&tx, audit).await
        })
    }

    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()> {
        transaction!(self, "delete collection", |tx| {
            collection_row(&tx, id, true).await?;
            let row = tx
                .cquery_one(
                    "SELECT count(*) FILTER (WHERE state IN ('committed', 'trashed')), \
                     count(*) FILTER (WHERE state = 'pending') FROM versions WHERE collection = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(pg_error("delete collection"))?;
            let live: i64 = row.try_get(0).map_err(pg_error("delete collection"))?;
            let pending: i64 = row.try_get(1).map_err(pg_error("delete collection"))?;
            if live > 0 || pending > 0 {
                return Err(Error::conflict(format!(
                    "collection {id} is not empty: {live} committed or trashed versions, {pending} uploads in flight"
                )));
            }
            tx.cexecute("DELETE FROM versions WHERE collection = $1", &[&id.as_str()])
                .await
                .map_err(pg_error("delete collection"))?;
            tx.cexecute("DELETE FROM collections WHERE id = $1", &[&id.as_str()])
                .await
                .map_err(pg_error("delete collection"))?;
            insert_audit(&tx, audit).await
        })
    }

    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState> {
        let mut client = self.client().await?;
        // One snapshot for the three reads.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error("collection state"))?;
        let st = state(&tx, id, false).await;
        let _ = tx.commit().await;
        st
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<PendingUpload> {
        transaction!(self, "reserve", |tx| {
            let st = state(&tx, &request.collection, true).await?;
            let pending = protocol::decide_reservation(&st, request)?;
            // A duplicate id is caught by the primary key.
            insert_pending(&tx, &pending).await?;
            Ok(pending)
        })
    }

    async fn renew_lease(&self, id: &VersionId, lease_until: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .cexecute(
                "UPDATE versions SET lease_until = $2 WHERE id = $1 AND state = 'pending'",
                &[&id.as_uuid(), &lease_until],
            )
            .await
            .map_err(pg_error("renew lease"))?;
        if n == 0 {
            return Err(Error::conflict(format!("upload {id} is not pending any more")));
        }
        Ok(())
    }

    async fn commit(&self, request: &CommitRequest) -> Result<Committed> {
        transaction!(self, "commit", |tx| {
            let st = state(&tx, &request.collection, true).await?;
            let plan = protocol::decide_commit(&st, request)?;
            if let Some(sid) = &request.consume_session {
                let n = tx
                    .cexecute(
                        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
                        &[&sid.as_str(), &request.now],
                    )
                    .await
                    .map_err(pg_error("commit"))?;
                if n == 0 {
                    return Err(Error::conflict(format!(
                        "single-use session {sid} is already used, revoked or unknown"
                    )));
                }
            }
            let v = &plan.version;
            tx.cexecute(
                "UPDATE versions SET state = 'committed', number = $2, filename = $3, size = $4, digest = $5, \
                 committed_at = $6, reserved = NULL, pool_share = NULL, lease_until = NULL \
                 WHERE id = $1 AND state = 'pending'",
                &[&v.id.as_uuid(), &int(v.number)?, &v.filename, &int(v.size)?, &v.digest.to_string(), &v.committed_at],
            )
            .await
            .map_err(pg_error("commit"))?;
            let mut evicted = Vec::with_capacity(plan.evict.len());
            if !plan.evict.is_empty() {
                let ids: Vec<uuid::Uuid> = plan.evict.iter().map(|(id, _)| id.as_uuid()).collect();
                let reasons: Vec<&str> = plan.evict.iter().map(|(_, r)| r.as_str()).collect();
                let returning: Vec<String> = VERSION_COLUMNS.split(", ").map(|c| format!("v.{c}")).collect();
                let rows = tx
                    .cquery(
                        &format!(
                            "UPDATE versions v SET state = 'trashed', trashed_at = $3, trash_reason = e.reason \
                             FROM unnest($1::uuid[], $2::text[]) AS e(id, reason) \
                             WHERE v.id = e.id AND v.state = 'committed' RETURNING {}",
                            returning.join(", ")
                        ),
                        &[&ids, &reasons, &backup_core::clock::to_micros(request.now)],
                    )
                    .await
                    .map_err(pg_error("commit"))?;
                for row in &rows {
                    evicted.push(rows::version_row(row)?.into_version()?);
                }
                if evicted.len() != plan.evict.len() {
                    return Err(Error::internal("evicted versions vanished during the commit"));
                }
                evicted.sort_by_key(|v| v.number);
            }
            tx.cexecute(
                "UPDATE collections SET next_number = $2 WHERE id = $1",
                &[&request.collection.as_str(), &int(v.number + 1)?],
            )
            .await
            .map_err(pg_error("commit"))?;
            Ok(Committed::new(plan.version, evicted))
        })
    }

    async fn abort(&self, id: &VersionId, condition: AbortCondition) -> Result<AbortOutcome> {
        transaction!(self, "abort", |tx| {
            // Lock the collection first, as commits do, then read the row under that lock.
            let Some(row) = tx
                .cquery_opt("SELECT collection FROM versions WHERE id = $1", &[&id.as_uuid()])
                .await
                .map_err(pg_error("abort"))?
            else {
                return Ok(AbortOutcome::NotFound);
            };
            let collection: CollectionId = row.try_get::<_, &str>(0).map_err(pg_error("abort"))?.parse()?;
            collection_row(&tx, &collection, true).await?;
            match version_by_id(&tx, id, true).await? {
                None => Ok(AbortOutcome::NotFound),
                Some(VersionRow::Version(v)) => Ok(AbortOutcome::Committed(v)),
                Some(VersionRow::Pending(p)) => {
                    if let AbortCondition::ExpiredAt(now) = condition
                        && p.is_live(now)
                    {
                        return Ok(AbortOutcome::StillLive);
                    }
                    tx.cexecute("DELETE FROM versions WHERE id = $1 AND state = 'pending'", &[&id.as_uuid()])
                        .await
                        .map_err(pg_error("abort"))?;
                    Ok(AbortOutcome::Released(p))
                }
            }
        })
    }

    async fn list_expired_pending(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PendingUpload>> {
        let client = self.client().await?;
        client
            .cquery(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'pending' AND lease_until <= $1 \
                     ORDER BY lease_until, id LIMIT $2"
                ),
                &[&now, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list expired"))?
            .iter()
            .filter_map(|r| match rows::version_row(r) {
                Ok(VersionRow::Pending(p)) => Some(Ok(p)),
                Ok(VersionRow::Version(_)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let client = self.client().await?;
        let found = match selector {
            VersionSelector::Latest => {
                versions_where(
                    &client,
                    "WHERE collection = $1 AND state = 'committed' ORDER BY number DESC LIMIT 1",
                    &[&collection.as_str()],
                )
                .await?
            }
            VersionSelector::Number(n) => {
                versions_where(
                    &client,
                    "WHERE collection = $1 AND number = $2 AND state = 'committed'",
                    &[&collection.as_str(), &int(n)?],
                )
                .await?
            }
        };
        match found.into_iter().next() {
            Some(v) => Ok(v),
            None => {
                collection_row(&client, collection, false).await?;
                Err(Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
            }
        }
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let client = self.client().await?;
        collection_row(&client, collection, false).await?;
        let states: &[&str] = if query.include_trashed { &["committed", "trashed"] } else { &["committed"] };
        versions_where(
            &client,
            "WHERE collection = $1 AND number > $2 AND state = ANY($3) ORDER BY number LIMIT $4",
            &[&collection.as_str(), &int(query.after.unwrap_or(0))?, &states, &(query.limit as i64)],
        )
        .await
    }

    async fn trash_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Version> {
        transaction!(self, "trash version", |tx| {
            collection_row(&tx, collection, true).await?;
            let n = tx
                .cexecute(
                    "UPDATE versions SET state = 'trashed', trashed_at = $3, trash_reason = $4 \
                     WHERE collection = $1 AND number = $2 AND state = 'committed'",
                    &[&collection.as_str(), &int(number)?, &now, &reason],
                )
                .await
                .map_err(pg_error("trash version"))?;
            if n == 0 {
                return Err(Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() });
            }
            insert_audit(&tx, audit).await?;
            versions_where(&tx, "WHERE collection = $1 AND number = $2", &[&collection.as_str(), &int(number)?])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("trashed version vanished"))
        })
    }

    async fn list_trashed(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Version>> {
        let client = self.client().await?;
        versions_where(
            &client,
            "WHERE state = 'trashed' AND trashed_at < $1 ORDER BY trashed_at, id LIMIT $2",
            &[&before, &(limit as i64)],
        )
        .await
    }

    async fn mark_purged(&self, ids: &[VersionId], now: DateTime<Utc>) -> Result<Vec<VersionId>> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
        let client = self.client().await?;
        client
            .cquery(
                "UPDATE versions SET state = 'purged', purged_at = $2 WHERE id = ANY($1) AND state = 'trashed' RETURNING id",
                &[&ids, &now],
            )
            .await
            .map_err(pg_error("mark purged"))?
            .iter()
            .map(|r| r.try_get::<_, uuid::Uuid>(0).map(VersionId::from_uuid).map_err(pg_error("mark purged")))
            .collect()
    }

    async fn restore_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Version> {
        transaction!(self, "restore version", |tx| {
            let st = state(&tx, collection, true).await?;
            let not_found = || Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() };
            let v = versions_where(
                &tx,
                "WHERE collection = $1 AND number = $2 FOR UPDATE",
                &[&collection.as_str(), &int(number)?],
            )
            .await?
            .into_iter()
            .next()
            .filter(|v| v.state == VersionState::Trashed)
            .ok_or_else(not_found)?;
            protocol::decide_restore(&st, &v, now)?;
            tx.cexecute(
                "UPDATE versions SET state = 'committed', trashed_at = NULL, trash_reason = NULL WHERE id = $1 AND state = 'trashed'",
                &[&v.id.as_uuid()],
            )
            .await
            .map_err(pg_error("restore version"))?;
            insert_audit(&tx, audit).await?;
            versions_where(&tx, "WHERE collection = $1 AND number = $2", &[&collection.as_str(), &int(number)?])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("restored version vanished"))
        })
    }

    async fn known_object_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        let client = self.client().await?;
        Ok(client
            .cquery(
                "SELECT DISTINCT object_key FROM versions WHERE state <> 'purged' AND object_key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(pg_error("known object keys"))?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(pg_error("known object keys"))?)
    }

    async fn insert_session(&self, session: &Session) -> Result<()> {
        let client = self.client().await?;
        match insert_session(&client, session).await {
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists { what: format!("session {}", session.id) }),
            other => other.map_err(pg_error("insert session")),
        }
    }

    async fn get_session(&self, id: &SessionId) -> Result<Session> {
        let client = self.client().await?;
        get_session(&client, id).await
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let client = self.client().await?;
        client
            .cquery(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE $1::TEXT IS NULL OR user_name = $1 \
                     ORDER BY issued_at DESC, id LIMIT $2"
                ),
                &[&user, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list sessions"))?
            .iter()
            .map(rows::session)
            .collect()
    }

    async fn revoke_session(&self, id: &SessionId, now: DateTime<Utc>, audit: &AuditEvent) -> Result<Session> {
        transaction!(self, "revoke session", |tx| {
            let n = tx
                .cexecute(
                    "UPDATE sessions SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                    &[&id.as_str(), &now],
                )
                .await
                .map_err(pg_error("revoke session"))?;
            if n == 0 {
                return Err(Error::SessionNotFound { session: id.to_string() });
            }
            insert_audit(&tx, audit).await?;
            get_session(&tx, id).await
        })
    }

    async fn revoke_user_sessions(&self, user: &str, now: DateTime<Utc>, audit: &AuditEvent) -> Result<u64> {
        transaction!(self, "revoke user sessions", |tx| {
            let n = tx
                .cexecute(
                    "UPDATE sessions SET revoked_at = $2 WHERE user_name = $1 AND revoked_at IS NULL",
                    &[&user, &now],
                )
                .await
                .map_err(pg_error("revoke user sessions"))?;
            insert_audit(&tx, audit).await?;
            Ok(n)
        })
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        let client = self.client().await?;
        insert_audit(&client, event).await
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        let client = self.client().await?;
        client
            .cquery(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&int(after.unwrap_or(0))?, &(limit as i64)],
            )
            .await
            .map_err(pg_error("list audit"))?
            .iter()
            .map(rows::audit)
            .collect()
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        let mut client = self.client().await?;
        let (sender, rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
        tokio::spawn(async move {
            let result: Result<()> = async {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(pg_error("export"))?;
                // The first query pins the snapshot for every table that follows.
                if sender.send(Ok(CatalogRecord::header(backup_core::clock::to_micros(Utc::now())))).await.is_err() {
                    return Ok(());
                }
                let tables: [(String, fn(&tokio_postgres::Row) -> Result<CatalogRecord>); 4] = [
                    (format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"), |r| {
                        rows::collection(r)
                            .map(|(collection, next_number)| CatalogRecord::Collection { collection, next_number })
                    }),
                    (
                        format!(
                            "SELECT {VERSION_COLUMNS} FROM versions ORDER BY collection, state = 'pending', number, id"
                        ),
                        |r| {
                            rows::version_row(r).map(|row| match row {
                                VersionRow::Pending(p) => CatalogRecord::Pending(p),
                                VersionRow::Version(v) => CatalogRecord::Version(v),
                            })
                        },
                    ),
                    (format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY issued_at, id"), |r| {
                        rows::session(r).map(CatalogRecord::Session)
                    }),
                    (format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"), |r| {
                        rows::audit(r).map(CatalogRecord::Audit)
                    }),
                ];
                for (sql, map) in tables {
                    let rows = tx.query_raw(&sql, std::iter::empty::<i64>()).await.map_err(pg_error("export"))?;
                    let mut rows = std::pin::pin!(rows);
                    while let Some(row) = rows.try_next().await.map_err(pg_error("export"))? {
                        if sender.send(map(&row)).await.is_err() {
                            return Ok(()); // The consumer went away.
                        }
                    }
                }
                tx.commit().await.map_err(pg_error("export"))
            }
            .await;
            if let Err(e) = result {
                let _ = sender.send(Err(e)).await;
            }
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        transaction!(self, "import", |tx| {
            // Nothing may be written meanwhile by another instance.
            tx.batch_execute("LOCK TABLE collections, versions, sessions, audit IN EXCLUSIVE MODE")
                .await
                .map_err(pg_error("import"))?;
            let row = tx
                .cquery_one(
                    "SELECT (SELECT count(*) FROM collections) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM audit)",
                    &[],
                )
                .await
                .map_err(pg_error("import"))?;
            if row.try_get::<_, i64>(0).map_err(pg_error("import"))? != 0 {
                return Err(Error::conflict("import needs an empty catalog"));
            }
            let mut records = records;
            let header = records.try_next().await?.ok_or_else(|| Error::invalid("catalog snapshot", "it is empty"))?;
            header.check_header()?;
            let mut summary = ImportSummary::default();
            while let Some(record) = records.try_next().await? {
                summary.count(&record);
                import_record(&tx, record).await?;
            }
            tx.cexecute(
                "SELECT setval(pg_get_serial_sequence('audit', 'seq'), coalesce(max(seq), 0) + 1, false) FROM audit",
                &[],
            )
            .await
            .map_err(pg_error("import"))?;
            Ok(summary)
        })
    }
}

async fn import_record(tx: &Transaction<'_>, record: CatalogRecord) -> Result<()> {
    let bad = |reason: String| Error::invalid("catalog snapshot", reason);
    match record {
        CatalogRecord::Header { .. } => return Err(bad("a second header".into())),
        CatalogRecord::Collection { collection: c, next_number } => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            tx.cexecute(
                &format!("INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&c.id.as_str(), &spec, &c.created_at, &c.updated_at, &int(c.revision)?, &int(next_number)?],
            )
            .await
            .map_err(|e| {
                if is_unique_violation(&e) { bad(format!("collection {} twice", c.id)) } else { pg_error("import")(e) }
            })?;
        }
        CatalogRecord::Version(v) => {
            let (_, next) = collection_row(tx, &v.collection, false)
                .await
                .map_err(|_| bad(format!("version {} of unknown collection {}", v.number, v.collection)))?;
            if v.number >= next || v.state == VersionState::Pending {
                return Err(bad(format!("version {} of {} is out of sequence", v.number, v.collection)));
            }
            int(v.size)?;
            int(v.number)?;
            insert_version(tx, &v).await.map_err(|e| {
                if is_unique_violation(&e) {
                    bad(format!("version {} of {} twice", v.number, v.collection))
                } else {
                    pg_error("import")(e)
                }
            })?;
        }
        CatalogRecord::Pending(p) => {
            collection_row(tx, &p.collection, false)
                .await
                .map_err(|_| bad(format!("upload {} of unknown collection {}", p.id, p.collection)))?;
            insert_pending(tx, &p).await?;
        }
        CatalogRecord::Session(s) => {
            insert_session(tx, &s).await.map_err(|e| {
                if is_unique_violation(&e) { bad("a session twice".into()) } else { pg_error("import")(e) }
            })?;
        }
        CatalogRecord::Audit(e) => {
            let version = e.version.map(int).transpose()?;
            tx.cexecute(
                &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &int(e.seq)?,
                    &e.at,
                    &e.actor,
                    &e.action,
                    &e.collection.as_ref().map(|c| c.as_str()),
                    &version,
                    &e.detail,
                ],
            )
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    bad(format!("audit event {} twice", e.seq))
                } else {
                    pg_error("import")(err)
                }
            })?;
        }
        _ => return Err(bad("a record of a kind this build does not know".into())),
    }
    Ok(())
}
