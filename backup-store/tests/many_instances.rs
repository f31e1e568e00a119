//! Many instances: two engines with separate connection pools on one PostgreSQL database and
//! one S3 bucket, uploading concurrently into one nearly full collection.

#[cfg(not(all(feature = "postgres", feature = "aws")))]
#[test]
fn two_engines_share_postgres_and_s3() {
    backup_store::testing::skipped(
        "two_engines_share_postgres_and_s3",
        "built without the `postgres` and `aws` features",
    );
}

#[cfg(all(feature = "postgres", feature = "aws"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_postgres_and_s3() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use backup_core::catalog::Catalog;
    use backup_core::catalog::CatalogExt;
    use backup_core::testing::{body_of, check_invariants, check_recovered, pattern};
    use backup_core::{Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, UploadOptions, Version};
    use backup_store::{PostgresCatalog, StoreOptions, object_store_from_url};

    let Some(url) = backup_store::testing::database_url("two_engines_share_postgres_and_s3") else { return };
    let s3 = backup_store::testing::S3Server::start().await;
    let schema = backup_store::testing::fresh_schema("instances");
    let mut engines = Vec::new();
    let mut catalogs: Vec<Arc<dyn Catalog>> = Vec::new();
    for _ in 0..2 {
        let catalog: Arc<dyn Catalog> =
            Arc::new(PostgresCatalog::builder(&url).schema(&schema).pool_size(8).build().await.unwrap());
        let store = object_store_from_url(&s3.url(), &StoreOptions::default()).unwrap();
        // 16 uploaders at once: the quota, not the cap on uploads in progress, is under test.
        let engine = Engine::builder()
            .catalog(catalog.clone())
            .store(store)
            .part_size(5 << 20)
            .max_uploads_per_collection(64)
            .build()
            .unwrap();
        engines.push(engine);
        catalogs.push(catalog);
    }
    const KEEP: u32 = 4;
    const SOFT: u64 = 100_000;
    const HARD: u64 = 4 * SOFT + 200_000;
    let actor = Actor::user("instances");
    let id: CollectionId = "shared".parse().unwrap();
    engines[0]
        .create_collection(&actor, &id, CollectionSpec::new("s-${version}", Limits::new(KEEP, SOFT, HARD).unwrap()))
        .await
        .unwrap();
    let mut acknowledged: Vec<Version> = Vec::new();
    // Nearly full: 160,000 of the 200,000 bytes of extra space used.
    for seed in 0..4 {
        acknowledged.push(
            engines[seed as usize % 2].upload(&actor, &id, body_of(pattern(seed, 140_000), 16_384)).await.unwrap(),
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (catalog, id, stop, samples) = (catalogs[1].clone(), id.clone(), stop.clone(), samples.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let all = backup_core::catalog::protocol::VersionsNeeded::Range(
                    backup_core::catalog::protocol::VersionRange::All,
                );
                let state = catalog.collection_state_with(&id, all).await.unwrap();
                let total: u64 = state.committed.iter().map(|v| v.size).sum();
                assert_eq!(total, state.counters.bytes, "the counters follow the versions");
                assert!(total <= HARD, "hard limit passed: {total} > {HARD}");
                let keep_from = (state.committed.len() + 1).saturating_sub(KEEP as usize);
                let kept: u64 = state.committed[keep_from..].iter().map(|v| v.size.saturating_sub(SOFT)).sum();
                let shares: u64 = state.live_pending(chrono::Utc::now().into()).map(|p| p.pool_share).sum();
                assert!(kept + shares <= HARD - u64::from(KEEP) * SOFT, "extra space over-promised: {kept} + {shares}");
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let (engine, actor, id) = (engines[t as usize % 2].clone(), actor.clone(), id.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (Vec::new(), 0);
                for i in 0..4u64 {
                    let size = 20_000 + ((t * 7919 + i * 104_729) % 280_000) as usize;
                    let options = if (t + i) % 2 == 0 {
                        UploadOptions::new().expected_size(size as u64)
                    } else {
                        UploadOptions::new()
                    };
                    match engine
                        .upload_with(&actor, &id, body_of(pattern(t * 10 + i + 10, size), 16_384), options)
                        .await
                    {
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
    monitor.await.unwrap();
    assert!(samples.load(Ordering::SeqCst) > 5);
    assert!(refused > 0 && acknowledged.len() > 20, "{} ok, {refused} refused", acknowledged.len());
    acknowledged.sort_by_key(|v| v.number);
    let numbers: Vec<u64> = acknowledged.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..=acknowledged.len() as u64).collect::<Vec<_>>(), "unique, consecutive numbers");
    let expected = acknowledged[acknowledged.len() - KEEP as usize..].to_vec();
    for engine in &engines {
        check_invariants(engine, &id, &expected, acknowledged.len() as u64).await.unwrap();
    }
    let report = engines[1].recover().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    check_recovered(&engines[0], chrono::Utc::now() - chrono::Duration::minutes(15)).await.unwrap();
}
