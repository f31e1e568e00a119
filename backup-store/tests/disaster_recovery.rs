//! The disaster-recovery suite (`backup_core::conformance::recovery`) with the durable
//! catalogs: SQLite on local disk and on the in-process S3 server, PostgreSQL on local disk,
//! one test per check and backend.
//! The catalog is lost; a fresh one is rebuilt from the store alone, and another from a
//! snapshot plus the store.

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_store::SqliteCatalog;
use futures::future::BoxFuture;

/// Fresh SQLite catalogs, each its own file in `dir`.
fn sqlite_catalogs(dir: &std::path::Path) -> impl Fn() -> BoxFuture<'static, Arc<dyn Catalog>> + Sync + use<> {
    let dir = dir.to_owned();
    move || {
        let path = dir.join(format!("catalog-{}.db", uuid::Uuid::new_v4().simple()));
        Box::pin(async move { Arc::new(SqliteCatalog::open(path).await.expect("sqlite")) as Arc<dyn Catalog> })
    }
}

/// Fresh PostgreSQL catalogs, each in a schema of its own; `None` (reported as skipped) without
/// a database.
#[cfg(feature = "postgres")]
fn postgres_catalogs(test: &str) -> Option<impl Fn() -> BoxFuture<'static, Arc<dyn Catalog>> + Sync + use<>> {
    use backup_store::testing::{database_url, fresh_schema};
    let url = database_url(test)?;
    Some(move || -> BoxFuture<'static, Arc<dyn Catalog>> {
        let (url, schema) = (url.clone(), fresh_schema("recovery"));
        Box::pin(async move {
            let catalog = backup_store::PostgresCatalog::builder(&url).schema(&schema).build().await.expect("postgres");
            Arc::new(catalog) as Arc<dyn Catalog>
        })
    })
}

/// Every check of `backup_core::conformance::recovery` (the suite's one list,
/// `backup_core::for_each_recovery_check!`), each a test of its own on SQLite with local disk,
/// SQLite with the in-process S3 server, and PostgreSQL with local disk.
macro_rules! recovery_checks {
    ($($check:ident),* $(,)?) => {
        mod sqlite_local_disk {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = backup_store::local_disk_store(dir.path().join("blobs")).unwrap();
                    backup_core::conformance::recovery::$check(store, &sqlite_catalogs(dir.path())).await;
                }
            )*
        }
        mod sqlite_s3 {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[cfg(feature = "aws")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let server = backup_store::testing::S3Server::start().await;
                    let store =
                        backup_store::object_store_from_url(&server.url(), &backup_store::StoreOptions::default())
                            .unwrap();
                    let dir = tempfile::tempdir().unwrap();
                    backup_core::conformance::recovery::$check(store, &sqlite_catalogs(dir.path())).await;
                }

                #[cfg(not(feature = "aws"))]
                #[test]
                fn $check() {
                    backup_store::testing::skipped(
                        concat!("sqlite_s3::", stringify!($check)),
                        "built without the `aws` feature",
                    );
                }
            )*
        }
        mod postgres_local_disk {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[cfg(feature = "postgres")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(catalogs) = postgres_catalogs(concat!("postgres_local_disk::", stringify!($check))) else {
                        return;
                    };
                    let dir = tempfile::tempdir().unwrap();
                    let store = backup_store::local_disk_store(dir.path()).unwrap();
                    backup_core::conformance::recovery::$check(store, &catalogs).await;
                }

                #[cfg(not(feature = "postgres"))]
                #[test]
                fn $check() {
                    backup_store::testing::skipped(
                        concat!("postgres_local_disk::", stringify!($check)),
                        "built without the `postgres` feature",
                    );
                }
            )*
        }
    };
}

backup_core::for_each_recovery_check!(recovery_checks);
