//! Progress of the long operations: `--rebuild-catalog`, `--import-backup-repository` and a
//! collection's verification (`POST …/verify`).
//!
//! The engine reports through [`backup_core::Progress`]; this shows it. In a command-line mode
//! whose standard error is a terminal, a bar per phase (with the `terminal-progress` feature, on
//! by default): done of total, bytes, rate and time left. Otherwise, and in the server, a log
//! line (`info`, target `backup_server::progress`) when a phase starts and ends and every
//! `--progress-interval` between, with the same figures:
//!
//! ```text
//! INFO backup_server::progress: rebuild: reading descriptions: 1200 of 4238 (28%), 1.2 MiB, 850/s, 870.4 KiB/s, about 4s left
//! ```

use std::sync::Arc;
use std::time::Duration;

use backup_core::{Progress, ProgressUpdate};

use crate::format::bytes;

/// Progress as log lines.
#[derive(Debug)]
pub(crate) struct LogProgress {
    operation: String,
    interval: Duration,
}

impl LogProgress {
    /// Lines for `operation` (`rebuild`, `verify db`, …), at most one per `interval` within a
    /// phase (every step with zero).
    pub(crate) fn new(operation: impl Into<String>, interval: Duration) -> Self {
        LogProgress { operation: operation.into(), interval }
    }
}

impl Progress for LogProgress {
    fn report(&self, update: &ProgressUpdate) {
        tracing::info!(target: "backup_server::progress", "{}", line(&self.operation, update));
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}

/// How a command-line mode shows `operation`'s progress: a bar when standard error is a
/// terminal (and the `terminal-progress` feature is on), log lines every `interval` otherwise.
pub(crate) fn for_command_line(operation: &str, interval: Duration) -> Arc<dyn Progress> {
    #[cfg(feature = "terminal-progress")]
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Arc::new(bar::BarProgress::new(operation));
    }
    Arc::new(LogProgress::new(operation, interval))
}

/// One line: `operation: phase: done of total (percent), bytes, rates, time left`.
pub(crate) fn line(operation: &str, u: &ProgressUpdate) -> String {
    let count = match u.total {
        Some(total) if total > 0 => format!("{} of {total} ({}%)", u.done, u.done.saturating_mul(100) / total),
        Some(total) => format!("{} of {total}", u.done),
        None => u.done.to_string(),
    };
    format!("{operation}: {}: {count}{}", u.phase, figures(u))
}

/// Bytes, rates and time left, each after `, ` (what the bar shows beside its own count).
fn figures(u: &ProgressUpdate) -> String {
    let mut out = String::new();
    match u.total_bytes {
        Some(total) => out.push_str(&format!(", {} of {}", bytes(u.bytes), bytes(total))),
        None if u.bytes > 0 => out.push_str(&format!(", {}", bytes(u.bytes))),
        None => {}
    }
    match u.items_per_second() {
        Some(rate) if rate < 10.0 => out.push_str(&format!(", {rate:.1}/s")),
        Some(rate) => out.push_str(&format!(", {rate:.0}/s")),
        None => {}
    }
    if let Some(rate) = u.bytes_per_second().filter(|_| u.bytes > 0) {
        out.push_str(&format!(", {}/s", bytes(rate as u64)));
    }
    if u.finished {
        out.push_str(&format!(", done in {}", seconds(u.elapsed)));
    } else if let Some(left) = u.time_left() {
        out.push_str(&format!(", about {} left", seconds(left)));
    }
    out
}

/// A duration to the second (`1h 2m 3s`).
fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(feature = "terminal-progress")]
mod bar {
    use std::sync::Mutex;
    use std::time::Duration;

    use backup_core::{Progress, ProgressUpdate};
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    /// A bar per phase on standard error; a finished phase's bar stays as a line.
    #[derive(Debug)]
    pub(super) struct BarProgress {
        operation: String,
        current: Mutex<Option<(String, ProgressBar)>>,
    }

    impl BarProgress {
        pub(super) fn new(operation: &str) -> Self {
            BarProgress { operation: operation.to_owned(), current: Mutex::new(None) }
        }

        fn bar(&self, u: &ProgressUpdate) -> ProgressBar {
            let target = ProgressDrawTarget::stderr();
            let bar = match u.total {
                Some(total) => ProgressBar::with_draw_target(Some(total), target).with_style(
                    ProgressStyle::with_template("{prefix} [{wide_bar}] {pos}/{len}{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::with_draw_target(None, target).with_style(
                    ProgressStyle::with_template("{spinner} {prefix} {pos}{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_prefix(format!("{}: {}", self.operation, u.phase));
            // Between reports (a large version read), the spinner and the elapsed time move.
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }
    }

    impl Progress for BarProgress {
        fn report(&self, u: &ProgressUpdate) {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().is_none_or(|(phase, _)| *phase != u.phase) {
                if let Some((_, done)) = current.take() {
                    done.finish();
                }
                *current = Some((u.phase.clone(), self.bar(u)));
            }
            let Some((_, bar)) = current.as_ref() else { return };
            if let Some(total) = u.total {
                bar.set_length(total.max(u.done));
            }
            bar.set_position(u.done);
            bar.set_message(super::figures(u));
            if u.finished {
                bar.finish();
            }
        }

        fn interval(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    impl Drop for BarProgress {
        fn drop(&mut self) {
            // An operation that failed mid-phase leaves its bar as it stood, not erased.
            if let Some((_, bar)) = self.current.get_mut().ok().and_then(Option::take) {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use backup_core::{ManualClock, ProgressTracker};

    use super::*;

    fn update(done: u64, total: Option<u64>, bytes: u64, total_bytes: Option<u64>, secs: u64) -> ProgressUpdate {
        let (recorded, clock) = (Arc::new(Recorded::default()), Arc::new(ManualClock::starting_now()));
        let tracker = ProgressTracker::new(Some(recorded.clone() as Arc<dyn Progress>), clock.clone());
        tracker.start("reading descriptions", total, total_bytes);
        clock.advance(chrono::Duration::seconds(secs as i64));
        tracker.advance(done, bytes);
        recorded.0.lock().unwrap().pop().unwrap()
    }

    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<ProgressUpdate>>);

    impl Progress for Recorded {
        fn report(&self, u: &ProgressUpdate) {
            self.0.lock().unwrap().push(u.clone());
        }
        fn interval(&self) -> Duration {
            Duration::ZERO
        }
    }

    #[test]
    fn a_line_has_done_of_total_bytes_rates_and_time_left() {
        assert_eq!(
            line("rebuild", &update(1200, Some(4800), 3 << 20, None, 2)),
            "rebuild: reading descriptions: 1200 of 4800 (25%), 3.0 MiB, 600/s, 1.5 MiB/s, about 6s left"
        );
        assert_eq!(
            line("verify db", &update(1, Some(4), 1 << 30, Some(4 << 30), 10)),
            "verify db: reading descriptions: 1 of 4 (25%), 1.0 GiB of 4.0 GiB, 0.1/s, 102.4 MiB/s, about 30s left"
        );
        assert_eq!(line("rebuild", &update(0, None, 0, None, 0)), "rebuild: reading descriptions: 0");
        assert_eq!(line("rebuild", &update(0, Some(0), 0, None, 0)), "rebuild: reading descriptions: 0 of 0");
    }

    /// The log lines come at phase ends and at most once per interval between, however many
    /// steps (tokio's paused clock drives the engine's clock).
    #[tokio::test(start_paused = true)]
    async fn log_lines_come_at_most_once_per_interval() {
        let clock = Arc::new(backup_core::TokioClock::default());
        let progress: Arc<dyn Progress> = Arc::new(LogProgress::new("rebuild", Duration::from_secs(5)));
        let tracker = ProgressTracker::new(Some(progress), clock);
        let (lines, _guard) = crate::testing::progress_lines();
        tracker.start("reading descriptions", Some(1000), None);
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(20)).await; // 20 s in all
            tracker.advance(1, 100);
        }
        tracker.finish();
        let lines = lines.lock().unwrap();
        // Start, one every 5 s (at 5, 10, 15 and 20 s), end.
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert_eq!(lines[0], "rebuild: reading descriptions: 0 of 1000 (0%)");
        assert!(
            lines[1].starts_with("rebuild: reading descriptions: 250 of 1000 (25%), 24.4 KiB, 50/s"),
            "{}",
            lines[1]
        );
        assert!(lines[5].ends_with("done in 20s"), "{}", lines[5]);
    }
}
