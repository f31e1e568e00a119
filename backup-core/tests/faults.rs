//! Fault injection: every call an upload (with rotation), a deletion and `recover()` make is
//! failed in turn, before and after doing its work, and I1–I5 are checked after each.

mod common;

use std::time::Duration;

use backup_core::testing::{FaultMode, body_of, failing_body, pattern};
use backup_core::{ErrorKind, Limits, UploadOptions, VersionSelector};
use bytes::Bytes;
use common::{Backend, Rig};
use futures::TryStreamExt;

/// 2 versions of 4 KiB, 12 KiB in all: the third upload evicts the first.
fn limits() -> Limits {
    Limits::new(2, 4096, 12288).unwrap()
}

async fn rig_with_two_versions(backend: Backend) -> Rig {
    let mut rig = Rig::new(backend, limits(), Duration::ZERO).await;
    rig.upload_ok(1, 5000).await; // uses 904 bytes of extra space
    rig.upload_ok(2, 3000).await;
    rig
}

/// How many store and catalog calls a fault-free upload with rotation makes.
async fn calls_of_one_upload(backend: Backend) -> (u64, Vec<&'static str>) {
    let rig = rig_with_two_versions(backend).await;
    rig.faults.reset();
    rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 3500), 512)).await.unwrap();
    (rig.faults.calls(), rig.faults.log())
}

/// Fails every call that an upload of `len` bytes (in chunks of `chunk`) makes, in turn,
/// before and after its work, and checks I1–I5 after each; the calls of a fault-free run.
async fn enumerate_upload_faults_of(backend: fn() -> Backend, len: usize, chunk: usize) -> Vec<&'static str> {
    let rig = rig_with_two_versions(backend()).await;
    rig.faults.reset();
    rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, len), chunk)).await.unwrap();
    let (calls, log) = (rig.faults.calls(), rig.faults.log());
    for mode in [FaultMode::Before, FaultMode::After] {
        for n in 1..=calls {
            let mut rig = rig_with_two_versions(backend()).await;
            rig.arm(n, mode);
            let result = rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, len), chunk)).await;
            let when = format!("upload of {len} bytes, {mode:?} call {n} ({})", log[(n - 1) as usize]);
            assert!(rig.faults.fired(), "{when}: the fault did not fire");
            match result {
                Ok(v) => rig.acknowledge(v),
                Err(e) => assert_ne!(e.kind(), ErrorKind::Internal, "{when}: {e}"),
            }
            rig.recover_and_check(&when).await;
        }
    }
    log
}

async fn enumerate_upload_faults(backend: fn() -> Backend) {
    let log = enumerate_upload_faults_of(backend, 3500, 512).await;
    assert!(log.contains(&"commit") && log.contains(&"put_part") && log.contains(&"delete"), "{log:?}");
    assert!(log.len() >= 8, "an upload with rotation makes at least 8 calls: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_an_upload_with_rotation_fails_in_turn_memory() {
    enumerate_upload_faults(|| Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_an_upload_with_rotation_fails_in_turn_local_disk() {
    enumerate_upload_faults(|| Backend::LocalDisk).await;
}

/// The cost of one upload in catalog calls is pinned: authorize (read the collection),
/// reserve, commit with its rotation and purge. The store calls around them are the multipart
/// put, preceded by the upload's intent (so that a catalog lost after the commit and before the
/// description is rebuilt without giving the number out again), the new version's description, then the
/// deletion of the evicted object with its description (after the new description: a rebuild
/// always sees a number at least as high).
#[tokio::test]
async fn one_upload_makes_three_catalog_calls() {
    let (_, log) = calls_of_one_upload(Backend::Memory).await;
    assert_eq!(
        log,
        [
            "get_collection",
            "reserve",
            // The upload's intent, where the description goes.
            "put",
            "put_multipart",
            "put_part",
            "put_part",
            "put_part",
            "put_part",
            "complete",
            "commit",
            // The new version's description.
            "put",
            // The evicted version's description, then its object.
            "delete",
            "delete",
        ],
    );
}

/// A body that fits in one part (1,000 bytes against parts of 1,024) is one PUT: no
/// multipart upload (three requests, and an open upload left if the process dies).
#[tokio::test]
async fn a_small_upload_is_one_put() {
    let rig = rig_with_two_versions(Backend::Memory).await;
    rig.faults.reset();
    rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 1000), 300)).await.unwrap();
    assert_eq!(
        rig.faults.log(),
        [
            "get_collection",
            "reserve",
            // The upload's intent, where the description goes.
            "put",
            // The body.
            "put",
            "commit",
            // The new version's description.
            "put",
            // The evicted version's description, then its object.
            "delete",
            "delete",
        ],
    );
    // Announced as small, it is one PUT too; announced as large, a multipart upload at once.
    for (len, body_call) in [(1000usize, "put"), (3500, "put_multipart")] {
        rig.faults.reset();
        let options = UploadOptions::new().expected_size(len as u64);
        rig.engine.upload_with(&rig.actor, &rig.id, body_of(pattern(4, len), 300), options).await.unwrap();
        assert_eq!(rig.faults.log()[3], body_call, "{len} bytes announced");
    }
}

/// Every call of a small upload (one PUT) fails in turn, before and after its work.
async fn enumerate_small_upload_faults(backend: fn() -> Backend) {
    let log = enumerate_upload_faults_of(backend, 1000, 300).await;
    assert!(log.contains(&"put") && !log.contains(&"put_multipart"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_small_upload_fails_in_turn_memory() {
    enumerate_small_upload_faults(|| Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_small_upload_fails_in_turn_local_disk() {
    enumerate_small_upload_faults(|| Backend::LocalDisk).await;
}

/// A lost reply to the commit is not a failure: the engine asks again and acknowledges.
#[tokio::test]
async fn lost_commit_reply_still_acknowledges() {
    let (_, log) = calls_of_one_upload(Backend::Memory).await;
    let n = log.iter().position(|&c| c == "commit").unwrap() as u64 + 1;
    let mut rig = rig_with_two_versions(Backend::Memory).await;
    rig.arm(n, FaultMode::After);
    let v = rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 3500), 512)).await.unwrap();
    assert_eq!(v.number, 3);
    rig.acknowledge(v);
    rig.recover_and_check("lost commit reply").await;
}

/// A lost reply to the commit while the catalog stays down for a while: the engine asks
/// again with a growing pause until it answers, and acknowledges the version (it used to
/// report the commit's failure, and a retrying client stored the backup twice).
#[tokio::test(start_paused = true)]
async fn a_lost_commit_reply_is_asked_again_while_the_catalog_is_down() {
    let (_, log) = calls_of_one_upload(Backend::Memory).await;
    let n = log.iter().position(|&c| c == "commit").unwrap() as u64 + 1;
    let mut rig = rig_with_two_versions(Backend::Memory).await;
    // The commit's reply and the next three questions are lost.
    rig.faults.fail_calls(n, 4, FaultMode::After);
    let v = rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 3500), 512)).await.unwrap();
    assert_eq!(v.number, 3);
    assert_eq!(rig.faults.log().iter().filter(|&&c| c == "abort").count(), 4, "{:?}", rig.faults.log());
    rig.acknowledge(v);
    rig.recover_and_check("commit reply lost while the catalog was down").await;
}

/// When the catalog does not answer for the whole patience, the outcome is reported as
/// unknown, distinctly, with the version's id; `recover()` later finds it committed.
#[tokio::test(start_paused = true)]
async fn a_commit_whose_outcome_cannot_be_learned_is_reported_as_unknown() {
    let (_, log) = calls_of_one_upload(Backend::Memory).await;
    let n = log.iter().position(|&c| c == "commit").unwrap() as u64 + 1;
    let mut rig = rig_with_two_versions(Backend::Memory).await;
    rig.faults.fail_calls(n, 10_000, FaultMode::After);
    let e = rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 3500), 512)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    let backup_core::Error::OutcomeUnknown { id, .. } = &e else { panic!("{e:?}") };
    rig.faults.reset();
    let v = rig.engine.catalog().get_version(&rig.id, VersionSelector::Number(3)).await.unwrap();
    assert_eq!(v.id, *id, "the version the error named was committed");
    rig.acknowledge(v);
    rig.recover_and_check("commit outcome unknown").await;
}

/// A body that fails at any byte leaves nothing behind.
#[tokio::test]
async fn body_failing_at_every_interesting_byte() {
    let len = 3500u64;
    for at in [0, 1, 511, 512, 513, 1023, 1024, 1025, 2048, 3000, len - 1] {
        let mut rig = rig_with_two_versions(Backend::Memory).await;
        let e = rig
            .engine
            .upload(&rig.actor, &rig.id, failing_body(pattern(3, len as usize), 512, Some(at)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Interrupted, "byte {at}: {e}");
        rig.recover_and_check(&format!("body failing at byte {at}")).await;
    }
}

/// Deleting a version, with each of its calls failing in turn.
#[tokio::test]
async fn every_call_of_a_deletion_fails_in_turn() {
    let rig = rig_with_two_versions(Backend::Memory).await;
    rig.faults.reset();
    rig.engine.delete_version(&rig.actor, &rig.id, 1).await.unwrap();
    let calls = rig.faults.calls();
    for mode in [FaultMode::Before, FaultMode::After] {
        for n in 1..=calls {
            let mut rig = rig_with_two_versions(Backend::Memory).await;
            rig.arm(n, mode);
            let result = rig.engine.delete_version(&rig.actor, &rig.id, 1).await;
            let still = rig.engine.catalog().get_version(&rig.id, VersionSelector::Number(1)).await.is_ok();
            if !still {
                // The deletion happened (whatever was reported); the model follows.
                rig.expected.retain(|v| v.number != 1);
            } else {
                assert!(result.is_err(), "{mode:?} {n}: reported deleted but still committed");
            }
            rig.recover_and_check(&format!("delete, {mode:?} call {n}")).await;
        }
    }
}

/// A state that needs recovery: an expired upload with its object, a trashed version past
/// its retention, an object the catalog does not know. `recover()` with each of its calls
/// failing in turn never breaks an invariant, never deletes the unknown object, and a clean
/// run afterwards finishes the job.
#[tokio::test]
async fn every_call_of_recover_fails_in_turn() {
    async fn messy() -> Rig {
        let mut rig = Rig::new(Backend::Memory, limits(), Duration::from_secs(3600)).await;
        rig.upload_ok(1, 1000).await;
        rig.upload_ok(2, 1000).await;
        rig.upload_ok(3, 1000).await; // evicts 1, kept in the trash for an hour
        // An upload cut off after its reservation: the drop clean-up is lost with the process.
        let staged = rig
            .engine
            .begin_upload(&rig.actor, &rig.id, body_of(pattern(9, 2000), 512), UploadOptions::default())
            .await
            .unwrap();
        std::mem::forget(staged);
        object_store::ObjectStoreExt::put(rig.engine.store().as_ref(), &unknown(&rig), Bytes::from_static(b"x").into())
            .await
            .unwrap();
        rig.clock.advance(chrono::Duration::hours(2));
        rig
    }
    fn unknown(rig: &Rig) -> object_store::path::Path {
        rig.engine.key_prefix().clone().join("faults").join("not-ours")
    }
    async fn survives_then_goes(rig: &Rig, when: &str) {
        let store = rig.engine.store().as_ref();
        object_store::ObjectStoreExt::head(store, &unknown(rig))
            .await
            .unwrap_or_else(|e| panic!("{when}: the unknown object was deleted: {e}"));
        object_store::ObjectStoreExt::delete(store, &unknown(rig)).await.unwrap();
    }
    let rig = messy().await;
    rig.faults.reset();
    let report = rig.engine.recover().await.unwrap();
    assert_eq!(
        (report.aborted_uploads, report.purged_versions, report.garbage_deleted, report.unknown_objects),
        (1, 1, 2, 1),
        "{report:?}"
    );
    let calls = rig.faults.calls();
    for mode in [FaultMode::Before, FaultMode::After] {
        for n in 1..=calls {
            let mut rig = messy().await;
            rig.arm(n, mode);
            let _ = rig.engine.recover().await;
            assert!(rig.faults.fired());
            let when = format!("recover, {mode:?} call {n}");
            rig.faults.reset();
            let _ = rig.engine.recover().await;
            survives_then_goes(&rig, &when).await;
            rig.recover_and_check(&when).await;
        }
    }
}

/// A read failing at any byte makes the download fail, never end short and clean.
#[tokio::test]
async fn download_read_failures_are_loud() {
    let rig = rig_with_two_versions(Backend::Memory).await;
    for at in [0u64, 1, 1000, 2999] {
        rig.faults.fail_read_at_byte(Some(at));
        let d = rig.engine.download(&rig.actor, &rig.id, VersionSelector::Latest).await.unwrap();
        let r: Result<Vec<Bytes>, _> = d.into_stream().try_collect().await;
        assert!(r.is_err(), "read failing at byte {at} must fail the download");
    }
    rig.faults.fail_read_at_byte(None);
    let d = rig.engine.download(&rig.actor, &rig.id, VersionSelector::Latest).await.unwrap();
    let got: Vec<Bytes> = d.into_stream().try_collect().await.unwrap();
    assert_eq!(got.concat(), pattern(2, 3000));
}
