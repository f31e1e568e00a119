//! The [`Engine`]: collections, the crash-safe upload protocol, verified downloads, recovery.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::task::TaskTracker;

use crate::authz::{Action, Actor, Authorizer, AuthzRequest, Permit};
use crate::catalog::{Catalog, VersionQuery};
use crate::clock::Clock;
use crate::content_rule::ContentRules;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CollectionId, VersionId};
use crate::protocol;
use crate::rotation::RotationStrategies;
use crate::session::AuditEvent;
use crate::spec::CollectionSpec;
use crate::version::{Collection, Version, VersionSelector};

mod builder;
mod download;
mod part_writer;
mod recover;
mod upload;

pub use builder::EngineBuilder;
pub use download::Download;
pub use recover::RecoveryReport;
pub use upload::{StagedUpload, UploadOptions};

/// The backup engine: a cheap-to-clone handle on a catalog, a blob store, an authorizer and a
/// clock.
///
/// Every operation takes the [`Actor`] it acts for and asks the [`Authorizer`] first. The
/// engine runs on a Tokio runtime (multipart parts are written by spawned tasks).
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
    authorizer: Arc<dyn Authorizer>,
    clock: Arc<dyn Clock>,
    strategies: Arc<RotationStrategies>,
    content_rules: ContentRules,
    key_prefix: Path,
    config: EngineConfig,
    /// Clean-ups spawned when an upload future is dropped mid-way.
    tasks: TaskTracker,
}

#[derive(Debug, Clone)]
struct EngineConfig {
    part_size: usize,
    parts_in_flight: usize,
    lease: Duration,
    trash_retention: Duration,
    orphan_grace: Duration,
    batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            part_size: 8 << 20,
            parts_in_flight: 2,
            lease: Duration::from_secs(600),
            trash_retention: Duration::ZERO,
            orphan_grace: Duration::from_secs(900),
            batch: 500,
        }
    }
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The largest committed version, in bytes.
    pub largest_version: u64,
    /// Uploads in flight (live leases).
    pub uploads_in_flight: u64,
    /// The largest upload that would be allowed now, in bytes.
    pub allowed_next_upload: u64,
    /// The latest committed version, if any.
    pub latest: Option<Version>,
}

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

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.inner.catalog
    }

    /// The blob store.
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

    /// The clock's time at microsecond precision, what every catalog stores exactly.
    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_micros(self.inner.clock.now())
    }

    async fn authorize(&self, actor: &Actor, action: Action, collection: Option<&Collection>) -> Result<Permit> {
        let request = AuthzRequest::new(actor, action, collection, self.now());
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

    /// Checks a spec against the validation rules and the engine's registries.
    fn validate_spec(&self, spec: &CollectionSpec) -> Result<()> {
        spec.validate()?;
        self.inner.strategies.validate(spec)?;
        self.inner.content_rules.resolve(spec.content_rule.as_deref())?;
        Ok(())
    }

    fn audit(&self, actor: &Actor, action: Action, collection: &CollectionId) -> AuditEvent {
        AuditEvent::new(self.now(), actor.user.clone(), action.name()).collection(collection)
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for a spec that breaks a rule (negative extra space, a template
    /// without `${version}`, an unknown strategy or content rule);
    /// [`Error::CollectionExists`]; the authorizer's denial.
    pub async fn create_collection(
        &self,
        actor: &Actor,
        id: &CollectionId,
        spec: CollectionSpec,
    ) -> Result<Collection> {
        self.authorize(actor, Action::CreateCollection, None).await?;
        self.validate_spec(&spec)?;
        let collection = Collection::new(id.clone(), spec, self.now());
        let audit = self.audit(actor, Action::CreateCollection, id);
        self.inner.catalog.create_collection(&collection, &audit).await?;
        Ok(collection)
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
        let (current, _) = self.authorized_collection(actor, id, Action::UpdateCollection).await?;
        self.validate_spec(&spec)?;
        let mut updated = current.clone();
        updated.spec = spec;
        updated.revision = current.revision + 1;
        updated.updated_at = self.now();
        let audit = self.audit(actor, Action::UpdateCollection, id);
        self.inner.catalog.update_collection(&updated, current.revision, &audit).await?;
        Ok(updated)
    }

    /// Deletes a collection that has no committed version and no upload in flight; objects of
    /// its trashed versions are deleted first.
    ///
    /// # Errors
    /// [`Error::Conflict`] if it still has versions; [`Error::CollectionNotFound`]; the
    /// authorizer's denial; store errors while deleting trashed objects.
    pub async fn delete_collection(&self, actor: &Actor, id: &CollectionId) -> Result<()> {
        self.authorized_collection(actor, id, Action::DeleteCollection).await?;
        let mut after = None;
        loop {
            let query = VersionQuery { after, limit: self.inner.config.batch, include_trashed: true };
            let page = self.inner.catalog.list_versions(id, &query).await?;
            if let Some(v) = page.iter().find(|v| v.state == crate::VersionState::Committed) {
                return Err(Error::conflict(format!(
                    "collection {id} is not empty: version {} is committed; delete its versions first",
                    v.number
                )));
            }
            self.purge(&page).await?;
            if page.len() < self.inner.config.batch {
                break;
            }
            after = page.last().map(|v| v.number);
        }
        let audit = self.audit(actor, Action::DeleteCollection, id);
        self.inner.catalog.delete_collection(id, &audit).await
    }

    /// How full a collection is, and the largest upload allowed now.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`]; the authorizer's denial.
    pub async fn usage(&self, actor: &Actor, id: &CollectionId) -> Result<Usage> {
        self.authorized_collection(actor, id, Action::ReadCollection).await?;
        let state = self.inner.catalog.collection_state(id).await?;
        let now = self.now();
        let allowed_next_upload = protocol::allowance_now(&state, &self.inner.strategies, now)?;
        let latest = match state.committed.last() {
            Some(_) => Some(self.inner.catalog.get_version(id, VersionSelector::Latest).await?),
            None => None,
        };
        Ok(Usage {
            versions: state.committed.len() as u64,
            committed_bytes: state.committed_bytes(),
            largest_version: state.committed.iter().map(|v| v.size).max().unwrap_or(0),
            uploads_in_flight: state.live_pending(now).count() as u64,
            allowed_next_upload,
            latest,
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

    /// Deletes a version: it is trashed at once (invisible to listings and downloads) and its
    /// object is deleted after that commit, or after the trash retention.
    ///
    /// # Errors
    /// [`Error::VersionNotFound`] if no committed version has that number;
    /// [`Error::CollectionNotFound`]; the authorizer's denial. A failure to delete the object
    /// after the version was trashed is not an error: `recover()` deletes it.
    pub async fn delete_version(&self, actor: &Actor, id: &CollectionId, number: u64) -> Result<Version> {
        self.authorized_collection(actor, id, Action::DeleteVersion).await?;
        let now = self.now();
        let audit = self.audit(actor, Action::DeleteVersion, id).version(number);
        let trashed =
            self.inner.catalog.trash_version(id, number, now, &format!("deleted by {}", actor.user), &audit).await?;
        if self.inner.config.trash_retention.is_zero() {
            // Best effort: the row is trashed, so recover() finishes this if it fails now.
            let _ = self.purge(std::slice::from_ref(&trashed)).await;
        }
        Ok(trashed)
    }

    /// Purges trashed versions: marks them purged first (so that no restore can bring one
    /// back), then deletes their objects. An object whose deletion fails has no row any more
    /// and is deleted by `recover()`'s orphan sweep.
    async fn purge(&self, versions: &[Version]) -> Result<()> {
        let trashed: Vec<&Version> = versions.iter().filter(|v| v.state == crate::VersionState::Trashed).collect();
        if trashed.is_empty() {
            return Ok(());
        }
        let ids: Vec<VersionId> = trashed.iter().map(|v| v.id).collect();
        let marked = self.inner.catalog.mark_purged(&ids, self.now()).await?;
        let mut first_error = None;
        for v in trashed.iter().filter(|v| marked.contains(&v.id)) {
            if let Err(e) = self.delete_object(&v.object_key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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
        self.authorized_collection(actor, id, Action::RestoreVersion).await?;
        let now = self.now();
        let audit = self.audit(actor, Action::RestoreVersion, id).version(number);
        self.inner.catalog.restore_version(id, number, now, &audit).await
    }

    /// Deletes an object; a missing object counts as deleted.
    async fn delete_object(&self, key: &str) -> Result<()> {
        let path = Path::from(key);
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store("delete", &path, e)),
        }
    }

    /// Waits until the clean-ups of dropped uploads have finished (for graceful shutdown and
    /// tests).
    pub async fn wait_for_cleanups(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}
