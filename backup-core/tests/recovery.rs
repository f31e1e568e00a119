//! The catalog lost or a process killed at the worst moments, on the memory catalog and
//! store (`backup-store` runs the same checks on SQLite and PostgreSQL): out-of-range numbers
//! and unusable specs in descriptions, the most metadata a version may carry, a version
//! committed without its description, and numbers given out again after a rebuild.

use std::sync::Arc;

use backup_core::conformance::recovery;
use backup_core::{Catalog, MemoryCatalog};
use futures::future::BoxFuture;
use object_store::ObjectStore;

fn memory_catalogs() -> BoxFuture<'static, Arc<dyn Catalog>> {
    Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
}

fn store() -> Arc<dyn ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

#[tokio::test]
async fn out_of_range_numbers_and_unusable_specs_are_skipped() {
    recovery::out_of_range_numbers_and_unusable_specs_are_skipped(store(), &memory_catalogs).await;
}

#[tokio::test]
async fn maximal_metadata_survives_a_rebuild() {
    recovery::maximal_metadata_survives_a_rebuild(store(), &memory_catalogs).await;
}

#[tokio::test]
async fn recovery_describes_a_version_committed_without_its_description() {
    recovery::recovery_describes_a_version_committed_without_its_description(store(), &memory_catalogs).await;
}

#[tokio::test]
async fn a_rebuild_never_reuses_a_number() {
    recovery::a_rebuild_never_reuses_a_number(store(), &memory_catalogs).await;
}
