//! [`SqliteCatalog`]: the embedded default catalog, one SQLite file.

mod group_commit;
mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::catalog::{AbortCondition, AbortOutcome, Catalog, CatalogRecord, ImportSummary, VersionQuery};
use backup_core::protocol::{self, CollectionState, CommitRequest, Committed, ReserveRequest};
use backup_core::{
    AuditEvent, Collection, CollectionId, Error, ErrorKind, PendingUpload, Result, Session, SessionId, Version,
    VersionId, VersionSelector, VersionState,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::error::{is_unique_violation, sqlite_error};
use rows::{
    AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, SUMMARY_COLUMNS, VERSION_COLUMNS, VersionRow, int, micros,
};

const BACKEND: &str = "sqlite catalog";

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections kept open.
const READERS: usize = 4;

/// The embedded catalog: one SQLite file in WAL mode, ACID, with nothing else to install.
///
/// Writes go through one connection in `BEGIN IMMEDIATE` transactions, so reservations and
/// commits are serialised (also against other processes on the same file, which wait up to a
/// busy timeout); reads use a small pool of connections and see a consistent snapshot. Every
/// call runs on Tokio's blocking threads, never on the async ones. `synchronous = FULL`: a
/// commit that returned survives a power loss. Writes waiting for the writer are committed
/// together (group commit), each in its own savepoint, so concurrent uploads share syncs.
///
/// ```
/// use backup_core::{Catalog, Engine};
/// use backup_store::SqliteCatalog;
/// use std::sync::Arc;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let catalog = SqliteCatalog::open(dir.path().join("catalog.db")).await?;
/// let engine = Engine::builder().catalog(Arc::new(catalog)).build()?;
/// assert!(engine.catalog().list_collections(None, 10).await?.is_empty());
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Synced writes waiting for the writer: the next batch takes them all.
    waiting: Mutex<Vec<Box<dyn group_commit::Job>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("path", &self.path).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction rolls it back when the transaction is dropped, so the
    // connection behind a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_connection(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::backend(ErrorKind::Unavailable, BACKEND, "open", format!("cannot open {}: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error("open"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sqlite_error("open"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::backend(
            ErrorKind::Unavailable,
            BACKEND,
            "open",
            format!("{} cannot use write-ahead logging (journal mode {mode})", path.display()),
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(sqlite_error("open"))?;
    Ok(conn)
}

impl SqliteCatalog {
    /// Opens (or creates) the catalog file at `path`, creating its folder, and brings its
    /// schema up to date.
    ///
    /// # Errors
    /// [`Error::Backend`] if the file cannot be opened or was written by a newer build.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| Error::internal(format!("sqlite open task: {e}")))?
    }

    /// Opens a catalog from a `sqlite://PATH` URL (`sqlite:///abs/path.db` or
    /// `sqlite://relative/path.db`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for another scheme; as [`SqliteCatalog::open`].
    pub async fn open_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::invalid("catalog URL", format!("{url:?} is not sqlite://PATH")))?;
        Self::open(path).await
    }

    fn open_blocking(path: PathBuf) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::backend(ErrorKind::Unavailable, BACKEND, "open", format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_connection(&path)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteCatalog {
            shared: Arc::new(Shared {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                waiting: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer, on a blocking thread; commits
    /// if it returns `Ok`, durably (the commit syncs the log). Writes that wait for the writer
    /// meanwhile share one transaction and one sync, each in its own savepoint
    /// (see [`group_commit`]).
    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.write_grouped(operation, true, f).await
    }

    /// Like [`SqliteCatalog::write`], but the commit need not wait for the disk: for steps
    /// whose loss in a power cut is harmless and repaired by `recover()` (a reservation, a
    /// lease renewal, an abort, a purge mark). A later synced commit persists it anyway,
    /// since the log is written in order; in a batch with a synced write it is synced too.
    async fn write_relaxed<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.write_grouped(operation, false, f).await
    }

    async fn write_grouped<T, F>(&self, operation: &'static str, synced: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        lock(&self.shared.waiting).push(Box::new(group_commit::WriteJob::new(operation, synced, f, reply)));
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&shared.writer);
            // Everything waiting now, this write included unless an earlier batch took it
            // (and then delivered its result before releasing the writer).
            let jobs = std::mem::take(&mut *lock(&shared.waiting));
            group_commit::run_batch(&mut conn, jobs);
        })
        .await
        .map_err(|e| Error::internal(format!("sqlite {operation} task: {e}")))?;
        result.await.map_err(|_| Error::internal(format!("sqlite {operation}: its batch ended without an answer")))?
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a pooled reader.
    async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = match lock(&shared.readers).pop() {
                Some(c) => c,
                None => open_connection(&shared.path)?,
            };
            let out = (|| {
                let tx =
                    conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(sqlite_error(operation))?;
                let out = f(&tx)?;
                tx.commit().map_err(sqlite_error(operation))?;
                Ok(out)
            })();
            let mut readers = lock(&shared.readers);
            if readers.len() < READERS {
                readers.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::internal(format!("sqlite {operation} task: {e}")))?
    }
}

fn insert_audit(tx: &Transaction<'_>, e: &AuditEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, collection, version, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![
            micros(e.at),
            e.actor,
            e.action,
            e.collection.as_ref().map(|c| c.as_str()),
            e.version.map(int).transpose()?,
            e.detail
        ])
    })
    .map(|_| ())
    .map_err(sqlite_error("append audit"))
}

fn collection_row(tx: &Transaction<'_>, id: &CollectionId) -> Result<(Collection, u64)> {
    tx.query_row(
        &format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"),
        [id.as_str()],
        rows::collection,
    )
    .optional()
    .map_err(sqlite_error("read collection"))?
    .ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
}

fn state(tx: &Transaction<'_>, id: &CollectionId) -> Result<CollectionState> {
    let (collection, next_number) = collection_row(tx, id)?;
    let committed = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM versions WHERE collection = ?1 AND state = 'committed' ORDER BY number"
        ))
        .and_then(|mut st| st.query_map([id.as_str()], rows::summary)?.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(sqlite_error("read collection state"))?;
    let pending = tx
        .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND state = 'pending'"))
        .and_then(|mut st| {
            st.query_map([id.as_str()], rows::version_row)?
                .map(|r| {
                    r.and_then(|row| match row {
                        VersionRow::Pending(p) => Ok(p),
                        VersionRow::Version(v) => Err(rusqlite::Error::InvalidColumnType(
                            2,
                            format!("version {} among pending rows", v.id),
                            rusqlite::types::Type::Text,
                        )),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sqlite_error("read collection state"))?;
    Ok(CollectionState::new(collection, next_number, committed, pending))
}

fn version_by_id(tx: &Transaction<'_>, id: &VersionId) -> Result<Option<VersionRow>> {
    tx.query_row(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE id = ?1"), [id.to_string()], rows::version_row)
        .optional()
        .map_err(sqlite_error("read version"))
}

fn insert_pending(tx: &Transaction<'_>, p: &PendingUpload) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO versions (id, collection, state, object_key, reserved, pool_share, lease_until, created_at, \
         uploader_user, uploader_key, uploader_session) VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
    ])?;
    Ok(())
}

fn insert_version(tx: &Transaction<'_>, v: &Version) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO versions ({VERSION_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, NULL, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
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
    ])?;
    Ok(())
}

fn insert_session(tx: &Transaction<'_>, s: &Session) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
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
    ])?;
    Ok(())
}

fn get_session(tx: &Transaction<'_>, id: &SessionId) -> Result<Session> {
    tx.query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), [id.as_str()], rows::session)
        .optional()
        .map_err(sqlite_error("read session"))?
        .ok_or_else(|| Error::SessionNotFound { session: id.to_string() })
}

fn versions_of(tx: &Transaction<'_>, collection: &CollectionId, number: u64) -> Result<Version> {
    tx.query_row(
        &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND number = ?2"),
        params![collection.as_str(), int(number).map_err(sqlite_error("read version"))?],
        rows::version_row,
    )
    .and_then(VersionRow::into_version)
    .map_err(sqlite_error("read version"))
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn create_collection(&self, collection: &Collection, audit: &AuditEvent) -> Result<()> {
        let (c, audit) = (collection.clone(), audit.clone());
        self.write("create collection", move |tx| {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            let inserted = tx.execute(
                &format!("INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 1)"),
                params![
                    c.id.as_str(),
                    spec,
                    micros(c.created_at),
                    micros(c.updated_at),
                    int(c.revision).map_err(sqlite_error("create collection"))?
                ],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(Error::CollectionExists { collection: c.id.clone() }),
                other => other.map_err(sqlite_error("create collection"))?,
            };
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        let id = id.clone();
        self.read("get collection", move |tx| Ok(collection_row(tx, &id)?.0)).await
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

    async fn update_collection(
        &self,
        collection: &Collection,
        expected_revision: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let (c, audit) = (collection.clone(), audit.clone());
        self.write("update collection", move |tx| {
            let (current, _) = collection_row(tx, &c.id)?;
            if current.revision != expected_revision {
                return Err(Error::conflict(format!(
                    "collection {} is at revision {}, not {expected_revision}",
                    c.id, current.revision
                )));
            }
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            tx.execute(
                "UPDATE collections SET spec = ?2, updated_at = ?3, revision = ?4 WHERE id = ?1",
                params![
                    c.id.as_str(),
                    spec,
                    micros(c.updated_at),
                    int(c.revision).map_err(sqlite_error("update collection"))?
                ],
            )
            .map_err(sqlite_error("update collection"))?;
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()> {
        let (id, audit) = (id.clone(), audit.clone());
        self.write("delete collection", move |tx| {
            collection_row(tx, &id)?;
            let (live, pending): (i64, i64) = tx
                .query_row(
                    "SELECT count(*) FILTER (WHERE state IN ('committed', 'trashed')), \
                     count(*) FILTER (WHERE state = 'pending') FROM versions WHERE collection = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sqlite_error("delete collection"))?;
            if live > 0 || pending > 0 {
                return Err(Error::conflict(format!(
                    "collection {id} is not empty: {live} committed or trashed versions, {pending} uploads in flight"
                )));
            }
            tx.execute("DELETE FROM versions WHERE collection = ?1", [id.as_str()])
                .map_err(sqlite_error("delete collection"))?;
            tx.execute("DELETE FROM collections WHERE id = ?1", [id.as_str()])
                .map_err(sqlite_error("delete collection"))?;
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState> {
        let id = id.clone();
        self.read("collection state", move |tx| state(tx, &id)).await
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<PendingUpload> {
        let request = request.clone();
        self.write_relaxed("reserve", move |tx| {
            let st = state(tx, &request.collection)?;
            let pending = protocol::decide_reservation(&st, &request)?;
            match insert_pending(tx, &pending) {
                // A duplicate id is caught by the primary key.
                Err(e) if is_unique_violation(&e) => {
                    Err(Error::AlreadyExists { what: format!("upload {}", request.id) })
                }
                other => other.map_err(sqlite_error("reserve")).map(|()| pending),
            }
        })
        .await
    }

    async fn renew_lease(&self, id: &VersionId, lease_until: DateTime<Utc>) -> Result<()> {
        let id = *id;
        self.write_relaxed("renew lease", move |tx| {
            let n = tx
                .execute(
                    "UPDATE versions SET lease_until = ?2 WHERE id = ?1 AND state = 'pending'",
                    params![id.to_string(), micros(lease_until)],
                )
                .map_err(sqlite_error("renew lease"))?;
            if n == 0 {
                return Err(Error::conflict(format!("upload {id} is not pending any more")));
            }
            Ok(())
        })
        .await
    }

    async fn commit(&self, request: &CommitRequest) -> Result<Committed> {
        let request = request.clone();
        self.write("commit", move |tx| {
            let st = state(tx, &request.collection)?;
            let plan = protocol::decide_commit(&st, &request)?;
            let op = "commit";
            if let Some(sid) = &request.consume_session {
                let n = tx
                    .execute(
                        "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                        params![sid.as_str(), micros(request.now)],
                    )
                    .map_err(sqlite_error(op))?;
                if n == 0 {
                    return Err(Error::conflict(format!(
                        "single-use session {sid} is already used, revoked or unknown"
                    )));
                }
            }
            let v = &plan.version;
            tx.execute(
                "UPDATE versions SET state = 'committed', number = ?2, filename = ?3, size = ?4, digest = ?5, \
                 committed_at = ?6, reserved = NULL, pool_share = NULL, lease_until = NULL \
                 WHERE id = ?1 AND state = 'pending'",
                params![
                    v.id.to_string(),
                    int(v.number).map_err(sqlite_error(op))?,
                    v.filename,
                    int(v.size).map_err(sqlite_error(op))?,
                    v.digest.to_string(),
                    micros(v.committed_at)
                ],
            )
            .map_err(sqlite_error(op))?;
            let mut evicted = Vec::with_capacity(plan.evict.len());
            for (id, reason) in &plan.evict {
                tx.execute(
                    "UPDATE versions SET state = 'trashed', trashed_at = ?2, trash_reason = ?3 \
                     WHERE id = ?1 AND state = 'committed'",
                    params![id.to_string(), micros(request.now), reason],
                )
                .map_err(sqlite_error(op))?;
                match version_by_id(tx, id)? {
                    Some(VersionRow::Version(v)) => evicted.push(v),
                    _ => return Err(Error::internal(format!("evicted version {id} vanished"))),
                }
            }
            tx.execute(
                "UPDATE collections SET next_number = ?2 WHERE id = ?1",
                params![request.collection.as_str(), int(v.number + 1).map_err(sqlite_error(op))?],
            )
            .map_err(sqlite_error(op))?;
            Ok(Committed::new(plan.version, evicted))
        })
        .await
    }

    async fn abort(&self, id: &VersionId, condition: AbortCondition) -> Result<AbortOutcome> {
        let id = *id;
        self.write_relaxed("abort", move |tx| match version_by_id(tx, &id)? {
            None => Ok(AbortOutcome::NotFound),
            Some(VersionRow::Version(v)) => Ok(AbortOutcome::Committed(v)),
            Some(VersionRow::Pending(p)) => {
                if let AbortCondition::ExpiredAt(now) = condition
                    && p.is_live(now)
                {
                    return Ok(AbortOutcome::StillLive);
                }
                tx.execute("DELETE FROM versions WHERE id = ?1 AND state = 'pending'", [id.to_string()])
                    .map_err(sqlite_error("abort"))?;
                Ok(AbortOutcome::Released(p))
            }
        })
        .await
    }

    async fn list_expired_pending(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PendingUpload>> {
        self.read("list expired", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'pending' AND lease_until <= ?1 \
                 ORDER BY lease_until, id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![micros(now), limit as i64], rows::version_row)?
                    .filter_map(|r| match r {
                        Ok(VersionRow::Pending(p)) => Some(Ok(p)),
                        Ok(VersionRow::Version(_)) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list expired"))
        })
        .await
    }

    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let collection = collection.clone();
        self.read("get version", move |tx| {
            let found = match selector {
                VersionSelector::Latest => tx.query_row(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND state = 'committed' \
                         ORDER BY number DESC LIMIT 1"
                    ),
                    [collection.as_str()],
                    rows::version_row,
                ),
                VersionSelector::Number(n) => tx.query_row(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND number = ?2 AND state = 'committed'"
                    ),
                    params![collection.as_str(), int(n).map_err(sqlite_error("get version"))?],
                    rows::version_row,
                ),
            }
            .optional()
            .map_err(sqlite_error("get version"))?;
            match found {
                Some(row) => row.into_version().map_err(sqlite_error("get version")),
                None => {
                    collection_row(tx, &collection)?;
                    Err(Error::VersionNotFound { collection, selector: selector.to_string() })
                }
            }
        })
        .await
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let (collection, query) = (collection.clone(), *query);
        self.read("list versions", move |tx| {
            collection_row(tx, &collection)?;
            let states = if query.include_trashed { "('committed', 'trashed')" } else { "('committed')" };
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE collection = ?1 AND number > ?2 AND state IN {states} \
                 ORDER BY number LIMIT ?3"
            ))
            .and_then(|mut st| {
                let after = int(query.after.unwrap_or(0))?;
                st.query_map(params![collection.as_str(), after, query.limit as i64], rows::version_row)?
                    .map(|r| r.and_then(VersionRow::into_version))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list versions"))
        })
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
        let (collection, reason, audit) = (collection.clone(), reason.to_owned(), audit.clone());
        self.write("trash version", move |tx| {
            collection_row(tx, &collection)?;
            let n = tx
                .execute(
                    "UPDATE versions SET state = 'trashed', trashed_at = ?3, trash_reason = ?4 \
                     WHERE collection = ?1 AND number = ?2 AND state = 'committed'",
                    params![
                        collection.as_str(),
                        int(number).map_err(sqlite_error("trash version"))?,
                        micros(now),
                        reason
                    ],
                )
                .map_err(sqlite_error("trash version"))?;
            if n == 0 {
                return Err(Error::VersionNotFound { collection, selector: number.to_string() });
            }
            insert_audit(tx, &audit)?;
            versions_of(tx, &collection, number)
        })
        .await
    }

    async fn list_trashed(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Version>> {
        self.read("list trashed", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE state = 'trashed' AND trashed_at < ?1 \
                 ORDER BY trashed_at, id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![micros(before), limit as i64], rows::version_row)?
                    .map(|r| r.and_then(VersionRow::into_version))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sqlite_error("list trashed"))
        })
        .await
    }

    async fn mark_purged(&self, ids: &[VersionId], now: DateTime<Utc>) -> Result<Vec<VersionId>> {
        let ids = ids.to_vec();
        self.write_relaxed("mark purged", move |tx| {
            let mut st = tx
                .prepare_cached(
                    "UPDATE versions SET state = 'purged', purged_at = ?2 WHERE id = ?1 AND state = 'trashed'",
                )
                .map_err(sqlite_error("mark purged"))?;
            let mut marked = Vec::new();
            for id in ids {
                if st.execute(params![id.to_string(), micros(now)]).map_err(sqlite_error("mark purged"))? == 1 {
                    marked.push(id);
                }
            }
            Ok(marked)
        })
        .await
    }

    async fn restore_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let (collection, audit) = (collection.clone(), audit.clone());
        self.write("restore version", move |tx| {
            let st = state(tx, &collection)?;
            let not_found = || Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() };
            let v = versions_of(tx, &collection, number).map_err(|_| not_found())?;
            if v.state != VersionState::Trashed {
                return Err(not_found());
            }
            protocol::decide_restore(&st, &v, now)?;
            tx.execute(
                "UPDATE versions SET state = 'committed', trashed_at = NULL, trash_reason = NULL WHERE id = ?1 AND state = 'trashed'",
                [v.id.to_string()],
            )
            .map_err(sqlite_error("restore version"))?;
            insert_audit(tx, &audit)?;
            versions_of(tx, &collection, number)
        })
        .await
    }

    async fn known_object_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        let keys = serde_json::to_string(keys).map_err(|e| Error::internal(e.to_string()))?;
        self.read("known object keys", move |tx| {
            tx.prepare_cached(
                "SELECT DISTINCT object_key FROM versions \
                 WHERE state <> 'purged' AND object_key IN (SELECT value FROM json_each(?1))",
            )
            .and_then(|mut st| st.query_map([keys], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(sqlite_error("known object keys"))
        })
        .await
    }

    async fn insert_session(&self, session: &Session) -> Result<()> {
        let session = session.clone();
        self.write("insert session", move |tx| match insert_session(tx, &session) {
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists { what: format!("session {}", session.id) }),
            other => other.map_err(sqlite_error("insert session")),
        })
        .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Session> {
        let id = id.clone();
        self.read("get session", move |tx| get_session(tx, &id)).await
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

    async fn revoke_session(&self, id: &SessionId, now: DateTime<Utc>, audit: &AuditEvent) -> Result<Session> {
        let (id, audit) = (id.clone(), audit.clone());
        self.write("revoke session", move |tx| {
            let n = tx
                .execute(
                    "UPDATE sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                    params![id.as_str(), micros(now)],
                )
                .map_err(sqlite_error("revoke session"))?;
            if n == 0 {
                return Err(Error::SessionNotFound { session: id.to_string() });
            }
            insert_audit(tx, &audit)?;
            get_session(tx, &id)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user: &str, now: DateTime<Utc>, audit: &AuditEvent) -> Result<u64> {
        let (user, audit) = (user.to_owned(), audit.clone());
        self.write("revoke user sessions", move |tx| {
            let n = tx
                .execute(
                    "UPDATE sessions SET revoked_at = ?2 WHERE user_name = ?1 AND revoked_at IS NULL",
                    params![user, micros(now)],
                )
                .map_err(sqlite_error("revoke user sessions"))?;
            insert_audit(tx, &audit)?;
            Ok(n as u64)
        })
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        let event = event.clone();
        self.write("append audit", move |tx| insert_audit(tx, &event)).await
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

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        let (tx_records, rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let send = |r: Result<CatalogRecord>| tx_records.blocking_send(r).is_ok();
            let result = (|| -> Result<()> {
                // A connection of its own: the snapshot holds a read transaction for as long
                // as the consumer takes.
                let mut conn = open_connection(&shared.path)?;
                let tx =
                    conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(sqlite_error("export"))?;
                // The first read pins the snapshot for the rest of the transaction.
                tx.query_row("SELECT count(*) FROM collections", [], |r| r.get::<_, i64>(0))
                    .map_err(sqlite_error("export"))?;
                if !send(Ok(CatalogRecord::header(backup_core::clock::to_micros(Utc::now())))) {
                    return Ok(());
                }
                export_table(
                    &tx,
                    &format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"),
                    |r| {
                        rows::collection(r)
                            .map(|(collection, next_number)| CatalogRecord::Collection { collection, next_number })
                    },
                    &send,
                )?;
                export_table(
                    &tx,
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions ORDER BY collection, state = 'pending', number, id"
                    ),
                    |r| {
                        rows::version_row(r).map(|row| match row {
                            VersionRow::Pending(p) => CatalogRecord::Pending(p),
                            VersionRow::Version(v) => CatalogRecord::Version(v),
                        })
                    },
                    &send,
                )?;
                export_table(
                    &tx,
                    &format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY issued_at, id"),
                    |r| rows::session(r).map(CatalogRecord::Session),
                    &send,
                )?;
                export_table(
                    &tx,
                    &format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"),
                    |r| rows::audit(r).map(CatalogRecord::Audit),
                    &send,
                )?;
                Ok(())
            })();
            if let Err(e) = result {
                send(Err(e));
            }
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        let (tx_records, mut rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
        let writer = self.write("import", move |tx| {
            let empty: i64 = tx
                .query_row(
                    "SELECT (SELECT count(*) FROM collections) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM audit)",
                    [],
                    |r| r.get(0),
                )
                .map_err(sqlite_error("import"))?;
            if empty != 0 {
                return Err(Error::conflict("import needs an empty catalog"));
            }
            let header = rx.blocking_recv().ok_or_else(|| Error::invalid("catalog snapshot", "it is empty"))??;
            header.check_header()?;
            let mut summary = ImportSummary::default();
            while let Some(record) = rx.blocking_recv() {
                let record = record?;
                summary.count(&record);
                import_record(tx, record)?;
            }
            // Explicit sequence numbers advance AUTOINCREMENT's counter, so new events follow.
            Ok(summary)
        });
        let feeder = async move {
            let mut records = records;
            while let Some(r) = records.next().await {
                if tx_records.send(r).await.is_err() {
                    break; // The writer stopped (an error it reports).
                }
            }
        };
        let (summary, ()) = futures::join!(writer, feeder);
        summary
    }
}

fn export_table(
    tx: &Transaction<'_>,
    sql: &str,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<CatalogRecord>,
    send: &impl Fn(Result<CatalogRecord>) -> bool,
) -> Result<()> {
    let mut st = tx.prepare(sql).map_err(sqlite_error("export"))?;
    let mut rows = st.query([]).map_err(sqlite_error("export"))?;
    while let Some(row) = rows.next().map_err(sqlite_error("export"))? {
        let record = map(row).map_err(sqlite_error("export"))?;
        if !send(Ok(record)) {
            return Ok(()); // The consumer went away.
        }
    }
    Ok(())
}

fn import_record(tx: &Transaction<'_>, record: CatalogRecord) -> Result<()> {
    let bad = |reason: String| Error::invalid("catalog snapshot", reason);
    let op = "import";
    match record {
        CatalogRecord::Header { .. } => return Err(bad("a second header".into())),
        CatalogRecord::Collection { collection: c, next_number } => {
            let spec = serde_json::to_string(&c.spec).map_err(|e| Error::internal(e.to_string()))?;
            tx.execute(
                &format!("INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    c.id.as_str(),
                    spec,
                    micros(c.created_at),
                    micros(c.updated_at),
                    int(c.revision).map_err(sqlite_error(op))?,
                    int(next_number).map_err(sqlite_error(op))?
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) { bad(format!("collection {} twice", c.id)) } else { sqlite_error(op)(e) }
            })?;
        }
        CatalogRecord::Version(v) => {
            let (_, next) = collection_row(tx, &v.collection)
                .map_err(|_| bad(format!("version {} of unknown collection {}", v.number, v.collection)))?;
            if v.number >= next || v.state == VersionState::Pending {
                return Err(bad(format!("version {} of {} is out of sequence", v.number, v.collection)));
            }
            insert_version(tx, &v).map_err(|e| {
                if is_unique_violation(&e) {
                    bad(format!("version {} of {} twice", v.number, v.collection))
                } else {
                    sqlite_error(op)(e)
                }
            })?;
        }
        CatalogRecord::Pending(p) => {
            collection_row(tx, &p.collection)
                .map_err(|_| bad(format!("upload {} of unknown collection {}", p.id, p.collection)))?;
            insert_pending(tx, &p).map_err(sqlite_error(op))?;
        }
        CatalogRecord::Session(s) => {
            insert_session(tx, &s).map_err(|e| {
                if is_unique_violation(&e) { bad("a session twice".into()) } else { sqlite_error(op)(e) }
            })?;
        }
        CatalogRecord::Audit(e) => {
            tx.execute(
                &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    int(e.seq).map_err(sqlite_error(op))?,
                    micros(e.at),
                    e.actor,
                    e.action,
                    e.collection.as_ref().map(|c| c.as_str()),
                    e.version.map(int).transpose().map_err(sqlite_error(op))?,
                    e.detail
                ],
            )
            .map_err(|err| {
                if is_unique_violation(&err) {
                    bad(format!("audit event {} twice", e.seq))
                } else {
                    sqlite_error(op)(err)
                }
            })?;
        }
        _ => return Err(bad("a record of a kind this build does not know".into())),
    }
    Ok(())
}
