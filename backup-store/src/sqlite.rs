//! [`SqliteCatalog`]: the embedded default catalog, one SQLite file.

mod apply;
mod audit;
mod catalog;
mod connection;
mod group_commit;
mod rows;
mod schema;
mod snapshot;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::sqlite_error;
use connection::Threads;

const BACKEND: &str = "sqlite catalog";

/// The embedded catalog: one SQLite file in WAL mode, ACID, with nothing else to install.
///
/// Steps run on one writer connection in `BEGIN IMMEDIATE` transactions, so reservations and
/// commits are serialised (also against other processes on the same file, which wait up to a
/// busy timeout); reads use a few reader connections and see a consistent snapshot. Each
/// connection has a thread of its own: the catalog never waits for Tokio's blocking pool.
/// `synchronous = FULL`: a step that returned survives a power loss (except those the
/// protocol marks relaxed, which `recover()` repairs). Steps waiting for the writer are
/// committed together (group commit), each in its own savepoint, so concurrent uploads share
/// syncs.
///
/// ```
/// use backup_core::Engine;
/// use backup_core::catalog::Catalog;
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
    threads: Arc<Threads>,
}

impl SqliteCatalog {
    /// Opens (or creates) the catalog file at `path`, creating its folder, and brings its
    /// schema up to date.
    ///
    /// # Errors
    /// [`Error::Backend`] if the file cannot be opened or was written by a newer build.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sqlite-open".into())
            .spawn(move || {
                let _ = tx.send(Self::open_blocking(path));
            })
            .map_err(|e| Error::backend(ErrorKind::Unavailable, BACKEND, "open", e))?;
        rx.await.map_err(|_| Error::internal("sqlite open: its thread ended without an answer"))?
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
        let mut writer = connection::open_connection(&path)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteCatalog { threads: Arc::new(Threads::start(path, writer)?) })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.threads.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer thread and commits it if it
    /// returns `Ok`: durably, or `relaxed` (not waiting for the disk). Writes waiting for the
    /// writer meanwhile share one transaction (see [`group_commit`]).
    async fn write<T, F>(&self, operation: &'static str, relaxed: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.threads.write(Box::new(group_commit::WriteJob::new(operation, !relaxed, f, reply)))?;
        result.await.map_err(|_| Error::internal(format!("sqlite {operation}: its batch ended without an answer")))?
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a reader thread.
    async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.threads.read(Box::new(move |conn: Result<&mut Connection>| {
            let out = conn.and_then(|conn| {
                let tx =
                    conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(sqlite_error(operation))?;
                let out = f(&tx)?;
                tx.commit().map_err(sqlite_error(operation))?;
                Ok(out)
            });
            let _ = reply.send(out);
        }))?;
        result.await.map_err(|_| Error::internal(format!("sqlite {operation}: the reader ended without an answer")))?
    }
}
