//! Progress of long operations: a catalog rebuilt from the store
//! ([`crate::RebuildOptions::progress`]), a collection verified
//! ([`crate::Engine::verify_collection_with`]), or a loop of the caller's own (a migration that
//! imports versions one by one drives a [`ProgressTracker`] itself).
//!
//! The engine reports to a [`Progress`] of the caller's, which shows it (a bar on a terminal, a
//! log line otherwise): items done of a total when known, bytes, the phase, the time the phase
//! has taken, and from them a rate and the time left. It calls it at the start and the end of
//! each phase and in between at most once per [`Progress::interval`], never per byte, so a
//! report may be as slow as a log line. Without one, nothing is measured or called.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use backup_core::{Progress, ProgressUpdate};
//! use backup_core::{Actor, CollectionSpec, Engine, Limits, MemoryCatalog, RebuildOptions};
//! use bytes::Bytes;
//!
//! #[derive(Debug, Default)]
//! struct Lines(Mutex<Vec<String>>);
//!
//! impl Progress for Lines {
//!     fn report(&self, p: &ProgressUpdate) {
//!         let total = p.total.map_or("?".to_owned(), |t| t.to_string());
//!         self.0.lock().unwrap().push(format!("{}: {} of {total}", p.phase, p.done));
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let engine = Engine::builder().store(store.clone()).build()?;
//! let (me, db) = (Actor::user("me"), "db".parse()?);
//! engine.create_collection(&me, &db, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
//! engine.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("one"))])).await?;
//!
//! let lines = Arc::new(Lines::default());
//! let rebuilt = Engine::builder().catalog(Arc::new(MemoryCatalog::new())).store(store).adopt_store(true).build()?;
//! rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog().progress(lines.clone())).await?;
//! let lines = lines.0.lock().unwrap();
//! assert!(lines.contains(&"reading descriptions: 1 of 1".to_owned()), "{lines:?}");
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// Receives the progress of a long operation.
///
/// Contract: [`Progress::report`] is called when a phase starts (`done` 0, or where an earlier
/// run left it), when it ends ([`ProgressUpdate::finished`]), and in between at most once per
/// [`Progress::interval`] of the engine's clock, from the operation's task: it must return
/// quickly and never block on I/O for long. Figures only grow within a phase; a new phase
/// starts from its own figures.
pub trait Progress: Debug + Send + Sync {
    /// The figures so far.
    fn report(&self, update: &ProgressUpdate);

    /// The least time between two reports within a phase (a second unless overridden; zero
    /// reports every step).
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Where a long operation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// What is being done ("listing the store", "reading descriptions", "verifying db", …).
    pub phase: String,
    /// Items done (objects listed, descriptions read, versions checked or copied).
    pub done: u64,
    /// Items in all, when known.
    pub total: Option<u64>,
    /// Bytes read or copied.
    pub bytes: u64,
    /// Bytes in all, when known.
    pub total_bytes: Option<u64>,
    /// How long the phase has run.
    pub elapsed: Duration,
    /// Whether the phase has ended.
    pub finished: bool,
}

impl ProgressUpdate {
    /// Items per second so far; `None` before any time has passed.
    pub fn items_per_second(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (secs > 0.0).then(|| self.done as f64 / secs)
    }

    /// Bytes per second so far; `None` before any time has passed.
    pub fn bytes_per_second(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (secs > 0.0).then(|| self.bytes as f64 / secs)
    }

    /// The time left at the rate so far: by bytes when their total is known (a few large
    /// versions weigh more than many small ones), by items otherwise; `None` without a total
    /// or before anything is done, zero once finished.
    pub fn time_left(&self) -> Option<Duration> {
        if self.finished {
            return Some(Duration::ZERO);
        }
        let (done, total) = match (self.total_bytes, self.total) {
            (Some(total), _) if self.bytes > 0 => (self.bytes, total),
            (_, Some(total)) if self.done > 0 => (self.done, total),
            _ => return None,
        };
        let left = total.saturating_sub(done) as f64;
        Duration::try_from_secs_f64(self.elapsed.as_secs_f64() * left / done as f64).ok()
    }
}

/// Feeds a [`Progress`] at a bounded rate: what the engine uses, public for loops of the
/// caller's own. Cheap to clone (clones report to the same phase); without a [`Progress`]
/// every method does nothing.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use backup_core::{Progress, ProgressTracker, ProgressUpdate};
/// use backup_core::ManualClock;
///
/// #[derive(Debug, Default)]
/// struct Count(Mutex<Vec<u64>>);
/// impl Progress for Count {
///     fn report(&self, p: &ProgressUpdate) { self.0.lock().unwrap().push(p.done) }
///     fn interval(&self) -> Duration { Duration::from_secs(5) }
/// }
///
/// let (count, clock) = (Arc::new(Count::default()), Arc::new(ManualClock::starting_now()));
/// let tracker = ProgressTracker::new(Some(count.clone() as Arc<dyn Progress>), clock.clone());
/// tracker.start("copying", Some(100), None);
/// for _ in 0..10 {
///     tracker.advance(1, 0); // too soon: not reported
/// }
/// clock.advance(chrono::Duration::seconds(5));
/// tracker.advance(1, 0);
/// tracker.finish();
/// assert_eq!(*count.0.lock().unwrap(), [0, 11, 11]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProgressTracker {
    inner: Option<Arc<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    progress: Arc<dyn Progress>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    update: ProgressUpdate,
    started: DateTime<Utc>,
    last_report: DateTime<Utc>,
}

impl ProgressTracker {
    /// Reports to `progress` (nothing when `None`), timed by `clock`.
    pub fn new(progress: Option<Arc<dyn Progress>>, clock: Arc<dyn Clock>) -> Self {
        let inner = progress.map(|progress| {
            let now = clock.now();
            let update = ProgressUpdate {
                phase: String::new(),
                done: 0,
                total: None,
                bytes: 0,
                total_bytes: None,
                elapsed: Duration::ZERO,
                finished: true,
            };
            Arc::new(Tracked { progress, clock, state: Mutex::new(State { update, started: now, last_report: now }) })
        });
        ProgressTracker { inner }
    }

    /// Whether anything receives the reports (so that the caller may skip counting a total).
    pub fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts a phase with its totals, when known, and reports it.
    pub fn start(&self, phase: impl Into<String>, total: Option<u64>, total_bytes: Option<u64>) {
        let Some(t) = &self.inner else { return };
        let now = t.clock.now();
        let update = {
            let mut state = t.lock();
            state.update = ProgressUpdate {
                phase: phase.into(),
                done: 0,
                total,
                bytes: 0,
                total_bytes,
                elapsed: Duration::ZERO,
                finished: false,
            };
            state.started = now;
            state.last_report = now;
            state.update.clone()
        };
        t.progress.report(&update);
    }

    /// Counts `items` more done and `bytes` more read or copied; reports if the interval has
    /// passed since the last report (or the clock went back).
    pub fn advance(&self, items: u64, bytes: u64) {
        let Some(t) = &self.inner else { return };
        let now = t.clock.now();
        let interval = t.progress.interval();
        let update = {
            let mut state = t.lock();
            state.update.done = state.update.done.saturating_add(items);
            state.update.bytes = state.update.bytes.saturating_add(bytes);
            let since = now.signed_duration_since(state.last_report);
            // A clock set back reports (and restarts the wait) rather than falling silent.
            let due = since.to_std().map_or(true, |since| since >= interval);
            if !due || state.update.finished {
                return;
            }
            state.last_report = now;
            state.update.elapsed = elapsed(state.started, now);
            state.update.clone()
        };
        t.progress.report(&update);
    }

    /// Ends the phase and reports it (once: a second call does nothing).
    pub fn finish(&self) {
        let Some(t) = &self.inner else { return };
        let now = t.clock.now();
        let update = {
            let mut state = t.lock();
            if state.update.finished {
                return;
            }
            state.update.finished = true;
            state.update.elapsed = elapsed(state.started, now);
            state.last_report = now;
            state.update.clone()
        };
        t.progress.report(&update);
    }
}

impl Tracked {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters stay meaningful after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    to.signed_duration_since(from).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[derive(Debug)]
    struct Recorder {
        interval: Duration,
        seen: Mutex<Vec<ProgressUpdate>>,
    }

    impl Progress for Recorder {
        fn report(&self, update: &ProgressUpdate) {
            self.seen.lock().unwrap().push(update.clone());
        }
        fn interval(&self) -> Duration {
            self.interval
        }
    }

    fn recorder(interval: Duration) -> (Arc<Recorder>, Arc<ManualClock>, ProgressTracker) {
        let recorder = Arc::new(Recorder { interval, seen: Mutex::new(Vec::new()) });
        let clock = Arc::new(ManualClock::starting_now());
        let tracker = ProgressTracker::new(Some(recorder.clone() as Arc<dyn Progress>), clock.clone());
        (recorder, clock, tracker)
    }

    fn seen(r: &Recorder) -> Vec<(u64, u64, bool)> {
        r.seen.lock().unwrap().iter().map(|u| (u.done, u.bytes, u.finished)).collect()
    }

    #[test]
    fn reports_at_phase_ends_and_at_most_once_an_interval_between() {
        let (r, clock, tracker) = recorder(Duration::from_secs(2));
        tracker.start("reading", Some(1000), Some(1 << 30));
        // A thousand steps (and their bytes) within one interval: none reported.
        for _ in 0..1000 {
            tracker.advance(0, 1 << 20);
        }
        assert_eq!(seen(&r), [(0, 0, false)]);
        clock.advance(chrono::Duration::milliseconds(1999));
        tracker.advance(1, 0);
        assert_eq!(r.seen.lock().unwrap().len(), 1, "not yet: 1.999 s < 2 s");
        clock.advance(chrono::Duration::milliseconds(1));
        tracker.advance(1, 0);
        assert_eq!(seen(&r)[1], (2, 1000 << 20, false));
        // One report per interval however many steps and however long the wait.
        for _ in 0..10 {
            clock.advance(chrono::Duration::seconds(1));
            for _ in 0..100 {
                tracker.advance(1, 0);
            }
        }
        assert_eq!(r.seen.lock().unwrap().len(), 2 + 5);
        tracker.finish();
        tracker.finish();
        tracker.advance(1, 0);
        let last = r.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!((last.done, last.finished, last.elapsed), (1002, true, Duration::from_secs(12)));
        assert_eq!(r.seen.lock().unwrap().len(), 8, "finished once; nothing after the end");
        assert_eq!(last.time_left(), Some(Duration::ZERO));
    }

    #[test]
    fn a_clock_set_back_reports_rather_than_falls_silent() {
        let (r, clock, tracker) = recorder(Duration::from_secs(60));
        tracker.start("listing the store", None, None);
        clock.advance(-chrono::Duration::hours(1));
        tracker.advance(1, 0);
        tracker.advance(1, 0);
        assert_eq!(seen(&r), [(0, 0, false), (1, 0, false)]);
    }

    #[test]
    fn a_zero_interval_reports_every_step() {
        let (r, _clock, tracker) = recorder(Duration::ZERO);
        tracker.start("copying", Some(3), None);
        for _ in 0..3 {
            tracker.advance(1, 10);
        }
        tracker.finish();
        assert_eq!(seen(&r), [(0, 0, false), (1, 10, false), (2, 20, false), (3, 30, false), (3, 30, true)]);
    }

    #[test]
    fn without_a_progress_nothing_is_done() {
        let tracker = ProgressTracker::new(None, Arc::new(ManualClock::starting_now()));
        assert!(!tracker.is_active());
        tracker.start("x", None, None);
        tracker.advance(1, 1);
        tracker.finish();
    }

    #[test]
    fn rates_and_time_left_follow_bytes_when_their_total_is_known() {
        let mut u = ProgressUpdate {
            phase: "verifying".into(),
            done: 10,
            total: Some(100),
            bytes: 1 << 30,
            total_bytes: Some(4 << 30),
            elapsed: Duration::from_secs(10),
            finished: false,
        };
        assert_eq!(u.items_per_second(), Some(1.0));
        assert_eq!(u.bytes_per_second(), Some((1u64 << 30) as f64 / 10.0));
        assert_eq!(u.time_left(), Some(Duration::from_secs(30)), "by bytes: a quarter in 10 s");
        u.total_bytes = None;
        assert_eq!(u.time_left(), Some(Duration::from_secs(90)), "by items: a tenth in 10 s");
        u.total = None;
        assert_eq!(u.time_left(), None);
        u.elapsed = Duration::ZERO;
        assert_eq!(u.items_per_second(), None);
    }
}
