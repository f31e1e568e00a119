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
