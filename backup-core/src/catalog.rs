//! The [`Catalog`] trait: durable metadata, with atomic steps whose rules live in
//! [`crate::protocol`]; and [`CatalogExt`], the steps by name.
//!
//! # Implementing a catalog
//!
//! A catalog stores rows and makes steps atomic; it decides nothing. The rules (quotas,
//! numbering, rotation, leases, sessions) are the pure decisions of [`crate::protocol`], and
//! [`CatalogExt`] runs every step of the engine through two methods of yours:
//! [`Catalog::transact`] and [`Catalog::load`]. `examples/redb-catalog` in this repository
//! implements the trait on [redb](https://www.redb.org) from this crate's public API alone,
//! in about 1,200 lines, and passes the conformance suites; it is the example this guide
//! refers to.
//!
//! ## What to write
//!
//! `#[backup_core::async_trait] impl Catalog for MyCatalog` (without the attribute rustc
//! says E0195), with 15 methods: [`Catalog::location`], [`Catalog::transact`],
//! [`Catalog::load`], ten reads and listings, [`Catalog::export`] and [`Catalog::import`].
//! [`Catalog::get_collection`] and [`Catalog::get_version`] are provided (a
//! [`Catalog::load`] each); override them if your store answers them more cheaply. Never
//! implement the steps of [`CatalogExt`] yourself: they are the decisions, run by your
//! `transact`. What you need lives in three places: the trait and its types here
//! (`catalog::{Catalog, Decide, KeyClass, PendingFilter, RepositoryInfo, Undescribed,
//! VersionQuery, CatalogRecord, ImportSummary}`), the state and the writes in
//! [`crate::protocol`] (`StateQuery`, `LoadedState`, `CollectionState`, `Counters`,
//! `VersionRange`, `VersionRow`, `Mutation`, `ImportCheck`), the rows at the crate root; and
//! `futures` for the `BoxStream` of `export` and `import`.
//!
//! The shape of it, compiled with this crate (the redb example fills in the storage):
//!
//! ```no_run
//! use backup_core::catalog::{
//!     Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed,
//!     VersionQuery,
//! };
//! use backup_core::catalog::protocol::ImportCheck;
//! use backup_core::catalog::{LoadedState, Mutation, PendingUpload, StateQuery, Tombstone};
//! use backup_core::{AuditEvent, Collection, CollectionId, Error, Result, Session, Timestamp, Version, VersionId};
//! use futures::stream::{BoxStream, TryStreamExt};
//!
//! /// One transaction of your store.
//! struct Tx;
//!
//! impl Tx {
//!     /// What `query` asks for, read in this transaction (see "What a load returns").
//!     fn load(&self, query: &StateQuery) -> Result<LoadedState> { todo!() }
//!     /// One write (see "What each mutation writes").
//!     fn apply(&mut self, m: Mutation) -> Result<()> { todo!() }
//!     /// Whether no row of any kind exists (an import needs that).
//!     fn is_empty(&self) -> Result<bool> { todo!() }
//!     /// Durable when it returns, unless the step was relaxed.
//!     fn commit(self, relaxed: bool) -> Result<()> { todo!() }
//! }
//!
//! #[derive(Debug)]
//! struct MyCatalog;
//!
//! impl MyCatalog {
//!     /// A transaction that keeps what it reads unchanged until it commits (a lock, a
//!     /// single writer, `SELECT … FOR UPDATE`); dropped, it writes nothing.
//!     fn write(&self) -> Result<Tx> { todo!() }
//!     /// A consistent snapshot of committed data.
//!     fn read(&self) -> Result<Tx> { todo!() }
//! }
//!
//! #[backup_core::async_trait]
//! impl Catalog for MyCatalog {
//!     fn location(&self) -> String {
//!         "my catalog /srv/catalog".into()
//!     }
//!
//!     async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
//!         let mut tx = self.write()?; // (a blocking store: all of this in spawn_blocking)
//!         let state = tx.load(&query)?;
//!         for m in decide(&state)? {
//!             tx.apply(m)?; // the first error drops the transaction: nothing is written
//!         }
//!         tx.commit(query.relaxed)
//!     }
//!
//!     async fn load(&self, query: StateQuery) -> Result<LoadedState> {
//!         self.read()?.load(&query)
//!     }
//!
//!     async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
//!         let mut tx = self.write()?;
//!         if !tx.is_empty()? {
//!             return Err(Error::conflict("import needs an empty catalog"));
//!         }
//!         let (mut records, mut check) = (records, ImportCheck::new());
//!         while let Some(record) = records.try_next().await? {
//!             for m in check.record(record)? {
//!                 tx.apply(m)?;
//!             }
//!         }
//!         let (counters, summary) = check.finish()?;
//!         for m in counters {
//!             tx.apply(m)?;
//!         }
//!         tx.commit(false)?;
//!         Ok(summary)
//!     }
//!
//!     // The reads: each from an index, see "The reads".
//!     async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> { todo!() }
//!     async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> { todo!() }
//!     async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> { todo!() }
//!     async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> { todo!() }
//!     async fn list_tombstones(
//!         &self,
//!         collection: Option<&CollectionId>,
//!         after: Option<&str>,
//!         limit: usize,
//!     ) -> Result<Vec<Tombstone>> {
//!         todo!()
//!     }
//!     async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> { todo!() }
//!     async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> { todo!() }
//!     async fn repository(&self) -> Result<RepositoryInfo> { todo!() }
//!     async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> { todo!() }
//!     async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> { todo!() }
//!     async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> { todo!() }
//! }
//! ```
//!
//! ## The rules of a step
//!
//! - **Load under the step's protection.** Nothing the step loads may change between its
//!   load and its commit. Steps on the same collection are serialised, also against other
//!   processes sharing the catalog; so are steps that load the same version rows by id
//!   (`abort`, `renew_lease`, `record_staging`, `mark_purged`) or the same sessions. One
//!   writer at a time (SQLite, redb) is enough; PostgreSQL locks the rows it loads.
//! - **Decide once.** [`Decide`] is an `FnOnce`: a store that retries a transaction on a
//!   serialisation failure cannot run it again, so it must lock instead of retrying.
//! - **Apply in order, all or nothing.** The mutations depend on each other's order (a
//!   version is committed, then marked). A decision's error, or any mutation's, leaves
//!   nothing written: not the audit event before it, not the counters.
//! - **Durable before `Ok`**, unless the query is [`StateQuery::relaxed`] (a reservation, a
//!   renewal, an abort): those may be acknowledged before they are on disk, `recover()`
//!   repairs their loss.
//! - **Reads see committed data only**, and [`Catalog::load`] is one consistent snapshot.
//! - **Never block the runtime**: a synchronous store runs in `tokio::task::spawn_blocking`.
//! - **Bounded by the query, not the history.** Every load and listing below has an index
//!   that answers it in the order asked; a collection of 100,000 versions costs a commit
//!   what one of 10 costs. The redb example keeps an index table per question; the SQL
//!   catalogs an index on `(collection, state, number)` and a few more.
//!
//! ## What a load returns
//!
//! For a [`StateQuery`], a [`LoadedState`] with what exists (a missing collection or row is
//! absent, never an error):
//!
//! - `collection`: its row with the [`crate::protocol::Counters`] stored in it, **every**
//!   pending upload of it (live or expired), the committed versions
//!   [`crate::protocol::VersionsNeeded::resolve`] picks from the row (`Oldest(n)`,
//!   `Newest(n)`, `All`, `None`; ascending by number), and the versions named by number in
//!   any state but pending, ascending, once each;
//! - `versions`: the rows with these ids, pending ones included;
//! - `sessions`: the sessions with these ids, then the active (not revoked) sessions of
//!   `sessions_of` not already listed;
//! - `repository`: the repository id, when asked for and set.
//!
//! ## What each mutation writes
//!
//! As [`Mutation`] documents; the catalog checks keys only, with these errors:
//!
//! - `CreateCollection` with [`crate::protocol::Counters::empty`], or
//!   [`crate::Error::CollectionExists`]; `InsertPending`, `InsertVersion` (its id, or its
//!   number in the collection, whatever the state) and `InsertSession`, or
//!   [`crate::Error::AlreadyExists`];
//! - `CommitVersion`, `UpdatePending`, `RemovePending` on a row that is not pending any more,
//!   and `CommitVersion` on a taken number: [`crate::Error::Conflict`];
//! - `UpdateVersion` changes the listed fields only (state, trash, purge, protection,
//!   verification); `UpdatePending` the reservation, lease and `staging`;
//! - `DeleteCollection` removes every row of the collection, pending ones included, and
//!   their marks, and leaves a tombstone (`Purged`, at the given time) for each trashed one;
//! - `MarkUndescribed` replaces a mark; `ClearUndescribed` clears it only if it still has
//!   that value and the version is of that collection, and never fails;
//! - `InsertTombstone` replaces; `ForgetTombstone` of nothing is fine;
//! - `RevokeSession` keeps the first revocation time; `DeleteSessionsExpiredBefore` deletes
//!   those expiring strictly before;
//! - `AppendAudit` chains the event to the log's head ([`crate::AuditEvent::chained`]: the
//!   last event's, else the checkpoint's) in the step's transaction, and stores its number
//!   and hash; an event with a number (an import) keeps it, and later events follow it. Two
//!   steps that append at once must not chain to the same head: take the head under the
//!   step's write lock (SQLite) or lock a row holding it (PostgreSQL);
//! - `PruneAudit` deletes the events numbered up to `through` and keeps the head of the last
//!   one deleted as the checkpoint; `SetAuditCheckpoint` sets it (before any event);
//! - `ClaimCursor` and `AdvanceCursor` are compare-and-set writes of one cursor row (as their
//!   documentation says), failing with [`crate::Error::Conflict`] when the row does not match;
//!   `SetCursor` replaces;
//! - `SetRepository` of the same id is fine; of another, [`crate::Error::Conflict`] naming
//!   the current one;
//! - a write on a row that should be there and is not is a broken contract
//!   ([`crate::Error::internal`]), and so is a mutation your build does not know:
//!   [`Mutation`] is `#[non_exhaustive]`, so its `match` has a last arm, and that arm fails
//!   the step. Never skip a write.
//!
//! ## The reads
//!
//! - `list_collections`: by id, strictly after `after`.
//! - `list_versions`: ascending by number, strictly after `query.after` (`u64::MAX`: none),
//!   committed ones (and trashed ones with `include_trashed`; never pending or purged);
//!   [`crate::Error::CollectionNotFound`] for a missing collection.
//! - `list_pending`: by lease end, then id; `expired_at` keeps leases ending **at or before**
//!   it, `owner` those of that engine instance.
//! - `list_trashed`: trashed strictly before `before`, oldest first (then by id), every
//!   collection.
//! - `list_tombstones`: by object key, strictly after `after`, of one collection or of all.
//! - `list_undescribed`: the marked versions by id, strictly after `after`, each with its
//!   mark, from an index of the marks.
//! - `classify_object_keys`: in the order given, [`KeyClass::Live`] if a pending, committed or
//!   trashed row has the key, else [`KeyClass::Garbage`] if a purged row or a tombstone does,
//!   else [`KeyClass::Unknown`].
//! - `repository`: the id, and whether any version row (pending included) exists.
//! - `list_sessions`: newest first (then by id), revoked ones included, of one user or all.
//! - `list_audit`: sequence numbers strictly above `after`, in order, each with its hash.
//! - `audit_checkpoint`: the head kept by the last `PruneAudit` (or an import).
//! - `audit_head`: the last event's number and hash, else the checkpoint's.
//! - `list_cursors`: every cursor, by name.
//! - `export`: the snapshot **of the moment of the call** (pin it before returning the
//!   stream): a header, the repository id, collections with their next number, versions
//!   (a collection's after its record), tombstones, sessions, audit events.
//! - `import`: into an empty catalog only (no row of any kind, no repository id), else
//!   [`crate::Error::Conflict`]; each record through [`crate::protocol::ImportCheck`], its
//!   mutations applied, then those of its `finish`, in one transaction; an error of the
//!   stream or of the check leaves the catalog empty.
//!
//! ## Pitfalls met writing the redb catalog
//!
//! - redb loads outside the write transaction's tables (a read transaction begun after
//!   `begin_write`): right only because redb has a single writer, so nothing else commits
//!   until this step does. With several writers, load inside the transaction.
//! - A row that changes moves in its indexes: a trashed version leaves the committed range
//!   and enters the trash order, a renewed lease moves in the lease order. Remove the old
//!   row's index entries before adding the new one's.
//! - Numbers go up to [`crate::MAX_VERSION_NUMBER`], and a query may name any `u64`: an
//!   impossible number is "not found", never a conversion error (the SQL catalogs store
//!   `i64`).
//! - The edges of time: a lease ending exactly at `expired_at` is expired; trashed and
//!   expired-before are strict.
//! - An export reads while its consumer is slow: pin the snapshot before returning the
//!   stream, and release it before the stream ends, or a caller that closes the catalog
//!   after reading finds it still open.
//! - `Mutation`, `VersionRow` and `VersionRange` are `#[non_exhaustive]`: their last arms
//!   must fail, not ignore.
//! - Storing version rows as their [`CatalogRecord`]s (JSON) makes an export a copy of the
//!   stored bytes, and leaves no column mapping to get wrong.
//!
//! ## Running the conformance suites from your crate
//!
//! Every catalog must pass `backup_core::conformance` (feature `conformance`). With
//! `backup-core = { …, features = ["conformance"] }` and tokio's `rt-multi-thread` as
//! dev-dependencies, a test file expands the catalog suite's list into one test per check
//! (each on fresh catalogs from a factory of yours), runs the engine's suite with your
//! catalog, and the disaster-recovery suite's checks with fresh catalogs of yours:
//!
//! ```ignore
//! fn fresh() -> BoxFuture<'static, Arc<dyn Catalog>> {
//!     Box::pin(async { Arc::new(MyCatalog::open_new().await.unwrap()) as Arc<dyn Catalog> })
//! }
//!
//! macro_rules! catalog_checks {
//!     ($($check:ident: $kind:ident),* $(,)?) => {$(
//!         #[tokio::test(flavor = "multi_thread")]
//!         async fn $check() {
//!             backup_core::conformance::catalog::check(stringify!($check)).run(&fresh).await;
//!         }
//!     )*};
//! }
//! backup_core::for_each_catalog_check!(catalog_checks);
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn engine_suite() {
//!     let store = Arc::new(backup_core::object_store::memory::InMemory::new());
//!     backup_core::conformance::engine::run_all_with(store.clone(), Some(store), fresh().await).await;
//! }
//!
//! macro_rules! recovery_checks {
//!     ($($check:ident),* $(,)?) => {$(
//!         #[tokio::test(flavor = "multi_thread")]
//!         async fn $check() {
//!             let store = Arc::new(backup_core::object_store::memory::InMemory::new());
//!             backup_core::conformance::recovery::$check(store, &fresh).await;
//!         }
//!     )*};
//! }
//! backup_core::for_each_recovery_check!(recovery_checks);
//! ```
//!
//! A check added to a suite then runs on your catalog with a name of its own; the redb
//! example's `tests/conformance.rs` is this file, whole.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId, VersionId};
use crate::protocol::{CollectionQuery, VersionRange, VersionsNeeded};
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, Version, VersionSelector, VersionState};

mod ext;
pub mod memory;
pub mod protocol;
pub mod snapshot;

pub use crate::version::{PendingUpload, Tombstone, TombstoneKind};
pub use ext::CatalogExt;
pub use protocol::{AbortCondition, AbortOutcome, LoadedState, Mutation, StateQuery, VersionRow};
pub use snapshot::{CatalogRecord, ImportSummary};

/// A decision run inside [`Catalog::transact`]: reads the loaded state, returns the writes.
pub type Decide = Box<dyn FnOnce(&LoadedState) -> Result<Vec<Mutation>> + Send>;

/// Which versions a listing returns, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionQuery {
    /// Only versions with a number greater than this (the cursor of the previous page).
    pub after: Option<u64>,
    /// At most this many.
    pub limit: usize,
    /// Also trashed versions (purged ones never).
    pub include_trashed: bool,
}

impl VersionQuery {
    /// The first `limit` committed versions.
    pub fn first(limit: usize) -> Self {
        VersionQuery { after: None, limit, include_trashed: false }
    }

    /// Continues after version `number`.
    pub fn after(mut self, number: u64) -> Self {
        self.after = Some(number);
        self
    }

    /// Includes trashed versions.
    pub fn with_trashed(mut self) -> Self {
        self.include_trashed = true;
        self
    }
}

impl Default for VersionQuery {
    fn default() -> Self {
        VersionQuery::first(100)
    }
}

/// Which pending uploads [`Catalog::list_pending`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PendingFilter {
    /// Only those whose lease expired at or before this time.
    pub expired_at: Option<Timestamp>,
    /// Only those of this engine instance.
    pub owner: Option<String>,
}

impl PendingFilter {
    /// Pending uploads whose lease expired at `now`.
    pub fn expired_at(now: Timestamp) -> Self {
        PendingFilter { expired_at: Some(now), owner: None }
    }

    /// Pending uploads of an engine instance.
    pub fn owned_by(owner: impl Into<String>) -> Self {
        PendingFilter { expired_at: None, owner: Some(owner.into()) }
    }
}

/// What the catalog knows of an object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyClass {
    /// A pending, committed or trashed version refers to it: it must stay.
    Live,
    /// A tombstone or a purged version says it is the catalog's garbage: it may be deleted.
    Garbage,
    /// Nothing refers to it: not this catalog's; reported, never deleted.
    Unknown,
}

/// A version whose description is not written yet for its current record (see
/// [`crate::protocol::Mutation::MarkUndescribed`]), with its mark.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undescribed {
    /// The version as the catalog holds it.
    pub version: Version,
    /// The mark to name when clearing it.
    pub mark: u64,
}

impl Undescribed {
    /// From its parts (for catalog implementations).
    pub fn new(version: Version, mark: u64) -> Self {
        Undescribed { version, mark }
    }
}

/// The catalog's repository identity, and whether it holds any version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepositoryInfo {
    /// The repository id, once set.
    pub id: Option<RepositoryId>,
    /// Whether any version row exists (pending, committed, trashed or purged).
    pub holds_versions: bool,
}

impl RepositoryInfo {
    /// From its parts (for catalog implementations).
    pub fn new(id: Option<RepositoryId>, holds_versions: bool) -> Self {
        RepositoryInfo { id, holds_versions }
    }
}

/// Durable metadata, and the atomic steps of the upload protocol.
///
/// # What an implementation provides
///
/// Storage and atomicity, not rules. Every step of the engine (reserve, commit, delete a
/// version, revoke a session, …) is a [`StateQuery`] and a decision from
/// [`crate::protocol`]; [`Catalog::transact`] runs it:
///
/// 1. in one transaction (or under one lock), load what the query asks for, locking it so
///    that it cannot change until step 3: the collection row with its
///    [`crate::protocol::Counters`], its pending uploads and the committed versions
///    [`crate::protocol::VersionsNeeded::resolve`] chooses; rows and sessions by id; the
///    repository id;
/// 2. call `decide` exactly once with that [`LoadedState`];
/// 3. apply the [`Mutation`]s it returns, in order, all or nothing, durably before returning
///    `Ok`; if `decide` fails, or a mutation cannot be applied, write nothing and return the
///    error.
///
/// Steps on the same collection must be serialised (also against other processes sharing
/// the catalog); steps on different collections may run in parallel. The reads below see
/// committed data only. [`CatalogExt`] gives every step a name; `conformance::catalog`
/// (feature `conformance`) checks all of this, and every implementation must pass it.
///
/// Implementations are `#[async_trait]`: an implementation outside this crate writes
/// `#[backup_core::async_trait] impl Catalog for MyCatalog { … }`.
#[async_trait]
pub trait Catalog: Debug + Send + Sync + 'static {
    /// Where it lives, for messages that must name it (`sqlite catalog /srv/catalog.db`).
    fn location(&self) -> String;

    /// Runs one atomic step: load, decide, apply (see the trait's documentation).
    ///
    /// # Errors
    /// The decision's error, or the key errors a [`Mutation`] names; backend errors.
    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()>;

    /// Loads what `query` asks for, as one consistent snapshot, without locking.
    ///
    /// # Errors
    /// Backend errors only (a missing collection is `None` in the state).
    async fn load(&self, query: StateQuery) -> Result<LoadedState>;

    /// Reads a collection.
    ///
    /// Provided: a [`Catalog::load`] of the collection (which reads its pending uploads too);
    /// a catalog may override it to read the collection row alone.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`].
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        let query = StateQuery::collection(CollectionQuery::new(id.clone())).with_label("get_collection");
        let state = self.load(query).await?.collection;
        state.map(|c| c.collection).ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
    }

    /// Lists collections ordered by id, starting after `after`.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>>;

    /// The committed version a selector names.
    ///
    /// Provided: a [`Catalog::load`] of the newest committed version, or of the version by
    /// number (which reads the collection's row and pending uploads too); a catalog may
    /// override it to read its index alone.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`], [`crate::Error::VersionNotFound`].
    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let query = CollectionQuery::new(collection.clone());
        let query = match selector {
            VersionSelector::Latest => query.with_committed(VersionsNeeded::Range(VersionRange::Newest(1))),
            VersionSelector::Number(n) => query.with_numbers([n]),
        };
        let state = self.load(StateQuery::collection(query).with_label("get_version")).await?.collection;
        let state = state.ok_or_else(|| Error::CollectionNotFound { collection: collection.clone() })?;
        let found = match selector {
            VersionSelector::Latest => state.committed.into_iter().next_back(),
            VersionSelector::Number(n) => {
                state.by_number.into_iter().find(|v| v.number == n && v.state == VersionState::Committed)
            }
        };
        found.ok_or_else(|| Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
    }

    /// Versions ascending by number, from an index (never a scan of the history).
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`].
    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>>;

    /// Pending uploads matching `filter`, by lease end then id.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>>;

    /// Trashed versions (of every collection) trashed before `before`, oldest first: those
    /// whose objects are due for deletion.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>>;

    /// Tombstones ordered by object key, after `after`, of one collection or of all.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_tombstones(
        &self,
        collection: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>>;

    /// Versions marked as not described yet ([`crate::protocol::Mutation::MarkUndescribed`]),
    /// of every collection and in any state but pending, ordered by id, after `after`: from
    /// an index of the marked versions, never a scan of the history.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>>;

    /// What the catalog knows of each key, in the order given.
    ///
    /// # Errors
    /// Backend errors only.
    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>>;

    /// The repository id and whether any version row exists.
    ///
    /// # Errors
    /// Backend errors only.
    async fn repository(&self) -> Result<RepositoryInfo>;

    /// Sessions, newest first, of one user or of everyone.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>>;

    /// Audit events with a sequence number above `after`, in order.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>>;

    /// The head of the audit events pruned so far ([`protocol::Mutation::PruneAudit`]), from
    /// which the chain of those that are left is checked; `None` before any pruning. A catalog
    /// that never applies `PruneAudit` (its `match` refuses mutations it does not know) keeps
    /// the default.
    ///
    /// # Errors
    /// Backend errors only.
    async fn audit_checkpoint(&self) -> Result<Option<crate::audit::AuditHead>> {
        Ok(None)
    }

    /// The audit log's head: its last event's number and hash, else the checkpoint, else
    /// [`crate::audit::AuditHead::GENESIS`]. The default reads the log from the checkpoint;
    /// catalogs answer from an index.
    ///
    /// # Errors
    /// Backend errors only.
    async fn audit_head(&self) -> Result<crate::audit::AuditHead> {
        let mut head = self.audit_checkpoint().await?.unwrap_or(crate::audit::AuditHead::GENESIS);
        loop {
            let page = self.list_audit(Some(head.seq), 1000).await?;
            if let Some(last) = page.last() {
                head = last.head()?;
            }
            if page.len() < 1000 {
                return Ok(head);
            }
        }
    }

    /// Every log cursor, by name ([`protocol::Mutation::ClaimCursor`]); empty for a catalog
    /// that never applies cursor mutations (the default).
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_cursors(&self) -> Result<Vec<crate::audit::LogCursor>> {
        Ok(Vec::new())
    }

    /// A consistent snapshot of every row, as records: a header, the repository id, then
    /// collections, versions (pending uploads included), tombstones, sessions and audit
    /// events. Rows written after the call are not part of it.
    ///
    /// # Errors
    /// Backend errors, at the start or as items of the stream.
    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>>;

    /// Loads a snapshot into this catalog, which must be empty, all or nothing, checking it
    /// with [`crate::protocol::ImportCheck`]; sequence numbers and counters are kept.
    ///
    /// # Errors
    /// [`crate::Error::Conflict`] if the catalog is not empty; [`crate::Error::InvalidInput`]
    /// for what the check refuses; errors of the stream.
    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary>;
}
