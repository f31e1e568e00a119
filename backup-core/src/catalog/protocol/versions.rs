//! Steps on committed and trashed versions: delete (trash), restore, purge.

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::{CollectionId, VersionId};
use crate::lock::{LockMode, VersionLock};
use crate::protocol::descriptions::mark_undescribed;
use crate::protocol::mutation::Mutation;
use crate::protocol::retention::protection_reason;
use crate::protocol::state::{CollectionState, Counters, LoadedState, VersionRow};
use crate::protocol::{Decision, collection_of};
use crate::quota;
use crate::spec::CollectionSpec;
use crate::time::Timestamp;
use crate::version::{Tombstone, TombstoneKind, Version, VersionState};

/// The counters once `added` is committed and `removed` leave.
pub(crate) fn counters_after(
    counters: &Counters,
    spec: &CollectionSpec,
    added: Option<&Version>,
    removed: &[&Version],
) -> Counters {
    let mut c = *counters;
    let soft = &spec.limits;
    for v in removed {
        c.versions = c.versions.saturating_sub(1);
        c.bytes = c.bytes.saturating_sub(v.size);
        c.overage = c.overage.saturating_sub(soft.overage(v.size));
        c.protected = c.protected.saturating_sub(u64::from(v.has_protection()));
        c.held = c.held.saturating_sub(u64::from(v.held));
        c.quarantined = c.quarantined.saturating_sub(u64::from(v.quarantined.is_some()));
    }
    if let Some(v) = added {
        c.versions += 1;
        c.bytes = c.bytes.saturating_add(v.size);
        c.overage = c.overage.saturating_add(soft.overage(v.size));
        c.protected += u64::from(v.has_protection());
        c.held += u64::from(v.held);
        c.quarantined += u64::from(v.quarantined.is_some());
    }
    c
}

/// Appends the mutations that take `v` out of the collection: trashed (its description to be
/// written again), or purged with a tombstone at once; returns it as it becomes.
pub(crate) fn give_up(v: &Version, now: Timestamp, reason: String, purge: bool, out: &mut Vec<Mutation>) -> Version {
    let gone = if purge {
        out.push(Mutation::InsertTombstone(tombstone_of(v, now)));
        v.clone().with_state(VersionState::Purged, Some((now, reason)), Some(now))
    } else {
        v.clone().with_state(VersionState::Trashed, Some((now, reason)), None)
    };
    out.push(Mutation::UpdateVersion(gone.clone()));
    if !purge {
        out.push(mark_undescribed(&gone, now));
    }
    gone
}

fn tombstone_of(v: &Version, now: Timestamp) -> Tombstone {
    Tombstone::new(v.object_key.clone(), v.collection.clone(), v.id, TombstoneKind::Purged, now)
}

fn not_found(collection: &CollectionId, number: u64) -> Error {
    Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() }
}

/// The loaded version of that number in that state, or [`Error::VersionNotFound`].
pub(crate) fn version_in_state<'a>(
    cs: &'a CollectionState,
    collection: &CollectionId,
    number: u64,
    state: VersionState,
) -> Result<&'a Version> {
    cs.version_numbered(number).filter(|v| v.state == state).ok_or_else(|| not_found(collection, number))
}

/// Decides the deletion of a committed version: it leaves the collection (trashed, or purged
/// at once with `purge`), unless it is held, protected or locked. A governance lock gives way
/// when `bypass` says the caller may bypass it: the lock is lifted with the deletion, and a
/// `lock.bypass` event is audited beside the deletion's.
///
/// The state must hold the collection with the version loaded by number.
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::VersionNotFound`] if no committed version has that
/// number; [`Error::Locked`] if a lock holds it (compliance, or governance without `bypass`);
/// [`Error::VersionProtected`] if it is held or protected.
pub fn decide_trash(
    state: &LoadedState,
    collection: &CollectionId,
    number: u64,
    reason: &str,
    purge: bool,
    bypass: LockBypass,
    audit: &AuditEvent,
) -> Result<Decision<Version>> {
    let cs = collection_of(state, collection)?;
    let now = audit.at;
    let v = version_in_state(cs, collection, number, VersionState::Committed)?;
    let mut mutations = Vec::new();
    let mut target = v.clone();
    if let Some(lock) = v.lock_at(now) {
        if !bypass.lifts(lock) {
            return Err(Error::Locked {
                collection: collection.clone(),
                reason: locked_reason(number, lock, "deleted"),
            });
        }
        target = target.with_lock(None);
        mutations.push(Mutation::AppendAudit(bypass.audit(audit, lock)));
    }
    if target.is_protected(now) {
        return Err(Error::VersionProtected {
            collection: collection.clone(),
            version: number,
            reason: protection_reason(&target, now),
        });
    }
    let gone = give_up(&target, now, reason.to_owned(), purge, &mut mutations);
    let counters = counters_after(&cs.counters, &cs.collection.spec, None, &[v]);
    mutations.push(Mutation::SetCounters { collection: collection.clone(), counters });
    mutations.push(Mutation::AppendAudit(audit.clone()));
    Ok(Decision::new(mutations, gone))
}

/// Why a lock forbids an action on version `number`.
pub(crate) fn locked_reason(number: u64, lock: &VersionLock, action: &str) -> String {
    let who = match lock.mode {
        LockMode::Compliance => "by anyone",
        LockMode::Governance => "without the permission to bypass governance locks",
    };
    format!("version {number} is {lock} and cannot be {action} {who}")
}

/// Whether a step may lift governance locks: the caller's authorizer allowed
/// [`crate::Action::BypassGovernance`] (or configuration speaks). Compliance locks never give
/// way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockBypass(bool);

impl LockBypass {
    /// No bypass: every lock holds.
    pub const NONE: LockBypass = LockBypass(false);
    /// Governance locks give way (each use audited).
    pub const GOVERNANCE: LockBypass = LockBypass(true);

    /// Whether `lock` gives way.
    pub fn lifts(self, lock: &VersionLock) -> bool {
        self.0 && lock.mode == LockMode::Governance
    }

    /// Whether governance locks give way.
    pub fn allows_governance(self) -> bool {
        self.0
    }

    /// The audit event of one use: `lock.bypass`, by the actor of `of`, naming the lock.
    pub(crate) fn audit(self, of: &AuditEvent, lock: &VersionLock) -> AuditEvent {
        let detail = format!("{}: bypassed a governance lock until {}", of.action, lock.until);
        of.clone().with_action("lock.bypass").with_detail(detail)
    }
}

/// Decides whether a trashed version may be committed again: it takes a place under
/// `max_versions` without evicting anything, its overage must fit the extra space next to the
/// committed versions and the live reservations, and the committed total must stay under the
/// hard limit.
///
/// # Errors
/// [`Error::VersionNotFound`] if no trashed version has that number; [`Error::Conflict`] when
/// all places are taken; [`Error::QuotaExceeded`] when it does not fit.
pub fn decide_restore(
    state: &LoadedState,
    collection: &CollectionId,
    number: u64,
    audit: &AuditEvent,
) -> Result<Decision<Version>> {
    let cs = collection_of(state, collection)?;
    let now = audit.at;
    if let Some(gone) = cs.version_numbered(number).filter(|v| v.state == VersionState::Purged) {
        return Err(Error::VersionPurged {
            collection: collection.clone(),
            number,
            purged_at: gone.purged_at.unwrap_or(now),
        });
    }
    let v = version_in_state(cs, collection, number, VersionState::Trashed)?;
    let limits = &cs.collection.spec.limits;
    let counters = &cs.counters;
    if counters.versions >= u64::from(limits.max_versions) {
        return Err(Error::conflict(format!(
            "collection {collection} holds {} versions, its maximum; delete one before restoring version {number}",
            counters.versions
        )));
    }
    let allowed = quota::allowance_with_overage(limits, counters.overage, cs.live_pending(now).map(|p| p.pool_share));
    let total = counters.bytes.saturating_add(v.size);
    if v.size > allowed || total > limits.max_collection_size {
        return Err(Error::QuotaExceeded { allowed, received_at_least: v.size });
    }
    let restored = v.clone().with_state(VersionState::Committed, None, None);
    let after = counters_after(counters, &cs.collection.spec, Some(&restored), &[]);
    Ok(Decision::new(
        vec![
            Mutation::UpdateVersion(restored.clone()),
            mark_undescribed(&restored, now),
            Mutation::SetCounters { collection: collection.clone(), counters: after },
            Mutation::AppendAudit(audit.clone()),
        ],
        restored,
    ))
}

/// Decides a purge: the trashed versions among `ids` become purged, each with a tombstone, so
/// that no restore can bring one back and their objects may be deleted. Ids not trashed
/// (restored meanwhile, purged already, unknown) are left alone and not returned, so an
/// object is never deleted under a restored version.
///
/// The state must hold the rows of `ids`.
///
/// # Errors
/// None.
pub fn decide_purge(state: &LoadedState, ids: &[VersionId], now: Timestamp) -> Result<Decision<Vec<Version>>> {
    let mut mutations = Vec::new();
    let mut purged = Vec::new();
    for id in ids {
        // A trashed version whose lock holds (none should be: deleting lifts a lock, and
        // rotation never evicts one) stays in the trash until the lock ends.
        if let Some(VersionRow::Version(v)) = state.version_row(id)
            && v.state == VersionState::Trashed
            && v.lock_at(now).is_none()
        {
            mutations.push(Mutation::InsertTombstone(tombstone_of(v, now)));
            let p = v.clone().with_state(VersionState::Purged, v.trashed_at.zip(v.trash_reason.clone()), Some(now));
            mutations.push(Mutation::UpdateVersion(p.clone()));
            mutations.push(Mutation::AppendAudit(
                AuditEvent::new(now, "engine", "version.purge")
                    .with_collection(&v.collection)
                    .with_version(v.number)
                    .with_detail(format!(
                        "its bytes go: trashed at {}{}",
                        v.trashed_at.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                        v.trash_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    )),
            ));
            purged.push(p);
        }
    }
    Ok(Decision::new(mutations, purged))
}
