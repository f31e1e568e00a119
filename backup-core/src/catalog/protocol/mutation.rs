//! What a decision writes: the [`Mutation`]s a catalog applies, all or nothing.

use crate::audit::{AuditEvent, AuditHead, LogCursor};
use crate::id::{CollectionId, RepositoryId, SessionId, VersionId};
use crate::protocol::state::Counters;
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Tombstone, Version};

/// One write of an atomic step. The decisions of [`crate::protocol`] return them; a catalog
/// applies every mutation of a step in one transaction, in order, and fails the whole step
/// when one cannot be applied.
///
/// Catalogs store; they do not decide. The only checks a catalog makes are those of its
/// keys, reported as the errors named below (a concurrent step can insert the same key
/// between the load and the write).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mutation {
    /// Inserts a collection with [`Counters::empty`].
    /// Fails with [`crate::Error::CollectionExists`] if the id is taken.
    CreateCollection(Collection),
    /// Replaces the stored collection of the same id (spec, revision, updated time).
    UpdateCollection(Collection),
    /// Deletes the collection and every version row of it (committed, pending and trashed
    /// ones are never there when a decision emits this, but a catalog must not care); the
    /// objects of its trashed versions get tombstones recorded at `at`.
    DeleteCollection {
        /// The collection.
        id: CollectionId,
        /// When.
        at: Timestamp,
    },
    /// Stores a collection's counters.
    SetCounters {
        /// The collection.
        collection: CollectionId,
        /// The new values.
        counters: Counters,
    },
    /// Inserts a pending row. Fails with [`crate::Error::AlreadyExists`] if the id is taken.
    InsertPending(PendingUpload),
    /// Replaces a pending row's reservation (`reserved`, `pool_share`), lease and multipart
    /// id (`staging`); the rest of the row never changes. Fails with
    /// [`crate::Error::Conflict`] if the row is not pending any more.
    UpdatePending(PendingUpload),
    /// Deletes a pending row (the upload was released; a tombstone goes with it). Fails with
    /// [`crate::Error::Conflict`] if the row is not pending any more.
    RemovePending(VersionId),
    /// Turns the pending row with the version's id into this committed version. Fails with
    /// [`crate::Error::Conflict`] if that row is not pending any more, or if the number is
    /// taken in the collection.
    CommitVersion(Version),
    /// Replaces the state of an existing (non-pending) version row: state, trash and purge
    /// times, trash reason, protection, lock, verification.
    UpdateVersion(Version),
    /// Inserts a version row that never was pending (an import, a rebuild from the store).
    /// Fails with [`crate::Error::AlreadyExists`] if its id, or its number in its collection,
    /// is taken.
    InsertVersion(Version),
    /// Marks a version (committed, trashed or purged; of this step or an earlier one) as not
    /// described yet: the step changes what its description must say, and the description is
    /// written after the step. `mark` is the value a [`Mutation::ClearUndescribed`] must name
    /// (marking again replaces it). The marked versions are listed by
    /// [`crate::catalog::Catalog::list_undescribed`], from an index, whatever the history.
    MarkUndescribed {
        /// The version.
        id: VersionId,
        /// Its mark ([`crate::protocol::description_mark`]).
        mark: u64,
    },
    /// Clears the mark of a version of `collection` whose description was written, if the
    /// mark is still `mark` (one set again since, by a later change, stays); a version not
    /// marked, or marked otherwise, is not an error.
    ClearUndescribed {
        /// The collection (the step locks it).
        collection: CollectionId,
        /// The version.
        id: VersionId,
        /// The mark it had when its description was read or written.
        mark: u64,
    },
    /// Records that an object is garbage (inserting again replaces the record).
    InsertTombstone(Tombstone),
    /// Forgets the tombstone of an object that is confirmed deleted.
    ForgetTombstone(String),
    /// Registers a session. Fails with [`crate::Error::AlreadyExists`] if the id is taken.
    InsertSession(Session),
    /// Marks a session revoked at this time (a revoked session keeps its first time).
    RevokeSession {
        /// The session.
        id: SessionId,
        /// When.
        at: Timestamp,
    },
    /// Deletes sessions that expired before this time, revoked or not.
    DeleteSessionsExpiredBefore(Timestamp),
    /// Appends an event to the audit log: the catalog chains it to the log's head with
    /// [`AuditEvent::chained`] (the head is the last event's, else the checkpoint's, else
    /// [`AuditHead::GENESIS`]), which assigns its sequence number and hash unless it has them
    /// (an import).
    AppendAudit(AuditEvent),
    /// Deletes the audit events numbered `through` and below, and keeps the head of the last
    /// one deleted as the log's checkpoint, so that the chain stays verifiable from there.
    /// Nothing when no event is that old.
    PruneAudit {
        /// The last sequence number to delete.
        through: u64,
    },
    /// Sets the log's checkpoint (an import of a pruned log, before its first event).
    SetAuditCheckpoint(AuditHead),
    /// Takes a log cursor's lease for `owner` until `until`: creates the cursor after event
    /// `start_at` if there is none; else fails with [`crate::Error::Conflict`] (naming the
    /// holder) unless [`LogCursor::claimable_by`] `owner` at `now`. Seq and state stay.
    ClaimCursor {
        /// The cursor.
        name: String,
        /// The claiming instance.
        owner: String,
        /// Where a new cursor starts.
        start_at: u64,
        /// The time of the claim.
        now: Timestamp,
        /// The lease's end.
        until: Timestamp,
    },
    /// Moves a cursor from `from` to `to` and replaces its state, only if `owner` holds it and
    /// it is still at `from`; else [`crate::Error::Conflict`] (another instance took it over).
    AdvanceCursor {
        /// The cursor.
        name: String,
        /// The instance that holds it.
        owner: String,
        /// Where it must be.
        from: u64,
        /// Where it goes.
        to: u64,
        /// Its new state.
        state: String,
    },
    /// Writes a cursor as it is (an import).
    SetCursor(LogCursor),
    /// Sets the repository id, once: an id already set stays, and a different one fails
    /// with [`crate::Error::Conflict`].
    SetRepository(RepositoryId),
}
