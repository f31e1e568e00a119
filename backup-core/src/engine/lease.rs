//! The lease of an upload, renewed on a timer while the upload is alive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::CatalogExt;
use crate::engine::{Engine, chrono_duration};
use crate::error::{Error, ErrorKind};
use crate::id::VersionId;
use crate::time::Timestamp;

/// How often the keeper looks at its lease: renewing takes a catalog call only every third
/// of the lease, or at once when the wall clock stepped.
const TICK: Duration = Duration::from_secs(1);

/// Renews an upload's lease every third of its length for as long as it lives, whether bytes
/// flow or not: an upload whose connection is open keeps its reservation, and one whose
/// process died loses it within one lease.
///
/// Two clocks, each for what it can tell, both the engine's [`crate::Clock`] (so a test moves
/// them instead of waiting). Whether this process kept its lease is judged on the monotonic
/// clock ([`crate::Clock::monotonic`], the keeper's timer waits on it): a whole lease without a successful renewal (the process froze, or
/// could not reach the catalog) loses it for good, and [`LeaseKeeper::lost`] resolves with
/// the reason. The lease in the catalog is wall-clock time, for other instances and the
/// maintenance; when the wall clock steps (an NTP correction) the keeper renews at once, and
/// a lease that ran out by the wall clock meanwhile is renewed if its room is still free
/// ([`crate::protocol::decide_renewal`]), so a step does not fail the uploads in flight.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    task: JoinHandle<()>,
    lost: watch::Receiver<Option<Arc<Error>>>,
    /// When the last successful renewal (or the reservation) happened, monotonic.
    renewed_at: Arc<Mutex<Duration>>,
    lease: Duration,
    clock: Arc<dyn crate::Clock>,
}

impl LeaseKeeper {
    /// Starts keeping the lease of `id`, which the reservation set to `lease_until`.
    pub(crate) fn spawn(engine: &Engine, id: VersionId, lease_until: Timestamp) -> Self {
        let (tx, lost) = watch::channel(None);
        let lease = engine.inner.config.lease;
        let clock = engine.inner.clock.clone();
        let renewed_at = Arc::new(Mutex::new(clock.monotonic()));
        let engine = engine.clone();
        let timer = clock.clone();
        let last = renewed_at.clone();
        let task = tokio::spawn(async move {
            let every = lease / 3;
            let tick = TICK.min(every);
            let mut until = lease_until;
            loop {
                timer.sleep(tick).await;
                let since = timer.monotonic().saturating_sub(*last.lock().unwrap_or_else(|p| p.into_inner()));
                if since >= lease {
                    let why = format!(
                        "it expired, not renewed for {since:.0?} (the process stalled, or could not reach the catalog)"
                    );
                    let _ = tx.send(Some(Arc::new(Error::conflict(why))));
                    return;
                }
                let now = engine.now();
                // Renew every third of the lease, or at once when the wall clock says that
                // less than two thirds are left (it stepped forward).
                let stepped = now + chrono_duration(lease - every) >= until;
                if since < every && !stepped {
                    continue;
                }
                let asked = timer.monotonic();
                match engine.inner.catalog.renew_lease(&id, now + chrono_duration(lease), now).await {
                    Ok(renewed) => {
                        until = renewed.lease_until;
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = asked;
                    }
                    // Aborted, committed, or expired with its room given away: over.
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        let _ = tx.send(Some(Arc::new(e)));
                        return;
                    }
                    // A backend hiccup: the next tick tries again, within the lease.
                    Err(_) => {}
                }
            }
        });
        LeaseKeeper { task, lost, renewed_at, lease, clock }
    }

    /// Resolves when the lease is lost, with why; never resolves while it is kept.
    pub(crate) async fn lost(&mut self) -> Error {
        loop {
            if let Some(e) = self.lost.borrow_and_update().as_ref() {
                return Error::conflict(format!("the upload lost its lease: {e}"));
            }
            if self.lost.changed().await.is_err() {
                // The renewal task ended without a loss: only when it was stopped.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Fails when the lease is lost, or when a whole lease passed (monotonic) since its last
    /// renewal, even if the keeper has not run since (the process just woke up).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if let Some(e) = self.lost.borrow().as_ref() {
            return Err(Error::conflict(format!("the upload lost its lease: {e}")));
        }
        let since = self.clock.monotonic().saturating_sub(*self.renewed_at.lock().unwrap_or_else(|p| p.into_inner()));
        if since >= self.lease {
            return Err(Error::conflict(format!(
                "the upload lost its lease: it expired, not renewed for {since:.0?} (the process stalled, or could not reach the catalog)"
            )));
        }
        Ok(())
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
