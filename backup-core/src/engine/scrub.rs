//! Scrubs: committed versions read back and re-hashed; those whose bytes no longer match (or
//! whose object is gone) are quarantined.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use governor::{Quota, RateLimiter};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::authz::{Action, Actor};
use crate::catalog::{CatalogExt, VersionQuery};
use crate::engine::download::Opened;
use crate::engine::{Engine, chrono_duration};
use crate::error::{Error, Result};
use crate::id::{CollectionId, VersionId};
use crate::progress::{self, ProgressTracker};
use crate::protocol::Verification;
use crate::spec::CollectionSpec;
use crate::store::SCRUB_PROGRESS;
use crate::time::Timestamp;
use crate::version::Version;

/// Which committed versions a scrub reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScrubSample {
    /// Every one.
    #[default]
    All,
    /// About this percentage of them (1 to 100), chosen at random for each scrub.
    Percent(u8),
    /// Those not verified for this long (never verified included).
    NotVerifiedFor(Duration),
}

/// How a scrub runs: which versions, how fast.
///
/// ```
/// use std::time::Duration;
/// use backup_core::{ScrubOptions, ScrubSample};
///
/// let nightly = ScrubOptions::sample(ScrubSample::NotVerifiedFor(Duration::from_secs(7 * 86_400)))
///     .throttle(50 << 20); // 50 MiB/s
/// assert!(ScrubOptions::sample(ScrubSample::Percent(0)).check().is_err());
/// # let _ = nightly;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ScrubOptions {
    /// Which versions.
    pub sample: ScrubSample,
    /// At most this many bytes read per second (unlimited when `None`).
    pub bytes_per_second: Option<NonZeroU64>,
}

impl ScrubOptions {
    /// Every committed version, unthrottled.
    pub fn all() -> Self {
        ScrubOptions::default()
    }

    /// The versions `sample` chooses, unthrottled.
    pub fn sample(sample: ScrubSample) -> Self {
        ScrubOptions { sample, bytes_per_second: None }
    }

    /// Reads at most `bytes_per_second` (0 means unlimited).
    pub fn throttle(mut self, bytes_per_second: u64) -> Self {
        self.bytes_per_second = NonZeroU64::new(bytes_per_second);
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a percentage outside 1 to 100.
    pub fn check(&self) -> Result<()> {
        match self.sample {
            ScrubSample::Percent(p) if !(1..=100).contains(&p) => {
                Err(Error::invalid("scrub sample", format!("{p}% is not between 1% and 100%")))
            }
            _ => Ok(()),
        }
    }
}

/// What a scrub found on one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VersionCheck {
    /// The collection.
    pub collection: CollectionId,
    /// The version's number.
    pub number: u64,
    /// Whether its bytes are intact.
    pub ok: bool,
    /// Why not: the reason it is quarantined, or why it could not be read (then it is not
    /// quarantined: a store that fails is not evidence of damage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this check put it into quarantine (it was not before).
    #[serde(skip)]
    pub newly_quarantined: bool,
}

/// What [`Engine::scrub`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubReport {
    /// Whether it continued an interrupted scrub.
    pub resumed: bool,
    /// Versions read back.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Versions found intact.
    pub intact: u64,
    /// Versions found damaged (or their object missing), quarantined; those already
    /// quarantined included.
    pub damaged: Vec<VersionCheck>,
    /// Versions that entered quarantine in this scrub.
    pub newly_quarantined: u64,
    /// Quarantined versions found intact again (their object was put back), released.
    pub released: u64,
    /// Versions found damaged or missing whose object was copied back from a replica whose
    /// copy matched the recorded digest (each recorded as `version.repaired`); counted as
    /// intact, never quarantined (or released).
    pub repaired: u64,
    /// Descriptions of versions that were missing or stale, written again.
    pub descriptions_written: u64,
    /// Versions that could not be checked (store or catalog errors), one line each; the next
    /// scrub tries them again.
    pub failures: Vec<String>,
}

/// A scrub's progress record.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    started_at: Timestamp,
    seed: u64,
    sample: ScrubSample,
}

/// How much of a local file a scrub reads per blocking call (then the throttle, and other
/// readers, get a turn).
const SEGMENT: usize = 8 << 20;

/// How many bytes a throttle counts as one cell.
const CELL: u64 = 1024;

/// Paces reads to a rate, counted in cells of [`CELL`] bytes with a second's worth of burst.
pub(crate) struct Throttle {
    limiter: governor::DefaultDirectRateLimiter,
    per_second: NonZeroU32,
}

impl Throttle {
    pub(crate) fn new(bytes_per_second: Option<NonZeroU64>) -> Option<Throttle> {
        let cells = bytes_per_second?.get().div_ceil(CELL);
        let per_second = NonZeroU32::new(u32::try_from(cells).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        Some(Throttle { limiter: RateLimiter::direct(Quota::per_second(per_second)), per_second })
    }

    /// Waits until `bytes` more may be read.
    pub(crate) async fn wait(&self, bytes: usize) {
        let mut cells = (bytes as u64).div_ceil(CELL);
        // A chunk larger than a second's worth waits in pieces.
        while cells > 0 {
            let n = cells.min(u64::from(self.per_second.get()));
            let piece = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            // Never more than the burst, so never refused.
            let _ = self.limiter.until_n_ready(piece).await;
            cells -= n;
        }
    }
}

/// Whether version `id` is in the sample of `percent` chosen by `seed`.
fn sampled(seed: u64, id: &VersionId, percent: u8) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(id.as_uuid().as_bytes());
    let draw = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    draw % 100 < u64::from(percent)
}

impl Engine {
    /// Reads committed versions back (all, or a sample), re-hashes them, and records for each
    /// when it was verified. A version whose bytes do not match its digest or size, or whose
    /// object is gone, is **quarantined**: it stays listed with the reason, downloads refuse
    /// it, and an audit event records it; one found intact again leaves quarantine. Missing or
    /// stale descriptions of versions (see [`Engine::rebuild_catalog`]) are written again.
    ///
    /// A scrub streams (memory stays bounded whatever the sizes), can be throttled, holds no
    /// lock while it reads (uploads, downloads and deletions go on), and records each version
    /// as it goes: one interrupted (a restart) resumes where it stopped when run again with
    /// the same sample. A store failing on a version is reported, not taken for damage.
    ///
    /// ```
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits, ScrubOptions, VersionSelector};
    /// use bytes::Bytes;
    /// use object_store::{ObjectStoreExt, PutPayload, path::Path};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let (me, db) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &db, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
    /// let v = engine.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("data"))])).await?;
    /// assert!(engine.scrub(&ScrubOptions::all()).await?.damaged.is_empty());
    ///
    /// // Bit rot: same size, other bytes.
    /// engine.store().put(&Path::from(v.object_key.as_str()), PutPayload::from("dat4")).await.unwrap();
    /// let report = engine.scrub(&ScrubOptions::all()).await?;
    /// assert_eq!(report.newly_quarantined, 1);
    /// let e = engine.download(&me, &db, VersionSelector::Latest).await.unwrap_err();
    /// assert!(e.to_string().contains("quarantined"), "{e}");
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad options; [`Error::RepositoryMismatch`]; listing
    /// failures of the catalog. Failures of single versions are in
    /// [`ScrubReport::failures`].
    pub async fn scrub(&self, options: &ScrubOptions) -> Result<ScrubReport> {
        options.check()?;
        self.open_repository().await?;
        let mut report = ScrubReport::default();
        let progress = match self.read_progress().await {
            Some(p) if p.sample == options.sample => {
                report.resumed = true;
                p
            }
            _ => {
                let seed =
                    u64::from_le_bytes(VersionId::generate().as_uuid().as_bytes()[8..].try_into().unwrap_or([0; 8]));
                let p = Progress { started_at: self.now(), seed, sample: options.sample };
                self.write_progress(&p).await?;
                p
            }
        };
        // What was verified after this needs no second look in this scrub.
        let cutoff = match options.sample {
            ScrubSample::All | ScrubSample::Percent(_) => progress.started_at,
            ScrubSample::NotVerifiedFor(d) => progress.started_at - chrono_duration(d),
        };
        let throttle = Throttle::new(options.bytes_per_second);
        let no_progress = ProgressTracker::default();
        let batch = self.inner.config.batch;
        let catalog = &self.inner.catalog;
        let mut collections = catalog.collection_pages(batch);
        while let Some(page) = collections.try_next().await? {
            for c in &page {
                let mut versions = catalog.version_pages(&c.id, VersionQuery::first(batch));
                while let Some(versions) = versions.try_next().await? {
                    for v in versions {
                        if v.verified_at.is_some_and(|at| at >= cutoff) {
                            continue;
                        }
                        if let ScrubSample::Percent(p) = options.sample
                            && !sampled(progress.seed, &v.id, p)
                        {
                            continue;
                        }
                        self.scrub_version(&v, &c.spec, throttle.as_ref(), &no_progress, &mut report).await;
                    }
                }
            }
        }
        let key = self.progress_key();
        if let Err(e) = self.inner.store.delete(&key).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            report.failures.push(format!("delete the scrub's progress record {key}: {e}"));
        }
        // Each run is in the log: `scrub.failed` when it found damage or could not check
        // something, which a detector turns into an alert.
        let action = if report.damaged.is_empty() && report.failures.is_empty() { "scrub.run" } else { "scrub.failed" };
        let mut detail = format!(
            "{} versions checked ({} bytes), {} intact, {} damaged, {} newly quarantined, {} released, {} repaired \
             from replicas",
            report.checked,
            report.bytes,
            report.intact,
            report.damaged.len(),
            report.newly_quarantined,
            report.released,
            report.repaired
        );
        if let Some(first) = report.failures.first() {
            detail.push_str(&format!("; {} failures, the first: {first}", report.failures.len()));
        }
        if let Err(e) = self.record_audit(&AuditEvent::new(self.now(), "scrub", action).with_detail(detail)).await {
            report.failures.push(format!("record the scrub in the audit log: {e}"));
        }
        Ok(report)
    }

    /// Reads back every committed version of a collection now, records what it finds like
    /// [`Engine::scrub`], and returns each version's result.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial ([`Action::VerifyVersions`]: a
    /// role that manages the collection); catalog errors. Versions that could not be read are
    /// results with `ok: false`, not errors.
    pub async fn verify_collection(&self, actor: &Actor, id: &CollectionId) -> Result<Vec<VersionCheck>> {
        self.verify_collection_with(actor, id, None).await
    }

    /// [`Engine::verify_collection`], reporting to `progress` (see [`crate::ProgressTracker`]): one
    /// phase, `verifying <collection>`, of the collection's committed versions and their bytes
    /// as the catalog counts them when it starts (versions committed meanwhile may take `done`
    /// past `total`).
    ///
    /// # Errors
    /// As [`Engine::verify_collection`].
    pub async fn verify_collection_with(
        &self,
        actor: &Actor,
        id: &CollectionId,
        progress: Option<Arc<dyn progress::Progress>>,
    ) -> Result<Vec<VersionCheck>> {
        self.open_repository().await?;
        let (collection, _) = self.authorized_collection(actor, id, Action::VerifyVersions).await?;
        let progress = ProgressTracker::new(progress, self.inner.clock.clone());
        if progress.is_active() {
            let counters = self.inner.catalog.collection_state(id).await?.counters;
            progress.start(format!("verifying {id}"), Some(counters.versions), Some(counters.bytes));
        }
        let mut results = Vec::new();
        let mut pages = self.inner.catalog.version_pages(id, VersionQuery::first(self.inner.config.batch));
        while let Some(page) = pages.try_next().await? {
            for v in page {
                let mut report = ScrubReport::default();
                if let Some(check) = self.scrub_version(&v, &collection.spec, None, &progress, &mut report).await {
                    results.push(check);
                }
                progress.advance(1, 0);
            }
        }
        progress.finish();
        Ok(results)
    }

    /// Checks one version and records the finding; `None` if it left the collection meanwhile.
    async fn scrub_version(
        &self,
        v: &Version,
        spec: &CollectionSpec,
        throttle: Option<&Throttle>,
        progress: &ProgressTracker,
        report: &mut ScrubReport,
    ) -> Option<VersionCheck> {
        let check = |ok: bool, error: Option<String>| VersionCheck {
            collection: v.collection.clone(),
            number: v.number,
            ok,
            error,
            newly_quarantined: false,
        };
        let mut found = match self.read_back(v, throttle, progress, report).await {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                report.failures.push(format!("version {} of {}: {e}", v.number, v.collection));
                return Some(check(false, Some(format!("could not be read: {e}"))));
            }
        };
        report.checked += 1;
        // Damage a replica's verified copy repairs never becomes a quarantine.
        let mut repaired = None;
        if let Verification::Damaged(reason) = &found
            && self.has_replicas_for(&v.collection)
            && let Some(replica) = self.heal_from_replicas(v).await
            && let Ok(Some(Verification::Intact)) = self.read_back(v, throttle, progress, report).await
        {
            repaired = Some((replica, reason.clone()));
            found = Verification::Intact;
        }
        let audit = AuditEvent::new(self.now(), "scrub", Action::VerifyVersions.name());
        let recorded = match self.inner.catalog.record_verification(v, &found, &audit).await {
            Ok(Some(recorded)) => recorded,
            Ok(None) => return None,
            Err(e) => {
                report.failures.push(format!("record the check of version {} of {}: {e}", v.number, v.collection));
                return Some(check(false, Some(format!("could not be recorded: {e}"))));
            }
        };
        match self.description_matches(&recorded).await {
            Ok(true) => {}
            Ok(false) | Err(_) => match self.try_describe(&recorded, spec).await {
                Ok(()) => report.descriptions_written += 1,
                Err(e) => report.failures.push(format!("describe version {} of {}: {e}", v.number, v.collection)),
            },
        }
        if let Some((replica, reason)) = repaired {
            self.record_repair(&recorded, &replica, &reason, "scrub").await;
            report.repaired += 1;
        }
        match found {
            Verification::Intact => {
                report.intact += 1;
                report.released += u64::from(v.quarantined.is_some());
                Some(check(true, None))
            }
            Verification::Damaged(reason) => {
                report.newly_quarantined += u64::from(v.quarantined.is_none());
                let c = VersionCheck { newly_quarantined: v.quarantined.is_none(), ..check(false, Some(reason)) };
                report.damaged.push(c.clone());
                Some(c)
            }
        }
    }

    /// Reads a version's bytes through the download's verification, counting them into
    /// `progress`; `None` if it was purged meanwhile.
    pub(crate) async fn read_back(
        &self,
        v: &Version,
        throttle: Option<&Throttle>,
        progress: &ProgressTracker,
        report: &mut ScrubReport,
    ) -> Result<Option<Verification>> {
        // Bytes counted into `progress` so far (a local file's last segment is not paced).
        let paced = AtomicU64::new(0);
        let pace = |n: usize| {
            let paced = &paced;
            async move {
                paced.fetch_add(n as u64, Ordering::Relaxed);
                progress.advance(0, n as u64);
                if let Some(t) = throttle {
                    t.wait(n).await;
                }
            }
        };
        let checked = match self.open_verified(v).await {
            // Local disk: read into one reused buffer, nothing handed on.
            Ok(Opened::File(file, key, verifier)) => {
                let (read, checked) = self.verify_file(file, key, verifier, SEGMENT, pace).await;
                progress.advance(0, read.saturating_sub(paced.load(Ordering::Relaxed)));
                report.bytes += read;
                checked
            }
            Ok(Opened::Stream(mut stream)) => loop {
                match stream.next().await {
                    Some(Ok(bytes)) => {
                        report.bytes += bytes.len() as u64;
                        pace(bytes.len()).await;
                    }
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                }
            },
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => Ok(Some(Verification::Intact)),
            Err(Error::VersionNotFound { .. }) => Ok(None),
            Err(Error::Corrupted { reason, .. }) => Ok(Some(Verification::Damaged(reason))),
            Err(e) => Err(e),
        }
    }

    fn progress_key(&self) -> Path {
        self.inner.key_prefix.clone().join(SCRUB_PROGRESS)
    }

    /// The progress of an interrupted scrub; an unreadable record counts as none.
    async fn read_progress(&self) -> Option<Progress> {
        let got = self.inner.store.get(&self.progress_key()).await.ok()?;
        let bytes = got.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    async fn write_progress(&self, p: &Progress) -> Result<()> {
        let key = self.progress_key();
        let body = serde_json::to_vec(p).map_err(|e| Error::internal(e.to_string()))?;
        self.inner.store.put(&key, PutPayload::from(body)).await.map_err(|e| Error::store("put", &key, e))?;
        Ok(())
    }
}
