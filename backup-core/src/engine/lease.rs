//! The lease of an upload, renewed on a timer while the upload is alive.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::CatalogExt;
use crate::engine::{Engine, chrono_duration};
use crate::error::{Error, ErrorKind};
use crate::id::VersionId;

/// Renews an upload's lease every third of its length for as long as it lives, whether bytes
/// flow or not: an upload whose connection is open keeps its reservation, and one whose
/// process died loses it within one lease. Renewal never revives an expired lease; once the
/// lease is lost, [`LeaseKeeper::lost`] resolves with the reason and the upload fails.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    task: JoinHandle<()>,
    lost: watch::Receiver<Option<Arc<Error>>>,
}

impl LeaseKeeper {
    pub(crate) fn spawn(engine: &Engine, id: VersionId) -> Self {
        let (tx, lost) = watch::channel(None);
        let engine = engine.clone();
        let task = tokio::spawn(async move {
            let lease = engine.inner.config.lease;
            let every = lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let now = engine.now();
                match engine.inner.catalog.renew_lease(&id, now + chrono_duration(lease), now).await {
                    Ok(_) => {}
                    // Expired, aborted or committed: renewing is over.
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        let _ = tx.send(Some(Arc::new(e)));
                        return;
                    }
                    // A backend hiccup: the next tick tries again, within the lease.
                    Err(_) => {}
                }
            }
        });
        LeaseKeeper { task, lost }
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
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
