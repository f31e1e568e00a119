//! The time source: tests drive a [`ManualClock`] instead of sleeping.

use std::fmt::Debug;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// Where the engine reads the time, and waits on it: version receipt times, leases, backup
/// windows, token expiry on the wall clock ([`Clock::now`]); the lease keeper's and the
/// server's timers on the monotonic one ([`Clock::monotonic`], [`Clock::sleep`]).
///
/// Implementations must be cheap and never go backwards by more than a clock adjustment. The
/// two timer methods are provided on Tokio's time, which is right for every real clock; a test
/// clock overrides them so that timers fire when the test moves time
/// ([`ManualClock::advance`]), not when a test waits.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Time on a clock that never steps (neither back nor forward with the wall clock), from an
    /// origin of the clock's choosing: what a timer measures a wait by.
    fn monotonic(&self) -> std::time::Duration {
        static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
        tokio::time::Instant::now().saturating_duration_since(*ORIGIN.get_or_init(tokio::time::Instant::now))
    }

    /// Resolves once `duration` passed on [`Clock::monotonic`].
    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: [`ManualClock::advance`] lets time pass (both the
/// wall clock and the monotonic one, so the timers that wait on it fire), [`ManualClock::set`]
/// and [`ManualClock::step`] move only the wall clock, as an NTP correction does.
///
/// ```
/// use backup_core::{Clock, ManualClock};
/// use chrono::{Duration, TimeZone, Utc};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
/// let timer = clock.sleep(std::time::Duration::from_secs(60));
/// clock.advance(Duration::minutes(30));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-01T00:30:00+00:00");
/// timer.await; // 30 minutes passed: the one-minute timer fired without a real wait
/// clock.step(Duration::hours(-1)); // the wall clock stepped back; the timers did not
/// assert_eq!(clock.now().to_rfc3339(), "2025-12-31T23:30:00+00:00");
/// assert_eq!(clock.monotonic().as_secs(), 30 * 60);
/// # });
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    /// Time passed since the clock was made: the monotonic clock, which only
    /// [`ManualClock::advance`] moves; the timers wait on its changes.
    passed: watch::Sender<std::time::Duration>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(start), passed: watch::Sender::new(std::time::Duration::ZERO) }
    }

    /// A clock standing at the current real time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    /// Moves the wall clock to `t` (a step: the monotonic clock and the timers stay).
    pub fn set(&self, t: DateTime<Utc>) {
        *self.lock() = t;
    }

    /// Steps the wall clock by `d`, forward or back, as an NTP correction does: the monotonic
    /// clock and the timers stay.
    pub fn step(&self, d: Duration) {
        let mut now = self.lock();
        *now += d;
    }

    /// Lets `d` pass: the wall clock and the monotonic one move forward by `d`, and the timers
    /// whose time came fire. A negative `d` is a step back of the wall clock only.
    pub fn advance(&self, d: Duration) {
        self.step(d);
        if let Ok(passed) = d.to_std() {
            self.passed.send_modify(|t| *t += passed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned lock still holds a valid time.
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    fn monotonic(&self) -> std::time::Duration {
        *self.passed.borrow()
    }

    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()> {
        let mut passed = self.passed.subscribe();
        let until = passed.borrow().saturating_add(duration);
        Box::pin(async move {
            // The sender lives as long as the clock; a clock dropped never wakes its timers.
            if passed.wait_for(|t| *t >= until).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A clock that follows Tokio's time: with `tokio::time::pause()` and
/// `tokio::time::advance`, timers (lease renewals) and the engine's clock move together, so a
/// test can run ten minutes of an upload in a millisecond.
///
/// ```
/// use backup_core::{Clock, TokioClock};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let clock = TokioClock::new();
/// let t0 = clock.now();
/// tokio::time::advance(Duration::from_secs(600)).await;
/// assert_eq!((clock.now() - t0).num_seconds(), 600);
/// # });
/// ```
#[derive(Debug)]
pub struct TokioClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock at the current real time, moving with Tokio's time from now on.
    pub fn new() -> Self {
        TokioClock { start: Utc::now(), origin: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.start + Duration::from_std(elapsed).unwrap_or(Duration::MAX)
    }
}
