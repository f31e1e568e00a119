//! The upload protocol's steps: reserve, grow, renew, commit, abort.

use crate::audit::AuditEvent;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::descriptions::mark_undescribed;
use crate::protocol::mutation::Mutation;
use crate::protocol::retention::{allowance_beside, held_space_reason, plan_retention};
use crate::protocol::state::{LoadedState, VersionRow};
use crate::protocol::versions::{counters_after, give_up};
use crate::protocol::{Decision, collection_of};
use crate::quota;
use crate::rotation::{Incoming, RotationStrategies};
use crate::time::Timestamp;
use crate::version::{
    MAX_VERSION_NUMBER, PendingUpload, Tombstone, TombstoneKind, Uploader, Version, VersionState, number_after,
};

/// What an upload announces about its size (a `Content-Length`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SizeHint {
    /// At least this many bytes will arrive.
    pub lower: u64,
    /// Exactly this many bytes will arrive, when known (a `Content-Length`).
    pub exact: Option<u64>,
}

impl SizeHint {
    /// Exactly `n` bytes will arrive.
    pub fn exact(n: u64) -> Self {
        SizeHint { lower: n, exact: Some(n) }
    }

    /// Nothing is known about the size.
    pub fn unknown() -> Self {
        SizeHint::default()
    }
}

/// Step 2 of the protocol: reserve space and write a pending row with a lease.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReserveRequest {
    /// The id of the upload and of the version it becomes.
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The fresh object key the body goes to.
    pub object_key: String,
    /// Who uploads.
    pub uploader: Uploader,
    /// What the body announces about its size.
    pub size_hint: SizeHint,
    /// The current time.
    pub now: Timestamp,
    /// The end of the lease.
    pub lease_until: Timestamp,
    /// The engine instance that runs the upload.
    pub owner: Option<String>,
    /// How many uploads may be in progress in the collection at once.
    pub max_live: u32,
}

impl ReserveRequest {
    /// A request from its parts.
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        object_key: String,
        uploader: Uploader,
        size_hint: SizeHint,
        now: impl Into<Timestamp>,
        lease_until: impl Into<Timestamp>,
    ) -> Self {
        ReserveRequest {
            id,
            collection,
            object_key,
            uploader,
            size_hint,
            now: now.into(),
            lease_until: lease_until.into(),
            owner: None,
            max_live: u32::MAX,
        }
    }

    /// Caps the uploads in progress in the collection, this one included.
    pub fn with_max_live(mut self, max_live: u32) -> Self {
        self.max_live = max_live;
        self
    }

    /// Names the engine instance that runs the upload.
    pub fn with_owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }
}

/// Decides a reservation: the pending row to insert, or why the upload cannot start.
///
/// The upload may commit at most [`quota::allowance`] bytes given the versions the rotation
/// keeps if it commits and the shares of the other live uploads. With an exact size hint it
/// reserves just that. Without one it reserves what is free of the shared extra space (up to
/// the soft limit, or the lower bound if higher) and grows as its bytes arrive
/// ([`decide_growth`]): an upload that has not sent its bytes yet holds no one's room.
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::QuotaExceeded`] when nothing fits or the announced
/// size does not ([`Error::CollectionFull`] when protected versions take the room);
/// [`Error::AlreadyExists`] if the id is taken; [`Error::TooManyUploads`] when as many uploads
/// as [`ReserveRequest::max_live`] are in progress; errors of the retention strategy.
pub fn decide_reservation(
    state: &LoadedState,
    req: &ReserveRequest,
    strategies: &RotationStrategies,
) -> Result<Decision<PendingUpload>> {
    let cs = collection_of(state, &req.collection)?;
    if cs.pending.iter().any(|p| p.id == req.id) {
        return Err(Error::AlreadyExists { what: format!("upload {}", req.id) });
    }
    let limits = &cs.collection.spec.limits;
    let limit = req.max_live.max(1);
    if cs.live_pending(req.now).count() as u64 >= u64::from(limit) {
        return Err(Error::TooManyUploads { collection: req.collection.clone(), limit });
    }
    let incoming = Incoming::new(req.size_hint.exact, req.now);
    let outcome = plan_retention(cs, strategies, Some(incoming), req.now)?;
    let allowed = allowance_beside(cs, &outcome, None, req.now);
    if allowed == 0 || req.size_hint.lower > allowed {
        if let Some(reason) = held_space_reason(&outcome, allowed) {
            return Err(Error::CollectionFull { collection: req.collection.clone(), reason });
        }
        return Err(Error::QuotaExceeded { allowed, received_at_least: req.size_hint.lower });
    }
    let reserved = req.size_hint.exact.unwrap_or_else(|| limits.max_version_size.max(req.size_hint.lower).min(allowed));
    let pending = PendingUpload::new(req.id, req.collection.clone(), req.object_key.clone(), req.now, req.lease_until)
        .with_reservation(reserved, quota::pool_share(limits, reserved), req.size_hint.exact)
        .with_uploader(req.uploader.clone())
        .with_owner(req.owner.clone());
    Ok(Decision::new(vec![Mutation::InsertPending(pending.clone())], pending))
}

/// The smallest step an upload of unknown size grows by while the extra space is wide: its
/// reservation at least doubles, so a large upload takes few catalog steps.
pub const GROWTH_STEP: u64 = 1 << 20;

/// An upload of unknown size needs room for the bytes it has received.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrowRequest {
    /// The upload (the pending row's id).
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The bytes received so far, which the reservation must cover.
    pub received: u64,
    /// The body ended: the reservation becomes exactly `received`, giving back what it held
    /// beyond, so an upload waiting for its commit holds no room it will not use.
    pub ended: bool,
    /// The current time.
    pub now: Timestamp,
}

impl GrowRequest {
    /// A request from its parts.
    pub fn new(id: VersionId, collection: CollectionId, received: u64, now: impl Into<Timestamp>) -> Self {
        GrowRequest { id, collection, received, ended: false, now: now.into() }
    }

    /// The body ended with `received` bytes.
    pub fn ended(mut self) -> Self {
        self.ended = true;
        self
    }
}

/// What [`decide_growth`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Growth {
    /// The reservation covers the bytes received (and a step more, where there is room).
    Grown(Box<PendingUpload>),
    /// The bytes received do not fit next to the versions kept and the other live uploads:
    /// the upload must fail. Its reservation was dropped to nothing in the same step, so the
    /// room it held goes to the uploads still running at once.
    Refused {
        /// The most this upload could have had.
        allowed: u64,
    },
}

/// Decides the growth of an upload of unknown size, first come first served: the reservation
/// grows to cover `received` plus a step (at least [`GROWTH_STEP`] and as much as it has
/// received, so it doubles, but no more than an even share among the live uploads of what is
/// left free), within the upload's allowance. An upload is refused only when the bytes it has cannot fit; what
/// others hold beyond their bytes is at most their share of the room that was free.
///
/// # Errors
/// [`Error::Conflict`] when the reservation is gone or its lease expired; errors of the
/// retention strategy.
pub fn decide_growth(
    state: &LoadedState,
    req: &GrowRequest,
    strategies: &RotationStrategies,
) -> Result<Decision<Growth>> {
    let cs = collection_of(state, &req.collection)?;
    let pending = live_pending(state, cs, &req.id, &req.collection, req.now)?;
    let limits = &cs.collection.spec.limits;
    if req.received <= pending.reserved {
        if !req.ended || req.received == pending.reserved || pending.announced.is_some() {
            return Ok(Decision::new(vec![], Growth::Grown(Box::new(pending.clone()))));
        }
        let settled = pending.clone().with_reservation(req.received, quota::pool_share(limits, req.received), None);
        return Ok(Decision::new(vec![Mutation::UpdatePending(settled.clone())], Growth::Grown(Box::new(settled))));
    }
    let outcome = plan_retention(cs, strategies, Some(Incoming::new(None, pending.created_at)), req.now)?;
    let allowed = match pending.announced {
        // An announced size reserved exactly; it never grows.
        Some(_) => pending.reserved,
        None => allowance_beside(cs, &outcome, Some(req.id), req.now),
    };
    if req.received > allowed {
        let dropped = pending.clone().with_reservation(0, 0, pending.announced);
        return Ok(Decision::new(vec![Mutation::UpdatePending(dropped)], Growth::Refused { allowed }));
    }
    let free = allowed - req.received;
    let live = cs.live_pending(req.now).count().max(1) as u64;
    let step = req.received.max(GROWTH_STEP).min(free / live);
    let target = if req.ended { req.received } else { (req.received + step).max(pending.reserved).min(allowed) };
    let grown = pending.clone().with_reservation(target, quota::pool_share(limits, target), None);
    Ok(Decision::new(vec![Mutation::UpdatePending(grown.clone())], Growth::Grown(Box::new(grown))))
}

/// The pending row of an upload, for its owner (a growth, a commit): the one loaded (and
/// locked) by id when the query asked for it, else the collection's. Its lease must still run
/// at `now`, or its room must still be free (see [`room_is_free`]).
fn live_pending<'a>(
    state: &'a LoadedState,
    cs: &'a crate::protocol::CollectionState,
    id: &VersionId,
    collection: &CollectionId,
    now: Timestamp,
) -> Result<&'a PendingUpload> {
    let by_id = match state.version_row(id) {
        Some(VersionRow::Pending(p)) => Some(p),
        _ => None,
    };
    let pending = by_id
        .or_else(|| cs.pending.iter().find(|p| p.id == *id))
        .filter(|p| p.collection == *collection)
        .ok_or_else(|| {
            Error::conflict(format!(
                "upload {id} to {collection} has no reservation any more (aborted, or expired and recovered)"
            ))
        })?;
    if !pending.is_live(now) && !room_is_free(cs, pending, now) {
        return Err(expired_and_taken(pending));
    }
    Ok(pending)
}

/// Whether an upload whose lease ran out by the clock (and that nobody aborted yet) may go on
/// for its owner: its room is still free beside the committed versions and the live
/// reservations. Only the owner asks, and only while its own monotonic deadline holds (the
/// engine's lease keeper): so a step of the wall clock (an NTP correction) does not fail an
/// upload in flight, while a reservation whose room another upload was promised meanwhile is
/// never revived (I2).
fn room_is_free(cs: &crate::protocol::CollectionState, pending: &PendingUpload, now: Timestamp) -> bool {
    let limits = &cs.collection.spec.limits;
    let others = cs.live_pending(now).filter(|p| p.id != pending.id).map(|p| p.pool_share);
    let allowance = quota::allowance_with_overage(limits, cs.counters.overage, others);
    limits.max_version_size.saturating_add(pending.pool_share) <= allowance
}

fn expired_and_taken(pending: &PendingUpload) -> Error {
    Error::conflict(format!(
        "the lease of upload {} to {} expired at {} and its room went to other uploads",
        pending.id, pending.collection, pending.lease_until
    ))
}

/// Records the store's id of the multipart upload that writes a pending upload's object, so
/// that a release (even by another instance, after a crash) can abort it. Its lease need not
/// run: recording an id only helps whoever releases the upload.
///
/// # Errors
/// [`Error::Conflict`] when the upload is not pending any more.
pub fn decide_staging(
    state: &LoadedState,
    id: &VersionId,
    staging: String,
    _now: Timestamp,
) -> Result<Decision<PendingUpload>> {
    match state.version_row(id) {
        Some(VersionRow::Pending(p)) => {
            let recorded = p.clone().with_staging(Some(staging));
            Ok(Decision::new(vec![Mutation::UpdatePending(recorded.clone())], recorded))
        }
        _ => Err(Error::conflict(format!("upload {id} is not pending any more"))),
    }
}

/// What [`decide_renewal`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// The lease runs until the new time.
    Renewed(Box<PendingUpload>),
    /// The lease ran out by the clock, and nobody aborted the upload: whether it may be
    /// renewed depends on its collection, which the state must hold (ask again with it).
    NeedsCollection(CollectionId),
}

/// Decides a lease renewal by the upload's owner. A live lease is extended. A lease that ran
/// out by the clock (a step of the wall clock looks the same to the catalog; the owner's own
/// monotonic deadline tells a frozen process from a step, and it does not ask then) is
/// extended only while its room is still free: its share of the extra space may have been
/// promised to another upload already, and then it is never revived.
///
/// # Errors
/// [`Error::Conflict`] when the upload is not pending any more, or its lease expired and its
/// room went to other uploads.
pub fn decide_renewal(
    state: &LoadedState,
    id: &VersionId,
    lease_until: Timestamp,
    now: Timestamp,
) -> Result<Decision<Renewal>> {
    let renew = |p: &PendingUpload| {
        let mut renewed = p.clone();
        renewed.lease_until = lease_until.max(p.lease_until);
        Decision::new(vec![Mutation::UpdatePending(renewed.clone())], Renewal::Renewed(Box::new(renewed)))
    };
    match state.version_row(id) {
        Some(VersionRow::Pending(p)) if p.is_live(now) => Ok(renew(p)),
        Some(VersionRow::Pending(p)) => match state.collection.as_ref().filter(|c| c.collection.id == p.collection) {
            None => Ok(Decision::new(vec![], Renewal::NeedsCollection(p.collection.clone()))),
            Some(cs) if room_is_free(cs, p, now) => Ok(renew(p)),
            Some(_) => Err(expired_and_taken(p)),
        },
        _ => Err(Error::conflict(format!("upload {id} is not pending any more"))),
    }
}

/// Step 5 of the protocol: commit a fully written upload, with its rotation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommitRequest {
    /// The upload (the pending row's id).
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The final size.
    pub size: u64,
    /// The digest of the bytes.
    pub digest: Digest,
    /// The current time.
    pub now: Timestamp,
    /// A single-use session to revoke in the same step; the commit fails if it is already
    /// revoked (a second upload with a one-time token).
    pub consume_session: Option<SessionId>,
    /// A session that must still be active: the upload's token, revoked meanwhile (a logout
    /// during the upload) fails the commit.
    pub require_session: Option<SessionId>,
    /// Purge the versions the rotation evicts at once (no trash retention): they become
    /// purged with tombstones in the same step, instead of trashed.
    pub purge_evicted: bool,
    /// The metadata the version carries.
    pub metadata: crate::Metadata,
    /// Records the commit in the audit log (`version.commit`, by the uploader) and each
    /// version the rotation evicts (`version.evict`, by `engine`, with the reason).
    pub audited: bool,
}

impl CommitRequest {
    /// A request from its parts.
    pub fn new(id: VersionId, collection: CollectionId, size: u64, digest: Digest, now: impl Into<Timestamp>) -> Self {
        CommitRequest {
            id,
            collection,
            size,
            digest,
            now: now.into(),
            consume_session: None,
            require_session: None,
            purge_evicted: false,
            metadata: crate::Metadata::new(),
            audited: false,
        }
    }

    /// Records the commit and the evictions in the audit log.
    pub fn with_audit(mut self, audited: bool) -> Self {
        self.audited = audited;
        self
    }

    /// The metadata the version carries.
    pub fn with_metadata(mut self, metadata: crate::Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Revokes this single-use session in the same step.
    pub fn with_consume_session(mut self, session: Option<SessionId>) -> Self {
        self.consume_session = session;
        self
    }

    /// Requires this session to be active.
    pub fn with_require_session(mut self, session: Option<SessionId>) -> Self {
        self.require_session = session;
        self
    }

    /// Purges evicted versions at once.
    pub fn with_purge_evicted(mut self, purge: bool) -> Self {
        self.purge_evicted = purge;
        self
    }
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// The committed version.
    pub version: Version,
    /// The versions the rotation evicted, trashed or purged.
    pub evicted: Vec<Version>,
}

/// Decides a commit: the version to write and the versions to evict, or why not.
///
/// Checked with the final size, whatever was promised at reservation: the lease still runs,
/// the size is within the reservation, within the allowance next to the other live uploads,
/// and the committed total stays under the hard limit.
///
/// # Errors
/// [`Error::Conflict`] when the reservation is gone or its lease expired, or a session is no
/// longer active; [`Error::QuotaExceeded`] when the size does not fit;
/// [`Error::CollectionFull`] when the collection has given out every number up to
/// [`MAX_VERSION_NUMBER`]; errors of the retention strategy.
pub fn decide_commit(
    state: &LoadedState,
    req: &CommitRequest,
    strategies: &RotationStrategies,
) -> Result<Decision<Committed>> {
    let cs = collection_of(state, &req.collection)?;
    let pending = live_pending(state, cs, &req.id, &req.collection, req.now)?;
    if req.size > pending.reserved {
        return Err(Error::QuotaExceeded { allowed: pending.reserved, received_at_least: req.size });
    }
    let mut mutations = Vec::new();
    for (sid, consume) in [(&req.require_session, false), (&req.consume_session, true)] {
        let Some(sid) = sid else { continue };
        match state.session(sid) {
            Some(s) if s.is_active(req.now) => {
                if consume {
                    mutations.push(Mutation::RevokeSession { id: sid.clone(), at: req.now });
                }
            }
            _ if consume => {
                return Err(Error::conflict(format!("single-use session {sid} is already used, revoked or unknown")));
            }
            _ => return Err(Error::conflict(format!("session {sid} was revoked or expired during the upload"))),
        }
    }
    let spec = &cs.collection.spec;
    let limits = &spec.limits;
    let outcome = plan_retention(cs, strategies, Some(Incoming::new(Some(req.size), pending.created_at)), req.now)?;
    let allowed = allowance_beside(cs, &outcome, Some(req.id), req.now);
    let total = u128::from(outcome.kept_bytes) + u128::from(req.size);
    if req.size > allowed || total > u128::from(limits.max_collection_size) {
        return Err(Error::QuotaExceeded { allowed: allowed.min(pending.reserved), received_at_least: req.size });
    }
    let counters = &cs.counters;
    let number = counters.next_number;
    let next = number_after(number).map_err(|_| Error::CollectionFull {
        collection: req.collection.clone(),
        reason: format!("it has given out every version number (the highest is {MAX_VERSION_NUMBER})"),
    })?;
    // Commits are serialised per collection; keep their times in the same order even when
    // the callers' clocks read a little apart.
    let committed_at = counters.last_committed_at.map_or(req.now, |last| req.now.max(last));
    let mut version =
        Version::new(req.id, req.collection.clone(), number, pending.object_key.clone(), req.size, req.digest)
            .with_filename(spec.filename_template.render(number))
            .with_times(pending.created_at, committed_at)
            .with_uploader(pending.uploader.clone())
            .with_metadata(req.metadata.clone())
            .with_lock(spec.lock.map(|policy| policy.lock_from(pending.created_at)));
    version.state = VersionState::Committed;
    mutations.push(Mutation::CommitVersion(version.clone()));
    // Its description is written after this step: until then, recover() knows it is missing.
    mutations.push(mark_undescribed(&version, req.now));
    let evicted: Vec<&Version> = outcome.evicted(cs).collect();
    let mut evicted_out = Vec::with_capacity(evicted.len());
    for (v, d) in evicted.iter().zip(outcome.decisions.iter().filter(|d| d.mark == crate::rotation::Mark::Evict)) {
        let gone = give_up(v, req.now, d.reason(), req.purge_evicted, &mut mutations);
        if req.audited {
            mutations.push(Mutation::AppendAudit(
                AuditEvent::new(req.now, "engine", "version.evict")
                    .with_collection(&v.collection)
                    .with_version(v.number)
                    .with_detail(format!("rotated out by version {number}: {}", d.reason())),
            ));
        }
        evicted_out.push(gone);
    }
    if req.audited {
        mutations.push(Mutation::AppendAudit(
            AuditEvent::new(committed_at, version.uploader.user.clone(), "version.commit")
                .with_collection(&version.collection)
                .with_version(number)
                .with_detail(crate::replica::commit_detail(version.size, &version.digest)),
        ));
    }
    let mut after = counters_after(counters, spec, Some(&version), &evicted);
    after.next_number = next;
    after.last_committed_at = Some(committed_at);
    mutations.push(Mutation::SetCounters { collection: req.collection.clone(), counters: after });
    Ok(Decision::new(mutations, Committed { version, evicted: evicted_out }))
}

/// When [`decide_abort`] may remove a pending row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortCondition {
    /// Always: the upload's instance restarted, or the uploader gives up its own upload.
    Always,
    /// Always, by the uploader itself, which already finished its multipart upload
    /// (completed or aborted it): the tombstone records no multipart id to abort.
    Finished,
    /// Only if the lease has expired at this instant: recovery of an abandoned upload, which
    /// must not race an uploader that just renewed.
    ExpiredAt(Timestamp),
}

/// What [`decide_abort`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortOutcome {
    /// The pending row was removed, and a tombstone recorded: its object may be deleted now.
    Released(PendingUpload),
    /// The upload had been committed (a commit whose reply was lost): keep its object.
    Committed(Version),
    /// The pending row's lease is still running (only with [`AbortCondition::ExpiredAt`]).
    StillLive,
    /// No row with that id: nothing refers to its object any more.
    NotFound,
}

/// Decides an abort: a pending row is removed (if `condition` holds) and its object gets a
/// tombstone in the same step, so that nothing the engine wrote becomes an unknown object.
///
/// # Errors
/// None: every outcome is an [`AbortOutcome`].
pub fn decide_abort(
    state: &LoadedState,
    id: &VersionId,
    condition: AbortCondition,
    now: Timestamp,
) -> Result<Decision<AbortOutcome>> {
    Ok(match state.version_row(id) {
        None => Decision::new(vec![], AbortOutcome::NotFound),
        Some(VersionRow::Version(v)) => Decision::new(vec![], AbortOutcome::Committed(v.clone())),
        Some(VersionRow::Pending(p)) => {
            if let AbortCondition::ExpiredAt(at) = condition
                && p.is_live(at)
            {
                return Ok(Decision::new(vec![], AbortOutcome::StillLive));
            }
            let staging = if condition == AbortCondition::Finished { None } else { p.staging.clone() };
            let tombstone =
                Tombstone::new(p.object_key.clone(), p.collection.clone(), p.id, TombstoneKind::Released, now)
                    .with_staging(staging);
            Decision::new(
                vec![Mutation::RemovePending(p.id), Mutation::InsertTombstone(tombstone)],
                AbortOutcome::Released(p.clone()),
            )
        }
    })
}
