//! Conformance suites (feature `conformance`): every [`crate::catalog::Catalog`] implementation must
//! pass [`catalog::run_all`] and [`catalog::run_all_on_empty`], and every object store backend
//! [`engine::run_all`] (which includes the disaster-recovery drill, [`recovery::run_all`]).
//!
//! Each check works in fresh, randomly named collections (and sessions), so suites can run in
//! parallel against one database or bucket. Checks panic with a message on failure, like
//! `object_store`'s own integration suite.
//!
//! Each suite's checks are listed once, in a table macro ([`for_each_catalog_check!`](crate::for_each_catalog_check),
//! [`for_each_engine_check!`](crate::for_each_engine_check),
//! [`for_each_recovery_check!`](crate::for_each_recovery_check)): the suite's `run_all` is made from it, and a backend's test
//! file expands it into one test per check, so a check added to the suite runs on every backend
//! with a test name of its own, and a `pub async fn` check left out of its table fails this
//! crate's tests.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::catalog::Catalog;
//! use backup_core::{MemoryCatalog, conformance};
//! use futures::future::BoxFuture;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
//! conformance::catalog::run_all(catalog).await;
//! // The checks that need empty catalogs of their own get them from a factory.
//! let fresh = || -> BoxFuture<'static, Arc<dyn Catalog>> { Box::pin(async { Arc::new(MemoryCatalog::new()) as _ }) };
//! conformance::catalog::run_all_on_empty(&fresh).await;
//! # });
//! ```

pub mod catalog;
pub mod engine;
pub mod recovery;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::catalog::Catalog;
use crate::id::CollectionId;

/// Makes a fresh, empty catalog of the kind under test (a new file, a new database schema).
pub type NewCatalog<'a> = &'a (dyn Fn() -> BoxFuture<'static, Arc<dyn Catalog>> + Sync);

/// A fresh collection id: `prefix-<random>`.
pub fn unique_collection(prefix: &str) -> CollectionId {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    CollectionId::new(format!("{prefix}-{}", &suffix[..12])).expect("prefixes used by the suites are valid")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The names of the `pub async fn`s declared at the top level of a module's source (rustfmt
    /// keeps each declaration on one line, unindented).
    fn declared(source: &str) -> BTreeSet<&str> {
        source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split(['(', '<']).next())
            .collect()
    }

    /// Names of a table's entries, whatever their kind.
    macro_rules! names {
        ($($check:ident $(: $kind:ident)?),* $(,)?) => {
            BTreeSet::from([$(stringify!($check)),*])
        };
    }

    /// The checks a module declares, less its helpers, are exactly its table's.
    fn assert_listed(module: &str, source: &str, helpers: &[&str], table: BTreeSet<&str>) {
        let declared = declared(source);
        for helper in helpers {
            assert!(declared.contains(helper), "{module}: the helper {helper} is gone; update this test");
        }
        let checks: BTreeSet<&str> = declared.iter().copied().filter(|name| !helpers.contains(name)).collect();
        let unlisted: Vec<_> = checks.difference(&table).collect();
        let undeclared: Vec<_> = table.difference(&checks).collect();
        assert!(
            unlisted.is_empty() && undeclared.is_empty(),
            "{module}: checks declared but not in its table (they would run nowhere): {unlisted:?}; \
             in the table but not declared as `pub async fn`: {undeclared:?}"
        );
    }

    #[test]
    fn every_catalog_check_is_in_the_table() {
        let table = crate::for_each_catalog_check!(names);
        assert_eq!(table.len(), super::catalog::CHECKS.len());
        assert_listed(
            "conformance::catalog",
            include_str!("conformance/catalog.rs"),
            &["run_all", "run_all_on_empty", "contents"],
            table,
        );
    }

    #[test]
    fn every_engine_check_is_in_the_table() {
        let table = crate::for_each_engine_check!(names);
        assert_listed(
            "conformance::engine",
            include_str!("conformance/engine.rs"),
            &["run_all", "run_all_with"],
            table,
        );
    }

    #[test]
    fn every_recovery_check_is_in_the_table() {
        let table = crate::for_each_recovery_check!(names);
        assert_listed("conformance::recovery", include_str!("conformance/recovery.rs"), &[], table);
    }

    #[test]
    fn the_scan_finds_declarations_and_only_those() {
        let source = "pub async fn a(x: u8) {}\npub async fn b<'a>(x: &'a u8) {}\n    pub async fn method(&self) {}\npub fn sync() {}\n// pub async fn c()\n";
        assert_eq!(declared(source), BTreeSet::from(["a", "b"]));
    }
}
