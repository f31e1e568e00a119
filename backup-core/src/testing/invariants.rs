//! Checks of the invariants I1–I5 against a catalog and a store.

use std::fmt;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::catalog::{CatalogExt, KeyClass, PendingFilter, VersionQuery};
use crate::digest::Digest;
use crate::engine::Engine;
use crate::id::CollectionId;
use crate::protocol::{CollectionState, VersionRange, VersionsNeeded, plan_retention};
use crate::rotation::Incoming;
use crate::time::Timestamp;
use crate::version::{Version, VersionSelector, VersionState};

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `I1` … `I5`, or `check` when the check itself could not run.
    pub invariant: &'static str,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation { invariant, detail: detail.into() }
}

fn check_error(e: impl fmt::Display) -> Violation {
    violation("check", e.to_string())
}

/// Checks I1–I4 for one collection:
///
/// - **I1** exactly the versions in `expected` are committed (the caller's model of what was
///   acknowledged and not rotated out or deleted), with the size and digest acknowledged;
/// - **I2** the committed total is within the hard limit, and the live reservations' shares
///   fit the extra space next to the versions the rotation would keep;
/// - **I3** listings show exactly the committed versions, and each one's object has exactly
///   the committed bytes (size and digest);
/// - **I4** numbers are unique and increasing, and `acknowledged` numbers were issued, no
///   more (a failed upload leaves no gap).
///
/// # Errors
/// The first [`Violation`] found.
pub async fn check_invariants(
    engine: &Engine,
    collection: &CollectionId,
    expected: &[Version],
    acknowledged: u64,
) -> Result<(), Violation> {
    let catalog = engine.catalog();
    let state = catalog
        .collection_state_with(collection, VersionsNeeded::Range(VersionRange::All))
        .await
        .map_err(check_error)?;
    let now = Timestamp::from(engine.clock().now());

    // I1
    let committed: Vec<u64> = state.committed.iter().map(|v| v.number).collect();
    let mut wanted: Vec<u64> = expected.iter().map(|v| v.number).collect();
    wanted.sort_unstable();
    if committed != wanted {
        return Err(violation("I1", format!("committed versions are {committed:?}, expected {wanted:?}")));
    }
    for e in expected {
        let got = catalog.get_version(collection, VersionSelector::Number(e.number)).await.map_err(check_error)?;
        if (got.id, got.size, got.digest) != (e.id, e.size, e.digest) {
            return Err(violation("I1", format!("version {} changed: {got:?} vs acknowledged {e:?}", e.number)));
        }
    }

    // I2
    limits_hold(engine, &state, now)?;

    // I3
    let listed = catalog.list_versions(collection, &VersionQuery::first(100_000)).await.map_err(check_error)?;
    let listed_numbers: Vec<u64> = listed.iter().map(|v| v.number).collect();
    if listed_numbers != committed || listed.iter().any(|v| v.state != VersionState::Committed) {
        return Err(violation("I3", format!("listing shows {listed_numbers:?}, committed are {committed:?}")));
    }
    for v in &listed {
        verify_object(engine, v).await?;
    }

    // I4
    if committed.windows(2).any(|w| w[0] >= w[1]) {
        return Err(violation("I4", format!("numbers not increasing: {committed:?}")));
    }
    let counters = state.counters;
    if counters.next_number != acknowledged + 1 {
        return Err(violation(
            "I4",
            format!("{} numbers were issued, {acknowledged} uploads acknowledged", counters.next_number - 1),
        ));
    }
    Ok(())
}

/// Checks I2 for one collection whatever was uploaded: the committed versions are within
/// `max_versions` and the hard limit, the counters agree with them, the live reservations'
/// shares fit the extra space next to the versions the rotation would keep. Unlike
/// [`check_invariants`] it needs no model of what was acknowledged, so it can follow any
/// sequence of uploads, holds and rotations.
///
/// # Errors
/// The first [`Violation`] found.
pub async fn check_limits(engine: &Engine, collection: &CollectionId) -> Result<(), Violation> {
    let state = engine
        .catalog()
        .collection_state_with(collection, VersionsNeeded::Range(VersionRange::All))
        .await
        .map_err(check_error)?;
    limits_hold(engine, &state, Timestamp::from(engine.clock().now()))
}

fn limits_hold(engine: &Engine, state: &CollectionState, now: Timestamp) -> Result<(), Violation> {
    let limits = &state.collection.spec.limits;
    let counters = state.counters;
    let total: u64 = state.committed.iter().map(|v| v.size).sum();
    if total > limits.max_collection_size {
        return Err(violation("I2", format!("committed total {total} > hard limit {}", limits.max_collection_size)));
    }
    if state.committed.len() as u64 > u64::from(limits.max_versions) {
        return Err(violation(
            "I2",
            format!("{} versions committed > max_versions {}", state.committed.len(), limits.max_versions),
        ));
    }
    let recount =
        (state.committed.len() as u64, total, state.committed.iter().map(|v| limits.overage(v.size)).sum::<u64>());
    if (counters.versions, counters.bytes, counters.overage) != recount {
        return Err(violation("I2", format!("counters {counters:?} disagree with the versions {recount:?}")));
    }
    let protected = state.committed.iter().filter(|v| v.held || v.protected_until.is_some()).count() as u64;
    if (counters.protected, counters.held) != (protected, state.committed.iter().filter(|v| v.held).count() as u64) {
        return Err(violation("I2", format!("counters {counters:?} disagree with {protected} protected versions")));
    }
    let quarantined = state.committed.iter().filter(|v| v.quarantined.is_some()).count() as u64;
    if counters.quarantined != quarantined {
        return Err(violation("I2", format!("counters {counters:?} disagree with {quarantined} quarantined versions")));
    }
    if let Ok(outcome) = plan_retention(state, engine.strategies(), Some(Incoming::new(None, now)), now) {
        let shares: u64 = state.live_pending(now).map(|p| p.pool_share).sum();
        if outcome.kept_overage + shares > limits.extra_space() {
            return Err(violation(
                "I2",
                format!(
                    "kept overage {} + reserved shares {shares} > extra space {}",
                    outcome.kept_overage,
                    limits.extra_space()
                ),
            ));
        }
        if let Some(p) = state.live_pending(now).find(|p| p.reserved > limits.max_version_size + limits.extra_space()) {
            return Err(violation("I2", format!("reservation {} of {} bytes exceeds any allowance", p.id, p.reserved)));
        }
    }
    Ok(())
}

/// Reads a committed version's object and compares size and digest.
async fn verify_object(engine: &Engine, v: &Version) -> Result<(), Violation> {
    let path = Path::from(v.object_key.as_str());
    let got = engine
        .store()
        .get(&path)
        .await
        .map_err(|e| violation("I3", format!("object of version {} ({path}) unreadable: {e}", v.number)))?;
    let mut hasher = v.digest.algorithm().hasher();
    let mut size = 0u64;
    let mut s = got.into_stream();
    while let Some(chunk) =
        s.try_next().await.map_err(|e| violation("I3", format!("reading version {}: {e}", v.number)))?
    {
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let digest: Digest = hasher.finalize();
    if size != v.size || digest != v.digest {
        return Err(violation(
            "I3",
            format!("version {} has {size} bytes / {digest}, committed {} / {}", v.number, v.size, v.digest),
        ));
    }
    Ok(())
}

/// Checks I5 after `recover()`: no pending upload with an expired lease, no object the
/// catalog recorded as garbage, and, since the engine records every object it writes before
/// writing it, no object it does not know: under the engine's key prefix, among the objects
/// last modified before `cutoff`, every one but the engine's own records (the repository
/// marker, …) is a live version's or upload's, or a live version's description.
///
/// # Errors
/// The first [`Violation`] found.
pub async fn check_recovered(engine: &Engine, cutoff: DateTime<Utc>) -> Result<(), Violation> {
    let catalog = engine.catalog();
    let now = Timestamp::from(engine.clock().now());
    let expired = catalog.list_pending(&PendingFilter::expired_at(now), 10).await.map_err(check_error)?;
    if let Some(p) = expired.first() {
        return Err(violation("I5", format!("upload {} to {} is still pending after its lease", p.id, p.collection)));
    }
    let prefix = engine.key_prefix();
    let objects: Vec<_> = engine.store().list(Some(prefix)).try_collect().await.map_err(check_error)?;
    let keys: Vec<String> = objects
        .iter()
        .filter(|m| m.last_modified < cutoff && !crate::store::is_internal_key(prefix, &m.location))
        .map(|m| m.location.to_string())
        .collect();
    // A version's description stands for its object.
    let described: Vec<String> =
        keys.iter().map(|k| crate::store::described_object(k).unwrap_or(k).to_owned()).collect();
    let classes = catalog.classify_object_keys(&described).await.map_err(check_error)?;
    for (key, class) in keys.iter().zip(classes) {
        match class {
            KeyClass::Live => {}
            KeyClass::Garbage => return Err(violation("I5", format!("garbage object {key} remains"))),
            _ => return Err(violation("I5", format!("object {key} is unknown to the catalog"))),
        }
    }
    Ok(())
}

/// Checks, after a clean `recover()`, what keeps I4 across a loss of the catalog: every
/// committed or trashed version stored under the engine's key prefix has the description the
/// catalog says (a rebuild would bring it back with its number), and none is still marked as
/// not described. (Between two runs of `recover()` a version may lack its description: the
/// catalog's mark says so, and the next run writes it.)
///
/// # Errors
/// The first [`Violation`] found.
pub async fn check_described(engine: &Engine) -> Result<(), Violation> {
    let catalog = engine.catalog();
    let ours = |v: &Version| Path::from(v.object_key.as_str()).prefix_match(engine.key_prefix()).is_some();
    let mut collections = catalog.collection_pages(500);
    while let Some(page) = collections.try_next().await.map_err(check_error)? {
        for c in page {
            let mut versions = catalog.version_pages(&c.id, VersionQuery::first(500).with_trashed());
            while let Some(versions) = versions.try_next().await.map_err(check_error)? {
                for v in versions.iter().filter(|v| ours(v)) {
                    if !engine.description_matches(v).await.map_err(check_error)? {
                        return Err(violation(
                            "I4",
                            format!(
                                "version {} of {} has no description that says what the catalog says: \
                                 a catalog lost now would be rebuilt without it",
                                v.number, v.collection
                            ),
                        ));
                    }
                }
            }
        }
    }
    let marked = catalog.list_undescribed(None, 1000).await.map_err(check_error)?;
    if let Some(u) = marked.iter().find(|u| ours(&u.version)) {
        return Err(violation(
            "I4",
            format!("version {} of {} is still marked as not described", u.version.number, u.version.collection),
        ));
    }
    Ok(())
}
