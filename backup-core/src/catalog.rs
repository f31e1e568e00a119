//! The [`Catalog`] trait: durable metadata and the atomic steps of the upload protocol.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::error::Result;
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::{CollectionState, CommitRequest, Committed, ReserveRequest};
use crate::session::{AuditEvent, Session};
use crate::version::{Collection, PendingUpload, Version, VersionSelector};

pub mod memory;
pub mod snapshot;

pub use snapshot::{CatalogRecord, ImportSummary};

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

/// When [`Catalog::abort`] may remove a pending row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortCondition {
    /// Always: the uploader gives up its own upload.
    Always,
    /// Only if the lease has expired at this instant: recovery of an abandoned upload, which
    /// must not race an uploader that just renewed.
    ExpiredAt(DateTime<Utc>),
}

/// What [`Catalog::abort`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortOutcome {
    /// The pending row was removed: its object may be deleted now.
    Released(PendingUpload),
    /// The upload had been committed (a commit whose reply was lost): keep its object.
    Committed(Version),
    /// The pending row's lease is still running (only with [`AbortCondition::ExpiredAt`]).
    StillLive,
    /// No row with that id: nothing refers to its object any more.
    NotFound,
}

/// Durable metadata and the atomic steps of the upload protocol.
///
/// # Contract
///
/// Every method is atomic. [`Catalog::reserve`] and [`Catalog::commit`] load the
/// [`CollectionState`] and apply [`crate::protocol::decide_reservation`] /
/// [`crate::protocol::decide_commit`] *inside one transaction* (or under one lock), so that
/// concurrent callers, including other processes sharing the catalog, are serialised per
/// collection. A commit assigns `next_number` and increments it, turns the pending row into a
/// committed version, trashes the evicted versions with their reasons and, if asked, revokes
/// a single-use session, all or nothing. Numbers are unique per collection.
///
/// Mutating methods that take an [`AuditEvent`] append it in the same transaction.
/// [`crate::conformance::catalog`] checks all of this; every implementation must pass it.
#[async_trait]
pub trait Catalog: Debug + Send + Sync + 'static {
    // ---- collections ----

    /// Creates a collection (next number 1).
    ///
    /// # Errors
    /// [`crate::Error::CollectionExists`] if the id is taken.
    async fn create_collection(&self, collection: &Collection, audit: &AuditEvent) -> Result<()>;

    /// Reads a collection.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`].
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection>;

    /// Lists collections ordered by id, starting after `after`.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>>;

    /// Replaces a collection's spec if its revision is still `expected_revision`; the stored
    /// revision becomes `collection.revision`.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`]; [`crate::Error::Conflict`] if the revision moved.
    async fn update_collection(
        &self,
        collection: &Collection,
        expected_revision: u64,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// Deletes a collection that has no committed, trashed or pending version (purged rows go
    /// with it).
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`]; [`crate::Error::Conflict`] if it is not empty.
    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()>;

    /// A consistent snapshot of a collection: spec, next number, committed versions, pending
    /// uploads.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`].
    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState>;

    // ---- the upload protocol ----

    /// Step 2: reserves space and inserts the pending row, atomically.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`]; whatever
    /// [`crate::protocol::decide_reservation`] refuses.
    async fn reserve(&self, request: &ReserveRequest) -> Result<PendingUpload>;

    /// Extends the lease of a pending upload.
    ///
    /// # Errors
    /// [`crate::Error::Conflict`] if the row is not pending any more.
    async fn renew_lease(&self, id: &VersionId, lease_until: DateTime<Utc>) -> Result<()>;

    /// Step 5: commits a pending upload with its rotation (and single-use session), atomically.
    ///
    /// # Errors
    /// Whatever [`crate::protocol::decide_commit`] refuses; [`crate::Error::Conflict`] if the
    /// single-use session is already revoked or unknown.
    async fn commit(&self, request: &CommitRequest) -> Result<Committed>;

    /// Removes a pending row, if `condition` holds, and reports what it found.
    ///
    /// # Errors
    /// Backend errors only.
    async fn abort(&self, id: &VersionId, condition: AbortCondition) -> Result<AbortOutcome>;

    /// Pending uploads whose lease expired before `now`, oldest first.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_expired_pending(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PendingUpload>>;

    // ---- versions ----

    /// The committed version a selector names.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`], [`crate::Error::VersionNotFound`].
    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version>;

    /// Versions ascending by number.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`].
    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>>;

    /// Trashes a committed version.
    ///
    /// # Errors
    /// [`crate::Error::CollectionNotFound`], [`crate::Error::VersionNotFound`] if no
    /// committed version has that number.
    async fn trash_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Version>;

    /// Trashed versions (of every collection) trashed before `before`, oldest first: those
    /// whose objects are due for deletion.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_trashed(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Version>>;

    /// Marks trashed versions purged and returns the ids it marked: from then on no row refers
    /// to their objects, which may be deleted (a deletion that fails leaves an orphan for
    /// `recover()`). Ids not trashed (restored meanwhile, purged already, unknown) are left
    /// alone and not returned, so an object is never deleted under a restored version.
    ///
    /// # Errors
    /// Backend errors only.
    async fn mark_purged(&self, ids: &[VersionId], now: DateTime<Utc>) -> Result<Vec<VersionId>>;

    /// Makes a trashed version committed again, with its number, if it still fits: the count
    /// and size limits are checked like a commit's ([`crate::protocol::decide_restore`]),
    /// nothing is evicted for it.
    ///
    /// # Errors
    /// [`crate::Error::VersionNotFound`] if no trashed version has that number (purged ones
    /// cannot come back); [`crate::Error::Conflict`] or [`crate::Error::QuotaExceeded`] when it
    /// does not fit.
    async fn restore_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Version>;

    /// Which of these object keys a pending, committed or trashed row refers to.
    ///
    /// # Errors
    /// Backend errors only.
    async fn known_object_keys(&self, keys: &[String]) -> Result<Vec<String>>;

    // ---- sessions and audit ----

    /// Registers a session.
    ///
    /// # Errors
    /// [`crate::Error::AlreadyExists`] if the id is taken (the same token issued twice).
    async fn insert_session(&self, session: &Session) -> Result<()>;

    /// Reads a session.
    ///
    /// # Errors
    /// [`crate::Error::SessionNotFound`].
    async fn get_session(&self, id: &SessionId) -> Result<Session>;

    /// Sessions, newest first, of one user or of everyone.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>>;

    /// Revokes one session (revoking twice keeps the first time) and returns it.
    ///
    /// # Errors
    /// [`crate::Error::SessionNotFound`].
    async fn revoke_session(&self, id: &SessionId, now: DateTime<Utc>, audit: &AuditEvent) -> Result<Session>;

    /// Revokes every active session of a user; returns how many.
    ///
    /// # Errors
    /// Backend errors only.
    async fn revoke_user_sessions(&self, user: &str, now: DateTime<Utc>, audit: &AuditEvent) -> Result<u64>;

    /// Appends an event to the audit log.
    ///
    /// # Errors
    /// Backend errors only.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;

    /// Audit events with a sequence number above `after`, in order.
    ///
    /// # Errors
    /// Backend errors only.
    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>>;

    // ---- snapshots ----

    /// A consistent snapshot of every row, as records: a header, then collections, versions
    /// (pending uploads included), sessions and audit events. Rows written after the call are
    /// not part of it.
    ///
    /// # Errors
    /// Backend errors, at the start or as items of the stream.
    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>>;

    /// Loads a snapshot into this catalog, which must be empty, all or nothing; sequence
    /// numbers and counters are kept.
    ///
    /// # Errors
    /// [`crate::Error::Conflict`] if the catalog is not empty; [`crate::Error::InvalidInput`]
    /// for a snapshot without a valid header, or a version of an unknown collection; errors
    /// of the stream.
    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary>;
}
