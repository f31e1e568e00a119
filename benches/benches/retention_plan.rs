//! P6: one `gfs` plan over 100,000 versions (goal: at most 50 ms), through the public
//! `rotation::plan` the commit, the preview and the server's simulation run: the policy
//! parsed, every version's periods computed in a time zone with DST, the rules applied, the
//! reasons written. The baseline is a FIFO plan over the same versions in the same run.
//!
//! ```text
//! cargo bench -p backup-benches --bench retention_plan
//! ```

use std::time::{Duration, Instant};

use backup_benches::{env_u64, median};
use backup_core::rotation::{Mark, VersionSummary, plan};
use backup_core::{CollectionSpec, Limits, RetentionSpec, Timestamp, VersionId};

fn spec(retention: RetentionSpec) -> CollectionSpec {
    CollectionSpec::new("p-${version}", Limits::new(1_000_000, 1 << 20, 1_000_000 << 20).expect("limits"))
        .with_retention(retention)
}

fn gfs(mode: &str) -> CollectionSpec {
    spec(
        RetentionSpec::named("gfs")
            .with_option("keepLast", "24")
            .with_option("keepHourly", "48")
            .with_option("keepDaily", "30")
            .with_option("keepWeekly", "12")
            .with_option("keepMonthly", "24")
            .with_option("keepYearly", "-1")
            .with_option("keepWithin", "7d")
            .with_option("timezone", "Europe/Warsaw")
            .with_option("mode", mode),
    )
}

/// Times one plan, `rounds` times; the median, and how many versions it keeps.
fn time(spec: &CollectionSpec, versions: &[VersionSummary], now: Timestamp, rounds: u64) -> (Duration, usize) {
    let mut samples = Vec::new();
    let mut kept = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let decisions = plan(spec, versions, now).expect("plan");
        samples.push(start.elapsed());
        kept = decisions.iter().filter(|d| d.mark == Mark::Keep).count();
        std::hint::black_box(decisions);
    }
    (median(&samples), kept)
}

fn main() {
    let n = env_u64("BENCH_RETENTION_VERSIONS", 100_000);
    let rounds = env_u64("BENCH_RETENTION_ROUNDS", 15);
    // One upload every 37 minutes for about seven years, ending now.
    let now = Timestamp::from(chrono::Utc::now());
    let versions: Vec<VersionSummary> = (0..n)
        .map(|i| {
            let at = now - chrono::Duration::minutes(37 * (n - i) as i64);
            VersionSummary::new(VersionId::generate(), i + 1, 4096, at)
        })
        .collect();
    let (independent, kept) = time(&gfs("independent"), &versions, now, rounds);
    let (cascade, kept_cascade) = time(&gfs("cascade"), &versions, now, rounds);
    let (fifo, _) = time(&spec(RetentionSpec::fifo()), &versions, now, rounds);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "P6 retention_plan_{}k ms={:.1} cascade_ms={:.1} fifo_ms={:.1} ratio_to_fifo={:.2} kept={kept} kept_cascade={kept_cascade}",
        n / 1000,
        ms(independent),
        ms(cascade),
        ms(fifo),
        ms(independent) / ms(fifo).max(1e-6),
    );
    println!(
        "   one plan over {n} versions (keepLast 24, hourly 48, daily 30, weekly 12, monthly 24, yearly all, within 7d, Europe/Warsaw), median of {rounds}"
    );
}
