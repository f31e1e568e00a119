//! A [`Catalog`] on [redb](https://www.redb.org), an embedded key-value store: the example of
//! a third-party catalog that `backup_core::catalog`'s guide ("Implementing a catalog")
//! points to. It uses `backup-core`'s public API only, and passes its conformance suites
//! (`tests/conformance.rs`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::Engine;
//! use backup_redb_catalog::RedbCatalog;
//!
//! # async fn run() -> backup_core::Result<()> {
//! let catalog = RedbCatalog::open("/srv/backups/catalog.redb").await?;
//! let engine = Engine::builder()
//!     .catalog(Arc::new(catalog))
//!     .store(Arc::new(backup_core::object_store::memory::InMemory::new()))
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! How it maps the trait onto redb:
//!
//! - **Atomicity.** A step ([`Catalog::transact`]) is one redb write transaction: the state
//!   is loaded, the decision runs once, its mutations are applied, and the transaction commits,
//!   or it is dropped and nothing is written. redb has one writer at a time, which serialises
//!   every step (those on one collection included), also against other processes: redb locks
//!   the file.
//! - **Reads see committed data only**: each read is one redb read transaction, a consistent
//!   snapshot.
//! - **Bounded loads.** Rows are JSON (versions as their snapshot records) in tables keyed by
//!   id; every question has an index table whose key order answers it
//!   (`(collection, state, number)` for the oldest or newest committed versions,
//!   `(lease end, id)` for expired uploads, …), so a load or a listing costs what it returns,
//!   not the history. See `tables.rs`.
//! - **Blocking calls** run on tokio's blocking threads (`spawn_blocking`).
//! - **Durability.** A step whose query is [`StateQuery::relaxed`] commits with
//!   [`redb::Durability::None`] (made durable by the next durable commit); every other step
//!   is on disk when it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::catalog::protocol::{LoadedState, StateQuery};
use backup_core::catalog::{
    Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery,
};
use backup_core::catalog::{PendingUpload, Tombstone};
use backup_core::{AuditEvent, Collection, CollectionId, Error, Result, Session, Timestamp, Version, VersionId};
use futures::stream::BoxStream;
use redb::{Database, Durability, ReadTransaction, ReadableDatabase};

mod read;
mod snapshot;
mod tables;
mod write;

use tables::{BACKEND, Res};
use write::Writer;

/// A catalog in one redb database file.
#[derive(Debug, Clone)]
pub struct RedbCatalog {
    db: Arc<Database>,
    path: PathBuf,
}

/// Runs blocking redb calls on a blocking thread, naming `operation` in its errors.
pub(crate) async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> Res<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("{BACKEND} {operation}: {e}")))?
        .map_err(|f| f.into_error(operation))
}

fn label(query: &StateQuery, default: &'static str) -> &'static str {
    if query.label.is_empty() { default } else { query.label }
}

impl RedbCatalog {
    /// Opens the catalog in `path`, creating the file and its tables if needed.
    ///
    /// # Errors
    /// The file cannot be opened or created, is open in another process, is not a redb
    /// database, or holds a layout this build does not know.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = path.clone();
        let db = blocking("open", move || {
            let db = Database::create(&file)?;
            let tx = db.begin_write()?;
            Writer::open(&tx)?.check_format()?;
            tx.commit()?;
            Ok(db)
        })
        .await?;
        Ok(RedbCatalog { db: Arc::new(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Res<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        blocking(operation, move || f(&db.begin_read()?)).await
    }
}

#[backup_core::async_trait]
impl Catalog for RedbCatalog {
    fn location(&self) -> String {
        format!("{BACKEND} {}", self.path.display())
    }

    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
        let db = self.db.clone();
        blocking(label(&query, "transact"), move || {
            let mut tx = db.begin_write()?;
            if query.relaxed {
                tx.set_durability(Durability::None)?;
            }
            // redb has one writer at a time: from `begin_write` to `commit` nothing else is
            // committed, so a read transaction begun now sees exactly the state this step
            // starts from (it has written nothing yet).
            let state = read::load(&db.begin_read()?, &query)?;
            let mutations = decide(&state)?;
            {
                let mut writer = Writer::open(&tx)?;
                for m in mutations {
                    writer.apply(m)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn load(&self, query: StateQuery) -> Result<LoadedState> {
        self.read(label(&query, "load"), move |tx| read::load(tx, &query)).await
    }

    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        let after = after.map(|a| a.as_str().to_owned());
        self.read("list collections", move |tx| read::list_collections(tx, after.as_deref(), limit)).await
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let (collection, query) = (collection.clone(), *query);
        self.read("list versions", move |tx| read::list_versions(tx, &collection, &query)).await
    }

    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> {
        let filter = filter.clone();
        self.read("list pending", move |tx| read::list_pending(tx, &filter, limit)).await
    }

    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> {
        self.read("list trashed", move |tx| read::list_trashed(tx, before, limit)).await
    }

    async fn list_tombstones(
        &self,
        collection: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let (collection, after) = (collection.cloned(), after.map(str::to_owned));
        self.read("list tombstones", move |tx| read::list_tombstones(tx, collection.as_ref(), after.as_deref(), limit))
            .await
    }

    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> {
        self.read("list undescribed", move |tx| read::list_undescribed(tx, after, limit)).await
    }

    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> {
        let keys = keys.to_vec();
        self.read("classify object keys", move |tx| read::classify_object_keys(tx, &keys)).await
    }

    async fn repository(&self) -> Result<RepositoryInfo> {
        self.read("repository", read::repository).await
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let user = user.map(str::to_owned);
        self.read("list sessions", move |tx| read::list_sessions(tx, user.as_deref(), limit)).await
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        self.read("list audit", move |tx| read::list_audit(tx, after, limit)).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<backup_core::audit::AuditHead>> {
        self.read("audit checkpoint", |tx| read::audit_checkpoint(&tx.open_table(tables::META)?)).await
    }

    async fn audit_head(&self) -> Result<backup_core::audit::AuditHead> {
        self.read("audit head", read::audit_head).await
    }

    async fn list_cursors(&self) -> Result<Vec<backup_core::audit::LogCursor>> {
        self.read("list log cursors", read::list_cursors).await
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        snapshot::export(self.db.clone()).await
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        snapshot::import(self.db.clone(), records).await
    }
}
