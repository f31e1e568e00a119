//! P7: the cost of an upload does not grow with history. 4 KiB uploads per second, 8 at a
//! time, through the engine on local disk (fsync on), into a collection with a history of
//! 100,000 versions, against the same into one with a history of 100, in the same run on the
//! same kind of catalog, with durable settings (SQLite `synchronous = FULL`, PostgreSQL with
//! `fsync` on: `.ci/with-services` starts its cluster so for benchmarks). Two retentions:
//!
//! - FIFO with room for every version: all 100,000 are committed;
//! - `gfs` (keepLast 10, daily 7, weekly 4, monthly 12, yearly all): the history is one
//!   upload an hour, what the policy kept is committed and the rest purged (rows that stay),
//!   and every commit plans over every committed version and purges one. Its objects are in
//!   memory: see `measure` for the file system effect that would otherwise swamp the catalog's.
//!
//! ```text
//! .ci/with-services cargo bench -p backup-benches --bench history_scale
//! BENCH_HISTORY=20000 BENCH_HISTORY_UPLOADS=500 cargo bench -p backup-benches --bench history_scale
//! BENCH_HISTORY_RETENTION=gfs cargo bench -p backup-benches --bench history_scale   # one retention
//! ```
//!
//! The existing versions are loaded through the catalog's own import (the rows, counters and
//! indexes a commit writes, checked by `ImportCheck`; one transaction instead of 100,000
//! synced commits), never by raw SQL. The two sizes alternate over the rounds and the medians
//! are compared.

use std::sync::Arc;
use std::time::Instant;

use backup_benches::env_u64;
use backup_core::catalog::Catalog;
use backup_core::catalog::CatalogRecord;
use backup_core::rotation::{Mark, VersionSummary, plan};
use backup_core::{
    Actor, Collection, CollectionId, CollectionSpec, Digest, DigestAlgorithm, Engine, Limits, RetentionSpec, Timestamp,
    UploadOptions, Uploader, Version, VersionId, VersionState,
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

/// The retention of the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retention {
    /// FIFO with room for every version: it never evicts, so the committed history only grows.
    Fifo,
    /// A grandfather-father-son policy: what it keeps is committed, the rest purged.
    Gfs,
}

fn spec(retention: Retention) -> CollectionSpec {
    let limits = Limits::new(1_000_000, 1 << 20, 1_000_000 << 20).expect("limits");
    let spec = CollectionSpec::new("h-${version}", limits);
    match retention {
        Retention::Fifo => spec,
        Retention::Gfs => spec.with_retention(
            RetentionSpec::named("gfs")
                .with_option("keepLast", "10")
                .with_option("keepDaily", "7")
                .with_option("keepWeekly", "4")
                .with_option("keepMonthly", "12")
                .with_option("keepYearly", "-1"),
        ),
    }
}

/// A snapshot of one collection with a history of `n` versions, as the catalog exports them,
/// and how many of them are committed: under FIFO all (a second apart); under GFS `n` spread
/// evenly over `span_hours` up to now, what the policy keeps committed and the rest purged.
///
/// Both GFS histories cover the same span (that of the large one, an upload an hour): a policy
/// with `keepYearly: -1` keeps a version per year, so a history four days long would commit
/// fewer versions than one of eleven years, and every commit reads the committed ones. With
/// the same span the two differ in how many versions went through the collection, which is
/// what the figure is about; the committed counts are printed next to it.
fn snapshot(
    retention: Retention,
    n: u64,
    span_hours: u64,
) -> (futures::stream::BoxStream<'static, backup_core::Result<CatalogRecord>>, u64) {
    let now = Timestamp::from(chrono::Utc::now());
    let step = match retention {
        Retention::Fifo => chrono::Duration::seconds(1),
        Retention::Gfs => chrono::Duration::seconds((span_hours * 3600 / n) as i64),
    };
    let start = now - step * (n as i32 + 1);
    let spec = spec(retention);
    let times: Vec<Timestamp> = (1..=n).map(|number| start + step * number as i32).collect();
    let summaries: Vec<VersionSummary> = times
        .iter()
        .enumerate()
        .map(|(i, t)| VersionSummary::new(VersionId::generate(), i as u64 + 1, SIZE as u64, *t))
        .collect();
    let kept: Vec<bool> = match retention {
        Retention::Fifo => vec![true; summaries.len()],
        Retention::Gfs => plan(&spec, &summaries, now).expect("plan").iter().map(|d| d.mark == Mark::Keep).collect(),
    };
    let committed = kept.iter().filter(|k| **k).count() as u64;
    let c = Collection::new(collection(), spec, start);
    let head = [CatalogRecord::header(start), CatalogRecord::Collection { collection: c, next_number: n + 1 }];
    let digest = Digest::of(DigestAlgorithm::Blake3, &[7u8; SIZE]);
    let versions = summaries.into_iter().zip(kept).map(move |(s, kept)| {
        let v = Version::new(s.id, collection(), s.number, format!("old/{}", s.id), SIZE as u64, digest)
            .with_filename(format!("h-{}", s.number))
            .with_times(s.created_at, s.created_at)
            .with_uploader(Uploader::user("history"));
        let v = if kept {
            v
        } else {
            let gone = s.created_at + chrono::Duration::minutes(1);
            v.with_state(VersionState::Purged, Some((gone, "gfs: no rule keeps it".to_owned())), Some(gone))
        };
        CatalogRecord::Version(v)
    });
    (stream::iter(head.into_iter().chain(versions).map(Ok)).boxed(), committed)
}

/// Uploads per second into a collection with a history of `history` versions (over
/// `span_hours` under GFS), and how many of them were committed at the start.
async fn measure(
    catalog: Arc<dyn Catalog>,
    dir: &std::path::Path,
    retention: Retention,
    (history, span_hours): (u64, u64),
    uploads: u64,
) -> (f64, u64) {
    let (records, committed) = snapshot(retention, history, span_hours);
    catalog.import(records).await.expect("import");
    // GFS deletes an object at every commit; on ext4, creating files after many deletions
    // slows down (perf shows `recently_deleted` under `ext4_create`) for whichever run comes
    // later, whatever its history. The catalog is what history could slow, so GFS runs keep
    // their objects in memory.
    let store: Arc<dyn object_store::ObjectStore> = match retention {
        Retention::Fifo => local_disk_store(dir).expect("store"),
        Retention::Gfs => Arc::new(object_store::memory::InMemory::new()),
    };
    // A catalog loaded from a snapshot takes the fresh store on purpose.
    // Wired as the server wires local disk: descriptions without fsync.
    let descriptions: Arc<dyn object_store::ObjectStore> = match retention {
        Retention::Fifo => backup_store::local_disk::description_store(dir).expect("descriptions"),
        Retention::Gfs => store.clone(),
    };
    let engine = Engine::builder()
        .catalog(catalog)
        .store(store)
        .description_store(descriptions)
        .adopt_store(true)
        .build()
        .expect("engine");
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
    ((uploads / CONCURRENCY as u64 * CONCURRENCY as u64) as f64 / start.elapsed().as_secs_f64(), committed)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates the small and the large history over `rounds`, each on a fresh catalog from
/// `fresh`; returns the medians (small, large) and the committed counts at the start.
async fn compare<F, Fut>(
    fresh: &F,
    retention: Retention,
    large: u64,
    uploads: u64,
    rounds: usize,
) -> ((f64, u64), (f64, u64))
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Catalog>>,
{
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (mut small_runs, mut large_runs) = (Vec::new(), Vec::new());
    let mut committed = (0, 0);
    for round in 0..rounds {
        let order: [(u64, bool); 2] =
            if round % 2 == 0 { [(SMALL, false), (large, true)] } else { [(large, true), (SMALL, false)] };
        for (history, is_large) in order {
            let name = format!("{retention:?}-r{round}-{history}").to_lowercase();
            let dir = tmp.path().join(&name);
            let (per_s, c) = measure(fresh(name).await, &dir, retention, (history, large), uploads).await;
            if is_large {
                large_runs.push(per_s);
                committed.1 = c;
            } else {
                small_runs.push(per_s);
                committed.0 = c;
            }
        }
    }
    ((median(small_runs), committed.0), (median(large_runs), committed.1))
}

/// Runs both retentions on one kind of catalog and prints their lines.
async fn catalog_figures<F, Fut>(fresh: F, label: &str, suffix: &str, large: u64, uploads: u64, rounds: usize)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Catalog>>,
{
    let only = std::env::var("BENCH_HISTORY_RETENTION").unwrap_or_default();
    let gfs_id = if label == "sqlite" { "history_scale_gfs".to_owned() } else { format!("history_scale_gfs_{label}") };
    for (retention, id) in [(Retention::Fifo, format!("history_scale_{label}")), (Retention::Gfs, gfs_id)] {
        if !only.is_empty() && !format!("{retention:?}").eq_ignore_ascii_case(&only) {
            continue;
        }
        let ((small, committed_small), (big, committed_large)) =
            compare(&fresh, retention, large, uploads, rounds).await;
        let store = if retention == Retention::Gfs { "memory" } else { "local_disk" };
        println!(
            "P7 {id} ratio={:.2} per_s_at_{SMALL}={small:.0} per_s_at_{large}={big:.0} \
             committed_at_{SMALL}={committed_small} committed_at_{large}={committed_large} store={store}{suffix}",
            big / small
        );
    }
}

fn main() {
    let large = env_u64("BENCH_HISTORY", 100_000);
    let uploads = env_u64("BENCH_HISTORY_UPLOADS", 2000);
    let rounds = env_u64("BENCH_HISTORY_ROUNDS", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let root = tmp.path().to_path_buf();
        let sqlite = |name: String| {
            let path = root.join(format!("{name}.db"));
            async move { Arc::new(SqliteCatalog::open(path).await.expect("sqlite")) as Arc<dyn Catalog> }
        };
        catalog_figures(sqlite, "sqlite", "", large, uploads, rounds).await;
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let fsync = backup_benches::postgres_fsync(&url).await;
                let postgres = |name: String| {
                    let url = url.clone();
                    async move {
                        let schema = format!("history_{}_{}", std::process::id(), name.replace('-', "_"));
                        let pg = PostgresCatalog::builder(url).schema(schema).pool_size(16).build().await;
                        Arc::new(pg.expect("postgres")) as Arc<dyn Catalog>
                    }
                };
                catalog_figures(postgres, "postgres", &format!(" fsync={fsync}"), large, uploads, rounds).await;
            }
            Err(_) => {
                println!("P7 history_scale_postgres skipped: no TEST_DATABASE_URL (run under .ci/with-services)")
            }
        }
        println!(
            "   {uploads} uploads of {SIZE} bytes, {CONCURRENCY} at a time, into one collection (objects on local disk with fsync, GFS runs in memory), medians of {rounds} rounds"
        );
    });
}
