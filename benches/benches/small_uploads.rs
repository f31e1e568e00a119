//! P5: small uploads (4 KiB each, into 16 collections, 8 at a time) per second through the
//! engine on local disk (fsync on), with the SQLite catalog and with the PostgreSQL catalog,
//! against the in-memory catalog on the same disk in the same run.
//!
//! ```text
//! .ci/with-services cargo bench -p backup-benches --bench small_uploads
//! ```
//!
//! PostgreSQL needs `TEST_DATABASE_URL` (`.ci/with-services` starts a throwaway cluster and
//! sets it); without it that line says it was skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_benches::env_u64;
use backup_core::catalog::Catalog;
use backup_core::{Actor, CollectionId, CollectionSpec, Engine, Limits, MemoryCatalog, UploadOptions};
use backup_store::local_disk_store;
use backup_store::{PostgresCatalog, SqliteCatalog};
use bytes::Bytes;
use futures::stream;

const COLLECTIONS: usize = 16;
const CONCURRENCY: usize = 8;
const SIZE: usize = 4096;

/// Uploads `total` bodies of 4 KiB with `CONCURRENCY` tasks; returns uploads per second.
async fn run(catalog: Arc<dyn Catalog>, dir: &std::path::Path, total: u64) -> f64 {
    // Wired as the server wires local disk: descriptions without fsync.
    let engine = Engine::builder()
        .catalog(catalog)
        .store(local_disk_store(dir).expect("store"))
        .description_store(backup_store::local_disk::description_store(dir).expect("descriptions"))
        .build()
        .expect("engine");
    let me = Actor::user("bench");
    let ids: Vec<CollectionId> = (0..COLLECTIONS).map(|i| format!("small-{i}").parse().expect("id")).collect();
    for id in &ids {
        // Keep 10 versions: rotation and deletion are part of every upload after the tenth.
        let spec = CollectionSpec::new("s-${version}", Limits::new(10, 1 << 20, 10 << 20).expect("limits"));
        engine.create_collection(&me, id, spec).await.expect("collection");
    }
    let body = Bytes::from(vec![7u8; SIZE]);
    let start = Instant::now();
    let per_task = total / CONCURRENCY as u64;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (engine, me, ids, body) = (engine.clone(), me.clone(), ids.clone(), body.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let id = &ids[(t + i as usize * CONCURRENCY) % COLLECTIONS];
                    let s = stream::iter([Ok::<_, std::io::Error>(body.clone())]);
                    engine
                        .upload_with(&me, id, s, UploadOptions::new().expected_size(SIZE as u64))
                        .await
                        .expect("upload");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (per_task * CONCURRENCY as u64) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let total = env_u64("BENCH_SMALL_UPLOADS", 4000);
    // Start without the writeback of the benchmarks before (fsyncs would wait for it).
    let _ = std::process::Command::new("sync").status();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let memory = run(Arc::new(MemoryCatalog::new()), &tmp.path().join("memory"), total).await;
        let sqlite_catalog = SqliteCatalog::open(tmp.path().join("catalog.db")).await.expect("sqlite");
        let sqlite = run(Arc::new(sqlite_catalog), &tmp.path().join("sqlite"), total).await;
        println!("P5 small_uploads_sqlite per_s={sqlite:.0} ratio_vs_memory={:.2}", sqlite / memory);
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let schema = format!("bench_{}", std::process::id());
                let pg = PostgresCatalog::builder(&url).schema(schema).pool_size(16).build().await.expect("postgres");
                let postgres = run(Arc::new(pg), &tmp.path().join("postgres"), total).await;
                let fsync = backup_benches::postgres_fsync(&url).await;
                println!(
                    "P5 small_uploads_postgres per_s={postgres:.0} ratio_vs_memory={:.2} fsync={fsync}",
                    postgres / memory
                );
            }
            Err(_) => println!("P5 small_uploads_postgres skipped: no TEST_DATABASE_URL (run under .ci/with-services)"),
        }
        println!(
            "   memory catalog baseline: {memory:.0} uploads/s of {SIZE} bytes, {CONCURRENCY} at a time, {total} each"
        );
        let _ = Duration::ZERO;
    });
}
