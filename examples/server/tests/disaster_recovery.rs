//! Disaster recovery with the real binary: a lost catalog rebuilt from the storage
//! (`--rebuild-catalog`), or from a scheduled snapshot plus the storage; damaged versions
//! found by the scheduled scrub and by `POST …/verify`, quarantined, refused, reported.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{
    NO_RATE_LIMITS, Server, add_plain_collection, args, armored, client, config_copy, eventually, files_under, json,
    login, upload, version_numbers,
};

fn with(config: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["--upload-confirm-grace", "0s"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    args(config, data, &all)
}

/// Runs a helper mode of the binary; its exit status, standard output and error.
fn helper(args: &[String]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn download(c: &reqwest::Client, server: &Server, token: &str, version: &str) -> (u16, Vec<u8>) {
    let url = server.url(&format!("/api/alpha/repository/collection/iwa-ait/version/{version}"));
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_catalog_is_rebuilt_from_the_storage() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let c = client();
    let mut server = Server::start(&with(config.path(), data.path(), &[]));
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| armored(20_000 + i * 1000, i as u8)).collect();
    for b in &bodies {
        let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", b.clone(), None).await;
        assert_eq!(status, 200, "{reply}");
    }
    assert!(server.stop().success());
    std::fs::remove_file(data.path().join("catalog.db")).unwrap();

    // Without the catalog the server refuses to start (issue 8), and the rebuild fills a new one.
    let err = Server::try_start(&with(config.path(), data.path(), &[])).map(|_| ()).unwrap_err();
    assert!(err.contains("repository mismatch"), "{err}");
    let rebuild = args(config.path(), data.path(), &["--rebuild-catalog", "--verify"]);
    let (ok, stdout, stderr) = helper(&rebuild);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("3 versions restored") && stdout.contains("0 skipped"), "{stdout}");
    let (ok, _, stderr) = helper(&rebuild);
    assert!(!ok && stderr.contains("not empty"), "a second rebuild is refused: {stderr}");

    let server = Server::start(&with(config.path(), data.path(), &[]));
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, [1, 2, 3]);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(download(&c, &server, &manager, &format!("v{}", i + 1)).await, (200, b.clone()));
    }
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", armored(1000, 9), None).await;
    assert_eq!((status, reply["data"]["version"]["versionNumber"].as_u64()), (200, Some(4)), "{reply}");
}

/// A long rebuild is not silent (issue 24 §5.6): with standard error not a terminal it logs
/// each phase's progress (done of total, bytes, rate, time left) when the phase starts and ends,
/// and every `--progress-interval` between: every step with `BR_PROGRESS_INTERVAL=0s`, only the
/// ends with the default 5 s for a rebuild this short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_logs_its_progress_when_not_on_a_terminal() {
    const VERSIONS: usize = 300;
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    add_plain_collection(config.path(), "many", 1000, "1KB", "1MB");
    let c = client();
    let mut server = Server::start(&with(config.path(), data.path(), &[]));
    let manager = login(&c, &server, "some-user", "admin", None).await;
    for i in 0..VERSIONS {
        let (status, reply) = upload(&c, &server, &manager, "many", vec![i as u8; 100], None).await;
        assert_eq!(status, 200, "{reply}");
    }
    assert!(server.stop().success());

    let rebuild = |interval: Option<&str>| {
        std::fs::remove_file(data.path().join("catalog.db")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_backup-server"));
        command.args(args(config.path(), data.path(), &["--rebuild-catalog", "--verify"]));
        match interval {
            Some(interval) => command.env("BR_PROGRESS_INTERVAL", interval),
            None => command.env_remove("BR_PROGRESS_INTERVAL"),
        };
        let out = command.output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("{VERSIONS} versions restored")), "{stdout}");
        stderr.into_owned()
    };
    let phase = |stderr: &str, phase: &str| -> Vec<String> {
        stderr.lines().filter(|l| l.contains(&format!("rebuild: {phase}: "))).map(str::to_owned).collect()
    };

    let stderr = rebuild(Some("0s"));
    let reading = phase(&stderr, "reading descriptions");
    assert!(reading.len() >= VERSIONS + 2, "a line per description, the start and the end:\n{stderr}");
    assert!(reading[0].contains(&format!("0 of {VERSIONS} (0%)")), "{}", reading[0]);
    assert!(reading.iter().any(|l| l.contains("/s") && l.contains("left")), "rates and time left:\n{stderr}");
    let end = reading.last().unwrap();
    assert!(end.contains(&format!("{VERSIONS} of {VERSIONS} (100%)")) && end.contains("done in"), "{end}");
    // With --verify the objects' bytes are read: 300 × 100 bytes.
    let checking = phase(&stderr, "checking objects");
    let end = checking.last().unwrap();
    assert!(end.contains(&format!("{VERSIONS} of {VERSIONS}")) && end.contains("29.3 KiB of 29.3 KiB"), "{end}");
    for other in ["listing the store", "writing the catalog"] {
        assert!(phase(&stderr, other).last().is_some_and(|l| l.contains("done in")), "{other}:\n{stderr}");
    }

    // The default interval: the ends of each phase, not a line per step.
    let stderr = rebuild(None);
    let reading = phase(&stderr, "reading descriptions");
    assert!((2..10).contains(&reading.len()), "{reading:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_snapshot_plus_the_storage_bring_the_catalog_back() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let c = client();
    let every_second = ["--catalog-snapshot-schedule", "* * * * * *", "--catalog-snapshots-kept", "2"];
    let mut server = Server::start(&with(config.path(), data.path(), &every_second));
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let first = armored(10_000, 1);
    assert_eq!(upload(&c, &server, &uploader, "iwa-ait", first.clone(), None).await.0, 200);
    let snapshots = data.path().join("blobs/_backup-server/.catalog-snapshots");
    // Snapshots only: a snapshot being written is a staging file `<key>#<n>` beside them.
    let count = || {
        std::fs::read_dir(&snapshots).map_or(0, |d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().contains('#'))).count()
        })
    };
    assert!(eventually(Duration::from_secs(10), || async { (count() >= 2).then_some(()) }).await.is_some());
    assert!(server.stop().success());
    assert_eq!(count(), 2, "only the newest two are kept");
    // After the last snapshot: one more version, uploaded by a server without snapshots.
    let mut server = Server::start(&with(config.path(), data.path(), &[]));
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let second = armored(12_000, 2);
    assert_eq!(upload(&c, &server, &uploader, "iwa-ait", second.clone(), None).await.0, 200);
    assert!(server.stop().success());
    std::fs::remove_file(data.path().join("catalog.db")).unwrap();

    let (ok, stdout, stderr) =
        helper(&args(config.path(), data.path(), &["--rebuild-catalog", "--from-snapshot", "latest"]));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("snapshot") && stdout.contains("1 versions restored"), "{stdout}");
    let server = Server::start(&with(config.path(), data.path(), &[]));
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, [1, 2]);
    assert_eq!(download(&c, &server, &manager, "1").await, (200, first));
    assert_eq!(download(&c, &server, &manager, "2").await, (200, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_versions_are_found_quarantined_and_refused() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let c = client();
    let scrub = ["--scrub-schedule", "* * * * * *", "--scrub-sample", "all", "--health-check-key", "k"];
    let server = Server::start(&with(config.path(), data.path(), &scrub));
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let manager = login(&c, &server, "some-user", "admin", None).await;
    for i in 0..2 {
        assert_eq!(upload(&c, &server, &uploader, "iwa-ait", armored(30_000, i), None).await.0, 200);
    }
    let verify = server.url("/api/stable/repository/collection/iwa-ait/verify");
    let (status, reply) = json(c.post(&verify).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["data"]["versions"],
        serde_json::json!([{"number": 1, "ok": true, "error": null}, {"number": 2, "ok": true, "error": null}])
    );
    let (status, reply) = json(c.post(&verify).bearer_auth(&uploader).send().await.unwrap()).await;
    assert_eq!(status, 403, "an uploader does not manage the collection: {reply}");

    // Bit rot in version 1 (same size): the scheduled scrub finds it.
    let mut blobs = files_under(&data.path().join("blobs"));
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let mut stored = std::fs::read(&blobs[0]).unwrap();
    stored[12_345] ^= 0x01;
    std::fs::write(&blobs[0], &stored).unwrap();
    let health = server.url("/api/stable/repository/collection/iwa-ait/health?code=admin");
    let integrity = |reply: &serde_json::Value| {
        reply["data"]["health"]
            .as_array()
            .and_then(|checks| checks.iter().find(|h| h["name"] == "IntegrityValidator"))
            .cloned()
    };
    let found = eventually(Duration::from_secs(15), || {
        let (c, health) = (c.clone(), health.clone());
        async move {
            let (_, reply) = json(c.get(&health).send().await.unwrap()).await;
            integrity(&reply).filter(|check| check["status"] == false)
        }
    })
    .await
    .expect("the scrub quarantines the damaged version");
    assert!(found["message"].as_str().unwrap().contains("1 versions are quarantined"), "{found}");
    let (status, body) = download(&c, &server, &manager, "1").await;
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 409, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("quarantined"), "{reply}");
    assert_eq!(download(&c, &server, &manager, "2").await.0, 200, "the other version is served");

    // The verification says so too; the object put back, it leaves quarantine.
    let (_, reply) = json(c.post(&verify).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(reply["data"]["versions"][0]["ok"], false, "{reply}");
    assert!(reply["data"]["versions"][0]["error"].as_str().unwrap().contains("digest"), "{reply}");
    stored[12_345] ^= 0x01;
    std::fs::write(&blobs[0], &stored).unwrap();
    let (_, reply) = json(c.post(&verify).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(reply["data"]["versions"][0]["ok"], true, "{reply}");
    assert_eq!(download(&c, &server, &manager, "1").await.0, 200);
    let metrics =
        c.get(server.url("/metrics")).header("Authorization", "k").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("backup_versions_quarantined_total{collection=\"iwa-ait\"} 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("backup_scrub_versions_total ") && !l.ends_with(" 0")), "{metrics}");
    assert!(server.log().contains("quarantined"), "{}", server.log());
}
