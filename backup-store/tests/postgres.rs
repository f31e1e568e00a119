//! The PostgreSQL catalog: the conformance suites on real parallel connections, migrations,
//! and several catalogs (pools) on one database.

mod support;

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_tests() {
    support::skipped("postgres tests", "built without the `postgres` feature");
}

#[cfg(feature = "postgres")]
mod with_postgres {
    use std::sync::Arc;

    use backup_core::{Catalog, ErrorKind, conformance};
    use backup_store::PostgresCatalog;

    use super::support::{database_url, fresh_schema};

    async fn catalog(url: &str, schema: &str) -> Arc<dyn Catalog> {
        Arc::new(PostgresCatalog::builder(url).schema(schema).pool_size(24).build().await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_passes_the_catalog_suite() {
        let Some(url) = database_url("postgres_passes_the_catalog_suite") else { return };
        conformance::catalog::run_all(catalog(&url, &fresh_schema("suite")).await).await;
        let empty = catalog(&url, &fresh_schema("empty")).await;
        conformance::catalog::run_all_on_empty(empty, catalog(&url, &fresh_schema("scratch")).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_passes_the_engine_suite_on_local_disk() {
        let Some(url) = database_url("postgres_passes_the_engine_suite_on_local_disk") else { return };
        let dir = tempfile::tempdir().unwrap();
        let store = backup_core::local_disk_store(dir.path()).unwrap();
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
        assert!(e.to_string().contains("schema version 99, newer than the 1 this build knows"), "{e}");
    }

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
