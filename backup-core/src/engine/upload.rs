//! The upload protocol: authorize, reserve, stream, then commit or clean up.

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayloadMut};

use crate::audit::AuditEvent;
use crate::authz::{Action, Actor, Permit};
use crate::catalog::{AbortCondition, AbortOutcome, CatalogExt};
use crate::engine::last_write::LastWrite;
use crate::engine::lease::LeaseKeeper;
use crate::engine::part_writer::{PartWriter, RecordedMultipart};
use crate::engine::{Engine, chrono_duration};
use crate::error::{BoxError, Error, Result};
use crate::id::{CollectionId, VersionId};
use crate::protocol::{self, CommitRequest, GrowRequest, Growth, ReserveRequest, SizeHint};
use crate::quota_stream::{QuotaStream, StreamSummary};
use crate::rotation::Incoming;
use crate::store::object_key;
use crate::version::{PendingUpload, Version, VersionState};

impl Engine {
    /// Uploads a version: the body streams through the quota check and the digest into a
    /// fresh object, and the version is committed with its rotation in one catalog step.
    ///
    /// On any failure, and when the returned future is dropped, the partial object is
    /// removed and the reservation released; versions committed before are never touched.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] as soon as the body passes the allowed size;
    /// [`Error::ContentRejected`]; [`Error::Body`] if the body stream fails;
    /// [`Error::CollectionNotFound`]; the authorizer's denial; store and catalog errors.
    pub async fn upload<S, E>(&self, actor: &Actor, collection: &CollectionId, body: S) -> Result<Version>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        self.upload_with(actor, collection, body, UploadOptions::default()).await
    }

    /// [`Engine::upload`] with options, for example the size the client announced: an upload
    /// that cannot fit is then refused before a byte is read, and one that fits reserves just
    /// its size, leaving the rest of the shared extra space to concurrent uploads.
    ///
    /// ```
    /// use backup_core::{Actor, CollectionSpec, Engine, Error, Limits, UploadOptions};
    /// use bytes::Bytes;
    /// use futures::stream;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let actor = Actor::user("ci");
    /// let id = "db".parse()?;
    /// engine.create_collection(&actor, &id, CollectionSpec::new("db-${version}", Limits::new(2, 10, 30)?)).await?;
    /// let never_read = stream::pending::<Result<Bytes, std::io::Error>>();
    /// let e = engine.upload_with(&actor, &id, never_read, UploadOptions::new().expected_size(21)).await.unwrap_err();
    /// assert!(matches!(e, Error::QuotaExceeded { allowed: 20, received_at_least: 21 }));
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Engine::upload`]; [`Error::Body`] if the body ends before the announced size.
    pub async fn upload_with<S, E>(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        body: S,
        options: UploadOptions,
    ) -> Result<Version>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        self.begin_upload(actor, collection, body, options).await?.commit().await
    }

    /// Uploads the body but does not commit it yet: the caller confirms with
    /// [`StagedUpload::commit`] or refuses with [`StagedUpload::abort`] (or by dropping it).
    ///
    /// This lets a server refuse a body whose producer failed after the end of the stream:
    /// backup-repository's clients cancel the request when the backup command exits non-zero
    /// after its output ended, and a server waits for that signal before committing.
    ///
    /// ```
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits, UploadOptions, VersionQuery};
    /// use bytes::Bytes;
    /// use futures::stream;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let actor = Actor::user("ci");
    /// let id = "site".parse()?;
    /// engine.create_collection(&actor, &id, CollectionSpec::new("site-${version}.tar", Limits::new(2, 100, 200)?)).await?;
    ///
    /// let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from("tar"))]);
    /// let staged = engine.begin_upload(&actor, &id, body, UploadOptions::default()).await?;
    /// assert_eq!(staged.size(), 3);
    /// staged.abort().await?; // the producer reported a failure
    /// assert!(engine.versions(&actor, &id, VersionQuery::first(10)).await?.items.is_empty());
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Engine::upload_with`], except those of the commit; [`Error::InvalidInput`] for
    /// metadata that [`crate::check_metadata`] refuses, before a byte is read.
    pub async fn begin_upload<S, E>(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        body: S,
        options: UploadOptions,
    ) -> Result<StagedUpload>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        let staged = self.stage_upload(actor, collection, body, options).await;
        if let Err(e) = &staged {
            self.audit_failed_upload(&actor.user, collection, e).await;
        }
        staged
    }

    async fn stage_upload<S, E>(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        body: S,
        options: UploadOptions,
    ) -> Result<StagedUpload>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        let inner = &self.inner;
        crate::check_metadata(&options.metadata)?;
        if let Some(key) = options.metadata.get(IDEMPOTENCY_KEY) {
            check_idempotency_key(key)?;
        }
        self.open_repository().await?;
        let (coll, permit) = self.authorized_collection(actor, collection, Action::Upload).await?;
        let spec = &coll.spec;
        let rule = inner.content_rules.resolve(spec.content_rule.as_deref())?;
        let size_hint = options.expected_size.map_or_else(SizeHint::unknown, SizeHint::exact);

        let id = VersionId::generate();
        let key = object_key(&inner.key_prefix, collection, &id);
        let now = self.now();
        let request = ReserveRequest::new(
            id,
            collection.clone(),
            key.to_string(),
            actor.uploader(),
            size_hint,
            now,
            now + chrono_duration(inner.config.lease),
        )
        .with_owner(inner.config.instance.clone())
        .with_max_live(inner.config.max_uploads_per_collection);
        let pending = inner.catalog.reserve(&request, &inner.strategies).await?;
        // From here on, dropping this future or failing releases the reservation.
        let mut guard =
            CleanupGuard { engine: self.clone(), id, key: key.clone(), armed: true, last_write: LastWrite::default() };
        let mut lease = LeaseKeeper::spawn(self, id, pending.lease_until);
        // Where the description will go, before the first byte: this upload may be committed.
        // Should the catalog be lost after its commit and before its description, a rebuild
        // then knows that a number may have been given out (see Engine::rebuild_catalog).
        if let Err(e) = self.write_intent(id, collection, key.as_ref()).await {
            guard.armed = false;
            self.release(id, &key).await;
            return Err(e);
        }

        // An announced size is reserved exactly and capped here; an unknown one is capped by
        // its reservation, which grows as the bytes arrive.
        let mut body = QuotaStream::new(body, u64::MAX, spec.digest);
        if let Some(n) = options.expected_size {
            body = body.with_expected_size(n);
        }
        if let Some(rule) = rule {
            body = body.with_content_rule(rule);
        }
        let mut reservation = Reservation { pending };
        match self.stream_to_store(&key, body, &mut reservation, &mut lease, &guard.last_write).await {
            Ok(summary) => Ok(StagedUpload {
                engine: self.clone(),
                spec: coll.spec.clone(),
                pending: reservation.pending,
                summary,
                permit,
                guard,
                metadata: options.metadata,
                _lease: lease,
            }),
            Err(e) => {
                guard.armed = false;
                self.release(id, &key).await;
                Err(self.explain_quota(collection, e).await)
            }
        }
    }

    /// A body refused for its size while held or protected versions keep part of the extra
    /// space says so: the reservation could not, not knowing the size. A cold path: one more
    /// read of the collection, only when an upload was refused.
    async fn explain_quota(&self, collection: &CollectionId, e: Error) -> Error {
        let Error::QuotaExceeded { allowed, received_at_least } = e else { return e };
        let inner = &self.inner;
        let needs = protocol::retention_needs(inner.strategies.clone());
        let Ok(state) = inner.catalog.collection_state_with(collection, needs).await else { return e };
        let now = self.now();
        match protocol::plan_retention(&state, &inner.strategies, Some(Incoming::new(None, now)), now) {
            Ok(outcome) => match protocol::held_space_reason(&outcome, allowed) {
                Some(reason) => Error::CollectionFull {
                    collection: collection.clone(),
                    reason: format!("{received_at_least} bytes or more arrived; {reason}"),
                },
                None => e,
            },
            Err(_) => e,
        }
    }

    /// Step 3: body → quota stream → reservation → store, for as long as the lease is kept.
    /// No byte is stored before the reservation covers it.
    ///
    /// A body that fits in one part (announced so, or ending before its first part is full)
    /// is written with one PUT: one request where a multipart upload costs three (create,
    /// part, complete), and nothing left open on the store if the process dies meanwhile.
    /// A larger body goes as a multipart upload, opened when the first part is full (or at
    /// once when the announced size says it will be). Memory stays bounded by the part size
    /// either way.
    async fn stream_to_store<S, E>(
        &self,
        key: &Path,
        body: QuotaStream<S>,
        reservation: &mut Reservation,
        lease: &mut LeaseKeeper,
        last_write: &LastWrite,
    ) -> Result<StreamSummary>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        let inner = &self.inner;
        let part_size = inner.config.part_size;
        let mut writer = None;
        if reservation.pending.announced.is_some_and(|n| n > part_size as u64) {
            let upload = self.open_multipart(key, reservation).await?;
            writer = Some(PartWriter::new(upload, key.clone(), part_size, inner.config.parts_in_flight));
        }
        // The first part, held until it is known whether the body fits in one PUT.
        let mut first = PutPayloadMut::new();
        let mut body = pin!(body);
        let streamed: Result<()> = async {
            loop {
                let chunk = tokio::select! {
                    chunk = body.next() => chunk,
                    lost = lease.lost() => return Err(lost),
                };
                let Some(chunk) = chunk else { return Ok(()) };
                let chunk = chunk?;
                let received = body.received();
                if received > reservation.pending.reserved {
                    lease.check()?;
                    tokio::select! {
                        covered = reservation.cover(self, received) => covered?,
                        lost = lease.lost() => return Err(lost),
                    }
                }
                match &mut writer {
                    Some(w) => w.put(chunk).await?,
                    None => {
                        first.push(chunk);
                        if first.content_length() >= part_size {
                            let upload = self.open_multipart(key, reservation).await?;
                            let w = writer.insert(PartWriter::new(
                                upload,
                                key.clone(),
                                part_size,
                                inner.config.parts_in_flight,
                            ));
                            for bytes in std::mem::take(&mut first).freeze() {
                                w.put(bytes).await?;
                            }
                        }
                    }
                }
            }
        }
        .await;
        if let Err(e) = streamed {
            if let Some(mut w) = writer {
                w.abort().await;
            }
            return Err(e);
        }
        let summary = body.summary().ok_or_else(|| Error::internal("quota stream ended without a summary"))?;
        // The body ended: it needs exactly its bytes from now on. Settled before the last
        // write, which can take a while (a PUT of a whole part to S3), so that the room it
        // reserved ahead for bytes that never came goes to the uploads still running at once.
        reservation.settle(self, summary.size).await;
        match writer {
            Some(w) => {
                w.finish(last_write).await?;
                self.remove_stray_multiparts(key).await;
            }
            None => {
                let (store, at, payload) = (inner.store.clone(), key.clone(), first.freeze());
                last_write
                    .run(async move { store.put(&at, payload).await })
                    .await?
                    .map_err(|e| Error::store("put", key, e))?;
            }
        }
        Ok(summary)
    }

    /// After a multipart upload completed: aborts any other upload still open under its key
    /// (a create request the store's client retried while the store stalled opens a second
    /// one, whose id nobody recorded). Only with a multipart store and leftovers that can
    /// list them; best effort, as the version is already whole.
    async fn remove_stray_multiparts(&self, key: &Path) {
        if let (Some(_), Some(leftovers)) = (&self.inner.multipart, &self.inner.leftovers)
            && let Err(e) = leftovers.remove(key).await
        {
            tracing::debug!(%key, "could not look for stray multipart uploads: {e}");
        }
    }

    /// Opens the multipart upload the body is written to. Through the engine's
    /// [`MultipartStore`](object_store::multipart::MultipartStore), if it has one, the upload's
    /// id is recorded in the pending row before the first part, so that a release can abort it
    /// even after this process died.
    async fn open_multipart(
        &self,
        key: &Path,
        reservation: &mut Reservation,
    ) -> Result<Box<dyn object_store::MultipartUpload>> {
        let inner = &self.inner;
        let Some(multipart) = &inner.multipart else {
            return inner.store.put_multipart(key).await.map_err(|e| Error::store("put_multipart", key, e));
        };
        let id = multipart.0.create_multipart(key).await.map_err(|e| Error::store("create_multipart", key, e))?;
        match inner.catalog.record_staging(&reservation.pending.id, &id, self.now()).await {
            Ok(pending) => reservation.pending = pending,
            Err(e) => {
                let _ = multipart.0.abort_multipart(key, &id).await;
                return Err(e);
            }
        }
        Ok(Box::new(RecordedMultipart::new(multipart.clone(), key.clone(), id)))
    }

    /// Releases an upload that will not commit: the pending row first, then, if nothing
    /// refers to it any more, the object. What fails here is finished by `recover()`.
    async fn release(&self, id: VersionId, key: &Path) {
        if let Ok(AbortOutcome::Released(_) | AbortOutcome::NotFound) =
            self.inner.catalog.abort(&id, AbortCondition::Finished, self.now()).await
        {
            let _ = self.delete_object(key.as_ref()).await;
        }
    }
}

impl Engine {
    /// What follows a commit: the new version's description first (while it stands, the
    /// purged versions' descriptions may go without a number mark: a rebuild sees a higher
    /// number), then the objects of the versions the commit purged, and the descriptions of
    /// those it trashed.
    async fn after_commit(&self, committed: &protocol::Committed, spec: &crate::spec::CollectionSpec) {
        let described = self.describe(&committed.version, spec).await;
        let purged: Vec<&Version> = committed.evicted.iter().filter(|v| v.state == VersionState::Purged).collect();
        let marked = described || self.mark_numbers_of(&purged).await.0.is_empty();
        if marked {
            for v in purged {
                let _ = self.delete_object(&v.object_key).await;
            }
        }
        for v in committed.evicted.iter().filter(|v| v.state != VersionState::Purged) {
            self.describe(v, spec).await;
        }
    }
}

/// An upload's reservation as the engine holds it: an announced size was reserved exactly;
/// an unknown one grows in the catalog as the bytes arrive.
#[derive(Debug)]
struct Reservation {
    pending: PendingUpload,
}

impl Reservation {
    /// Makes the reservation cover `received` bytes.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] when they cannot fit; catalog errors.
    async fn cover(&mut self, engine: &Engine, received: u64) -> Result<()> {
        if received <= self.pending.reserved {
            return Ok(());
        }
        let inner = &engine.inner;
        let request = GrowRequest::new(self.pending.id, self.pending.collection.clone(), received, engine.now());
        match inner.catalog.grow_reservation(&request, &inner.strategies).await? {
            Growth::Grown(pending) => {
                self.pending = *pending;
                Ok(())
            }
            Growth::Refused { allowed } => Err(Error::QuotaExceeded { allowed, received_at_least: received }),
        }
    }

    /// Once the body ended, gives back what the reservation holds of the extra space beyond
    /// `size`, for the uploads still running while this one waits for its commit. Best effort:
    /// if the step fails, the commit frees it all the same.
    async fn settle(&mut self, engine: &Engine, size: u64) {
        if self.pending.announced.is_some() || self.pending.pool_share == 0 || self.pending.reserved <= size {
            return;
        }
        let inner = &engine.inner;
        let request = GrowRequest::new(self.pending.id, self.pending.collection.clone(), size, engine.now()).ended();
        if let Ok(Growth::Grown(pending)) = inner.catalog.grow_reservation(&request, &inner.strategies).await {
            self.pending = *pending;
        }
    }
}

/// The first pause before asking the catalog again whether a failed commit happened.
const OUTCOME_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two such questions.
const OUTCOME_MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long the engine keeps asking before it reports the outcome as unknown.
const OUTCOME_PATIENCE: Duration = Duration::from_secs(30);

/// Options of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadOptions {
    /// The exact size the client announced (a `Content-Length`), if any.
    pub expected_size: Option<u64>,
    /// Metadata the version will carry (checked by [`crate::check_metadata`] before a byte
    /// is read).
    pub metadata: crate::Metadata,
}

impl UploadOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The body will have exactly `bytes` bytes; a body that ends sooner fails with
    /// [`Error::Body`], one that goes on fails with [`Error::QuotaExceeded`].
    pub fn expected_size(mut self, bytes: u64) -> Self {
        self.expected_size = Some(bytes);
        self
    }

    /// Records `text` under `name` in the version's metadata (say, the refs of a git
    /// bundle), readable in [`crate::Version::metadata`] once committed:
    ///
    /// ```
    /// # async fn f(engine: &backup_core::Engine, me: &backup_core::Actor, id: &backup_core::CollectionId) -> backup_core::Result<()> {
    /// use backup_core::UploadOptions;
    /// let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("bundle"))]);
    /// let options = UploadOptions::new().metadata("git.head", "refs/heads/main");
    /// let version = engine.begin_upload(me, id, body, options).await?.commit().await?;
    /// assert_eq!(version.metadata["git.head"], "refs/heads/main");
    /// # Ok(()) }
    /// ```
    pub fn metadata(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), text.into());
        self
    }

    /// Records the client's idempotency key with the version (in its metadata, as
    /// [`IDEMPOTENCY_KEY`]), so that a client which did not hear the answer can ask whether
    /// this upload committed ([`Engine::version_with_idempotency_key`]) instead of storing
    /// the backup twice. Checked by [`check_idempotency_key`] before a byte is read.
    pub fn idempotency_key(self, key: impl Into<String>) -> Self {
        self.metadata(IDEMPOTENCY_KEY, key)
    }
}

/// The metadata name under which an upload's idempotency key is kept with its version.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// How many of a collection's newest versions [`Engine::version_with_idempotency_key`]
/// looks at: a retry comes soon after the upload it repeats.
pub const IDEMPOTENCY_WINDOW: u64 = 1000;

/// Checks an idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters
/// (what an HTTP header carries; a UUID is a good one).
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule broken.
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "idempotency key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (a UUID, say)"),
        ));
    }
    Ok(())
}

impl Engine {
    /// Uploads the file at `path` as a new version: streamed in 256 KiB reads (never held
    /// whole in memory), its size announced so that the reservation is exact and a file that
    /// changes size while it is read fails instead of storing something else.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits, UploadOptions};
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}.sql", Limits::new(3, 1 << 20, 3 << 20)?)).await?;
    /// let dir = tempfile::tempdir().unwrap();
    /// let dump = dir.path().join("db.sql");
    /// std::fs::write(&dump, "CREATE TABLE t (x int);").unwrap();
    /// let version = engine.upload_file(&me, &id, &dump, UploadOptions::new().metadata("source", "nightly")).await?;
    /// assert_eq!((version.number, version.size), (1, 23));
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the file cannot be opened or is not a regular file;
    /// [`Error::Body`] when reading it fails or its size changes; as [`Engine::upload_with`].
    pub async fn upload_file(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        path: impl AsRef<std::path::Path>,
        options: UploadOptions,
    ) -> Result<Version> {
        let path = path.as_ref();
        let unreadable = |e: std::io::Error| Error::invalid("file", format!("{}: {e}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let meta = file.metadata().await.map_err(unreadable)?;
        if !meta.is_file() {
            return Err(Error::invalid("file", format!("{} is not a regular file", path.display())));
        }
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.upload_with(actor, collection, body, options.expected_size(meta.len())).await
    }

    /// The version the `actor` uploaded with this idempotency key
    /// ([`UploadOptions::idempotency_key`]), among the collection's
    /// [`IDEMPOTENCY_WINDOW`] newest: how a client that lost the answer to an upload (or was
    /// told [`Error::OutcomeUnknown`]) learns whether it committed, before it uploads again.
    /// Only the actor's own uploads match. Allowed to whoever may list the collection's
    /// versions or upload into it.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits, UploadOptions};
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
    /// let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("dump"))]);
    /// let options = UploadOptions::new().idempotency_key("3f1c0d2e-nightly");
    /// let stored = engine.begin_upload(&me, &id, body, options).await?.commit().await?;
    /// // The answer was lost: ask before uploading again.
    /// let found = engine.version_with_idempotency_key(&me, &id, "3f1c0d2e-nightly").await?;
    /// assert_eq!(found.map(|v| v.number), Some(stored.number));
    /// assert!(engine.version_with_idempotency_key(&me, &id, "another").await?.is_none());
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed key; [`Error::CollectionNotFound`]; the
    /// authorizer's denial; catalog errors.
    pub async fn version_with_idempotency_key(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        key: &str,
    ) -> Result<Option<Version>> {
        check_idempotency_key(key)?;
        if let Err(e) = self.authorized_collection(actor, collection, Action::ListVersions).await {
            if e.kind() != crate::ErrorKind::PermissionDenied {
                return Err(e);
            }
            self.authorized_collection(actor, collection, Action::Upload).await?;
        }
        let catalog = &self.inner.catalog;
        let newest = match catalog.get_version(collection, crate::VersionSelector::Latest).await {
            Ok(v) => v.number,
            Err(e) if e.kind() == crate::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut after = newest.saturating_sub(IDEMPOTENCY_WINDOW);
        let mut found = None;
        loop {
            let query = crate::VersionQuery::first(1000).after(after);
            let page = catalog.list_versions(collection, &query).await?;
            found = page
                .iter()
                .rfind(|v| v.uploader.user == actor.user && v.metadata.get(IDEMPOTENCY_KEY).is_some_and(|k| k == key))
                .cloned()
                .or(found);
            match page.last() {
                Some(last) if page.len() == query.limit && last.number < newest => after = last.number,
                _ => return Ok(found),
            }
        }
    }
}

/// Releases the reservation and deletes the object if the upload is dropped before it
/// committed or aborted: the clean-up runs as a task (tracked by the engine) because `Drop`
/// cannot wait. Without a runtime, `recover()` does it later.
#[derive(Debug)]
struct CleanupGuard {
    engine: Engine,
    id: VersionId,
    key: Path,
    armed: bool,
    /// The write that makes the object whole, if it started.
    last_write: LastWrite,
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (engine, id, key) = (self.engine.clone(), self.id, self.key.clone());
            let last_write = self.last_write.take();
            let task = self.engine.inner.tasks.track_future(async move {
                // The object's last write goes on without the dropped upload (a local disk
                // renames its staging file on a blocking thread): the object is deleted after
                // it, never before, so that no late write brings it back.
                if let Some(write) = last_write {
                    let _ = write.await;
                }
                engine.release(id, &key).await
            });
            handle.spawn(task);
        }
    }
}

/// An upload whose bytes are stored but not yet committed: invisible to listings and
/// downloads, holding its reservation. Commit it, abort it, or drop it (which aborts).
#[derive(Debug)]
#[must_use = "a staged upload is aborted when dropped; call commit() to keep it"]
pub struct StagedUpload {
    engine: Engine,
    /// The collection's spec, for the version's description.
    spec: crate::spec::CollectionSpec,
    pending: PendingUpload,
    summary: StreamSummary,
    permit: Permit,
    guard: CleanupGuard,
    /// The version's metadata, written with the commit.
    metadata: crate::Metadata,
    /// Keeps the reservation alive until the upload is committed or given up.
    _lease: LeaseKeeper,
}

impl StagedUpload {
    /// The size of the uploaded body.
    pub fn size(&self) -> u64 {
        self.summary.size
    }

    /// The digest of the uploaded body.
    pub fn digest(&self) -> crate::Digest {
        self.summary.digest
    }

    /// The id the version will have.
    pub fn id(&self) -> VersionId {
        self.pending.id
    }

    /// Step 5: commits the version with its rotation in one catalog step, then describes it
    /// and deletes the objects of the versions it evicted.
    ///
    /// The step marks the version as not described, so that `recover()` describes it if this
    /// process dies first (the upload's intent, written where the description goes when it
    /// began, tells a rebuild of a catalog lost meanwhile that a number may have been given
    /// out: see [`Engine::rebuild_catalog`]). If the catalog's answer is lost (the commit
    /// happened but the call failed), the engine asks again and returns the committed version;
    /// the evicted objects are then left to `recover()`.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] if the final size no longer fits (the limits changed);
    /// [`Error::Conflict`] if the lease expired, or a single-use token was used meanwhile;
    /// catalog errors. On error the object is deleted and the reservation released.
    pub async fn commit(self) -> Result<Version> {
        let (engine, user, collection) =
            (self.engine.clone(), self.pending.uploader.user.clone(), self.pending.collection.clone());
        let committed = self.commit_staged().await;
        if let Err(e) = &committed {
            engine.audit_failed_upload(&user, &collection, e).await;
        }
        committed
    }

    async fn commit_staged(mut self) -> Result<Version> {
        let engine = self.engine.clone();
        let inner = &engine.inner;
        // A whole lease without renewal (the process stalled) fails the upload, whatever the
        // catalog would say: another instance may have released it meanwhile.
        if let Err(lost) = self._lease.check() {
            // What cannot be released now is released by recover().
            let _ = self.abort().await;
            return Err(lost);
        }
        let request = CommitRequest::new(
            self.pending.id,
            self.pending.collection.clone(),
            self.summary.size,
            self.summary.digest,
            engine.now(),
        )
        .with_consume_session(self.permit.consume_session.clone())
        .with_require_session(self.permit.require_session.clone())
        .with_metadata(std::mem::take(&mut self.metadata))
        .with_purge_evicted(inner.config.trash_retention.is_zero())
        .with_audit(inner.config.event_log);
        let result = inner.catalog.commit(&request, &inner.strategies).await;
        self.guard.armed = false;
        match result {
            Ok(committed) => {
                // In a task of its own, so that a caller that goes away now (the client hung
                // up) does not leave it half done; what fails is done by recover(), which the
                // catalog's marks and tombstones tell.
                let (after, spec, version) = (engine.clone(), self.spec.clone(), committed.version.clone());
                let finishing = inner.tasks.spawn(async move { after.after_commit(&committed, &spec).await });
                let _ = finishing.await;
                Ok(version)
            }
            Err(commit_error) => {
                // Did the commit happen (its answer lost)? Asked again while the catalog does
                // not answer, with a growing pause: reporting a failure for a committed
                // version makes a retrying client store the backup twice.
                let mut pause = OUTCOME_FIRST_PAUSE;
                let mut waited = Duration::ZERO;
                loop {
                    match inner.catalog.abort(&self.pending.id, AbortCondition::Finished, engine.now()).await {
                        Ok(AbortOutcome::Committed(version)) => return Ok(version),
                        Ok(AbortOutcome::Released(_) | AbortOutcome::NotFound) => {
                            let _ = engine.delete_object(&self.pending.object_key).await;
                            return Err(commit_error);
                        }
                        // The row is still pending: the commit did not happen, and the row is
                        // left to recover(), which decides by it.
                        Ok(AbortOutcome::StillLive) => return Err(commit_error),
                        Err(_) if waited < OUTCOME_PATIENCE => {
                            tokio::time::sleep(pause).await;
                            waited += pause;
                            pause = (pause * 2).min(OUTCOME_MAX_PAUSE);
                        }
                        // Still no answer: say so, distinctly. The object stays for
                        // recover(), which decides by the row.
                        Err(_) => {
                            return Err(Error::OutcomeUnknown {
                                collection: self.pending.collection.clone(),
                                id: self.pending.id,
                                source: Box::new(commit_error),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Gives the upload up: releases the reservation and deletes the object.
    ///
    /// # Errors
    /// Catalog or store errors; what could not be removed is removed by `recover()`.
    pub async fn abort(mut self) -> Result<()> {
        self.guard.armed = false;
        let engine = &self.engine;
        match engine.inner.catalog.abort(&self.pending.id, AbortCondition::Finished, engine.now()).await? {
            AbortOutcome::Released(_) | AbortOutcome::NotFound => engine.delete_object(&self.pending.object_key).await,
            AbortOutcome::Committed(v) => Err(Error::internal(format!(
                "staged upload {} was committed as version {} although it was never committed",
                v.id, v.number
            ))),
            AbortOutcome::StillLive => {
                Err(Error::internal("abort with AbortCondition::Finished reported a live lease"))
            }
        }
    }
}

impl Engine {
    /// Records an upload that did not become a version, with the reason, when the event log
    /// is on: `upload.refusal` for what the rules refused (quota, window, content, size,
    /// permission, a lost lease), `upload.interrupted` for a body its producer cut, and
    /// `upload.failed` for the rest. Uploads into collections that do not exist are not
    /// recorded: anyone could fill the log with them.
    async fn audit_failed_upload(&self, user: &str, collection: &CollectionId, e: &Error) {
        if !self.inner.config.event_log || e.kind() == crate::ErrorKind::NotFound {
            return;
        }
        let action = match e.kind() {
            crate::ErrorKind::Interrupted => "upload.interrupted",
            crate::ErrorKind::Unavailable
            | crate::ErrorKind::StorageFull
            | crate::ErrorKind::OutcomeUnknown
            | crate::ErrorKind::Internal => "upload.failed",
            _ => "upload.refusal",
        };
        let event = AuditEvent::new(self.now(), user.to_owned(), action)
            .with_collection(collection)
            .with_detail(format!("{:?}: {e}", e.kind()));
        if let Err(failed) = self.record_audit(&event).await {
            tracing::warn!(error = %failed, "a failed upload could not be written to the audit log");
        }
    }
}
