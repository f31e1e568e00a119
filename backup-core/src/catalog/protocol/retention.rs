//! Retention inside the protocol: the strategy's plan, made safe (protected versions stay)
//! and turned into what the quota arithmetic needs.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::protocol::state::{CollectionState, VersionsNeeded};
use crate::quota;
use crate::rotation::{Incoming, Mark, RotationDecision, RotationInput, RotationStrategies, VersionSummary, enforce};
use crate::time::Timestamp;
use crate::version::Version;

/// The committed versions the collection's retention strategy needs, chosen from the
/// collection row: what a [`crate::protocol::CollectionQuery`] for a reservation or a commit
/// loads.
pub fn retention_needs(strategies: Arc<RotationStrategies>) -> VersionsNeeded {
    VersionsNeeded::FromRow(Arc::new(move |collection, counters| {
        match strategies.resolve(&collection.spec.retention) {
            Ok(strategy) => strategy.needs(&collection.spec, counters),
            // The decision reports the unknown strategy; nothing to load for it.
            Err(_) => crate::protocol::VersionRange::None,
        }
    }))
}

/// The retention plan for one collection state: a decision for each loaded committed version
/// (protected ones always kept) and what stays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionOutcome {
    /// One decision per loaded committed version, ascending by number.
    pub decisions: Vec<RotationDecision>,
    /// Committed versions that stay.
    pub kept_versions: u64,
    /// Their total size.
    pub kept_bytes: u64,
    /// Their total overage (bytes above the soft limit).
    pub kept_overage: u64,
    /// Kept versions that are held or protected.
    pub protected_kept: u64,
    /// Their overage: the part of the extra space that only lifting a protection frees.
    pub protected_overage: u64,
}

impl RetentionOutcome {
    /// The loaded versions the plan evicts.
    pub fn evicted<'a>(&'a self, state: &'a CollectionState) -> impl Iterator<Item = &'a Version> {
        self.decisions.iter().zip(&state.committed).filter(|(d, _)| d.mark == Mark::Evict).map(|(_, v)| v)
    }
}

/// Plans the retention of a collection state with `incoming` joining it (or as it is, with
/// `None`), with the same function the commit runs.
///
/// # Errors
/// [`Error::InvalidSpec`] for an unknown strategy; [`Error::Internal`] when the strategy breaks
/// its contract.
pub fn plan_retention(
    state: &CollectionState,
    strategies: &RotationStrategies,
    incoming: Option<Incoming>,
    now: Timestamp,
) -> Result<RetentionOutcome> {
    let spec = &state.collection.spec;
    let counters = &state.counters;
    let strategy = strategies.resolve(&spec.retention)?;
    let summaries: Vec<VersionSummary> = state.committed.iter().map(|v| VersionSummary::of(v, now)).collect();
    let plan = strategy.plan(&RotationInput::new(spec, &summaries, counters.versions, incoming, now));
    plan.check_against(strategy.name(), &summaries)?;
    let mut decisions = plan.decisions;
    enforce(&mut decisions, &summaries, counters.versions, spec.retention.min_keep, |i| {
        protection_reason(&state.committed[i], now)
    });
    let mut outcome = RetentionOutcome {
        decisions: Vec::with_capacity(summaries.len()),
        kept_versions: counters.versions,
        kept_bytes: counters.bytes,
        kept_overage: counters.overage,
        protected_kept: 0,
        protected_overage: 0,
    };
    for (d, v) in decisions.into_iter().zip(&state.committed) {
        if d.mark == Mark::Keep && v.is_protected(now) {
            outcome.protected_kept += 1;
            outcome.protected_overage += spec.limits.overage(v.size);
        }
        if d.mark == Mark::Evict {
            outcome.kept_versions = outcome.kept_versions.saturating_sub(1);
            outcome.kept_bytes = outcome.kept_bytes.saturating_sub(v.size);
            outcome.kept_overage = outcome.kept_overage.saturating_sub(spec.limits.overage(v.size));
        }
        outcome.decisions.push(d);
    }
    let max = u64::from(spec.limits.max_versions);
    if incoming.is_some() && outcome.kept_versions >= max {
        let locked_until = state.committed.iter().filter_map(|v| v.lock_at(now)).map(|l| l.until).min();
        if let Some(until) = locked_until {
            // Locks forbid every eviction that would make room: the upload waits, the
            // locked versions stay (an upload-only credential cannot rotate them out).
            return Err(Error::CollectionFull {
                collection: state.collection.id.clone(),
                reason: format!(
                    "collection is full of versions locked until {until} or later ({} of {} versions held, protected or \
                     locked, max_versions is {max}); uploads wait until a lock ends",
                    counters.protected, counters.versions
                ),
            });
        }
        if counters.protected > 0 {
            return Err(Error::CollectionFull {
                collection: state.collection.id.clone(),
                reason: format!(
                    "{} of its {} versions are held or protected and max_versions is {max}; lift a hold or wait for a protection to end",
                    counters.protected, counters.versions
                ),
            });
        }
        return Err(Error::internal(format!(
            "rotation strategy {} keeps {} versions, leaving no place under max_versions={max}",
            strategy.name(),
            outcome.kept_versions
        )));
    }
    Ok(outcome)
}

/// Why an upload does not fit when held or protected versions keep part of the extra space
/// above the soft limit, or `None` when they keep none of it (then they are not the cause).
pub fn held_space_reason(outcome: &RetentionOutcome, allowed: u64) -> Option<String> {
    (outcome.protected_overage > 0).then(|| {
        format!(
            "{} held or protected versions keep {} bytes of the extra space above the soft limit; {allowed} bytes are \
             free for this upload; lift a hold or wait for a protection (or a retention lock) to end",
            outcome.protected_kept, outcome.protected_overage
        )
    })
}

/// Why a protected version stays.
pub(crate) fn protection_reason(v: &Version, now: Timestamp) -> String {
    match (v.held, v.protected_until.filter(|t| now < *t), v.lock_at(now)) {
        (true, _, _) => "held".to_owned(),
        (false, _, Some(lock)) => lock.to_string(),
        (false, Some(until), None) => format!("protected until {until}"),
        (false, None, None) => "protected".to_owned(),
    }
}

/// The largest upload allowed at `now`, given the versions the rotation keeps if it commits
/// and the shares of the live uploads.
///
/// # Errors
/// As [`plan_retention`].
pub fn allowance_now(state: &CollectionState, strategies: &RotationStrategies, now: Timestamp) -> Result<u64> {
    let outcome = plan_retention(state, strategies, Some(Incoming::new(None, now)), now)?;
    Ok(allowance_beside(state, &outcome, None, now))
}

/// The allowance next to the live uploads (but `except`) once the plan's evictions are done.
pub(crate) fn allowance_beside(
    state: &CollectionState,
    outcome: &RetentionOutcome,
    except: Option<crate::VersionId>,
    now: Timestamp,
) -> u64 {
    let shares = state.live_pending(now).filter(|p| Some(p.id) != except).map(|p| p.pool_share);
    quota::allowance_with_overage(&state.collection.spec.limits, outcome.kept_overage, shares)
}

/// Decides what time alone changes in a collection (a maintenance run, between uploads):
/// protection deadlines that passed are cleared, and the retention plan without an incoming
/// upload is applied (a `keepWithin` that let versions age out, a protection that ended);
/// evicted versions are trashed, or purged at once with `purge`.
///
/// The state must hold every committed version.
///
/// # Errors
/// As [`plan_retention`]; [`Error::Internal`] if the versions were not all loaded.
pub fn decide_apply_retention(
    state: &crate::protocol::LoadedState,
    collection: &crate::CollectionId,
    strategies: &RotationStrategies,
    purge: bool,
    audit: &crate::AuditEvent,
) -> Result<crate::protocol::Decision<Vec<Version>>> {
    use crate::protocol::Mutation;
    let cs = crate::protocol::collection_of(state, collection)?;
    if cs.committed.len() as u64 != cs.counters.versions {
        return Err(Error::internal(format!(
            "applying the retention of {collection} needs its {} committed versions, {} were loaded",
            cs.counters.versions,
            cs.committed.len()
        )));
    }
    let now = audit.at;
    let mut mutations = Vec::new();
    let mut counters = cs.counters;
    let mut cleared = cs.clone();
    for v in cleared.committed.iter_mut() {
        let deadline_passed = !v.held && v.protected_until.is_some_and(|t| t <= now);
        let lock_ended = v.lock.is_some_and(|l| !l.holds_at(now));
        if deadline_passed || lock_ended {
            let mut lifted = v.clone();
            if deadline_passed {
                lifted = lifted.with_protection(false, None);
            }
            if lock_ended {
                lifted = lifted.with_lock(None);
            }
            counters = crate::protocol::protection::recount_protection(&counters, v, &lifted);
            mutations.push(Mutation::UpdateVersion(lifted.clone()));
            mutations.push(crate::protocol::descriptions::mark_undescribed(&lifted, now));
            *v = lifted;
        }
    }
    cleared.counters = counters;
    let outcome = plan_retention(&cleared, strategies, None, now)?;
    let evicted: Vec<&Version> = outcome.evicted(&cleared).collect();
    let mut gone = Vec::with_capacity(evicted.len());
    for (v, d) in evicted.iter().zip(outcome.decisions.iter().filter(|d| d.mark == Mark::Evict)) {
        gone.push(crate::protocol::versions::give_up(
            v,
            now,
            format!("{} (maintenance)", d.reason()),
            purge,
            &mut mutations,
        ));
    }
    if mutations.is_empty() {
        return Ok(crate::protocol::Decision::new(vec![], gone));
    }
    let counters = crate::protocol::versions::counters_after(&counters, &cleared.collection.spec, None, &evicted);
    mutations.push(Mutation::SetCounters { collection: collection.clone(), counters });
    if !gone.is_empty() {
        mutations.push(Mutation::AppendAudit(audit.clone().with_detail(format!("{} versions aged out", gone.len()))));
    }
    Ok(crate::protocol::Decision::new(mutations, gone))
}
