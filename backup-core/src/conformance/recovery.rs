//! The disaster-recovery drill over one object store: the catalog is lost, and comes back
//! from the store alone, or from a snapshot plus the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::unique_collection;
use crate::authz::Actor;
use crate::catalog::{Catalog, CatalogRecord, VersionQuery};
use crate::engine::{Engine, RebuildOptions};
use crate::id::CollectionId;
use crate::protocol::ProtectionChange;
use crate::spec::{CollectionSpec, Limits};
use crate::testing::{body_of, pattern};
use crate::version::{Version, VersionSelector, VersionState};

pub use super::NewCatalog;

/// Calls `$callback!` with the name of every check of the disaster-recovery suite, each a
/// `pub async fn(Arc<dyn ObjectStore>, NewCatalog<'_>)` of [`crate::conformance::recovery`]:
/// the one list that [`run_all`] is made from, and that a backend's test file expands into one
/// test per check (as `backup-store`'s `tests/disaster_recovery.rs` does with SQLite and
/// PostgreSQL), so a check added here runs on every backend, and a `pub async fn` check missing
/// from this list fails `backup-core`'s tests.
///
/// `for_each_recovery_check!(callback)` expands to `callback! { name, … }`, and
/// `for_each_recovery_check!(callback, tokens…)` to `callback! { tokens… ; name, … }`.
///
/// ```
/// use std::sync::Arc;
/// use backup_core::MemoryCatalog;
/// use backup_core::catalog::Catalog;
/// use futures::future::BoxFuture;
///
/// fn memory() -> BoxFuture<'static, Arc<dyn Catalog>> {
///     Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
/// }
///
/// macro_rules! one_test_per_check {
///     ($($check:ident),* $(,)?) => {
///         $(
///             #[tokio::test]
///             async fn $check() {
///                 let store = Arc::new(object_store::memory::InMemory::new());
///                 backup_core::conformance::recovery::$check(store, &memory).await;
///             }
///         )*
///     };
/// }
/// backup_core::for_each_recovery_check!(one_test_per_check);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! for_each_recovery_check {
    ($callback:ident) => {
        $crate::for_each_recovery_check! { @list $callback {} }
    };
    ($callback:ident, $($extra:tt)*) => {
        $crate::for_each_recovery_check! { @list $callback { $($extra)* ; } }
    };
    (@list $callback:ident { $($extra:tt)* }) => {
        $callback! {
            $($extra)*
            disaster_recovery_drill,
            out_of_range_numbers_and_unusable_specs_are_skipped,
            maximal_metadata_survives_a_rebuild,
            recovery_describes_a_version_committed_without_its_description,
            a_rebuild_never_reuses_a_number,
        }
    };
}

macro_rules! run_all {
    ($($check:ident),* $(,)?) => {
        /// Runs every check of the suite against `store`, each under a key prefix of its own,
        /// with fresh catalogs from `new_catalog`.
        pub async fn run_all(store: Arc<dyn ObjectStore>, new_catalog: NewCatalog<'_>) {
            $( $check(store.clone(), new_catalog).await; )*
        }
    };
}

crate::for_each_recovery_check!(run_all);

fn engine_on(store: &Arc<dyn ObjectStore>, catalog: Arc<dyn Catalog>, prefix: &str, adopt: bool) -> Engine {
    engine_with_clock(store, catalog, prefix, adopt, Arc::new(crate::clock::SystemClock))
}

fn engine_with_clock(
    store: &Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    prefix: &str,
    adopt: bool,
    clock: Arc<dyn crate::clock::Clock>,
) -> Engine {
    Engine::builder()
        .clock(clock)
        .store(store.clone())
        .catalog(catalog)
        .key_prefix(prefix)
        .trash_retention(Duration::from_secs(3600))
        .adopt_store(adopt)
        .build()
        .expect("engine")
}

/// Every version of every collection, by (collection, number), trashed ones included.
async fn all_versions(engine: &Engine, ids: &[CollectionId]) -> BTreeMap<(CollectionId, u64), Version> {
    let mut out = BTreeMap::new();
    for id in ids {
        let listed = engine.catalog().list_versions(id, &VersionQuery::first(1000).with_trashed()).await.expect("list");
        for v in listed {
            out.insert((id.clone(), v.number), v);
        }
    }
    out
}

/// What must survive a rebuild: identity, name, content, who and when, state, protection.
fn same(a: &Version, b: &Version) -> bool {
    (a.id, a.number, &a.filename, &a.object_key, a.size, a.digest, &a.uploader, a.created_at, a.committed_at)
        == (b.id, b.number, &b.filename, &b.object_key, b.size, b.digest, &b.uploader, b.created_at, b.committed_at)
        && (a.state, a.held, a.protected_until) == (b.state, b.held, b.protected_until)
}

async fn bytes_of(engine: &Engine, actor: &Actor, id: &CollectionId, number: u64) -> Vec<u8> {
    let download = engine.download(actor, id, VersionSelector::Number(number)).await.expect("download");
    let chunks: Vec<bytes::Bytes> = download.into_stream().try_collect().await.expect("verified bytes");
    chunks.concat()
}

/// Checks that `rebuilt` holds every version `original` holds, the same, and that every
/// committed one downloads byte-identical.
async fn check_same(original: &Engine, rebuilt: &Engine, ids: &[CollectionId], actor: &Actor, when: &str) {
    let before = all_versions(original, ids).await;
    let after = all_versions(rebuilt, ids).await;
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "{when}: the same versions");
    for (key, v) in &before {
        let w = &after[key];
        assert!(same(v, w), "{when}: version {} of {} differs:\n{v:?}\n{w:?}", key.1, key.0);
        if v.state == VersionState::Committed {
            assert_eq!(
                bytes_of(rebuilt, actor, &key.0, key.1).await,
                bytes_of(original, actor, &key.0, key.1).await,
                "{when}: version {} of {} downloads the same bytes",
                key.1,
                key.0
            );
        }
    }
}

/// The drill: versions are uploaded into several collections (some rotated out and purged,
/// some deleted into the trash, one held), the catalog is lost, and a new catalog rebuilt from
/// the store alone holds every version with the same number, filename, size, digest, uploader,
/// times, state and hold; every committed version downloads byte-identical; the next upload
/// continues the numbering. Then the same from a snapshot taken half-way plus the versions
/// the store describes after it. A second rebuild into the rebuilt catalog is refused.
pub async fn disaster_recovery_drill(store: Arc<dyn ObjectStore>, new_catalog: NewCatalog<'_>) {
    let prefix = format!("drill-{}", uuid::Uuid::new_v4().simple());
    let actor = Actor::user("drill");
    let clock = Arc::new(crate::clock::ManualClock::starting_now());
    let original = engine_with_clock(&store, new_catalog().await, &prefix, false, clock.clone());
    let (db, files) = (unique_collection("db"), unique_collection("files"));
    let spec = |template: &str, n| CollectionSpec::new(template, Limits::new(n, 10_000, 100_000).expect("limits"));
    original.create_collection(&actor, &db, spec("db-${version}.sql.gz", 3)).await.expect("create");
    original.create_collection(&actor, &files, spec("files-v${version}.tar", 5)).await.expect("create");
    let upload = |id: CollectionId, seed: u64, len: usize| {
        let (engine, actor) = (original.clone(), actor.clone());
        async move { engine.upload(&actor, &id, body_of(pattern(seed, len), 333)).await.expect("upload") }
    };
    for i in 0..4 {
        upload(db.clone(), i, 1000 + i as usize).await;
    }
    upload(files.clone(), 10, 0).await;
    upload(files.clone(), 11, 4321).await;
    original.protect_version(&actor, &db, 2, ProtectionChange::hold()).await.expect("hold");
    original.delete_version(&actor, &files, 1).await.expect("delete into the trash");

    // A snapshot half-way.
    let snapshot: Vec<CatalogRecord> =
        original.catalog().export().await.expect("export").try_collect().await.expect("records");

    // The trash retention of the versions trashed before the snapshot ends: purged.
    clock.advance(chrono::Duration::hours(2));
    let purged = original.recover().await.expect("recover");
    assert_eq!(purged.purged_versions, 2, "{purged:?}");
    upload(db.clone(), 20, 777).await; // rotates version 3 into the trash (2 is held)
    upload(files.clone(), 21, 99).await;
    original.delete_version(&actor, &files, 2).await.expect("deleted after the snapshot");
    let ids = [db.clone(), files.clone()];

    // The catalog is lost: rebuilt from the store alone.
    let rebuilt = engine_on(&store, new_catalog().await, &prefix, true);
    let options = RebuildOptions::empty_catalog().verify_digests(true);
    let report = rebuilt.rebuild_catalog(&options).await.expect("rebuild");
    assert_eq!(report.collections, 2, "{report:?}");
    assert!(report.skipped.is_empty() && report.quarantined.is_empty(), "{}", report.summary());
    check_same(&original, &rebuilt, &ids, &actor, "rebuilt from the store").await;
    let e = rebuilt.rebuild_catalog(&options).await.expect_err("the catalog is no longer empty");
    assert_eq!(e.kind(), crate::ErrorKind::Conflict, "{e}");
    let next = rebuilt.upload(&actor, &db, body_of(pattern(30, 10), 5)).await.expect("upload after the rebuild");
    let last = original.version(&actor, &db, VersionSelector::Latest).await.expect("latest");
    assert_eq!(next.number, last.number + 1, "the numbering continues");

    // Lost again, from the snapshot plus what the store describes after it (the rebuilt
    // engine's upload included).
    let restored = new_catalog().await;
    restored.import(futures::stream::iter(snapshot.into_iter().map(Ok)).boxed()).await.expect("import the snapshot");
    let caught_up = engine_on(&store, restored, &prefix, false);
    let report = caught_up.rebuild_catalog(&RebuildOptions::add_missing()).await.expect("add what is missing");
    // Trashed after the snapshot: db 3 (rotated), db 4 (rotated by the rebuilt engine's
    // upload), files 2 (deleted); purged after it: db 1, files 1; new: db 5 and 6, files 3.
    let summary = report.summary();
    assert_eq!((report.trashed, report.purged, report.versions), (3, 2, 3), "{summary}");
    assert!(report.quarantined.is_empty() && report.skipped.is_empty(), "{summary}");
    let e = caught_up.restore_version(&actor, &db, 1).await.expect_err("a purged version is not restorable");
    assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
    check_same(&rebuilt, &caught_up, &ids, &actor, "from the snapshot and the store").await;
    let again = caught_up.rebuild_catalog(&RebuildOptions::add_missing()).await.expect("again");
    assert_eq!((again.versions, again.trashed), (0, 0), "a second run adds nothing: {}", again.summary());
}

/// The description of `v` as JSON, to forge others from.
async fn description_json(store: &Arc<dyn ObjectStore>, v: &Version) -> serde_json::Value {
    let got = store.get(&crate::store::description_key(&v.object_key)).await.expect("the description");
    serde_json::from_slice(&got.bytes().await.expect("its bytes")).expect("a description is JSON")
}

/// Writes an object of `size` bytes for a new version id of `collection` under `prefix`, and
/// next to it a description made from `template` saying it is version `number`; returns the
/// description's key.
async fn forge(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    template: &serde_json::Value,
    collection: &CollectionId,
    number: u64,
    spec: Option<serde_json::Value>,
) -> String {
    let id = crate::id::VersionId::generate();
    let key = format!("{prefix}/{collection}/{id}");
    let mut d = template.clone();
    let size = d["version"]["size"].as_u64().expect("a size");
    d["version"]["id"] = serde_json::json!(id.to_string());
    d["version"]["collection"] = serde_json::json!(collection.as_str());
    d["version"]["object_key"] = serde_json::json!(key);
    d["version"]["number"] = serde_json::json!(number);
    if let Some(spec) = spec {
        d["spec"] = spec;
    }
    store.put(&Path::from(key.as_str()), PutPayload::from(vec![7u8; size as usize])).await.expect("put object");
    let description = crate::store::description_key(&key);
    store.put(&description, PutPayload::from(serde_json::to_vec(&d).expect("json"))).await.expect("put description");
    description.to_string()
}

/// Descriptions whose numbers no catalog can hold (0, 2^63, 2^64 − 1), and a collection known
/// only from descriptions whose spec this engine cannot use, are left out and reported; the
/// rest of the repository is rebuilt (into an empty catalog, and into the catalog that has it),
/// and the numbering goes on after the last valid number.
pub async fn out_of_range_numbers_and_unusable_specs_are_skipped(
    store: Arc<dyn ObjectStore>,
    new_catalog: NewCatalog<'_>,
) {
    let prefix = format!("numbers-{}", uuid::Uuid::new_v4().simple());
    let actor = Actor::user("drill");
    let original = engine_on(&store, new_catalog().await, &prefix, false);
    let db = unique_collection("db");
    let spec = CollectionSpec::new("db-${version}.sql", Limits::new(5, 10_000, 100_000).expect("limits"));
    original.create_collection(&actor, &db, spec).await.expect("create");
    let mut versions = Vec::new();
    for i in 0..3 {
        versions.push(original.upload(&actor, &db, body_of(pattern(i, 500), 100)).await.expect("upload"));
    }
    let template = description_json(&store, &versions[2]).await;
    let mut forged = Vec::new();
    for number in [0, 1 << 63, u64::MAX] {
        forged.push((number, forge(&store, &prefix, &template, &db, number, None).await));
    }
    let odd = unique_collection("odd");
    let mut unusable = template["spec"].clone();
    unusable["retention"] = serde_json::json!({ "strategy": "no-such-strategy" });
    forge(&store, &prefix, &template, &odd, 1, Some(unusable)).await;

    let check = |report: &crate::engine::RebuildReport, when: &str| {
        let summary = report.summary();
        for (number, key) in &forged {
            assert!(
                summary.lines().any(|l| l.contains(key.as_str()) && l.contains(&format!("version number {number}"))),
                "{when}: description {key} with number {number} is reported: {summary}"
            );
        }
        assert!(
            summary.lines().any(|l| l.contains(&format!("collection {odd}")) && l.contains("no-such-strategy")),
            "{when}: the unusable spec of {odd} is reported: {summary}"
        );
    };
    // Into the catalog that has the repository: nothing is added, nothing fails.
    let report = original.rebuild_catalog(&RebuildOptions::add_missing()).await.expect("add missing");
    assert_eq!((report.versions, report.already_present), (0, 3), "{}", report.summary());
    check(&report, "add missing");

    let rebuilt = engine_on(&store, new_catalog().await, &prefix, true);
    let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.expect("rebuild");
    assert_eq!((report.collections, report.versions), (1, 3), "{}", report.summary());
    check(&report, "rebuild");
    let e = rebuilt.catalog().get_collection(&odd).await.expect_err("not rebuilt");
    assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
    let next = rebuilt.upload(&actor, &db, body_of(pattern(9, 10), 5)).await.expect("upload after the rebuild");
    assert_eq!(next.number, 4, "the numbering goes on after the last valid number");
}

/// A version with the most metadata [`crate::check_metadata`] allows (64 entries with the
/// longest names, the whole byte budget, in characters JSON escapes six times over) is
/// described at its commit, comes back from its description in a rebuild, and a scrub finds
/// nothing to rewrite.
pub async fn maximal_metadata_survives_a_rebuild(store: Arc<dyn ObjectStore>, new_catalog: NewCatalog<'_>) {
    use crate::version::{MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, Metadata};
    let prefix = format!("metadata-{}", uuid::Uuid::new_v4().simple());
    let actor = Actor::user("drill");
    let original = engine_on(&store, new_catalog().await, &prefix, false);
    let id = unique_collection("meta");
    let spec = CollectionSpec::new("m-${version}", Limits::new(3, 10_000, 100_000).expect("limits"));
    original.create_collection(&actor, &id, spec).await.expect("create");
    let name_len = 64;
    let text_len = (MAX_METADATA_BYTES - MAX_METADATA_ENTRIES * name_len) / MAX_METADATA_ENTRIES;
    let metadata: Metadata =
        (0..MAX_METADATA_ENTRIES).map(|i| (format!("m{i:0>63}"), "\u{1}".repeat(text_len))).collect();
    assert_eq!(metadata.iter().map(|(n, t)| n.len() + t.len()).sum::<usize>(), MAX_METADATA_BYTES);
    crate::check_metadata(&metadata).expect("the most metadata allowed");
    let mut options = crate::engine::UploadOptions::new();
    for (name, text) in &metadata {
        options = options.metadata(name.clone(), text.clone());
    }
    let v = original
        .begin_upload(&actor, &id, body_of(pattern(1, 300), 100), options)
        .await
        .expect("upload")
        .commit()
        .await
        .expect("commit");
    assert_eq!(v.metadata, metadata);
    for _ in 0..2 {
        let report = original.scrub(&crate::engine::ScrubOptions::all()).await.expect("scrub");
        assert_eq!((report.checked, report.descriptions_written), (1, 0), "nothing to rewrite: {report:?}");
    }
    let rebuilt = engine_on(&store, new_catalog().await, &prefix, true);
    let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.expect("rebuild");
    assert_eq!(report.versions, 1, "{}", report.summary());
    assert!(report.skipped.is_empty(), "{}", report.summary());
    let back = rebuilt.version(&actor, &id, VersionSelector::Number(1)).await.expect("rebuilt");
    assert!(same(&v, &back) && back.metadata == metadata, "{back:?}");
}

/// Whether `v`'s description key holds a description (not nothing, not an upload's intent).
async fn described(store: &Arc<dyn ObjectStore>, v: &Version) -> bool {
    let key = crate::store::description_key(&v.object_key);
    match store.get(&key).await {
        Ok(got) => {
            let json: serde_json::Value =
                serde_json::from_slice(&got.bytes().await.expect("read")).expect("a description key holds JSON");
            json["format"] == "backup-engine-version" && json["version"]["number"] == v.number
        }
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("get {key}: {e}"),
    }
}

/// An engine whose store and catalog share one fault plan, so that the calls of an upload can
/// be counted and one of them failed.
fn faulty_engine(
    store: &Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    prefix: &str,
    faults: &crate::testing::Faults,
    trash_retention: Duration,
) -> Engine {
    use crate::testing::{FaultyCatalog, FaultyStore};
    Engine::builder()
        .store(Arc::new(FaultyStore::new(store.clone(), faults.clone())))
        .catalog(Arc::new(FaultyCatalog::new(catalog, faults.clone())))
        .key_prefix(prefix)
        .trash_retention(trash_retention)
        .build()
        .expect("engine")
}

/// Uploads into `id` through `engine`, whose commit succeeds and whose description is never
/// written: the process was killed between the two (simulated: the description's write fails,
/// and the engine is dropped). The same upload without a fault first tells which call that is.
async fn upload_killed_before_its_description(
    engine: &Engine,
    faults: &crate::testing::Faults,
    actor: &Actor,
    id: &CollectionId,
    seed: u64,
) -> Version {
    faults.reset();
    engine.upload(actor, id, body_of(pattern(seed, 700), 100)).await.expect("the measuring upload");
    let log = faults.log();
    let commit = log.iter().position(|&c| c == "commit").expect("a commit");
    let describe = commit + 1 + log[commit + 1..].iter().position(|&c| c == "put").expect("a description after it");
    faults.fail_call(describe as u64 + 1, crate::testing::FaultMode::Before);
    let v = engine.upload(actor, id, body_of(pattern(seed + 1, 700), 100)).await.expect("committed");
    assert!(faults.fired(), "the description's write failed");
    faults.reset();
    assert!(!described(engine.store(), &v).await, "version {} has no description", v.number);
    v
}

/// A version committed by a process killed before it wrote its description is described by
/// the next `recover()`, at once (not by the next scrub).
pub async fn recovery_describes_a_version_committed_without_its_description(
    store: Arc<dyn ObjectStore>,
    new_catalog: NewCatalog<'_>,
) {
    let prefix = format!("undescribed-{}", uuid::Uuid::new_v4().simple());
    let (actor, faults) = (Actor::user("drill"), crate::testing::Faults::new());
    let catalog = new_catalog().await;
    let killed = faulty_engine(&store, catalog.clone(), &prefix, &faults, Duration::ZERO);
    let id = unique_collection("killed");
    let spec = CollectionSpec::new("k-${version}", Limits::new(10, 10_000, 100_000).expect("limits"));
    killed.create_collection(&actor, &id, spec).await.expect("create");
    let v = upload_killed_before_its_description(&killed, &faults, &actor, &id, 1).await;
    drop(killed);

    let restarted = engine_on(&store, catalog, &prefix, false);
    let report = restarted.recover().await.expect("recover");
    assert!(described(&store, &v).await, "recover wrote the description of version {}: {report:?}", v.number);
    let report = restarted.scrub(&crate::engine::ScrubOptions::all()).await.expect("scrub");
    assert_eq!((report.checked, report.descriptions_written), (2, 0), "{report:?}");
}

/// A catalog lost at the worst moments is rebuilt without giving out a number again: after a
/// version was committed but not described (a killed process), after the newest version was
/// deleted and purged (its object and description gone), after the trash of the newest
/// version was purged, and after a commit that purged the version before it at once and was
/// killed before its description.
pub async fn a_rebuild_never_reuses_a_number(store: Arc<dyn ObjectStore>, new_catalog: NewCatalog<'_>) {
    let prefix = format!("reuse-{}", uuid::Uuid::new_v4().simple());
    let (actor, faults) = (Actor::user("drill"), crate::testing::Faults::new());
    let catalog = new_catalog().await;
    let spec = |max| CollectionSpec::new("r-${version}", Limits::new(max, 10_000, 100_000).expect("limits"));
    // Purges at once (no trash retention).
    let engine = faulty_engine(&store, catalog.clone(), &prefix, &faults, Duration::ZERO);
    let (killed, deleted, trashed, chain) = (
        unique_collection("killed"),
        unique_collection("deleted"),
        unique_collection("trashed"),
        unique_collection("chain"),
    );
    for id in [&killed, &deleted, &trashed] {
        engine.create_collection(&actor, id, spec(10)).await.expect("create");
    }
    engine.create_collection(&actor, &chain, spec(1)).await.expect("create");
    let mut given = BTreeMap::new();
    // Committed, never described.
    engine.upload(&actor, &killed, body_of(pattern(1, 700), 100)).await.expect("upload");
    given.insert(
        killed.clone(),
        upload_killed_before_its_description(&engine, &faults, &actor, &killed, 2).await.number,
    );
    // The newest deleted, purged at once.
    for i in 0..3 {
        engine.upload(&actor, &deleted, body_of(pattern(10 + i, 700), 100)).await.expect("upload");
    }
    engine.delete_version(&actor, &deleted, 3).await.expect("delete");
    given.insert(deleted.clone(), 3);
    // One version kept: each commit purges the one before; the last is never described.
    for i in 0..3 {
        engine.upload(&actor, &chain, body_of(pattern(20 + i, 700), 100)).await.expect("upload");
    }
    given
        .insert(chain.clone(), upload_killed_before_its_description(&engine, &faults, &actor, &chain, 30).await.number);
    // The newest deleted into the trash, purged after the trash retention.
    let clock = Arc::new(crate::clock::ManualClock::starting_now());
    let later = engine_with_clock(&store, catalog.clone(), &prefix, false, clock.clone());
    for i in 0..3 {
        later.upload(&actor, &trashed, body_of(pattern(40 + i, 700), 100)).await.expect("upload");
    }
    later.delete_version(&actor, &trashed, 3).await.expect("delete into the trash");
    clock.advance(chrono::Duration::hours(2));
    let purged = later.recover().await.expect("recover");
    assert_eq!(purged.purged_versions, 1, "{purged:?}");
    given.insert(trashed.clone(), 3);
    drop((engine, later));

    // The catalog is lost; the configuration declares the collections (the version of one
    // survives only in its description).
    let rebuilt = engine_on(&store, new_catalog().await, &prefix, true);
    let mut options = RebuildOptions::empty_catalog();
    for id in [&killed, &deleted, &trashed] {
        options = options.collection(id.clone(), spec(10));
    }
    let options = options.collection(chain.clone(), spec(1));
    let report = rebuilt.rebuild_catalog(&options).await.expect("rebuild");
    for (id, last) in given {
        let next = rebuilt.upload(&actor, &id, body_of(pattern(99, 10), 5)).await.expect("upload after the rebuild");
        assert!(
            next.number > last,
            "collection {id}: number {last} was given out before the loss; the rebuilt catalog gave {} ({})",
            next.number,
            report.summary()
        );
    }
}
