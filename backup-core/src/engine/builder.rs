//! [`EngineBuilder`]: assembles an [`Engine`] from its parts.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use tokio_util::task::TaskTracker;

use crate::authz::{AllowAll, Authorizer};
use crate::catalog::Catalog;
use crate::catalog::memory::MemoryCatalog;
use crate::clock::{Clock, SystemClock};
use crate::content_rule::{ContentRule, ContentRules};
use crate::engine::part_writer::Multipart;
use crate::engine::{Engine, EngineConfig, EngineInner};
use crate::error::{Error, Result};
use crate::rotation::{RotationStrategies, RotationStrategy};
use crate::store::UploadLeftovers;

/// Builds an [`Engine`]. Every part has an in-memory or permissive default, so
/// `Engine::builder().build()` works; a real deployment sets at least the catalog and store.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use backup_core::{AllowAll, Engine, MemoryCatalog, SystemClock};
///
/// let engine = Engine::builder()
///     .catalog(Arc::new(MemoryCatalog::new()))
///     .store(Arc::new(object_store::memory::InMemory::new()))
///     .authorizer(Arc::new(AllowAll))
///     .clock(Arc::new(SystemClock))
///     .part_size(8 << 20)
///     .lease(Duration::from_secs(600))
///     .build()?;
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug)]
pub struct EngineBuilder {
    catalog: Option<Arc<dyn Catalog>>,
    store: Option<Arc<dyn ObjectStore>>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    strategies: RotationStrategies,
    content_rules: ContentRules,
    leftovers: Option<Arc<dyn UploadLeftovers>>,
    multipart: Option<Multipart>,
    object_locks: Option<Arc<dyn crate::lock::ObjectLocks>>,
    descriptions: Option<Arc<dyn ObjectStore>>,
    key_prefix: String,
    config: EngineConfig,
    replicas: Vec<crate::replica::Replica>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            catalog: None,
            store: None,
            authorizer: Arc::new(AllowAll),
            clock: Arc::new(SystemClock),
            strategies: RotationStrategies::default(),
            content_rules: ContentRules::default(),
            leftovers: None,
            multipart: None,
            object_locks: None,
            descriptions: None,
            key_prefix: "data".to_owned(),
            config: EngineConfig::default(),
            replicas: Vec::new(),
        }
    }
}

impl EngineBuilder {
    /// A builder with the defaults: in-memory catalog and store, [`AllowAll`], the system
    /// clock, FIFO retention, 8 MiB parts, two parts in flight, a one-minute lease, a day of
    /// trash retention ([`crate::DEFAULT_TRASH_RETENTION`]), a 15-minute grace, no instance
    /// name.
    pub fn new() -> Self {
        Self::default()
    }

    /// The catalog (default: a fresh [`MemoryCatalog`]).
    pub fn catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The blob store (default: a fresh `InMemory`). For a repository on local disk,
    /// `backup_store::local_repository` gives a builder with the store, the catalog and the
    /// rest of the folder's parts already set.
    pub fn store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The authorizer (default: [`AllowAll`]).
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers a rotation strategy collections can name (`fifo`, `fifo-plus-older` and
    /// `gfs` are built in; registering one of these names replaces it).
    pub fn rotation_strategy(mut self, strategy: Arc<dyn RotationStrategy>) -> Self {
        self.strategies.register(strategy);
        self
    }

    /// Registers a content rule collections can name.
    pub fn content_rule(mut self, rule: Arc<dyn ContentRule>) -> Self {
        self.content_rules.register(rule);
        self
    }

    /// The key prefix under which the engine writes (default `data`), with its repository
    /// marker; `recover()` looks for garbage only there. Two engines sharing a store and a
    /// catalog use the same prefix; two repositories sharing a bucket use two prefixes.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The size of multipart parts (default 8 MiB). S3 requires at least 5 MiB; memory per
    /// upload is about `part_size × (parts_in_flight + 1)`.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.config.part_size = bytes;
        self
    }

    /// How many parts are written concurrently per upload (default 2).
    pub fn parts_in_flight(mut self, n: usize) -> Self {
        self.config.parts_in_flight = n;
        self
    }

    /// How long an upload holds its reservation without renewing it (default one minute).
    ///
    /// The engine renews it every third of its length for as long as the upload lives
    /// (its future is not dropped), whether bytes flow or not: a paused producer keeps its
    /// reservation while its connection is open. When the process dies, the reservation is
    /// freed within one lease. A lease that expired anyway (the process stalled, the catalog
    /// was unreachable for a whole lease) is never revived: the upload fails clearly and
    /// nothing is committed by chance. That is judged on the monotonic clock: a step of the
    /// wall clock (an NTP correction) is not a stall, the lease is renewed within a second
    /// of it, and a lease that ran out by the wall clock is renewed if its room is still free
    /// (if another upload took it meanwhile, the upload fails with the reason).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How many uploads may be in progress in one collection at once (default 8): more are
    /// refused with [`crate::Error::TooManyUploads`] before any byte is stored, across every
    /// instance sharing the catalog.
    pub fn max_uploads_per_collection(mut self, n: u32) -> Self {
        self.config.max_uploads_per_collection = n.max(1);
        self
    }

    /// How long trashed versions (deleted, or rotated out) keep their objects and can be
    /// restored before they are purged (default: [`crate::DEFAULT_TRASH_RETENTION`], a day).
    /// Zero purges them right after the commit or deletion that trashed them. Trashed
    /// versions do not count against the collection's limits; their bytes stay on the store
    /// until they are purged.
    pub fn trash_retention(mut self, retention: Duration) -> Self {
        self.config.trash_retention = retention;
        self
    }

    /// Whether the audit log records the frequent events too (default: yes): each commit
    /// (`version.commit`), each version the rotation evicts (`version.evict`), and what the
    /// host records per request ([`Engine::record_audit`]: downloads, refused uploads).
    /// Changes made by hand (deletions, locks, holds) are recorded either way.
    pub fn event_log(mut self, on: bool) -> Self {
        self.config.event_log = on;
        self
    }

    /// How long the audit log keeps events (default: forever); [`Engine::prune_audit`]
    /// applies it.
    pub fn audit_retention(mut self, retention: crate::audit::AuditRetention) -> Self {
        self.config.audit_retention = retention;
        self
    }

    /// How old an object must be before `recover()` judges it from a listing, and how long
    /// a tombstone is kept after its object was deleted (default 15 minutes): margins for
    /// clock differences between machines and late writes of abandoned uploads.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// Removes what the store keeps of uploads that never completed, found by key (a local
    /// disk's staging files), when `recover()` deletes their objects; see [`UploadLeftovers`].
    /// (Open multipart uploads of object stores: [`EngineBuilder::multipart_store`].)
    /// `backup_store::local_disk::StagingFiles` does it for a local-disk store.
    pub fn upload_leftovers(mut self, leftovers: Arc<dyn UploadLeftovers>) -> Self {
        self.leftovers = Some(leftovers);
        self
    }

    /// Makes the store enforce version locks itself ([`crate::ObjectLocks`]: S3 Object Lock
    /// retention, read-only files), so that they hold against the store's own credentials.
    /// `backup_store::open_store` gives one for a URL that asks for it.
    pub fn object_locks(mut self, locks: Arc<dyn crate::lock::ObjectLocks>) -> Self {
        self.object_locks = Some(locks);
        self
    }

    /// Writes uploads through `multipart`, the same store as [`EngineBuilder::store`] seen
    /// as a [`MultipartStore`] (S3, GCS, Azure), and records each upload's multipart id in
    /// the catalog: when an upload is released (failed, or abandoned by a killed process),
    /// `recover()` aborts its multipart upload by that id, so no parts stay in the bucket.
    /// (`backup_store::open_store` gives both for a URL.)
    pub fn multipart_store(mut self, multipart: Arc<dyn MultipartStore>) -> Self {
        self.multipart = Some(Multipart(multipart));
        self
    }

    /// Writes versions' descriptions (see [`Engine::rebuild_catalog`]) through `store`: the
    /// same keys as [`EngineBuilder::store`], with weaker durability, e.g. the same folder
    /// without fsync (`backup_store::open_store` gives it for `file://`). A description is a
    /// copy of what the catalog holds, and a scrub writes one that a power cut lost, so it
    /// need not cost two more syncs per upload. Default: the store.
    pub fn description_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.descriptions = Some(store);
        self
    }

    /// Names this engine instance (a host and port, say): its uploads are recorded as its
    /// own, and `recover()` releases those a previous run of the same instance left, at once,
    /// instead of waiting for their leases. Two live instances must never share a name
    /// (the second would release the first one's uploads, which then fail).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = Some(name.into());
        self
    }

    /// Pairs the catalog with a store that already belongs to a repository, in the cases
    /// [`Engine::open_repository`] otherwise refuses and a restored or rebuilt catalog needs:
    /// the catalog has no id and takes the store's, or the store has no marker and gets the
    /// catalog's. A catalog and a store with different ids are never paired.
    pub fn adopt_store(mut self, adopt: bool) -> Self {
        self.config.adopt_store = adopt;
        self
    }

    /// Adds a replica: another store that receives a copy of every committed version (see
    /// [`crate::replica`]). Replicas need the event log (their queue).
    pub fn replica(mut self, replica: crate::replica::Replica) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a zero part size or concurrency, a lease under one
    /// second, an invalid key prefix, two replicas of one name, or replicas without the event
    /// log.
    pub fn build(self) -> Result<Engine> {
        let c = &self.config;
        crate::replica::check_replicas(&self.replicas, c.event_log)?;
        if c.part_size == 0 || c.part_size > 5 << 30 {
            return Err(Error::invalid("part size", "must be between 1 byte and 5 GiB"));
        }
        if c.parts_in_flight == 0 {
            return Err(Error::invalid("parts in flight", "must be at least 1"));
        }
        if c.lease < Duration::from_secs(1) {
            return Err(Error::invalid("lease", "must be at least one second"));
        }
        chrono::Duration::from_std(c.lease)
            .and(chrono::Duration::from_std(c.trash_retention))
            .and(chrono::Duration::from_std(c.grace))
            .map_err(|_| Error::invalid("durations", "lease, trash retention and grace must be under 200 years"))?;
        if c.instance.as_deref().is_some_and(|i| i.is_empty() || i.len() > 200) {
            return Err(Error::invalid("instance name", "must have 1 to 200 bytes"));
        }
        let key_prefix = Path::parse(&self.key_prefix).map_err(|e| Error::invalid("key prefix", e.to_string()))?;
        if key_prefix.as_ref().is_empty() {
            return Err(Error::invalid("key prefix", "must not be empty: the engine owns what is under it"));
        }
        let started_at = crate::Timestamp::from(self.clock.now());
        let store: Arc<dyn ObjectStore> = self.store.unwrap_or_else(|| Arc::new(InMemory::new()));
        let strategies = Arc::new(self.strategies);
        Ok(Engine {
            inner: Arc::new(EngineInner {
                catalog: self.catalog.unwrap_or_else(|| Arc::new(MemoryCatalog::new())),
                descriptions: self.descriptions.unwrap_or_else(|| store.clone()),
                store,
                authorizer: self.authorizer,
                clock: self.clock,
                spec_rules: crate::protocol::SpecRules::new(strategies.clone(), self.content_rules.clone()),
                strategies,
                content_rules: self.content_rules,
                leftovers: self.leftovers,
                multipart: self.multipart,
                object_locks: self.object_locks,
                key_prefix,
                config: self.config,
                repository: tokio::sync::OnceCell::new(),
                started_at,
                tasks: TaskTracker::new(),
                file_reads: Arc::new(tokio::sync::Semaphore::new(concurrent_file_reads())),
                replicas: std::sync::RwLock::new(Arc::new(self.replicas)),
            }),
        })
    }
}

/// Two blocks per CPU read at once: enough to keep a disk busy, few threads.
fn concurrent_file_reads() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_settings() {
        for b in [
            EngineBuilder::new().part_size(0),
            EngineBuilder::new().parts_in_flight(0),
            EngineBuilder::new().lease(Duration::from_millis(10)),
            EngineBuilder::new().key_prefix(""),
            EngineBuilder::new().key_prefix("a//b"),
            EngineBuilder::new().trash_retention(Duration::from_secs(u64::MAX)),
        ] {
            let e = b.build().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{e}");
        }
    }
}
