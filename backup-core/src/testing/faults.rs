//! [`Faults`]: a call counter shared by the faulty wrappers, failing the N-th call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How an injected fault fails a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// The call fails without doing anything (a request that never arrived).
    Before,
    /// The call does its work, then reports a failure (a reply that got lost).
    After,
}

/// A fault plan and a call counter, shared (cloned) by [`super::FaultyStore`] and
/// [`super::FaultyCatalog`] so one count covers every call an operation makes.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: AtomicU64,
    fail_at: AtomicU64,
    /// The last call of the run that fails (`fail_at` alone for one call).
    fail_until: AtomicU64,
    mode: Mutex<Option<FaultMode>>,
    fired: AtomicBool,
    log: Mutex<Vec<&'static str>>,
    fail_read_at_byte: Mutex<Option<u64>>,
    yield_before_calls: AtomicBool,
}

impl Faults {
    /// No faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`-th call from now (1-based) fails in `mode`; the count restarts at zero.
    pub fn fail_call(&self, n: u64, mode: FaultMode) {
        self.fail_calls(n, 1, mode);
    }

    /// The `n`-th call from now and the `count - 1` after it fail in `mode` (a backend that
    /// stays down); the count restarts at zero.
    pub fn fail_calls(&self, n: u64, count: u64, mode: FaultMode) {
        self.reset();
        *lock(&self.inner.mode) = Some(mode);
        self.inner.fail_until.store(n.saturating_add(count.saturating_sub(1)), Ordering::SeqCst);
        self.inner.fail_at.store(n, Ordering::SeqCst);
    }

    /// Reads of downloaded objects fail once `byte` bytes were delivered.
    pub fn fail_read_at_byte(&self, byte: Option<u64>) {
        *lock(&self.inner.fail_read_at_byte) = byte;
    }

    /// Every call first yields once to the scheduler, so every call is an await point at
    /// which a test can drop the future.
    pub fn yield_before_calls(&self, on: bool) {
        self.inner.yield_before_calls.store(on, Ordering::SeqCst);
    }

    /// Cancels planned faults and restarts the count and the log.
    pub fn reset(&self) {
        self.inner.fail_at.store(0, Ordering::SeqCst);
        self.inner.fail_until.store(0, Ordering::SeqCst);
        *lock(&self.inner.mode) = None;
        self.inner.calls.store(0, Ordering::SeqCst);
        self.inner.fired.store(false, Ordering::SeqCst);
        lock(&self.inner.log).clear();
    }

    /// Calls counted since the last reset.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// Whether the planned fault fired.
    pub fn fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// The names of the calls counted since the last reset, in order.
    pub fn log(&self) -> Vec<&'static str> {
        lock(&self.inner.log).clone()
    }

    /// Counts a call named `op`; returns how it must fail, if it must.
    pub(crate) fn next(&self, op: &'static str) -> Option<FaultMode> {
        lock(&self.inner.log).push(op);
        let n = self.inner.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let first = self.inner.fail_at.load(Ordering::SeqCst);
        if first != 0 && (first..=self.inner.fail_until.load(Ordering::SeqCst)).contains(&n) {
            self.inner.fired.store(true, Ordering::SeqCst);
            *lock(&self.inner.mode)
        } else {
            None
        }
    }

    pub(crate) fn read_limit(&self) -> Option<u64> {
        *lock(&self.inner.fail_read_at_byte)
    }

    pub(crate) async fn maybe_yield(&self) {
        if self.inner.yield_before_calls.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
