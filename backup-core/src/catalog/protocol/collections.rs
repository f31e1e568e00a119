//! Steps on collections: create, update (or both: put), delete.

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::lock::LockMode;
use crate::protocol::mutation::Mutation;
use crate::protocol::state::{CollectionState, LoadedState, VersionRange, VersionsNeeded};
use crate::protocol::versions::LockBypass;
use crate::protocol::{Decision, collection_of};
use crate::spec::CollectionSpec;
use crate::time::Timestamp;
use crate::version::{Collection, Tombstone, TombstoneKind};

/// What a [`decide_put_collection`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollectionChange {
    /// The collection did not exist and was created.
    Created(Collection),
    /// Its spec changed.
    Updated(Collection),
    /// It existed with this very spec.
    Unchanged(Collection),
}

impl CollectionChange {
    /// The collection as it is now.
    pub fn collection(&self) -> &Collection {
        match self {
            CollectionChange::Created(c) | CollectionChange::Updated(c) | CollectionChange::Unchanged(c) => c,
        }
    }
}

/// What a collection's spec must satisfy beyond its own rules ([`CollectionSpec::validate`]):
/// a retention strategy that is registered and takes its options, a content rule that is
/// registered. Every decision that creates or changes a spec checks it, so no path (the
/// engine, a [`crate::catalog::CatalogExt`] step, a manifest sync) can store one that an
/// upload would then refuse.
#[derive(Debug, Clone, Default)]
pub struct SpecRules {
    strategies: std::sync::Arc<crate::rotation::RotationStrategies>,
    content_rules: crate::content_rule::ContentRules,
}

impl SpecRules {
    /// The rules of these registries.
    pub fn new(
        strategies: std::sync::Arc<crate::rotation::RotationStrategies>,
        content_rules: crate::content_rule::ContentRules,
    ) -> Self {
        SpecRules { strategies, content_rules }
    }

    /// Checks `spec`.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] naming the field, or [`Error::InvalidCollectionId`]-like errors of
    /// the spec's own rules.
    pub fn validate(&self, spec: &CollectionSpec) -> Result<()> {
        spec.validate()?;
        self.strategies.validate(spec)?;
        self.content_rules.resolve(spec.content_rule.as_deref())?;
        Ok(())
    }
}

/// Decides the creation of a collection, its spec checked by `rules`.
///
/// # Errors
/// [`Error::CollectionExists`] if the id is taken; [`Error::InvalidSpec`] for a spec the
/// rules refuse.
pub fn decide_create_collection(
    state: &LoadedState,
    collection: &Collection,
    rules: &SpecRules,
    audit: &AuditEvent,
) -> Result<Decision<Collection>> {
    rules.validate(&collection.spec)?;
    if state.collection.is_some() {
        return Err(Error::CollectionExists { collection: collection.id.clone() });
    }
    Ok(Decision::new(
        vec![Mutation::CreateCollection(collection.clone()), Mutation::AppendAudit(audit.clone())],
        collection.clone(),
    ))
}

/// The committed versions an update to `spec` needs: all of them when the soft limit
/// changes (the overage counter is recomputed), none otherwise.
pub fn update_needs(spec: &CollectionSpec) -> VersionsNeeded {
    let soft = spec.limits.max_version_size;
    VersionsNeeded::FromRow(std::sync::Arc::new(move |stored, _| {
        if stored.spec.limits.max_version_size == soft { VersionRange::None } else { VersionRange::All }
    }))
}

/// Decides a change of a collection's spec, if its revision is still `expected_revision`
/// (when given). Versions already committed stay; the new limits apply from the next upload.
///
/// The state must be loaded with [`update_needs`].
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::Conflict`] if the revision moved;
/// [`Error::InvalidSpec`] for a spec `rules` refuse.
#[allow(clippy::too_many_arguments)]
pub fn decide_update_collection(
    state: &LoadedState,
    id: &CollectionId,
    spec: &CollectionSpec,
    expected_revision: Option<u64>,
    rules: &SpecRules,
    bypass: LockBypass,
    audit: &AuditEvent,
) -> Result<Decision<CollectionChange>> {
    rules.validate(spec)?;
    let cs = collection_of(state, id)?;
    let stored = &cs.collection;
    if let Some(expected) = expected_revision
        && stored.revision != expected
    {
        return Err(Error::conflict(format!("collection {id} is at revision {}, not {expected}", stored.revision)));
    }
    if &stored.spec == spec {
        return Ok(Decision::new(vec![], CollectionChange::Unchanged(stored.clone())));
    }
    let mut mutations = Vec::new();
    if let Some(why) = lock_policy_weakened(id, &stored.spec, spec, bypass)? {
        let detail = format!("{}: bypassed a governance lock policy: {why}", audit.action);
        mutations.push(Mutation::AppendAudit(audit.clone().with_action("lock.bypass").with_detail(detail)));
    }
    let updated = stored.with_new_spec(spec.clone(), audit.at);
    mutations.push(Mutation::UpdateCollection(updated.clone()));
    if stored.spec.limits.max_version_size != spec.limits.max_version_size {
        mutations.push(Mutation::SetCounters { collection: id.clone(), counters: recount_overage(cs, spec)? });
    }
    mutations.push(Mutation::AppendAudit(audit.clone()));
    Ok(Decision::new(mutations, CollectionChange::Updated(updated)))
}

/// Whether `next` weakens the lock policy of `current`: refused for a compliance policy, and
/// for a governance one without `bypass`; with it, why (the bypass to audit).
///
/// # Errors
/// [`Error::Locked`] naming what the change would weaken.
pub fn lock_policy_weakened(
    id: &CollectionId,
    current: &CollectionSpec,
    next: &CollectionSpec,
    bypass: LockBypass,
) -> Result<Option<String>> {
    let Some(policy) = &current.lock else { return Ok(None) };
    let Some(why) = policy.weakened_by(next.lock.as_ref()) else { return Ok(None) };
    if policy.mode == LockMode::Governance && bypass.allows_governance() {
        return Ok(Some(why));
    }
    let who = match policy.mode {
        LockMode::Compliance => "a compliance lock policy can only be lengthened",
        LockMode::Governance => "only a caller allowed to bypass governance locks may weaken it",
    };
    Err(Error::Locked { collection: id.clone(), reason: format!("the change is refused: {why}; {who}") })
}

/// The counters with the overage recounted against a new soft limit.
fn recount_overage(cs: &CollectionState, spec: &CollectionSpec) -> Result<crate::protocol::Counters> {
    if cs.committed.len() as u64 != cs.counters.versions {
        return Err(Error::internal(format!(
            "recounting the overage of {} needs its {} committed versions, {} were loaded",
            cs.collection.id,
            cs.counters.versions,
            cs.committed.len()
        )));
    }
    let mut counters = cs.counters;
    counters.overage = cs.committed.iter().map(|v| spec.limits.overage(v.size)).fold(0u64, u64::saturating_add);
    Ok(counters)
}

/// Decides a create-or-update: what a manifest sync does for each collection it declares.
///
/// The state must be loaded with [`update_needs`].
///
/// # Errors
/// As [`decide_update_collection`].
#[allow(clippy::too_many_arguments)]
pub fn decide_put_collection(
    state: &LoadedState,
    id: &CollectionId,
    spec: &CollectionSpec,
    now: Timestamp,
    rules: &SpecRules,
    bypass: LockBypass,
    audit: &AuditEvent,
) -> Result<Decision<CollectionChange>> {
    if state.collection.is_none() {
        let c = Collection::new(id.clone(), spec.clone(), now);
        let d = decide_create_collection(state, &c, rules, audit)?;
        return Ok(Decision::new(d.mutations, CollectionChange::Created(c)));
    }
    decide_update_collection(state, id, spec, None, rules, bypass, audit)
}

/// Decides the deletion of a collection: refused while it has a committed version or an
/// upload in flight; otherwise its row goes, with every version row of it, and the objects of
/// its trashed versions and of its abandoned uploads get tombstones, in the same step.
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::Conflict`] if it is not empty.
pub fn decide_delete_collection(state: &LoadedState, id: &CollectionId, audit: &AuditEvent) -> Result<Decision<()>> {
    let cs = collection_of(state, id)?;
    let now = audit.at;
    let live = cs.live_pending(now).count();
    if cs.counters.versions > 0 || live > 0 {
        return Err(Error::conflict(format!(
            "collection {id} is not empty: {} committed versions, {live} uploads in flight; delete its versions first",
            cs.counters.versions
        )));
    }
    let mut mutations = Vec::new();
    for p in &cs.pending {
        mutations.push(Mutation::RemovePending(p.id));
        mutations.push(Mutation::InsertTombstone(Tombstone::new(
            p.object_key.clone(),
            id.clone(),
            p.id,
            TombstoneKind::Released,
            now,
        )));
    }
    mutations.push(Mutation::DeleteCollection { id: id.clone(), at: now });
    mutations.push(Mutation::AppendAudit(audit.clone()));
    Ok(Decision::new(mutations, ()))
}
