//! `backup_core::conformance` on the redb catalog, as a third-party catalog runs it: every check
//! of the catalog suite as a test of its own (from the suite's one list,
//! `backup_core::for_each_catalog_check!`, so a check added to the suite runs here without
//! touching this file), the engine suite over an in-memory store with this catalog, and the
//! disaster-recovery suite with fresh redb catalogs (each check a test of its own too).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backup_core::catalog::Catalog;
use backup_core::conformance;
use backup_core::object_store::memory::InMemory;
use backup_redb_catalog::RedbCatalog;
use futures::future::BoxFuture;

/// Makes fresh catalogs, each a new database file in a directory that lives as long as this.
struct Catalogs {
    dir: tempfile::TempDir,
    made: AtomicU64,
}

impl Catalogs {
    fn new() -> Self {
        Catalogs { dir: tempfile::tempdir().expect("temporary directory"), made: AtomicU64::new(0) }
    }

    fn fresh(&self) -> BoxFuture<'static, Arc<dyn Catalog>> {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("catalog-{n}.redb"));
        Box::pin(async move { Arc::new(RedbCatalog::open(path).await.expect("open redb catalog")) as Arc<dyn Catalog> })
    }
}

/// One test per check of the catalog suite, each on fresh catalogs.
macro_rules! catalog_checks {
    ($($check:ident: $kind:ident),* $(,)?) => {
        mod catalog {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let catalogs = super::Catalogs::new();
                    let new = || catalogs.fresh();
                    backup_core::conformance::catalog::check(stringify!($check)).run(&new).await;
                }
            )*
        }
    };
}

backup_core::for_each_catalog_check!(catalog_checks);

/// One test per check of the disaster-recovery suite: the catalog is lost and rebuilt into
/// fresh redb catalogs.
macro_rules! recovery_checks {
    ($($check:ident),* $(,)?) => {
        mod recovery {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let catalogs = super::Catalogs::new();
                    let new = || catalogs.fresh();
                    let store = std::sync::Arc::new(super::InMemory::new());
                    backup_core::conformance::recovery::$check(store, &new).await;
                }
            )*
        }
    };
}

backup_core::for_each_recovery_check!(recovery_checks);

/// The engine's suite with this catalog, uploads written as multipart uploads whose ids the
/// catalog records. (Its last part, the recovery suite on in-memory catalogs, is about the
/// store; `recovery::*` above runs it on redb catalogs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_suite() {
    let catalogs = Catalogs::new();
    let store = Arc::new(InMemory::new());
    conformance::engine::run_all_with(store.clone(), Some(store), catalogs.fresh().await).await;
}

/// The catalog suite in one go on one shared catalog, as `run_all` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_suite_in_one_go() {
    let catalogs = Catalogs::new();
    conformance::catalog::run_all(catalogs.fresh().await).await;
    conformance::catalog::run_all_on_empty(&|| catalogs.fresh()).await;
}

/// What a catalog holds survives closing and reopening its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_catalog_holds_the_same_rows() {
    let catalogs = Catalogs::new();
    let source = catalogs.fresh().await;
    conformance::catalog::reserve_commit_numbers_and_lists(source.as_ref()).await;
    conformance::catalog::commit_applies_rotation_and_purge(source.as_ref()).await;
    let before = conformance::catalog::contents(source.as_ref()).await;
    drop(source);
    let path = catalogs.dir.path().join("catalog-0.redb");
    let reopened = RedbCatalog::open(path).await.expect("reopen");
    assert_eq!(conformance::catalog::contents(&reopened).await, before);
}
