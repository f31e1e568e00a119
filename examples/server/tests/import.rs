//! `--import-backup-repository` against a real PostgreSQL table with backup-repository's schema
//! and objects laid out as it lays them out (`<collection>/<filename>` at the bucket root).

mod support;

use std::process::Command;

use support::{
    NO_RATE_LIMITS, Server, args, armored, client, config_copy, files_under, login, upload, version_numbers,
};

/// backup-repository's table, as its GORM model creates it.
const SCHEMA: &str = "CREATE TABLE uploaded_versions (
    id text PRIMARY KEY,
    collection_id text,
    version_number bigint,
    filename text,
    filesize bigint,
    uploaded_by_session_id text,
    uploader text,
    created_at timestamptz,
    updated_at timestamptz,
    deleted_at timestamptz
);
CREATE INDEX idx_uploaded_versions_deleted_at ON uploaded_versions (deleted_at);";

/// Runs the binary, its progress logged at every step.
fn helper(args: &[String]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backup-server"))
        .args(args)
        .env("BR_PROGRESS_INTERVAL", "0s")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_repositorys_versions_are_imported_once_with_their_numbers() {
    let Some(url) = backup_store::testing::database_url("backup_repositorys_versions_are_imported_once") else {
        return;
    };
    // A database of its own: the import reads the table by its plain name.
    let name = format!("br_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let mut source = parsed.clone();
    source.set_path(&format!("/{name}"));
    let (db, conn) = tokio_postgres::connect(source.as_str(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute(SCHEMA).await.unwrap();

    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let bucket = data.path().join("blobs");
    let put = |collection: &str, file: &str, bytes: &[u8]| {
        std::fs::create_dir_all(bucket.join(collection)).unwrap();
        std::fs::write(bucket.join(collection).join(file), bytes).unwrap();
    };
    let bodies: Vec<Vec<u8>> = (0..8).map(|i| armored(5_000 + i * 100, i as u8)).collect();
    // (number, object written, size recorded, deleted)
    let rows: [(i64, bool, Option<usize>, bool); 7] = [
        (1, true, None, false),     // imported
        (2, true, None, false),     // imported
        (3, true, None, true),      // soft-deleted: not imported
        (4, false, None, false),    // its object is missing
        (5, true, Some(17), false), // its size differs
        (7, true, None, false),     // imported
        (6, true, None, false),     // and a second row claiming 6 below
    ];
    let insert = "INSERT INTO uploaded_versions VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)";
    let when = |n: i64| chrono::Utc::now() - chrono::Duration::days(30 - n);
    for (n, written, size, deleted) in rows {
        let body = &bodies[n as usize];
        let file = format!("iwa-ait-{n}.tar.gz");
        if written {
            put("iwa-ait", &file, body);
        }
        let size = size.unwrap_or(body.len()) as i64;
        let deleted_at = deleted.then(|| when(n));
        let id = uuid::Uuid::new_v4().to_string();
        let session = "a".repeat(64);
        db.execute(insert, &[&id, &"iwa-ait", &n, &file, &size, &session, &"some-user", &when(n), &deleted_at])
            .await
            .unwrap();
    }
    let twin = uuid::Uuid::new_v4().to_string();
    let file6 = "iwa-ait-6b.tar.gz".to_owned();
    db.execute(
        insert,
        &[&twin, &"iwa-ait", &6i64, &file6, &5i64, &"", &"x", &when(6), &None::<chrono::DateTime<chrono::Utc>>],
    )
    .await
    .unwrap();
    // A number no catalog can hold (issue 24 §2.3: it made the whole import fail after its
    // object was copied).
    let huge = format!("iwa-ait-{}.tar.gz", i64::MAX);
    put("iwa-ait", &huge, b"huge");
    db.execute(
        insert,
        &[
            &uuid::Uuid::new_v4().to_string(),
            &"iwa-ait",
            &i64::MAX,
            &huge,
            &4i64,
            &"",
            &"x",
            &when(8),
            &None::<chrono::DateTime<chrono::Utc>>,
        ],
    )
    .await
    .unwrap();
    put("other", "other-1.tar.gz", b"data");
    let other = uuid::Uuid::new_v4().to_string();
    db.execute(
        insert,
        &[
            &other,
            &"other",
            &1i64,
            &"other-1.tar.gz",
            &4i64,
            &"",
            &"x",
            &when(1),
            &None::<chrono::DateTime<chrono::Utc>>,
        ],
    )
    .await
    .unwrap();

    let host = parsed.host_str().unwrap().to_owned();
    let port = parsed.port().unwrap_or(5432).to_string();
    let user = parsed.username().to_owned();
    let flags = [
        "--import-backup-repository",
        "--db-hostname",
        &host,
        "--db-port",
        &port,
        "--db-user",
        &user,
        "--db-name",
        &name,
    ];
    let mut dry = flags.to_vec();
    dry.push("--dry-run");
    let (ok, stdout, stderr) = helper(&args(config.path(), data.path(), &dry));
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("would import: ")).count(), 3, "{stdout}");
    assert!(stdout.contains("dry run: 0 versions imported"), "{stdout}");
    // Seven rows to look at (the soft-deleted one and the two claiming 6 are left out first).
    assert!(stderr.lines().any(|l| l.contains("import: checking versions (dry run): 7 of 7 (100%)")), "{stderr}");

    let (ok, stdout, stderr) = helper(&args(config.path(), data.path(), &flags));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("import: 3 versions imported"), "{stdout}");
    // Progress, logged (standard error is not a terminal): the start, each row, the end.
    let progress: Vec<&str> = stderr.lines().filter(|l| l.contains("import: importing versions: ")).collect();
    assert!(progress.len() >= 9, "{stderr}");
    assert!(progress[0].contains("0 of 7 (0%)"), "{}", progress[0]);
    assert!(progress.last().is_some_and(|l| l.contains("7 of 7 (100%)") && l.contains("done in")), "{stderr}");
    for expected in [
        "version 4 of iwa-ait (iwa-ait-4.tar.gz): its object iwa-ait/iwa-ait-4.tar.gz is missing",
        "version 5 of iwa-ait (iwa-ait-5.tar.gz): its object iwa-ait/iwa-ait-5.tar.gz has",
        "version 6 of iwa-ait: 2 rows claim it",
        "version 1 of other (other-1.tar.gz): the collection is not declared",
    ] {
        assert!(stdout.lines().any(|l| l.contains(expected)), "{expected:?} in\n{stdout}");
    }
    let (row, why) = (format!("version {} of iwa-ait ({huge}): ", i64::MAX), format!("{} is out of range", i64::MAX));
    assert!(stdout.lines().any(|l| l.contains(&row) && l.contains(&why)), "{row:?} {why:?} in\n{stdout}");
    assert!(!stdout.contains("iwa-ait-3"), "soft-deleted rows are not imported: {stdout}");
    // Nothing was copied for what was skipped: the three imported versions' objects only.
    let copied = files_under(&bucket.join("_backup-server").join("iwa-ait"));
    assert_eq!(copied.len(), 3, "{copied:?}");
    let (ok, again, stderr) = helper(&args(config.path(), data.path(), &flags));
    assert!(
        ok && again.starts_with("import: 0 versions imported") && again.contains("3 already imported"),
        "{again}\n{stderr}"
    );

    let mut extra = vec!["--upload-confirm-grace", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::in_process(&args(config.path(), data.path(), &extra)).await;
    let c = client();
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, [1, 2, 7]);
    for n in [1usize, 2, 7] {
        let r = c
            .get(server.url(&format!("/api/alpha/repository/collection/iwa-ait/version/{n}")))
            .bearer_auth(&manager)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let disposition = r.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(disposition.contains(&format!("iwa-ait-{n}.tar.gz")), "{disposition}");
        assert_eq!(r.bytes().await.unwrap().to_vec(), bodies[n]);
    }
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let (status, reply) = upload(&c, &server, &uploader, "iwa-ait", armored(900, 42), None).await;
    assert_eq!((status, reply["data"]["version"]["versionNumber"].as_u64()), (200, Some(8)), "{reply}");
    assert!(bucket.join("iwa-ait/iwa-ait-1.tar.gz").exists(), "the original's objects are left in place");
}
