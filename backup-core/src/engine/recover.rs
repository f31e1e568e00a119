//! `recover()`: finishes whatever a crash, a cancellation or a failed clean-up left.

use futures::TryStreamExt;

use crate::catalog::{AbortCondition, AbortOutcome};
use crate::engine::{Engine, chrono_duration};
use crate::error::Result;
use crate::id::VersionId;

/// What [`Engine::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Uploads whose lease had expired, aborted and their objects deleted.
    pub aborted_uploads: u64,
    /// Trashed versions whose objects were deleted.
    pub purged_versions: u64,
    /// Objects without a catalog row, older than the grace, deleted.
    pub orphans_deleted: u64,
    /// Steps that failed (each is retried by the next `recover()`), one line each.
    pub failures: Vec<String>,
}

impl RecoveryReport {
    /// Whether every step succeeded.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Engine {
    /// Finishes the job of crashed, cancelled or failed uploads and deletions, in three steps:
    ///
    /// 1. pending uploads whose lease expired are aborted and their objects deleted;
    /// 2. trashed versions past the trash retention have their objects deleted and are marked
    ///    purged;
    /// 3. objects under the key prefix that no catalog row refers to and that are older than
    ///    the orphan grace are deleted.
    ///
    /// Safe to run at any time, from any number of engines sharing the catalog: it never
    /// touches a committed version or a live upload. Run it at start-up and periodically.
    ///
    /// # Errors
    /// Listing failures of the catalog or store stop it with the error; failures of single
    /// items are counted in [`RecoveryReport::failures`] and retried next time.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        self.abort_expired(&mut report).await?;
        self.purge_trash(&mut report).await?;
        self.delete_orphans(&mut report).await?;
        Ok(report)
    }

    async fn abort_expired(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let now = self.now();
        loop {
            let expired = catalog.list_expired_pending(now, self.inner.config.batch).await?;
            let full = expired.len() == self.inner.config.batch;
            let mut progressed = false;
            for p in expired {
                match catalog.abort(&p.id, AbortCondition::ExpiredAt(now)).await {
                    Ok(AbortOutcome::Released(_)) => {
                        progressed = true;
                        report.aborted_uploads += 1;
                        if let Err(e) = self.delete_object(&p.object_key).await {
                            // The row is gone: the orphan sweep deletes the object later.
                            report.failures.push(format!("delete object of aborted upload {}: {e}", p.id));
                        }
                    }
                    Ok(_) => progressed = true,
                    Err(e) => report.failures.push(format!("abort expired upload {}: {e}", p.id)),
                }
            }
            if !full || !progressed {
                return Ok(());
            }
        }
    }

    async fn purge_trash(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let before = self.now() - chrono_duration(self.inner.config.trash_retention);
        loop {
            let due = catalog.list_trashed(before, self.inner.config.batch).await?;
            let full = due.len() == self.inner.config.batch;
            if due.is_empty() {
                return Ok(());
            }
            // Marked first: a version restored meanwhile is not marked, and keeps its object.
            let ids: Vec<VersionId> = due.iter().map(|v| v.id).collect();
            let marked = match catalog.mark_purged(&ids, self.now()).await {
                Ok(m) => m,
                Err(e) => {
                    report.failures.push(format!("mark {} versions purged: {e}", ids.len()));
                    return Ok(());
                }
            };
            report.purged_versions += marked.len() as u64;
            for v in due.iter().filter(|v| marked.contains(&v.id)) {
                if let Err(e) = self.delete_object(&v.object_key).await {
                    // No row refers to it any more: the orphan sweep below retries.
                    report
                        .failures
                        .push(format!("delete object of purged version {} of {}: {e}", v.number, v.collection));
                }
            }
            if !full || marked.is_empty() {
                return Ok(());
            }
        }
    }

    async fn delete_orphans(&self, report: &mut RecoveryReport) -> Result<()> {
        let store = &self.inner.store;
        let catalog = &self.inner.catalog;
        let cutoff = self.now() - chrono_duration(self.inner.config.orphan_grace);
        // Rows are created before their objects and removed after them, so an object listed
        // here that has no row when asked below has none for good.
        let mut listing = store.list(Some(&self.inner.key_prefix)).try_chunks(self.inner.config.batch);
        while let Some(chunk) =
            listing.try_next().await.map_err(|e| crate::Error::store("list", &self.inner.key_prefix, e.1))?
        {
            let old: Vec<_> = chunk.into_iter().filter(|m| m.last_modified < cutoff).collect();
            if old.is_empty() {
                continue;
            }
            let keys: Vec<String> = old.iter().map(|m| m.location.to_string()).collect();
            let known = catalog.known_object_keys(&keys).await?;
            for key in keys.iter().filter(|k| !known.contains(k)) {
                match self.delete_object(key).await {
                    Ok(()) => report.orphans_deleted += 1,
                    Err(e) => report.failures.push(format!("delete orphan {key}: {e}")),
                }
            }
        }
        Ok(())
    }
}
