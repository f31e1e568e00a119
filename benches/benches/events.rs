//! P11: what the event log costs. Small uploads (as P5: 4 KiB each, into 16 collections, 8 at
//! a time, local disk with fsync) with the event log and one webhook target delivering to a
//! receiver on loopback, against the same without them, on SQLite and on PostgreSQL, runs
//! alternating; and how many events per second a webhook target delivers.
//!
//! ```text
//! .ci/with-services cargo bench -p backup-benches --bench events
//! ```
//!
//! `BENCH_EVENTS_NO_HOOK=1` leaves the webhook out (the log's own cost), `BENCH_EVENT_ROUNDS`
//! sets the rounds (3), `BENCH_SMALL_UPLOADS` the uploads per run (4000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backup_benches::env_u64;
use backup_core::catalog::Catalog;
use backup_core::{AuditEvent, Engine, Timestamp};
use backup_store::local_disk_store;
use backup_store::{PostgresCatalog, SqliteCatalog};

/// A receiver on loopback that counts the requests it answers 200.
async fn receiver() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, count)
}

fn retry() -> backup_server::Retry {
    let mut r = backup_server::Retry::default();
    r.poll = Duration::from_millis(20);
    r
}

fn engine_on(catalog: Arc<dyn Catalog>, dir: &std::path::Path, events: bool) -> Engine {
    Engine::builder()
        .catalog(catalog)
        .store(local_disk_store(dir).expect("store"))
        .description_store(backup_store::local_disk::description_store(dir).expect("descriptions"))
        .event_log(events)
        .build()
        .expect("engine")
}

/// Uploads `total` bodies; with `hook`, the event log is on and a webhook target delivers to
/// it meanwhile. Returns uploads per second.
async fn run(catalog: Arc<dyn Catalog>, dir: &std::path::Path, total: u64, hook: Option<std::net::SocketAddr>) -> f64 {
    let engine = engine_on(catalog, dir, hook.is_some());
    let delivery = hook.filter(|_| std::env::var("BENCH_EVENTS_NO_HOOK").is_err()).map(|addr| {
        let target = backup_server::Target::webhook("bench", &format!("http://{addr}/hook")).expect("webhook");
        tokio::spawn(backup_server::deliver(engine.clone(), target, "bench".into(), retry()))
    });
    let rate = backup_benches::small_uploads(&engine, "events", total).await;
    if let Some(d) = delivery {
        d.abort();
    }
    rate
}

/// Runs without and with the log alternately, `rounds` times each, on fresh catalogs from
/// `fresh`; returns the medians (without, with).
async fn compare<F, Fut>(
    mut fresh: F,
    dir: &std::path::Path,
    total: u64,
    rounds: usize,
    hook: std::net::SocketAddr,
) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Catalog>>,
{
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        off.push(run(fresh(2 * r).await, &dir.join(format!("off-{r}")), total, None).await);
        on.push(run(fresh(2 * r + 1).await, &dir.join(format!("on-{r}")), total, Some(hook)).await);
    }
    (median(off), median(on))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let total = env_u64("BENCH_SMALL_UPLOADS", 4000);
    let rounds = env_u64("BENCH_EVENT_ROUNDS", 3) as usize;
    let _ = std::process::Command::new("sync").status();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let (hook, received) = receiver().await;
        let dir = tmp.path().to_owned();
        let (sqlite_off, sqlite_on) = compare(
            |i| {
                let path = dir.join(format!("catalog-{i}.db"));
                async move { Arc::new(SqliteCatalog::open(path).await.expect("sqlite")) as Arc<dyn Catalog> }
            },
            &tmp.path().join("sqlite"),
            total,
            rounds,
            hook,
        )
        .await;
        let mut line = format!("P11 events_overhead ratio_sqlite={:.2}", sqlite_on / sqlite_off);
        let mut detail = format!(
            "   sqlite: {sqlite_off:.0} uploads/s without the log, {sqlite_on:.0} with it and a webhook (medians of {rounds})"
        );
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => {
                let run_id = std::process::id();
                let (pg_off, pg_on) = compare(
                    |i| {
                        let url = url.clone();
                        async move {
                            let schema = format!("bench_events_{run_id}_{i}");
                            Arc::new(
                                PostgresCatalog::builder(&url).schema(schema).pool_size(16).build().await.expect("postgres"),
                            ) as Arc<dyn Catalog>
                        }
                    },
                    &tmp.path().join("postgres"),
                    total,
                    rounds,
                    hook,
                )
                .await;
                let fsync = backup_benches::postgres_fsync(&url).await;
                line.push_str(&format!(" ratio_postgres={:.2} fsync={fsync}", pg_on / pg_off));
                detail.push_str(&format!(
                    "; postgres: {pg_off:.0} without, {pg_on:.0} with"
                ));
            }
            Err(_) => line.push_str(" ratio_postgres=skipped(no TEST_DATABASE_URL; run under .ci/with-services)"),
        }
        println!("{line}");
        println!("{detail}");

        // Delivery: a backlog of events, then the time until the receiver has them all.
        let events = env_u64("BENCH_WEBHOOK_EVENTS", 3000);
        let engine = engine_on(Arc::new(backup_core::MemoryCatalog::new()), &tmp.path().join("delivery"), true);
        let target = backup_server::Target::webhook("rate", &format!("http://{hook}/hook")).expect("webhook");
        // The target starts at the log's head: claim its cursor before the backlog is written.
        let now = Timestamp::from(chrono::Utc::now());
        engine.claim_log_cursor("webhook:rate", "bench", now, now).await.expect("cursor");
        for i in 0..events {
            engine.record_audit(&AuditEvent::new(now, "bench", "bench.event").with_detail(i.to_string())).await.expect("event");
        }
        let before = received.load(Ordering::Relaxed);
        let start = Instant::now();
        let delivery = tokio::spawn(backup_server::deliver(engine.clone(), target, "bench".into(), retry()));
        while received.load(Ordering::Relaxed) < before + events {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let per_s = events as f64 / start.elapsed().as_secs_f64();
        delivery.abort();
        println!("P11 webhook_delivery per_s={per_s:.0} events={events} (one POST each, to a receiver on loopback)");
    });
}
