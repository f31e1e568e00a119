//! A collection's health as a decision: one pure function, [`assess`], from what the catalog
//! keeps of a collection (its spec, its counters, its newest version), its backup windows and
//! the time, to a [`Check`] per rule with a [`Verdict`] and a reason, as rotation gives a mark
//! and reasons per version. The engine's [`Engine::health`](crate::Engine::health),
//! [`Engine::usage`](crate::Engine::usage) and [`Engine::health_page`](crate::Engine::health_page)
//! all call it, so a health route, a dashboard, metrics and alerts built on them cannot
//! disagree.
//!
//! The checks, with backup-repository's names ([`CheckKind::name`]):
//!
//! | check | passes when |
//! |---|---|
//! | [`CheckKind::Window`] (`BackupWindowValidator`) | for some window, the newest version was received in its most recent slot, or that slot is open now (a backup may be in progress); made only for a collection with windows |
//! | [`CheckKind::SoftLimit`] (`VersionsSizeValidator`) | no committed version is bigger than `max_version_size` (none uses the extra space) |
//! | [`CheckKind::HardLimit`] (`SumOfVersionsValidator`) | the committed versions sum to at most `max_collection_size` |
//! | [`CheckKind::Integrity`] (`IntegrityValidator`) | no committed version is quarantined ([`Engine::scrub`](crate::Engine::scrub)) |
//!
//! Each reads counters the catalog keeps in the collection's row, so a health costs one row
//! whatever the history; the failing soft-limit and integrity checks name the first version
//! at fault, which the engine looks for only when the counters say there is one.
//!
//! ```
//! use backup_core::health::{CheckKind, Verdict};
//! use backup_core::{Actor, CollectionSpec, Engine, Limits};
//! use bytes::Bytes;
//! use futures::stream;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = Engine::in_memory();
//! let (me, id) = (Actor::user("me"), "db".parse()?);
//! // Versions of up to 4 bytes each, 16 bytes in all: 8 bytes of extra space.
//! engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(2, 4, 16)?)).await?;
//! engine.upload(&me, &id, stream::iter([Ok::<_, std::io::Error>(Bytes::from("1234"))])).await?;
//! assert!(engine.health(&me, &id).await?.health.healthy());
//!
//! // A version over the soft limit fits the extra space, and the health says so.
//! engine.upload(&me, &id, stream::iter([Ok::<_, std::io::Error>(Bytes::from("123456"))])).await?;
//! let report = engine.health(&me, &id).await?;
//! let soft = report.health.check(CheckKind::SoftLimit).unwrap();
//! assert_eq!(soft.verdict, Verdict::Fail);
//! assert_eq!(
//!     soft.reason,
//!     "maximum filesize is bigger than collection soft limit per file. Failed file: db-2 (size=6b)"
//! );
//! // No window check: the engine's authorizer (allow-all) gives this collection no windows.
//! let kinds: Vec<_> = report.health.checks.iter().map(|c| c.kind.name()).collect();
//! assert_eq!(kinds, ["VersionsSizeValidator", "SumOfVersionsValidator", "IntegrityValidator"]);
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::protocol::Counters;
use crate::spec::CollectionSpec;
use crate::time::Timestamp;
use crate::version::{Collection, Version};

/// A backup window as the health's window check sees it: its most recent slot, and a
/// description (its [`Display`](fmt::Display), as backup-repository writes it:
/// `interval(0 2 * * *) + 1h`).
///
/// Windows are policy: `backup-policy`'s cron windows implement this trait, and the engine gets
/// a collection's windows from its [`Authorizer`](crate::Authorizer)
/// ([`Authorizer::backup_windows`](crate::Authorizer::backup_windows)).
pub trait Window: fmt::Debug + fmt::Display + Send + Sync {
    /// The slot `(start, end)` of the most recent start strictly before `now`, if the window
    /// ever started before `now`.
    fn last_slot(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)>;
}

/// Which rule a [`Check`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CheckKind {
    /// The newest version came in a backup window's slot (or one is open now).
    Window,
    /// No version is over the soft limit (`max_version_size`).
    SoftLimit,
    /// The committed versions fit the hard limit (`max_collection_size`).
    HardLimit,
    /// No version is quarantined.
    Integrity,
    /// A place stays for the next upload: not every one of `max_versions` is taken by a
    /// held, protected or locked version (reported for collections with a lock policy).
    Capacity,
    /// Every replica the collection is copied to lags less than its limit (reported by the
    /// engine for collections with replicas, after the others; see [`crate::replica`]).
    Replication,
}

impl CheckKind {
    /// Every kind [`assess`] reports, in its order ([`CheckKind::Replication`], the engine's,
    /// comes after them).
    pub const ALL: [CheckKind; 5] =
        [CheckKind::Window, CheckKind::SoftLimit, CheckKind::HardLimit, CheckKind::Integrity, CheckKind::Capacity];

    /// backup-repository's name of the check, which its health route reports and its clients
    /// read: `BackupWindowValidator`, `VersionsSizeValidator`, `SumOfVersionsValidator`, and
    /// `IntegrityValidator` and `CapacityValidator` (ours).
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Window => "BackupWindowValidator",
            CheckKind::SoftLimit => "VersionsSizeValidator",
            CheckKind::HardLimit => "SumOfVersionsValidator",
            CheckKind::Integrity => "IntegrityValidator",
            CheckKind::Capacity => "CapacityValidator",
            CheckKind::Replication => "ReplicationValidator",
        }
    }

    /// A short name for people: `window`, `soft limit`, `hard limit`, `integrity`.
    pub fn label(self) -> &'static str {
        match self {
            CheckKind::Window => "window",
            CheckKind::SoftLimit => "soft limit",
            CheckKind::HardLimit => "hard limit",
            CheckKind::Integrity => "integrity",
            CheckKind::Capacity => "capacity",
            CheckKind::Replication => "replication",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The rule holds.
    Pass,
    /// The rule is broken: the collection is unhealthy.
    Fail,
}

/// One rule applied to a collection: its verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The rule.
    pub kind: CheckKind,
    /// Whether it holds.
    pub verdict: Verdict,
    /// Why, in one line: what failed (backup-repository's texts where it has the check), or
    /// what was found that satisfies the rule.
    pub reason: String,
}

impl Check {
    /// A check from its parts.
    pub fn new(kind: CheckKind, verdict: Verdict, reason: impl Into<String>) -> Self {
        Check { kind, verdict, reason: reason.into() }
    }

    fn pass(kind: CheckKind, reason: String) -> Self {
        Check::new(kind, Verdict::Pass, reason)
    }

    fn fail(kind: CheckKind, reason: String) -> Self {
        Check::new(kind, Verdict::Fail, reason)
    }

    /// Whether the rule holds.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// What is wrong, for a failed check.
    pub fn failure(&self) -> Option<&str> {
        (!self.passed()).then_some(self.reason.as_str())
    }
}

/// The checks of one collection, in the order of [`CheckKind::ALL`] (the window check only
/// when the collection has windows).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Health {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Health {
    /// Every check passed.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// The checks that failed.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed())
    }

    /// The check of this kind, if it was made.
    pub fn check(&self, kind: CheckKind) -> Option<&Check> {
        self.checks.iter().find(|c| c.kind == kind)
    }
}

/// What [`assess`] looks at, besides the windows and the time.
///
/// `first_over_soft_limit` and `first_quarantined` name the version a failing check points at;
/// they are needed only when the counters say there is one (`counters.overage > 0`,
/// `counters.quarantined > 0`): without them the check fails all the same, saying less.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Facts<'a> {
    /// The collection's spec (its limits).
    pub spec: &'a CollectionSpec,
    /// The collection's counters.
    pub counters: &'a Counters,
    /// The newest committed version.
    pub latest: Option<&'a Version>,
    /// The lowest-numbered committed version bigger than the soft limit.
    pub first_over_soft_limit: Option<&'a Version>,
    /// The lowest-numbered committed version in quarantine.
    pub first_quarantined: Option<&'a Version>,
}

impl<'a> Facts<'a> {
    /// The facts of a collection whose versions the caller did not read.
    pub fn new(spec: &'a CollectionSpec, counters: &'a Counters) -> Self {
        Facts { spec, counters, latest: None, first_over_soft_limit: None, first_quarantined: None }
    }

    /// The newest committed version.
    pub fn with_latest(mut self, latest: Option<&'a Version>) -> Self {
        self.latest = latest;
        self
    }

    /// The first version over the soft limit.
    pub fn with_first_over_soft_limit(mut self, version: Option<&'a Version>) -> Self {
        self.first_over_soft_limit = version;
        self
    }

    /// The first quarantined version.
    pub fn with_first_quarantined(mut self, version: Option<&'a Version>) -> Self {
        self.first_quarantined = version;
        self
    }

    /// Whether the counters say a version is over the soft limit, and whether one is
    /// quarantined: the versions [`Facts::with_first_over_soft_limit`] and
    /// [`Facts::with_first_quarantined`] are worth looking for.
    pub fn details_needed(counters: &Counters) -> (bool, bool) {
        (counters.overage > 0, counters.quarantined > 0)
    }
}

/// A collection's health at `now`: the window check (only when `windows` is not empty), then
/// the soft limit, the hard limit, the integrity, and the capacity (only for a collection with
/// a lock policy). Pure: no I/O, the same answer for the same facts.
pub fn assess(facts: &Facts<'_>, windows: &[Arc<dyn Window>], now: DateTime<Utc>) -> Health {
    let mut checks = Vec::with_capacity(4);
    if !windows.is_empty() {
        checks.push(window_check(facts.latest, windows, now));
    }
    checks.push(soft_limit_check(facts));
    checks.push(hard_limit_check(facts));
    checks.push(integrity_check(facts));
    if facts.spec.lock.is_some() {
        checks.push(capacity_check(facts));
    }
    Health { checks }
}

/// Whether the next upload has a place: with every place taken by versions no rotation may
/// evict (locked, held, protected), uploads are refused until a lock ends. Counted from the
/// counters, where a lock that ended counts until maintenance clears it.
fn capacity_check(facts: &Facts<'_>) -> Check {
    let (kept, max) = (facts.counters.protected, u64::from(facts.spec.limits.max_versions));
    if kept >= max {
        Check::fail(
            CheckKind::Capacity,
            format!(
                "collection is full of versions locked, held or protected ({kept} of max_versions = {max}): uploads \
                 are refused until a lock ends"
            ),
        )
    } else {
        Check::pass(
            CheckKind::Capacity,
            format!("{kept} of max_versions = {max} places are taken by locked, held or protected versions"),
        )
    }
}

/// backup-repository's rule: for each window, its most recent slot; the newest version was
/// received in it (ends included), or now is strictly inside it.
fn window_check(latest: Option<&Version>, windows: &[Arc<dyn Window>], now: DateTime<Utc>) -> Check {
    let created = latest.map(|v| v.created_at.to_datetime());
    for w in windows {
        let Some((start, end)) = w.last_slot(now) else { continue };
        if let Some(t) = created.filter(|t| start <= *t && *t <= end) {
            return Check::pass(
                CheckKind::Window,
                format!(
                    "the latest backup, created at {}, came in the slot of {w} from {} to {}",
                    t.to_rfc3339(),
                    start.to_rfc3339(),
                    end.to_rfc3339()
                ),
            );
        }
        if start < now && now < end {
            return Check::pass(
                CheckKind::Window,
                format!(
                    "a slot of {w} is open now, from {} to {}: a backup may be in progress",
                    start.to_rfc3339(),
                    end.to_rfc3339()
                ),
            );
        }
    }
    Check::fail(
        CheckKind::Window,
        format!(
            "previous backup was not executed in expected time slots: {}. Latest backup created at: {}",
            windows.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            created.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
        ),
    )
}

fn soft_limit_check(facts: &Facts<'_>) -> Check {
    let soft = facts.spec.limits.max_version_size;
    let kind = CheckKind::SoftLimit;
    match facts.first_over_soft_limit {
        Some(v) => Check::fail(
            kind,
            format!(
                "maximum filesize is bigger than collection soft limit per file. Failed file: {} (size={}b)",
                v.filename, v.size
            ),
        ),
        None if facts.counters.overage > 0 => Check::fail(
            kind,
            format!(
                "maximum filesize is bigger than collection soft limit per file: versions pass the soft limit of \
                 {soft}b by {}b in all",
                facts.counters.overage
            ),
        ),
        None => Check::pass(kind, format!("no version is bigger than the soft limit of {soft}b")),
    }
}

fn hard_limit_check(facts: &Facts<'_>) -> Check {
    let (sum, hard) = (facts.counters.bytes, facts.spec.limits.max_collection_size);
    if sum <= hard {
        Check::pass(CheckKind::HardLimit, format!("Summary of all files is {sum}b, within the hard limit of {hard}b"))
    } else {
        Check::fail(
            CheckKind::HardLimit,
            format!("Summary of all files is {sum}b, while collection hard limit is {hard}b"),
        )
    }
}

fn integrity_check(facts: &Facts<'_>) -> Check {
    let kind = CheckKind::Integrity;
    let count = facts.counters.quarantined.max(u64::from(facts.first_quarantined.is_some()));
    if count == 0 {
        return Check::pass(kind, "no version is quarantined".to_owned());
    }
    let mut reason = format!("{count} versions are quarantined: their bytes are damaged or missing");
    if let Some(v) = facts.first_quarantined {
        reason.push_str(&format!(". First: version {} ({})", v.number, v.quarantined.as_deref().unwrap_or_default()));
    }
    Check::fail(kind, reason)
}

/// A collection's health as the engine read it: the collection, what its counters say, its
/// newest version, and the checks ([`Engine::health`](crate::Engine::health)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionHealth {
    /// The collection and its spec.
    pub collection: Collection,
    /// Committed versions.
    pub versions: u64,
    /// Σ committed sizes, in bytes.
    pub committed_bytes: u64,
    /// Committed versions in quarantine.
    pub quarantined_versions: u64,
    /// When the newest commit happened.
    pub last_committed_at: Option<Timestamp>,
    /// The newest committed version.
    pub latest: Option<Version>,
    /// The checks.
    pub health: Health,
}

impl CollectionHealth {
    /// Every check passed.
    pub fn healthy(&self) -> bool {
        self.health.healthy()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::digest::{Digest, DigestAlgorithm};
    use crate::id::VersionId;
    use crate::spec::Limits;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).unwrap()
    }

    /// A window that opens every `every` minutes past midnight for `open` minutes, described as
    /// backup-repository's cron windows are.
    #[derive(Debug)]
    struct Every {
        every: u32,
        open: u32,
        text: &'static str,
    }

    impl fmt::Display for Every {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Window for Every {
        fn last_slot(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
            let midnight = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let minutes = (now - midnight).num_seconds();
            if minutes <= 0 {
                return None;
            }
            // The most recent start strictly before now.
            let period = i64::from(self.every) * 60;
            let start = midnight + chrono::Duration::seconds((minutes - 1) / period * period);
            Some((start, start + chrono::Duration::minutes(i64::from(self.open))))
        }
    }

    fn half_hourly() -> Arc<dyn Window> {
        Arc::new(Every { every: 30, open: 10, text: "interval(*/30 * * * *) + 10m" })
    }

    fn hourly() -> Arc<dyn Window> {
        Arc::new(Every { every: 60, open: 5, text: "interval(0 * * * *) + 5m" })
    }

    fn spec() -> CollectionSpec {
        // 3 versions of up to 100 bytes, 400 in all: 100 bytes of extra space.
        CollectionSpec::new("db-${version}.gz", Limits::new(3, 100, 400).unwrap())
    }

    fn version(number: u64, size: u64, created: DateTime<Utc>) -> Version {
        let digest = Digest::of(DigestAlgorithm::default(), b"");
        Version::new(VersionId::generate(), "db".parse().unwrap(), number, format!("data/db/{number}"), size, digest)
            .with_filename(format!("db-{number}.gz"))
            .with_times(created, created)
    }

    fn counters(versions: u64, bytes: u64, overage: u64, quarantined: u64) -> Counters {
        Counters { versions, bytes, overage, quarantined, next_number: versions + 1, ..Counters::empty() }
    }

    fn verdicts(health: &Health) -> Vec<(&'static str, Verdict)> {
        health.checks.iter().map(|c| (c.kind.name(), c.verdict)).collect()
    }

    /// The window check, table-tested: met, missed, open now, several windows, never backed up.
    #[test]
    fn windows_met_missed_and_open() {
        use Verdict::{Fail, Pass};
        let in_slot = version(3, 10, at(1, 35, 0));
        let before_slot = version(3, 10, at(1, 20, 0));
        let at_start = version(3, 10, at(1, 30, 0));
        let at_end = version(3, 10, at(1, 40, 0));
        type Row<'a> = (&'a str, Option<&'a Version>, Vec<Arc<dyn Window>>, DateTime<Utc>, Verdict, &'a str);
        let table: Vec<Row<'_>> = vec![
            (
                "received in the last slot",
                Some(&in_slot),
                vec![half_hourly()],
                at(1, 45, 0),
                Pass,
                "the latest backup, created at 2026-01-01T01:35:00+00:00, came in the slot of \
                 interval(*/30 * * * *) + 10m from 2026-01-01T01:30:00+00:00 to 2026-01-01T01:40:00+00:00",
            ),
            ("received at the slot's start", Some(&at_start), vec![half_hourly()], at(1, 45, 0), Pass, ""),
            ("received at the slot's end", Some(&at_end), vec![half_hourly()], at(1, 45, 0), Pass, ""),
            (
                "missed: received before the last slot, which is closed",
                Some(&before_slot),
                vec![half_hourly()],
                at(1, 45, 0),
                Fail,
                "previous backup was not executed in expected time slots: interval(*/30 * * * *) + 10m. \
                 Latest backup created at: 2026-01-01T01:20:00+00:00",
            ),
            (
                "open now: a backup may be in progress",
                Some(&before_slot),
                vec![half_hourly()],
                at(1, 32, 0),
                Pass,
                "a slot of interval(*/30 * * * *) + 10m is open now, from 2026-01-01T01:30:00+00:00 to \
                 2026-01-01T01:40:00+00:00: a backup may be in progress",
            ),
            ("open now, never backed up", None, vec![half_hourly()], at(1, 32, 0), Pass, ""),
            (
                "never backed up, the slot closed",
                None,
                vec![half_hourly(), hourly()],
                at(1, 45, 0),
                Fail,
                "previous backup was not executed in expected time slots: interval(*/30 * * * *) + 10m, \
                 interval(0 * * * *) + 5m. Latest backup created at: never",
            ),
            ("one window of two met", Some(&before_slot), vec![hourly(), half_hourly()], at(1, 32, 0), Pass, ""),
            ("before any slot", Some(&in_slot), vec![half_hourly()], at(0, 0, 0), Fail, ""),
        ];
        let (spec, counters) = (spec(), counters(1, 10, 0, 0));
        for (case, latest, windows, now, verdict, reason) in table {
            let facts = Facts::new(&spec, &counters).with_latest(latest);
            let health = assess(&facts, &windows, now);
            let check = &health.checks[0];
            assert_eq!((check.kind, check.verdict), (CheckKind::Window, verdict), "{case}: {check:?}");
            if !reason.is_empty() {
                assert_eq!(check.reason, reason, "{case}");
            }
            assert_eq!(health.healthy(), verdict == Pass, "{case}: the other checks pass");
        }
    }

    /// Every check, passing and failing, with backup-repository's texts where it has the check.
    #[test]
    fn every_check_passes_and_fails() {
        use Verdict::{Fail, Pass};
        let spec = spec();
        let big = version(2, 150, at(1, 0, 0));
        let damaged =
            version(1, 10, at(0, 30, 0)).with_verification(Some(at(1, 0, 0).into()), Some("digest differs".into()));
        type Row<'a> = (&'a str, Counters, Option<&'a Version>, Option<&'a Version>, [Verdict; 3], [&'a str; 3]);
        let table: Vec<Row<'_>> = vec![
            (
                "all within",
                counters(2, 180, 0, 0),
                None,
                None,
                [Pass, Pass, Pass],
                [
                    "no version is bigger than the soft limit of 100b",
                    "Summary of all files is 180b, within the hard limit of 400b",
                    "no version is quarantined",
                ],
            ),
            (
                "a version over the soft limit, named",
                counters(2, 240, 50, 0),
                Some(&big),
                None,
                [Fail, Pass, Pass],
                [
                    "maximum filesize is bigger than collection soft limit per file. Failed file: db-2.gz (size=150b)",
                    "",
                    "",
                ],
            ),
            (
                "over the soft limit, by the counters alone",
                counters(2, 240, 50, 0),
                None,
                None,
                [Fail, Pass, Pass],
                [
                    "maximum filesize is bigger than collection soft limit per file: versions pass the soft limit of \
                     100b by 50b in all",
                    "",
                    "",
                ],
            ),
            (
                // A hard limit lowered under what is committed.
                "over the hard limit",
                counters(3, 401, 0, 0),
                None,
                None,
                [Pass, Fail, Pass],
                ["", "Summary of all files is 401b, while collection hard limit is 400b", ""],
            ),
            (
                "quarantined, the first named",
                counters(2, 20, 0, 2),
                None,
                Some(&damaged),
                [Pass, Pass, Fail],
                [
                    "",
                    "",
                    "2 versions are quarantined: their bytes are damaged or missing. First: version 1 (digest differs)",
                ],
            ),
            (
                "quarantined, by the counters alone",
                counters(2, 20, 0, 1),
                None,
                None,
                [Pass, Pass, Fail],
                ["", "", "1 versions are quarantined: their bytes are damaged or missing"],
            ),
        ];
        for (case, counters, over, quarantined, verdicts_wanted, reasons) in table {
            let facts =
                Facts::new(&spec, &counters).with_first_over_soft_limit(over).with_first_quarantined(quarantined);
            let health = assess(&facts, &[], at(2, 0, 0));
            let wanted: Vec<_> = [CheckKind::SoftLimit, CheckKind::HardLimit, CheckKind::Integrity]
                .into_iter()
                .map(CheckKind::name)
                .zip(verdicts_wanted)
                .collect();
            assert_eq!(verdicts(&health), wanted, "{case}: no windows, no window check");
            for (check, reason) in health.checks.iter().zip(reasons) {
                if !reason.is_empty() {
                    assert_eq!(check.reason, reason, "{case}");
                }
                assert_eq!(check.failure().is_some(), !check.passed(), "{case}");
            }
            assert_eq!(health.healthy(), verdicts_wanted.iter().all(|v| *v == Pass), "{case}");
            assert_eq!(health.failing().count(), verdicts_wanted.iter().filter(|v| **v == Fail).count(), "{case}");
        }
    }

    #[test]
    fn names_and_labels_are_backup_repositorys() {
        let names: Vec<_> = CheckKind::ALL.iter().map(|k| (k.name(), k.label())).collect();
        assert_eq!(
            names,
            [
                ("BackupWindowValidator", "window"),
                ("VersionsSizeValidator", "soft limit"),
                ("SumOfVersionsValidator", "hard limit"),
                ("IntegrityValidator", "integrity"),
                ("CapacityValidator", "capacity"),
            ]
        );
        let locked = spec().with_lock(crate::LockPolicy::new(crate::LockMode::Governance, chrono::Duration::days(1)));
        let counters = counters(0, 0, 0, 0);
        let facts = Facts::new(&locked, &counters);
        let order: Vec<_> = assess(&facts, &[half_hourly()], at(1, 45, 0)).checks.iter().map(|c| c.kind).collect();
        assert_eq!(order, CheckKind::ALL, "the order backup-repository reports them in");
        let plain = spec();
        let order: Vec<_> = assess(&Facts::new(&plain, &counters), &[half_hourly()], at(1, 45, 0))
            .checks
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(order, CheckKind::ALL[..4], "capacity only for a collection with a lock policy");
        assert_eq!(Facts::details_needed(&counters), (false, false));
        assert_eq!(Facts::details_needed(&self::counters(1, 1, 1, 1)), (true, true));
    }
}
