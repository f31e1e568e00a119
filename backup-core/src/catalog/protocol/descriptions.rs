//! Descriptions the catalog knows to be missing or stale: the mark a step sets on each version
//! whose description it changes, and the step that clears it once the description is written.
//!
//! A step that changes what a version's description says (a commit, a deletion, a restore, a
//! change of protection, a rotation, an adoption) marks the version in its own transaction;
//! the engine writes the description after the step. A process killed in between leaves the
//! mark, so `recover()` finds every such version from an index (the cost follows the marked
//! versions, not the history), writes its description and clears the mark.

use crate::error::Result;
use crate::id::{CollectionId, VersionId};
use crate::protocol::mutation::Mutation;
use crate::protocol::state::LoadedState;
use crate::protocol::{Decision, collection_of};
use crate::time::Timestamp;
use crate::version::Version;

/// The mark of `version` as a step at `at` leaves it: a value of 63 bits (every catalog
/// stores it as a signed 64-bit integer) drawn from the version's record and the time, so
/// that a later change marks it with another value, and clearing an earlier mark leaves the
/// later one.
pub fn description_mark(version: &Version, at: Timestamp) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(version.id.as_uuid().as_bytes());
    h.update(&at.as_micros().to_le_bytes());
    let record = (
        version.state.name(),
        version.trashed_at.map(Timestamp::as_micros),
        version.purged_at.map(Timestamp::as_micros),
        version.held,
        version.protected_until.map(Timestamp::as_micros),
        &version.quarantined,
        version.lock.map(|l| (l.mode.name(), l.until.as_micros())),
    );
    h.update(format!("{record:?}").as_bytes());
    let draw = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    draw & (i64::MAX as u64)
}

/// The mutation that marks `version`, changed by a step at `at`, as not described yet.
pub(crate) fn mark_undescribed(version: &Version, at: Timestamp) -> Mutation {
    Mutation::MarkUndescribed { id: version.id, mark: description_mark(version, at) }
}

/// Decides the clearing of marks of `collection`'s versions whose descriptions were written
/// (or found to say what the catalog says), each with the mark it had: a mark set again
/// since is kept. The collection is locked by the step, so that no commit of it runs
/// meanwhile.
///
/// # Errors
/// [`crate::Error::CollectionNotFound`] (its versions went with it).
pub fn decide_described(
    state: &LoadedState,
    collection: &CollectionId,
    described: &[(VersionId, u64)],
) -> Result<Decision<()>> {
    collection_of(state, collection)?;
    let mutations = described
        .iter()
        .map(|&(id, mark)| Mutation::ClearUndescribed { collection: collection.clone(), id, mark })
        .collect();
    Ok(Decision::new(mutations, ()))
}
