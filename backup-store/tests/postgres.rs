//! The PostgreSQL catalog beyond the shared suite (`catalogs.rs`): the engine suite, migrations
//! from every shipped schema, several catalogs (pools) on one database.

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_tests() {
    backup_store::testing::skipped("postgres tests", "built without the `postgres` feature");
}

#[cfg(feature = "postgres")]
mod with_postgres {
    use std::sync::Arc;

    use backup_core::catalog::Catalog;
    use backup_core::{ErrorKind, conformance};
    use backup_store::PostgresCatalog;

    use backup_store::testing::{database_url, fresh_schema};

    async fn catalog(url: &str, schema: &str) -> Arc<dyn Catalog> {
        Arc::new(PostgresCatalog::builder(url).schema(schema).pool_size(24).build().await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_passes_the_engine_suite_on_local_disk() {
        let Some(url) = database_url("postgres_passes_the_engine_suite_on_local_disk") else { return };
        let dir = tempfile::tempdir().unwrap();
        let store = backup_store::local_disk_store(dir.path()).unwrap();
        conformance::engine::run_all(store, catalog(&url, &fresh_schema("engine")).await).await;
    }

    /// Two catalogs with their own pools on one schema, as two server instances: the row
    /// locks, not anything in-process, keep reservations and numbering atomic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_pools_on_one_database_stay_atomic() {
        let Some(url) = database_url("two_pools_on_one_database_stay_atomic") else { return };
        let schema = fresh_schema("shared");
        let (a, b) = (catalog(&url, &schema).await, catalog(&url, &schema).await);
        tokio::join!(
            conformance::catalog::concurrent_reservations_are_atomic(a.clone()),
            conformance::catalog::concurrent_commits_get_unique_numbers(b.clone()),
        );
        tokio::join!(
            conformance::catalog::concurrent_commits_get_unique_numbers(a),
            conformance::catalog::concurrent_reservations_are_atomic(b),
        );
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_migration_is_idempotent() {
        let Some(url) = database_url("a_newer_schema_is_refused_and_migration_is_idempotent") else { return };
        let schema = fresh_schema("migrate");
        // Several instances starting at once migrate once.
        let (a, b, c) = tokio::join!(
            PostgresCatalog::builder(&url).schema(&schema).build(),
            PostgresCatalog::builder(&url).schema(&schema).build(),
            PostgresCatalog::builder(&url).schema(&schema).build(),
        );
        let (a, _, _) = (a.unwrap(), b.unwrap(), c.unwrap());
        conformance::catalog::reserve_commit_numbers_and_lists(&a).await;
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("UPDATE \"{schema}\".schema_version SET version = 99")).await.unwrap();
        let e = PostgresCatalog::builder(&url).schema(&schema).build().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.to_string().contains("schema version 99, newer than the 8 this build knows"), "{e}");
    }

    /// A schema as an older release left it (`ddl` run, `schema_version` at `version`), a
    /// client on the database, and the spec of its collections as that release stored it.
    async fn old_schema(url: &str, schema: &str, ddl: &str, version: i64) -> (tokio_postgres::Client, String) {
        use backup_core::{CollectionSpec, Limits};
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path = \"{schema}\"; {ddl} \
                 CREATE TABLE schema_version (version BIGINT NOT NULL); INSERT INTO schema_version VALUES ({version});"
            ))
            .await
            .unwrap();
        let spec = CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap());
        (client, serde_json::to_string(&spec).unwrap())
    }

    /// A database written by the first release (schema 1) is migrated with its rows, and the
    /// counters are computed from its versions.
    #[tokio::test]
    async fn a_schema_1_database_is_migrated_with_its_counters() {
        use backup_core::catalog::CatalogExt;
        use backup_core::catalog::protocol::{VersionRange, VersionsNeeded};
        let Some(url) = database_url("a_schema_1_database_is_migrated_with_its_counters") else { return };
        let schema = fresh_schema("old");
        let (client, spec) = old_schema(&url, &schema, SCHEMA_1, 1).await;
        client
            .execute(&format!("INSERT INTO \"{schema}\".collections VALUES ('old', $1, now(), now(), 1, 4)"), &[&spec])
            .await
            .unwrap();
        for (n, size, state) in [(1i64, 150i64, "trashed"), (2, 180, "committed"), (3, 40, "committed")] {
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{schema}\".versions (id, collection, state, number, filename, object_key, size, \
                         digest, created_at, committed_at, uploader_user) \
                         VALUES ($1, 'old', $2, $3, 'f', $4, $5, $6, now(), now(), 'u')"
                    ),
                    &[
                        &uuid::Uuid::now_v7(),
                        &state,
                        &n,
                        &format!("data/old/{n}"),
                        &size,
                        &format!("blake3:{}", "0".repeat(64)),
                    ],
                )
                .await
                .unwrap();
        }
        let catalog = PostgresCatalog::builder(&url).schema(&schema).build().await.unwrap();
        let state = catalog
            .collection_state_with(&"old".parse().unwrap(), VersionsNeeded::Range(VersionRange::All))
            .await
            .unwrap();
        let c = state.counters;
        assert_eq!((c.next_number, c.versions, c.bytes, c.overage), (4, 2, 220, 80), "{c:?}");
        assert_eq!(state.committed.iter().map(|v| v.number).collect::<Vec<_>>(), [2, 3]);
    }

    /// A database written by the release before description marks (schema 4) is migrated
    /// with its rows; its versions are not marked; a version committed after the upgrade is
    /// marked, and `recover()` describes it and clears the mark.
    #[tokio::test]
    async fn a_schema_4_database_is_migrated_to_description_marks() {
        use backup_core::catalog::CatalogExt;
        use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionQuery};
        let Some(url) = database_url("a_schema_4_database_is_migrated_to_description_marks") else { return };
        let schema = fresh_schema("schema4");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let spec =
            serde_json::to_string(&CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap())).unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path = \"{schema}\"; {SCHEMA_1} {SCHEMA_2_TO_4} \
                 CREATE TABLE schema_version (version BIGINT NOT NULL); INSERT INTO schema_version VALUES (4);"
            ))
            .await
            .unwrap();
        let repository = backup_core::RepositoryId::generate();
        client
            .execute(&format!("INSERT INTO \"{schema}\".repository VALUES (1, $1)"), &[&repository.as_uuid()])
            .await
            .unwrap();
        client
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".collections (id, spec, created_at, updated_at, revision, next_number, \
                     committed_versions, committed_bytes) VALUES ('old', $1, now(), now(), 1, 3, 1, 40)"
                ),
                &[&spec],
            )
            .await
            .unwrap();
        for (n, size, state, metadata) in
            [(1i64, 150i64, "trashed", None), (2, 40, "committed", Some(r#"{"git.head":"main"}"#))]
        {
            let id = uuid::Uuid::now_v7();
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{schema}\".versions (id, collection, state, number, filename, object_key, size, \
                         digest, created_at, committed_at, trashed_at, uploader_user, metadata) \
                         VALUES ($1, 'old', $2, $3, 'f', $4, $5, $6, now(), now(), \
                         CASE WHEN $2 = 'trashed' THEN now() END, 'u', $7)"
                    ),
                    &[
                        &id,
                        &state,
                        &n,
                        &format!("data/old/{id}"),
                        &size,
                        &format!("blake3:{}", "0".repeat(64)),
                        &metadata,
                    ],
                )
                .await
                .unwrap();
        }
        let catalog = Arc::new(PostgresCatalog::builder(&url).schema(&schema).build().await.unwrap());
        assert!(catalog.list_undescribed(None, 10).await.unwrap().is_empty(), "nothing from before is marked");
        let id = "old".parse().unwrap();
        let listed = catalog.list_versions(&id, &VersionQuery::first(10).with_trashed()).await.unwrap();
        assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(listed[1].metadata.get("git.head").map(String::as_str), Some("main"));
        assert_eq!(catalog.collection_state(&id).await.unwrap().counters.next_number, 3);
        let engine = Engine::builder().catalog(catalog.clone()).adopt_store(true).build().unwrap();
        assert_eq!(engine.open_repository().await.unwrap(), repository);
        let v3 = engine
            .upload(&Actor::user("u"), &id, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("x"))]))
            .await
            .unwrap();
        assert_eq!(v3.number, 3);
        let marked = catalog.list_undescribed(None, 10).await.unwrap();
        assert_eq!(marked.iter().map(|u| u.version.number).collect::<Vec<_>>(), [3], "the new version is marked");
        let report = engine.recover().await.unwrap();
        assert!(catalog.list_undescribed(None, 10).await.unwrap().is_empty(), "recover cleared it: {report:?}");
        let version: i64 =
            client.query_one(&format!("SELECT version FROM \"{schema}\".schema_version"), &[]).await.unwrap().get(0);
        assert_eq!(version, 8);
    }

    /// A database written by the release before the quarantine count (schema 5) is migrated,
    /// and counts the committed versions in quarantine from its rows (a trashed one is not
    /// counted): a collection's health reads the count and names the first one.
    #[tokio::test]
    async fn a_schema_5_database_is_migrated_with_its_quarantine_count() {
        use backup_core::catalog::CatalogExt;
        use backup_core::health::CheckKind;
        use backup_core::{Actor, Engine};
        let Some(url) = database_url("a_schema_5_database_is_migrated_with_its_quarantine_count") else { return };
        let schema = fresh_schema("schema5");
        let (client, spec) = old_schema(&url, &schema, &format!("{SCHEMA_1} {SCHEMA_2_TO_4} {SCHEMA_5}"), 5).await;
        for (id, versions) in [("old", 2i64), ("clean", 1)] {
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{schema}\".collections (id, spec, created_at, updated_at, revision, next_number, \
                         committed_versions, committed_bytes) VALUES ($1, $2, now(), now(), 1, 4, $3, 30)"
                    ),
                    &[&id, &spec, &versions],
                )
                .await
                .unwrap();
        }
        for (collection, n, state, quarantined) in [
            ("old", 1i64, "trashed", Some("its object is missing")),
            ("old", 2, "committed", Some("its bytes differ from the digest")),
            ("old", 3, "committed", None),
            ("clean", 3, "committed", None),
        ] {
            let id = uuid::Uuid::now_v7();
            client
                .execute(
                    &format!(
                        "INSERT INTO \"{schema}\".versions (id, collection, state, number, filename, object_key, size, \
                         digest, created_at, committed_at, trashed_at, uploader_user, quarantined) \
                         VALUES ($1, $2, $3, $4, $5, $6, 10, $7, now(), now(), \
                         CASE WHEN $3 = 'trashed' THEN now() END, 'u', $8)"
                    ),
                    &[
                        &id,
                        &collection,
                        &state,
                        &n,
                        &format!("o-{n}"),
                        &format!("data/{collection}/{id}"),
                        &format!("blake3:{}", "0".repeat(64)),
                        &quarantined,
                    ],
                )
                .await
                .unwrap();
        }
        // Events from before the log had hashes: migration 8 chains them.
        client
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".audit (at, actor, action, collection, version, detail) VALUES \
                 (now(), 'u', 'collection.create', 'old', NULL, ''), (now(), 'u', 'version.delete', 'old', 3, 'x'), \
                 (now(), 'configuration', 'collection.declare', 'clean', NULL, 'f.yaml')"
            ))
            .await
            .unwrap();
        let catalog = Arc::new(PostgresCatalog::builder(&url).schema(&schema).build().await.unwrap());
        for (id, count) in [("old", 1), ("clean", 0)] {
            let counters = catalog.collection_state(&id.parse().unwrap()).await.unwrap().counters;
            assert_eq!(counters.quarantined, count, "{id}: {counters:?}");
        }
        let engine = Engine::builder().catalog(catalog.clone()).adopt_store(true).build().unwrap();
        let report = engine.health(&Actor::user("u"), &"old".parse().unwrap()).await.unwrap();
        assert_eq!(
            report.health.check(CheckKind::Integrity).and_then(|c| c.failure()),
            Some(
                "1 versions are quarantined: their bytes are damaged or missing. First: version 2 (its bytes differ \
                 from the digest)"
            )
        );
        let audit = engine.verify_audit().await.unwrap();
        assert!(audit.is_intact(), "{:?}", audit.problem);
        assert_eq!((audit.events, audit.head.seq), (3, 3));
        // New events follow the migrated ones.
        engine.record_audit(&backup_core::AuditEvent::new(backup_core::Timestamp::UNIX_EPOCH, "u", "x")).await.unwrap();
        assert_eq!(engine.verify_audit().await.unwrap().head.seq, 4);
        let version: i64 =
            client.query_one(&format!("SELECT version FROM \"{schema}\".schema_version"), &[]).await.unwrap().get(0);
        assert_eq!(version, 8);
    }

    /// Migration 5 as it shipped, on top of [`SCHEMA_2_TO_4`].
    const SCHEMA_5: &str = r#"
    ALTER TABLE versions ADD COLUMN undescribed BIGINT;
    CREATE INDEX versions_undescribed ON versions (id) WHERE undescribed IS NOT NULL;
    "#;

    /// The schema changes of migrations 2 to 4 as they shipped (their updates of existing rows
    /// aside), on top of [`SCHEMA_1`].
    const SCHEMA_2_TO_4: &str = r#"
    ALTER TABLE collections
        ADD COLUMN committed_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN committed_bytes BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN committed_overage BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN protected_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN held_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN last_committed_at TIMESTAMPTZ;
    ALTER TABLE versions
        ADD COLUMN announced BIGINT,
        ADD COLUMN owner TEXT,
        ADD COLUMN held BOOLEAN NOT NULL DEFAULT false,
        ADD COLUMN protected_until TIMESTAMPTZ,
        ADD COLUMN verified_at TIMESTAMPTZ,
        ADD COLUMN quarantined TEXT;
    CREATE INDEX versions_by_owner ON versions (owner) WHERE state = 'pending';
    CREATE TABLE tombstones (
        object_key  TEXT COLLATE "C" PRIMARY KEY,
        collection  TEXT COLLATE "C" NOT NULL,
        version     UUID NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('released', 'purged')),
        recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX tombstones_by_collection ON tombstones (collection, object_key);
    CREATE TABLE repository (
        singleton INT PRIMARY KEY CHECK (singleton = 1),
        id        UUID NOT NULL
    );
    ALTER TABLE sessions
        ADD COLUMN credential TEXT,
        ADD COLUMN chain_started_at TIMESTAMPTZ;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    ALTER TABLE versions ADD COLUMN staging TEXT;
    ALTER TABLE tombstones ADD COLUMN staging TEXT;
    ALTER TABLE versions ADD COLUMN metadata TEXT;
    "#;

    /// The first release's schema, as it shipped.
    const SCHEMA_1: &str = r#"
    CREATE TABLE collections (
        id          TEXT COLLATE "C" PRIMARY KEY,
        spec        TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL,
        revision    BIGINT NOT NULL,
        next_number BIGINT NOT NULL
    );
    CREATE TABLE versions (
        id               UUID PRIMARY KEY,
        collection       TEXT COLLATE "C" NOT NULL REFERENCES collections (id),
        state            TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'trashed', 'purged')),
        number           BIGINT,
        filename         TEXT,
        object_key       TEXT NOT NULL,
        size             BIGINT,
        digest           TEXT,
        reserved         BIGINT,
        pool_share       BIGINT,
        lease_until      TIMESTAMPTZ,
        created_at       TIMESTAMPTZ NOT NULL,
        committed_at     TIMESTAMPTZ,
        trashed_at       TIMESTAMPTZ,
        trash_reason     TEXT,
        purged_at        TIMESTAMPTZ,
        uploader_user    TEXT NOT NULL,
        uploader_key     TEXT,
        uploader_session TEXT,
        UNIQUE (collection, number),
        CHECK ((state = 'pending') = (number IS NULL))
    );
    CREATE INDEX versions_by_collection ON versions (collection, state, number);
    CREATE INDEX versions_by_lease ON versions (state, lease_until);
    CREATE INDEX versions_by_trash ON versions (state, trashed_at);
    CREATE INDEX versions_by_key ON versions (object_key);
    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY,
        user_name      TEXT NOT NULL,
        access_key     TEXT,
        issued_at      TIMESTAMPTZ NOT NULL,
        expires_at     TIMESTAMPTZ NOT NULL,
        requester_addr TEXT,
        description    TEXT NOT NULL,
        single_use     BOOLEAN NOT NULL,
        scope          TEXT,
        revoked_at     TIMESTAMPTZ
    );
    CREATE INDEX sessions_by_user ON sessions (user_name, issued_at);
    CREATE TABLE audit (
        seq        BIGSERIAL PRIMARY KEY,
        at         TIMESTAMPTZ NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        collection TEXT,
        version    BIGINT,
        detail     TEXT NOT NULL
    );
    "#;

    #[tokio::test]
    async fn unreachable_servers_and_bad_urls_fail_clearly() {
        let e = PostgresCatalog::builder("postgres://nobody@127.0.0.1:1/none")
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let e = PostgresCatalog::connect("postgres://u:secret@host:notaport/db").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = PostgresCatalog::builder("postgres://u@h/db").schema("x; DROP TABLE y").build().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
