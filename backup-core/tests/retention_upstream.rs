//! The `gfs` strategy against the upstream test tables it promises to match: restic's
//! `TestApplyPolicy` golden files (mode `independent`) and Proxmox Backup Server's
//! `tests/prune.rs` (mode `cascade`). The tables are in `tests/data/`, each with its source
//! commit; every case is checked version by version, reasons included.

use std::collections::BTreeMap;

use backup_core::rotation::{Mark, RotationDecision, VersionSummary, plan};
use backup_core::{CollectionSpec, Limits, RetentionSpec, Timestamp, VersionId};
use chrono::Utc;
use serde_json::Value;

fn at(s: &str) -> Timestamp {
    Timestamp::from(chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc))
}

fn table(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn spec(options: &BTreeMap<String, String>) -> CollectionSpec {
    let mut r = RetentionSpec::named("gfs");
    for (k, v) in options {
        r = r.with_option(k.clone(), v.clone());
    }
    // Limits far above the tables: only the policy decides.
    CollectionSpec::new("t-${version}", Limits::new(100_000, 1 << 20, 1 << 40).unwrap()).with_retention(r)
}

/// Versions numbered so that our order (newest first, the higher number first among equal
/// times) is the upstream one (newest first, input order among equal times): ascending time,
/// and among equal times descending input position. Returns the summaries (ascending by
/// number) and, per summary, its input position.
fn versions(times: &[Timestamp], protected: &[bool]) -> (Vec<VersionSummary>, Vec<usize>) {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| (times[i], std::cmp::Reverse(i)));
    let summaries = order
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            VersionSummary::new(VersionId::generate(), n as u64 + 1, 1, times[i]).with_protected(protected[i])
        })
        .collect();
    (summaries, order)
}

/// restic's reason for one of ours: `daily 2016-01-18` → `daily snapshot`, `last` → `last
/// snapshot`, `oldest yearly` → `oldest yearly snapshot`; `within 1m14d` reads the same.
fn restic_reason(ours: &str) -> String {
    if ours.starts_with("within ") {
        return ours.to_owned();
    }
    if let Some(rule) = ours.strip_prefix("oldest ") {
        return format!("oldest {rule} snapshot");
    }
    let rule = ours.split(' ').next().unwrap();
    format!("{rule} snapshot")
}

#[test]
fn restic_apply_policy_golden_files() {
    let t = table("restic_policy_cases.json");
    let times: Vec<Timestamp> = t["snapshots"].as_array().unwrap().iter().map(|s| at(s.as_str().unwrap())).collect();
    let (summaries, input_of) = versions(&times, &vec![false; times.len()]);
    // restic runs at time.Now(); long after every snapshot.
    let now = at("2030-01-01T00:00:00Z");
    let mut checked = 0;
    for case in t["cases"].as_array().unwrap() {
        let index = case["index"].as_u64().unwrap();
        let policy = case["policy"].as_object().unwrap();
        let mut options = BTreeMap::new();
        for (rule, value) in policy {
            if rule == "within" {
                let d = value.as_object().unwrap();
                let part = |k: &str, unit: &str| d.get(k).map(|n| format!("{n}{unit}")).unwrap_or_default();
                let within = [part("years", "y"), part("months", "m"), part("days", "d"), part("hours", "h")].concat();
                options.insert("keepWithin".to_owned(), within);
            } else {
                let mut name = rule.clone();
                name[..1].make_ascii_uppercase();
                options.insert(format!("keep{name}"), value.to_string());
            }
        }
        if options.is_empty() {
            // restic's empty policy keeps nothing; ours refuses a gfs policy without rules.
            assert!(plan(&spec(&options), &summaries, now).is_err(), "case {index}: an empty policy is refused");
            continue;
        }
        let decisions: Vec<RotationDecision> = plan(&spec(&options), &summaries, now).unwrap();
        // Newest first, as restic lists what it keeps.
        let mut kept: Vec<(usize, &RotationDecision)> =
            decisions.iter().enumerate().filter(|(_, d)| d.mark == Mark::Keep).map(|(n, d)| (input_of[n], d)).collect();
        kept.reverse();
        let want: Vec<usize> =
            case["keep_input_index"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
        let got: Vec<usize> = kept.iter().map(|(i, _)| *i).collect();
        assert_eq!(got, want, "case {index} {policy:?}: kept snapshots (input positions, newest first)");
        let want_reasons = case["reasons"].as_array().unwrap();
        for ((input, d), want) in kept.iter().zip(want_reasons) {
            let ours: Vec<String> = d.reasons.iter().map(|r| restic_reason(r)).collect();
            let theirs: Vec<String> = want.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
            assert_eq!(ours, theirs, "case {index}: reasons of snapshot {input} ({:?})", d.reasons);
            // Our reasons name the period too: it must be the snapshot's own.
            for r in &d.reasons {
                if let Some(day) = r.strip_prefix("daily ") {
                    assert!(times[*input].to_string().starts_with(day), "case {index}: {r} for {}", times[*input]);
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 30, "every non-empty case of the table was checked");
}

fn pbs_time(s: &str) -> Timestamp {
    at(s.rsplit('/').next().unwrap())
}

fn pbs_options(o: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    let mut options = BTreeMap::from([("mode".to_owned(), "cascade".to_owned())]);
    for (k, v) in o {
        let rule = k.strip_prefix("keep_").unwrap();
        let mut name = rule.to_owned();
        name[..1].make_ascii_uppercase();
        options.insert(format!("keep{name}"), v.to_string());
    }
    options
}

/// Checks one PBS case: which snapshots stay (protected ones included) and which go.
fn check_pbs(name: &str, case: &Value) {
    let list = |k: &str| -> Vec<Timestamp> {
        case[k].as_array().map(|a| a.iter().map(|s| pbs_time(s.as_str().unwrap())).collect()).unwrap_or_default()
    };
    let times = list("snapshots");
    let protected_times = list("protected");
    let protected: Vec<bool> = times.iter().map(|t| protected_times.contains(t)).collect();
    let (summaries, input_of) = versions(&times, &protected);
    let options = pbs_options(case["options"].as_object().unwrap());
    let now = at("2030-01-01T00:00:00Z");
    let mut want_keep = list("keep");
    want_keep.sort();
    let Ok(decisions) = plan(&spec(&options), &summaries, now) else {
        // `keep_last: 0` alone keeps nothing in PBS; ours refuses a policy that keeps nothing.
        assert!(want_keep.iter().all(|t| protected_times.contains(t)), "{name}: refused, but PBS keeps {want_keep:?}");
        assert!(options.values().all(|v| v == "0" || v == "cascade"), "{name}: refused {options:?}");
        return;
    };
    let mut got: Vec<Timestamp> =
        decisions.iter().enumerate().filter(|(_, d)| d.mark == Mark::Keep).map(|(n, _)| times[input_of[n]]).collect();
    got.sort();
    assert_eq!(got, want_keep, "{name} {options:?}: kept ({decisions:#?})");
}

#[test]
fn proxmox_prune_tests() {
    let t = table("pbs_prune_cases.json");
    let cases = t["cases"].as_array().unwrap();
    for case in cases {
        check_pbs(case["name"].as_str().unwrap(), case);
    }
    for example in t["doc_examples"].as_array().unwrap() {
        check_pbs(example["name"].as_str().unwrap(), example);
    }
    assert_eq!(cases.len(), 22);
}
