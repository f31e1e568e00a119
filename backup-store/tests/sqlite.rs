//! The SQLite catalog: the conformance suites, migrations, and several catalogs (connections)
//! on one file.

use std::sync::Arc;

use backup_core::{Catalog, ErrorKind, conformance};
use backup_store::SqliteCatalog;

async fn fresh(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Catalog> {
    Arc::new(SqliteCatalog::open(dir.path().join(name)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_catalog_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::catalog::run_all(fresh(&dir, "suite.db").await).await;
    conformance::catalog::run_all_on_empty(fresh(&dir, "empty.db").await, fresh(&dir, "scratch.db").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_engine_suite_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = backup_core::local_disk_store(dir.path().join("blobs")).unwrap();
    conformance::engine::run_all(store, fresh(&dir, "engine.db").await).await;
}

/// Two catalogs (each its own writer connection) on one file, as two processes would be:
/// SQLite's write lock, not the in-process mutex, keeps reservations atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_catalogs_on_one_file_stay_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(&dir, "shared.db").await;
    let b = fresh(&dir, "shared.db").await;
    // The concurrency checks spawn tasks on one catalog; run both at once on the two.
    let (x, y) = tokio::join!(
        conformance::catalog::concurrent_reservations_are_atomic(a.clone()),
        conformance::catalog::concurrent_commits_get_unique_numbers(b.clone()),
    );
    let ((), ()) = (x, y);
    tokio::join!(
        conformance::catalog::concurrent_commits_get_unique_numbers(a),
        conformance::catalog::concurrent_reservations_are_atomic(b),
    );
}

#[tokio::test]
async fn reopening_keeps_everything_and_url_form_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/catalog.db");
    let first = SqliteCatalog::open(&path).await.unwrap();
    conformance::catalog::reserve_commit_numbers_and_lists(&first).await;
    let before = conformance::catalog::contents(&first).await;
    drop(first);
    let again = backup_store::open_catalog(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(conformance::catalog::contents(again.as_ref()).await, before);
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    drop(SqliteCatalog::open(&path).await.unwrap());
    // A later build migrated the file.
    rusqlite::Connection::open(&path).unwrap().execute("UPDATE schema_version SET version = 99", []).unwrap();
    let e = SqliteCatalog::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.to_string().contains("schema version 99, newer than the 1 this build knows"), "{e}");
}

/// Writes that wait for the writer share one transaction and one sync (group commit); each
/// still succeeds or fails alone, and a failed one leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_writes_succeed_and_fail_alone() {
    use backup_core::{AuditEvent, Collection, CollectionId, CollectionSpec, Limits};
    let dir = tempfile::tempdir().unwrap();
    let catalog = fresh(&dir, "group.db").await;
    let now = backup_core::clock::to_micros(chrono::Utc::now());
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let catalog = catalog.clone();
            // 40 distinct ids; 20 creations repeat one of them and must fail.
            let id: CollectionId = format!("grouped-{}", i % 40).parse().unwrap();
            let spec = CollectionSpec::new("v-${version}", Limits::new(2, 100 + i, 1000).unwrap());
            tokio::spawn(async move {
                let audit = AuditEvent::new(now, "test", "collection.create").collection(&id);
                catalog.create_collection(&Collection::new(id, spec, now), &audit).await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => created += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(created, 40);
    let listed = catalog.list_collections(None, 100).await.unwrap();
    assert_eq!(listed.len(), 40);
    // The file holds exactly what was acknowledged.
    drop(catalog);
    let reopened = fresh(&dir, "group.db").await;
    assert_eq!(reopened.list_collections(None, 100).await.unwrap(), listed);
}
