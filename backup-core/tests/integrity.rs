//! Scrubs and quarantine; a catalog rebuilt from the store facing damaged, foreign, truncated
//! and doubled descriptions, and a store that fails mid-way.

use std::sync::Arc;
use std::task::Poll;

use backup_core::catalog::Catalog;
use backup_core::testing::{FaultMode, Faults, FaultyStore, body_of, pattern};
use backup_core::{
    Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, MemoryCatalog, RebuildOptions, ScrubOptions,
    ScrubSample, Version, VersionSelector,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Where a version's description is: its object's key and the documented suffix.
fn description_key(object_key: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("{object_key}{}", backup_core::store::DESCRIPTION_SUFFIX))
}

struct Setup {
    store: Arc<dyn ObjectStore>,
    engine: Engine,
    actor: Actor,
    id: CollectionId,
    versions: Vec<Version>,
}

async fn setup(n: u64) -> Setup {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let engine = Engine::builder().store(store.clone()).build().unwrap();
    let (actor, id): (Actor, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
    engine
        .create_collection(
            &actor,
            &id,
            CollectionSpec::new("db-${version}", Limits::new(10, 1 << 20, 10 << 20).unwrap()),
        )
        .await
        .unwrap();
    let mut versions = Vec::new();
    for i in 0..n {
        versions.push(engine.upload(&actor, &id, body_of(pattern(i, 3000 + i as usize), 700)).await.unwrap());
    }
    Setup { store, engine, actor, id, versions }
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, body: impl Into<Bytes>) {
    store.put(&Path::from(key), PutPayload::from(body.into())).await.unwrap();
}

#[tokio::test]
async fn scrub_quarantines_bit_rot_and_missing_objects_and_releases_repaired_ones() {
    let s = setup(3).await;
    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!((report.checked, report.intact, report.descriptions_written), (3, 3, 0), "{report:?}");
    let original = s.store.get(&Path::from(s.versions[0].object_key.as_str())).await.unwrap().bytes().await.unwrap();
    let mut rotten = original.to_vec();
    rotten[1234] ^= 0x10;
    put(&s.store, &s.versions[0].object_key, rotten).await;
    s.store.delete(&Path::from(s.versions[1].object_key.as_str())).await.unwrap();

    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!((report.intact, report.newly_quarantined), (1, 2), "{report:?}");
    assert!(report.damaged[0].error.as_deref().unwrap().contains("digest"), "{report:?}");
    assert!(report.damaged[1].error.as_deref().unwrap().contains("missing"), "{report:?}");
    // Still listed, with the reason; downloads refuse it; the audit log says so.
    let v1 = s.engine.version(&s.actor, &s.id, VersionSelector::Number(1)).await.unwrap();
    assert!(v1.quarantined.as_deref().unwrap().contains("digest") && v1.verified_at.is_some(), "{v1:?}");
    let e = s.engine.download(&s.actor, &s.id, VersionSelector::Number(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted);
    assert!(e.to_string().contains("quarantined"), "{e}");
    let audit = s.engine.catalog().list_audit(None, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "version.quarantine").count(), 2, "{audit:?}");
    // Scrubbed again: still damaged, not quarantined twice.
    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!((report.damaged.len(), report.newly_quarantined), (2, 0), "{report:?}");

    // The operator puts the object back: the next check releases it.
    put(&s.store, &s.versions[0].object_key, original.clone()).await;
    let checks = s.engine.verify_collection(&s.actor, &s.id).await.unwrap();
    assert_eq!(checks.iter().map(|c| (c.number, c.ok)).collect::<Vec<_>>(), [(1, true), (2, false), (3, true)]);
    let back = s.engine.download(&s.actor, &s.id, VersionSelector::Number(1)).await.unwrap();
    let bytes: Vec<Bytes> = back.into_stream().try_collect().await.unwrap();
    assert_eq!(bytes.concat(), original.to_vec());
}

#[tokio::test]
async fn scrub_samples_resumes_after_an_interruption_and_repairs_descriptions() {
    let s = setup(6).await;
    // A description lost (its write failed after a commit): the scrub writes it again.
    s.store.delete(&description_key(&s.versions[2].object_key)).await.unwrap();
    // Interrupted after a few versions (a restart): the next scrub resumes.
    // (Another engine on the same catalog and store, whose store calls each take a poll.)
    let faults = Faults::new();
    faults.yield_before_calls(true);
    let slow = Engine::builder()
        .catalog(s.engine.catalog().clone())
        .store(Arc::new(FaultyStore::new(s.store.clone(), faults)))
        .build()
        .unwrap();
    let all = ScrubOptions::all();
    let mut first = Box::pin(slow.scrub(&all));
    for _ in 0..12 {
        if let Poll::Ready(r) = futures::poll!(first.as_mut()) {
            panic!("the scrub finished in 12 polls: {r:?}");
        }
    }
    drop(first);
    let verified = |engine: Engine| async move {
        let page = engine.versions(&Actor::user("me"), &"db".parse().unwrap(), Default::default()).await.unwrap();
        page.items.iter().filter(|v| v.verified_at.is_some()).count() as u64
    };
    let done_before = verified(s.engine.clone()).await;
    assert!((1..6).contains(&done_before), "interrupted half-way: {done_before} verified");
    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert!(report.resumed, "{report:?}");
    assert_eq!(report.checked, 6 - done_before, "only what the first scrub had not verified: {report:?}");
    assert_eq!(verified(s.engine.clone()).await, 6);
    s.store.head(&description_key(&s.versions[2].object_key)).await.expect("the description is back");
    // Finished: the next scrub starts afresh and reads everything again.
    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert!(!report.resumed && report.checked == 6, "{report:?}");
    // Only those not verified for an hour: none.
    let report = s
        .engine
        .scrub(&ScrubOptions::sample(ScrubSample::NotVerifiedFor(std::time::Duration::from_secs(3600))))
        .await
        .unwrap();
    assert_eq!(report.checked, 0, "{report:?}");
    // A sample reads some, throttled.
    let report = s.engine.scrub(&ScrubOptions::sample(ScrubSample::Percent(100)).throttle(1 << 30)).await.unwrap();
    assert_eq!(report.checked, 6);
    let e = s.engine.scrub(&ScrubOptions::sample(ScrubSample::Percent(101))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_scrub_does_not_take_a_failing_store_for_damage() {
    let faults = Faults::new();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let engine = Engine::builder().store(Arc::new(FaultyStore::new(inner, faults.clone()))).build().unwrap();
    let (actor, id): (Actor, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
    engine
        .create_collection(&actor, &id, CollectionSpec::new("db-${version}", Limits::new(3, 1 << 20, 4 << 20).unwrap()))
        .await
        .unwrap();
    engine.upload(&actor, &id, body_of(pattern(1, 5000), 1000)).await.unwrap();
    faults.reset();
    faults.fail_read_at_byte(Some(2000));
    let report = engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!((report.checked, report.newly_quarantined, report.failures.len()), (0, 0, 1), "{report:?}");
    assert!(engine.version(&actor, &id, VersionSelector::Latest).await.unwrap().quarantined.is_none());
}

#[tokio::test]
async fn rebuild_reports_what_it_cannot_trust_and_never_guesses() {
    let s = setup(4).await;
    let [v1, v2, v3, v4] = [&s.versions[0], &s.versions[1], &s.versions[2], &s.versions[3]];
    // v1: truncated description. v2: its object has another size. v3: its description moved
    // next to another object (two objects claim version 3). v4: intact. An object without any
    // description, and a description written for another repository.
    let d1 = description_key(&v1.object_key);
    let bytes = s.store.get(&d1).await.unwrap().bytes().await.unwrap();
    put(&s.store, d1.as_ref(), bytes.slice(..bytes.len() / 2)).await;
    put(&s.store, &v2.object_key, "short").await;
    let d3 = s.store.get(&description_key(&v3.object_key)).await.unwrap().bytes().await.unwrap();
    let twin = format!("{}/db/{}", s.engine.key_prefix(), backup_core::VersionId::generate());
    let twin_description =
        String::from_utf8(d3.to_vec()).unwrap().replace(&v3.id.to_string(), twin.rsplit('/').next().unwrap());
    put(&s.store, &twin, vec![0u8; v3.size as usize]).await;
    put(&s.store, description_key(&twin).as_ref(), twin_description).await;
    let stray = format!("{}/db/{}", s.engine.key_prefix(), backup_core::VersionId::generate());
    put(&s.store, &stray, "who am I").await;
    let d4 =
        String::from_utf8(s.store.get(&description_key(&v4.object_key)).await.unwrap().bytes().await.unwrap().to_vec())
            .unwrap();
    let repository = s.engine.open_repository().await.unwrap().to_string();
    let foreign = backup_core::RepositoryId::generate().to_string();
    let other = format!("{}/db/{}", s.engine.key_prefix(), backup_core::VersionId::generate());
    let other_description =
        d4.replace(&repository, &foreign).replace(&v4.id.to_string(), other.rsplit('/').next().unwrap());
    put(&s.store, &other, vec![0u8; v4.size as usize]).await;
    put(&s.store, description_key(&other).as_ref(), other_description).await;

    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    let rebuilt = Engine::builder().catalog(catalog).store(s.store.clone()).adopt_store(true).build().unwrap();
    let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.unwrap();
    let summary = report.summary();
    assert_eq!(report.versions, 2, "v2 (quarantined) and v4: {summary}");
    let said = |needle: &str| summary.lines().any(|l| l.contains(needle));
    assert!(said(&format!("description {d1}: unreadable")), "{summary}");
    assert!(said(&format!("object {}: no description", v1.object_key)), "{summary}");
    assert!(said("version 3 of db is claimed by 2 descriptions"), "{summary}");
    assert!(said(&format!("object {stray}: no description")), "{summary}");
    assert!(said(&format!("written for repository {foreign}")), "{summary}");
    assert!(said(&format!("quarantined: version 2 of db: its object {} has 5 bytes", v2.object_key)), "{summary}");
    let got = rebuilt.version(&s.actor, &s.id, VersionSelector::Number(2)).await.unwrap();
    assert!(got.quarantined.is_some(), "{got:?}");
    assert!(rebuilt.version(&s.actor, &s.id, VersionSelector::Number(3)).await.is_err(), "never guessed");
    let v5 = rebuilt.upload(&s.actor, &s.id, body_of(pattern(9, 10), 5)).await.unwrap();
    assert_eq!(v5.number, 5);
}

#[tokio::test]
async fn a_rebuild_interrupted_by_a_failing_store_leaves_the_catalog_empty_and_runs_again() {
    let s = setup(3).await;
    let faults = Faults::new();
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    let flaky = Arc::new(FaultyStore::new(s.store.clone(), faults.clone()));
    let rebuilt = Engine::builder().catalog(catalog.clone()).store(flaky).adopt_store(true).build().unwrap();
    // The marker, the listing, then descriptions: the listing fails, then a description.
    for call in [2, 4] {
        faults.reset();
        faults.fail_call(call, FaultMode::Before);
        let e = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.unwrap_err();
        assert!(faults.fired() && e.kind() != ErrorKind::Internal, "call {call}: {e}");
        assert!(catalog.list_collections(None, 10).await.unwrap().is_empty(), "call {call}: all or nothing");
        assert!(!catalog.repository().await.unwrap().holds_versions, "call {call}");
    }
    faults.reset();
    let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.unwrap();
    assert_eq!(report.versions, 3, "{}", report.summary());
}

#[tokio::test]
async fn imports_keep_numbers_refuse_wrong_sizes_and_run_again_after_an_interruption() {
    use backup_core::testing::failing_body;
    use backup_core::{ImportOutcome, ImportedVersion, Timestamp, Uploader, VersionId};
    let s = setup(0).await;
    let when = Timestamp::from(chrono::Utc::now() - chrono::Duration::days(3));
    let v7 =
        ImportedVersion::new(VersionId::generate(), s.id.clone(), 7, "db-7.sql", 5000, Uploader::user("old"), when);
    // Interrupted (the source fails half-way): nothing registered.
    let e = s.engine.import_version(&v7, failing_body(pattern(7, 5000), 500, Some(2500))).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
    assert!(!s.engine.knows_version(v7.id).await.unwrap());
    // Too short, too long: refused, nothing registered.
    for len in [4999, 5001] {
        let e = s.engine.import_version(&v7, body_of(pattern(7, len), 500)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{len}: {e}");
    }
    // Run again: imported with its number, name, uploader and time; a second time, nothing.
    let ImportOutcome::Imported(v) = s.engine.import_version(&v7, body_of(pattern(7, 5000), 500)).await.unwrap() else {
        panic!("imported")
    };
    assert_eq!((v.number, v.filename.as_str(), v.uploader.user.as_str(), v.created_at), (7, "db-7.sql", "old", when));
    let again = s.engine.import_version(&v7, body_of(pattern(7, 5000), 500)).await.unwrap();
    assert_eq!(again, ImportOutcome::AlreadyImported);
    // Another version with the same number: refused.
    let twin = ImportedVersion::new(VersionId::generate(), s.id.clone(), 7, "db-7b.sql", 10, Uploader::user("x"), when);
    let e = s.engine.import_version(&twin, body_of(pattern(8, 10), 5)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    // Downloads verify against the digest computed on the way; the numbering goes on.
    let got = s.engine.download(&s.actor, &s.id, VersionSelector::Number(7)).await.unwrap();
    let bytes: Vec<Bytes> = got.into_stream().try_collect().await.unwrap();
    assert_eq!(bytes.concat(), pattern(7, 5000).to_vec());
    let next = s.engine.upload(&s.actor, &s.id, body_of(pattern(9, 10), 5)).await.unwrap();
    assert_eq!(next.number, 8);
    // Described like any version: a rebuild brings it back.
    let rebuilt = Engine::builder()
        .catalog(Arc::new(MemoryCatalog::new()))
        .store(s.store.clone())
        .adopt_store(true)
        .build()
        .unwrap();
    let report = rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.unwrap();
    assert_eq!(report.versions, 2, "{}", report.summary());
}

#[tokio::test]
async fn a_restored_snapshot_reports_each_damaged_version_once() {
    use backup_core::catalog::CatalogRecord;
    let s = setup(2).await;
    let snapshot: Vec<CatalogRecord> = s.engine.catalog().export().await.unwrap().try_collect().await.unwrap();
    // Version 1's object is lost; its description stays.
    s.store.delete(&Path::from(s.versions[0].object_key.as_str())).await.unwrap();
    let restored: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    restored.import(futures::stream::iter(snapshot.into_iter().map(Ok)).boxed()).await.unwrap();
    let engine = Engine::builder().catalog(restored).store(s.store.clone()).build().unwrap();
    let report = engine.rebuild_catalog(&RebuildOptions::add_missing()).await.unwrap();
    assert_eq!(report.quarantined.len(), 1, "{}", report.summary());
    assert!(report.quarantined[0].contains("version 1 of db"), "{}", report.summary());
    let v1 = engine.catalog().get_version(&s.id, VersionSelector::Number(1)).await.unwrap();
    assert!(v1.quarantined.is_some());
}

/// Records every report, and reports every step.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<backup_core::ProgressUpdate>>);

impl backup_core::Progress for Recorded {
    fn report(&self, update: &backup_core::ProgressUpdate) {
        self.0.lock().unwrap().push(update.clone());
    }
    fn interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A verification and a rebuild report their progress (issue 24 §5.6): the versions and bytes
/// done of the totals the catalog counts, the rebuild phase by phase; a verification without a
/// progress behaves as before.
#[tokio::test]
async fn a_verification_and_a_rebuild_report_their_progress() {
    let s = setup(4).await;
    let total_bytes: u64 = s.versions.iter().map(|v| v.size).sum();
    let recorded = Arc::new(Recorded::default());
    let checks = s.engine.verify_collection_with(&s.actor, &s.id, Some(recorded.clone())).await.unwrap();
    assert_eq!(checks, s.engine.verify_collection(&s.actor, &s.id).await.unwrap());
    let seen: Vec<_> = recorded.0.lock().unwrap().drain(..).collect();
    assert!(seen.iter().all(|u| u.phase == "verifying db" && u.total == Some(4) && u.total_bytes == Some(total_bytes)));
    let (first, last) = (seen.first().unwrap(), seen.last().unwrap());
    assert_eq!((first.done, first.bytes, first.finished), (0, 0, false));
    assert_eq!((last.done, last.bytes, last.finished), (4, total_bytes, true));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done && w[0].bytes <= w[1].bytes), "figures only grow");
    assert!(seen.len() > 4, "reported between the ends: {seen:#?}");

    let rebuilt = Engine::builder()
        .catalog(Arc::new(MemoryCatalog::new()))
        .store(s.store.clone())
        .adopt_store(true)
        .build()
        .unwrap();
    let options = RebuildOptions::empty_catalog().verify_digests(true).progress(recorded.clone());
    assert_eq!(rebuilt.rebuild_catalog(&options).await.unwrap().versions, 4);
    let seen = recorded.0.lock().unwrap();
    let ends: Vec<(&str, u64, Option<u64>, u64)> =
        seen.iter().filter(|u| u.finished).map(|u| (u.phase.as_str(), u.done, u.total, u.bytes)).collect();
    let descriptions: u64 = ends[1].3;
    assert_eq!(
        ends,
        [
            ("listing the store", ends[0].1, None, 0),
            ("reading descriptions", 4, Some(4), descriptions),
            ("checking objects", 4, Some(4), total_bytes),
            ("writing the catalog", 4, Some(4), 0),
        ]
    );
    assert!(ends[0].1 >= 8, "objects and descriptions listed: {}", ends[0].1);
}
