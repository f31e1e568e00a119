//! Shared helpers of the benchmarks: run a baseline and a candidate alternately, take
//! medians, print one summary line per figure.
//!
//! Every benchmark compares against a baseline measured in the same run, on the same data
//! and the same kind of store, so machine noise hits both sides alike.

use std::time::{Duration, Instant};

/// Median of the durations (the upper middle for an even count).
///
/// # Panics
/// If `samples` is empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// Throughput in MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// Times a future.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// An environment variable as a number, with a default (for shorter local runs).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// PostgreSQL's `fsync` setting at `url` (`on`, `off`), printed next to its figures: a
/// figure measured without it would flatter the catalog.
pub async fn postgres_fsync(url: &str) -> String {
    let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return "unknown".to_owned();
    };
    let task = tokio::spawn(conn);
    let value = match client.query_one("SHOW fsync", &[]).await {
        Ok(row) => row.try_get::<_, String>(0).unwrap_or_else(|_| "unknown".to_owned()),
        Err(_) => "unknown".to_owned(),
    };
    drop(client);
    let _ = task.await;
    value
}

/// P5's workload, shared with P11: `total` uploads of 4 KiB into 16 collections (created
/// here, `<prefix>-<n>`, each keeping 10 versions so that rotation runs with every upload after
/// the tenth), 8 at a time; returns uploads per second.
///
/// # Panics
/// When an upload or a collection fails: a benchmark stops at the first error.
pub async fn small_uploads(engine: &backup_core::Engine, prefix: &str, total: u64) -> f64 {
    use backup_core::{Actor, CollectionId, CollectionSpec, Limits, UploadOptions};
    const COLLECTIONS: usize = 16;
    const CONCURRENCY: usize = 8;
    const SIZE: usize = 4096;
    let me = Actor::user("bench");
    let ids: Vec<CollectionId> = (0..COLLECTIONS).map(|i| format!("{prefix}-{i}").parse().expect("id")).collect();
    for id in &ids {
        let spec = CollectionSpec::new("s-${version}", Limits::new(10, 1 << 20, 10 << 20).expect("limits"));
        engine.create_collection(&me, id, spec).await.expect("collection");
    }
    let body = bytes::Bytes::from(vec![7u8; SIZE]);
    let start = Instant::now();
    let per_task = total / CONCURRENCY as u64;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (engine, me, ids, body) = (engine.clone(), me.clone(), ids.clone(), body.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let id = &ids[(t + i as usize * CONCURRENCY) % COLLECTIONS];
                    let s = futures::stream::iter([Ok::<_, std::io::Error>(body.clone())]);
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
