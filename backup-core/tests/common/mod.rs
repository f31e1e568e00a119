//! A test rig: an engine over a faulty memory catalog and a faulty store (memory or local
//! disk), a manual clock, and the model of what must be committed.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use backup_core::catalog::Catalog;
use backup_core::testing::{
    FaultMode, Faults, FaultyCatalog, FaultyStore, body_of, check_described, check_invariants, check_recovered, pattern,
};
use backup_core::{Actor, CollectionId, CollectionSpec, Engine, Limits, ManualClock, MemoryCatalog, Version};
use object_store::ObjectStore;

pub const LEASE: Duration = Duration::from_secs(60);

pub struct Rig {
    pub engine: Engine,
    pub faults: Faults,
    pub clock: Arc<ManualClock>,
    pub actor: Actor,
    pub id: CollectionId,
    /// The versions that must be committed now.
    pub expected: Vec<Version>,
    /// How many uploads were acknowledged in all.
    pub acknowledged: u64,
    pub max_versions: usize,
    _dir: Option<tempfile::TempDir>,
}

pub enum Backend {
    Memory,
    LocalDisk,
}

impl Rig {
    pub async fn new(backend: Backend, limits: Limits, trash_retention: Duration) -> Rig {
        let faults = Faults::new();
        let (store, dir): (Arc<dyn ObjectStore>, _) = match backend {
            Backend::Memory => (Arc::new(object_store::memory::InMemory::new()), None),
            Backend::LocalDisk => {
                let dir = tempfile::tempdir().unwrap();
                (
                    Arc::new(
                        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap().with_fsync(true),
                    ),
                    Some(dir),
                )
            }
        };
        let catalog: Arc<dyn Catalog> = Arc::new(FaultyCatalog::new(Arc::new(MemoryCatalog::new()), faults.clone()));
        let clock = Arc::new(ManualClock::starting_now());
        let engine = Engine::builder()
            .catalog(catalog)
            .store(Arc::new(FaultyStore::new(store, faults.clone())))
            .clock(clock.clone())
            .part_size(1024)
            .parts_in_flight(2)
            .lease(LEASE)
            .trash_retention(trash_retention)
            .grace(Duration::ZERO)
            .build()
            .unwrap();
        let actor = Actor::user("tester");
        let id: CollectionId = "faults".parse().unwrap();
        engine.create_collection(&actor, &id, CollectionSpec::new("f-${version}", limits)).await.unwrap();
        Rig {
            engine,
            faults,
            clock,
            actor,
            id,
            expected: Vec::new(),
            acknowledged: 0,
            max_versions: limits.max_versions as usize,
            _dir: dir,
        }
    }

    /// Records an acknowledged upload in the FIFO model.
    pub fn acknowledge(&mut self, v: Version) {
        self.acknowledged += 1;
        assert_eq!(v.number, self.acknowledged, "numbers follow acknowledgements");
        self.expected.push(v);
        while self.expected.len() > self.max_versions {
            self.expected.remove(0);
        }
    }

    /// Uploads without faults and records it.
    pub async fn upload_ok(&mut self, seed: u64, len: usize) -> Version {
        self.faults.reset();
        let v = self.engine.upload(&self.actor, &self.id, body_of(pattern(seed, len), 300)).await.unwrap();
        self.acknowledge(v.clone());
        v
    }

    pub async fn check(&self, when: &str) {
        check_invariants(&self.engine, &self.id, &self.expected, self.acknowledged)
            .await
            .unwrap_or_else(|v| panic!("{when}: {v}"));
    }

    /// Disarms faults, lets clean-ups finish, moves past every lease, recovers, and checks
    /// I1–I5; then proves the collection still takes uploads.
    pub async fn recover_and_check(&mut self, when: &str) {
        self.faults.reset();
        self.engine.wait_for_cleanups().await;
        self.check(&format!("{when}, before recover")).await;
        self.clock.advance(chrono::Duration::from_std(LEASE).unwrap() + chrono::Duration::seconds(1));
        let report = self.engine.recover().await.unwrap();
        assert!(report.is_clean(), "{when}: recover: {report:?}");
        self.check(&format!("{when}, after recover")).await;
        check_recovered(&self.engine, chrono::Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap_or_else(|v| panic!("{when}: {v}"));
        check_described(&self.engine).await.unwrap_or_else(|v| panic!("{when}: {v}"));
        let seed = 1000 + self.acknowledged;
        self.upload_ok(seed, 700).await;
        self.check(&format!("{when}, upload after recover")).await;
    }

    pub fn arm(&self, n: u64, mode: FaultMode) {
        self.faults.fail_call(n, mode);
    }
}
