//! [`Gfs`]: grandfather-father-son retention by server receipt time, in two modes: restic's
//! `forget` (independent rules) and Proxmox Backup Server's prune (cascading rules).

use std::collections::{BTreeMap, HashSet};

use chrono_tz::Tz;

use super::calendar::{CalendarDuration, Periods, Rule, period_label};
use crate::protocol::{Counters, VersionRange};
use crate::rotation::{
    Incoming, Mark, PROTECTED, RotationDecision, RotationInput, RotationPlan, RotationStrategy, VersionSummary,
};
use crate::spec::CollectionSpec;
use crate::time::Timestamp;

/// How many periods a rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Count {
    /// This many (the newest first).
    Periods(u32),
    /// Every period (`-1`).
    All,
}

impl Count {
    fn parse(key: &str, value: &str) -> Result<Option<Count>, String> {
        match value.trim() {
            "-1" => Ok(Some(Count::All)),
            "0" => Ok(None),
            v => v
                .parse::<u32>()
                .map(|n| Some(Count::Periods(n)))
                .map_err(|_| format!("{key}: {value:?} is not a count (a number, or -1 for all)")),
        }
    }
}

/// How the rules of a [`GfsPolicy`] combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GfsMode {
    /// restic's `forget`: each rule walks the versions newest first and keeps the newest of
    /// each new period until its count is spent, whatever the other rules kept (a version may
    /// count for several rules); a rule whose count is not spent also keeps the oldest version.
    #[default]
    Independent,
    /// Proxmox Backup Server's prune: rules run finest first; a period already covered by a
    /// version a finer rule kept is skipped and uses no count, and a version a finer rule
    /// passed over in its period is not taken by a coarser one.
    Cascade,
}

/// A grandfather-father-son policy, from a collection's retention options (the names the
/// manifests and the server use).
///
/// | option | meaning |
/// |---|---|
/// | `keepLast` | the newest n versions |
/// | `keepHourly`, `keepDaily`, `keepWeekly` (ISO weeks), `keepMonthly`, `keepYearly` | the newest version of each of the newest n periods; `-1` for all periods |
/// | `keepWithin` | every version received within this of the newest one (`10d`, `36h`, `1y6m`) |
/// | `timezone` | the IANA time zone periods are counted in (default `UTC`) |
/// | `mode` | `independent` (restic, default) or `cascade` (Proxmox Backup Server) |
///
/// Times are the server's receipt times: a client cannot backdate its way past retention.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GfsPolicy {
    /// Per rule, how many periods it keeps (absent: the rule is off).
    pub counts: Vec<(RuleName, Count)>,
    /// Versions within this of the newest are kept.
    pub keep_within: Option<CalendarDuration>,
    /// The time zone periods are counted in.
    pub timezone: Tz,
    /// How the rules combine.
    pub mode: GfsMode,
}

/// The name of a count rule: `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`.
pub type RuleName = &'static str;

const OPTIONS: [(&str, Rule); 6] = [
    ("keepLast", Rule::Last),
    ("keepHourly", Rule::Hourly),
    ("keepDaily", Rule::Daily),
    ("keepWeekly", Rule::Weekly),
    ("keepMonthly", Rule::Monthly),
    ("keepYearly", Rule::Yearly),
];

impl GfsPolicy {
    /// Reads a policy from retention options.
    ///
    /// # Errors
    /// A reason naming the refused option: unknown, unparsable, or no rule at all.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut counts = Vec::new();
        let mut keep_within = None;
        let mut timezone = Tz::UTC;
        let mut mode = GfsMode::Independent;
        for (key, value) in options {
            if let Some((_, rule)) = OPTIONS.iter().find(|(name, _)| name == key) {
                if let Some(count) = Count::parse(key, value)? {
                    counts.push((rule.name(), count));
                }
                continue;
            }
            match key.as_str() {
                "keepWithin" => {
                    let d: CalendarDuration = value.parse().map_err(|e| format!("keepWithin: {e}"))?;
                    keep_within = (!d.is_zero()).then_some(d);
                }
                "timezone" => {
                    timezone = value
                        .parse()
                        .map_err(|_| format!("timezone: {value:?} is not an IANA time zone (like Europe/Warsaw)"))?;
                }
                "mode" => {
                    mode = match value.as_str() {
                        "independent" => GfsMode::Independent,
                        "cascade" => GfsMode::Cascade,
                        _ => return Err(format!("mode: {value:?} is not independent or cascade")),
                    }
                }
                _ => {
                    return Err(format!(
                        "{key:?} is not an option of gfs (keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, \
                         keepYearly, keepWithin, timezone, mode)"
                    ));
                }
            }
        }
        // Finest first, whatever the order of the options.
        counts.sort_by_key(|(name, _)| Rule::ALL.iter().position(|r| r.name() == *name));
        if counts.is_empty() && keep_within.is_none() {
            return Err("gfs needs at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, \
                        keepYearly, keepWithin"
                .to_owned());
        }
        Ok(GfsPolicy { counts, keep_within, timezone, mode })
    }

    fn count(&self, rule: Rule) -> Option<Count> {
        self.counts.iter().find(|(name, _)| *name == rule.name()).map(|(_, c)| *c)
    }

    fn depends_on_time(&self) -> bool {
        self.keep_within.is_some()
    }
}

/// One version (or the incoming upload) as the plan walks them, newest first.
struct Entry {
    /// Its index in the input, or `None` for the incoming upload.
    index: Option<usize>,
    created_at: Timestamp,
    number: u64,
    protected: bool,
    periods: Periods,
}

/// Grandfather-father-son retention, by the policy in the collection's retention options
/// (see [`GfsPolicy`]), by server receipt time. Every decision carries its reasons
/// (`daily 2026-11-20`, `within 10d`, `oldest monthly`, `held`). On top of the rules, the
/// collection's `max_versions` holds: the oldest versions beyond it go, whatever the rules
/// want (its limits are the quota's contract).
///
/// ```
/// use backup_core::rotation::{Gfs, Mark, RotationInput, RotationStrategy, VersionSummary};
/// use backup_core::{CollectionSpec, Limits, RetentionSpec, Timestamp, VersionId};
/// use chrono::{Duration, TimeZone, Utc};
///
/// let spec = CollectionSpec::new("db-${version}", Limits::new(100, 10, 1000)?)
///     .with_retention(RetentionSpec::named("gfs").with_option("keepDaily", "2").with_option("keepLast", "1"));
/// let t0 = Timestamp::from(Utc.with_ymd_and_hms(2026, 11, 18, 8, 0, 0).unwrap());
/// // Two uploads a day, on three days.
/// let versions: Vec<_> = (0..6)
///     .map(|i| VersionSummary::new(VersionId::generate(), i + 1, 5, t0 + Duration::hours(12 * i as i64)))
///     .collect();
/// let now = t0 + Duration::days(3);
/// let plan = Gfs.plan(&RotationInput::new(&spec, &versions, 6, None, now));
/// let kept: Vec<u64> = plan.decisions.iter().filter(|d| d.mark == Mark::Keep).map(|d| d.number).collect();
/// assert_eq!(kept, [4, 6]);
/// assert_eq!(plan.decisions[5].reasons, ["last", "daily 2026-11-20"]);
/// assert_eq!(plan.decisions[3].reasons, ["daily 2026-11-19"]);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Gfs;

impl Gfs {
    /// The name `gfs`.
    pub const NAME: &'static str = "gfs";
}

impl RotationStrategy for Gfs {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, spec: &CollectionSpec) -> Result<(), String> {
        GfsPolicy::from_options(&spec.retention.options).map(|_| ())
    }

    /// Every committed version: the rules bound them (the periods they keep, the versions
    /// within `keepWithin`), and so does `max_versions`; the history of purged versions is
    /// never read.
    fn needs(&self, _spec: &CollectionSpec, _counters: &Counters) -> VersionRange {
        VersionRange::All
    }

    fn depends_on_time(&self, spec: &CollectionSpec) -> bool {
        GfsPolicy::from_options(&spec.retention.options).is_ok_and(|p| p.depends_on_time())
    }

    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan {
        match GfsPolicy::from_options(&input.spec.retention.options) {
            Ok(policy) => plan(&policy, input),
            // Validated when the collection was made; keep everything rather than guess.
            Err(reason) => RotationPlan::new(
                input
                    .versions
                    .iter()
                    .map(|v| RotationDecision::new(v.id, v.number, Mark::Keep, format!("gfs: {reason}")))
                    .collect(),
            ),
        }
    }
}

/// The plan of a policy over the input's versions (and the incoming upload).
pub(crate) fn plan(policy: &GfsPolicy, input: &RotationInput<'_>) -> RotationPlan {
    let mut entries: Vec<Entry> =
        input.versions.iter().enumerate().map(|(i, v)| entry(Some(i), v, policy.timezone)).collect();
    if let Some(Incoming { created_at, .. }) = input.incoming {
        let number = input.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1;
        entries.push(Entry {
            index: None,
            created_at,
            number,
            protected: false,
            periods: Periods::of(created_at, policy.timezone),
        });
    }
    // Newest first; among equal times the higher number (committed later) first.
    entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.number.cmp(&a.number)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); entries.len()];
    match policy.mode {
        GfsMode::Independent => independent(policy, &entries, input.now, &mut reasons),
        GfsMode::Cascade => cascade(policy, &entries, input.now, &mut reasons),
    }
    let mut keep: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
    for (i, e) in entries.iter().enumerate() {
        if e.protected {
            keep[i] = true;
        }
    }
    // The count limit holds whatever the rules want: the oldest go first. The incoming
    // upload and protected versions stay (the engine refuses an upload that cannot fit).
    let max = u64::from(input.spec.limits.max_versions);
    let outside = input.committed.saturating_sub(input.versions.len() as u64);
    let kept_existing = entries.iter().zip(&keep).filter(|(e, k)| **k && e.index.is_some()).count() as u64;
    let mut kept = outside + kept_existing + u64::from(input.incoming.is_some());
    let mut over_limit = vec![false; entries.len()];
    for i in (0..entries.len()).rev() {
        if kept <= max {
            break;
        }
        if keep[i] && entries[i].index.is_some() && !entries[i].protected {
            keep[i] = false;
            over_limit[i] = true;
            kept -= 1;
        }
    }
    let mut decisions: Vec<Option<RotationDecision>> = vec![None; input.versions.len()];
    for (i, e) in entries.iter().enumerate() {
        let Some(index) = e.index else { continue };
        let v = &input.versions[index];
        let decision = if keep[i] {
            let mut why = std::mem::take(&mut reasons[i]);
            if e.protected {
                why.insert(0, PROTECTED.to_owned());
            }
            RotationDecision::with_reasons(v.id, v.number, Mark::Keep, why)
        } else if over_limit[i] {
            RotationDecision::new(v.id, v.number, Mark::Evict, format!("max_versions={max}: the oldest beyond it go"))
        } else {
            RotationDecision::new(v.id, v.number, Mark::Evict, "gfs: no rule keeps it")
        };
        decisions[index] = Some(decision);
    }
    RotationPlan::new(decisions.into_iter().flatten().collect())
}

fn entry(index: Option<usize>, v: &VersionSummary, tz: Tz) -> Entry {
    Entry {
        index,
        created_at: v.created_at,
        number: v.number,
        protected: v.protected,
        periods: Periods::of(v.created_at, tz),
    }
}

/// The newest receipt time that is not in the future (restic's `findLatestTimestamp`; the
/// upload being committed was received at `now`, so `now` itself counts).
fn latest(entries: &[Entry], now: Timestamp) -> Option<Timestamp> {
    entries.iter().map(|e| e.created_at).filter(|t| *t <= now).max()
}

/// restic's `ApplyPolicy`: every rule walks all versions, newest first.
fn independent(policy: &GfsPolicy, entries: &[Entry], now: Timestamp, reasons: &mut [Vec<String>]) {
    let within = policy.keep_within.and_then(|d| latest(entries, now).map(|l| (d, d.before(l, policy.timezone))));
    let mut buckets: Vec<(Rule, Count, Option<i64>)> =
        Rule::ALL.iter().filter_map(|r| policy.count(*r).map(|c| (*r, c, None))).collect();
    let last_index = entries.len().saturating_sub(1);
    for (nr, e) in entries.iter().enumerate() {
        if let Some((d, from)) = within
            && e.created_at > from
        {
            reasons[nr].push(format!("within {d}"));
        }
        for (rule, count, last) in &mut buckets {
            let spent = matches!(count, Count::Periods(0));
            if spent {
                continue;
            }
            let val = rule.key(&e.periods, nr);
            if Some(val) != *last || nr == last_index {
                let oldest = Some(val) == *last && nr == last_index;
                *last = Some(val);
                if let Count::Periods(n) = count {
                    *n -= 1;
                }
                reasons[nr].push(describe(*rule, val, oldest));
            }
        }
    }
}

/// Proxmox Backup Server's `compute_prune_info`: rules run finest first over the versions
/// they have not marked yet.
fn cascade(policy: &GfsPolicy, entries: &[Entry], now: Timestamp, reasons: &mut [Vec<String>]) {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Marked {
        Keep,
        Remove,
    }
    let mut mark: Vec<Option<Marked>> = vec![None; entries.len()];
    if let Some((d, from)) =
        policy.keep_within.and_then(|d| latest(entries, now).map(|l| (d, d.before(l, policy.timezone))))
    {
        for (i, e) in entries.iter().enumerate() {
            if e.created_at > from {
                mark[i] = Some(Marked::Keep);
                reasons[i].push(format!("within {d}"));
            }
        }
    }
    for rule in Rule::ALL {
        let Some(count) = policy.count(rule) else { continue };
        let limit = match count {
            Count::Periods(n) => n as usize,
            Count::All => usize::MAX,
        };
        let already: HashSet<i64> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| mark[*i] == Some(Marked::Keep))
            .map(|(i, e)| rule.key(&e.periods, i))
            .collect();
        let mut included: HashSet<i64> = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            if mark[i].is_some() || e.protected {
                continue;
            }
            let sel = rule.key(&e.periods, i);
            if already.contains(&sel) {
                continue;
            }
            if included.contains(&sel) {
                mark[i] = Some(Marked::Remove);
            } else {
                if included.len() >= limit {
                    break;
                }
                included.insert(sel);
                mark[i] = Some(Marked::Keep);
                reasons[i].push(describe(rule, sel, false));
            }
        }
    }
}

/// `daily 2026-11-20`, `last`, `oldest monthly`.
fn describe(rule: Rule, key: i64, oldest: bool) -> String {
    match (rule, oldest) {
        (Rule::Last, false) => "last".to_owned(),
        (_, true) => format!("oldest {}", rule.name()),
        (_, false) => format!("{} {}", rule.name(), period_label(rule, key)),
    }
}
