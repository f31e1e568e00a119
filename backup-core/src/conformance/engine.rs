//! The engine's conformance suite over one object store (and catalog): upload, download,
//! rotation, deletion, recovery and orphans, with parts of S3's minimum size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::unique_collection;
use crate::authz::Actor;
use crate::catalog::{Catalog, CatalogExt, VersionQuery};
use crate::clock::ManualClock;
use crate::engine::{Engine, UploadOptions};
use crate::error::{Error, ErrorKind};
use crate::id::CollectionId;
use crate::protocol::{ReserveRequest, SizeHint};
use crate::rotation::RotationStrategies;
use crate::spec::{CollectionSpec, Limits};
use crate::testing::{body_of, failing_body, pattern};
use crate::time::Timestamp;
use crate::version::{VersionSelector, VersionState};

/// S3's minimum part size, so the suite runs unchanged on every backend.
const PART: usize = 5 << 20;

/// How many uploads [`chunked_uploads_share_the_extra_space`] runs at once.
const CONCURRENT_UPLOADS: u32 = 32;

/// Runs every check against `store` (with `catalog` for metadata).
pub async fn run_all(store: Arc<dyn ObjectStore>, catalog: Arc<dyn Catalog>) {
    run_all_with(store, None, catalog).await;
}

/// [`run_all`], with uploads written through `multipart` (the same store as a
/// [`MultipartStore`]) and their multipart ids recorded, and then
/// [`a_crashed_uploads_multipart_upload_is_aborted`]; last, the disaster-recovery suite
/// ([`super::recovery::run_all`]) on this store with in-memory catalogs.
pub async fn run_all_with(
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    catalog: Arc<dyn Catalog>,
) {
    let ctx = Ctx::new(store, multipart.clone(), catalog);
    run_checks(&ctx, multipart).await;
    let memory_catalogs = || -> futures::future::BoxFuture<'static, Arc<dyn Catalog>> {
        Box::pin(async { Arc::new(crate::MemoryCatalog::new()) as Arc<dyn Catalog> })
    };
    super::recovery::run_all(ctx.engine.store().clone(), &memory_catalogs).await;
}

/// Calls `$callback!` with every check of the engine suite, each as `name: kind`: the one list
/// [`run_all_with`] is made from (a `pub async fn` check missing from it fails this crate's
/// tests), and what a backend's test file expands into one test per check, so that each runs,
/// fails and is rerun on its own. The kind says what the check takes: `ctx` a [`Ctx`],
/// `multipart` a [`Ctx`] and the store as a [`MultipartStore`] (run only when there is one),
/// `store` the bare store.
///
/// ```
/// use std::sync::Arc;
/// use backup_core::conformance::engine::{self, Ctx};
/// use backup_core::MemoryCatalog;
/// use object_store::memory::InMemory;
///
/// fn ctx() -> (Ctx, Arc<InMemory>) {
///     let store = Arc::new(InMemory::new());
///     (Ctx::new(store.clone(), Some(store.clone()), Arc::new(MemoryCatalog::new())), store)
/// }
///
/// macro_rules! one_test_per_check {
///     ($($check:ident: $kind:ident),* $(,)?) => { $( one_test_per_check!(@test $kind $check); )* };
///     (@test ctx $check:ident) => {
///         #[tokio::test(flavor = "multi_thread")]
///         async fn $check() { engine::$check(&ctx().0).await }
///     };
///     (@test multipart $check:ident) => {
///         #[tokio::test(flavor = "multi_thread")]
///         async fn $check() { let (ctx, store) = ctx(); engine::$check(&ctx, store).await }
///     };
///     (@test store $check:ident) => {
///         #[tokio::test(flavor = "multi_thread")]
///         async fn $check() { engine::$check(Arc::new(InMemory::new())).await }
///     };
/// }
/// backup_core::for_each_engine_check!(one_test_per_check);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! for_each_engine_check {
    ($callback:ident) => {
        $callback! {
            multipart_round_trip_by_every_selector: ctx,
            rotation_deletes_evicted_objects: ctx,
            refused_and_failed_uploads_leave_nothing: ctx,
            delete_version_removes_its_object: ctx,
            download_detects_corruption_and_truncation: ctx,
            recover_deletes_garbage_and_never_unknown_objects: ctx,
            chunked_uploads_share_the_extra_space: ctx,
            a_crashed_uploads_multipart_upload_is_aborted: multipart,
            repository_identity_is_checked: store,
        }
    };
}

macro_rules! run_checks {
    ($($check:ident: $kind:ident),* $(,)?) => {
        /// Runs every check of [`for_each_engine_check!`](crate::for_each_engine_check) in its order.
        async fn run_checks(ctx: &Ctx, multipart: Option<Arc<dyn MultipartStore>>) {
            $( run_checks!(@one $kind $check, ctx, multipart); )*
        }
    };
    (@one ctx $check:ident, $ctx:ident, $multipart:ident) => {
        $check($ctx).await
    };
    (@one multipart $check:ident, $ctx:ident, $multipart:ident) => {
        if let Some(multipart) = &$multipart {
            $check($ctx, multipart.clone()).await;
        }
    };
    (@one store $check:ident, $ctx:ident, $multipart:ident) => {
        $check($ctx.engine.store().clone()).await
    };
}

crate::for_each_engine_check!(run_checks);

/// An engine over the store under a fresh key prefix, with a manual clock: what a check of
/// the suite works with.
#[derive(Debug)]
pub struct Ctx {
    engine: Engine,
    clock: Arc<ManualClock>,
    actor: Actor,
}

impl Ctx {
    /// An engine over `store` (its uploads written through `multipart` when given, the same
    /// store as a [`MultipartStore`]) and `catalog`, under a fresh key prefix.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        multipart: Option<Arc<dyn MultipartStore>>,
        catalog: Arc<dyn Catalog>,
    ) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        let prefix = format!("conformance-{}", uuid::Uuid::new_v4().simple());
        let mut builder = Engine::builder();
        if let Some(multipart) = multipart {
            builder = builder.multipart_store(multipart);
        }
        let engine = builder
            .store(store)
            .catalog(catalog)
            .clock(clock.clone())
            .key_prefix(prefix)
            .part_size(PART)
            .grace(Duration::ZERO)
            // Evicted and deleted versions go at once: the checks look for their objects.
            .trash_retention(Duration::ZERO)
            .max_uploads_per_collection(CONCURRENT_UPLOADS)
            .build()
            .expect("engine");
        Ctx { engine, clock, actor: Actor::user("conformance") }
    }

    async fn collection(&self, prefix: &str, limits: Limits) -> CollectionId {
        let id = unique_collection(prefix);
        self.engine
            .create_collection(&self.actor, &id, CollectionSpec::new("b-${version}.bin", limits))
            .await
            .expect("create collection");
        id
    }

    async fn download(&self, id: &CollectionId, selector: VersionSelector) -> Result<Vec<u8>, Error> {
        let d = self.engine.download(&self.actor, id, selector).await?;
        let chunks: Vec<Bytes> = d.into_stream().try_collect().await?;
        Ok(chunks.concat())
    }

    async fn exists(&self, key: &str) -> bool {
        match self.engine.store().head(&Path::from(key)).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head {key}: {e}"),
        }
    }

    async fn objects_of(&self, id: &CollectionId) -> Vec<String> {
        let prefix = self.engine.key_prefix().clone().join(id.as_str());
        let metas: Vec<_> = self.engine.store().list(Some(&prefix)).try_collect().await.expect("list");
        // Versions' objects, not their descriptions.
        metas
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| crate::store::described_object(k).is_none())
            .collect()
    }
}

/// A body of three parts (unknown length) comes back byte for byte by `latest`, `N` and
/// `vN`, and a body of known length too.
pub async fn multipart_round_trip_by_every_selector(ctx: &Ctx) {
    let id = ctx.collection("roundtrip", Limits::new(3, 16 << 20, 48 << 20).expect("limits")).await;
    let data = pattern(1, 2 * PART + 12_345);
    let v = ctx.engine.upload(&ctx.actor, &id, body_of(data.clone(), 64 << 10)).await.expect("upload");
    assert_eq!((v.number, v.size), (1, data.len() as u64));
    for sel in ["latest", "1", "v1"] {
        let got = ctx.download(&id, sel.parse().expect("selector")).await.expect("download");
        assert!(got == data, "download by {sel} differs");
    }
    let small = pattern(2, 1000);
    let announced = UploadOptions::new().expected_size(small.len() as u64);
    let v2 = ctx.engine.upload_with(&ctx.actor, &id, body_of(small.clone(), 100), announced).await.expect("upload");
    assert_eq!(v2.number, 2);
    assert!(ctx.download(&id, VersionSelector::Latest).await.expect("download") == small);
    let empty = ctx.engine.upload(&ctx.actor, &id, body_of(Bytes::new(), 1)).await.expect("empty upload");
    assert_eq!(empty.size, 0);
    assert!(ctx.download(&id, VersionSelector::Number(3)).await.expect("download").is_empty());
}

/// Rotation trashes the oldest and deletes its object after the commit.
pub async fn rotation_deletes_evicted_objects(ctx: &Ctx) {
    let id = ctx.collection("rotate", Limits::new(2, 1000, 2000).expect("limits")).await;
    let mut versions = Vec::new();
    for i in 0..3 {
        versions.push(ctx.engine.upload(&ctx.actor, &id, body_of(pattern(i, 100), 30)).await.expect("upload"));
    }
    assert!(!ctx.exists(&versions[0].object_key).await, "evicted object deleted");
    assert!(ctx.exists(&versions[1].object_key).await && ctx.exists(&versions[2].object_key).await);
    let listed = ctx.engine.versions(&ctx.actor, &id, VersionQuery::first(10)).await.expect("list");
    assert_eq!(listed.items.iter().map(|v| v.number).collect::<Vec<_>>(), [2, 3]);
    let e = ctx.download(&id, VersionSelector::Number(1)).await.expect_err("rotated out");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// Quota refusals (announced or discovered while streaming), content of a failing producer
/// and a failing body leave no object, no pending row, and the versions before intact.
pub async fn refused_and_failed_uploads_leave_nothing(ctx: &Ctx) {
    let id = ctx.collection("refused", Limits::new(2, 1000, 2500).expect("limits")).await;
    let keep = pattern(9, 900);
    ctx.engine.upload(&ctx.actor, &id, body_of(keep.clone(), 100)).await.expect("upload");
    let too_big = pattern(10, 1501);
    let announced = UploadOptions::new().expected_size(too_big.len() as u64);
    let e =
        ctx.engine.upload_with(&ctx.actor, &id, body_of(too_big.clone(), 100), announced).await.expect_err("announced");
    assert!(matches!(e, Error::QuotaExceeded { allowed: 1500, received_at_least: 1501 }), "{e:?}");
    let e = ctx.engine.upload(&ctx.actor, &id, body_of(too_big, 100)).await.expect_err("discovered");
    assert!(matches!(e, Error::QuotaExceeded { allowed: 1500, received_at_least: 1501 }), "{e:?}");
    let e = ctx.engine.upload(&ctx.actor, &id, failing_body(pattern(11, 800), 100, Some(450))).await.expect_err("body");
    assert_eq!(e.kind(), ErrorKind::Interrupted);
    ctx.engine.wait_for_cleanups().await;
    assert_eq!(ctx.objects_of(&id).await.len(), 1, "only the committed version's object");
    let state = ctx.engine.catalog().collection_state(&id).await.expect("state");
    let tombstones = ctx.engine.catalog().list_tombstones(Some(&id), None, 10).await.expect("tombstones");
    assert_eq!(tombstones.len(), 2, "every upload refused after it began writing leaves a tombstone until recover()");
    assert!(state.pending.is_empty(), "reservations released");
    assert!(ctx.download(&id, VersionSelector::Latest).await.expect("download") == keep);
}

/// Deleting a version (without trash retention) purges it and deletes its object.
pub async fn delete_version_removes_its_object(ctx: &Ctx) {
    let id = ctx.collection("delete", Limits::new(3, 1000, 3000).expect("limits")).await;
    let v = ctx.engine.upload(&ctx.actor, &id, body_of(pattern(3, 10), 10)).await.expect("upload");
    let gone = ctx.engine.delete_version(&ctx.actor, &id, v.number).await.expect("delete");
    assert_eq!(gone.state, VersionState::Purged);
    assert!(!ctx.exists(&v.object_key).await);
    let e = ctx.engine.delete_version(&ctx.actor, &id, v.number).await.expect_err("twice");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    ctx.engine.delete_collection(&ctx.actor, &id).await.expect("delete the now empty collection");
}

/// A changed or shortened object makes the download fail loudly.
pub async fn download_detects_corruption_and_truncation(ctx: &Ctx) {
    let id = ctx.collection("corrupt", Limits::new(3, 1000, 3000).expect("limits")).await;
    let v = ctx.engine.upload(&ctx.actor, &id, body_of(pattern(4, 500), 100)).await.expect("upload");
    let key = Path::from(v.object_key.as_str());
    let mut flipped = pattern(4, 500).to_vec();
    flipped[250] ^= 1;
    ctx.engine.store().put(&key, PutPayload::from(flipped)).await.expect("overwrite");
    let e = ctx.download(&id, VersionSelector::Latest).await.expect_err("bit flip");
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    // A consumer that stops at the committed size (an HTTP response with a Content-Length)
    // must not receive every byte of the damaged object.
    let mut stream =
        ctx.engine.download(&ctx.actor, &id, VersionSelector::Latest).await.expect("download starts").into_stream();
    let mut received = 0;
    while received < 500 {
        match stream.try_next().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("the damaged download ended cleanly after {received} bytes"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
                break;
            }
        }
    }
    assert!(received < 500, "all 500 bytes of a damaged object were delivered before the error");
    ctx.engine.store().put(&key, PutPayload::from(pattern(4, 499))).await.expect("overwrite");
    let e = ctx.download(&id, VersionSelector::Latest).await.expect_err("truncated");
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    ctx.engine.store().delete(&key).await.expect("delete");
    let e = ctx.download(&id, VersionSelector::Latest).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
}

/// `recover()` aborts expired uploads and deletes what they wrote (the catalog's tombstones
/// prove it is garbage), reports objects no row refers to without deleting them, and never
/// touches committed versions.
pub async fn recover_deletes_garbage_and_never_unknown_objects(ctx: &Ctx) {
    // The objects below get the store's (real) times: the engine's clock catches up first, or
    // the checks run before this one (seconds on a remote store) leave it behind them.
    let real = chrono::Utc::now();
    if crate::clock::Clock::now(ctx.clock.as_ref()) < real {
        ctx.clock.set(real);
    }
    let id = ctx.collection("recover", Limits::new(3, 1000, 3000).expect("limits")).await;
    let kept = ctx.engine.upload(&ctx.actor, &id, body_of(pattern(5, 300), 100)).await.expect("upload");
    // An upload abandoned by a crash: a pending row and its object.
    let now = Timestamp::from(crate::clock::Clock::now(ctx.clock.as_ref()));
    let vid = crate::VersionId::generate();
    let key = crate::store::object_key(ctx.engine.key_prefix(), &id, &vid);
    let req = ReserveRequest::new(
        vid,
        id.clone(),
        key.to_string(),
        ctx.actor.uploader(),
        SizeHint::default(),
        now,
        now + chrono::Duration::seconds(30),
    );
    let strategies = Arc::new(RotationStrategies::default());
    ctx.engine.catalog().reserve(&req, &strategies).await.expect("reserve");
    ctx.engine.store().put(&key, PutPayload::from_static(b"partial")).await.expect("put");
    // An object nothing refers to: another repository's, or one a lost catalog knew.
    let unknown = ctx.engine.key_prefix().clone().join(id.as_str()).join("unknown");
    ctx.engine.store().put(&unknown, PutPayload::from_static(b"not ours")).await.expect("put");

    // Object times come from the store's clock; step past them.
    ctx.clock.advance(chrono::Duration::seconds(2));
    let early = ctx.engine.recover().await.expect("recover");
    assert_eq!((early.aborted_uploads, early.unknown_objects), (0, 1), "the live upload is left alone: {early:?}");
    assert_eq!(early.unknown_samples, [unknown.to_string()]);
    assert!(early.warnings().iter().any(|w| w.contains("unknown to the catalog")), "{early:?}");
    assert!(ctx.exists(key.as_ref()).await);
    ctx.clock.advance(chrono::Duration::seconds(30));
    let report = ctx.engine.recover().await.expect("recover");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.aborted_uploads, report.unknown_objects), (1, 1), "{report:?}");
    assert!(report.garbage_deleted >= 1 && report.tombstones_forgotten >= 1, "{report:?}");
    assert!(!ctx.exists(key.as_ref()).await, "the abandoned upload's object is deleted");
    assert!(ctx.exists(unknown.as_ref()).await, "an unknown object is never deleted");
    assert!(ctx.exists(&kept.object_key).await);
    let again = ctx.engine.recover().await.expect("recover");
    assert_eq!((again.aborted_uploads, again.garbage_deleted, again.unknown_objects), (0, 0, 1), "{again:?}");
    ctx.engine.store().delete(&unknown).await.expect("delete by hand");
    crate::testing::check_recovered(&ctx.engine, chrono::Utc::now() + chrono::Duration::hours(1)).await.expect("I5");
}

/// Uploads of unknown size share the extra space as their bytes arrive: of 32 uploads of
/// 900 KiB started together into 3 MiB for 100 versions of 1 KiB (about 2.9 MiB of extra
/// space), exactly the 3 that fit commit, and the others are refused for the bytes they had;
/// an upload that stalled early holds nobody's room, and one with an announced size that fits
/// succeeds beside it.
pub async fn chunked_uploads_share_the_extra_space(ctx: &Ctx) {
    const KIB: u64 = 1024;
    let limits = Limits::new(100, KIB, 3 << 20).expect("limits");
    let id = ctx.collection("shared", limits).await;
    let size = 900 * KIB as usize;
    let mut uploads = tokio::task::JoinSet::new();
    for i in 0..CONCURRENT_UPLOADS {
        let (engine, actor, id) = (ctx.engine.clone(), ctx.actor.clone(), id.clone());
        uploads.spawn(async move { engine.upload(&actor, &id, body_of(pattern(u64::from(i), size), 16 << 10)).await });
    }
    let (mut committed, mut refused) = (Vec::new(), 0);
    while let Some(done) = uploads.join_next().await {
        match done.expect("upload task") {
            Ok(v) => committed.push(v),
            Err(Error::QuotaExceeded { received_at_least, .. }) => {
                assert!(received_at_least > KIB, "refused for its bytes, {received_at_least}");
                refused += 1;
            }
            Err(e) => panic!("an upload failed otherwise: {e}"),
        }
    }
    assert_eq!((committed.len(), refused), (3, 29), "the three that fit commit");
    let state = ctx.engine.catalog().collection_state(&id).await.expect("state");
    assert!(state.pending.is_empty(), "every refused upload released its reservation");
    assert_eq!(state.counters.bytes, 3 * size as u64);
    assert!(state.counters.bytes <= limits.max_collection_size);
    for v in &committed {
        ctx.engine.delete_version(&ctx.actor, &id, v.number).await.expect("delete");
    }

    // A chunked upload stalls 4 KiB in; an announced upload of 900 KiB still fits.
    let (stalled_tx, stalled_rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    stalled_tx.unbounded_send(Ok(pattern(40, 4 << 10))).expect("send");
    let stalled = {
        let (engine, actor, id) = (ctx.engine.clone(), ctx.actor.clone(), id.clone());
        tokio::spawn(async move { engine.upload(&actor, &id, stalled_rx).await })
    };
    let pending = async {
        loop {
            let state = ctx.engine.catalog().collection_state(&id).await.expect("state");
            if !state.pending.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), pending).await.expect("the stalled upload started");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let announced = UploadOptions::new().expected_size(size as u64);
    let data = pattern(41, size);
    let v = ctx
        .engine
        .upload_with(&ctx.actor, &id, body_of(data, 64 << 10), announced)
        .await
        .expect("an announced upload fits beside a stalled one");
    assert_eq!(v.size, size as u64);
    // The stalled one goes on and commits too: both fit.
    stalled_tx.unbounded_send(Ok(pattern(42, size - (4 << 10)))).expect("send");
    drop(stalled_tx);
    let late = stalled.await.expect("task").expect("the stalled upload commits once its bytes arrive");
    assert_eq!(late.size, size as u64);
}

/// A process killed during an upload through a [`MultipartStore`] leaves its multipart upload
/// open (its runtime stops: no clean-up runs). Once its lease ran out, `recover()` aborts that
/// upload by the id the catalog recorded, and nothing else.
pub async fn a_crashed_uploads_multipart_upload_is_aborted(ctx: &Ctx, multipart: Arc<dyn MultipartStore>) {
    let id = ctx.collection("crashed", Limits::new(3, 64 << 20, 192 << 20).expect("limits")).await;
    let kept = ctx.engine.upload(&ctx.actor, &id, body_of(pattern(60, 1000), 100)).await.expect("upload");
    // The "process": its own runtime, shut down in the middle of the upload, past one part.
    let (engine, actor, collection) = (ctx.engine.clone(), ctx.actor.clone(), id.clone());
    let crashed = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        tx.unbounded_send(Ok(pattern(61, PART + 1000))).expect("send");
        let pending = runtime.block_on(async {
            let catalog = engine.catalog().clone();
            let uploading = collection.clone();
            tokio::spawn(async move { engine.upload(&actor, &uploading, rx).await });
            for _ in 0..2000 {
                let state = catalog.collection_state(&collection).await.expect("state");
                if let Some(p) = state.pending.first().filter(|p| p.staging.is_some()) {
                    // The first part is in the store once the body moved past it.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return p.clone();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the upload did not record its multipart id");
        });
        // Killed: nothing it runs finishes or cleans up.
        runtime.shutdown_background();
        drop(tx);
        pending
    })
    .await
    .expect("crashed process");
    let (key, upload_id) = (Path::from(crashed.object_key.as_str()), crashed.staging.clone().expect("staging"));
    // It is open: another part can be written to it.
    multipart.put_part(&key, &upload_id, 7, PutPayload::from_static(b"x")).await.expect("the upload is still open");
    ctx.clock.advance(chrono::Duration::minutes(2));
    let report = ctx.engine.recover().await.expect("recover");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.aborted_uploads, 1, "{report:?}");
    assert!(report.leftovers_removed >= 1, "the multipart upload was aborted: {report:?}");
    let e = multipart.put_part(&key, &upload_id, 8, PutPayload::from_static(b"x")).await;
    assert!(e.is_err(), "the multipart upload is gone");
    assert!(ctx.download(&id, VersionSelector::Latest).await.expect("download") == pattern(60, 1000));
    assert!(ctx.exists(&kept.object_key).await);
    let again = ctx.engine.recover().await.expect("recover");
    assert!(again.is_clean(), "aborting an upload already gone is not an error: {again:?}");
}

fn engine_on(store: &Arc<dyn ObjectStore>, catalog: Arc<dyn Catalog>, prefix: &str, adopt: bool) -> Engine {
    Engine::builder()
        .store(store.clone())
        .catalog(catalog)
        .key_prefix(prefix)
        .grace(Duration::ZERO)
        .adopt_store(adopt)
        .build()
        .expect("engine")
}

/// A catalog and a store are paired by a repository id: a wrong catalog, an empty one, a
/// second repository under the same prefix and a store whose marker was removed are refused
/// with both locations named, and nothing is deleted; adopting the store on purpose pairs
/// them.
pub async fn repository_identity_is_checked(store: Arc<dyn ObjectStore>) {
    let prefix = format!("identity-{}", uuid::Uuid::new_v4().simple());
    let actor = Actor::user("identity");
    let catalog: Arc<dyn Catalog> = Arc::new(crate::MemoryCatalog::new());
    let first = engine_on(&store, catalog.clone(), &prefix, false);
    let id = first.open_repository().await.expect("a new pair gets an id");
    let c = unique_collection("identity");
    first
        .create_collection(&actor, &c, CollectionSpec::new("i-${version}", Limits::new(3, 100, 300).expect("limits")))
        .await
        .expect("create");
    let v = first.upload(&actor, &c, body_of(pattern(1, 50), 10)).await.expect("upload");
    let objects = || async {
        let prefix = object_store::path::Path::from(prefix.as_str());
        let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.expect("list");
        metas.len()
    };
    let before = objects().await;
    assert_eq!(before, 3, "the version's object, its description and the marker");

    let refused = |engine: Engine, why: &'static str| async move {
        let e = engine.recover().await.expect_err(why);
        assert_eq!(e.kind(), ErrorKind::Conflict, "{why}: {e}");
        let text = e.to_string();
        assert!(text.contains("memory catalog") && text.contains(engine.key_prefix().as_ref()), "{why}: {text}");
        let e = engine.upload(&Actor::user("x"), &"anything".parse().expect("id"), body_of(pattern(2, 1), 1)).await;
        assert_eq!(e.expect_err(why).kind(), ErrorKind::Conflict, "{why}: uploads are refused too");
        text
    };
    // An empty catalog in front of the store (a typo in a catalog URL).
    let text = refused(engine_on(&store, Arc::new(crate::MemoryCatalog::new()), &prefix, false), "empty catalog").await;
    assert!(text.contains(&id.to_string()), "{text}");
    // A wrong catalog: another repository's.
    let other: Arc<dyn Catalog> = Arc::new(crate::MemoryCatalog::new());
    let other_prefix = format!("{prefix}-other");
    engine_on(&store, other.clone(), &other_prefix, false).open_repository().await.expect("another repository");
    refused(engine_on(&store, other.clone(), &prefix, false), "wrong catalog").await;
    refused(engine_on(&store, other, &prefix, true), "adopting never pairs two ids").await;
    assert_eq!(objects().await, before, "nothing was deleted");

    // The marker removed: refused until adopted on purpose.
    store.delete(&first.marker_key()).await.expect("delete marker");
    refused(engine_on(&store, catalog.clone(), &prefix, false), "marker removed").await;
    let adopted = engine_on(&store, catalog.clone(), &prefix, true);
    assert_eq!(
        adopted.open_repository().await.expect("adopt"),
        id,
        "the marker is written again with the catalog's id"
    );
    assert!(adopted.recover().await.expect("recover").is_clean());
    // A new catalog adopting the store takes its id (a rebuilt catalog).
    let rebuilt: Arc<dyn Catalog> = Arc::new(crate::MemoryCatalog::new());
    assert_eq!(engine_on(&store, rebuilt.clone(), &prefix, true).open_repository().await.expect("adopt"), id);
    assert_eq!(rebuilt.repository().await.expect("repository").id, Some(id));
    // The versions survived every refusal.
    let got: Vec<Bytes> = first
        .download(&actor, &c, VersionSelector::Latest)
        .await
        .expect("download")
        .into_stream()
        .try_collect()
        .await
        .expect("bytes");
    assert_eq!(got.concat(), pattern(1, 50).to_vec());
    assert_eq!(v.number, 1);
}
