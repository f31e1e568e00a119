//! [`FifoPlusOlder`]: backup-repository's `fifo-plus-older`, defined and implemented.

use super::calendar::CalendarDuration;
use crate::protocol::{Counters, VersionRange};
use crate::rotation::{Mark, PROTECTED, RotationDecision, RotationInput, RotationPlan, RotationStrategy};
use crate::spec::CollectionSpec;
use crate::time::Timestamp;

/// FIFO for the newest versions, plus a few older copies spaced in time, with
/// backup-repository's manifest fields (which it declared and never implemented; its issues
/// #122 "keep the oldest version" and #123 "always keep an X days old version" ask for this).
///
/// With `maxOlderCopies: k` and `keepLastOlderNotMoreThan: d` (days or hours, `5d`, `36h`):
///
/// 1. the newest `max_versions − k` versions (the incoming one included) are kept, as FIFO;
/// 2. the older ones are grouped in periods of length `d` (counted from the Unix epoch, by
///    receipt time); the newest version of each of the newest `k` periods is kept, so the
///    oldest copy kept is at least `d` older than the newest periods' once the history is
///    long enough: an X-days-old version is always there (#123);
/// 3. while fewer than `k` periods hold older versions, the oldest version is kept too (#122).
///
/// Held or protected versions stay outside these rules and take their places first: with `p`
/// of them, the newest `max(1, max_versions − p − k)` are kept as FIFO and at most
/// `max_versions − p` − that many older copies. Everything else goes, with its reason.
///
/// ```
/// use backup_core::rotation::{FifoPlusOlder, Mark, RotationInput, RotationStrategy, VersionSummary};
/// use backup_core::{CollectionSpec, Limits, RetentionSpec, Timestamp, VersionId};
/// use chrono::Duration;
///
/// let spec = CollectionSpec::new("db-${version}", Limits::new(7, 10, 100)?).with_retention(
///     RetentionSpec::named("fifo-plus-older").with_option("maxOlderCopies", "2").with_option("keepLastOlderNotMoreThan", "5d"),
/// );
/// // Daily backups for 30 days.
/// let day = |n: i64| Timestamp::UNIX_EPOCH + Duration::days(20_000 + n);
/// let versions: Vec<_> = (0..30).map(|n| VersionSummary::new(VersionId::generate(), n as u64 + 1, 5, day(n))).collect();
/// let plan = FifoPlusOlder.plan(&RotationInput::new(&spec, &versions, 30, None, day(30)));
/// let kept: Vec<u64> = plan.decisions.iter().filter(|d| d.mark == Mark::Keep).map(|d| d.number).collect();
/// // The five newest, and the newest of each of the two 5-day periods before them.
/// assert_eq!(kept, [20, 25, 26, 27, 28, 29, 30]);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FifoPlusOlder;

impl FifoPlusOlder {
    /// The name `fifo-plus-older`.
    pub const NAME: &'static str = "fifo-plus-older";
}

struct Options {
    copies: u32,
    spacing_secs: i64,
    spacing: CalendarDuration,
}

fn options(spec: &CollectionSpec) -> Result<Options, String> {
    let o = &spec.retention.options;
    for key in o.keys() {
        if key != "maxOlderCopies" && key != "keepLastOlderNotMoreThan" {
            return Err(format!(
                "{key:?} is not an option of fifo-plus-older (maxOlderCopies, keepLastOlderNotMoreThan)"
            ));
        }
    }
    let copies: u32 = o
        .get("maxOlderCopies")
        .ok_or("maxOlderCopies is required")?
        .trim()
        .parse()
        .map_err(|_| "maxOlderCopies: not a count".to_owned())?;
    let max = spec.limits.max_versions;
    if copies == 0 || copies >= max {
        return Err(format!("maxOlderCopies: {copies} must be between 1 and max_versions − 1 = {}", max - 1));
    }
    let spacing: CalendarDuration = o
        .get("keepLastOlderNotMoreThan")
        .ok_or("keepLastOlderNotMoreThan is required")?
        .parse()
        .map_err(|e| format!("keepLastOlderNotMoreThan: {e}"))?;
    if spacing.years > 0 || spacing.months > 0 || spacing.is_zero() {
        return Err("keepLastOlderNotMoreThan: a number of days or hours (5d, 36h), not months or years".to_owned());
    }
    let spacing_secs = (i64::from(spacing.days) * 24 + i64::from(spacing.hours)) * 3600;
    Ok(Options { copies, spacing_secs, spacing })
}

impl RotationStrategy for FifoPlusOlder {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, spec: &CollectionSpec) -> Result<(), String> {
        options(spec).map(|_| ())
    }

    /// Every committed version: at most `max_versions` of them.
    fn needs(&self, _spec: &CollectionSpec, _counters: &Counters) -> VersionRange {
        VersionRange::All
    }

    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan {
        let Ok(o) = options(input.spec) else {
            let keep = |v: &crate::rotation::VersionSummary| {
                RotationDecision::new(v.id, v.number, Mark::Keep, "fifo-plus-older: invalid options, nothing evicted")
            };
            return RotationPlan::new(input.versions.iter().map(keep).collect());
        };
        // Protected versions stay outside the rules and take their places first.
        let protected = input.versions.iter().filter(|v| v.protected).count() as u64;
        let places = u64::from(input.spec.limits.max_versions).saturating_sub(protected);
        let recent = places.saturating_sub(u64::from(o.copies)).max(1);
        let copies = places.saturating_sub(recent).min(u64::from(o.copies)) as usize;
        // Newest first by number (commit order); the incoming upload takes the first place.
        let mut order: Vec<usize> = (0..input.versions.len()).filter(|&i| !input.versions[i].protected).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(input.versions[i].number));
        let taken = u64::from(input.incoming.is_some()) + input.committed.saturating_sub(input.versions.len() as u64);
        let mut reasons: Vec<Option<String>> =
            input.versions.iter().map(|v| v.protected.then(|| PROTECTED.to_owned())).collect();
        let mut rest = Vec::new();
        for (rank, &i) in order.iter().enumerate() {
            if taken + (rank as u64) < recent {
                reasons[i] = Some(format!("fifo-plus-older: among the newest {recent}"));
            } else {
                rest.push(i);
            }
        }
        let period = |t: Timestamp| t.to_datetime().timestamp().div_euclid(o.spacing_secs);
        let mut periods_kept: Vec<i64> = Vec::new();
        for &i in &rest {
            let p = period(input.versions[i].created_at);
            if !periods_kept.contains(&p) && periods_kept.len() < copies {
                periods_kept.push(p);
                reasons[i] = Some(format!("fifo-plus-older: older copy, the newest of its {} period", o.spacing));
            }
        }
        if periods_kept.len() < copies
            && let Some(&oldest) = rest.last()
            && reasons[oldest].is_none()
        {
            reasons[oldest] =
                Some("fifo-plus-older: the oldest version, while an older copy's place is free".to_owned());
        }
        let decisions = input
            .versions
            .iter()
            .zip(reasons)
            .map(|(v, why)| match why {
                Some(why) => RotationDecision::new(v.id, v.number, Mark::Keep, why),
                None => RotationDecision::new(
                    v.id,
                    v.number,
                    Mark::Evict,
                    format!("fifo-plus-older: neither among the newest {recent} nor an older copy"),
                ),
            })
            .collect();
        RotationPlan::new(decisions)
    }
}
