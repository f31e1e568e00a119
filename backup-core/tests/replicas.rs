//! Replicas: the queue that holds while a replica is down, copies that verify, healing of the
//! primary, deletions that travel late, and a catalog rebuilt from a replica alone.

use std::sync::Arc;
use std::time::Duration;

use backup_core::replica::{Replica, ReplicationOptions, ReplicationRun};
use backup_core::testing::{FaultMode, Faults, FaultyStore, body_of, pattern};
use backup_core::{
    Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, ManualClock, MemoryCatalog, RebuildOptions,
    ScrubOptions, Version, VersionQuery, VersionSelector,
};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn description_key(object_key: &str) -> Path {
    Path::from(format!("{object_key}{}", backup_core::store::DESCRIPTION_SUFFIX))
}

struct Setup {
    primary: Arc<dyn ObjectStore>,
    replica: Arc<dyn ObjectStore>,
    faults: Faults,
    clock: Arc<ManualClock>,
    engine: Engine,
    actor: Actor,
    id: CollectionId,
}

/// An engine on memory with one replica, `offsite`, whose store can be taken down.
async fn setup(delete_after: Duration) -> Setup {
    let primary: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let replica: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faults = Faults::new();
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(replica.clone(), faults.clone()));
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder()
        .store(primary.clone())
        .clock(clock.clone())
        .trash_retention(Duration::from_secs(3600))
        .replica(Replica::new("offsite", faulty).unwrap().delete_after(delete_after))
        .build()
        .unwrap();
    let (actor, id): (Actor, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
    let spec = CollectionSpec::new("db-${version}", Limits::new(1000, 1 << 20, 1 << 30).unwrap());
    engine.create_collection(&actor, &id, spec).await.unwrap();
    Setup { primary, replica, faults, clock, engine, actor, id }
}

impl Setup {
    async fn upload(&self, seed: u64) -> Version {
        self.engine.upload(&self.actor, &self.id, body_of(pattern(seed, 2000 + seed as usize), 700)).await.unwrap()
    }

    /// Runs replication until it has nothing more to do; the runs' totals.
    async fn replicate_all(&self) -> ReplicationRun {
        let mut total = ReplicationRun::default();
        for _ in 0..100 {
            let run = self.engine.replicate("offsite", "me", &ReplicationOptions::default()).await.unwrap();
            total.copied += run.copied;
            total.already_there += run.already_there;
            total.failed += run.failed;
            total.deleted += run.deleted;
            total.skipped += run.skipped;
            total.unavailable = run.unavailable.clone();
            if !run.more || run.unavailable.is_some() {
                return total;
            }
        }
        panic!("replication never finished");
    }

    async fn committed(&self) -> Vec<Version> {
        self.engine.versions(&self.actor, &self.id, VersionQuery::first(1000)).await.unwrap().items
    }
}

/// A download's bytes, read to its end.
async fn downloaded(d: backup_core::Download) -> Bytes {
    let chunks: Vec<Bytes> = d.into_stream().try_collect().await.unwrap();
    Bytes::from(chunks.concat())
}

async fn bytes_of(store: &Arc<dyn ObjectStore>, key: &str) -> Option<Bytes> {
    match store.get(&Path::from(key)).await {
        Ok(got) => Some(got.bytes().await.unwrap()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

/// Every committed version is on the replica, byte-identical, with its description.
async fn assert_replicated(s: &Setup) {
    for v in s.committed().await {
        let ours = bytes_of(&s.primary, &v.object_key).await.unwrap();
        let theirs =
            bytes_of(&s.replica, &v.object_key).await.unwrap_or_else(|| panic!("version {} missing", v.number));
        assert_eq!(ours, theirs, "version {}", v.number);
        assert!(bytes_of(&s.replica, description_key(&v.object_key).as_ref()).await.is_some(), "{}", v.number);
    }
}

#[tokio::test]
async fn the_queue_holds_while_the_replica_is_down_and_nothing_is_copied_twice() {
    let s = setup(Duration::from_secs(3600)).await;
    s.faults.fail_calls(1, u64::MAX / 2, FaultMode::Before);
    for i in 0..100 {
        s.upload(i).await;
    }
    let run = s.replicate_all().await;
    assert_eq!(run.copied, 0);
    assert!(run.unavailable.as_deref().is_some_and(|r| r.contains("offsite")), "{run:?}");
    let status = s.engine.replica_status("offsite").await.unwrap();
    assert_eq!(status.pending_versions, 100, "{status:?}");
    assert!(status.pending_bytes > 200_000 && status.unavailable.is_some(), "{status:?}");

    // Back up: the first half arrives, then the second as it is committed.
    s.faults.reset();
    for i in 100..200 {
        s.upload(i).await;
        if i % 50 == 0 {
            s.replicate_all().await;
        }
    }
    s.clock.advance(chrono::Duration::seconds(30));
    s.replicate_all().await;
    let status = s.engine.replica_status("offsite").await.unwrap();
    assert_eq!((status.pending_versions, status.lag_seconds), (0, 0), "{status:?}");
    assert!(status.unavailable.is_none() && status.failed.is_empty(), "{status:?}");
    // Each version was copied once; those the catch-up copied before their commit event was
    // read are found there, counted, not copied again.
    assert_eq!(status.copied, 200, "{status:?}");
    let found_there = status.already_there;
    assert_replicated(&s).await;

    // A reply lost after the replica stored the object: found there at the next run.
    let v = s.upload(500).await;
    s.faults.fail_calls(3, 1, FaultMode::After);
    s.replicate_all().await;
    s.faults.reset();
    s.clock.advance(chrono::Duration::seconds(30));
    s.replicate_all().await;
    let status = s.engine.replica_status("offsite").await.unwrap();
    assert_eq!(status.pending_versions, 0, "{status:?}");
    assert_eq!((status.copied, status.already_there), (200, found_there + 1), "{status:?}");
    assert!(bytes_of(&s.replica, &v.object_key).await.is_some());
}

#[tokio::test]
async fn a_replica_added_later_catches_up_with_every_version() {
    let s = setup(Duration::from_secs(3600)).await;
    let other: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for i in 0..30 {
        s.upload(i).await;
    }
    s.replicate_all().await;
    let first = s.engine.replicas()[0].clone();
    s.engine.set_replicas(vec![first, Replica::new("second", other.clone()).unwrap()]).unwrap();
    let before = s.engine.replica_status("second").await.unwrap();
    assert_eq!(before.pending_versions, 30, "{before:?}");
    let mut copied = 0;
    loop {
        let run = s.engine.replicate("second", "me", &ReplicationOptions::default().batch(7).workers(3)).await.unwrap();
        copied += run.copied;
        if !run.more {
            break;
        }
    }
    assert_eq!(copied, 30);
    for v in s.committed().await {
        assert_eq!(bytes_of(&other, &v.object_key).await, bytes_of(&s.primary, &v.object_key).await);
    }
    let after = s.engine.replica_status("second").await.unwrap();
    assert!(!after.catching_up && after.pending_versions == 0, "{after:?}");
    let e = s.engine.replicate("nowhere", "me", &ReplicationOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn the_scrub_repairs_the_primary_from_the_replica_and_quarantines_only_without_a_good_copy() {
    let s = setup(Duration::from_secs(3600)).await;
    let versions: Vec<Version> = futures::future::join_all((0..3).map(|i| s.upload(i))).await;
    s.replicate_all().await;
    let [flipped, deleted, both] = [&versions[0], &versions[1], &versions[2]];
    // A flipped byte, a deleted object.
    let mut bytes = bytes_of(&s.primary, &flipped.object_key).await.unwrap().to_vec();
    bytes[100] ^= 1;
    s.primary.put(&Path::from(flipped.object_key.as_str()), PutPayload::from(bytes.clone())).await.unwrap();
    s.primary.delete(&Path::from(deleted.object_key.as_str())).await.unwrap();
    // Both copies damaged.
    let mut other = bytes_of(&s.primary, &both.object_key).await.unwrap().to_vec();
    other[7] ^= 0xff;
    s.primary.put(&Path::from(both.object_key.as_str()), PutPayload::from(other.clone())).await.unwrap();
    s.replica.put(&Path::from(both.object_key.as_str()), PutPayload::from(other)).await.unwrap();

    let report = s.engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!(report.repaired, 2, "{report:?}");
    assert_eq!(report.newly_quarantined, 1, "{report:?}");
    assert_eq!(report.damaged.iter().map(|d| d.number).collect::<Vec<_>>(), vec![both.number]);
    for v in [flipped, deleted] {
        assert_eq!(
            bytes_of(&s.primary, &v.object_key).await,
            bytes_of(&s.replica, &v.object_key).await,
            "version {}",
            v.number
        );
        let body =
            downloaded(s.engine.download(&s.actor, &s.id, VersionSelector::Number(v.number)).await.unwrap()).await;
        assert_eq!(body, pattern(v.number - 1, 2000 + v.number as usize - 1));
    }
    let log = s.engine.read_audit(0, 1000).await.unwrap();
    let repaired: Vec<_> = log.iter().filter(|e| e.action == "version.repaired").collect();
    assert_eq!(repaired.len(), 2, "{repaired:?}");
    assert!(repaired.iter().all(|e| e.detail.contains("replica offsite")), "{repaired:?}");
    let e = s.engine.download(&s.actor, &s.id, VersionSelector::Number(both.number)).await.unwrap_err();
    assert!(e.to_string().contains("quarantined"), "{e}");
}

#[tokio::test]
async fn a_download_heals_a_missing_object_and_falls_back_to_the_replica() {
    let primary: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faults = Faults::new();
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(primary.clone(), faults.clone()));
    let replica: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let engine =
        Engine::builder().store(faulty).replica(Replica::new("offsite", replica.clone()).unwrap()).build().unwrap();
    let (actor, id): (Actor, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
    engine
        .create_collection(&actor, &id, CollectionSpec::new("x-${version}", Limits::new(5, 1 << 20, 1 << 23).unwrap()))
        .await
        .unwrap();
    let data = pattern(9, 50_000);
    let v = engine.upload(&actor, &id, body_of(data.clone(), 4096)).await.unwrap();
    engine.replicate("offsite", "me", &ReplicationOptions::default()).await.unwrap();

    // Missing in the primary: copied back, then served.
    primary.delete(&Path::from(v.object_key.as_str())).await.unwrap();
    let body = downloaded(engine.download(&actor, &id, VersionSelector::Latest).await.unwrap()).await;
    assert_eq!(body, data);
    assert_eq!(bytes_of(&primary, &v.object_key).await.unwrap(), data);
    assert!(engine.read_audit(0, 100).await.unwrap().iter().any(|e| e.action == "version.repaired"));

    // The primary store fails: the replica's copy is served.
    faults.fail_calls(1, u64::MAX / 2, FaultMode::Before);
    let body = downloaded(engine.download(&actor, &id, VersionSelector::Number(v.number)).await.unwrap()).await;
    assert_eq!(body, data);
}

#[tokio::test]
async fn deletions_reach_the_replica_after_its_delay_and_can_be_undone_from_it_meanwhile() {
    let s = setup(Duration::from_secs(2 * 3600)).await;
    let gone = s.upload(1).await;
    let kept = s.upload(2).await;
    s.replicate_all().await;
    s.engine.delete_version(&s.actor, &s.id, gone.number).await.unwrap();
    // Past the trash retention: purged from the primary.
    s.clock.advance(chrono::Duration::seconds(3601));
    let recovered = s.engine.recover().await.unwrap();
    assert_eq!(recovered.purged_versions, 1, "{recovered:?}");
    assert!(bytes_of(&s.primary, &gone.object_key).await.is_none());
    s.replicate_all().await;
    assert!(bytes_of(&s.replica, &gone.object_key).await.is_some(), "gone before its delay");
    let status = s.engine.replica_status("offsite").await.unwrap();
    assert_eq!(status.deletions_pending, 1, "{status:?}");

    // Undone from the replica within the delay: a new version with the same bytes.
    let restored = s.engine.restore_from_replica(&s.actor, "offsite", &s.id, gone.number).await.unwrap();
    assert_eq!((restored.size, restored.digest), (gone.size, gone.digest));
    assert!(restored.metadata.get("restored-from").is_some_and(|m| m.contains("offsite")), "{restored:?}");
    let restored_bytes =
        downloaded(s.engine.download(&s.actor, &s.id, VersionSelector::Number(restored.number)).await.unwrap()).await;
    assert_eq!(restored_bytes, pattern(1, 2001));

    // After the delay: gone from the replica too, object and description.
    s.clock.advance(chrono::Duration::seconds(2 * 3600));
    let run = s.replicate_all().await;
    assert_eq!(run.deleted, 1, "{run:?}");
    assert!(bytes_of(&s.replica, &gone.object_key).await.is_none());
    assert!(bytes_of(&s.replica, description_key(&gone.object_key).as_ref()).await.is_none());
    assert!(bytes_of(&s.replica, &kept.object_key).await.is_some());
    let e = s.engine.restore_from_replica(&s.actor, "offsite", &s.id, gone.number).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn a_catalog_lost_with_the_primary_is_rebuilt_from_the_replica_alone() {
    let s = setup(Duration::from_secs(3600)).await;
    for i in 0..12 {
        s.upload(i).await;
    }
    s.replicate_all().await;
    let before = s.committed().await;

    let engine = Engine::builder()
        .store(s.replica.clone())
        .catalog(Arc::new(MemoryCatalog::new()))
        .adopt_store(true)
        .build()
        .unwrap();
    let report = engine.rebuild_catalog(&RebuildOptions::empty_catalog().verify_digests(true)).await.unwrap();
    assert!(report.quarantined.is_empty() && report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.versions, 12, "{report:?}");
    let after = engine.versions(&s.actor, &s.id, VersionQuery::first(100)).await.unwrap().items;
    assert_eq!(
        after.iter().map(|v| (v.number, v.id, v.digest)).collect::<Vec<_>>(),
        before.iter().map(|v| (v.number, v.id, v.digest)).collect::<Vec<_>>()
    );
    for v in &before {
        let body = downloaded(engine.download(&s.actor, &s.id, VersionSelector::Number(v.number)).await.unwrap()).await;
        assert_eq!(body, bytes_of(&s.primary, &v.object_key).await.unwrap());
    }
}

#[tokio::test]
async fn a_replica_holding_another_repository_is_never_written() {
    let s = setup(Duration::from_secs(3600)).await;
    s.upload(1).await;
    let foreign: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let stranger = Engine::builder().store(foreign.clone()).build().unwrap();
    stranger.open_repository().await.unwrap();
    s.engine.set_replicas(vec![Replica::new("foreign", foreign.clone()).unwrap()]).unwrap();
    let e = s.engine.replicate("foreign", "me", &ReplicationOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let listed: Vec<_> = foreign.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // And configurations that cannot work are refused.
    let twice = vec![Replica::new("a", foreign.clone()).unwrap(), Replica::new("a", foreign.clone()).unwrap()];
    assert_eq!(s.engine.set_replicas(twice).unwrap_err().kind(), ErrorKind::InvalidInput);
    let no_log = Engine::builder().event_log(false).replica(Replica::new("a", foreign).unwrap()).build();
    assert_eq!(no_log.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn pruning_the_audit_log_keeps_what_a_replica_has_not_read() {
    let faults = Faults::new();
    let replica: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(Arc::new(InMemory::new()), faults.clone()));
    let engine = Engine::builder()
        .audit_retention(backup_core::audit::AuditRetention::forever().with_max_events(3))
        .replica(Replica::new("offsite", replica.clone()).unwrap())
        .build()
        .unwrap();
    let (actor, id): (Actor, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
    let spec = CollectionSpec::new("db-${version}", Limits::new(100, 1 << 20, 1 << 27).unwrap());
    engine.create_collection(&actor, &id, spec).await.unwrap();
    engine.replicate("offsite", "me", &ReplicationOptions::default()).await.unwrap();
    // The replica is down while ten versions are committed, and the log is pruned to three.
    faults.fail_calls(1, u64::MAX / 2, FaultMode::Before);
    for i in 0..10 {
        engine.upload(&actor, &id, body_of(pattern(i, 1000), 300)).await.unwrap();
    }
    engine.replicate("offsite", "me", &ReplicationOptions::default()).await.unwrap();
    let cursor = engine.replica_status("offsite").await.unwrap().cursor.unwrap();
    let pruned = engine.prune_audit().await.unwrap();
    assert!(pruned.is_none_or(|through| through <= cursor), "pruned through {pruned:?}, the replica is at {cursor}");
    faults.reset();
    let mut copied = 0;
    loop {
        let run = engine.replicate("offsite", "me", &ReplicationOptions::default()).await.unwrap();
        copied += run.copied;
        if !run.more {
            break;
        }
    }
    assert_eq!(copied, 10);
    // Caught up, the replica no longer holds the log back.
    assert!(engine.prune_audit().await.unwrap().is_some());
}
