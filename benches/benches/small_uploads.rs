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
use std::time::Duration;

use backup_benches::env_u64;
use backup_core::catalog::Catalog;
use backup_core::{Engine, MemoryCatalog};
use backup_store::local_disk_store;
use backup_store::{PostgresCatalog, SqliteCatalog};

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
    backup_benches::small_uploads(&engine, "small", total).await
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
