//! The disaster-recovery suite on the memory catalog and store, one test per check of
//! `backup_core::for_each_recovery_check!` (`backup-store` runs the same checks on SQLite and
//! PostgreSQL): the drill, out-of-range numbers and unusable specs in descriptions, the most
//! metadata a version may carry, a version committed without its description, and numbers
//! given out again after a rebuild.

use std::sync::Arc;

use backup_core::MemoryCatalog;
use backup_core::catalog::Catalog;
use backup_core::conformance::recovery;
use futures::future::BoxFuture;
use object_store::ObjectStore;

fn memory_catalogs() -> BoxFuture<'static, Arc<dyn Catalog>> {
    Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
}

fn store() -> Arc<dyn ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

/// One test per check of the suite's one list.
macro_rules! on_memory {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                recovery::$check(store(), &memory_catalogs).await;
            }
        )*
    };
}

backup_core::for_each_recovery_check!(on_memory);
