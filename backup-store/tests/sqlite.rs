//! The SQLite catalog beyond the shared suite (`catalogs.rs`): the engine suite on local disk,
//! migrations from every shipped schema, several catalogs (connections) on one file, group
//! commit.

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::catalog::CatalogExt;
use backup_core::{ErrorKind, conformance};
use backup_store::SqliteCatalog;

async fn fresh(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Catalog> {
    Arc::new(SqliteCatalog::open(dir.path().join(name)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_engine_suite_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = backup_store::local_disk_store(dir.path().join("blobs")).unwrap();
    conformance::engine::run_all(store, fresh(&dir, "engine.db").await).await;
}

/// Two catalogs (each its own writer connection) on one file, as two processes would be:
/// SQLite's write lock, not the in-process mutex, keeps reservations atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_catalogs_on_one_file_stay_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(&dir, "shared.db").await;
    let b = fresh(&dir, "shared.db").await;
    // The concurrency checks spawn tasks on one catalog; run both at once on the two.
    let (x, y) = tokio::join!(
        conformance::catalog::concurrent_reservations_are_atomic(a.clone()),
        conformance::catalog::concurrent_commits_get_unique_numbers(b.clone()),
    );
    let ((), ()) = (x, y);
    tokio::join!(
        conformance::catalog::concurrent_commits_get_unique_numbers(a),
        conformance::catalog::concurrent_reservations_are_atomic(b),
    );
}

#[tokio::test]
async fn reopening_keeps_everything_and_url_form_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/catalog.db");
    let first = SqliteCatalog::open(&path).await.unwrap();
    conformance::catalog::reserve_commit_numbers_and_lists(&first).await;
    let before = conformance::catalog::contents(&first).await;
    drop(first);
    let again = backup_store::open_catalog(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(conformance::catalog::contents(again.as_ref()).await, before);
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    drop(SqliteCatalog::open(&path).await.unwrap());
    // A later build migrated the file.
    rusqlite::Connection::open(&path).unwrap().execute("UPDATE schema_version SET version = 99", []).unwrap();
    let e = SqliteCatalog::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.to_string().contains("schema version 99, newer than the 8 this build knows"), "{e}");
}

/// Writes that wait for the writer share one transaction and one sync (group commit); each
/// still succeeds or fails alone, and a failed one leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_writes_succeed_and_fail_alone() {
    use backup_core::{AuditEvent, Collection, CollectionId, CollectionSpec, Limits};
    let dir = tempfile::tempdir().unwrap();
    let catalog = fresh(&dir, "group.db").await;
    let now = backup_core::Timestamp::from(chrono::Utc::now());
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let catalog = catalog.clone();
            // 40 distinct ids; 20 creations repeat one of them and must fail.
            let id: CollectionId = format!("grouped-{}", i % 40).parse().unwrap();
            let spec = CollectionSpec::new("v-${version}", Limits::new(2, 100 + i, 1000).unwrap());
            tokio::spawn(async move {
                let audit = AuditEvent::new(now, "test", "collection.create").with_collection(&id);
                catalog
                    .create_collection(&Collection::new(id, spec, now), &Default::default(), &audit)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => created += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(created, 40);
    let listed = catalog.list_collections(None, 100).await.unwrap();
    assert_eq!(listed.len(), 40);
    // The file holds exactly what was acknowledged.
    drop(catalog);
    let reopened = fresh(&dir, "group.db").await;
    assert_eq!(reopened.list_collections(None, 100).await.unwrap(), listed);
}

/// A catalog written by the first release (schema 1) opens, is migrated, and keeps every
/// row; the new counters are computed from its versions, and it takes uploads on.
#[tokio::test]
async fn a_schema_1_catalog_is_migrated_with_its_counters() {
    use backup_core::catalog::protocol::{VersionRange, VersionsNeeded};
    use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionQuery};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        let spec =
            serde_json::to_string(&CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap())).unwrap();
        conn.execute(
            "INSERT INTO collections (id, spec, created_at, updated_at, revision, next_number) VALUES ('old', ?1, 0, 0, 1, 4)",
            [spec],
        )
        .unwrap();
        for (n, size, state) in [(1, 150, "trashed"), (2, 180, "committed"), (3, 40, "committed")] {
            conn.execute(
                "INSERT INTO versions (id, collection, state, number, filename, object_key, size, digest, created_at,                  committed_at, uploader_user) VALUES (?1, 'old', ?2, ?3, 'f', ?4, ?5, ?6, 1000, ?7, 'u')",
                rusqlite::params![
                    uuid::Uuid::now_v7().to_string(),
                    state,
                    n,
                    format!("data/old/{n}"),
                    size,
                    format!("blake3:{}", "0".repeat(64)),
                    1000 + n
                ],
            )
            .unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT; INSERT INTO schema_version VALUES (1);",
        )
        .unwrap();
    }
    let catalog = Arc::new(SqliteCatalog::open(&path).await.unwrap());
    let state =
        catalog.collection_state_with(&"old".parse().unwrap(), VersionsNeeded::Range(VersionRange::All)).await.unwrap();
    let c = state.counters;
    assert_eq!((c.next_number, c.versions, c.bytes, c.overage), (4, 2, 220, 80), "{c:?}");
    assert_eq!(c.last_committed_at.map(|t| t.as_micros()), Some(1003));
    let engine = Engine::builder().catalog(catalog.clone()).adopt_store(true).build().unwrap();
    let me = Actor::user("u");
    let id = "old".parse().unwrap();
    let listed = engine.versions(&me, &id, VersionQuery::first(10).with_trashed()).await.unwrap().items;
    assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2, 3]);
    let v = engine
        .upload(&me, &id, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("x"))]))
        .await
        .unwrap();
    assert_eq!(v.number, 4);
}

/// A catalog written by the release before description marks (schema 4: counters, tombstones,
/// multipart ids, metadata) opens, is migrated, and keeps every row; its versions are not
/// marked (those from before are the scrubs' to check, as before); a version committed after
/// the upgrade is marked, and `recover()` describes it and clears the mark.
#[tokio::test]
async fn a_schema_4_catalog_is_migrated_to_description_marks() {
    use backup_core::catalog::{CatalogExt, PendingFilter};
    use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionQuery};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema4.db");
    let repository = backup_core::RepositoryId::generate();
    let (v1, v2, pending) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        conn.execute_batch(SCHEMA_2_TO_4).unwrap();
        let spec =
            serde_json::to_string(&CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap())).unwrap();
        conn.execute("INSERT INTO repository (singleton, id) VALUES (1, ?1)", [repository.to_string()]).unwrap();
        conn.execute(
            "INSERT INTO collections (id, spec, created_at, updated_at, revision, next_number, committed_versions, \
             committed_bytes, committed_overage, protected_versions, held_versions, last_committed_at) \
             VALUES ('old', ?1, 0, 0, 1, 3, 1, 40, 0, 0, 0, 2000)",
            [spec],
        )
        .unwrap();
        let digest = format!("blake3:{}", "0".repeat(64));
        conn.execute(
            "INSERT INTO versions (id, collection, state, number, filename, object_key, size, digest, created_at, \
             committed_at, trashed_at, trash_reason, uploader_user) \
             VALUES (?1, 'old', 'trashed', 1, 'o-1', ?2, 150, ?3, 1000, 1000, 1500, 'rotated', 'u')",
            rusqlite::params![v1.to_string(), format!("data/old/{v1}"), digest],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO versions (id, collection, state, number, filename, object_key, size, digest, created_at, \
             committed_at, uploader_user, metadata) \
             VALUES (?1, 'old', 'committed', 2, 'o-2', ?2, 40, ?3, 2000, 2000, 'u', '{\"git.head\":\"main\"}')",
            rusqlite::params![v2.to_string(), format!("data/old/{v2}"), digest],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO versions (id, collection, state, object_key, reserved, pool_share, lease_until, created_at, \
             uploader_user, owner, staging) VALUES (?1, 'old', 'pending', ?2, 10, 0, 3000, 3000, 'u', 'a', 'mp-1')",
            rusqlite::params![pending.to_string(), format!("data/old/{pending}")],
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT; INSERT INTO schema_version VALUES (4);",
        )
        .unwrap();
    }
    let catalog = Arc::new(SqliteCatalog::open(&path).await.unwrap());
    assert!(catalog.list_undescribed(None, 10).await.unwrap().is_empty(), "nothing from before is marked");
    let id = "old".parse().unwrap();
    let listed = catalog.list_versions(&id, &VersionQuery::first(10).with_trashed()).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| (v.number, v.state.name())).collect::<Vec<_>>(),
        [(1, "trashed"), (2, "committed")]
    );
    assert_eq!(listed[1].metadata.get("git.head").map(String::as_str), Some("main"));
    let staged = catalog.list_pending(&PendingFilter::default(), 10).await.unwrap();
    assert_eq!((staged.len(), staged[0].staging.as_deref()), (1, Some("mp-1")));
    assert_eq!(catalog.collection_state(&id).await.unwrap().counters.next_number, 3);

    let engine = Engine::builder().catalog(catalog.clone()).adopt_store(true).build().unwrap();
    assert_eq!(engine.open_repository().await.unwrap(), repository);
    let me = Actor::user("u");
    let v3 = engine
        .upload(&me, &id, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("x"))]))
        .await
        .unwrap();
    assert_eq!(v3.number, 3);
    let marked = catalog.list_undescribed(None, 10).await.unwrap();
    assert_eq!(marked.iter().map(|u| u.version.number).collect::<Vec<_>>(), [3], "the new version is marked");
    let report = engine.recover().await.unwrap();
    assert!(catalog.list_undescribed(None, 10).await.unwrap().is_empty(), "recover cleared it: {report:?}");
    drop((engine, catalog));
    // Opened again: already at the new schema.
    let again = SqliteCatalog::open(&path).await.unwrap();
    assert_eq!(again.list_versions(&id, &VersionQuery::first(10)).await.unwrap().len(), 2);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 8);
}

/// A catalog written by the release before the quarantine count (schema 5) opens, is
/// migrated, and counts the committed versions in quarantine from its rows (a trashed one is
/// not counted): a collection's health reads the count and names the first one.
#[tokio::test]
async fn a_schema_5_catalog_is_migrated_with_its_quarantine_count() {
    use backup_core::health::CheckKind;
    use backup_core::{Actor, CollectionSpec, Engine, Limits};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema5.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        conn.execute_batch(SCHEMA_2_TO_4).unwrap();
        conn.execute_batch(SCHEMA_5).unwrap();
        let spec =
            serde_json::to_string(&CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap())).unwrap();
        for (id, versions) in [("old", 2), ("clean", 1)] {
            conn.execute(
                "INSERT INTO collections (id, spec, created_at, updated_at, revision, next_number, committed_versions, \
                 committed_bytes, committed_overage, protected_versions, held_versions, last_committed_at) \
                 VALUES (?1, ?2, 0, 0, 1, 4, ?3, 30, 0, 0, 0, 3000)",
                rusqlite::params![id, spec, versions],
            )
            .unwrap();
        }
        let digest = format!("blake3:{}", "0".repeat(64));
        for (collection, n, state, quarantined) in [
            ("old", 1, "trashed", Some("its object is missing")),
            ("old", 2, "committed", Some("its bytes differ from the digest")),
            ("old", 3, "committed", None),
            ("clean", 3, "committed", None),
        ] {
            let id = uuid::Uuid::now_v7();
            conn.execute(
                "INSERT INTO versions (id, collection, state, number, filename, object_key, size, digest, created_at, \
                 committed_at, trashed_at, uploader_user, quarantined) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 10, ?7, ?8, ?8, CASE WHEN ?3 = 'trashed' THEN ?8 END, 'u', ?9)",
                rusqlite::params![
                    id.to_string(),
                    collection,
                    state,
                    n,
                    format!("o-{n}"),
                    format!("data/{collection}/{id}"),
                    digest,
                    1000 * n,
                    quarantined
                ],
            )
            .unwrap();
        }
        // Events from before the log had hashes: migration 8 chains them.
        conn.execute_batch(
            "INSERT INTO audit (at, actor, action, collection, version, detail) VALUES \
             (1000, 'u', 'collection.create', 'old', NULL, ''), (2000, 'u', 'version.delete', 'old', 3, 'by hand'), \
             (3000, 'configuration', 'collection.declare', 'clean', NULL, 'f.yaml');",
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT; INSERT INTO schema_version VALUES (5);",
        )
        .unwrap();
    }
    let catalog = Arc::new(SqliteCatalog::open(&path).await.unwrap());
    let counted = |id: &'static str| {
        let catalog = catalog.clone();
        async move { catalog.collection_state(&id.parse().unwrap()).await.unwrap().counters.quarantined }
    };
    assert_eq!((counted("old").await, counted("clean").await), (1, 0));
    let engine = Engine::builder().catalog(catalog.clone()).adopt_store(true).build().unwrap();
    let report = engine.health(&Actor::user("u"), &"old".parse().unwrap()).await.unwrap();
    assert_eq!(report.quarantined_versions, 1);
    assert_eq!(
        report.health.check(CheckKind::Integrity).and_then(|c| c.failure()),
        Some(
            "1 versions are quarantined: their bytes are damaged or missing. First: version 2 (its bytes differ from \
             the digest)"
        )
    );
    let audit = engine.verify_audit().await.unwrap();
    assert!(audit.is_intact(), "{:?}", audit.problem);
    assert_eq!((audit.events, audit.head.seq), (3, 3));
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 8);
}

/// Migration 5 as it shipped, on top of [`SCHEMA_2_TO_4`].
const SCHEMA_5: &str = r#"
    ALTER TABLE versions ADD COLUMN undescribed INTEGER;
    CREATE INDEX versions_undescribed ON versions (id) WHERE undescribed IS NOT NULL;
"#;

/// The schema changes of migrations 2 to 4 as they shipped (their updates of existing rows
/// aside), on top of [`SCHEMA_1`].
const SCHEMA_2_TO_4: &str = r#"
    ALTER TABLE collections ADD COLUMN committed_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN committed_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN committed_overage INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN protected_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN held_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN last_committed_at INTEGER;
    ALTER TABLE versions ADD COLUMN announced INTEGER;
    ALTER TABLE versions ADD COLUMN owner TEXT;
    ALTER TABLE versions ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE versions ADD COLUMN protected_until INTEGER;
    ALTER TABLE versions ADD COLUMN verified_at INTEGER;
    ALTER TABLE versions ADD COLUMN quarantined TEXT;
    CREATE INDEX versions_by_owner ON versions (owner) WHERE state = 'pending';
    CREATE TABLE tombstones (
        object_key  TEXT PRIMARY KEY NOT NULL,
        collection  TEXT NOT NULL,
        version     TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('released', 'purged')),
        recorded_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tombstones_by_collection ON tombstones (collection, object_key);
    CREATE TABLE repository (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        id        TEXT NOT NULL
    ) STRICT;
    ALTER TABLE sessions ADD COLUMN credential TEXT;
    ALTER TABLE sessions ADD COLUMN chain_started_at INTEGER;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    ALTER TABLE versions ADD COLUMN staging TEXT;
    ALTER TABLE tombstones ADD COLUMN staging TEXT;
    ALTER TABLE versions ADD COLUMN metadata TEXT;
"#;

/// The first release's schema, as it shipped.
const SCHEMA_1: &str = r#"
    CREATE TABLE collections (
        id          TEXT PRIMARY KEY NOT NULL,
        spec        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        revision    INTEGER NOT NULL,
        next_number INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE versions (
        id               TEXT PRIMARY KEY NOT NULL,
        collection       TEXT NOT NULL REFERENCES collections(id),
        state            TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'trashed', 'purged')),
        number           INTEGER,
        filename         TEXT,
        object_key       TEXT NOT NULL,
        size             INTEGER,
        digest           TEXT,
        reserved         INTEGER,
        pool_share       INTEGER,
        lease_until      INTEGER,
        created_at       INTEGER NOT NULL,
        committed_at     INTEGER,
        trashed_at       INTEGER,
        trash_reason     TEXT,
        purged_at        INTEGER,
        uploader_user    TEXT NOT NULL,
        uploader_key     TEXT,
        uploader_session TEXT,
        UNIQUE (collection, number),
        CHECK ((state = 'pending') = (number IS NULL))
    ) STRICT;
    CREATE INDEX versions_by_collection ON versions (collection, state, number);
    CREATE INDEX versions_by_lease ON versions (state, lease_until);
    CREATE INDEX versions_by_trash ON versions (state, trashed_at);
    CREATE INDEX versions_by_key ON versions (object_key);
    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY NOT NULL,
        user_name      TEXT NOT NULL,
        access_key     TEXT,
        issued_at      INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        requester_addr TEXT,
        description    TEXT NOT NULL,
        single_use     INTEGER NOT NULL,
        scope          TEXT,
        revoked_at     INTEGER
    ) STRICT;
    CREATE INDEX sessions_by_user ON sessions (user_name, issued_at);
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        collection TEXT,
        version    INTEGER,
        detail     TEXT NOT NULL
    ) STRICT;
"#;

/// Slow local-disk downloads used to park a blocking-pool thread each for the whole download,
/// and the SQLite catalog ran on the same pool: some dozens of clients that stop reading
/// stalled every catalog call. Now downloads read without holding a thread, and the catalog
/// has threads of its own.
#[test]
fn stalled_downloads_stall_neither_the_catalog_nor_the_blocking_pool() {
    use std::time::Duration;

    use backup_core::testing::{body_of, pattern};
    use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionQuery, VersionSelector};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let catalog = fresh(&dir, "stall.db").await;
        let store = backup_store::local_disk_store(dir.path().join("blobs")).unwrap();
        let engine = Engine::builder().catalog(catalog.clone()).store(store).build().unwrap();
        let me = Actor::user("u");
        let id = "stall".parse().unwrap();
        let spec = CollectionSpec::new("s-${version}", Limits::new(10, 64 << 20, 640 << 20).unwrap());
        engine.create_collection(&me, &id, spec).await.unwrap();
        engine.upload(&me, &id, body_of(pattern(1, 16 << 20), 1 << 20)).await.unwrap();
        // 40 downloads that are never read: ten times the blocking threads.
        let mut stalled = Vec::new();
        for _ in 0..40 {
            stalled.push(engine.download(&me, &id, VersionSelector::Latest).await.unwrap().into_stream());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            assert_eq!(engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items.len(), 1);
            engine.upload(&me, &id, body_of(pattern(2, 1000), 100)).await.unwrap();
            tokio::task::spawn_blocking(|| 42).await.unwrap()
        })
        .await;
        assert_eq!(answered.ok(), Some(42), "the catalog and the blocking pool answer while downloads stall");
        drop(stalled);
    });
}
