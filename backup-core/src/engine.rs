//! The [`Engine`]: collections, the crash-safe upload protocol, verified downloads, recovery.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::OnceCell;
use tokio_util::task::TaskTracker;

use crate::audit::AuditEvent;
use crate::authz::{Action, Actor, Authorizer, AuthzRequest, Permit};
use crate::catalog::{Catalog, CatalogExt, VersionQuery};
use crate::clock::Clock;
use crate::content_rule::ContentRules;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CollectionId, RepositoryId};
use crate::protocol::{self, CollectionChange};
use crate::rotation::RotationStrategies;
use crate::spec::CollectionSpec;
use crate::time::Timestamp;
use crate::version::{Collection, Version, VersionSelector};

mod audit;
mod builder;
mod describe;
pub(crate) mod detect;
mod download;
mod health;
mod import;
mod last_write;
mod lease;
mod numbers;
mod part_writer;
mod rebuild;
mod recover;
mod replicate;
mod repository;
mod scrub;
mod upload;

pub use builder::EngineBuilder;
pub use download::Download;
pub use import::{ImportOutcome, ImportedVersion};
pub use rebuild::{RebuildMode, RebuildOptions, RebuildReport};
pub use recover::RecoveryReport;
pub use scrub::{ScrubOptions, ScrubReport, ScrubSample, VersionCheck};
pub use upload::{
    IDEMPOTENCY_KEY, IDEMPOTENCY_WINDOW, MAX_IDEMPOTENCY_KEY_LEN, StagedUpload, UploadOptions, check_idempotency_key,
};

/// The backup engine: a cheap-to-clone handle on a catalog, a blob store, an authorizer and a
/// clock.
///
/// Every operation takes the [`Actor`] it acts for and asks the [`Authorizer`] first. The
/// engine runs on a Tokio runtime (multipart parts are written by spawned tasks). Before it
/// touches anything, it checks once that the catalog and the store belong to the same
/// repository ([`Engine::open_repository`]).
///
/// ```
/// use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionSelector};
/// use bytes::Bytes;
/// use futures::{TryStreamExt, stream};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let engine = Engine::in_memory();
/// let alice = Actor::user("alice");
/// let id = "db".parse()?;
/// engine.create_collection(&alice, &id, CollectionSpec::new("db-${version}.sql", Limits::new(3, 1 << 20, 4 << 20)?)).await?;
///
/// let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from("CREATE TABLE t ();"))]);
/// let v1 = engine.upload(&alice, &id, body).await?;
/// assert_eq!((v1.number, v1.filename.as_str(), v1.size), (1, "db-1.sql", 18));
///
/// let download = engine.download(&alice, &id, VersionSelector::Latest).await?;
/// let bytes: Vec<Bytes> = download.into_stream().try_collect().await?;
/// assert_eq!(bytes.concat(), b"CREATE TABLE t ();");
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

#[derive(Debug)]
struct EngineInner {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    /// Where descriptions are written: the store, or the same keys with weaker durability.
    descriptions: Arc<dyn ObjectStore>,
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    strategies: Arc<RotationStrategies>,
    content_rules: ContentRules,
    /// What a spec must satisfy here (the two registries above), for the catalog's decisions.
    spec_rules: protocol::SpecRules,
    /// Removes staging leftovers of released uploads, if the store has any.
    leftovers: Option<Arc<dyn crate::store::UploadLeftovers>>,
    /// The store's own enforcement of version locks, if it has one.
    object_locks: Option<Arc<dyn crate::lock::ObjectLocks>>,
    /// Writes uploads with multipart ids the catalog records, when the store has them.
    multipart: Option<part_writer::Multipart>,
    key_prefix: Path,
    config: EngineConfig,
    /// The repository id, once checked.
    repository: OnceCell<RepositoryId>,
    /// When this engine was built: pending uploads of its instance older than this belong to
    /// a previous run.
    started_at: Timestamp,
    /// Clean-ups spawned when an upload future is dropped mid-way.
    tasks: TaskTracker,
    /// Blocks of local files being read for downloads at once (each on a blocking thread).
    file_reads: Arc<tokio::sync::Semaphore>,
    /// The replicas, replaced as a whole when the host's configuration changes.
    replicas: std::sync::RwLock<Arc<Vec<crate::replica::Replica>>>,
}

#[derive(Debug, Clone)]
struct EngineConfig {
    part_size: usize,
    parts_in_flight: usize,
    lease: Duration,
    trash_retention: Duration,
    grace: Duration,
    batch: usize,
    instance: Option<String>,
    adopt_store: bool,
    max_uploads_per_collection: u32,
    event_log: bool,
    audit_retention: crate::audit::AuditRetention,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            part_size: 8 << 20,
            parts_in_flight: 2,
            lease: Duration::from_secs(60),
            trash_retention: DEFAULT_TRASH_RETENTION,
            grace: Duration::from_secs(900),
            batch: 500,
            instance: None,
            adopt_store: false,
            max_uploads_per_collection: 8,
            event_log: true,
            audit_retention: crate::audit::AuditRetention::forever(),
        }
    }
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T, C> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

/// How full a collection is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Committed versions.
    pub versions: u64,
    /// Σ committed sizes, in bytes.
    pub committed_bytes: u64,
    /// Committed versions that are held, protected or locked.
    pub protected_versions: u64,
    /// Uploads in flight (live leases).
    pub uploads_in_flight: u64,
    /// The largest upload that would be allowed now, in bytes.
    pub allowed_next_upload: u64,
    /// The latest committed version, if any.
    pub latest: Option<Version>,
    /// Committed versions in quarantine.
    pub quarantined_versions: u64,
    /// The collection's health, as [`Engine::health`] tells it.
    pub health: crate::health::Health,
}

/// How long a deleted or rotated-out version stays restorable unless the builder says
/// otherwise ([`EngineBuilder::trash_retention`]): a day, long enough to undo a mistake
/// noticed the next morning.
pub const DEFAULT_TRASH_RETENTION: Duration = Duration::from_secs(24 * 3600);

fn chrono_duration(d: Duration) -> chrono::Duration {
    // Bounded when the engine is built.
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// An engine on an in-memory catalog and store that allows everything: one line for tests
    /// and examples.
    pub fn in_memory() -> Engine {
        EngineBuilder::new().build().expect("the defaults are valid")
    }

    /// The catalog, **for tests only** (feature `testing`): a test inspects what the engine
    /// wrote. Everything a host needs goes through the engine's methods, which keep the
    /// protocol's rules (authorization, spec validation, the repository identity, the audit
    /// log); a program that holds the catalog it built the engine with can still use it.
    #[cfg(feature = "testing")]
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.inner.catalog
    }

    /// A consistent snapshot of the whole catalog as records (collections, versions,
    /// sessions, audit events, tombstones), streamed: what catalog snapshots and exports
    /// write (`backup_store::snapshot`).
    ///
    /// # Errors
    /// The catalog's.
    pub async fn export_catalog(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, Result<crate::catalog::CatalogRecord>>> {
        self.inner.catalog.export().await
    }

    /// Loads records (a snapshot, an export) into the engine's catalog, which must be empty;
    /// all or nothing. Pair it with the store afterwards ([`EngineBuilder::adopt_store`]) or
    /// rebuild on top of it ([`Engine::rebuild_catalog`]).
    ///
    /// # Errors
    /// [`Error::Conflict`] when the catalog is not empty; [`Error::InvalidInput`] for records
    /// that do not fit together; the catalog's.
    pub async fn import_catalog(
        &self,
        records: futures::stream::BoxStream<'static, Result<crate::catalog::CatalogRecord>>,
    ) -> Result<crate::catalog::ImportSummary> {
        self.inner.catalog.import(records).await
    }

    /// The blob store. Writing under [`Engine::key_prefix`] directly creates objects the
    /// catalog does not know: `recover()` reports them and never deletes them.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The prefix of every object key the engine writes.
    pub fn key_prefix(&self) -> &Path {
        &self.inner.key_prefix
    }

    /// The registered retention strategies.
    pub fn strategies(&self) -> &Arc<RotationStrategies> {
        &self.inner.strategies
    }

    /// The clock's time, at the precision every catalog stores.
    fn now(&self) -> Timestamp {
        Timestamp::from(self.inner.clock.now())
    }

    async fn authorize(&self, actor: &Actor, action: Action, collection: Option<&Collection>) -> Result<Permit> {
        let request = AuthzRequest::new(actor, action, collection, self.now().to_datetime());
        self.inner.authorizer.authorize(&request).await
    }

    /// Reads a collection and authorizes `action` on it.
    async fn authorized_collection(
        &self,
        actor: &Actor,
        id: &CollectionId,
        action: Action,
    ) -> Result<(Collection, Permit)> {
        let collection = self.inner.catalog.get_collection(id).await?;
        let permit = self.authorize(actor, action, Some(&collection)).await?;
        Ok((collection, permit))
    }

    /// Whether `actor` may do `action` on the collection, without doing it: for a front end
    /// that should refuse before it reads a request's body (a form's preamble, a file).
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn check_access(&self, actor: &Actor, id: &CollectionId, action: Action) -> Result<()> {
        self.authorized_collection(actor, id, action).await.map(|_| ())
    }

    /// Whether `actor` may do `action` on `collection`, one the caller has read already (with
    /// [`Engine::collection`]): the authorizer's decision without another catalog read, for a
    /// page that shows only the actions its user may take. The action itself decides again.
    ///
    /// # Errors
    /// The authorizer's denial.
    pub async fn allows(&self, actor: &Actor, collection: &Collection, action: Action) -> Result<()> {
        self.authorize(actor, action, Some(collection)).await.map(|_| ())
    }

    /// Checks a spec against the validation rules and the engine's registries.
    fn validate_spec(&self, spec: &CollectionSpec) -> Result<()> {
        self.inner.spec_rules.validate(spec)
    }

    fn audit(&self, actor: &Actor, action: Action, collection: &CollectionId) -> AuditEvent {
        AuditEvent::new(self.now(), actor.user.clone(), action.name()).with_collection(collection)
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for a spec that breaks a rule (negative extra space, a template
    /// without `${version}`, an unknown strategy or content rule);
    /// [`Error::CollectionExists`]; the authorizer's denial; [`Error::RepositoryMismatch`].
    pub async fn create_collection(
        &self,
        actor: &Actor,
        id: &CollectionId,
        spec: CollectionSpec,
    ) -> Result<Collection> {
        self.open_repository().await?;
        self.authorize(actor, Action::CreateCollection, None).await?;
        self.validate_spec(&spec)?;
        let collection = Collection::new(id.clone(), spec, self.now());
        let audit = self.audit(actor, Action::CreateCollection, id);
        self.inner.catalog.create_collection(&collection, &self.inner.spec_rules, &audit).await
    }

    /// Declares a collection from configuration (a manifest, a program's own setup): created
    /// if missing, its spec replaced if it differs, left alone if it is the same. The spec is
    /// validated like at creation and the change audited with `origin` (a file name, say) as
    /// its detail, under the actor `configuration`. No authorizer is asked: configuration is
    /// the program speaking, not a user.
    ///
    /// ```
    /// use backup_core::{CollectionSpec, Engine, Limits};
    /// use backup_core::catalog::protocol::CollectionChange;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let spec = CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?);
    /// let id = "db".parse()?;
    /// assert!(matches!(engine.declare_collection(&id, spec.clone(), "setup.rs").await?, CollectionChange::Created(_)));
    /// assert!(matches!(engine.declare_collection(&id, spec, "setup.rs").await?, CollectionChange::Unchanged(_)));
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSpec`]; [`Error::RepositoryMismatch`]; catalog errors.
    pub async fn declare_collection(
        &self,
        id: &CollectionId,
        spec: CollectionSpec,
        origin: &str,
    ) -> Result<CollectionChange> {
        self.open_repository().await?;
        self.validate_spec(&spec)?;
        let audit = AuditEvent::new(self.now(), "configuration", "collection.declare")
            .with_collection(id)
            .with_detail(origin.to_owned());
        // Configuration speaks for the operator: a governance policy may be weakened (audited
        // as a bypass), a compliance one never.
        let bypass = protocol::LockBypass::GOVERNANCE;
        self.inner.catalog.update_collection(id, &spec, None, true, &self.inner.spec_rules, bypass, &audit).await
    }

    /// Whether [`Engine::declare_collection`] would accept `spec` for `id` now, without
    /// changing anything: for a configuration reload that applies all of its collections or
    /// none (a change that weakens a compliance lock policy is refused, say).
    ///
    /// # Errors
    /// [`Error::InvalidSpec`]; [`Error::Locked`] for a change that weakens a compliance lock
    /// policy; catalog errors.
    pub async fn check_declaration(&self, id: &CollectionId, spec: &CollectionSpec) -> Result<()> {
        self.validate_spec(spec)?;
        match self.inner.catalog.collection_state(id).await {
            Ok(state) => {
                protocol::lock_policy_weakened(id, &state.collection.spec, spec, protocol::LockBypass::GOVERNANCE)
                    .map(|_| ())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// What `bypass` allows `actor` on `collection`: governance locks give way only when the
    /// caller asks and the authorizer allows [`Action::BypassGovernance`].
    async fn lock_bypass(
        &self,
        actor: &Actor,
        collection: &Collection,
        bypass: protocol::LockBypass,
    ) -> Result<protocol::LockBypass> {
        if !bypass.allows_governance() {
            return Ok(protocol::LockBypass::NONE);
        }
        self.authorize(actor, Action::BypassGovernance, Some(collection)).await?;
        Ok(protocol::LockBypass::GOVERNANCE)
    }

    /// Reads a collection.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn collection(&self, actor: &Actor, id: &CollectionId) -> Result<Collection> {
        Ok(self.authorized_collection(actor, id, Action::ReadCollection).await?.0)
    }

    /// Lists the collections the actor may read, ordered by id, after `after`.
    ///
    /// # Errors
    /// Catalog errors; denials other than permission (an unauthenticated actor) are returned.
    pub async fn list_collections(
        &self,
        actor: &Actor,
        after: Option<&CollectionId>,
        limit: usize,
    ) -> Result<Page<Collection, CollectionId>> {
        let limit = limit.clamp(1, 1000);
        let mut items = Vec::new();
        let mut cursor = after.cloned();
        loop {
            let batch = self.inner.catalog.list_collections(cursor.as_ref(), limit).await?;
            let exhausted = batch.len() < limit;
            for c in batch {
                cursor = Some(c.id.clone());
                match self.authorize(actor, Action::ListCollections, Some(&c)).await {
                    Ok(_) => items.push(c),
                    Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::OutsideWindow) => {}
                    Err(e) => return Err(e),
                }
                if items.len() == limit {
                    return Ok(Page { items, next: cursor });
                }
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
        }
    }

    /// Replaces a collection's spec (validated like at creation). Versions already committed
    /// stay; the new limits apply from the next upload on.
    ///
    /// # Errors
    /// As [`Engine::create_collection`]; [`Error::Conflict`] if the collection changed
    /// concurrently.
    pub async fn update_collection(
        &self,
        actor: &Actor,
        id: &CollectionId,
        spec: CollectionSpec,
    ) -> Result<Collection> {
        self.update_collection_with(actor, id, spec, protocol::LockBypass::NONE).await
    }

    /// [`Engine::update_collection`], asking with `bypass` to weaken a governance lock policy
    /// (a shorter retention, governance kept): allowed when the authorizer grants
    /// [`Action::BypassGovernance`], and audited (`lock.bypass`). A compliance policy never
    /// weakens.
    ///
    /// # Errors
    /// As [`Engine::update_collection`]; [`Error::Locked`] for a change that weakens a lock
    /// policy without the bypass; the authorizer's denial of the bypass.
    pub async fn update_collection_with(
        &self,
        actor: &Actor,
        id: &CollectionId,
        spec: CollectionSpec,
        bypass: protocol::LockBypass,
    ) -> Result<Collection> {
        self.open_repository().await?;
        let (current, _) = self.authorized_collection(actor, id, Action::UpdateCollection).await?;
        self.validate_spec(&spec)?;
        let bypass = self.lock_bypass(actor, &current, bypass).await?;
        let audit = self.audit(actor, Action::UpdateCollection, id);
        let change = self
            .inner
            .catalog
            .update_collection(id, &spec, Some(current.revision), false, &self.inner.spec_rules, bypass, &audit)
            .await?;
        Ok(change.collection().clone())
    }

    /// Deletes a collection that has no committed version and no upload in flight. The check
    /// comes first: a refused call changes nothing. Then the objects of its trashed versions
    /// are deleted (what fails is deleted by `recover()`).
    ///
    /// # Errors
    /// [`Error::Conflict`] if it still has versions; [`Error::CollectionNotFound`]; the
    /// authorizer's denial.
    pub async fn delete_collection(&self, actor: &Actor, id: &CollectionId) -> Result<()> {
        self.open_repository().await?;
        self.authorized_collection(actor, id, Action::DeleteCollection).await?;
        let audit = self.audit(actor, Action::DeleteCollection, id);
        self.inner.catalog.delete_collection(id, &audit).await?;
        // Best effort: the tombstones stay until recover() confirms the objects gone. Its
        // numbers go with it (one created again under the id starts at 1).
        self.forget_number_marks(id).await;
        let mut after: Option<String> = None;
        loop {
            let batch = self.inner.catalog.list_tombstones(Some(id), after.as_deref(), self.inner.config.batch).await?;
            for t in &batch {
                let _ = self.delete_object(&t.object_key).await;
            }
            match batch.last() {
                Some(last) if batch.len() == self.inner.config.batch => after = Some(last.object_key.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// How full a collection is, the largest upload allowed now, and its health (the checks
    /// of [`Engine::health`]).
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn usage(&self, actor: &Actor, id: &CollectionId) -> Result<Usage> {
        self.authorized_collection(actor, id, Action::ReadCollection).await?;
        let needs = protocol::retention_needs(self.inner.strategies.clone());
        let state = self.inner.catalog.collection_state_with(id, needs).await?;
        let now = self.now();
        let allowed_next_upload = protocol::allowance_now(&state, &self.inner.strategies, now)?;
        let latest = match state.counters.versions {
            0 => None,
            _ => Some(self.inner.catalog.get_version(id, VersionSelector::Latest).await?),
        };
        let health = self.health_checks(&state.collection, &state.counters, latest.as_ref(), None).await?;
        Ok(Usage {
            versions: state.counters.versions,
            committed_bytes: state.counters.bytes,
            protected_versions: state.counters.protected,
            uploads_in_flight: state.live_pending(now).count() as u64,
            allowed_next_upload,
            latest,
            quarantined_versions: state.counters.quarantined,
            health,
        })
    }

    /// Lists a collection's versions, ascending by number, a page at a time.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn versions(&self, actor: &Actor, id: &CollectionId, query: VersionQuery) -> Result<Page<Version, u64>> {
        self.authorized_collection(actor, id, Action::ListVersions).await?;
        let query = VersionQuery { limit: query.limit.clamp(1, 1000), ..query };
        let items = self.inner.catalog.list_versions(id, &query).await?;
        let next = if items.len() == query.limit { items.last().map(|v| v.number) } else { None };
        Ok(Page { items, next })
    }

    /// One committed version's record.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`], [`Error::VersionNotFound`]; the authorizer's denial.
    pub async fn version(&self, actor: &Actor, id: &CollectionId, selector: VersionSelector) -> Result<Version> {
        self.authorized_collection(actor, id, Action::ListVersions).await?;
        self.inner.catalog.get_version(id, selector).await
    }

    /// Deletes a version: it leaves the collection at once (invisible to listings and
    /// downloads) and its object is deleted after that, or after the trash retention.
    ///
    /// # Errors
    /// [`Error::VersionNotFound`] if no committed version has that number;
    /// [`Error::Locked`] if a retention lock holds it; [`Error::VersionProtected`] if it is
    /// held or protected; [`Error::CollectionNotFound`]; the authorizer's denial. A failure to
    /// delete the object after the version left is not an error: `recover()` deletes it.
    pub async fn delete_version(&self, actor: &Actor, id: &CollectionId, number: u64) -> Result<Version> {
        self.delete_version_with(actor, id, number, protocol::LockBypass::NONE).await
    }

    /// [`Engine::delete_version`], asking with `bypass` to lift a governance lock: allowed
    /// when the authorizer grants [`Action::BypassGovernance`], and audited (`lock.bypass`).
    /// A compliance lock never gives way.
    ///
    /// # Errors
    /// As [`Engine::delete_version`]; the authorizer's denial of the bypass.
    pub async fn delete_version_with(
        &self,
        actor: &Actor,
        id: &CollectionId,
        number: u64,
        bypass: protocol::LockBypass,
    ) -> Result<Version> {
        self.open_repository().await?;
        let (collection, _) = self.authorized_collection(actor, id, Action::DeleteVersion).await?;
        let bypass = self.lock_bypass(actor, &collection, bypass).await?;
        let audit = self.audit(actor, Action::DeleteVersion, id).with_version(number);
        let purge = self.inner.config.trash_retention.is_zero();
        let reason = format!("deleted by {}", actor.user);
        let gone = self.inner.catalog.trash_version(id, number, &reason, purge, bypass, &audit).await?;
        if purge {
            // Best effort: the tombstone stays, so recover() finishes this if it fails now. The
            // number mark first: its description may be the only one that holds this number.
            if self.mark_numbers_of(&[&gone]).await.0.is_empty() {
                let _ = self.delete_object(&gone.object_key).await;
            }
        } else {
            self.describe(&gone, &collection.spec).await;
        }
        Ok(gone)
    }

    /// Puts a hold on a committed version, protects it until a time, or lifts either: a
    /// protected version is kept by every retention strategy and cannot be deleted, and
    /// counts against the quota like any other (an upload that cannot fit because protected
    /// versions take the room is refused, saying so). Holds are capped per collection
    /// ([`CollectionSpec::held_cap`]).
    ///
    /// ```
    /// use backup_core::ProtectionChange;
    /// use backup_core::{Actor, CollectionSpec, Engine, ErrorKind, Limits};
    /// use bytes::Bytes;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
    /// let body = || futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))]);
    /// engine.upload(&me, &id, body()).await?;
    /// let v = engine.protect_version(&me, &id, 1, ProtectionChange::hold()).await?;
    /// assert!(v.held);
    /// assert_eq!(engine.delete_version(&me, &id, 1).await.unwrap_err().kind(), ErrorKind::Conflict);
    /// for _ in 0..3 { engine.upload(&me, &id, body()).await?; } // FIFO skips the held version
    /// assert!(engine.version(&me, &id, backup_core::VersionSelector::Number(1)).await.is_ok());
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::VersionNotFound`]; [`Error::Conflict`] at the cap of holds;
    /// [`Error::InvalidInput`] for a deadline in the past; the authorizer's denial (it takes
    /// [`Action::ProtectVersion`], a role that manages the collection).
    pub async fn protect_version(
        &self,
        actor: &Actor,
        id: &CollectionId,
        number: u64,
        change: protocol::ProtectionChange,
    ) -> Result<Version> {
        self.open_repository().await?;
        let (collection, _) = self.authorized_collection(actor, id, Action::ProtectVersion).await?;
        let audit = self.audit(actor, Action::ProtectVersion, id).with_version(number);
        let protected = self.inner.catalog.protect_version(id, number, change, &audit).await?;
        self.describe(&protected, &collection.spec).await;
        Ok(protected)
    }

    /// Lengthens a committed version's retention lock to end at `until` (or locks a version
    /// committed without one), in `mode` or, without one, the mode its lock has, else its
    /// collection's policy's, else governance. A lock never shortens, and its mode never
    /// weakens (`mode` may make a governance lock compliance). With an
    /// [`crate::ObjectLocks`], the store's retention of its object and description is
    /// lengthened too.
    ///
    /// ```
    /// use backup_core::{Actor, CollectionSpec, Engine, ErrorKind, Limits, LockMode, LockPolicy, Timestamp};
    /// use chrono::{Duration, Utc};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// let spec = CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)
    ///     .with_lock(LockPolicy::new(LockMode::Compliance, Duration::days(7)));
    /// engine.create_collection(&me, &id, spec).await?;
    /// engine.upload(&me, &id, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("x"))])).await?;
    /// assert_eq!(engine.delete_version(&me, &id, 1).await.unwrap_err().kind(), ErrorKind::Conflict);
    /// let until = Timestamp::from(Utc::now() + Duration::days(30));
    /// let v = engine.lock_version(&me, &id, 1, None, until).await?;
    /// assert_eq!(v.lock.map(|l| (l.mode, l.until)), Some((LockMode::Compliance, until)));
    /// let shorter = Timestamp::from(Utc::now() + Duration::days(1));
    /// assert!(engine.lock_version(&me, &id, 1, None, shorter).await.is_err());
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::VersionNotFound`]; [`Error::InvalidInput`] for an end in the past, or one that
    /// would shorten or weaken the lock; the authorizer's denial ([`Action::LockVersion`]).
    pub async fn lock_version(
        &self,
        actor: &Actor,
        id: &CollectionId,
        number: u64,
        mode: Option<crate::LockMode>,
        until: crate::Timestamp,
    ) -> Result<Version> {
        self.open_repository().await?;
        let (collection, _) = self.authorized_collection(actor, id, Action::LockVersion).await?;
        let audit = self.audit(actor, Action::LockVersion, id).with_version(number);
        let locked = self.inner.catalog.lock_version(id, number, until, mode, &audit).await?;
        self.describe(&locked, &collection.spec).await;
        Ok(locked)
    }

    /// The store's own enforcement of locks, if the engine has one.
    pub fn object_locks(&self) -> Option<&Arc<dyn crate::ObjectLocks>> {
        self.inner.object_locks.as_ref()
    }

    /// What the retention policy says of the collection as it is now, and why: a decision for
    /// every committed version (keep or evict, with its reasons), computed by the same function
    /// the maintenance runs. A version marked evicted here (a `keepWithin` that it outlived, a
    /// protection that ended) goes at the next maintenance run or commit.
    /// [`Engine::retention_preview`] tells what the next commit would do instead.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits};
    /// use backup_core::rotation::Mark;
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(2, 100, 200)?)).await?;
    /// for body in ["one", "two"] {
    ///     engine.upload(&me, &id, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(body))])).await?;
    /// }
    /// // Now: both fit. At the next commit: the oldest makes room.
    /// let now = engine.retention_status(&me, &id).await?;
    /// assert!(now.iter().all(|d| d.mark == Mark::Keep));
    /// let next = engine.retention_preview(&me, &id).await?;
    /// assert_eq!(next.iter().filter(|d| d.mark == Mark::Evict).count(), 1);
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn retention_status(
        &self,
        actor: &Actor,
        id: &CollectionId,
    ) -> Result<Vec<crate::rotation::RotationDecision>> {
        self.retention_plan(actor, id, false).await
    }

    /// What the retention would do at the next commit, and why: a decision for every
    /// committed version (keep or evict, with its reasons), computed by the same function the
    /// commit runs. [`Engine::retention_status`] tells what it says of the collection now.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn retention_preview(
        &self,
        actor: &Actor,
        id: &CollectionId,
    ) -> Result<Vec<crate::rotation::RotationDecision>> {
        self.retention_plan(actor, id, true).await
    }

    async fn retention_plan(
        &self,
        actor: &Actor,
        id: &CollectionId,
        with_incoming: bool,
    ) -> Result<Vec<crate::rotation::RotationDecision>> {
        self.authorized_collection(actor, id, Action::ListVersions).await?;
        let all = protocol::VersionsNeeded::Range(protocol::VersionRange::All);
        let state = self.inner.catalog.collection_state_with(id, all).await?;
        let now = self.now();
        let incoming = with_incoming.then(|| crate::rotation::Incoming::new(None, now));
        Ok(protocol::plan_retention(&state, &self.inner.strategies, incoming, now)?.decisions)
    }

    /// Purges trashed versions: marks them purged with tombstones first (so that no restore
    /// can bring one back), then deletes their objects. What fails is retried by `recover()`.
    async fn purge(&self, versions: &[Version]) -> Result<u64> {
        let trashed: Vec<_> =
            versions.iter().filter(|v| v.state == crate::VersionState::Trashed).map(|v| v.id).collect();
        if trashed.is_empty() {
            return Ok(0);
        }
        let marked = self.inner.catalog.mark_purged(&trashed, self.now()).await?;
        // The number marks first: these descriptions may be the only ones that hold the
        // numbers. Where one cannot be written, the objects wait for the next run.
        let (unmarked, mut first_error) = self.mark_numbers_of(&marked.iter().collect::<Vec<_>>()).await;
        for v in marked.iter().filter(|v| !unmarked.contains(&v.collection)) {
            if let Err(e) = self.delete_object(&v.object_key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(marked.len() as u64), Err)
    }

    /// Restores a trashed version (deleted, or rotated out) while its object is kept, that is
    /// within the trash retention: it is committed again with its number, if the collection
    /// has a free place and room for it.
    ///
    /// # Errors
    /// [`Error::VersionNotFound`] if no trashed version has that number (a purged one cannot
    /// come back); [`Error::Conflict`] or [`Error::QuotaExceeded`] when it does not fit; the
    /// authorizer's denial.
    pub async fn restore_version(&self, actor: &Actor, id: &CollectionId, number: u64) -> Result<Version> {
        self.open_repository().await?;
        let (collection, _) = self.authorized_collection(actor, id, Action::RestoreVersion).await?;
        let audit = self.audit(actor, Action::RestoreVersion, id).with_version(number);
        let restored = self.inner.catalog.restore_version(id, number, &audit).await?;
        self.describe(&restored, &collection.spec).await;
        Ok(restored)
    }

    /// Deletes a version's object and its description; a missing one counts as deleted. The
    /// two go in a task of their own, so that a caller dropped half-way (a client that went
    /// away) does not leave one without the other.
    async fn delete_object(&self, key: &str) -> Result<()> {
        let (engine, key) = (self.clone(), key.to_owned());
        let deleting = self.inner.tasks.spawn(async move { engine.delete_object_now(&key).await });
        deleting.await.unwrap_or_else(|e| Err(Error::internal(format!("deleting an object: {e}"))))
    }

    async fn delete_object_now(&self, key: &str) -> Result<()> {
        // The description first: an object whose description is gone is reported by a
        // rebuild, a description whose object is gone would describe nothing.
        for path in [crate::store::description_key(key), Path::from(key)] {
            match self.inner.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store("delete", &path, e)),
            }
        }
        Ok(())
    }

    /// Waits until the clean-ups of dropped uploads have finished (for graceful shutdown and
    /// tests).
    pub async fn wait_for_cleanups(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}
