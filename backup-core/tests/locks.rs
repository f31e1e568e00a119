//! Retention locks through the engine: no caller removes a locked version before its lock
//! ends, an upload-only flood cannot rotate good versions out, governance gives way only to
//! the dedicated permission (audited), and everything proceeds once time passes the lock.

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::catalog::protocol::LockBypass;
use backup_core::health::{CheckKind, Verdict};
use backup_core::testing::pattern;
use backup_core::{
    Action, Actor, Authorizer, AuthzRequest, Clock, CollectionId, CollectionSpec, Engine, Error, ErrorKind, Limits,
    LockMode, LockPolicy, ManualClock, MemoryCatalog, Permit, Result, Timestamp, VersionQuery, VersionSelector,
    async_trait,
};
use bytes::Bytes;
use futures::TryStreamExt;

/// Everyone may do everything but bypass governance; only `governor` may.
#[derive(Debug)]
struct OnlyGovernorBypasses;

#[async_trait]
impl Authorizer for OnlyGovernorBypasses {
    async fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Permit> {
        if request.action == Action::BypassGovernance && request.actor.user != "governor" {
            return Err(Error::PermissionDenied {
                reason: format!("{} may not bypass governance", request.actor.user),
            });
        }
        Ok(Permit::allow())
    }
}

struct World {
    engine: Engine,
    catalog: Arc<MemoryCatalog>,
    clock: Arc<ManualClock>,
    id: CollectionId,
}

async fn world(mode: LockMode) -> World {
    let clock = Arc::new(ManualClock::starting_now());
    let catalog = Arc::new(MemoryCatalog::new());
    let engine = Engine::builder()
        .catalog(catalog.clone())
        .clock(clock.clone())
        .authorizer(Arc::new(OnlyGovernorBypasses))
        .build()
        .unwrap();
    let id: CollectionId = "db".parse().unwrap();
    let spec = CollectionSpec::new("db-${version}", Limits::new(5, 1000, 5000).unwrap())
        .with_lock(LockPolicy::new(mode, chrono::Duration::days(30)));
    engine.create_collection(&Actor::user("admin"), &id, spec).await.unwrap();
    World { engine, catalog, clock, id }
}

fn body(bytes: Vec<u8>) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::iter([Ok(Bytes::from(bytes))])
}

async fn download(w: &World, number: u64) -> Vec<u8> {
    let d = w.engine.download(&Actor::user("admin"), &w.id, VersionSelector::Number(number)).await.unwrap();
    let parts: Vec<Bytes> = d.into_stream().try_collect().await.unwrap();
    parts.concat()
}

async fn numbers(w: &World) -> Vec<u64> {
    let page = w.engine.versions(&Actor::user("admin"), &w.id, VersionQuery::first(100)).await.unwrap();
    page.items.iter().map(|v| v.number).collect()
}

async fn upload_good(w: &World) -> Vec<Vec<u8>> {
    let mut good = Vec::new();
    for i in 0..5u64 {
        let bytes = pattern(i, 100 + i as usize).to_vec();
        w.engine.upload(&Actor::user("uploader"), &w.id, body(bytes.clone())).await.unwrap();
        good.push(bytes);
    }
    good
}

#[tokio::test]
async fn nobody_removes_a_compliance_locked_version_and_time_releases_it() {
    let w = world(LockMode::Compliance).await;
    let good = upload_good(&w).await;
    let v1 = w.engine.version(&Actor::user("admin"), &w.id, VersionSelector::Number(1)).await.unwrap();
    let lock = v1.lock.expect("committed under a lock policy");
    assert_eq!((lock.mode, lock.until), (LockMode::Compliance, v1.created_at + chrono::Duration::days(30)));

    for who in ["admin", "manager", "uploader", "governor"] {
        let actor = Actor::user(who);
        let e = w.engine.delete_version(&actor, &w.id, 1).await.unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{who}: {e}");
        assert!(e.to_string().contains("cannot be deleted by anyone"), "{e}");
        let e = w.engine.delete_version_with(&actor, &w.id, 1, LockBypass::GOVERNANCE).await.unwrap_err();
        assert_eq!(e.kind(), if who == "governor" { ErrorKind::Conflict } else { ErrorKind::PermissionDenied });
        let e = w.engine.delete_collection(&actor, &w.id).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    }

    // The flood: ten uploads of garbage are each refused before their bytes are kept.
    for i in 0..10u8 {
        let e =
            w.engine.upload(&Actor::user("uploader"), &w.id, body(vec![0xEE; 50 + usize::from(i)])).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
        assert!(e.to_string().contains("collection is full of versions locked until"), "{e}");
    }
    assert_eq!(numbers(&w).await, [1, 2, 3, 4, 5]);
    for (i, bytes) in good.iter().enumerate() {
        assert_eq!(&download(&w, i as u64 + 1).await, bytes, "version {} is intact", i + 1);
    }
    let health = w.engine.health(&Actor::user("admin"), &w.id).await.unwrap();
    let capacity = health.health.check(CheckKind::Capacity).expect("a lock policy reports capacity");
    assert_eq!(capacity.verdict, Verdict::Fail, "{capacity:?}");

    // The policy cannot be shortened, turned into governance, or removed; nothing changes.
    let admin = Actor::user("admin");
    let current = w.engine.collection(&admin, &w.id).await.unwrap();
    for weaker in [
        Some(LockPolicy::new(LockMode::Compliance, chrono::Duration::days(29))),
        Some(LockPolicy::new(LockMode::Governance, chrono::Duration::days(60))),
        None,
    ] {
        let mut spec = current.spec.clone();
        spec.lock = weaker;
        let e = w
            .engine
            .update_collection_with(&Actor::user("governor"), &w.id, spec.clone(), LockBypass::GOVERNANCE)
            .await;
        assert!(matches!(e, Err(Error::Locked { .. })), "{e:?}");
        assert!(matches!(w.engine.declare_collection(&w.id, spec.clone(), "db.yaml").await, Err(Error::Locked { .. })));
        assert!(matches!(w.engine.check_declaration(&w.id, &spec).await, Err(Error::Locked { .. })));
    }
    assert_eq!(w.engine.collection(&admin, &w.id).await.unwrap(), current);
    let mut longer = current.spec.clone();
    longer.lock = Some(LockPolicy::new(LockMode::Compliance, chrono::Duration::days(31)));
    w.engine.update_collection(&admin, &w.id, longer).await.expect("lengthening is allowed");

    // Time passes the locks: maintenance clears them, then rotation and deletion proceed.
    w.clock.advance(chrono::Duration::days(31));
    w.engine.recover().await.unwrap();
    let v1 = w.engine.version(&admin, &w.id, VersionSelector::Number(1)).await.unwrap();
    assert_eq!(v1.lock, None, "an ended lock is cleared");
    let health = w.engine.health(&admin, &w.id).await.unwrap();
    assert_eq!(health.health.check(CheckKind::Capacity).unwrap().verdict, Verdict::Pass);
    w.engine.upload(&Actor::user("uploader"), &w.id, body(vec![1; 10])).await.expect("room once locks ended");
    assert_eq!(numbers(&w).await, [2, 3, 4, 5, 6], "FIFO rotated the oldest out");
    w.engine.delete_version(&admin, &w.id, 2).await.expect("an unlocked version is deleted");
}

#[tokio::test]
async fn governance_gives_way_only_to_the_permission_and_is_audited() {
    let w = world(LockMode::Governance).await;
    upload_good(&w).await;
    let e = w.engine.delete_version(&Actor::user("governor"), &w.id, 1).await.unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "without asking, the permission does not bypass: {e}");
    assert!(e.to_string().contains("without the permission to bypass governance locks"), "{e}");
    let e = w.engine.delete_version_with(&Actor::user("admin"), &w.id, 1, LockBypass::GOVERNANCE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "an administrator without the permission: {e}");
    assert_eq!(numbers(&w).await, [1, 2, 3, 4, 5]);

    let gone = w.engine.delete_version_with(&Actor::user("governor"), &w.id, 1, LockBypass::GOVERNANCE).await.unwrap();
    assert_eq!(gone.lock, None, "the deletion lifted the lock");
    let audit = w.catalog.list_audit(None, 100).await.unwrap();
    let bypass = audit.iter().find(|e| e.action == "lock.bypass").expect("the bypass is audited");
    assert_eq!((bypass.actor.as_str(), bypass.version), ("governor", Some(1)));
    assert!(bypass.detail.contains("version.delete"), "{bypass:?}");

    // A weaker governance policy needs the bypass too.
    let mut spec = w.engine.collection(&Actor::user("admin"), &w.id).await.unwrap().spec;
    spec.lock = Some(LockPolicy::new(LockMode::Governance, chrono::Duration::days(1)));
    let e = w.engine.update_collection(&Actor::user("governor"), &w.id, spec.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    w.engine.update_collection_with(&Actor::user("governor"), &w.id, spec, LockBypass::GOVERNANCE).await.unwrap();
    let audit = w.catalog.list_audit(None, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "lock.bypass").count(), 2);
}

#[tokio::test]
async fn locks_lengthen_never_shorten_and_restores_do_not_push_out_locked_versions() {
    let w = world(LockMode::Governance).await;
    upload_good(&w).await;
    let admin = Actor::user("admin");
    let v2 = w.engine.version(&admin, &w.id, VersionSelector::Number(2)).await.unwrap();
    let until = v2.lock.unwrap().until;
    let later = until + chrono::Duration::days(10);
    let locked = w.engine.lock_version(&admin, &w.id, 2, Some(LockMode::Compliance), later).await.unwrap();
    assert_eq!(locked.lock.map(|l| (l.mode, l.until)), Some((LockMode::Compliance, later)));
    let e = w.engine.lock_version(&admin, &w.id, 2, Some(LockMode::Compliance), until).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = w.engine.lock_version(&admin, &w.id, 2, Some(LockMode::Governance), later).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "compliance does not go back to governance: {e}");
    let past = Timestamp::from(w.clock.now()) - chrono::Duration::seconds(1);
    assert_eq!(
        w.engine.lock_version(&admin, &w.id, 2, Some(LockMode::Compliance), past).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let read = w.engine.version(&admin, &w.id, VersionSelector::Number(2)).await.unwrap();
    assert_eq!(read.lock, locked.lock, "the lengthened lock is what the catalog keeps");

    // A governance bypass cannot lift the version's compliance lock any more.
    let e = w.engine.delete_version_with(&Actor::user("governor"), &w.id, 2, LockBypass::GOVERNANCE).await.unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");

    // A trashed version cannot come back over locked ones: the collection is full.
    w.engine.delete_version_with(&Actor::user("governor"), &w.id, 1, LockBypass::GOVERNANCE).await.unwrap();
    w.engine.upload(&Actor::user("uploader"), &w.id, body(vec![7; 10])).await.unwrap();
    let e = w.engine.restore_version(&admin, &w.id, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(numbers(&w).await, [2, 3, 4, 5, 6]);
}

/// Descriptions carry the locks: a catalog rebuilt from the store alone has every version's
/// lock (the lengthened one too), and enforces them.
#[tokio::test]
async fn a_catalog_rebuilt_from_the_store_keeps_the_locks() {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder().store(store.clone()).clock(clock.clone()).build().unwrap();
    let (me, id): (Actor, CollectionId) = (Actor::user("admin"), "db".parse().unwrap());
    let spec = CollectionSpec::new("db-${version}", Limits::new(5, 1000, 5000).unwrap())
        .with_lock(LockPolicy::new(LockMode::Compliance, chrono::Duration::days(30)));
    engine.create_collection(&me, &id, spec).await.unwrap();
    for n in 0..2u8 {
        engine.upload(&me, &id, body(vec![n; 10])).await.unwrap();
    }
    let later = Timestamp::from(clock.now()) + chrono::Duration::days(90);
    let lengthened = engine.lock_version(&me, &id, 2, Some(LockMode::Compliance), later).await.unwrap().lock;
    let before = engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items;

    let rebuilt = Engine::builder()
        .catalog(Arc::new(MemoryCatalog::new()))
        .store(store)
        .clock(clock)
        .adopt_store(true)
        .build()
        .unwrap();
    rebuilt.rebuild_catalog(&backup_core::RebuildOptions::empty_catalog()).await.unwrap();
    let after = rebuilt.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items;
    let locks = |vs: &[backup_core::Version]| vs.iter().map(|v| (v.number, v.lock)).collect::<Vec<_>>();
    assert_eq!(locks(&after), locks(&before));
    assert_eq!(after[1].lock, lengthened);
    assert!(matches!(rebuilt.delete_version(&me, &id, 1).await, Err(Error::Locked { .. })));
    let collection = rebuilt.collection(&me, &id).await.unwrap();
    assert_eq!(collection.spec.lock.map(|l| l.mode), Some(LockMode::Compliance), "the spec comes back with its policy");
}
