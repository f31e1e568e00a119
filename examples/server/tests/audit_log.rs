//! The audit log's chain against a catalog changed behind the server's back, with the real
//! binary: `--verify-audit` exits 1 naming a changed row, a deleted row, and a log rewritten
//! with fresh hashes (the anchors in the storage catch it); a catalog restored from a
//! scheduled snapshot verifies.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use backup_core::AuditEvent;
use backup_core::audit::AuditHash;
use support::{NO_RATE_LIMITS, Server, args, armored, client, config_copy, eventually, login, upload};

/// An audit row as SQLite holds it: seq, at, actor, action, collection, version, detail, hash.
type Row = (i64, i64, String, String, Option<String>, Option<i64>, String, String);

fn rows(db: &rusqlite::Connection, filter: &str) -> Vec<Row> {
    db.prepare(&format!(
        "SELECT seq, at, actor, action, collection, version, detail, hash FROM audit {filter} ORDER BY seq"
    ))
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn with(config: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["--upload-confirm-grace", "0s"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    args(config, data, &all)
}

/// `--verify-audit`: whether it passed, and what it printed (out and err).
fn verify(config: &Path, data: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server"))
        .args(with(config, data, &["--verify-audit"]))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The newest event an anchor in the storage covers (`anchor-<seq>.json`).
fn newest_anchor(data: &Path) -> Option<u64> {
    std::fs::read_dir(data.join("blobs/_backup-server/.audit"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("anchor-")?.strip_suffix(".json")?.parse().ok())
        .max()
}

/// A server that anchors every second (its maintenance) makes a few events, and stops.
async fn some_history(config: &Path, data: &Path, extra: &[&str]) {
    let mut all = vec!["--maintenance-schedule", "* * * * * *"];
    all.extend(extra);
    let mut server = Server::start(&with(config, data, &all));
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    for i in 0..2 {
        assert_eq!(upload(&c, &server, &uploader, "iwa-ait", armored(3_000, i), None).await.0, 200);
    }
    // An anchor that covers the commits (one written before them, at the first maintenance
    // run, would leave them to the chain alone).
    let db = rusqlite::Connection::open(data.join("catalog.db")).unwrap();
    let last: i64 =
        db.query_row("SELECT MAX(seq) FROM audit WHERE action = 'version.commit'", [], |r| r.get(0)).unwrap();
    drop(db);
    let covered = || async { newest_anchor(data).is_some_and(|a| a >= last as u64).then_some(()) };
    assert!(eventually(Duration::from_secs(10), covered).await.is_some(), "no anchor covers event {last}");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_audit_names_a_changed_a_deleted_and_a_rewritten_row() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    some_history(config.path(), data.path(), &[]).await;
    let (ok, out) = verify(config.path(), data.path());
    assert!(ok, "{out}");
    assert!(out.contains("the audit log verifies") && out.contains("anchors in the storage match"), "{out}");

    let db = rusqlite::Connection::open(data.path().join("catalog.db")).unwrap();
    let (seq, detail): (i64, String) = db
        .query_row("SELECT seq, detail FROM audit WHERE action = 'version.commit' ORDER BY seq LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    // A changed row.
    db.execute("UPDATE audit SET detail = 'nothing happened' WHERE seq = ?1", [seq]).unwrap();
    let (ok, out) = verify(config.path(), data.path());
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("audit event {seq}: it does not fit the chain")), "{out}");
    db.execute("UPDATE audit SET detail = ?2 WHERE seq = ?1", rusqlite::params![seq, detail]).unwrap();
    assert!(verify(config.path(), data.path()).0, "put back, it verifies again");

    // A deleted row.
    let saved = rows(&db, &format!("WHERE seq = {seq}"));
    db.execute("DELETE FROM audit WHERE seq = ?1", [seq]).unwrap();
    let (ok, out) = verify(config.path(), data.path());
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("audit event {seq}: missing")), "{out}");
    let r = &saved[0];
    db.execute(
        "INSERT INTO audit (seq, at, actor, action, collection, version, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7],
    )
    .unwrap();
    assert!(verify(config.path(), data.path()).0, "put back, it verifies again");

    // A rewrite that keeps the chain consistent: the row changed and every hash after it
    // computed again. Only the anchors in the storage can tell.
    db.execute("UPDATE audit SET detail = 'nothing happened' WHERE seq = ?1", [seq]).unwrap();
    let mut previous = AuditHash::ZERO;
    for (s, at, actor, action, collection, version, detail, _) in rows(&db, "") {
        let mut e = AuditEvent::new(backup_core::Timestamp::from_micros(at).unwrap(), actor, action)
            .with_seq(s as u64)
            .with_detail(detail);
        e.collection = collection.map(|c| c.parse().unwrap());
        e.version = version.map(|v| v as u64);
        let hash = e.link(&previous);
        db.execute("UPDATE audit SET hash = ?2 WHERE seq = ?1", rusqlite::params![s, hash.to_string()]).unwrap();
        previous = hash;
    }
    let (ok, out) = verify(config.path(), data.path());
    assert!(!ok, "{out}");
    assert!(out.contains("differs from the anchor in the store: the log was rewritten"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_restored_from_a_snapshot_verifies() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    some_history(config.path(), data.path(), &["--catalog-snapshot-schedule", "* * * * * *"]).await;
    // The catalog is lost; events after the last snapshot are lost with it.
    std::fs::remove_file(data.path().join("catalog.db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server"))
        .args(with(config.path(), data.path(), &["--rebuild-catalog", "--from-snapshot", "latest"]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, out) = verify(config.path(), data.path());
    assert!(ok, "{out}");

    // Without any snapshot: rebuilt from the storage alone, the log continues from the last
    // anchor and verifies too.
    std::fs::remove_file(data.path().join("catalog.db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server"))
        .args(with(config.path(), data.path(), &["--rebuild-catalog"]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, out) = verify(config.path(), data.path());
    assert!(ok, "{out}");
}
