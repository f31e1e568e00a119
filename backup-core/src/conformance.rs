//! Conformance suites (feature `conformance`): every [`crate::Catalog`] implementation must
//! pass [`catalog::run_all`], and every object store backend [`engine::run_all`].
//!
//! Each check works in fresh, randomly named collections (and sessions), so suites can run in
//! parallel against one database or bucket. Checks panic with a message on failure, like
//! `object_store`'s own integration suite.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::{Catalog, MemoryCatalog, conformance};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
//! conformance::catalog::run_all(catalog).await;
//! # });
//! ```

pub mod catalog;
pub mod engine;
pub mod recovery;

use crate::id::CollectionId;

/// A fresh collection id: `prefix-<random>`.
pub fn unique_collection(prefix: &str) -> CollectionId {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    CollectionId::new(format!("{prefix}-{}", &suffix[..12])).expect("prefixes used by the suites are valid")
}
