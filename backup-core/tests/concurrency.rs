//! Concurrency: many tasks upload into one nearly full collection while a monitor checks the
//! hard limit continuously; numbers stay unique and increasing and nothing committed is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backup_core::testing::{body_of, check_invariants, check_recovered, pattern};
use backup_core::{
    Actor, Catalog, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, MemoryCatalog, UploadOptions, Version,
};
use futures::StreamExt;
use object_store::ObjectStore;

const MAX_VERSIONS: u32 = 4;
const SOFT: u64 = 1000;
const HARD: u64 = 6000; // 2000 of extra space

async fn run(store: Arc<dyn ObjectStore>) {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    let engine = Engine::builder().catalog(catalog.clone()).store(store).part_size(700).build().unwrap();
    let actor = Actor::user("load");
    let id: CollectionId = "nearly-full".parse().unwrap();
    let limits = Limits::new(MAX_VERSIONS, SOFT, HARD).unwrap();
    engine.create_collection(&actor, &id, CollectionSpec::new("n-${version}", limits)).await.unwrap();
    // Nearly full: four versions of 1400 use 1600 of the 2000 bytes of extra space.
    let mut acknowledged: Vec<Version> = Vec::new();
    for seed in 0..4 {
        acknowledged.push(engine.upload(&actor, &id, body_of(pattern(seed, 1400), 256)).await.unwrap());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (catalog, id, stop, samples) = (catalog.clone(), id.clone(), stop.clone(), samples.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::SeqCst) {
                let state = catalog.collection_state(&id).await.unwrap();
                let total = state.committed_bytes();
                assert!(total <= HARD, "hard limit passed: {total} > {HARD}");
                // The pool: the versions kept if one more commits, plus the live shares.
                let keep_from = (state.committed.len() + 1).saturating_sub(MAX_VERSIONS as usize);
                let kept: u64 = state.committed[keep_from..].iter().map(|v| v.size.saturating_sub(SOFT)).sum();
                let shares: u64 = state.live_pending(chrono::Utc::now()).map(|p| p.pool_share).sum();
                assert!(
                    kept + shares <= HARD - u64::from(MAX_VERSIONS) * SOFT,
                    "extra space over-promised: {kept} + {shares}"
                );
                peak = peak.max(total);
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            peak
        })
    };

    let tasks: Vec<_> = (0..24u64)
        .map(|t| {
            let (engine, actor, id) = (engine.clone(), actor.clone(), id.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut refused = 0;
                for i in 0..6u64 {
                    // Sizes from 200 to 2999: many fit, some only while the pool is free.
                    let size = 200 + ((t * 7919 + i * 104_729) % 2800) as usize;
                    // Yield between chunks, as a network body would, so uploads overlap.
                    let body = body_of(pattern(t * 100 + i, size), 333).then(|chunk| async {
                        tokio::task::yield_now().await;
                        chunk
                    });
                    // Half announce their size, half do not (chunked).
                    let options = if (t + i) % 2 == 0 {
                        UploadOptions::new().expected_size(size as u64)
                    } else {
                        UploadOptions::new()
                    };
                    match engine.upload_with(&actor, &id, body, options).await {
                        Ok(v) => ok.push(v),
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        let (ok, r) = t.await.unwrap();
        acknowledged.extend(ok);
        refused += r;
    }
    stop.store(true, Ordering::SeqCst);
    let peak = monitor.await.unwrap();
    assert!(samples.load(Ordering::SeqCst) > 10, "the monitor sampled while uploads ran");
    assert!(
        refused > 0 && acknowledged.len() > 40,
        "the load mixes fits and refusals: {} ok, {refused} refused",
        acknowledged.len()
    );
    assert!(peak <= HARD);

    // Numbers: unique, consecutive, and increasing in commit order.
    acknowledged.sort_by_key(|v| v.number);
    let numbers: Vec<u64> = acknowledged.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..=acknowledged.len() as u64).collect::<Vec<_>>());
    assert!(acknowledged.windows(2).all(|w| w[0].committed_at <= w[1].committed_at), "numbers follow commit order");
    // Nothing committed is lost: FIFO keeps exactly the newest four acknowledged.
    let expected = acknowledged[acknowledged.len() - MAX_VERSIONS as usize..].to_vec();
    check_invariants(&engine, &id, &expected, acknowledged.len() as u64).await.unwrap();
    let report = engine.recover().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    check_recovered(&engine, chrono::Utc::now() - Duration::from_secs(900)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_uploads_into_a_nearly_full_collection_memory() {
    run(Arc::new(object_store::memory::InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_uploads_into_a_nearly_full_collection_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    run(backup_core::local_disk_store(dir.path()).unwrap()).await;
}
