//! The conformance suites against the catalog and stores that ship with backup-core.
//! (`backup-store` runs the catalog suite as a matrix over every catalog, one case per check.)

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::conformance::engine::{self, Ctx};
use backup_core::{MemoryCatalog, conformance};
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::multipart::MultipartStore;

fn local_disk(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap().with_fsync(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_catalog_passes_the_catalog_suite() {
    conformance::catalog::run_all(Arc::new(MemoryCatalog::new())).await;
    let memory = || -> BoxFuture<'static, Arc<dyn Catalog>> { Box::pin(async { Arc::new(MemoryCatalog::new()) as _ }) };
    conformance::catalog::run_all_on_empty(&memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_under_a_monitor_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    conformance::catalog::uploads_under_a_monitor_never_pass_the_hard_limit(
        Arc::new(MemoryCatalog::new()),
        local_disk(&dir),
    )
    .await;
}

/// One test per check of the engine suite, on the stores the enclosing module's `stores`
/// makes (the store and, if it has one, the same store as a `MultipartStore`).
macro_rules! one_test_per_check {
    ($($check:ident: $kind:ident),* $(,)?) => { $( one_test_per_check!(@test $kind $check); )* };
    (@test ctx $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let dir = tempfile::tempdir().unwrap();
            let (store, multipart) = stores(&dir);
            engine::$check(&Ctx::new(store, multipart, Arc::new(MemoryCatalog::new()))).await;
        }
    };
    (@test multipart $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let dir = tempfile::tempdir().unwrap();
            let (store, multipart) = stores(&dir);
            let multipart = multipart.expect("a store with a MultipartStore (see without_multipart!)");
            let ctx = Ctx::new(store, Some(multipart.clone()), Arc::new(MemoryCatalog::new()));
            engine::$check(&ctx, multipart).await;
        }
    };
    (@test store $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let dir = tempfile::tempdir().unwrap();
            engine::$check(stores(&dir).0).await;
        }
    };
}

/// [`one_test_per_check!`] for a store without a `MultipartStore`: the checks that need one
/// are not made (rather than made to pass without checking anything).
macro_rules! without_multipart {
    ($($check:ident: $kind:ident),* $(,)?) => { $( without_multipart!(@test $kind $check); )* };
    (@test multipart $check:ident) => {};
    (@test $kind:ident $check:ident) => { one_test_per_check!(@test $kind $check); };
}

/// The disaster-recovery suite on the enclosing module's `stores`, with in-memory catalogs.
macro_rules! recovery_suite {
    () => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn recovery_suite() {
            let dir = tempfile::tempdir().unwrap();
            let memory_catalogs = || -> BoxFuture<'static, Arc<dyn Catalog>> {
                Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
            };
            conformance::recovery::run_all(stores(&dir).0, &memory_catalogs).await;
        }
    };
}

type Stores = (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>);

mod engine_on_memory_store {
    use super::*;

    fn stores(_: &tempfile::TempDir) -> Stores {
        let store = Arc::new(object_store::memory::InMemory::new());
        (store.clone(), Some(store))
    }

    backup_core::for_each_engine_check!(one_test_per_check);
    recovery_suite!();
}

mod engine_on_local_disk {
    use super::*;

    fn stores(dir: &tempfile::TempDir) -> Stores {
        (local_disk(dir), None)
    }

    backup_core::for_each_engine_check!(without_multipart);
    recovery_suite!();
}
