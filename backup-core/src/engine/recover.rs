//! `recover()`: finishes whatever a crash, a cancellation or a failed clean-up left, deleting
//! only what the catalog recorded as its own garbage.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::catalog::{AbortCondition, AbortOutcome, CatalogExt, KeyClass, PendingFilter, Undescribed};
use crate::engine::{Engine, chrono_duration};
use crate::error::Result;
use crate::id::{CollectionId, VersionId};
use crate::store::{described_object, is_internal_key};
use crate::version::{Tombstone, TombstoneKind};

/// How many unknown object keys a report names.
const SAMPLES: usize = 10;

/// What [`Engine::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Uploads of this engine instance left by a previous run, released.
    pub released_own_uploads: u64,
    /// Uploads whose lease had expired, aborted.
    pub aborted_uploads: u64,
    /// Versions a time-based retention let age out (a `keepWithin`, a protection that
    /// ended), evicted between uploads.
    pub aged_out: u64,
    /// Trashed versions past the trash retention, purged.
    pub purged_versions: u64,
    /// Objects the catalog recorded as garbage (tombstones, purged versions), deleted.
    pub garbage_deleted: u64,
    /// Tombstones whose objects are confirmed gone, forgotten.
    pub tombstones_forgotten: u64,
    /// Versions whose description the catalog marked as not written (a process stopped
    /// between a step and its description), described now.
    pub descriptions_written: u64,
    /// What stores kept of released uploads beyond their objects (staging files, open
    /// multipart uploads), removed; see [`crate::store::UploadLeftovers`].
    pub leftovers_removed: u64,
    /// Objects under the key prefix, older than the grace, that the catalog does not know:
    /// not deleted (they may be another repository's, or versions a lost catalog knew).
    pub unknown_objects: u64,
    /// A few of their keys.
    pub unknown_samples: Vec<String>,
    /// Steps that failed (each is retried by the next `recover()`), one line each.
    pub failures: Vec<String>,
}

impl RecoveryReport {
    /// Whether every step succeeded.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// What an operator should look at, one line each: unknown objects, failures.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unknown_objects > 0 {
            out.push(format!(
                "{} objects under the key prefix are unknown to the catalog and were left alone (e.g. {}); \
                 a catalog that lost versions can be rebuilt from the store",
                self.unknown_objects,
                self.unknown_samples.join(", ")
            ));
        }
        out.extend(self.failures.iter().cloned());
        out
    }
}

impl Engine {
    /// Finishes the job of crashed, cancelled or failed uploads and deletions:
    ///
    /// 1. uploads this engine instance (see [`crate::EngineBuilder::instance`]) left in a
    ///    previous run are released, and uploads whose lease expired are aborted, each with
    ///    a tombstone for its object;
    /// 2. what time alone changes is applied: protection deadlines that passed are cleared,
    ///    and the retention of collections whose plan depends on time (a `keepWithin`) or
    ///    that hold protected versions is applied without waiting for an upload;
    /// 3. trashed versions past the trash retention are purged, with tombstones;
    /// 4. every version the catalog marked as not described (a step changed it, and the
    ///    process stopped before its description was written) is described, found from an
    ///    index of the marked versions: the cost follows them, not the history;
    /// 5. the objects of every tombstone are deleted, with what the store kept of released
    ///    uploads beyond them (see [`crate::EngineBuilder::upload_leftovers`]), after a number
    ///    mark for a purged version whose description holds the collection's highest number
    ///    (see [`Engine::rebuild_catalog`]); tombstones older than the grace whose objects are
    ///    gone are forgotten;
    /// 6. the objects under the key prefix are listed: those the catalog records as garbage
    ///    are deleted, those it does not know are counted in the report and **never
    ///    deleted**;
    /// 7. sessions that expired more than a day ago are deleted (an expired session refuses
    ///    its token whether or not its row exists; the rows would only grow with every login).
    ///
    /// Safe to run at any time, from any number of engines sharing the catalog: it never
    /// touches a committed version, a live upload, or an object it has no proof is garbage.
    /// Run it at start-up and periodically.
    ///
    /// # Errors
    /// [`crate::Error::RepositoryMismatch`]; listing failures of the catalog or store stop it
    /// with the error; failures of single items are counted in
    /// [`RecoveryReport::failures`] and retried next time.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        self.open_repository().await?;
        let mut report = RecoveryReport::default();
        self.release_own(&mut report).await?;
        self.abort_expired(&mut report).await?;
        self.age_out(&mut report).await?;
        self.purge_trash(&mut report).await?;
        self.describe_marked(&mut report).await?;
        self.delete_garbage(&mut report).await?;
        self.sweep(&mut report).await?;
        let expired_before = self.now() - chrono::Duration::days(1);
        if let Err(e) = self.inner.catalog.delete_expired_sessions(expired_before).await {
            report.failures.push(format!("delete expired sessions: {e}"));
        }
        Ok(report)
    }

    async fn release_own(&self, report: &mut RecoveryReport) -> Result<()> {
        let Some(owner) = self.inner.config.instance.clone() else { return Ok(()) };
        let catalog = &self.inner.catalog;
        let mut filter = PendingFilter::owned_by(owner);
        filter.expired_at = None;
        loop {
            let own = catalog.list_pending(&filter, self.inner.config.batch).await?;
            let dead: Vec<_> = own.iter().filter(|p| p.created_at < self.inner.started_at).collect();
            if dead.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for p in dead {
                match catalog.abort(&p.id, AbortCondition::Always, self.now()).await {
                    Ok(AbortOutcome::Released(_)) => {
                        progressed = true;
                        report.released_own_uploads += 1;
                        let _ = self.delete_object(&p.object_key).await;
                    }
                    Ok(_) => progressed = true,
                    Err(e) => report.failures.push(format!("release upload {} of a previous run: {e}", p.id)),
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    async fn abort_expired(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let now = self.now();
        loop {
            let expired = catalog.list_pending(&PendingFilter::expired_at(now), self.inner.config.batch).await?;
            let full = expired.len() == self.inner.config.batch;
            let mut progressed = false;
            for p in expired {
                match catalog.abort(&p.id, AbortCondition::ExpiredAt(now), now).await {
                    Ok(AbortOutcome::Released(_)) => {
                        progressed = true;
                        report.aborted_uploads += 1;
                        // The tombstone stays until the garbage step confirms it gone.
                        let _ = self.delete_object(&p.object_key).await;
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

    async fn age_out(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let purge = self.inner.config.trash_retention.is_zero();
        let mut collections = catalog.collection_pages(self.inner.config.batch);
        while let Some(page) = collections.try_next().await? {
            for c in &page {
                let timely = self.inner.strategies.resolve(&c.spec.retention).is_ok_and(|s| s.depends_on_time(&c.spec));
                let protected =
                    !timely && catalog.collection_state(&c.id).await.is_ok_and(|s| s.counters.protected > 0);
                if !timely && !protected {
                    continue;
                }
                let audit = crate::AuditEvent::new(self.now(), "engine", "retention.apply").with_collection(&c.id);
                match catalog.apply_retention(&c.id, &self.inner.strategies, purge, &audit).await {
                    Ok(gone) => {
                        report.aged_out += gone.len() as u64;
                        // The number mark before the descriptions go (a time-based plan may
                        // evict the newest); without it, the garbage step deletes them later.
                        let purged: Vec<_> = gone.iter().filter(|v| v.state == crate::VersionState::Purged).collect();
                        let marked = self.mark_numbers_of(&purged).await.0.is_empty();
                        for v in &gone {
                            if v.state != crate::VersionState::Purged {
                                self.describe(v, &c.spec).await;
                            } else if marked {
                                // The tombstone stays until the garbage step confirms it gone.
                                let _ = self.delete_object(&v.object_key).await;
                            }
                        }
                    }
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                    Err(e) => report.failures.push(format!("apply the retention of {}: {e}", c.id)),
                }
            }
        }
        Ok(())
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
            let ids: Vec<VersionId> = due.iter().map(|v| v.id).collect();
            match self.purge(&due).await {
                Ok(n) => report.purged_versions += n,
                Err(e) => {
                    report.failures.push(format!("purge {} trashed versions: {e}", ids.len()));
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Describes the versions the catalog marked as not described, and clears their marks:
    /// one that already has the right description (its writer stopped before the mark was
    /// cleared, or in the usual case, since the engine leaves the clearing to this step) costs
    /// a read; a purged one needs none. Versions stored outside this engine's key prefix are
    /// another engine's to describe.
    async fn describe_marked(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let mut after = None;
        loop {
            let batch = catalog.list_undescribed(after, self.inner.config.batch).await?;
            let mut by_collection: std::collections::BTreeMap<CollectionId, Vec<Undescribed>> = Default::default();
            for u in &batch {
                let ours = Path::from(u.version.object_key.as_str()).prefix_match(&self.inner.key_prefix).is_some();
                if ours {
                    by_collection.entry(u.version.collection.clone()).or_default().push(u.clone());
                }
            }
            for (collection, marked) in by_collection {
                let spec = match catalog.get_collection(&collection).await {
                    Ok(c) => c.spec,
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
                    Err(e) => {
                        report.failures.push(format!("describe the versions of {collection}: {e}"));
                        continue;
                    }
                };
                let mut described = Vec::new();
                for u in marked {
                    let v = &u.version;
                    if v.state == crate::VersionState::Purged || self.description_matches(v).await.unwrap_or(false) {
                        described.push((v.id, u.mark));
                        continue;
                    }
                    match self.try_describe(v, &spec).await {
                        Ok(()) => {
                            report.descriptions_written += 1;
                            described.push((v.id, u.mark));
                        }
                        Err(e) => report.failures.push(format!("describe version {} of {collection}: {e}", v.number)),
                    }
                }
                if let Err(e) = catalog.mark_described(&collection, &described).await
                    && e.kind() != crate::ErrorKind::NotFound
                {
                    report.failures.push(format!("record the descriptions of {collection}: {e}"));
                }
            }
            match batch.last() {
                Some(last) if batch.len() == self.inner.config.batch => after = Some(last.version.id),
                _ => return Ok(()),
            }
        }
    }

    /// Before the garbage step deletes the description of a purged version (one whose
    /// deletion failed or was left to it), makes sure a number mark covers its number: the
    /// description may be the only one that holds the collection's highest number. `false`
    /// when the mark could not be written (the description stays, for the next run).
    async fn mark_before_purging(&self, t: &Tombstone, report: &mut RecoveryReport) -> bool {
        let key = crate::store::description_key(&t.object_key);
        match self.inner.store.head(&key).await {
            Err(object_store::Error::NotFound { .. }) => return true,
            Err(e) => {
                report.failures.push(format!("read {key}: {e}"));
                return false;
            }
            Ok(_) => {}
        }
        let row = self.inner.catalog.load(crate::protocol::StateQuery::versions([t.version])).await;
        let number = match row.as_ref().map(|s| s.version_row(&t.version)) {
            Ok(Some(crate::protocol::VersionRow::Version(v))) => v.number,
            // No record of it: nothing to keep the description for.
            Ok(_) => return true,
            Err(e) => {
                report.failures.push(format!("read the version of {}: {e}", t.object_key));
                return false;
            }
        };
        match self.mark_numbers_given(&t.collection, number.saturating_add(1)).await {
            Ok(()) => true,
            Err(e) => {
                report.failures.push(format!("mark the numbers of {}: {e}", t.collection));
                false
            }
        }
    }

    async fn delete_garbage(&self, report: &mut RecoveryReport) -> Result<()> {
        let catalog = &self.inner.catalog;
        let forget_before = self.now() - chrono_duration(self.inner.config.grace);
        let mut after: Option<String> = None;
        loop {
            let batch = catalog.list_tombstones(None, after.as_deref(), self.inner.config.batch).await?;
            let mut forget = Vec::new();
            for t in &batch {
                if t.kind == TombstoneKind::Released {
                    self.remove_leftovers(t, report).await;
                } else if !self.mark_before_purging(t, report).await {
                    continue;
                }
                match self.delete_object(&t.object_key).await {
                    Ok(()) => {
                        report.garbage_deleted += 1;
                        // Kept for the grace: an abandoned upload may still complete a late
                        // write of its object, which the next run deletes again.
                        if t.recorded_at <= forget_before {
                            forget.push(t.object_key.clone());
                        }
                    }
                    Err(e) => report.failures.push(format!("delete garbage {}: {e}", t.object_key)),
                }
            }
            if !forget.is_empty() {
                match catalog.forget_tombstones(&forget).await {
                    Ok(()) => report.tombstones_forgotten += forget.len() as u64,
                    Err(e) => report.failures.push(format!("forget {} tombstones: {e}", forget.len())),
                }
            }
            match batch.last() {
                Some(last) if batch.len() == self.inner.config.batch => after = Some(last.object_key.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Removes what the store kept of a released upload beyond its object: its multipart
    /// upload (by the id the catalog recorded), then whatever the store's leftovers find under
    /// its key (staging files; open multipart uploads whose id was never recorded, where the
    /// store can list them). A multipart upload already gone (aborted when the upload failed
    /// in-process) is not an error. The recorded id goes first: some stores refuse to abort an
    /// id a listing has just aborted.
    async fn remove_leftovers(&self, t: &Tombstone, report: &mut RecoveryReport) {
        let key = Path::from(t.object_key.as_str());
        if let (Some(multipart), Some(id)) = (&self.inner.multipart, &t.staging) {
            match multipart.0.abort_multipart(&key, id).await {
                Ok(()) => report.leftovers_removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => report.failures.push(format!("abort multipart upload {id} of {key}: {e}")),
            }
        }
        if let Some(leftovers) = &self.inner.leftovers {
            match leftovers.remove(&key).await {
                Ok(n) => report.leftovers_removed += n,
                Err(e) => report.failures.push(format!("remove leftovers of {key}: {e}")),
            }
        }
    }

    async fn sweep(&self, report: &mut RecoveryReport) -> Result<()> {
        let store = &self.inner.store;
        let catalog = &self.inner.catalog;
        let cutoff = self.now() - chrono_duration(self.inner.config.grace);
        let prefix = &self.inner.key_prefix;
        // Rows are created before their objects, so an object listed here that no row
        // refers to when asked below is not one of this catalog's uploads in progress. A
        // description stands for its object: it goes and stays with it.
        let mut listing = store.list(Some(prefix)).try_chunks(self.inner.config.batch);
        while let Some(chunk) = listing.try_next().await.map_err(|e| crate::Error::store("list", prefix, e.1))? {
            let old: Vec<String> = chunk
                .into_iter()
                .filter(|m| m.last_modified < cutoff.to_datetime() && !is_internal_key(prefix, &m.location))
                .map(|m| m.location.to_string())
                .collect();
            if old.is_empty() {
                continue;
            }
            let objects: Vec<String> = old.iter().map(|k| described_object(k).unwrap_or(k).to_owned()).collect();
            let classes = catalog.classify_object_keys(&objects).await?;
            for (key, class) in old.iter().zip(classes) {
                match class {
                    KeyClass::Live => {}
                    KeyClass::Garbage => {
                        let path = Path::from(key.as_str());
                        match store.delete(&path).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => report.garbage_deleted += 1,
                            Err(e) => report.failures.push(format!("delete garbage {key}: {e}")),
                        }
                    }
                    _ => {
                        report.unknown_objects += 1;
                        if report.unknown_samples.len() < SAMPLES {
                            report.unknown_samples.push(key.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
