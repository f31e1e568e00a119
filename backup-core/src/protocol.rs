//! The atomic steps of the upload protocol, as pure decisions every [`crate::Catalog`] applies.
//!
//! A catalog provides atomicity: inside one transaction (or under one lock) it loads the
//! [`CollectionState`], calls [`decide_reservation`] or [`decide_commit`], and writes the
//! result. The arithmetic lives here, once, so every catalog enforces the same rules.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::to_micros;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::id::{CollectionId, SessionId, VersionId};
use crate::quota;
use crate::rotation::{Incoming, Mark, RotationInput, RotationStrategies, VersionSummary};
use crate::version::{Collection, PendingUpload, Uploader, Version, VersionState};

/// A consistent snapshot of one collection, read inside a catalog transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionState {
    /// The collection and its specification.
    pub collection: Collection,
    /// The number the next committed version gets.
    pub next_number: u64,
    /// The committed versions, ascending by number.
    pub committed: Vec<VersionSummary>,
    /// Every pending upload, live or with an expired lease.
    pub pending: Vec<PendingUpload>,
}

impl CollectionState {
    /// A snapshot from its parts (for catalog implementations).
    pub fn new(
        collection: Collection,
        next_number: u64,
        committed: Vec<VersionSummary>,
        pending: Vec<PendingUpload>,
    ) -> Self {
        CollectionState { collection, next_number, committed, pending }
    }

    /// The pending uploads whose lease runs at `now`.
    pub fn live_pending(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PendingUpload> {
        self.pending.iter().filter(move |p| p.is_live(now))
    }

    /// Σ committed sizes.
    pub fn committed_bytes(&self) -> u64 {
        self.committed.iter().map(|v| v.size).sum()
    }
}

/// What an upload announces about its size (a `Content-Length`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    pub now: DateTime<Utc>,
    /// The end of the lease.
    pub lease_until: DateTime<Utc>,
    /// The strategies, to plan the rotation this upload would cause.
    pub strategies: Arc<RotationStrategies>,
}

impl ReserveRequest {
    /// A request from its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        object_key: String,
        uploader: Uploader,
        size_hint: SizeHint,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        strategies: Arc<RotationStrategies>,
    ) -> Self {
        ReserveRequest { id, collection, object_key, uploader, size_hint, now, lease_until, strategies }
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
    pub now: DateTime<Utc>,
    /// A single-use session to revoke in the same transaction; the commit fails if it is
    /// already revoked (a second upload with a one-time token).
    pub consume_session: Option<SessionId>,
    /// The strategies, to plan the rotation.
    pub strategies: Arc<RotationStrategies>,
}

impl CommitRequest {
    /// A request from its parts.
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        size: u64,
        digest: Digest,
        now: DateTime<Utc>,
        consume_session: Option<SessionId>,
        strategies: Arc<RotationStrategies>,
    ) -> Self {
        CommitRequest { id, collection, size, digest, now, consume_session, strategies }
    }
}

/// What a commit writes: the new version and the versions it evicts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitPlan {
    /// The version as it is committed (state [`VersionState::Committed`]).
    pub version: Version,
    /// The versions to trash in the same transaction, with the reason for each.
    pub evict: Vec<(VersionId, String)>,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// The committed version.
    pub version: Version,
    /// The versions the rotation trashed, in their trashed state.
    pub evicted: Vec<Version>,
}

impl Committed {
    /// From its parts (for catalog implementations).
    pub fn new(version: Version, evicted: Vec<Version>) -> Self {
        Committed { version, evicted }
    }
}

/// The rotation planned for one more version: what stays and what goes, with reasons.
struct Planned {
    kept: Vec<VersionSummary>,
    evict: Vec<(VersionId, String)>,
}

/// Plans the rotation for one more version.
fn plan_rotation(
    state: &CollectionState,
    strategies: &RotationStrategies,
    incoming: Incoming,
    now: DateTime<Utc>,
) -> Result<Planned> {
    let spec = &state.collection.spec;
    let strategy = strategies.resolve(&spec.retention)?;
    let plan = strategy.plan(&RotationInput { spec, versions: &state.committed, incoming, now });
    plan.check_against(strategy.name(), &state.committed)?;
    let mut kept = Vec::new();
    let mut evict = Vec::new();
    for (d, v) in plan.decisions.into_iter().zip(&state.committed) {
        match d.mark {
            Mark::Keep => kept.push(*v),
            Mark::Evict => evict.push((v.id, d.reason)),
        }
    }
    if kept.len() >= spec.limits.max_versions as usize {
        return Err(Error::internal(format!(
            "rotation strategy {} keeps {} versions, leaving no place under max_versions={}",
            strategy.name(),
            kept.len(),
            spec.limits.max_versions
        )));
    }
    Ok(Planned { kept, evict })
}

/// The largest upload allowed at `now`, given the versions the rotation keeps if it
/// commits and the shares of the live uploads (what an upload of unknown size reserves).
///
/// # Errors
/// Errors of the retention strategy.
pub fn allowance_now(state: &CollectionState, strategies: &RotationStrategies, now: DateTime<Utc>) -> Result<u64> {
    allowance_for(state, strategies, Incoming { size: None, created_at: now }, now)
}

fn allowance_for(
    state: &CollectionState,
    strategies: &RotationStrategies,
    incoming: Incoming,
    now: DateTime<Utc>,
) -> Result<u64> {
    let Planned { kept, .. } = plan_rotation(state, strategies, incoming, now)?;
    Ok(quota::allowance(
        &state.collection.spec.limits,
        kept.iter().map(|v| v.size),
        state.live_pending(now).map(|p| p.pool_share),
    ))
}

/// Decides a reservation: the pending row to insert, or why the upload cannot start.
///
/// The upload may commit at most [`quota::allowance`] bytes given the versions the rotation
/// keeps if it commits and the shares of the other live uploads; with an exact size hint it
/// reserves just that.
///
/// # Errors
/// [`Error::QuotaExceeded`] when nothing fits or the announced size does not;
/// [`Error::AlreadyExists`] if the id is taken; errors of the retention strategy.
pub fn decide_reservation(state: &CollectionState, req: &ReserveRequest) -> Result<PendingUpload> {
    if state.pending.iter().any(|p| p.id == req.id) || state.committed.iter().any(|v| v.id == req.id) {
        return Err(Error::AlreadyExists { what: format!("upload {}", req.id) });
    }
    let limits = &state.collection.spec.limits;
    let incoming = Incoming { size: req.size_hint.exact, created_at: req.now };
    let allowed = allowance_for(state, &req.strategies, incoming, req.now)?;
    if allowed == 0 || req.size_hint.lower > allowed {
        return Err(Error::QuotaExceeded { allowed, received_at_least: req.size_hint.lower });
    }
    let reserved = req.size_hint.exact.unwrap_or(allowed);
    let now = to_micros(req.now);
    Ok(PendingUpload {
        id: req.id,
        collection: req.collection.clone(),
        object_key: req.object_key.clone(),
        reserved,
        pool_share: quota::pool_share(limits, reserved),
        created_at: now,
        lease_until: to_micros(req.lease_until),
        uploader: req.uploader.clone(),
    })
}

/// Decides a commit: the version to write and the versions to evict, or why not.
///
/// Checked with the final size, whatever was promised at reservation: the lease still runs,
/// the size is within the reservation, within the allowance next to the other live uploads,
/// and the committed total stays under the hard limit.
///
/// # Errors
/// [`Error::Conflict`] when the reservation is gone or its lease expired;
/// [`Error::QuotaExceeded`] when the size does not fit; errors of the retention strategy.
pub fn decide_commit(state: &CollectionState, req: &CommitRequest) -> Result<CommitPlan> {
    let pending = state.pending.iter().find(|p| p.id == req.id).ok_or_else(|| {
        Error::conflict(format!(
            "upload {} to {} has no reservation any more (aborted, or expired and recovered)",
            req.id, req.collection
        ))
    })?;
    if !pending.is_live(req.now) {
        return Err(Error::conflict(format!(
            "the lease of upload {} to {} expired at {}",
            req.id,
            req.collection,
            pending.lease_until.to_rfc3339()
        )));
    }
    if req.size > pending.reserved {
        return Err(Error::QuotaExceeded { allowed: pending.reserved, received_at_least: req.size });
    }
    let spec = &state.collection.spec;
    let limits = &spec.limits;
    let incoming = Incoming { size: Some(req.size), created_at: pending.created_at };
    let Planned { kept, evict } = plan_rotation(state, &req.strategies, incoming, req.now)?;
    let allowed = quota::allowance(
        limits,
        kept.iter().map(|v| v.size),
        state.live_pending(req.now).filter(|p| p.id != req.id).map(|p| p.pool_share),
    );
    let total = kept.iter().map(|v| u128::from(v.size)).sum::<u128>() + u128::from(req.size);
    if req.size > allowed || total > u128::from(limits.max_collection_size) {
        return Err(Error::QuotaExceeded { allowed: allowed.min(pending.reserved), received_at_least: req.size });
    }
    let number = state.next_number;
    // Commits are serialised per collection; keep their times in the same order even when
    // the callers' clocks read a little apart.
    let now = to_micros(req.now);
    let committed_at = state.committed.last().map_or(now, |last| now.max(last.committed_at));
    let version = Version {
        id: req.id,
        collection: req.collection.clone(),
        number,
        filename: spec.filename_template.render(number),
        object_key: pending.object_key.clone(),
        size: req.size,
        digest: req.digest,
        created_at: pending.created_at,
        committed_at,
        uploader: pending.uploader.clone(),
        state: VersionState::Committed,
        trashed_at: None,
        trash_reason: None,
        purged_at: None,
    };
    Ok(CommitPlan { version, evict })
}

/// Decides whether a trashed version may be committed again: it takes a place under
/// `max_versions` without evicting anything, its overage must fit the extra space next to the
/// committed versions and the live reservations, and the committed total must stay under the
/// hard limit.
///
/// # Errors
/// [`Error::Conflict`] when all places are taken; [`Error::QuotaExceeded`] when it does not
/// fit.
pub fn decide_restore(state: &CollectionState, version: &Version, now: DateTime<Utc>) -> Result<()> {
    let limits = &state.collection.spec.limits;
    if state.committed.len() >= limits.max_versions as usize {
        return Err(Error::conflict(format!(
            "collection {} holds {} versions, its maximum; delete one before restoring version {}",
            state.collection.id,
            state.committed.len(),
            version.number
        )));
    }
    let allowed =
        quota::allowance(limits, state.committed.iter().map(|v| v.size), state.live_pending(now).map(|p| p.pool_share));
    let total = state.committed_bytes().saturating_add(version.size);
    if version.size > allowed || total > limits.max_collection_size {
        return Err(Error::QuotaExceeded { allowed, received_at_least: version.size });
    }
    Ok(())
}
