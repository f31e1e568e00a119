//! One conformance suite, every catalog: each check of `backup_core::conformance::catalog` is
//! a test case of its own on the memory, SQLite and PostgreSQL catalogs, each on fresh
//! catalogs (new files, new PostgreSQL schemas). The cases come from the suite's one list,
//! `backup_core::for_each_catalog_check!`: a check added to the suite runs here on every
//! catalog without touching this file. A PostgreSQL case without `TEST_DATABASE_URL` says it
//! is skipped by name (and fails under `CI=true`).

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::{MemoryCatalog, conformance};
use backup_store::SqliteCatalog;
use futures::future::BoxFuture;

/// Makes fresh catalogs of one kind, and keeps alive what they need.
struct Catalogs {
    new: Box<dyn Fn() -> BoxFuture<'static, Arc<dyn Catalog>> + Sync>,
    _dir: Option<tempfile::TempDir>,
}

fn memory(_test: &str) -> Option<Catalogs> {
    let new = || -> BoxFuture<'static, Arc<dyn Catalog>> {
        Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
    };
    Some(Catalogs { new: Box::new(new), _dir: None })
}

fn sqlite(_test: &str) -> Option<Catalogs> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let new = move || -> BoxFuture<'static, Arc<dyn Catalog>> {
        let file = path.join(format!("catalog-{}.db", uuid::Uuid::new_v4().simple()));
        Box::pin(async move { Arc::new(SqliteCatalog::open(file).await.unwrap()) as Arc<dyn Catalog> })
    };
    Some(Catalogs { new: Box::new(new), _dir: Some(dir) })
}

#[cfg(feature = "postgres")]
fn postgres(test: &str) -> Option<Catalogs> {
    use backup_store::testing::{database_url, fresh_schema};
    let url = database_url(test)?;
    let new = move || -> BoxFuture<'static, Arc<dyn Catalog>> {
        let (url, schema) = (url.clone(), fresh_schema("suite"));
        Box::pin(async move {
            let catalog =
                backup_store::PostgresCatalog::builder(url).schema(schema).pool_size(24).build().await.unwrap();
            Arc::new(catalog) as Arc<dyn Catalog>
        })
    };
    Some(Catalogs { new: Box::new(new), _dir: None })
}

#[cfg(not(feature = "postgres"))]
fn postgres(test: &str) -> Option<Catalogs> {
    backup_store::testing::skipped(test, "built without the `postgres` feature");
    None
}

/// One module per backend, one test per check of the suite.
macro_rules! matrix {
    ($backend:ident; $($check:ident: $kind:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let name = concat!(stringify!($backend), "::", stringify!($check));
                    let Some(catalogs) = super::$backend(name) else { return };
                    backup_core::conformance::catalog::check(stringify!($check)).run(&*catalogs.new).await;
                }
            )*
        }
    };
}

backup_core::for_each_catalog_check!(matrix, memory);
backup_core::for_each_catalog_check!(matrix, sqlite);
backup_core::for_each_catalog_check!(matrix, postgres);

/// The whole suite in one go, as a third-party catalog would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_in_one_go_on_sqlite() {
    let catalogs = sqlite("").unwrap();
    conformance::catalog::run_all((catalogs.new)().await).await;
    conformance::catalog::run_all_on_empty(&*catalogs.new).await;
}
