//! Catalog export and import across kinds: SQLite → blob store → PostgreSQL (and back), with
//! identical contents and listings.

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::catalog::CatalogExt;
use backup_core::testing::{body_of, pattern};
use backup_core::{
    Actor, CollectionSpec, Engine, Limits, Session, SessionId, UploadOptions, VersionQuery, conformance,
};
use backup_store::{SqliteCatalog, snapshot};
use object_store::ObjectStore;
use object_store::path::Path;

/// Fills a catalog through an engine: collections, rotation, a deletion, an upload in flight,
/// sessions, audit events.
async fn populate(catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>) -> Engine {
    let engine = Engine::builder().catalog(catalog.clone()).store(store).part_size(1024).build().unwrap();
    let me = Actor::user("exporter");
    for (name, keep) in [("alpha", 2u32), ("beta", 3)] {
        let id = name.parse().unwrap();
        let spec = CollectionSpec::new(format!("{name}-${{version}}.tar"), Limits::new(keep, 10_000, 40_000).unwrap());
        engine.create_collection(&me, &id, spec).await.unwrap();
        for i in 0..4 {
            engine.upload(&me, &id, body_of(pattern(i, 3000 + i as usize), 700)).await.unwrap();
        }
    }
    engine.delete_version(&me, &"beta".parse().unwrap(), 3).await.unwrap();
    let staged = engine
        .begin_upload(&me, &"alpha".parse().unwrap(), body_of(pattern(99, 500), 100), UploadOptions::default())
        .await
        .unwrap();
    std::mem::forget(staged); // still in flight when the snapshot is taken
    let now = backup_core::Timestamp::from(chrono::Utc::now());
    let s = Session::new(SessionId::of_token("token-1"), "exporter", now, now + chrono::Duration::hours(6), "Login")
        .with_scope("{\"elements\":[]}");
    catalog.insert_session(&s).await.unwrap();
    engine
}

async fn listing(engine: &Engine) -> Vec<String> {
    let me = Actor::user("reader");
    let mut out = Vec::new();
    for c in engine.list_collections(&me, None, 100).await.unwrap().items {
        for v in engine.versions(&me, &c.id, VersionQuery::first(100).with_trashed()).await.unwrap().items {
            out.push(format!("{} {} {} {} {:?} {}", c.id, v.number, v.size, v.digest, v.state, v.filename));
        }
    }
    out
}

async fn round_trip(source: Arc<dyn Catalog>, target: Arc<dyn Catalog>) {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let engine = populate(source.clone(), store.clone()).await;
    let key = Path::from("catalog-exports/snapshot.jsonl");
    let exported = snapshot::export_to(source.as_ref(), &store, &key).await.unwrap();
    assert!(exported.records > 10, "{exported:?}");
    let imported = snapshot::import_from(&store, &key, target.as_ref()).await.unwrap();
    assert_eq!((imported.collections, imported.sessions), (2, 1), "{imported:?}");
    assert_eq!(
        conformance::catalog::contents(source.as_ref()).await,
        conformance::catalog::contents(target.as_ref()).await
    );
    let restored = Engine::builder().catalog(target).store(store).build().unwrap();
    assert_eq!(listing(&engine).await, listing(&restored).await);
    // The restored repository serves the same bytes.
    let d = restored.download(&Actor::user("r"), &"beta".parse().unwrap(), "4".parse().unwrap()).await.unwrap();
    let bytes: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(d.into_stream()).await.unwrap();
    assert_eq!(bytes.concat(), pattern(3, 3003));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(SqliteCatalog::open(dir.path().join("a.db")).await.unwrap());
    let b = Arc::new(SqliteCatalog::open(dir.path().join("b.db")).await.unwrap());
    round_trip(a, b).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back() {
    use backup_store::PostgresCatalog;
    let Some(url) = backup_store::testing::database_url("sqlite_to_postgres_and_back") else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteCatalog::open(dir.path().join("source.db")).await.unwrap());
    let pg = Arc::new(
        PostgresCatalog::builder(&url).schema(backup_store::testing::fresh_schema("import")).build().await.unwrap(),
    );
    round_trip(sqlite, pg).await;

    let pg = Arc::new(
        PostgresCatalog::builder(&url).schema(backup_store::testing::fresh_schema("export")).build().await.unwrap(),
    );
    let sqlite = Arc::new(SqliteCatalog::open(dir.path().join("target.db")).await.unwrap());
    round_trip(pg, sqlite).await;
}

#[cfg(not(feature = "postgres"))]
#[test]
fn sqlite_to_postgres_and_back() {
    backup_store::testing::skipped("sqlite_to_postgres_and_back", "built without the `postgres` feature");
}
