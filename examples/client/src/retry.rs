//! The one retry policy: idempotent requests (GET) are tried again with a growing, jittered
//! pause while the network fails or the server says it is busy; nothing else is ever retried.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::{Error, Result};

/// The first pause.
const MIN_DELAY: Duration = Duration::from_millis(300);

/// The longest pause.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Called before each pause with the error that caused it and the pause's length.
pub(crate) type RetryNotifier = Arc<dyn Fn(&Error, Duration) + Send + Sync>;

/// How often and how patiently an idempotent request is tried.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    /// Tries in all (at least 1).
    pub(crate) attempts: u32,
    pub(crate) notify: Option<RetryNotifier>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("attempts", &self.attempts)
            .field("notify", &self.notify.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails with an error that is not
    /// [transient](Error::is_transient), or has been tried `attempts` times.
    pub(crate) async fn run<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        attempt
            .retry(backoff)
            .when(Error::is_transient)
            .notify(|e, pause| {
                if let Some(notify) = &self.notify {
                    notify(e, pause);
                }
            })
            .await
    }
}
