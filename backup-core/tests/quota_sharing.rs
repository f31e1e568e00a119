//! Uploads with and without announced sizes share a collection's extra space: for random
//! limits, sizes and arrival orders, the set of uploads that commit is exactly the one the
//! quota arithmetic admits in that order, and the hard limit is never passed.

use std::collections::VecDeque;
use std::time::Duration;

use backup_core::catalog::CatalogExt;
use backup_core::testing::pattern;
use backup_core::{Actor, CollectionId, CollectionSpec, Engine, Error, Limits, UploadOptions, quota};
use bytes::Bytes;
use futures::channel::mpsc;
use proptest::prelude::*;

/// One upload: its size, and whether it announces it.
#[derive(Debug, Clone)]
struct Upload {
    size: u64,
    announced: bool,
}

fn uploads() -> impl Strategy<Value = Vec<Upload>> {
    proptest::collection::vec((0u64..400, any::<bool>()).prop_map(|(size, announced)| Upload { size, announced }), 1..7)
}

/// What the arithmetic admits: every upload starts in index order (an announced size is
/// reserved then, if it fits beside the announced ones before it; an unknown size holds
/// nothing of the extra space), then the bodies arrive whole, one upload after another, in
/// `order`; each fits if its size is within [`quota::allowance`] given the versions FIFO
/// keeps and the shares of the announced uploads still waiting.
fn admitted(limits: &Limits, uploads: &[Upload], order: &[usize]) -> Vec<bool> {
    let keep = limits.max_versions as usize - 1;
    let mut waiting: Vec<Option<u64>> = vec![None; uploads.len()];
    let mut started = vec![true; uploads.len()];
    for (i, u) in uploads.iter().enumerate() {
        if u.announced {
            let shares = waiting.iter().flatten().copied();
            if u.size <= quota::allowance(limits, [], shares) {
                waiting[i] = Some(quota::pool_share(limits, u.size));
            } else {
                started[i] = false;
            }
        }
    }
    let mut committed: VecDeque<u64> = VecDeque::new();
    let mut out = vec![false; uploads.len()];
    for &i in order {
        if !started[i] {
            continue;
        }
        waiting[i] = None;
        let kept = committed.iter().skip(committed.len().saturating_sub(keep)).copied();
        let shares = waiting.iter().flatten().copied();
        if uploads[i].size <= quota::allowance(limits, kept, shares) {
            out[i] = true;
            committed.push_back(uploads[i].size);
            while committed.len() > keep + 1 {
                committed.pop_front();
            }
        }
    }
    out
}

/// Runs the same through the engine: every upload is started in index order (its body a
/// channel nothing is sent to yet), then each body is sent in chunks of 7 bytes, in `order`,
/// and its upload awaited before the next body is sent.
async fn run(limits: &Limits, uploads: &[Upload], order: &[usize]) -> Vec<bool> {
    let engine = Engine::builder().max_uploads_per_collection(16).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, CollectionSpec::new("v-${version}", *limits)).await.unwrap();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for u in uploads {
        let (tx, rx) = mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let options = if u.announced { UploadOptions::new().expected_size(u.size) } else { UploadOptions::new() };
        let (engine2, actor2, id2) = (engine.clone(), actor.clone(), id.clone());
        let task = tokio::spawn(async move { engine2.upload_with(&actor2, &id2, rx, options).await });
        // Started once its reservation is in the catalog (or it was refused at once).
        let reserved = async {
            loop {
                let state = engine.catalog().collection_state(&id).await.unwrap();
                if state.pending.len() > senders.iter().flatten().count() || task.is_finished() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reserved).await.expect("the upload starts");
        senders.push(if task.is_finished() { None } else { Some(tx) });
        tasks.push(Some(task));
    }
    let mut out = vec![false; uploads.len()];
    for &i in order {
        let task = tasks[i].take().expect("each upload arrives once");
        if let Some(tx) = senders[i].take() {
            let data = pattern(i as u64, uploads[i].size as usize);
            for chunk in data.chunks(7) {
                let _ = tx.unbounded_send(Ok(Bytes::copy_from_slice(chunk)));
            }
        }
        match task.await.unwrap() {
            Ok(v) => {
                assert_eq!(v.size, uploads[i].size);
                out[i] = true;
            }
            Err(Error::QuotaExceeded { .. }) => {}
            Err(e) => panic!("upload {i} failed otherwise: {e}"),
        }
        let state = engine.catalog().collection_state(&id).await.unwrap();
        assert!(state.counters.bytes <= limits.max_collection_size, "hard limit passed: {:?}", state.counters);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_uploads_that_commit_are_those_the_arithmetic_admits(
        max_versions in 2u32..5,
        soft in 10u64..120,
        extra in 0u64..400,
        (uploads, order) in uploads().prop_flat_map(|u| {
            let n = u.len();
            (Just(u), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        }),
    ) {
        let limits = Limits::new(max_versions, soft, u64::from(max_versions) * soft + extra).unwrap();
        let expected = admitted(&limits, &uploads, &order);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let got = runtime.block_on(run(&limits, &uploads, &order));
        prop_assert_eq!(got, expected, "limits {:?}, order {:?}", limits, order);
    }
}
