//! A catalog rebuilt from the store alone, from the descriptions next to the versions'
//! objects.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::audit::AuditEvent;
use crate::authz::Action;
use crate::catalog::{CatalogExt, CatalogRecord, VersionQuery};
use crate::engine::describe::{Found, Intent, MAX_DESCRIPTION};
use crate::engine::{Engine, ScrubReport};
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId};
use crate::progress::{Progress, ProgressTracker};
use crate::protocol::Verification;
use crate::spec::CollectionSpec;
use crate::store::{described_object, is_internal_key};
use crate::time::Timestamp;
use crate::version::{Collection, Version, VersionState, number_after};

/// Descriptions read at once.
const READS_IN_FLIGHT: usize = 16;
/// Versions adopted in one catalog step.
const ADOPT_BATCH: usize = 500;

/// What a rebuild fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RebuildMode {
    /// An empty catalog (a lost one replaced by a new one), all or nothing: a failed or
    /// interrupted rebuild leaves it empty, and runs again from the start.
    #[default]
    EmptyCatalog,
    /// A catalog that already holds the repository (restored from a snapshot): the versions
    /// it lacks (committed after the snapshot) are added, one collection at a time; versions
    /// deleted after it are trashed, and those whose object is gone quarantined. Safe to run
    /// again.
    AddMissing,
}

/// How to rebuild a catalog.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RebuildOptions {
    /// What to fill.
    pub mode: RebuildMode,
    /// Also re-hash every object (sizes are always checked): a version whose bytes differ
    /// comes back quarantined.
    pub verify_digests: bool,
    /// Collections as the configuration declares them (manifests): they come back with these
    /// specs, even without versions. A collection only the descriptions know comes back with
    /// the spec its newest description carries.
    pub collections: Vec<(CollectionId, CollectionSpec)>,
    /// Where the rebuild reports its progress (see [`crate::ProgressTracker`]), phase by phase:
    /// `listing the store` (objects, no total), `reading descriptions`, `checking objects`
    /// (with [`RebuildOptions::verify_digests`], the bytes read of the bytes described), then
    /// `writing the catalog` into an empty one, or `reconciling the catalog` and `adding
    /// versions` to a restored one. Nothing is reported without one.
    pub progress: Option<Arc<dyn Progress>>,
}

impl RebuildOptions {
    /// Fills an empty catalog.
    pub fn empty_catalog() -> Self {
        RebuildOptions::default()
    }

    /// Adds what a catalog restored from a snapshot lacks.
    pub fn add_missing() -> Self {
        RebuildOptions { mode: RebuildMode::AddMissing, ..RebuildOptions::default() }
    }

    /// Re-hashes every object.
    pub fn verify_digests(mut self, verify: bool) -> Self {
        self.verify_digests = verify;
        self
    }

    /// Declares a collection's spec.
    pub fn collection(mut self, id: CollectionId, spec: CollectionSpec) -> Self {
        self.collections.push((id, spec));
        self
    }

    /// Reports the rebuild's progress to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What [`Engine::rebuild_catalog`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildReport {
    /// The repository id the store's marker holds, if it has one.
    pub repository: Option<RepositoryId>,
    /// Collections created.
    pub collections: u64,
    /// Collections that came back with the spec of their versions' descriptions, not declared.
    pub collections_from_descriptions: Vec<CollectionId>,
    /// Versions restored.
    pub versions: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Versions the catalog already had (in [`RebuildMode::AddMissing`]).
    pub already_present: u64,
    /// Committed versions of a restored snapshot that their descriptions say were deleted
    /// after it, trashed (in [`RebuildMode::AddMissing`]).
    pub trashed: u64,
    /// Trashed versions of a restored snapshot whose objects are gone (purged after it),
    /// marked purged (in [`RebuildMode::AddMissing`]).
    pub purged: u64,
    /// Versions restored quarantined: their object is missing, or has other bytes.
    pub quarantined: Vec<String>,
    /// Objects, descriptions and collections left out, each with the reason: objects without
    /// a description, unreadable or foreign descriptions, numbers out of range, versions
    /// claimed twice, numbers taken, undeclared collections whose spec cannot be used.
    pub skipped: Vec<String>,
    /// Collections whose numbering resumes past the highest number restored, each with the
    /// reason: numbers the store shows were given out that no restored version holds (see
    /// [`Engine::rebuild_catalog`]).
    pub numbering: Vec<String>,
}

impl RebuildReport {
    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "repository {}: {} collections created, {} versions restored ({} bytes), {} already present, {} trashed, {} purged, {} quarantined, {} skipped",
            self.repository.map_or("without marker".to_owned(), |r| r.to_string()),
            self.collections,
            self.versions,
            self.bytes,
            self.already_present,
            self.trashed,
            self.purged,
            self.quarantined.len(),
            self.skipped.len()
        );
        for c in &self.collections_from_descriptions {
            out.push_str(&format!("\ncollection {c}: not declared; its spec comes from its versions' descriptions"));
        }
        for line in self
            .quarantined
            .iter()
            .map(|l| format!("quarantined: {l}"))
            .chain(self.skipped.iter().map(|l| format!("skipped: {l}")))
            .chain(self.numbering.iter().cloned())
        {
            out.push('\n');
            out.push_str(&line);
        }
        out
    }
}

/// What the store says, read once.
#[derive(Debug, Default)]
struct Scan {
    /// Versions by collection, ascending by number.
    versions: BTreeMap<CollectionId, Vec<Version>>,
    /// The spec of each collection's newest description.
    specs: HashMap<CollectionId, (Timestamp, CollectionSpec)>,
    /// Versions found damaged, by collection and number, with the reason.
    quarantined: Vec<(CollectionId, u64, String)>,
    skipped: Vec<String>,
    /// Every object key (descriptions aside) with its size.
    objects: HashMap<String, u64>,
    /// The highest number any description of each collection holds, restored or not.
    highest: HashMap<CollectionId, u64>,
    /// Intents left by each collection's uploads (see [`Intent`]).
    intents: HashMap<CollectionId, u64>,
    /// The highest number mark of each collection ([`crate::engine::numbers`]).
    marks: HashMap<CollectionId, u64>,
}

impl Scan {
    /// Where `collection`'s numbering resumes so that no number given out before is given
    /// again: past the highest number a description holds and below the highest mark, plus
    /// one for each upload's intent (each may be a version whose number no description holds;
    /// such numbers follow the last described or purged one). Capped at the number after the
    /// last: a collection there takes no more versions.
    fn resume_at(&self, collection: &CollectionId) -> u64 {
        let described = self.highest.get(collection).map_or(1, |n| n.saturating_add(1));
        let marked = self.marks.get(collection).copied().unwrap_or(0);
        let intents = self.intents.get(collection).copied().unwrap_or(0);
        described.max(marked).saturating_add(intents).min(crate::MAX_VERSION_NUMBER + 1)
    }

    /// Why the numbering of `collection` resumes at `next` rather than after `last`, the
    /// highest number restored; `None` when it does not skip any.
    fn why_resumed(&self, collection: &CollectionId, last: u64, next: u64) -> Option<String> {
        if next <= last.saturating_add(1) {
            return None;
        }
        let mut why = Vec::new();
        if let Some(n) = self.highest.get(collection).filter(|n| **n > last) {
            why.push(format!("number {n} is held by a description of a version not restored"));
        }
        if let Some(m) = self.marks.get(collection).filter(|m| **m > last.saturating_add(1)) {
            why.push(format!("numbers up to {} were given out (versions purged since)", m - 1));
        }
        if let Some(k) = self.intents.get(collection) {
            why.push(format!("{k} uploads began and never got their descriptions (each may have been committed)"));
        }
        Some(format!("collection {collection}: numbering resumes at {next}: {}", why.join("; ")))
    }
}

impl Engine {
    /// Rebuilds the catalog from the store: every version's object has a description next to
    /// it (`<object key>.version.json`, written at commit and at every change of the
    /// version's state), from which its number, filename, size, digest, uploader, times, state
    /// and protection come back. The store's objects are read, never written or deleted.
    ///
    /// Checks, each reported by name and never turned into a guess: an object without a
    /// description is left out; an unreadable, truncated, misplaced or foreign (another
    /// repository's) description is left out, and so is one whose number no catalog can hold
    /// (outside `1..=`[`crate::MAX_VERSION_NUMBER`]); versions claimed by two objects are all
    /// left out; a collection that is not declared and whose descriptions carry a spec this
    /// engine cannot use is left out with its versions; a version whose object is missing or
    /// has another size (or, with [`RebuildOptions::verify_digests`], other bytes) comes back
    /// quarantined, keeping its number.
    ///
    /// No number is given out twice across the loss, even for versions no description shows.
    /// A version committed by a process killed before it wrote its description left the
    /// upload's **intent** where its description goes (written as the upload began, replaced
    /// by the description); a version purged with its object left a **number mark**
    /// (`<prefix>/.numbers/<collection>/<n>`: numbers below `n` were given out), written before
    /// its description was deleted unless a newer version's description stood already. A
    /// collection's numbering resumes at `max(highest number any description holds + 1,
    /// highest mark) + intents`: right after the last version when nothing was lost, with a
    /// gap otherwise, each reported in [`RebuildReport::numbering`]. The objects of intents are
    /// left out and reported (their numbers are not known).
    ///
    /// Build the engine with [`crate::EngineBuilder::adopt_store`] so that it pairs the
    /// rebuilt catalog with the store afterwards. Run it while nothing else uses the
    /// repository.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits, MemoryCatalog, RebuildOptions, VersionSelector};
    /// use bytes::Bytes;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let engine = Engine::builder().store(store.clone()).build()?;
    /// let (me, db) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &db, CollectionSpec::new("db-${version}.sql", Limits::new(3, 100, 300)?)).await?;
    /// for body in ["one", "two"] {
    ///     engine.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))])).await?;
    /// }
    ///
    /// // The catalog is lost: a new one, rebuilt from the store alone.
    /// let rebuilt = Engine::builder().catalog(Arc::new(MemoryCatalog::new())).store(store).adopt_store(true).build()?;
    /// let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await?;
    /// assert_eq!((report.collections, report.versions), (1, 2));
    /// let v2 = rebuilt.version(&me, &db, VersionSelector::Latest).await?;
    /// assert_eq!((v2.number, v2.filename.as_str()), (2, "db-2.sql"));
    /// let v3 = rebuilt.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("3"))])).await?;
    /// assert_eq!(v3.number, 3);
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] for a catalog that is not empty in [`RebuildMode::EmptyCatalog`];
    /// [`Error::InvalidSpec`] for a declared collection whose spec this engine cannot use;
    /// [`Error::RepositoryMismatch`] in [`RebuildMode::AddMissing`]; store and catalog errors
    /// (an empty catalog then stays empty).
    pub async fn rebuild_catalog(&self, options: &RebuildOptions) -> Result<RebuildReport> {
        for (_, spec) in &options.collections {
            self.validate_spec(spec)?;
        }
        let progress = ProgressTracker::new(options.progress.clone(), self.inner.clock.clone());
        let report = match options.mode {
            RebuildMode::EmptyCatalog => self.rebuild_empty(options, &progress).await?,
            RebuildMode::AddMissing => self.add_missing(options, &progress).await?,
        };
        self.set_aside_lost_anchors().await?;
        Ok(report)
    }

    async fn rebuild_empty(&self, options: &RebuildOptions, progress: &ProgressTracker) -> Result<RebuildReport> {
        let catalog = &self.inner.catalog;
        let info = catalog.repository().await?;
        if info.id.is_some() || info.holds_versions || !catalog.list_collections(None, 1).await?.is_empty() {
            return Err(Error::conflict(format!(
                "the catalog {} is not empty: a rebuild fills an empty catalog; to add what a catalog \
                 restored from a snapshot lacks, rebuild in the add-missing mode",
                catalog.location()
            )));
        }
        let repository = self.read_marker().await?;
        let mut scan = self.scan(repository, options.verify_digests, progress).await?;
        let mut report =
            RebuildReport { repository, skipped: std::mem::take(&mut scan.skipped), ..RebuildReport::default() };
        let collections = self.collections_to_create(options, &mut scan, &Default::default(), &mut report);
        report.quarantined =
            scan.quarantined.drain(..).map(|(c, n, reason)| format!("version {n} of {c}: {reason}")).collect();
        let now = self.now();
        let mut records = vec![Ok(CatalogRecord::header(now))];
        if let Some(id) = repository {
            records.push(Ok(CatalogRecord::Repository { id }));
        }
        for (id, spec) in collections {
            let versions = scan.versions.get(&id).map(Vec::as_slice).unwrap_or_default();
            let created = versions.iter().map(|v| v.created_at).min().unwrap_or(now);
            // Descriptions hold numbers in range only: the one after the last fits.
            let after_last = versions.last().map_or(Ok(1), |v| number_after(v.number))?;
            let next_number = after_last.max(scan.resume_at(&id));
            report.numbering.extend(scan.why_resumed(&id, after_last - 1, next_number));
            records.push(Ok(CatalogRecord::Collection { collection: Collection::new(id, spec, created), next_number }));
            report.collections += 1;
        }
        for v in scan.versions.into_values().flatten() {
            report.versions += 1;
            report.bytes += v.size;
            records.push(Ok(CatalogRecord::Version(v)));
        }
        // The new log continues the chain from the last anchor in the store: what the lost
        // catalog recorded up to it stays verifiable against snapshots, what came after is
        // gone with the catalog, and the rebuild says so.
        let anchor = self.latest_audit_anchor().await?;
        let mut detail = format!("{} collections, {} versions from the store", report.collections, report.versions);
        let first = match anchor {
            Some(a) => {
                records.push(Ok(CatalogRecord::AuditCheckpoint(crate::audit::AuditHead { seq: a.seq, hash: a.hash })));
                detail.push_str(&format!(
                    "; the log continues from its anchor of event {} (written at {}); later events were lost with \
                     the catalog",
                    a.seq, a.at
                ));
                a.seq + 1
            }
            None => 1,
        };
        records.push(Ok(CatalogRecord::Audit(
            AuditEvent::new(now, "rebuild", "catalog.rebuild").with_seq(first).with_detail(detail),
        )));
        progress.start("writing the catalog", Some(report.versions), None);
        let written = progress.clone();
        let records = futures::stream::iter(records).inspect(move |r| {
            if let Ok(CatalogRecord::Version(_)) = r {
                written.advance(1, 0);
            }
        });
        catalog.import(records.boxed()).await?;
        progress.finish();
        Ok(report)
    }

    async fn add_missing(&self, options: &RebuildOptions, progress: &ProgressTracker) -> Result<RebuildReport> {
        let repository = self.open_repository().await?;
        let mut scan = self.scan(Some(repository), options.verify_digests, progress).await?;
        let mut report = RebuildReport {
            repository: Some(repository),
            skipped: std::mem::take(&mut scan.skipped),
            ..RebuildReport::default()
        };
        let catalog = &self.inner.catalog;
        let existing: HashSet<CollectionId> = catalog
            .collection_pages(self.inner.config.batch)
            .map_ok(|page| futures::stream::iter(page.into_iter().map(|c| Ok(c.id))))
            .try_flatten()
            .try_collect()
            .await?;
        for (id, spec) in self.collections_to_create(options, &mut scan, &existing, &mut report) {
            if !existing.contains(&id) {
                self.declare_collection(&id, spec, "catalog rebuild").await?;
                report.collections += 1;
            }
        }
        // Reported below for the versions this adds; those the catalog has are the
        // reconciliation's to report.
        let damaged = std::mem::take(&mut scan.quarantined);
        let audit = AuditEvent::new(self.now(), "rebuild", "catalog.rebuild");
        progress.start("reconciling the catalog", None, None);
        self.reconcile(&scan, &mut report, progress).await?;
        progress.finish();
        let numbered: BTreeSet<CollectionId> =
            scan.versions.keys().chain(scan.marks.keys()).chain(scan.intents.keys()).cloned().collect();
        progress.start("adding versions", Some(scan.versions.values().map(|v| v.len() as u64).sum()), None);
        for (id, versions) in std::mem::take(&mut scan.versions) {
            for batch in versions.chunks(ADOPT_BATCH) {
                progress.advance(batch.len() as u64, 0);
                let adopted = catalog.adopt_versions(&id, batch.to_vec(), &audit).await?;
                report.already_present += adopted.present.len() as u64;
                for (number, reason) in adopted.refused {
                    report.skipped.push(format!("version {number} of {id}: {reason}"));
                }
                for v in batch.iter().filter(|v| adopted.inserted.contains(&v.number)) {
                    report.versions += 1;
                    report.bytes += v.size;
                    if let Some((_, _, reason)) = damaged.iter().find(|(c, n, _)| c == &id && *n == v.number) {
                        report.quarantined.push(format!("version {} of {id}: {reason}", v.number));
                    }
                }
            }
        }
        progress.finish();
        // Numbers given out after the snapshot that no version restored holds.
        for id in numbered {
            let next = scan.resume_at(&id);
            let audit = AuditEvent::new(self.now(), "rebuild", "catalog.rebuild").with_collection(&id);
            match catalog.resume_numbering(&id, next, &audit).await {
                Ok(Some(before)) => report.numbering.extend(scan.why_resumed(&id, before - 1, next)),
                Ok(None) => {}
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Brings a catalog restored from a snapshot up to what happened after it, as far as the
    /// store proves it: a committed version whose description says it was deleted later is
    /// trashed; a committed version whose object is gone (purged after the snapshot, or
    /// lost) is quarantined, never silently kept as downloadable; a trashed one whose object
    /// is gone is marked purged, never restorable.
    async fn reconcile(&self, scan: &Scan, report: &mut RebuildReport, progress: &ProgressTracker) -> Result<()> {
        let catalog = &self.inner.catalog;
        let batch = self.inner.config.batch;
        let described: HashMap<_, _> = scan.versions.values().flatten().map(|v| (v.id, v)).collect();
        let mut collections = catalog.collection_pages(batch);
        while let Some(page) = collections.try_next().await? {
            for c in &page {
                let mut versions = catalog.version_pages(&c.id, VersionQuery::first(batch).with_trashed());
                while let Some(versions) = versions.try_next().await? {
                    for v in versions {
                        self.reconcile_version(&v, described.get(&v.id).copied(), scan, report).await?;
                        progress.advance(1, 0);
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Engine::reconcile`] for one version of the catalog, with its description if the
    /// store has one.
    async fn reconcile_version(
        &self,
        v: &Version,
        described: Option<&Version>,
        scan: &Scan,
        report: &mut RebuildReport,
    ) -> Result<()> {
        let catalog = &self.inner.catalog;
        let c = &v.collection;
        let gone = !scan.objects.contains_key(&v.object_key);
        if v.state == VersionState::Trashed {
            // Purged after the snapshot (or lost): it can never be restored.
            if gone {
                catalog.mark_purged(&[v.id], self.now()).await?;
                report.purged += 1;
            }
        } else if let Some(d) = described
            && d.state == VersionState::Trashed
        {
            let reason = d.trash_reason.clone().unwrap_or_else(|| "deleted".to_owned());
            let audit = AuditEvent::new(self.now(), "rebuild", "version.delete")
                .with_collection(c)
                .with_version(v.number)
                .with_detail("deleted after the snapshot, as its description says");
            // No bypass: a description cannot lift a lock; a locked version stays committed.
            match catalog.trash_version(c, v.number, &reason, false, crate::protocol::LockBypass::NONE, &audit).await {
                Ok(_) => report.trashed += 1,
                Err(e) => report.skipped.push(format!("version {} of {c}: not trashed: {e}", v.number)),
            }
        } else if gone && v.quarantined.is_none() {
            let reason =
                format!("its object {} is missing (deleted after the catalog's snapshot, or lost)", v.object_key);
            let audit = AuditEvent::new(self.now(), "rebuild", Action::VerifyVersions.name());
            catalog.record_verification(v, &Verification::Damaged(reason.clone()), &audit).await?;
            report.quarantined.push(format!("version {} of {c}: {reason}", v.number));
        }
        Ok(())
    }

    /// Every collection the rebuild creates or declares, with its spec: declared ones, then
    /// those only descriptions know (and the catalog does not: `existing`). One whose
    /// descriptions carry a spec this engine cannot use is left out with its versions, and
    /// reported: declared, it comes back in a later rebuild.
    fn collections_to_create(
        &self,
        options: &RebuildOptions,
        scan: &mut Scan,
        existing: &HashSet<CollectionId>,
        report: &mut RebuildReport,
    ) -> BTreeMap<CollectionId, CollectionSpec> {
        let mut out: BTreeMap<CollectionId, CollectionSpec> = options.collections.iter().cloned().collect();
        let mut unusable = Vec::new();
        for id in scan.versions.keys() {
            if out.contains_key(id) || existing.contains(id) {
                continue;
            }
            let Some((_, spec)) = scan.specs.get(id) else { continue };
            match self.validate_spec(spec) {
                Ok(()) => {
                    report.collections_from_descriptions.push(id.clone());
                    out.insert(id.clone(), spec.clone());
                }
                Err(e) => unusable.push((id.clone(), e)),
            }
        }
        for (id, e) in unusable {
            let left_out = scan.versions.remove(&id).map_or(0, |v| v.len());
            scan.quarantined.retain(|(c, _, _)| c != &id);
            report.skipped.push(format!(
                "collection {id}: not declared, and the spec of its versions' descriptions cannot be used ({e}); \
                 its {left_out} versions are left out: declare the collection to rebuild them"
            ));
        }
        out
    }

    /// Lists the store, reads every description, and checks each against its object.
    async fn scan(&self, repository: Option<RepositoryId>, verify: bool, progress: &ProgressTracker) -> Result<Scan> {
        let prefix = &self.inner.key_prefix;
        let mut objects: HashMap<String, u64> = HashMap::new();
        let mut descriptions: Vec<(Path, u64)> = Vec::new();
        progress.start("listing the store", None, None);
        let mut listing = self.inner.store.list(Some(prefix));
        while let Some(meta) = listing.try_next().await.map_err(|e| Error::store("list", prefix, e))? {
            progress.advance(1, 0);
            if is_internal_key(prefix, &meta.location) {
                continue;
            }
            if described_object(meta.location.as_ref()).is_some() {
                descriptions.push((meta.location, meta.size));
            } else {
                objects.insert(meta.location.to_string(), meta.size);
            }
        }
        progress.finish();
        let mut scan = Scan::default();
        progress.start("reading descriptions", Some(descriptions.len() as u64), None);
        let read = futures::stream::iter(descriptions)
            .map(|(key, size)| async move {
                let found = self.read_description(&key, size).await;
                progress.advance(1, size);
                (key, found)
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        progress.finish();
        let mut claims: HashMap<(CollectionId, u64), Vec<(Path, Version)>> = HashMap::new();
        let mut described: HashSet<String> = HashSet::new();
        let mut intents: Vec<Intent> = Vec::new();
        for (key, found) in read {
            let d = match found? {
                Ok(Found::Description(d)) => d,
                Ok(Found::Intent(i)) => {
                    if repository.is_none_or(|r| r == i.repository) {
                        intents.push(i);
                    } else {
                        scan.skipped
                            .push(format!("description {key}: written for another repository, {}", i.repository));
                    }
                    continue;
                }
                Err(reason) => {
                    // The object stays unaccounted for: it is reported below as well.
                    scan.skipped.push(format!("description {key}: {reason}"));
                    continue;
                }
            };
            if let Some(r) = repository
                && d.repository != r
            {
                scan.skipped.push(format!("description {key}: written for repository {}, not {r}", d.repository));
                continue;
            }
            described.insert(d.version.object_key.clone());
            // Every number a description holds was given out, restored or not.
            let highest = scan.highest.entry(d.version.collection.clone()).or_insert(0);
            *highest = (*highest).max(d.version.number);
            let entry = scan.specs.entry(d.version.collection.clone()).or_insert((d.described_at, d.spec.clone()));
            if d.described_at > entry.0 {
                *entry = (d.described_at, d.spec.clone());
            }
            claims.entry((d.version.collection.clone(), d.version.number)).or_default().push((key, d.version));
        }
        let (count, bytes) =
            claims.values().filter(|c| c.len() == 1).fold((0, 0), |(n, b), c| (n + 1, b + c[0].1.size));
        progress.start("checking objects", Some(count), verify.then_some(bytes));
        for ((collection, number), mut claimants) in claims {
            if claimants.len() > 1 {
                let keys: Vec<String> = claimants.iter().map(|(k, _)| k.to_string()).collect();
                scan.skipped.push(format!(
                    "version {number} of {collection} is claimed by {} descriptions ({}): none is restored",
                    keys.len(),
                    keys.join(", ")
                ));
                continue;
            }
            let Some((_, mut v)) = claimants.pop() else { continue };
            let checked = self.check_object(&v, objects.get(&v.object_key).copied(), verify, progress).await?;
            progress.advance(1, 0);
            if let Some(reason) = checked {
                scan.quarantined.push((collection.clone(), number, reason.clone()));
                if v.state == VersionState::Committed && v.quarantined.is_none() {
                    v = v.with_verification(Some(self.now()), Some(reason));
                }
            }
            scan.versions.entry(collection).or_default().push(v);
        }
        progress.finish();
        for versions in scan.versions.values_mut() {
            versions.sort_by_key(|v| v.number);
        }
        for i in intents {
            // A version may hold it whose number no description has: counted, and its
            // collection's numbering resumes past it.
            *scan.intents.entry(i.collection.clone()).or_insert(0) += 1;
            if !described.contains(&i.object_key) {
                scan.skipped.push(format!(
                    "object {}: an upload to {} that began and never got its description (its intent stands \
                     there); it may be a version whose number no description holds: left out, and the \
                     numbering resumes past it",
                    i.object_key, i.collection
                ));
                described.insert(i.object_key);
            }
        }
        let mut lone: Vec<&String> = objects.keys().filter(|k| !described.contains(*k)).collect();
        lone.sort();
        for key in lone {
            scan.skipped.push(format!("object {key}: no description says which version it is"));
        }
        let (marks, strange) = self.all_number_marks().await?;
        scan.marks = marks;
        scan.skipped.extend(strange);
        scan.skipped.sort();
        scan.objects = objects;
        Ok(scan)
    }

    /// Reads and checks one description (or an upload's intent): what is wrong with it, or a
    /// store error (which stops the rebuild: a description that could not be read is not a
    /// version to leave out).
    async fn read_description(&self, key: &Path, size: u64) -> Result<std::result::Result<Found, String>> {
        if size > MAX_DESCRIPTION {
            return Ok(Err(format!("{size} bytes is too large for a description")));
        }
        let got = self.inner.store.get(key).await.map_err(|e| Error::store("get", key, e))?;
        let bytes = got.bytes().await.map_err(|e| Error::store("get", key, e))?;
        Ok(Found::parse(key, &bytes))
    }

    /// Why a described version's object cannot be trusted, if it cannot.
    async fn check_object(
        &self,
        v: &Version,
        size: Option<u64>,
        verify: bool,
        progress: &ProgressTracker,
    ) -> Result<Option<String>> {
        let key = Path::from(v.object_key.as_str());
        let Some(size) = size else { return Ok(Some(format!("its object {key} is missing"))) };
        if size != v.size {
            return Ok(Some(format!("its object {key} has {size} bytes, {} were committed", v.size)));
        }
        if !verify {
            return Ok(None);
        }
        // The scrub's verified read (fast on local disk), without a throttle.
        match self.read_back(v, None, progress, &mut ScrubReport::default()).await? {
            Some(Verification::Damaged(reason)) => Ok(Some(reason)),
            Some(Verification::Intact) | None => Ok(None),
        }
    }
}
