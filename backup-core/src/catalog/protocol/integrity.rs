//! Steps of integrity and recovery: recording what a scrub found, and adopting versions found
//! in the store (a catalog rebuilt from the objects' descriptions, an import).

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::{CollectionId, VersionId};
use crate::protocol::descriptions::mark_undescribed;
use crate::protocol::mutation::Mutation;
use crate::protocol::state::LoadedState;
use crate::protocol::versions::counters_after;
use crate::protocol::{Decision, collection_of};
use crate::version::{Version, VersionState, number_after};

/// What reading a version back found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// Its bytes have the committed size and digest.
    Intact,
    /// Its object is missing, or its bytes differ: it is quarantined with this reason.
    Damaged(String),
}

/// Decides the record of a scrub's finding on version `number`, which must still be the
/// committed version `id` (one trashed or replaced meanwhile is left alone: `None`).
///
/// The version's `verified_at` becomes `at`; a damaged version is quarantined with the reason,
/// an intact one leaves quarantine. Entering or leaving quarantine is audited (with `audit`'s
/// actor and time, and the action `version.quarantine` or `version.release_quarantine`) and
/// counted in the collection's [`Counters::quarantined`](crate::protocol::Counters::quarantined).
///
/// # Errors
/// [`Error::CollectionNotFound`].
pub fn decide_verification(
    state: &LoadedState,
    collection: &CollectionId,
    id: VersionId,
    number: u64,
    found: &Verification,
    audit: &AuditEvent,
) -> Result<Decision<Option<Version>>> {
    let cs = collection_of(state, collection)?;
    let Some(v) = cs.version_numbered(number).filter(|v| v.id == id && v.state == VersionState::Committed) else {
        return Ok(Decision::new(vec![], None));
    };
    let quarantined = match found {
        Verification::Intact => None,
        Verification::Damaged(reason) => Some(reason.clone()),
    };
    let mut mutations = Vec::new();
    match (&v.quarantined, &quarantined) {
        (None, Some(reason)) => mutations.push(Mutation::AppendAudit(
            AuditEvent::new(audit.at, audit.actor.clone(), "version.quarantine")
                .with_collection(collection)
                .with_version(number)
                .with_detail(reason.clone()),
        )),
        (Some(_), None) => mutations.push(Mutation::AppendAudit(
            AuditEvent::new(audit.at, audit.actor.clone(), "version.release_quarantine")
                .with_collection(collection)
                .with_version(number)
                .with_detail("its bytes are intact again"),
        )),
        _ => {}
    }
    let recorded = v.clone().with_verification(Some(audit.at), quarantined);
    mutations.insert(0, Mutation::UpdateVersion(recorded.clone()));
    if v.quarantined.is_some() != recorded.quarantined.is_some() {
        // The version stays committed: only its quarantine is counted anew.
        let counters = counters_after(&cs.counters, &cs.collection.spec, Some(&recorded), &[v]);
        mutations.insert(1, Mutation::SetCounters { collection: collection.clone(), counters });
    }
    Ok(Decision::new(mutations, Some(recorded)))
}

/// What [`decide_adopt_versions`] did with each version offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Adoption {
    /// Inserted, by number.
    pub inserted: Vec<u64>,
    /// Already in the catalog with the same id: nothing to do.
    pub present: Vec<u64>,
    /// Refused, by number, with the reason: the number is taken by another version, is out
    /// of range ([`crate::check_version_number`]), or the version is not committed or trashed.
    pub refused: Vec<(u64, String)>,
}

/// Decides the insertion of versions found outside the catalog (their objects' descriptions,
/// an import) into an existing collection: each committed or trashed version whose id is not
/// in the catalog and whose number is free is inserted as it is; the collection's counters
/// count the committed ones, and its next number passes every number inserted. Nothing is
/// replaced: a number taken by another version is refused, never overwritten.
///
/// The state must hold the collection with the offered numbers loaded, and the offered ids.
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::InvalidInput`] for a version of another
/// collection.
pub fn decide_adopt_versions(
    state: &LoadedState,
    collection: &CollectionId,
    versions: &[Version],
    audit: &AuditEvent,
) -> Result<Decision<Adoption>> {
    let cs = collection_of(state, collection)?;
    let mut counters = cs.counters;
    let mut out = Adoption::default();
    let mut mutations = Vec::new();
    let mut taken: std::collections::HashSet<u64> = cs.by_number.iter().map(|v| v.number).collect();
    for v in versions {
        if &v.collection != collection {
            return Err(Error::invalid(
                "version",
                format!("version {} belongs to {}, not {collection}", v.number, v.collection),
            ));
        }
        if state.version_row(&v.id).is_some() {
            out.present.push(v.number);
            continue;
        }
        if !matches!(v.state, VersionState::Committed | VersionState::Trashed) {
            out.refused.push((v.number, format!("a {} version cannot be adopted", v.state.name())));
            continue;
        }
        let after = match number_after(v.number) {
            Ok(after) => after,
            Err(e) => {
                out.refused.push((v.number, e.to_string()));
                continue;
            }
        };
        if !taken.insert(v.number) {
            out.refused.push((v.number, "another version has this number".to_owned()));
            continue;
        }
        if v.state == VersionState::Committed {
            counters = counters_after(&counters, &cs.collection.spec, Some(v), &[]);
            counters.last_committed_at = counters.last_committed_at.max(Some(v.committed_at));
        }
        counters.next_number = counters.next_number.max(after);
        mutations.push(Mutation::InsertVersion(v.clone()));
        mutations.push(mark_undescribed(v, audit.at));
        out.inserted.push(v.number);
    }
    if !out.inserted.is_empty() {
        mutations.push(Mutation::SetCounters { collection: collection.clone(), counters });
        let detail = format!("{} versions: {}", out.inserted.len(), numbers(&out.inserted));
        mutations.push(Mutation::AppendAudit(audit.clone().with_collection(collection).with_detail(detail)));
    }
    Ok(Decision::new(mutations, out))
}

/// Decides that `collection`'s next number is at least `next`: a rebuild found evidence in the
/// store (number marks, the intents of commits whose descriptions were never written) that
/// numbers below it were given out, which no version in the catalog holds. The next number
/// never goes down; the change is audited (`audit`'s actor, time and action). Returns the
/// next number before, if it changed.
///
/// # Errors
/// [`Error::CollectionNotFound`]; [`Error::InvalidInput`] for a `next` past the number after
/// [`crate::MAX_VERSION_NUMBER`].
pub fn decide_resume_numbering(
    state: &LoadedState,
    collection: &CollectionId,
    next: u64,
    audit: &AuditEvent,
) -> Result<Decision<Option<u64>>> {
    let cs = collection_of(state, collection)?;
    if next > crate::MAX_VERSION_NUMBER + 1 {
        return Err(Error::invalid("next version number", format!("{next} is past the last version number")));
    }
    let before = cs.counters.next_number;
    if next <= before {
        return Ok(Decision::new(vec![], None));
    }
    let counters = crate::protocol::Counters { next_number: next, ..cs.counters };
    Ok(Decision::new(
        vec![
            Mutation::SetCounters { collection: collection.clone(), counters },
            Mutation::AppendAudit(
                audit
                    .clone()
                    .with_collection(collection)
                    .with_detail(format!("numbering resumes at {next}, not {before}")),
            ),
        ],
        Some(before),
    ))
}

/// `1, 2, 5` (at most twenty, then `…`).
fn numbers(list: &[u64]) -> String {
    let mut s: Vec<String> = list.iter().take(20).map(u64::to_string).collect();
    if list.len() > 20 {
        s.push("…".to_owned());
    }
    s.join(", ")
}
