//! Retention over real HTTP, the server in this process as the binary serves it: a `gfs`
//! collection from a manifest, the preview of the next commit with its reasons, holds set and
//! lifted by a collection manager only, and the simulation endpoint with its limits.

mod support;

use serde_json::{Value, json};
use support::{NO_RATE_LIMITS, Server, add_manifest, args, client, config_copy, json, login, version_numbers};

fn manifests(config: &std::path::Path) {
    add_manifest(
        config,
        "backups.riotkit.org/v1alpha1/backupcollections/db.yaml",
        r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: db
spec:
    description: keeps the two newest, and what is held
    filenameTemplate: db-${version}.sql
    maxBackupsCount: 5
    maxOneVersionSize: 1M
    maxCollectionSize: 5M
    contentRule: none
    strategyName: gfs
    strategySpec:
        keepLast: 2
    maxHeldVersions: 1
    accessControl:
        - name: manager
          type: user
          roles: ["collectionManager"]
        - name: uploader
          type: user
          roles: ["backupUploader", "backupDownloader"]
"#,
    );
    for name in ["manager", "uploader"] {
        support::add_user(config, name);
    }
}

async fn start() -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let mut all = vec!["--upload-confirm-grace", "0s"];
    all.extend(NO_RATE_LIMITS);
    (Server::in_process(&args(config.path(), data.path(), &all)).await, config, data)
}

async fn upload(c: &reqwest::Client, s: &Server, token: &str, n: u8) {
    let (status, body) = support::upload(c, s, token, "db", vec![n; 100], None).await;
    assert_eq!(status, 200, "{body}");
}

async fn preview(c: &reqwest::Client, s: &Server, token: &str) -> Vec<(u64, bool, Vec<String>)> {
    let r = c.get(s.url("/api/stable/repository/collection/db/retention")).bearer_auth(token).send().await.unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["retention"]["strategy"], "gfs", "{body}");
    body["data"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let reasons = v["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
            (v["number"].as_u64().unwrap(), v["keep"].as_bool().unwrap(), reasons)
        })
        .collect()
}

async fn protect(c: &reqwest::Client, s: &Server, token: &str, version: &str, body: Value) -> (u16, Value) {
    let url = s.url(&format!("/api/stable/repository/collection/db/version/{version}/protection"));
    json(c.put(url).bearer_auth(token).json(&body).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_holds_follow_the_policy() {
    let (server, _config, _data) = start().await;
    let c = client();
    let manager = login(&c, &server, "manager", "admin", None).await;
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    for n in 1..=4 {
        upload(&c, &server, &uploader, n).await;
    }
    // keepLast 2: each commit kept itself and the one before.
    assert_eq!(version_numbers(&c, &server, &uploader, "db", None).await, [3, 4]);
    // At the next commit, the incoming upload and 4 are the last two: 3 goes.
    let p = preview(&c, &server, &uploader).await;
    assert_eq!(p, [(3, false, vec!["gfs: no rule keeps it".to_owned()]), (4, true, vec!["last".to_owned()])]);

    // Only a collection manager may hold; a hold shows in the version and the preview.
    let (status, body) = protect(&c, &server, &uploader, "3", json!({ "held": true })).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = protect(&c, &server, &manager, "3", json!({ "held": true })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"]["held"], true, "{body}");
    let p = preview(&c, &server, &manager).await;
    assert_eq!(p[0], (3, true, vec!["held".to_owned()]));
    // maxHeldVersions: 1.
    let (status, body) = protect(&c, &server, &manager, "4", json!({ "held": true })).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_held_versions"), "{body}");
    // Bad requests say what is wrong.
    for (version, bad, why) in [
        ("latest", json!({ "held": true }), "by its number"),
        ("4", json!({}), "set held, protectedUntil"),
        ("4", json!({ "protectedUntil": "2001-01-01T00:00:00Z" }), "not in the future"),
        ("4", json!({ "holdIt": true }), "unknown field"),
    ] {
        let (status, body) = protect(&c, &server, &manager, version, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{bad}: {body}");
    }
    // A held version cannot be deleted.
    let url = server.url("/api/stable/repository/collection/db/version/3");
    let (status, body) = json(c.delete(url).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(status, 409, "{body}");

    upload(&c, &server, &uploader, 5).await;
    upload(&c, &server, &uploader, 6).await;
    assert_eq!(version_numbers(&c, &server, &uploader, "db", None).await, [3, 5, 6], "3 is held");
    // 5 protected until tomorrow, then the hold on 3 lifted: the next commit evicts 3 only.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let (status, body) = protect(&c, &server, &manager, "5", json!({ "protectedUntil": tomorrow })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["version"]["protectedUntil"].is_string(), "{body}");
    let (status, body) = protect(&c, &server, &manager, "3", json!({ "held": false, "protectedUntil": null })).await;
    assert_eq!((status, body["data"]["version"]["held"].clone()), (200, json!(false)), "{body}");
    upload(&c, &server, &uploader, 7).await;
    assert_eq!(version_numbers(&c, &server, &uploader, "db", None).await, [5, 6, 7]);
    let p = preview(&c, &server, &uploader).await;
    assert!(p[0].2[0].starts_with("protected until "), "{p:?}");
}

fn simulation(versions: impl IntoIterator<Item = (u64, String)>, policy: Value) -> Value {
    let versions: Vec<Value> = versions.into_iter().map(|(n, t)| json!({ "number": n, "createdAt": t })).collect();
    json!({ "policy": policy, "now": "2026-11-30T00:00:00Z", "versions": versions })
}

async fn simulate(c: &reqwest::Client, s: &Server, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = c.post(s.url("/api/stable/retention/simulate")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_simulates_a_policy_within_limits() {
    let (server, _config, _data) = start().await;
    let c = client();
    // Only a caller who may read some collection's versions simulates (issue 24 §2.1): not a
    // user without roles, not an upload-only access key.
    let days = (1..=14).map(|d| (d, format!("2026-11-{d:02}T12:00:00Z")));
    for (who, password) in [("unprivileged", "admin"), ("some-user$uploader", "test")] {
        let other = login(&c, &server, who, password, None).await;
        let (status, body) =
            simulate(&c, &server, Some(&other), &simulation(days.clone(), json!({ "keepLast": 1 }))).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert!(body["error"].as_str().unwrap().contains("a role that reads some collection's versions"), "{body}");
    }
    // A downloader of db may.
    let token = login(&c, &server, "uploader", "admin", None).await;
    // One version a day at noon for 14 days: keepDaily 7, keepWeekly 2, in Warsaw, cascade.
    let policy = json!({ "keepDaily": 7, "keepWeekly": "2", "timezone": "Europe/Warsaw", "mode": "independent" });
    let (status, body) = simulate(&c, &server, Some(&token), &simulation(days.clone(), policy)).await;
    assert_eq!(status, 200, "{body}");
    let versions = body["data"]["versions"].as_array().unwrap();
    let kept: Vec<u64> =
        versions.iter().filter(|v| v["keep"] == json!(true)).map(|v| v["number"].as_u64().unwrap()).collect();
    assert_eq!(kept, [8, 9, 10, 11, 12, 13, 14], "{body}");
    assert_eq!(versions[13]["reasons"], json!(["daily 2026-11-14", "weekly 2026-W46"]));
    assert_eq!(versions[0]["reasons"], json!(["gfs: no rule keeps it"]));

    // Cascade: the weekly rule skips the week the daily rule covered and keeps an older one.
    let policy = json!({ "keepDaily": 7, "keepWeekly": 2, "mode": "cascade" });
    let (status, body) = simulate(&c, &server, Some(&token), &simulation(days.clone(), policy)).await;
    assert_eq!(status, 200, "{body}");
    let kept: Vec<u64> = body["data"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["keep"] == json!(true))
        .map(|v| v["number"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [1, 8, 9, 10, 11, 12, 13, 14], "W45's newest is the 8th, kept daily; W44's is the 1st: {body}");

    // Refusals name what is wrong.
    for (policy, why) in [
        (json!({ "keepDaily": "seven" }), "keepDaily: \"seven\" is not a count"),
        (json!({ "strategy": "lifo" }), "policy.strategy: unknown strategy"),
        (json!({ "keepDaily": [1] }), "policy.keepDaily: a number or a text"),
        (json!({ "keepDaily": 1, "minKeep": -1 }), "policy.minKeep"),
        (json!({}), "gfs needs at least one of"),
    ] {
        let (status, body) = simulate(&c, &server, Some(&token), &simulation(days.clone(), policy.clone())).await;
        assert_eq!(status, 400, "{policy}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{policy}: {body}");
    }
    let twice = simulation(
        [(1, "2026-11-01T00:00:00Z".to_owned()), (1, "2026-11-02T00:00:00Z".to_owned())],
        json!({ "keepLast": 1 }),
    );
    let (status, body) = simulate(&c, &server, Some(&token), &twice).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("number 1 appears twice"), "{body}");
    let (status, _) = simulate(&c, &server, None, &simulation(days, json!({ "keepLast": 1 }))).await;
    assert_eq!(status, 401, "authenticated callers only");

    // 100,000 versions are simulated; 100,001 are refused with a 413 that says why.
    let many = |n: u64| {
        let t0 = chrono::DateTime::parse_from_rfc3339("2009-06-01T00:00:00Z").unwrap();
        (1..=n).map(move |i| (i, (t0 + chrono::Duration::minutes(i as i64 * 90)).to_rfc3339()))
    };
    let policy = json!({ "keepDaily": 30, "keepMonthly": 12, "keepYearly": -1 });
    let (status, body) = simulate(&c, &server, Some(&token), &simulation(many(100_000), policy.clone())).await;
    assert_eq!(status, 200, "{}", body["error"]);
    let versions = body["data"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 100_000);
    let kept = versions.iter().filter(|v| v["keep"] == json!(true)).count();
    // 30 days, 12 months, one per year 2009..2026 and the oldest (some shared): a few dozen.
    assert!((45..=62).contains(&kept), "{kept} kept");
    let (status, body) = simulate(&c, &server, Some(&token), &simulation(many(100_001), policy)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "a simulation takes at most 100000 versions; this one has 100001");
}
