//! Regression tests of defects found by review, each failing before its fix.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::catalog::protocol::{LoadedState, StateQuery};
use backup_core::catalog::{
    Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery,
};
use backup_core::catalog::{PendingUpload, Tombstone};
use backup_core::testing::{body_of, pattern};
use backup_core::{
    Actor, AuditEvent, Collection, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, MemoryCatalog, Session,
    Timestamp, Version, VersionSelector,
};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};

fn spec(max: u32) -> CollectionSpec {
    CollectionSpec::new("d-${version}", Limits::new(max, 1000, u64::from(max) * 1000).unwrap())
}

/// `delete_collection` used to purge the trash page by page before the catalog checked that
/// the collection could go: a refused call had destroyed restorable versions.
#[tokio::test]
async fn a_refused_collection_deletion_destroys_nothing() {
    let engine = Engine::builder().trash_retention(Duration::from_secs(3600)).build().unwrap();
    let me = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&me, &id, spec(3)).await.unwrap();
    let v1 = engine.upload(&me, &id, body_of(pattern(1, 10), 5)).await.unwrap();
    engine.upload(&me, &id, body_of(pattern(2, 10), 5)).await.unwrap();
    engine.delete_version(&me, &id, 1).await.unwrap();
    let e = engine.delete_collection(&me, &id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let restored = engine.restore_version(&me, &id, 1).await.expect("the trashed version is still restorable");
    assert_eq!(restored.id, v1.id);
    let bytes: Vec<bytes::Bytes> =
        engine.download(&me, &id, VersionSelector::Number(1)).await.unwrap().into_stream().try_collect().await.unwrap();
    assert_eq!(bytes.concat(), pattern(1, 10));
}

/// A store whose first `get` of `key` lets something else happen first (a rotation that
/// purges the version), as a download racing it would see.
#[derive(Debug)]
struct RacingStore {
    inner: Arc<dyn ObjectStore>,
    before_get: Mutex<Option<Hook>>,
}

/// The key to stop at, the signal that it was reached, and the signal to go on.
type Hook = (String, tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>);

impl std::fmt::Display for RacingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RacingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RacingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let hook = {
            let mut slot = self.before_get.lock().unwrap();
            match slot.as_ref() {
                Some((key, _, _)) if key.as_str() == location.as_ref() => slot.take(),
                _ => None,
            }
        };
        if let Some((_, go, done)) = hook {
            let _ = go.send(());
            let _ = done.await;
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A download racing a rotation used to answer "corrupted" (a 500) when the version was
/// purged between the catalog read and the store read: it is simply gone now, a not-found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_racing_a_rotation_is_not_found_not_corrupted() {
    let store =
        Arc::new(RacingStore { inner: Arc::new(object_store::memory::InMemory::new()), before_get: Mutex::new(None) });
    // Purged at once, so the rotation deletes the object under the download.
    let engine = Engine::builder().store(store.clone()).trash_retention(Duration::ZERO).build().unwrap();
    let me = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&me, &id, spec(1)).await.unwrap();
    let v1 = engine.upload(&me, &id, body_of(pattern(1, 10), 5)).await.unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    *store.before_get.lock().unwrap() = Some((v1.object_key.clone(), go_tx, done_rx));
    let racer = {
        let (engine, me, id) = (engine.clone(), me.clone(), id.clone());
        tokio::spawn(async move {
            go_rx.await.unwrap();
            // The next upload rotates version 1 out and deletes its object.
            engine.upload(&me, &id, body_of(pattern(2, 10), 5)).await.unwrap();
            done_tx.send(()).unwrap();
        })
    };
    let e = engine.download(&me, &id, VersionSelector::Number(1)).await.unwrap_err();
    racer.await.unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// Records whether each step was relaxed (may be lost in a power cut) or durable.
#[derive(Debug)]
struct Recording {
    inner: MemoryCatalog,
    steps: Mutex<Vec<(&'static str, bool)>>,
}

#[async_trait]
impl Catalog for Recording {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn transact(&self, query: StateQuery, decide: Decide) -> backup_core::Result<()> {
        self.steps.lock().unwrap().push((query.label, query.relaxed));
        self.inner.transact(query, decide).await
    }
    async fn load(&self, query: StateQuery) -> backup_core::Result<LoadedState> {
        self.inner.load(query).await
    }
    async fn get_collection(&self, id: &CollectionId) -> backup_core::Result<Collection> {
        self.inner.get_collection(id).await
    }
    async fn list_collections(
        &self,
        after: Option<&CollectionId>,
        limit: usize,
    ) -> backup_core::Result<Vec<Collection>> {
        self.inner.list_collections(after, limit).await
    }
    async fn get_version(&self, c: &CollectionId, s: VersionSelector) -> backup_core::Result<Version> {
        self.inner.get_version(c, s).await
    }
    async fn list_versions(&self, c: &CollectionId, q: &VersionQuery) -> backup_core::Result<Vec<Version>> {
        self.inner.list_versions(c, q).await
    }
    async fn list_pending(&self, f: &PendingFilter, limit: usize) -> backup_core::Result<Vec<PendingUpload>> {
        self.inner.list_pending(f, limit).await
    }
    async fn list_trashed(&self, before: Timestamp, limit: usize) -> backup_core::Result<Vec<Version>> {
        self.inner.list_trashed(before, limit).await
    }
    async fn list_tombstones(
        &self,
        c: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> backup_core::Result<Vec<Tombstone>> {
        self.inner.list_tombstones(c, after, limit).await
    }
    async fn classify_object_keys(&self, keys: &[String]) -> backup_core::Result<Vec<KeyClass>> {
        self.inner.classify_object_keys(keys).await
    }
    async fn list_undescribed(
        &self,
        after: Option<backup_core::VersionId>,
        limit: usize,
    ) -> backup_core::Result<Vec<Undescribed>> {
        self.inner.list_undescribed(after, limit).await
    }
    async fn repository(&self) -> backup_core::Result<RepositoryInfo> {
        self.inner.repository().await
    }
    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> backup_core::Result<Vec<Session>> {
        self.inner.list_sessions(user, limit).await
    }
    async fn list_audit(&self, after: Option<u64>, limit: usize) -> backup_core::Result<Vec<AuditEvent>> {
        self.inner.list_audit(after, limit).await
    }
    async fn export(&self) -> backup_core::Result<BoxStream<'static, backup_core::Result<CatalogRecord>>> {
        self.inner.export().await
    }
    async fn import(
        &self,
        records: BoxStream<'static, backup_core::Result<CatalogRecord>>,
    ) -> backup_core::Result<ImportSummary> {
        self.inner.import(records).await
    }
}

/// SQLite wrote the purge mark without a sync right before the object was deleted: after a
/// power cut, a restore could bring back a version without bytes. Which steps may be relaxed
/// is pinned here: only those whose loss `recover()` repairs (a reservation, a renewal, an
/// abort, forgetting a tombstone); a purge, a commit, a deletion are durable before the
/// object goes.
#[tokio::test]
async fn only_harmless_steps_are_relaxed() {
    let catalog = Arc::new(Recording { inner: MemoryCatalog::new(), steps: Mutex::new(Vec::new()) });
    let engine = Engine::builder()
        .catalog(catalog.clone())
        .trash_retention(Duration::from_secs(1))
        .grace(Duration::ZERO)
        .build()
        .unwrap();
    let me = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&me, &id, spec(1)).await.unwrap();
    engine.upload(&me, &id, body_of(pattern(1, 10), 5)).await.unwrap();
    engine.upload(&me, &id, body_of(pattern(2, 10), 5)).await.unwrap(); // trashes 1
    let _ = engine.upload(&me, &id, body_of(pattern(3, 5000), 5)).await.unwrap_err(); // aborted
    engine.delete_version(&me, &id, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.recover().await.unwrap(); // purges the trash, deletes the garbage
    let steps = catalog.steps.lock().unwrap().clone();
    for (label, relaxed) in &steps {
        let may_relax = matches!(
            *label,
            "reserve" | "grow_reservation" | "record_staging" | "renew_lease" | "abort" | "forget_tombstones"
        );
        assert_eq!(*relaxed, may_relax, "step {label} relaxed={relaxed}: {steps:?}");
    }
    for needed in ["reserve", "commit", "abort", "trash_version", "mark_purged", "forget_tombstones"] {
        assert!(steps.iter().any(|(l, _)| *l == needed), "{needed} ran: {steps:?}");
    }
}
