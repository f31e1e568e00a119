//! The detectors on the engine's clock: a stale collection, a burst of refused uploads, a
//! collection nearly full, a quarantined version; each alert once, and one instance at a time.

use std::sync::Arc;

use backup_core::alerts::AlertPolicy;
use backup_core::{Actor, Clock, CollectionId, CollectionSpec, Engine, Limits, ManualClock, ScrubOptions};
use bytes::Bytes;
use chrono::Duration;

fn body(size: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::iter([Ok(Bytes::from(vec![3u8; size]))])
}

async fn engine(policy: AlertPolicy, limits: Limits) -> (Engine, Arc<ManualClock>, CollectionId) {
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder().clock(clock.clone()).build().unwrap();
    let id: CollectionId = "db".parse().unwrap();
    let spec = CollectionSpec::new("db-${version}", limits).with_alerts(policy);
    engine.create_collection(&Actor::user("ops"), &id, spec).await.unwrap();
    // The detectors start reading where they are first run.
    engine.run_detectors("a").await.unwrap();
    (engine, clock, id)
}

async fn alerts(engine: &Engine) -> Vec<String> {
    engine.run_detectors("a").await.unwrap().alerts.into_iter().map(|a| a.action).collect()
}

#[tokio::test]
async fn a_stale_collection_is_alerted_once_per_last_version() {
    let policy = AlertPolicy::default().with_stale_after(std::time::Duration::from_secs(3600));
    let (engine, clock, id) = engine(policy, Limits::new(5, 1000, 5000).unwrap()).await;
    engine.upload(&Actor::user("ci"), &id, body(10)).await.unwrap();
    assert_eq!(alerts(&engine).await, Vec::<String>::new());
    clock.advance(Duration::minutes(59));
    assert_eq!(alerts(&engine).await, Vec::<String>::new(), "not before the hour");
    clock.advance(Duration::minutes(2));
    assert_eq!(alerts(&engine).await, ["collection.stale"]);
    clock.advance(Duration::hours(5));
    assert_eq!(alerts(&engine).await, Vec::<String>::new(), "once per last version");
    engine.upload(&Actor::user("ci"), &id, body(10)).await.unwrap();
    clock.advance(Duration::minutes(61));
    assert_eq!(alerts(&engine).await, ["collection.stale"], "the next silence is a new alert");
}

#[tokio::test]
async fn a_burst_of_refused_uploads_is_one_alert() {
    let (engine, clock, id) = engine(AlertPolicy::default(), Limits::new(5, 100, 500).unwrap()).await;
    for _ in 0..20 {
        let e = engine.upload(&Actor::user("ci"), &id, body(1000)).await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::QuotaExceeded);
    }
    let run = engine.run_detectors("a").await.unwrap();
    assert_eq!(run.alerts.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["upload.refused"]);
    assert!(
        run.alerts[0].detail.contains("by ci") && run.alerts[0].detail.contains("QuotaExceeded"),
        "{:?}",
        run.alerts
    );
    clock.advance(Duration::minutes(30));
    engine.upload(&Actor::user("ci"), &id, body(1000)).await.unwrap_err();
    assert_eq!(alerts(&engine).await, Vec::<String>::new(), "within the quiet hour");
    clock.advance(Duration::minutes(31));
    engine.upload(&Actor::user("ci"), &id, body(1000)).await.unwrap_err();
    assert_eq!(alerts(&engine).await, ["upload.refused"], "after it");
}

#[tokio::test]
async fn a_nearly_full_collection_is_alerted_once_until_it_empties() {
    let (engine, _clock, id) =
        engine(AlertPolicy::default().with_quota_near(80).with_lighter(0, 5), Limits::new(2, 500, 1000).unwrap()).await;
    engine.upload(&Actor::user("ci"), &id, body(500)).await.unwrap();
    assert_eq!(alerts(&engine).await, Vec::<String>::new());
    engine.upload(&Actor::user("ci"), &id, body(350)).await.unwrap();
    let run = engine.run_detectors("a").await.unwrap();
    assert_eq!(run.alerts.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["quota.near"]);
    assert!(run.alerts[0].detail.contains("850 of 1000 bytes"), "{:?}", run.alerts);
    // The next upload rotates the first out: 350 + 480 bytes, still near, no second alert.
    engine.upload(&Actor::user("ci"), &id, body(480)).await.unwrap();
    assert_eq!(alerts(&engine).await, Vec::<String>::new(), "still near: no second alert");
    // Emptied below the mark and filled again: a new alert.
    engine.upload(&Actor::user("ci"), &id, body(10)).await.unwrap();
    engine.upload(&Actor::user("ci"), &id, body(10)).await.unwrap();
    assert_eq!(alerts(&engine).await, Vec::<String>::new());
    engine.upload(&Actor::user("ci"), &id, body(500)).await.unwrap();
    engine.upload(&Actor::user("ci"), &id, body(400)).await.unwrap();
    assert_eq!(alerts(&engine).await, ["quota.near"]);
}

#[tokio::test]
async fn a_quarantine_is_an_alert_and_the_scrub_says_it_failed() {
    let (engine, _clock, id) = engine(AlertPolicy::default(), Limits::new(5, 1000, 5000).unwrap()).await;
    let v = engine.upload(&Actor::user("ci"), &id, body(100)).await.unwrap();
    // Bit rot: the same size, other bytes.
    let key = object_store::path::Path::from(v.object_key.as_str());
    object_store::ObjectStoreExt::put(engine.store().as_ref(), &key, vec![4u8; 100].into()).await.unwrap();
    let report = engine.scrub(&ScrubOptions::all()).await.unwrap();
    assert_eq!(report.newly_quarantined, 1);
    let run = engine.run_detectors("a").await.unwrap();
    let actions: Vec<&str> = run.alerts.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["version.quarantined"]);
    assert_eq!(run.alerts[0].version, Some(1));
    let log = engine.read_audit(0, 1000).await.unwrap();
    assert!(log.iter().any(|e| e.action == "scrub.failed" && e.detail.contains("1 damaged")), "{log:?}");
    // One instance runs the detectors at a time.
    let other = engine.run_detectors("b").await.unwrap();
    assert!(other.held_elsewhere && other.alerts.is_empty());
    assert!(engine.verify_audit().await.unwrap().is_intact());
}

#[tokio::test]
async fn pruning_keeps_the_rest_verifiable_and_drops_the_anchors_it_covers() {
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder()
        .clock(clock.clone())
        .audit_retention(backup_core::audit::AuditRetention::forever().with_max_events(3))
        .build()
        .unwrap();
    for i in 0..10 {
        engine.record_audit(&backup_core::AuditEvent::new(clock.now(), "ops", format!("custom.{i}"))).await.unwrap();
        if i == 4 {
            engine.anchor_audit().await.unwrap();
        }
    }
    engine.anchor_audit().await.unwrap();
    assert_eq!(engine.prune_audit().await.unwrap(), Some(7), "three events stay");
    let report = engine.verify_audit().await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.checkpoint.map(|c| c.seq), Some(7));
    // 8, 9, 10 and the pruning's own event; the anchor of event 5 went with the events.
    assert_eq!((report.events, report.head.seq, report.anchors), (4, 11, 1));
    let kept: Vec<u64> = engine.read_audit(0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(kept, [8, 9, 10, 11]);
}
