//! The conformance suites against the catalog and stores that ship with backup-core.

use std::sync::Arc;

use backup_core::{Catalog, MemoryCatalog, conformance, local_disk_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_catalog_passes_the_catalog_suite() {
    conformance::catalog::run_all(Arc::new(MemoryCatalog::new())).await;
    conformance::catalog::run_all_on_empty(Arc::new(MemoryCatalog::new()), Arc::new(MemoryCatalog::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_suite_on_memory_store() {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    conformance::engine::run_all(Arc::new(object_store::memory::InMemory::new()), catalog).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_suite_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_disk_store(dir.path()).unwrap();
    conformance::engine::run_all(store, Arc::new(MemoryCatalog::new())).await;
}
