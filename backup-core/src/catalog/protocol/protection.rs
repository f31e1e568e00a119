//! Holds and protection deadlines on versions.

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::lock::{LockMode, VersionLock};
use crate::protocol::mutation::Mutation;
use crate::protocol::state::{CollectionState, Counters, LoadedState};
use crate::protocol::versions::version_in_state;
use crate::protocol::{Decision, collection_of};
use crate::time::Timestamp;
use crate::version::{Version, VersionState};

/// A change of a version's protection; `None` fields stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProtectionChange {
    /// Put a hold on it (`true`) or lift it (`false`).
    pub held: Option<bool>,
    /// Protect it until this time (`Some(Some(t))`) or lift the deadline (`Some(None)`).
    pub protected_until: Option<Option<Timestamp>>,
}

impl ProtectionChange {
    /// Holds the version (legal hold: no expiry).
    pub fn hold() -> Self {
        ProtectionChange { held: Some(true), protected_until: None }
    }

    /// Lifts the hold and any deadline.
    pub fn release() -> Self {
        ProtectionChange { held: Some(false), protected_until: Some(None) }
    }

    /// Protects the version until `t`.
    pub fn until(t: Timestamp) -> Self {
        ProtectionChange { held: None, protected_until: Some(Some(t)) }
    }

    /// Also puts a hold on it (`true`) or lifts it (`false`).
    pub fn with_held(mut self, held: bool) -> Self {
        self.held = Some(held);
        self
    }

    /// Also sets the deadline (`Some`) or lifts it (`None`).
    pub fn with_protected_until(mut self, until: Option<Timestamp>) -> Self {
        self.protected_until = Some(until);
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.held.is_none() && self.protected_until.is_none()
    }
}

/// The counters once `before` became `after` (both committed).
pub(crate) fn recount_protection(counters: &Counters, before: &Version, after: &Version) -> Counters {
    let mut c = *counters;
    c.protected = c.protected - u64::from(before.has_protection()) + u64::from(after.has_protection());
    c.held = c.held - u64::from(before.held) + u64::from(after.held);
    c
}

/// Decides a change of protection of a committed version: a hold (no more than the
/// collection's cap at once) or a deadline in the future, or their release.
///
/// # Errors
/// [`Error::VersionNotFound`] if no committed version has that number;
/// [`Error::InvalidInput`] for a deadline not in the future; [`Error::Conflict`] when the
/// collection holds as many versions as its cap allows.
pub fn decide_protect(
    state: &LoadedState,
    collection: &CollectionId,
    number: u64,
    change: ProtectionChange,
    audit: &AuditEvent,
) -> Result<Decision<Version>> {
    let cs = collection_of(state, collection)?;
    let now = audit.at;
    let v = version_in_state(cs, collection, number, VersionState::Committed)?;
    let held = change.held.unwrap_or(v.held);
    let until = change.protected_until.unwrap_or(v.protected_until);
    if let Some(t) = until
        && change.protected_until.is_some()
        && t <= now
    {
        return Err(Error::invalid("protection deadline", format!("{t} is not in the future")));
    }
    let cap = u64::from(cs.collection.spec.held_cap());
    if held && !v.held && cs.counters.held >= cap {
        return Err(Error::conflict(format!(
            "collection {collection} holds {} versions, its cap (max_held_versions = {cap}); lift a hold first",
            cs.counters.held
        )));
    }
    Ok(protection_changed(cs, v, v.clone().with_protection(held, until), audit))
}

/// The step that turns committed version `before` into `changed` (its hold, deadline or
/// lock): the row, its description to write again, the counters, the audit event.
fn protection_changed(
    cs: &CollectionState,
    before: &Version,
    changed: Version,
    audit: &AuditEvent,
) -> Decision<Version> {
    let counters = recount_protection(&cs.counters, before, &changed);
    Decision::new(
        vec![
            Mutation::UpdateVersion(changed.clone()),
            crate::protocol::descriptions::mark_undescribed(&changed, audit.at),
            Mutation::SetCounters { collection: before.collection.clone(), counters },
            Mutation::AppendAudit(audit.clone()),
        ],
        changed,
    )
}

/// Decides a lengthening of a committed version's lock to end at `until` (or a first lock, for
/// a version committed without one), in `mode` or, without one, the mode the version's lock
/// has, else its collection's policy's, else governance. The end must be in the future and not
/// before the current one, and the mode not weaker. Holds and protection deadlines are left as
/// they are.
///
/// # Errors
/// [`Error::VersionNotFound`] if no committed version has that number;
/// [`Error::InvalidInput`] for an end not in the future, or one that would shorten or weaken
/// the lock.
pub fn decide_lock(
    state: &LoadedState,
    collection: &CollectionId,
    number: u64,
    until: Timestamp,
    mode: Option<LockMode>,
    audit: &AuditEvent,
) -> Result<Decision<Version>> {
    let cs = collection_of(state, collection)?;
    let now = audit.at;
    let v = version_in_state(cs, collection, number, VersionState::Committed)?;
    let current = v.lock_at(now);
    let mode =
        mode.or(current.map(|l| l.mode)).or(cs.collection.spec.lock.map(|p| p.mode)).unwrap_or(LockMode::Governance);
    let wanted = VersionLock::new(mode, until);
    if !wanted.holds_at(now) {
        return Err(Error::invalid("lock", format!("{until} is not in the future")));
    }
    let lock = match current {
        Some(current) => current.lengthened_to(wanted)?,
        None => wanted,
    };
    if v.lock == Some(lock) {
        return Ok(Decision::new(vec![], v.clone()));
    }
    let audit = audit.clone().with_detail(lock.to_string());
    Ok(protection_changed(cs, v, v.clone().with_lock(Some(lock)), &audit))
}
