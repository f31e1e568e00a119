//! The repository as a whole, with the real binary: a wrong or empty catalog in front of the
//! storage stops the start and deletes nothing; a restart after a crash frees the dead
//! uploads' reservations at once.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{NO_RATE_LIMITS, Server, args, armored, client, config_copy, login, upload, version_numbers};
use tokio::io::AsyncWriteExt;

/// Every file under `dir` with a digest of its bytes; the marker by the id it holds.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    use sha2::Digest as _;
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            // The audit log's anchors: the log's head, written by each maintenance run
            // (the right catalog's server adds some); only a pruning of the log removes any.
            if e.file_name() == ".audit" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            let seen = if e.file_name() == backup_core::store::REPOSITORY_MARKER {
                let marker: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                format!("marker of {}", marker["repository_id"].as_str().unwrap())
            } else {
                hex::encode(sha2::Sha256::digest(&bytes))
            };
            out.push((e.path(), seen));
        }
    }
    out.sort();
    out
}

fn with_catalog(config: &Path, data: &Path, catalog: &Path, extra: &[&str]) -> Vec<String> {
    let url = format!("sqlite://{}", catalog.display());
    let mut all = vec!["--catalog-url", url.as_str(), "--maintenance-schedule", "* * * * * *"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    args(config, data, &all)
}

/// The scenario of a typo in `--catalog-url` (or the default catalog reached from another
/// folder) in front of a repository's storage: the server refuses to start, names both
/// places and the repository, and every object stays byte for byte; with the right catalog
/// everything is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_wrong_catalog_refuses_to_start_and_deletes_nothing() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let (a, b) = (data.path().join("a.db"), data.path().join("typo/b.db"));
    let c = client();
    let body = armored(5_000, 3);
    let mut server = Server::start(&with_catalog(config.path(), data.path(), &a, &[]));
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", body.clone(), None).await;
    assert_eq!(status, 200, "{reply}");
    assert!(server.stop().success());
    let blobs = data.path().join("blobs");
    let before = snapshot(&blobs);
    assert_eq!(before.len(), 3, "the version's object, its description and the repository marker: {before:?}");
    let marker = before.iter().find(|(p, _)| p.ends_with(backup_core::store::REPOSITORY_MARKER)).expect("a marker");
    let id = marker.1.trim_start_matches("marker of ").to_owned();

    // An empty catalog: refused, named, nothing deleted (the maintenance would run every second).
    let err = Server::try_start(&with_catalog(config.path(), data.path(), &b, &[])).map(|_| ()).unwrap_err();
    assert!(err.contains("repository mismatch"), "{err}");
    assert!(err.contains("b.db") && err.contains(&blobs.display().to_string()), "both places are named: {err}");
    assert!(err.contains(&id), "the repository is named: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(snapshot(&blobs), before, "every object stays, byte for byte");

    // A wrong catalog: another repository's.
    let other_data = tempfile::tempdir().unwrap();
    let c2 = data.path().join("other.db");
    let mut other = Server::start(&with_catalog(config.path(), other_data.path(), &c2, &[]));
    assert!(other.stop().success());
    let err = Server::try_start(&with_catalog(config.path(), data.path(), &c2, &[])).map(|_| ()).unwrap_err();
    assert!(err.contains("repository mismatch") && err.contains(&id), "{err}");
    assert_eq!(snapshot(&blobs), before);

    // The marker deleted: refused until adopted on purpose.
    std::fs::remove_file(&marker.0).unwrap();
    let err = Server::try_start(&with_catalog(config.path(), data.path(), &a, &[])).map(|_| ()).unwrap_err();
    assert!(err.contains("no marker"), "{err}");
    let mut server = Server::start(&with_catalog(config.path(), data.path(), &a, &["--adopt-storage"]));
    assert_eq!(snapshot(&blobs), before, "the marker is written again, with the same id");
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, [1]);
    let got = c
        .get(server.url("/api/alpha/repository/collection/iwa-ait/version/1"))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);
    assert!(server.stop().success());

    // An empty catalog adopting the storage on purpose (before a rebuild): the versions it
    // does not know are reported at start, never deleted (made older than the grace first).
    for (path, _) in &before {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200)).unwrap();
    }
    let mut adopted = Server::start(&with_catalog(config.path(), data.path(), &b, &["--adopt-storage"]));
    // Two maintenance runs (one a second) after the start-up recovery, each reporting the
    // unknown objects: waited for in the log, not by the clock.
    let maintenance_reports = |log: String| {
        log.lines().filter(|l| l.contains("maintenance: ") && l.contains("unknown to the catalog")).count()
    };
    let two_runs = support::eventually(Duration::from_secs(30), || {
        let n = maintenance_reports(adopted.log());
        async move { (n >= 2).then_some(()) }
    })
    .await;
    assert!(two_runs.is_some(), "two maintenance runs reported the unknown objects: {}", adopted.log());
    assert!(adopted.stop().success());
    assert_eq!(snapshot(&blobs), before, "nothing unknown is deleted");
    let log = adopted.log();
    assert!(log.contains("unknown to the catalog"), "the unknown objects are reported: {log}");
    assert!(log.contains(&id), "the log names the repository served: {log}");
}

/// Every folder and file under `dir`, by path.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// Issue 24 §5.7: a start refused because the catalog or the storage is not the
/// repository's leaves the data folder as it found it: no empty catalog, no folder made for
/// one, no empty storage folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_leaves_the_data_folder_as_it_found_it() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let a = data.path().join("a.db");
    let mut server = Server::start(&with_catalog(config.path(), data.path(), &a, &[]));
    let uploader = login(&client(), &server, "some-user$uploader", "test", None).await;
    let (status, reply) = upload(&client(), &server, &uploader, "iwa-ait", armored(5_000, 1), None).await;
    assert_eq!(status, 200, "{reply}");
    assert!(server.stop().success());
    let before = tree(data.path());
    assert!(before.contains(&a) && before.contains(&data.path().join("blobs")), "{before:?}");
    // A new catalog, in a folder that does not exist and beside the repository's.
    for catalog in [data.path().join("typo/deep/b.db"), data.path().join("b.db")] {
        let err = Server::try_start(&with_catalog(config.path(), data.path(), &catalog, &[])).map(|_| ()).unwrap_err();
        assert!(err.contains("repository mismatch"), "{err}");
        assert_eq!(tree(data.path()), before, "{} was left behind", catalog.display());
    }
    // The repository's catalog in front of a storage folder that does not exist.
    let typo = data.path().join("typo-blobs/inner");
    let storage = format!("file://{}", typo.display());
    let err = Server::try_start(&with_catalog(config.path(), data.path(), &a, &["--storage-url", &storage]))
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("no marker"), "{err}");
    assert!(!data.path().join("typo-blobs").exists(), "the storage folder made for the start stays: {err}");
    // And the repository still starts where it is.
    let mut server = Server::start(&with_catalog(config.path(), data.path(), &a, &[]));
    assert!(server.stop().success());
}

fn chunked_head(addr: &str, token: &str) -> Vec<u8> {
    format!(
        "POST /api/alpha/repository/collection/iwa-ait/version HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

/// A server killed during an upload of unknown size (which grew to hold the whole extra space)
/// and restarted at once: its instance releases the dead upload's reservation at start, so an
/// upload that needs that space is accepted right away, not after the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_kill_frees_dead_reservations_at_once() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let catalog = data.path().join("catalog.db");
    let start = || Server::start(&with_catalog(config.path(), data.path(), &catalog, &["--instance-name", "node-1"]));
    let server = start();
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    // iwa-ait: 5 × 1M, 10M in all. A chunked upload's reservation grows with its bytes: past
    // 4.25M it holds its whole allowance, 6M.
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(&chunked_head(&server.addr(), &uploader)).await.unwrap();
    let first = armored(5 << 20, 9);
    let first = &first[..first.len() - 64]; // no end line: the content check waits for it
    socket.write_all(format!("{:x}\r\n", first.len()).as_bytes()).await.unwrap();
    socket.write_all(first).await.unwrap();
    socket.write_all(b"\r\n").await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // until the server has read what was sent
    // While it holds the extra space, an announced 2M upload (1M over the soft limit) does not fit.
    let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", armored(2 << 20, 1), None).await;
    assert_eq!(status, 413, "{reply}");

    let pid = server.child.as_ref().unwrap().id();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    drop(server);
    drop(socket);
    let server = start();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", armored(2 << 20, 1), None).await;
    assert_eq!(status, 200, "the dead upload's space is free at once: {reply}");
    let log = server.log();
    assert!(log.contains("released_own_uploads=1"), "the start-up recovery says so: {log}");
}
