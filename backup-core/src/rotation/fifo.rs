//! [`Fifo`]: first in, first out, backup-repository's strategy.

use crate::protocol::{Counters, VersionRange};
use crate::rotation::{Mark, PROTECTED, RotationDecision, RotationInput, RotationPlan, RotationStrategy};
use crate::spec::CollectionSpec;

/// First in, first out, with backup-repository's semantics: when the count would pass
/// `max_versions`, the oldest versions are evicted, as many as needed (which also trims a
/// collection that holds too many, for example after `max_versions` was lowered). Protected
/// versions are skipped: the next oldest goes instead.
///
/// It needs only the versions it may evict, so a commit costs the same at version 100,000
/// as at version 100.
///
/// ```
/// use backup_core::rotation::{Fifo, Incoming, Mark, RotationInput, RotationStrategy, VersionSummary};
/// use backup_core::{CollectionSpec, Limits, Timestamp, VersionId};
///
/// let spec = CollectionSpec::new("b-${version}", Limits::new(2, 10, 20)?);
/// let now = Timestamp::UNIX_EPOCH;
/// let versions: Vec<_> = (1..=2).map(|n| VersionSummary::new(VersionId::generate(), n, 5, now)).collect();
/// let plan = Fifo.plan(&RotationInput::new(&spec, &versions, 2, Some(Incoming::new(Some(5), now)), now));
/// let marks: Vec<_> = plan.decisions.iter().map(|d| d.mark).collect();
/// assert_eq!(marks, [Mark::Evict, Mark::Keep]);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

impl Fifo {
    /// The name `fifo`.
    pub const NAME: &'static str = crate::spec::FIFO;

    /// How many versions must go so that `committed` (plus the incoming one) fit.
    fn excess(spec: &CollectionSpec, committed: u64, incoming: bool) -> u64 {
        (committed + u64::from(incoming)).saturating_sub(u64::from(spec.limits.max_versions))
    }
}

impl RotationStrategy for Fifo {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// The oldest versions beyond the newest `max_versions − 1`, and one more for every
    /// protected version (which is skipped).
    fn needs(&self, spec: &CollectionSpec, counters: &Counters) -> VersionRange {
        match Self::excess(spec, counters.versions, true) {
            0 => VersionRange::None,
            n => VersionRange::Oldest(n.saturating_add(counters.protected)),
        }
    }

    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan {
        let max = input.spec.limits.max_versions;
        let mut evict = Self::excess(input.spec, input.committed, input.incoming.is_some());
        let decisions = input
            .versions
            .iter()
            .map(|v| {
                if v.protected {
                    RotationDecision::new(v.id, v.number, Mark::Keep, PROTECTED)
                } else if evict > 0 {
                    evict -= 1;
                    RotationDecision::new(
                        v.id,
                        v.number,
                        Mark::Evict,
                        format!("fifo: among the oldest beyond max_versions={max}"),
                    )
                } else {
                    RotationDecision::new(v.id, v.number, Mark::Keep, format!("fifo: among the newest {max}"))
                }
            })
            .collect();
        RotationPlan::new(decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::{Incoming, VersionSummary};
    use crate::{Limits, Timestamp, VersionId};

    fn versions(n: u64) -> Vec<VersionSummary> {
        (1..=n).map(|number| VersionSummary::new(VersionId::generate(), number, 1, Timestamp::UNIX_EPOCH)).collect()
    }

    fn evicted_numbers(max_versions: u32, existing: u64) -> Vec<u64> {
        let spec = CollectionSpec::new("x-${version}", Limits::new(max_versions, 1, u64::from(max_versions)).unwrap());
        let vs = versions(existing);
        let now = Timestamp::UNIX_EPOCH;
        let plan = Fifo.plan(&RotationInput::new(&spec, &vs, existing, Some(Incoming::new(None, now)), now));
        plan.check_against("fifo", &vs).unwrap();
        plan.evicted().map(|d| d.number).collect()
    }

    /// The matrix of backup-repository's `rotation_test.go`: nothing is deleted below the
    /// limit; at or above it the oldest `existing − max + 1` go.
    #[test]
    fn fifo_matrix() {
        let table: &[(u32, u64, &[u64])] = &[
            (3, 0, &[]),
            (3, 1, &[]),
            (3, 2, &[]),
            (3, 3, &[1]),
            (3, 5, &[1, 2, 3]),
            (1, 1, &[1]),
            (1, 0, &[]),
            (5, 4, &[]),
            (5, 5, &[1]),
        ];
        for &(max, existing, expected) in table {
            assert_eq!(evicted_numbers(max, existing), expected, "max={max} existing={existing}");
        }
    }

    #[test]
    fn needs_only_what_it_may_evict() {
        let spec = CollectionSpec::new("x-${version}", Limits::new(3, 1, 3).unwrap());
        let counters = |versions, protected| Counters { versions, protected, ..Counters::empty() };
        assert_eq!(Fifo.needs(&spec, &counters(1, 0)), VersionRange::None);
        assert_eq!(Fifo.needs(&spec, &counters(100_000, 0)), VersionRange::Oldest(99_998));
        assert_eq!(Fifo.needs(&spec, &counters(3, 2)), VersionRange::Oldest(3));
    }

    #[test]
    fn protected_versions_are_skipped() {
        let spec = CollectionSpec::new("x-${version}", Limits::new(2, 1, 2).unwrap());
        let mut vs = versions(3);
        vs[0] = vs[0].with_protected(true);
        let now = Timestamp::UNIX_EPOCH;
        let plan = Fifo.plan(&RotationInput::new(&spec, &vs, 3, Some(Incoming::new(Some(1), now)), now));
        assert_eq!(plan.evicted().map(|d| d.number).collect::<Vec<_>>(), [2, 3]);
        assert!(plan.decisions[0].reasons == ["protected"]);
    }

    #[test]
    fn every_decision_has_a_reason() {
        let spec = CollectionSpec::new("x-${version}", Limits::new(2, 1, 2).unwrap());
        let vs = versions(3);
        let now = Timestamp::UNIX_EPOCH;
        let plan = Fifo.plan(&RotationInput::new(&spec, &vs, 3, Some(Incoming::new(Some(1), now)), now));
        assert!(plan.decisions.iter().all(|d| d.reason().starts_with("fifo: ")));
    }
}
