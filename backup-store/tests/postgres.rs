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

    use backup_core::{Catalog, ErrorKind, conformance};
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
        assert!(e.to_string().contains("schema version 99, newer than the 4 this build knows"), "{e}");
    }

    /// A database written by the first release (schema 1) is migrated with its rows, and the
    /// counters are computed from its versions.
    #[tokio::test]
    async fn a_schema_1_database_is_migrated_with_its_counters() {
        use backup_core::catalog::CatalogExt;
        use backup_core::protocol::{VersionRange, VersionsNeeded};
        use backup_core::{CollectionSpec, Limits};
        let Some(url) = database_url("a_schema_1_database_is_migrated_with_its_counters") else { return };
        let schema = fresh_schema("old");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let spec =
            serde_json::to_string(&CollectionSpec::new("o-${version}", Limits::new(3, 100, 400).unwrap())).unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; SET search_path = \"{schema}\"; {SCHEMA_1} \
                 CREATE TABLE schema_version (version BIGINT NOT NULL); INSERT INTO schema_version VALUES (1);"
            ))
            .await
            .unwrap();
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
