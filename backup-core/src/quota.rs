//! Quota arithmetic, exactly as backup-repository defines it, extended to uploads in flight.
//!
//! A collection has `max_versions` places of `max_version_size` bytes each (the soft limit),
//! plus the *extra space* `max_collection_size − max_versions × max_version_size`, shared by
//! every version that is larger than the soft limit. The largest upload allowed next is
//!
//! ```text
//! max_version_size + extra − Σ overage(kept versions) − Σ pool shares(uploads in flight)
//! ```
//!
//! where *kept* are the committed versions the retention plan keeps when this upload commits,
//! `overage(v) = max(0, size(v) − max_version_size)` and an upload in flight holds as its
//! *pool share* the part of its reservation above the soft limit.
//!
//! # The invariant (I2)
//!
//! Two facts hold at every instant, under concurrent uploads and across engines that share a
//! catalog:
//!
//! 1. Σ committed sizes ≤ `max_collection_size`: the commit transaction checks it with the
//!    final size, after applying the rotation, whatever was promised before.
//! 2. Σ overage(kept) + Σ pool shares(live reservations) ≤ extra: whatever subset of the
//!    uploads in flight commits, in whatever order, each within its reservation, fact 1 keeps
//!    holding, so a granted reservation is not refused later for lack of space.
//!
//! # How uploads in flight share the extra space
//!
//! An upload with an announced size reserves exactly that size when it starts. One of
//! unknown size reserves up to the soft limit (no pool share) and grows as its bytes arrive
//! ([`crate::protocol::decide_growth`]): first come first served, in steps of at least
//! [`crate::protocol::GROWTH_STEP`] that double with the bytes received but never exceed an
//! even share, among the uploads in flight, of what is left free. It is refused only when the
//! bytes it has received do not fit; the refusal drops its reservation in the same step, and
//! when its body ends it gives back what it held beyond its size. Each growth is checked
//! against fact 2 under the collection's lock, so the invariant holds at every instant.
//!
//! Counting whole reservations against `max_collection_size` instead (Σ committed + Σ
//! reserved ≤ max) cannot hold together with backup-repository's rule that the version a
//! commit will evict does not count: with 400M total, 150M per version and 2 versions, after
//! uploads of 150M and 200M a third upload is allowed 200M while 350M are still committed.
//!
//! ```
//! use backup_core::{quota, Limits};
//!
//! const M: u64 = 1 << 20;
//! // backup-repository's README: 5 versions of 1M, 10M in all: one 6M version fits…
//! let limits = Limits::new(5, M, 10 * M)?;
//! assert_eq!(quota::allowance(&limits, [], []), 6 * M);
//! // …or two of 3.5M.
//! assert_eq!(quota::allowance(&limits, [7 * M / 2], []), 7 * M / 2);
//! // Issue #156: 400M in all, 150M per version, 2 versions: 150M then 200M both fit.
//! let limits = Limits::new(2, 150 * M, 400 * M)?;
//! assert!(quota::allowance(&limits, [], []) >= 150 * M);
//! assert!(quota::allowance(&limits, [150 * M], []) >= 200 * M);
//! # Ok::<(), backup_core::Error>(())
//! ```

use crate::spec::Limits;

/// The largest size allowed for the next upload, in bytes (zero when nothing fits).
///
/// `kept_sizes` are the sizes of the committed versions that stay when the upload commits;
/// `pool_shares` are the extra-space shares held by other uploads in flight.
pub fn allowance(
    limits: &Limits,
    kept_sizes: impl IntoIterator<Item = u64>,
    pool_shares: impl IntoIterator<Item = u64>,
) -> u64 {
    let overage: u128 = kept_sizes.into_iter().map(|s| u128::from(limits.overage(s))).sum();
    // Saturating: Σ overage of kept versions is bounded by the hard limit, under u64.
    allowance_with_overage(limits, u64::try_from(overage).unwrap_or(u64::MAX), pool_shares)
}

/// [`allowance`] from the total overage of the kept versions (a collection's counters keep it,
/// so the arithmetic does not read the history).
pub fn allowance_with_overage(limits: &Limits, kept_overage: u64, pool_shares: impl IntoIterator<Item = u64>) -> u64 {
    let used = u128::from(kept_overage) + pool_shares.into_iter().map(u128::from).sum::<u128>();
    let budget = u128::from(limits.max_version_size) + u128::from(limits.extra_space());
    u64::try_from(budget.saturating_sub(used)).unwrap_or(u64::MAX)
}

/// The part of a reservation drawn from the shared extra space.
pub fn pool_share(limits: &Limits, reserved: u64) -> u64 {
    limits.overage(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: u64 = 1 << 20;

    #[test]
    fn zero_extra_space_allows_exactly_the_soft_limit() {
        let l = Limits::new(3, 10, 30).unwrap();
        assert_eq!(allowance(&l, [10, 10], []), 10);
        assert_eq!(allowance(&l, [], []), 10);
    }

    #[test]
    fn readme_example_two_of_three_and_a_half() {
        let l = Limits::new(5, M, 10 * M).unwrap();
        let first = 7 * M / 2;
        assert!(allowance(&l, [], []) >= first);
        assert_eq!(allowance(&l, [first], []), 7 * M / 2);
        // After the two, the rest of the versions get exactly the soft limit.
        assert_eq!(allowance(&l, [first, first], []), M);
    }

    #[test]
    fn issue_156_third_upload_gets_what_rotation_frees() {
        let l = Limits::new(2, 150 * M, 400 * M).unwrap();
        // Versions 150M and 200M; the third evicts the 150M one, keeps the 200M one.
        assert_eq!(allowance(&l, [200 * M], []), 200 * M);
    }

    #[test]
    fn reservations_in_flight_hold_their_share() {
        let l = Limits::new(2, 100, 300).unwrap();
        assert_eq!(allowance(&l, [], [100]), 100);
        assert_eq!(allowance(&l, [], [60]), 140);
        assert_eq!(allowance(&l, [150], [60]), 90);
    }

    #[test]
    fn over_full_state_allows_nothing_instead_of_wrapping() {
        // A spec lowered under existing versions: the arithmetic saturates at zero.
        let l = Limits::new(1, 10, 10).unwrap();
        assert_eq!(allowance(&l, [500], [u64::MAX]), 0);
    }

    /// A simple model of a FIFO collection, driven by random uploads: every upload asks for
    /// its allowance, the model commits `min(size, allowance)` and evicts the oldest. The
    /// hard limit must hold after every commit, and the soft limit is always allowed.
    fn run_model(max_versions: u32, soft: u64, extra: u64, sizes: &[u64]) -> Result<(), TestCaseError> {
        let hard = u64::from(max_versions) * soft + extra;
        let l = Limits::new(max_versions, soft, hard).unwrap();
        let mut kept: std::collections::VecDeque<u64> = Default::default();
        for &want in sizes {
            while kept.len() + 1 > max_versions as usize {
                kept.pop_front();
            }
            let allowed = allowance(&l, kept.iter().copied(), []);
            prop_assert!(allowed >= soft, "the soft limit is always allowed: {allowed} < {soft}");
            let size = want.min(allowed);
            kept.push_back(size);
            let total: u64 = kept.iter().sum();
            prop_assert!(total <= hard, "hard limit passed: {total} > {hard}");
            let pool: u64 = kept.iter().map(|&s| l.overage(s)).sum();
            prop_assert!(pool <= extra, "extra space over-used: {pool} > {extra}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn hard_limit_never_exceeded(
            max_versions in 1u32..8,
            soft in 1u64..1000,
            extra in 0u64..5000,
            sizes in proptest::collection::vec(0u64..8000, 0..60),
        ) {
            run_model(max_versions, soft, extra, &sizes)?;
        }

        /// With uploads in flight holding shares, whatever subset commits in whatever order,
        /// the hard limit holds: the model grants every reservation its allowance, then
        /// commits a random subset in a random order.
        #[test]
        fn concurrent_reservations_never_pass_the_hard_limit(
            max_versions in 1u32..6,
            soft in 1u64..100,
            extra in 0u64..500,
            existing in proptest::collection::vec(0u64..300, 0..6),
            uploads in proptest::collection::vec((0u64..400, any::<bool>(), any::<u8>()), 1..8),
        ) {
            let hard = u64::from(max_versions) * soft + extra;
            let l = Limits::new(max_versions, soft, hard).unwrap();
            // Build a valid starting state by committing `existing` one by one.
            let mut committed: std::collections::VecDeque<u64> = Default::default();
            for s in existing {
                while committed.len() + 1 > max_versions as usize { committed.pop_front(); }
                let a = allowance(&l, committed.iter().copied(), []);
                committed.push_back(s.min(a));
            }
            // Grant reservations: each sees the versions kept if it alone commits.
            let mut shares = Vec::new();
            let mut granted = Vec::new();
            for (want, _, _) in &uploads {
                let keep_from = (committed.len() + 1).saturating_sub(max_versions as usize);
                let kept = committed.iter().skip(keep_from).copied();
                let a = allowance(&l, kept, shares.iter().copied());
                let size = (*want).min(a);
                shares.push(pool_share(&l, a));
                granted.push(size);
            }
            // Commit a subset in an order given by the random keys.
            let mut order: Vec<usize> = (0..uploads.len()).filter(|&i| uploads[i].1).collect();
            order.sort_by_key(|&i| uploads[i].2);
            for i in order {
                while committed.len() + 1 > max_versions as usize { committed.pop_front(); }
                committed.push_back(granted[i]);
                let total: u64 = committed.iter().sum();
                prop_assert!(total <= hard, "hard limit passed: {total} > {hard}");
            }
        }
    }
}
