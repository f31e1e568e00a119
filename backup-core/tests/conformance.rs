//! The conformance suites against the catalog and stores that ship with backup-core.
//! (`backup-store` runs the catalog suite as a matrix over every catalog, one case per check.)

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::{MemoryCatalog, conformance};
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_suite_on_memory_store() {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    conformance::engine::run_all(Arc::new(object_store::memory::InMemory::new()), catalog).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_suite_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    conformance::engine::run_all(local_disk(&dir), Arc::new(MemoryCatalog::new())).await;
}
