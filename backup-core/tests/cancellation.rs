//! Cancellation: the upload future is dropped at every await point, with its clean-up
//! running (a client that went away) or never running (the process died), then `recover()`
//! runs and I1–I5 are checked.

mod common;

use std::task::Poll;
use std::time::Duration;

use backup_core::catalog::CatalogExt;
use backup_core::testing::{body_of, pattern};
use backup_core::{Limits, Version, VersionSelector};
use common::{Backend, Rig};

const MAX_POLLS: usize = 500;

async fn rig(backend: Backend) -> Rig {
    let mut rig = Rig::new(backend, Limits::new(2, 4096, 12288).unwrap(), Duration::ZERO).await;
    rig.upload_ok(1, 5000).await;
    rig.upload_ok(2, 3000).await;
    rig.faults.yield_before_calls(true);
    rig
}

/// Polls the upload `polls` times, letting spawned part writes progress in between, then
/// drops it.
async fn upload_cancelled_after(rig: &Rig, polls: usize) -> Option<backup_core::Result<Version>> {
    let mut fut = Box::pin(rig.engine.upload(&rig.actor, &rig.id, body_of(pattern(3, 3500), 512)));
    for _ in 0..polls {
        if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// After a cancelled upload, the version may or may not have committed (the client never
/// heard); the model follows what the catalog says, then all invariants must hold.
async fn follow_unacknowledged_commit(rig: &mut Rig) {
    rig.engine.wait_for_cleanups().await;
    if let Ok(v) = rig.engine.catalog().get_version(&rig.id, VersionSelector::Number(rig.acknowledged + 1)).await {
        rig.acknowledge(v);
    }
}

async fn enumerate(backend: fn() -> Backend) {
    let mut completed_at = None;
    for polls in 0..MAX_POLLS {
        let mut rig = rig(backend()).await;
        match upload_cancelled_after(&rig, polls).await {
            Some(result) => {
                rig.acknowledge(result.expect("an uncancelled upload succeeds"));
                rig.recover_and_check("completed").await;
                completed_at = Some(polls);
                break;
            }
            None => {
                follow_unacknowledged_commit(&mut rig).await;
                // The clean-up of the dropped future released everything by itself.
                let state = rig.engine.catalog().collection_state(&rig.id).await.unwrap();
                assert!(state.pending.is_empty(), "dropped after {polls} polls: reservation not released");
                backup_core::testing::check_recovered(&rig.engine, chrono::Utc::now() + chrono::Duration::hours(1))
                    .await
                    .unwrap_or_else(|v| panic!("dropped after {polls} polls, before recover: {v}"));
                rig.recover_and_check(&format!("dropped after {polls} polls")).await;
            }
        }
    }
    let completed_at = completed_at.expect("the upload completes within MAX_POLLS polls");
    // get_collection, reserve, put_multipart, complete, commit and mark_purged each yield.
    assert!(completed_at >= 6, "every call is an await point: {completed_at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_at_every_await_point_memory() {
    enumerate(|| Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_at_every_await_point_local_disk() {
    enumerate(|| Backend::LocalDisk).await;
}

/// The process dies at every await point: the future is driven by a runtime that is shut
/// down with it, so no clean-up task ever runs; `recover()` alone must restore I1–I5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_death_at_every_await_point() {
    for polls in 0..MAX_POLLS {
        let mut rig = rig(Backend::LocalDisk).await;
        let (engine, actor, id) = (rig.engine.clone(), rig.actor.clone(), rig.id.clone());
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let mut fut = Box::pin(engine.upload(&actor, &id, body_of(pattern(3, 3500), 512)));
            let out = rt.block_on(async {
                for _ in 0..polls {
                    if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
                        return Some(r);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                None
            });
            // The runtime dies first, so nothing the future's drop would spawn can run.
            drop(rt);
            drop(fut);
            out
        })
        .join()
        .unwrap();
        match outcome {
            Some(result) => {
                rig.acknowledge(result.expect("an uncancelled upload succeeds"));
                rig.recover_and_check("completed").await;
                return;
            }
            None => {
                follow_unacknowledged_commit(&mut rig).await;
                rig.recover_and_check(&format!("died after {polls} polls")).await;
            }
        }
    }
    panic!("the upload did not complete within {MAX_POLLS} polls");
}
