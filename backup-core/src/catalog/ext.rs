//! [`CatalogExt`]: every step of the protocol by name, built on [`Catalog::transact`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::audit::AuditEvent;
use crate::catalog::{Catalog, VersionQuery};
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId, SessionId, VersionId};
use crate::protocol::{
    self, AbortCondition, AbortOutcome, CollectionChange, CollectionQuery, CollectionState, CommitRequest, Committed,
    Decision, GrowRequest, Growth, LoadedState, ReserveRequest, StateQuery, VersionsNeeded,
};
use crate::rotation::RotationStrategies;
use crate::session::Session;
use crate::spec::CollectionSpec;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Version};

/// The steps of the protocol by name, for every [`Catalog`]: each one a [`StateQuery`] and a
/// decision of [`crate::protocol`], run by [`Catalog::transact`].
///
/// ```
/// use backup_core::catalog::{CatalogExt, VersionQuery};
/// use backup_core::{AuditEvent, Collection, CollectionSpec, Limits, MemoryCatalog, Timestamp};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let catalog = MemoryCatalog::new();
/// let now = Timestamp::UNIX_EPOCH;
/// let c = Collection::new("db".parse()?, CollectionSpec::new("db-${version}", Limits::new(2, 10, 30)?), now);
/// let rules = backup_core::catalog::protocol::SpecRules::default();
/// catalog.create_collection(&c, &rules, &AuditEvent::new(now, "me", "collection.create")).await?;
/// assert_eq!(catalog.collection_state(&c.id).await?.counters.next_number, 1);
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait CatalogExt: Catalog {
    /// Runs `decide` in [`Catalog::transact`] and returns its output once applied.
    ///
    /// # Errors
    /// As [`Catalog::transact`].
    async fn step<T, F>(&self, query: StateQuery, decide: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&LoadedState) -> Result<Decision<T>> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.transact(
            query,
            Box::new(move |state| {
                let decision = decide(state)?;
                *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision.output);
                Ok(decision.mutations)
            }),
        )
        .await?;
        let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        value.ok_or_else(|| Error::internal(format!("catalog {} applied a step without deciding it", self.location())))
    }

    /// A collection, its counters and pending uploads, and the committed versions asked for.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; backend errors.
    async fn collection_state_with(&self, id: &CollectionId, committed: VersionsNeeded) -> Result<CollectionState> {
        let query = StateQuery::collection(CollectionQuery::new(id.clone()).with_committed(committed))
            .with_label("collection_state");
        self.load(query).await?.collection.ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
    }

    /// Every collection ordered by id, `page` at a time (listings, scrubs and rebuilds walk
    /// them this way). The stream ends after the last page; an error ends it.
    fn collection_pages(&self, page: usize) -> BoxStream<'_, Result<Vec<Collection>>> {
        let page = page.max(1);
        futures::stream::try_unfold(Some(None::<CollectionId>), move |cursor| async move {
            let Some(after) = cursor else { return Ok(None) };
            let items = self.list_collections(after.as_ref(), page).await?;
            let next = if items.len() == page { items.last().map(|c| Some(c.id.clone())) } else { None };
            Ok((!items.is_empty()).then_some((items, next)))
        })
        .boxed()
    }

    /// A collection's versions as `query` selects them, `query.limit` at a time, ascending by
    /// number. The stream ends after the last page; an error ends it.
    fn version_pages<'a>(&'a self, id: &'a CollectionId, query: VersionQuery) -> BoxStream<'a, Result<Vec<Version>>> {
        let query = VersionQuery { limit: query.limit.max(1), ..query };
        futures::stream::try_unfold(Some(query), move |next| async move {
            let Some(query) = next else { return Ok(None) };
            let items = self.list_versions(id, &query).await?;
            let next = if items.len() == query.limit { items.last().map(|v| query.after(v.number)) } else { None };
            Ok((!items.is_empty()).then_some((items, next)))
        })
        .boxed()
    }

    /// A collection, its counters and its pending uploads.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; backend errors.
    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState> {
        self.collection_state_with(id, VersionsNeeded::Nothing).await
    }

    /// Creates a collection whose spec `rules` accept.
    ///
    /// # Errors
    /// [`Error::CollectionExists`]; [`Error::InvalidSpec`].
    async fn create_collection(
        &self,
        collection: &Collection,
        rules: &protocol::SpecRules,
        audit: &AuditEvent,
    ) -> Result<Collection> {
        let (c, rules, audit) = (collection.clone(), rules.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.id.clone()));
        self.step(query.with_label("create_collection"), move |s| {
            protocol::decide_create_collection(s, &c, &rules, &audit)
        })
        .await
    }

    /// Changes a collection's spec if its revision is still `expected_revision` (when
    /// given), or creates it with `create` (a manifest sync); `bypass` says whether a
    /// governance lock policy may be weakened.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`] (unless `create`); [`Error::Conflict`] if the revision
    /// moved; [`Error::InvalidSpec`] for a spec `rules` refuse; [`Error::Locked`] for a
    /// change that weakens a lock policy.
    #[allow(clippy::too_many_arguments)]
    async fn update_collection(
        &self,
        id: &CollectionId,
        spec: &CollectionSpec,
        expected_revision: Option<u64>,
        create: bool,
        rules: &protocol::SpecRules,
        bypass: protocol::LockBypass,
        audit: &AuditEvent,
    ) -> Result<CollectionChange> {
        let (id2, spec2, rules, audit) = (id.clone(), spec.clone(), rules.clone(), audit.clone());
        let query =
            StateQuery::collection(CollectionQuery::new(id.clone()).with_committed(protocol::update_needs(spec)));
        self.step(query.with_label("update_collection"), move |s| {
            if create && expected_revision.is_none() {
                protocol::decide_put_collection(s, &id2, &spec2, audit.at, &rules, bypass, &audit)
            } else {
                protocol::decide_update_collection(s, &id2, &spec2, expected_revision, &rules, bypass, &audit)
            }
        })
        .await
    }

    /// Deletes an empty collection; the objects of its trashed versions get tombstones.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; [`Error::Conflict`] if it is not empty.
    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()> {
        let (id2, audit) = (id.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(id.clone()));
        self.step(query.with_label("delete_collection"), move |s| protocol::decide_delete_collection(s, &id2, &audit))
            .await
    }

    /// Step 2: reserves space and inserts the pending row.
    ///
    /// # Errors
    /// As [`protocol::decide_reservation`].
    async fn reserve(&self, request: &ReserveRequest, strategies: &Arc<RotationStrategies>) -> Result<PendingUpload> {
        let (req, strategies) = (request.clone(), strategies.clone());
        let query = StateQuery::collection(
            CollectionQuery::new(req.collection.clone()).with_committed(protocol::retention_needs(strategies.clone())),
        );
        self.step(query.with_label("reserve").relaxed(), move |s| protocol::decide_reservation(s, &req, &strategies))
            .await
    }

    /// Grows the reservation of an upload of unknown size to cover the bytes it received.
    ///
    /// # Errors
    /// As [`protocol::decide_growth`].
    async fn grow_reservation(&self, request: &GrowRequest, strategies: &Arc<RotationStrategies>) -> Result<Growth> {
        let (req, strategies) = (request.clone(), strategies.clone());
        let mut query = StateQuery::collection(
            CollectionQuery::new(req.collection.clone()).with_committed(protocol::retention_needs(strategies.clone())),
        );
        query.versions.push(req.id);
        self.step(query.with_label("grow_reservation").relaxed(), move |s| {
            protocol::decide_growth(s, &req, &strategies)
        })
        .await
    }

    /// Records the store's id of the multipart upload writing a live upload's object.
    ///
    /// # Errors
    /// As [`protocol::decide_staging`].
    async fn record_staging(&self, id: &VersionId, staging: &str, now: Timestamp) -> Result<PendingUpload> {
        let (id, staging) = (*id, staging.to_owned());
        self.step(StateQuery::versions([id]).with_label("record_staging").relaxed(), move |s| {
            protocol::decide_staging(s, &id, staging, now)
        })
        .await
    }

    /// Extends the lease of a pending upload, for its owner: a live one, or one that ran out
    /// by the clock while its room is still free ([`protocol::decide_renewal`]).
    ///
    /// # Errors
    /// [`Error::Conflict`] if it is not pending any more, or its lease expired and its room
    /// went to other uploads.
    async fn renew_lease(&self, id: &VersionId, lease_until: Timestamp, now: Timestamp) -> Result<PendingUpload> {
        let id = *id;
        let first = self
            .step(StateQuery::versions([id]).with_label("renew_lease").relaxed(), move |s| {
                protocol::decide_renewal(s, &id, lease_until, now)
            })
            .await?;
        let collection = match first {
            protocol::Renewal::Renewed(p) => return Ok(*p),
            protocol::Renewal::NeedsCollection(c) => c,
        };
        // A lease that ran out by the clock (a rare path: after a step of the wall clock):
        // asked again with its collection, whose room decides.
        let mut query = StateQuery::collection(CollectionQuery::new(collection));
        query.versions.push(id);
        match self
            .step(query.with_label("renew_lease").relaxed(), move |s| {
                protocol::decide_renewal(s, &id, lease_until, now)
            })
            .await?
        {
            protocol::Renewal::Renewed(p) => Ok(*p),
            protocol::Renewal::NeedsCollection(c) => {
                Err(Error::conflict(format!("upload {id}: its collection {c} is gone, its lease cannot be renewed")))
            }
        }
    }

    /// Step 5: commits a pending upload with its rotation (and sessions).
    ///
    /// # Errors
    /// As [`protocol::decide_commit`].
    async fn commit(&self, request: &CommitRequest, strategies: &Arc<RotationStrategies>) -> Result<Committed> {
        let (req, strategies) = (request.clone(), strategies.clone());
        let sessions = req.consume_session.iter().chain(&req.require_session).cloned().collect::<Vec<_>>();
        let query = StateQuery::collection(
            CollectionQuery::new(req.collection.clone()).with_committed(protocol::retention_needs(strategies.clone())),
        )
        .with_sessions(sessions);
        let mut query = query;
        query.versions.push(req.id);
        self.step(query.with_label("commit"), move |s| protocol::decide_commit(s, &req, &strategies)).await
    }

    /// Removes a pending row if `condition` holds, recording a tombstone for its object.
    ///
    /// # Errors
    /// Backend errors only.
    async fn abort(&self, id: &VersionId, condition: AbortCondition, now: Timestamp) -> Result<AbortOutcome> {
        let id = *id;
        self.step(StateQuery::versions([id]).with_label("abort").relaxed(), move |s| {
            protocol::decide_abort(s, &id, condition, now)
        })
        .await
    }

    /// Deletes a committed version: trashed, or purged at once with `purge`; `bypass` says
    /// whether a governance lock gives way.
    ///
    /// # Errors
    /// As [`protocol::decide_trash`].
    async fn trash_version(
        &self,
        collection: &CollectionId,
        number: u64,
        reason: &str,
        purge: bool,
        bypass: protocol::LockBypass,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let (c, reason, audit) = (collection.clone(), reason.to_owned(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers([number]));
        self.step(query.with_label("trash_version"), move |s| {
            protocol::decide_trash(s, &c, number, &reason, purge, bypass, &audit)
        })
        .await
    }

    /// Brings a trashed version back, if it fits.
    ///
    /// # Errors
    /// As [`protocol::decide_restore`].
    async fn restore_version(&self, collection: &CollectionId, number: u64, audit: &AuditEvent) -> Result<Version> {
        let (c, audit) = (collection.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers([number]));
        self.step(query.with_label("restore_version"), move |s| protocol::decide_restore(s, &c, number, &audit)).await
    }

    /// Changes a committed version's protection (a hold, a deadline, or their release).
    ///
    /// # Errors
    /// As [`protocol::decide_protect`].
    async fn protect_version(
        &self,
        collection: &CollectionId,
        number: u64,
        change: protocol::ProtectionChange,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let (c, audit) = (collection.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers([number]))
            .with_label("protect_version");
        self.step(query, move |s| protocol::decide_protect(s, &c, number, change, &audit)).await
    }

    /// Lengthens a committed version's lock to `until` (or locks it), in `mode` or the mode
    /// it has.
    ///
    /// # Errors
    /// As [`protocol::decide_lock`].
    async fn lock_version(
        &self,
        collection: &CollectionId,
        number: u64,
        until: Timestamp,
        mode: Option<crate::LockMode>,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let (c, audit) = (collection.clone(), audit.clone());
        let query =
            StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers([number])).with_label("lock_version");
        self.step(query, move |s| protocol::decide_lock(s, &c, number, until, mode, &audit)).await
    }

    /// Applies what time alone changes in a collection: expired protection deadlines, and the
    /// retention plan without an incoming upload; returns the versions it evicted.
    ///
    /// # Errors
    /// As [`protocol::decide_apply_retention`].
    async fn apply_retention(
        &self,
        collection: &CollectionId,
        strategies: &Arc<RotationStrategies>,
        purge: bool,
        audit: &AuditEvent,
    ) -> Result<Vec<Version>> {
        let (c, strategies, audit) = (collection.clone(), strategies.clone(), audit.clone());
        let all = VersionsNeeded::Range(protocol::VersionRange::All);
        let query =
            StateQuery::collection(CollectionQuery::new(c.clone()).with_committed(all)).with_label("apply_retention");
        self.step(query, move |s| protocol::decide_apply_retention(s, &c, &strategies, purge, &audit)).await
    }

    /// Marks the trashed versions among `ids` purged, with tombstones; returns those marked.
    ///
    /// # Errors
    /// Backend errors only.
    async fn mark_purged(&self, ids: &[VersionId], now: Timestamp) -> Result<Vec<Version>> {
        let ids = ids.to_vec();
        self.step(StateQuery::versions(ids.clone()).with_label("mark_purged"), move |s| {
            protocol::decide_purge(s, &ids, now)
        })
        .await
    }

    /// Records what a scrub found on a committed version: verified now, quarantined or not.
    /// `None` if the version left the collection meanwhile.
    ///
    /// # Errors
    /// As [`protocol::decide_verification`].
    async fn record_verification(
        &self,
        version: &Version,
        found: &protocol::Verification,
        audit: &AuditEvent,
    ) -> Result<Option<Version>> {
        let (c, id, number, found, audit) =
            (version.collection.clone(), version.id, version.number, found.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers([number]));
        self.step(query.with_label("record_verification"), move |s| {
            protocol::decide_verification(s, &c, id, number, &found, &audit)
        })
        .await
    }

    /// Inserts versions found outside the catalog into an existing collection, keeping their
    /// numbers; those already there are skipped, those whose number is taken refused.
    ///
    /// # Errors
    /// As [`protocol::decide_adopt_versions`].
    async fn adopt_versions(
        &self,
        collection: &CollectionId,
        versions: Vec<Version>,
        audit: &AuditEvent,
    ) -> Result<protocol::Adoption> {
        let (c, audit) = (collection.clone(), audit.clone());
        let query = StateQuery {
            versions: versions.iter().map(|v| v.id).collect(),
            ..StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers(versions.iter().map(|v| v.number)))
        };
        self.step(query.with_label("adopt_versions"), move |s| {
            protocol::decide_adopt_versions(s, &c, &versions, &audit)
        })
        .await
    }

    /// Clears the marks of `collection`'s versions whose descriptions are written, each with
    /// the mark it had (a version marked again since keeps its new mark).
    ///
    /// # Errors
    /// As [`protocol::decide_described`].
    async fn mark_described(&self, collection: &CollectionId, described: &[(VersionId, u64)]) -> Result<()> {
        let (c, described) = (collection.clone(), described.to_vec());
        let query = StateQuery::collection(CollectionQuery::new(c.clone())).with_label("mark_described");
        self.step(query, move |s| protocol::decide_described(s, &c, &described)).await
    }

    /// Raises a collection's next number to at least `next` (never lowers it); the next
    /// number before, if it changed.
    ///
    /// # Errors
    /// As [`protocol::decide_resume_numbering`].
    async fn resume_numbering(&self, collection: &CollectionId, next: u64, audit: &AuditEvent) -> Result<Option<u64>> {
        let (c, audit) = (collection.clone(), audit.clone());
        let query = StateQuery::collection(CollectionQuery::new(c.clone())).with_label("resume_numbering");
        self.step(query, move |s| protocol::decide_resume_numbering(s, &c, next, &audit)).await
    }

    /// Forgets the tombstones of objects confirmed deleted.
    ///
    /// # Errors
    /// Backend errors only.
    async fn forget_tombstones(&self, keys: &[String]) -> Result<()> {
        let mutations = keys.iter().cloned().map(protocol::Mutation::ForgetTombstone).collect();
        self.step(StateQuery::none().with_label("forget_tombstones").relaxed(), move |_| {
            Ok(Decision::new(mutations, ()))
        })
        .await
    }

    /// Takes `id` as the catalog's repository id, or returns the one it has.
    ///
    /// # Errors
    /// [`Error::Conflict`] when it belongs to another repository.
    async fn claim_repository(&self, id: RepositoryId) -> Result<RepositoryId> {
        self.step(StateQuery::repository().with_label("claim_repository"), move |s| {
            protocol::decide_claim_repository(s, id)
        })
        .await
    }

    /// Registers a session.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the id is taken.
    async fn insert_session(&self, session: &Session) -> Result<()> {
        let session = session.clone();
        self.step(StateQuery::sessions([session.id.clone()]).with_label("insert_session"), move |s| {
            protocol::decide_insert_session(s, &session)
        })
        .await
    }

    /// Registers a session and records its issue in the audit log, in one step.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the id is taken.
    async fn issue_session(&self, session: &Session, audit: &AuditEvent) -> Result<()> {
        let (session, audit) = (session.clone(), audit.clone());
        self.step(StateQuery::sessions([session.id.clone()]).with_label("issue_session"), move |s| {
            let mut decision = protocol::decide_insert_session(s, &session)?;
            decision.mutations.push(protocol::Mutation::AppendAudit(audit));
            Ok(decision)
        })
        .await
    }

    /// Reads a session.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`].
    async fn get_session(&self, id: &SessionId) -> Result<Session> {
        let state = self.load(StateQuery::sessions([id.clone()]).with_label("get_session")).await?;
        state.session(id).cloned().ok_or_else(|| Error::SessionNotFound { session: id.to_string() })
    }

    /// Revokes one session and returns it.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`].
    async fn revoke_session(&self, id: &SessionId, audit: &AuditEvent) -> Result<Session> {
        let (id2, audit) = (id.clone(), audit.clone());
        self.step(StateQuery::sessions([id.clone()]).with_label("revoke_session"), move |s| {
            protocol::decide_revoke_session(s, &id2, &audit)
        })
        .await
    }

    /// Revokes every active session of a user; returns how many.
    ///
    /// # Errors
    /// Backend errors only.
    async fn revoke_user_sessions(&self, user: &str, audit: &AuditEvent) -> Result<u64> {
        let (u, audit) = (user.to_owned(), audit.clone());
        self.step(StateQuery::sessions_of(user).with_label("revoke_user_sessions"), move |s| {
            protocol::decide_revoke_user_sessions(s, &u, &audit)
        })
        .await
    }

    /// Deletes sessions that expired before `before`.
    ///
    /// # Errors
    /// Backend errors only.
    async fn delete_expired_sessions(&self, before: Timestamp) -> Result<()> {
        self.step(StateQuery::none().with_label("delete_expired_sessions"), move |_| {
            protocol::decide_delete_expired_sessions(before)
        })
        .await
    }

    /// Deletes the audit events up to `through`, keeping the head of the last one as the
    /// checkpoint.
    ///
    /// # Errors
    /// The catalog's.
    async fn prune_audit(&self, through: u64) -> Result<()> {
        self.step(StateQuery::none().with_label("prune_audit"), move |_| {
            Ok(Decision::new(vec![protocol::Mutation::PruneAudit { through }], ()))
        })
        .await
    }

    /// Takes or renews a log cursor's lease ([`protocol::Mutation::ClaimCursor`]) and returns
    /// the cursor.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another instance holds it; the catalog's.
    async fn claim_cursor(
        &self,
        name: &str,
        owner: &str,
        start_at: u64,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<crate::audit::LogCursor> {
        let (name2, owner2) = (name.to_owned(), owner.to_owned());
        self.step(StateQuery::none().with_label("claim_cursor"), move |_| {
            let m = protocol::Mutation::ClaimCursor { name: name2, owner: owner2, start_at, now, until };
            Ok(Decision::new(vec![m], ()))
        })
        .await?;
        self.list_cursors()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::internal(format!("log cursor {name} is missing after its claim")))
    }

    /// Moves a held cursor from `from` to `to` with its new state, and appends `events`, in
    /// one step.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the cursor moved or changed hands; the catalog's.
    async fn advance_cursor(
        &self,
        name: &str,
        owner: &str,
        from: u64,
        to: u64,
        state: &str,
        events: Vec<AuditEvent>,
    ) -> Result<()> {
        let (name, owner, state) = (name.to_owned(), owner.to_owned(), state.to_owned());
        self.step(StateQuery::none().with_label("advance_cursor"), move |_| {
            let mut mutations = vec![protocol::Mutation::AdvanceCursor { name, owner, from, to, state }];
            mutations.extend(events.into_iter().map(protocol::Mutation::AppendAudit));
            Ok(Decision::new(mutations, ()))
        })
        .await
    }

    /// Appends an event to the audit log.
    ///
    /// # Errors
    /// Backend errors only.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        let event = event.clone();
        self.step(StateQuery::none().with_label("append_audit"), move |_| {
            Ok(Decision::new(vec![protocol::Mutation::AppendAudit(event)], ()))
        })
        .await
    }
}

impl<C: Catalog + ?Sized> CatalogExt for C {}
