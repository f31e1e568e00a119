//! P7: the cost of an upload does not grow with history. 4 KiB uploads per second, 8 at a
//! time, FIFO, through the engine on local disk (fsync on), into a collection that already
//! holds 100,000 committed versions, against the same into one that holds 100, in the same
//! run on the same kind of catalog, with durable settings (SQLite `synchronous = FULL`,
//! PostgreSQL with `fsync` on: `.ci/with-services` starts its cluster so for benchmarks).
//!
//! ```text
//! .ci/with-services cargo bench -p backup-benches --bench history_scale
//! BENCH_HISTORY=20000 BENCH_HISTORY_UPLOADS=500 cargo bench -p backup-benches --bench history_scale
//! ```
//!
//! The existing versions are loaded through the catalog's own import (the rows, counters and
//! indexes a commit writes, checked by `ImportCheck`; one transaction instead of 100,000
//! synced commits), never by raw SQL. The two sizes alternate over the rounds and the medians
//! are compared.

use std::sync::Arc;
use std::time::Instant;

use backup_benches::env_u64;
use backup_core::catalog::CatalogRecord;
use backup_core::{
    Actor, Catalog, Collection, CollectionId, CollectionSpec, Digest, DigestAlgorithm, Engine, Limits, Timestamp,
    UploadOptions, Uploader, Version, VersionId,
};
use backup_store::{PostgresCatalog, SqliteCatalog, local_disk_store};
use bytes::Bytes;
use futures::{StreamExt, stream};

const CONCURRENCY: usize = 8;
const SIZE: usize = 4096;
const SMALL: u64 = 100;

fn collection() -> CollectionId {
    "history".parse().expect("id")
}

/// Room for every version: FIFO never evicts, so the history only grows.
fn spec() -> CollectionSpec {
    CollectionSpec::new("h-${version}", Limits::new(1_000_000, 1 << 20, 1_000_000 << 20).expect("limits"))
}

/// A snapshot of one collection holding `n` committed versions, as the catalog exports them.
fn snapshot(n: u64) -> futures::stream::BoxStream<'static, backup_core::Result<CatalogRecord>> {
    let start = Timestamp::from(chrono::Utc::now() - chrono::Duration::days(30));
    let c = Collection::new(collection(), spec(), start);
    let head = [CatalogRecord::header(start), CatalogRecord::Collection { collection: c, next_number: n + 1 }];
    let digest = Digest::of(DigestAlgorithm::Blake3, &[7u8; SIZE]);
    let versions = (1..=n).map(move |number| {
        let at = start + chrono::Duration::seconds(number as i64);
        let id = VersionId::generate();
        CatalogRecord::Version(
            Version::new(id, collection(), number, format!("old/{id}"), SIZE as u64, digest)
                .with_filename(format!("h-{number}"))
                .with_times(at, at)
                .with_uploader(Uploader::user("history")),
        )
    });
    stream::iter(head.into_iter().chain(versions).map(Ok)).boxed()
}

/// Uploads per second into a collection that already holds `history` versions.
async fn measure(catalog: Arc<dyn Catalog>, dir: &std::path::Path, history: u64, uploads: u64) -> f64 {
    catalog.import(snapshot(history)).await.expect("import");
    let store = local_disk_store(dir).expect("store");
    // A catalog loaded from a snapshot takes the fresh store on purpose.
    let engine = Engine::builder().catalog(catalog).store(store).adopt_store(true).build().expect("engine");
    let me = Actor::user("bench");
    let id = collection();
    let body = Bytes::from(vec![7u8; SIZE]);
    let run = |n: u64| {
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (engine, me, id, body) = (engine.clone(), me.clone(), id.clone(), body.clone());
                tokio::spawn(async move {
                    for _ in 0..n / CONCURRENCY as u64 {
                        let s = stream::iter([Ok::<_, std::io::Error>(body.clone())]);
                        engine
                            .upload_with(&me, &id, s, UploadOptions::new().expected_size(SIZE as u64))
                            .await
                            .expect("upload");
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.expect("task");
            }
        }
    };
    run(CONCURRENCY as u64 * 8).await; // warm-up: connections, statements, file system
    let start = Instant::now();
    run(uploads).await;
    (uploads / CONCURRENCY as u64 * CONCURRENCY as u64) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates the small and the large history over `rounds`, each on a fresh catalog from
/// `fresh`; returns the medians (small, large).
async fn compare<F, Fut>(fresh: F, large: u64, uploads: u64, rounds: usize) -> (f64, f64)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Catalog>>,
{
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (mut small_runs, mut large_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [(u64, bool); 2] = if round % 2 == 0 { [(SMALL, false), (large, true)] } else { [(large, true), (SMALL, false)] };
        for (history, is_large) in order {
            let name = format!("r{round}-{history}");
            let per_s = measure(fresh(name.clone()).await, &tmp.path().join(&name), history, uploads).await;
            if is_large { large_runs.push(per_s) } else { small_runs.push(per_s) }
        }
    }
    (median(small_runs), median(large_runs))
}

fn main() {
    let large = env_u64("BENCH_HISTORY", 100_000);
    let uploads = env_u64("BENCH_HISTORY_UPLOADS", 2000);
    let rounds = env_u64("BENCH_HISTORY_ROUNDS", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let root = tmp.path().to_path_buf();
        let (small, big) = compare(
            |name| {
                let path = root.join(format!("{name}.db"));
                async move { Arc::new(SqliteCatalog::open(path).await.expect("sqlite")) as Arc<dyn Catalog> }
            },
            large,
            uploads,
            rounds,
        )
        .await;
        println!(
            "P7 history_scale_sqlite ratio={:.2} per_s_at_{SMALL}={small:.0} per_s_at_{large}={big:.0}",
            big / small
        );
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let fsync = backup_benches::postgres_fsync(&url).await;
                let (small, big) = compare(
                    |name| {
                        let url = url.clone();
                        async move {
                            let schema = format!("history_{}_{}", std::process::id(), name.replace('-', "_"));
                            let pg = PostgresCatalog::builder(url).schema(schema).pool_size(16).build().await;
                            Arc::new(pg.expect("postgres")) as Arc<dyn Catalog>
                        }
                    },
                    large,
                    uploads,
                    rounds,
                )
                .await;
                println!(
                    "P7 history_scale_postgres ratio={:.2} per_s_at_{SMALL}={small:.0} per_s_at_{large}={big:.0} fsync={fsync}",
                    big / small
                );
            }
            Err(_) => {
                println!("P7 history_scale_postgres skipped: no TEST_DATABASE_URL (run under .ci/with-services)")
            }
        }
        println!(
            "   {uploads} uploads of {SIZE} bytes, {CONCURRENCY} at a time, into one collection, local disk with fsync, medians of {rounds} rounds"
        );
    });
}
