//! Retention strategies: worked examples, properties, time zones, and the retention inside
//! the commit and the maintenance.

use std::time::Duration;

use backup_core::catalog::protocol::ProtectionChange;
use backup_core::rotation::{Mark, RotationDecision, VersionSummary, plan};
use backup_core::testing::{body_of, pattern};
use backup_core::{
    Actor, Clock, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, ManualClock, RetentionSpec, Timestamp,
    VersionId, VersionQuery,
};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

fn at(s: &str) -> Timestamp {
    Timestamp::from(chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

fn gfs(options: &[(&str, &str)]) -> CollectionSpec {
    let mut r = RetentionSpec::named("gfs");
    for (k, v) in options {
        r = r.with_option(*k, *v);
    }
    CollectionSpec::new("g-${version}", Limits::new(100_000, 1 << 20, 100_000 << 20).unwrap()).with_retention(r)
}

fn summaries(times: &[Timestamp]) -> Vec<VersionSummary> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.iter().enumerate().map(|(i, t)| VersionSummary::new(VersionId::generate(), i as u64 + 1, 10, *t)).collect()
}

fn kept(decisions: &[RotationDecision]) -> Vec<u64> {
    decisions.iter().filter(|d| d.mark == Mark::Keep).map(|d| d.number).collect()
}

/// restic's documentation (`forget`): snapshots every day at noon for two weeks, then
/// `--keep-daily 7 --keep-weekly 2`: the last seven days, and the newest of each of the two
/// newest weeks (overlapping with the days, so only one more version).
#[test]
fn daily_and_weekly_like_restic() {
    let times: Vec<Timestamp> = (1..=14).map(|d| at(&format!("2026-11-{d:02}T12:00:00Z"))).collect();
    let versions = summaries(&times);
    let spec = gfs(&[("keepDaily", "7"), ("keepWeekly", "2")]);
    let decisions = plan(&spec, &versions, at("2026-11-15T00:00:00Z")).unwrap();
    // Nov 8..14 daily; weekly: W46 (Nov 9..15) newest is the 14th, W45 (Nov 2..8) newest the
    // 8th, already kept.
    assert_eq!(kept(&decisions), [8, 9, 10, 11, 12, 13, 14]);
    assert_eq!(decisions[13].reasons, ["daily 2026-11-14", "weekly 2026-W46"]);
    assert_eq!(decisions[7].reasons, ["daily 2026-11-08", "weekly 2026-W45"]);
    assert!(decisions[0].reasons[0].starts_with("gfs: no rule keeps it"));
}

/// A rule whose count is not spent keeps the oldest version too (restic).
#[test]
fn an_unspent_rule_keeps_the_oldest() {
    let times = [at("2026-11-01T10:00:00Z"), at("2026-11-01T11:00:00Z"), at("2026-11-02T10:00:00Z")];
    let decisions = plan(&gfs(&[("keepDaily", "5")]), &summaries(&times), at("2026-11-03T00:00:00Z")).unwrap();
    assert_eq!(kept(&decisions), [1, 2, 3]);
    assert_eq!(decisions[0].reasons, ["oldest daily"]);
    // Spent: the oldest goes.
    let decisions = plan(&gfs(&[("keepDaily", "2")]), &summaries(&times), at("2026-11-03T00:00:00Z")).unwrap();
    assert_eq!(kept(&decisions), [2, 3]);
}

/// Proxmox Backup Server's cascade: a period already covered by a version a finer rule kept
/// uses no count; restic's independent rules count it again.
#[test]
fn cascade_skips_covered_periods_independent_counts_them() {
    // One version a day for 20 days.
    let times: Vec<Timestamp> = (1..=20).map(|d| at(&format!("2026-11-{d:02}T12:00:00Z"))).collect();
    let versions = summaries(&times);
    let independent =
        plan(&gfs(&[("keepDaily", "3"), ("keepWeekly", "2")]), &versions, at("2026-11-21T00:00:00Z")).unwrap();
    let cascade = plan(
        &gfs(&[("keepDaily", "3"), ("keepWeekly", "2"), ("mode", "cascade")]),
        &versions,
        at("2026-11-21T00:00:00Z"),
    )
    .unwrap();
    // Days 18, 19, 20. W47 (16..22): restic's weekly keeps the 20th again (counted), W46:
    // the 15th. PBS's weekly skips W47 (covered by the daily 20th) and keeps W46 and W45.
    assert_eq!(kept(&independent), [15, 18, 19, 20]);
    assert_eq!(kept(&cascade), [8, 15, 18, 19, 20]);
}

/// `keepWithin` is relative to the newest version, in calendar units.
#[test]
fn within_is_relative_to_the_newest_version() {
    let times = [
        at("2026-01-01T00:00:00Z"),
        at("2026-01-09T00:00:01Z"),
        at("2026-01-10T00:00:00Z"),
        at("2026-01-19T00:00:00Z"),
    ];
    let decisions = plan(&gfs(&[("keepWithin", "10d")]), &summaries(&times), at("2026-06-01T00:00:00Z")).unwrap();
    // The newest is Jan 19: within 10 days means after Jan 9 00:00.
    assert_eq!(kept(&decisions), [2, 3, 4]);
    assert_eq!(decisions[1].reasons, ["within 10d"]);
}

/// Days, weeks and months are the collection's time zone's: two uploads an hour apart around
/// Warsaw's midnight are one UTC day and two local days; the DST night still has its day.
#[test]
fn periods_are_counted_in_the_collections_time_zone() {
    let times = [at("2026-10-24T21:30:00Z"), at("2026-10-24T22:30:00Z"), at("2026-10-25T12:00:00Z")];
    let utc =
        plan(&gfs(&[("keepDaily", "1"), ("keepLast", "1")]), &summaries(&times), at("2026-10-26T00:00:00Z")).unwrap();
    let waw = plan(
        &gfs(&[("keepDaily", "2"), ("timezone", "Europe/Warsaw")]),
        &summaries(&times),
        at("2026-10-26T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(kept(&utc), [3]);
    // In Warsaw (CEST, +2) 21:30Z is 23:30 on the 24th, 22:30Z is 00:30 on the 25th: the
    // 25th's newest is version 3 (the DST change that night makes it a 25-hour day).
    assert_eq!(kept(&waw), [1, 3]);
    assert_eq!(waw[0].reasons, ["daily 2026-10-24"]);
    assert_eq!(waw[2].reasons, ["daily 2026-10-25"]);
}

fn arb_versions() -> impl Strategy<Value = Vec<(i64, bool)>> {
    // Receipt times within two years (minutes from a base), and a protected flag now and then.
    prop::collection::vec((0i64..(2 * 365 * 24 * 60), prop::bool::weighted(0.1)), 0..80)
}

fn arb_policy() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let count = prop_oneof![Just("-1".to_owned()), (0u32..6).prop_map(|n| n.to_string())];
    (
        count.clone(),
        count.clone(),
        count.clone(),
        count.clone(),
        count,
        prop::option::of(prop_oneof![Just("3d"), Just("36h"), Just("1m")]),
        prop::bool::ANY,
        prop_oneof![Just("UTC"), Just("Europe/Warsaw"), Just("America/New_York")],
    )
        .prop_map(|(last, daily, weekly, monthly, yearly, within, cascade, tz)| {
            let mut o = vec![
                ("keepLast", last),
                ("keepDaily", daily),
                ("keepWeekly", weekly),
                ("keepMonthly", monthly),
                ("keepYearly", yearly),
                ("timezone", tz.to_owned()),
                ("mode", if cascade { "cascade" } else { "independent" }.to_owned()),
            ];
            if let Some(w) = within {
                o.push(("keepWithin", w.to_owned()));
            }
            // At least one rule keeps something.
            o.push(("keepLast", "1".to_owned()));
            o.dedup_by_key(|(k, _)| *k);
            o
        })
}

fn build(
    versions: &[(i64, bool)],
    policy: &[(&'static str, String)],
    min_keep: u32,
) -> (CollectionSpec, Vec<VersionSummary>, Timestamp) {
    let base = at("2025-01-01T00:00:00Z");
    let mut times: Vec<(Timestamp, bool)> =
        versions.iter().map(|(m, p)| (base + chrono::Duration::minutes(*m), *p)).collect();
    times.sort_by_key(|t| t.0);
    let summaries = times
        .iter()
        .enumerate()
        .map(|(i, (t, p))| VersionSummary::new(VersionId::generate(), i as u64 + 1, 10, *t).with_protected(*p))
        .collect();
    let mut r = RetentionSpec::named("gfs").with_min_keep(min_keep);
    for (k, v) in policy {
        r = r.with_option(*k, v.clone());
    }
    let spec =
        CollectionSpec::new("p-${version}", Limits::new(100_000, 1 << 20, 100_000 << 20).unwrap()).with_retention(r);
    (spec, summaries, base + chrono::Duration::days(800))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Protected versions always stay; at least `min_keep` stay; the newest stays; the same
    /// input gives the same plan; every decision has a reason.
    #[test]
    fn plans_keep_what_they_must(versions in arb_versions(), policy in arb_policy(), min_keep in 0u32..5) {
        let (spec, vs, now) = build(&versions, &policy, min_keep);
        let decisions = plan(&spec, &vs, now).unwrap();
        prop_assert_eq!(&decisions, &plan(&spec, &vs, now).unwrap(), "deterministic");
        for (d, v) in decisions.iter().zip(&vs) {
            prop_assert!(!(v.protected && d.mark == Mark::Evict), "protected {} evicted", v.number);
            prop_assert!(!d.reasons.is_empty() && d.reasons.iter().all(|r| !r.is_empty()));
        }
        let kept = decisions.iter().filter(|d| d.mark == Mark::Keep).count();
        prop_assert!(kept >= (min_keep as usize).min(vs.len()), "{kept} kept, min_keep {min_keep}");
        if let Some(newest) = vs.iter().max_by_key(|v| (v.created_at, v.number)) {
            let d = decisions.iter().find(|d| d.number == newest.number).unwrap();
            prop_assert_eq!(d.mark, Mark::Keep, "the newest version {} goes: {:?}", newest.number, d);
        }
    }

    /// A newer version never brings back one the plan evicted, in restic's independent mode.
    /// Proxmox's cascade is not monotone this way (a finer rule that moves on to the new
    /// version uncovers a month, and the monthly rule picks an older version it passed over),
    /// as PBS's own prune is not; a version evicted at one commit is gone by the next, so the
    /// engine never brings one back either way.
    #[test]
    fn a_new_version_never_resurrects_an_evicted_one(versions in arb_versions(), policy in arb_policy(), later in 1i64..5000) {
        let policy: Vec<(&'static str, String)> = policy
            .into_iter()
            .map(|(k, v)| if k == "mode" { (k, "independent".to_owned()) } else { (k, v) })
            .collect();
        let (spec, vs, now) = build(&versions, &policy, 0);
        let before = plan(&spec, &vs, now).unwrap();
        let newest = vs.iter().map(|v| v.created_at).max().unwrap_or(now - chrono::Duration::days(1));
        let mut more = vs.clone();
        more.push(VersionSummary::new(VersionId::generate(), vs.len() as u64 + 1, 10, newest + chrono::Duration::minutes(later)));
        let after = plan(&spec, &more, now.max(newest + chrono::Duration::minutes(later + 1))).unwrap();
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(!(b.mark == Mark::Evict && a.mark == Mark::Keep), "version {} came back: {:?} then {:?}", b.number, b, a);
        }
    }
}

/// The GFS plan runs inside the commit: uploads by a manual clock, one a day, keep what the
/// policy says, with the reasons in the trashed versions; the maintenance applies a
/// `keepWithin` between uploads.
#[tokio::test]
async fn gfs_runs_in_the_commit_and_the_maintenance() {
    let clock = std::sync::Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()));
    let engine = Engine::builder().clock(clock.clone()).trash_retention(Duration::from_secs(3600)).build().unwrap();
    let me = Actor::user("u");
    let id: CollectionId = "g".parse().unwrap();
    let spec = CollectionSpec::new("g-${version}", Limits::new(50, 100, 5000).unwrap())
        .with_retention(RetentionSpec::named("gfs").with_option("keepDaily", "3").with_option("keepWithin", "2d"));
    engine.create_collection(&me, &id, spec).await.unwrap();
    for _ in 0..6 {
        engine.upload(&me, &id, body_of(pattern(1, 10), 5)).await.unwrap();
        clock.advance(chrono::Duration::hours(12));
    }
    // Received Nov 1 12:00, Nov 2 00:00 and 12:00, Nov 3 00:00 and 12:00, Nov 4 00:00.
    // keepDaily 3 keeps 6 (Nov 4), 5 (Nov 3), 3 (Nov 2); within 2d of the newest (after Nov 2
    // 00:00, strictly) keeps 3..6. Versions 1 and 2 went at the commits of 6.
    let listed = engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [3, 4, 5, 6]);
    let all = engine.versions(&me, &id, VersionQuery::first(10).with_trashed()).await.unwrap().items;
    let first = all.iter().find(|v| v.number == 1).expect("version 1 is in the trash");
    assert!(first.trash_reason.as_deref().is_some_and(|r| r.contains("no rule keeps it")), "{first:?}");
    let preview = engine.retention_preview(&me, &id).await.unwrap();
    assert_eq!(preview.len(), 4);
    // Time passes, no upload: within 2d is relative to the newest, so nothing ages out by
    // time alone under restic's rule, but a protection deadline that ends lets a version go.
    clock.advance(chrono::Duration::days(30));
    assert_eq!(engine.recover().await.unwrap().aged_out, 0);
    // A held version stays through any retention, and the maintenance clears a passed deadline.
    engine
        .protect_version(&me, &id, 3, ProtectionChange::until(Timestamp::from(clock.now()) + chrono::Duration::days(1)))
        .await
        .unwrap();
    // Dec 4: keepDaily keeps 7, 6, 5; within 2d only 7; 4 goes, 3 stays protected.
    engine.upload(&me, &id, body_of(pattern(2, 10), 5)).await.unwrap();
    let listed: Vec<u64> =
        engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items.iter().map(|v| v.number).collect();
    assert_eq!(listed, [3, 5, 6, 7], "3 is protected until tomorrow");
    clock.advance(chrono::Duration::days(2));
    let report = engine.recover().await.unwrap();
    assert_eq!(report.aged_out, 1, "the protection ended; the maintenance evicts it: {report:?}");
    let listed: Vec<u64> =
        engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items.iter().map(|v| v.number).collect();
    assert!(!listed.contains(&3), "{listed:?}");
}

/// Holds are capped; a held version cannot be deleted; an upload that cannot fit because
/// held versions take the places is refused saying so, and the hard limit holds.
#[tokio::test]
async fn holds_are_capped_and_refusals_name_them() {
    let engine = Engine::in_memory();
    let me = Actor::user("u");
    let id: CollectionId = "h".parse().unwrap();
    let spec = CollectionSpec::new("h-${version}", Limits::new(3, 100, 400).unwrap()).with_max_held_versions(2);
    engine.create_collection(&me, &id, spec).await.unwrap();
    // 150 + 150 + 100 bytes: the 100 bytes of extra space above the soft limit (400 − 3 × 100)
    // are taken by the first two.
    for (i, size) in [150, 150, 100].into_iter().enumerate() {
        engine.upload(&me, &id, body_of(pattern(i as u64, size), 50)).await.unwrap();
    }
    engine.protect_version(&me, &id, 1, ProtectionChange::hold()).await.unwrap();
    engine.protect_version(&me, &id, 2, ProtectionChange::hold()).await.unwrap();
    let e = engine.protect_version(&me, &id, 3, ProtectionChange::hold()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.to_string().contains("max_held_versions"), "{e}");
    let e = engine.delete_version(&me, &id, 1).await.unwrap_err();
    assert!(e.to_string().contains("held"), "{e}");
    let e = engine
        .protect_version(&me, &id, 3, ProtectionChange::until(Timestamp::from(Utc::now()) - chrono::Duration::hours(1)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // FIFO passes over the held 1 and 2 and evicts 3; they keep the extra space, so the next
    // upload may have only the soft limit, and the refusal says why.
    let e = engine.upload(&me, &id, body_of(pattern(9, 150), 50)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    assert!(e.to_string().contains("2 held or protected versions keep 100 bytes"), "{e}");
    let listed = engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2, 3], "a refused upload evicts nothing");
    assert!(engine.upload(&me, &id, body_of(pattern(9, 100), 50)).await.is_ok());
    engine
        .protect_version(&me, &id, 4, ProtectionChange::until(Timestamp::from(Utc::now()) + chrono::Duration::days(1)))
        .await
        .unwrap();
    let e = engine.upload(&me, &id, body_of(pattern(10, 10), 5)).await.unwrap_err();
    assert!(e.to_string().contains("held or protected"), "every place is protected: {e}");
    engine.protect_version(&me, &id, 1, ProtectionChange::release()).await.unwrap();
    assert!(engine.upload(&me, &id, body_of(pattern(10, 10), 5)).await.is_ok(), "released: FIFO may evict it again");
}

#[derive(Debug, Clone)]
enum Op {
    Upload(usize),
    Hold(u64),
    Release(u64),
    ProtectFor(u64, i64),
    Advance(i64),
    Delete(u64),
    Maintain,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..=160).prop_map(Op::Upload),
        2 => (1u64..16).prop_map(Op::Hold),
        1 => (1u64..16).prop_map(Op::Release),
        1 => (1u64..16, 1i64..72).prop_map(|(n, h)| Op::ProtectFor(n, h)),
        2 => (1i64..48).prop_map(Op::Advance),
        1 => (1u64..16).prop_map(Op::Delete),
        1 => Just(Op::Maintain),
    ]
}

/// Runs `ops` against one collection and checks, after each, that the limits hold
/// (`max_versions`, the hard limit, counters, reservations), that a held version is still
/// committed, that a version protected until a time still to come is too, and that a refused
/// upload changed nothing.
async fn holds_never_break_the_limits(strategy: u8, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = std::sync::Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()));
    let engine = Engine::builder().clock(clock.clone()).build().unwrap();
    let me = Actor::user("u");
    let id: CollectionId = "p".parse().unwrap();
    let retention = match strategy {
        0 => RetentionSpec::fifo(),
        1 => RetentionSpec::named("gfs").with_option("keepDaily", "2").with_option("keepLast", "2"),
        _ => RetentionSpec::named("fifo-plus-older")
            .with_option("maxOlderCopies", "2")
            .with_option("keepLastOlderNotMoreThan", "1d"),
    }
    .with_min_keep(1);
    // Four places, 100 bytes soft, 500 hard: 100 bytes of extra space.
    let spec = CollectionSpec::new("p-${version}", Limits::new(4, 100, 500).unwrap())
        .with_retention(retention)
        .with_max_held_versions(2);
    engine.create_collection(&me, &id, spec).await.unwrap();
    let mut held = std::collections::BTreeSet::new();
    let mut protected_until = std::collections::BTreeMap::new();
    let committed = |engine: Engine| {
        let (me, id) = (me.clone(), id.clone());
        async move {
            engine
                .versions(&me, &id, VersionQuery::first(100))
                .await
                .unwrap()
                .items
                .iter()
                .map(|v| v.number)
                .collect::<Vec<u64>>()
        }
    };
    for (step, op) in ops.into_iter().enumerate() {
        let before = committed(engine.clone()).await;
        match &op {
            Op::Upload(size) => {
                if let Err(e) = engine.upload(&me, &id, body_of(pattern(step as u64, *size), 40)).await {
                    prop_assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "step {} {:?}: {}", step, op, e);
                    prop_assert_eq!(&committed(engine.clone()).await, &before, "a refused upload evicts nothing");
                }
            }
            Op::Hold(n) => {
                if engine.protect_version(&me, &id, *n, ProtectionChange::hold()).await.is_ok() {
                    held.insert(*n);
                }
            }
            Op::Release(n) => {
                if engine.protect_version(&me, &id, *n, ProtectionChange::release()).await.is_ok() {
                    held.remove(n);
                    protected_until.remove(n);
                }
            }
            Op::ProtectFor(n, hours) => {
                let until = Timestamp::from(clock.now()) + chrono::Duration::hours(*hours);
                if engine.protect_version(&me, &id, *n, ProtectionChange::until(until)).await.is_ok() {
                    protected_until.insert(*n, until);
                }
            }
            Op::Advance(hours) => clock.advance(chrono::Duration::hours(*hours)),
            Op::Delete(n) => {
                let refused = engine.delete_version(&me, &id, *n).await.is_err();
                let protected =
                    held.contains(n) || protected_until.get(n).is_some_and(|t| *t > Timestamp::from(clock.now()));
                prop_assert!(!protected || refused, "step {}: protected version {} was deleted", step, n);
            }
            Op::Maintain => {
                engine.recover().await.unwrap();
            }
        }
        if let Err(v) = backup_core::testing::check_limits(&engine, &id).await {
            return Err(TestCaseError::fail(format!("step {step} {op:?}: {v}")));
        }
        let now = committed(engine.clone()).await;
        let t = Timestamp::from(clock.now());
        for n in held.iter().chain(protected_until.iter().filter(|(_, until)| **until > t).map(|(n, _)| n)) {
            prop_assert!(now.contains(n), "step {} {:?}: protected version {} is gone: {:?}", step, op, n, now);
        }
        // minKeep is a floor for retention; a user's own deletion may go under it.
        if !matches!(op, Op::Delete(_)) {
            prop_assert!(
                !now.is_empty() || before.is_empty(),
                "step {} {:?}: minKeep 1 emptied the collection",
                step,
                op
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The hard limit and `max_versions` hold with holds and protections in play, under FIFO,
    /// GFS and fifo-plus-older, across deletions, maintenance runs and time.
    #[test]
    fn the_hard_limit_holds_with_holds_in_play(strategy in 0u8..3, ops in prop::collection::vec(arb_op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(holds_never_break_the_limits(strategy, ops))?;
    }
}
