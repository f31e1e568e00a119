//! The [`Catalog`] trait: durable metadata, with atomic steps whose rules live in
//! [`crate::protocol`]; and [`CatalogExt`], the steps by name.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId, VersionId};
use crate::protocol::{CollectionQuery, LoadedState, Mutation, StateQuery, VersionRange, VersionsNeeded};
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Tombstone, Version, VersionSelector, VersionState};

mod ext;
pub mod memory;
pub mod snapshot;

pub use crate::protocol::{AbortCondition, AbortOutcome};
pub use ext::CatalogExt;
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
