//! P8: a scrub of versions on local disk against a plain read-and-hash of the same files
//! (1 MiB blocks, BLAKE3, the collection's digest); and a catalog rebuilt from a local store
//! of 10,000 versions into a fresh SQLite catalog.
//!
//! ```text
//! cargo bench -p backup-benches --bench scrub
//! BENCH_SCRUB_BYTES=134217728 BENCH_REBUILD_VERSIONS=2000 cargo bench -p backup-benches --bench scrub
//! ```
//!
//! The scrub reads every version back through the engine (the same verified read as a
//! download), records each result in the catalog and checks each version's description; the
//! baseline only reads and hashes. Both read the same files, from the page cache (they were
//! just written and are read in alternating rounds); medians are compared.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use backup_benches::{env_u64, mb_per_s, median, timed};
use backup_core::catalog::Catalog;
use backup_core::{
    Actor, CollectionId, CollectionSpec, DigestAlgorithm, Engine, Limits, MemoryCatalog, RebuildOptions, ScrubOptions,
};
use backup_store::{SqliteCatalog, local_disk_store};
use bytes::Bytes;
use futures::stream;

const CHUNK: usize = 1 << 20;

fn body(seed: u64, len: usize) -> Vec<Bytes> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes()[..(n - v.len()).min(8)]);
        }
        out.push(Bytes::from(v));
        left -= n;
    }
    out
}

/// Reads each file in 1 MiB blocks and hashes it: what any verification must at least do.
fn read_and_hash(files: &[std::path::PathBuf]) -> u64 {
    let mut block = vec![0u8; CHUNK];
    let mut total = 0;
    for f in files {
        let mut file = std::fs::File::open(f).expect("open");
        let mut hasher = DigestAlgorithm::Blake3.hasher();
        loop {
            let n = file.read(&mut block).expect("read");
            if n == 0 {
                break;
            }
            hasher.update(&block[..n]);
            total += n as u64;
        }
        std::hint::black_box(hasher.finalize());
    }
    total
}

fn main() {
    let total = env_u64("BENCH_SCRUB_BYTES", 512 << 20) as usize;
    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    let versions = env_u64("BENCH_REBUILD_VERSIONS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let me = Actor::user("bench");
        // P8 scrub_vs_read: 8 versions of an eighth of the total each.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let store = local_disk_store(dir.path()).expect("store");
        let engine = Engine::builder().store(store).catalog(Arc::new(MemoryCatalog::new())).build().expect("engine");
        let id: CollectionId = "scrub".parse().expect("id");
        let each = total / 8;
        let spec = CollectionSpec::new("s-${version}", Limits::new(8, each as u64, total as u64).expect("limits"));
        engine.create_collection(&me, &id, spec).await.expect("collection");
        let mut files = Vec::new();
        for i in 0..8 {
            let chunks = body(i + 1, each).into_iter().map(Ok::<_, std::io::Error>);
            let v = engine.upload(&me, &id, stream::iter(chunks)).await.expect("upload");
            files.push(dir.path().join(&v.object_key));
        }
        let bytes = (each * 8) as u64;
        let (mut scrubs, mut reads) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for scrub_first in [round % 2 == 0, round % 2 == 1] {
                if scrub_first {
                    let (report, t) = timed(engine.scrub(&ScrubOptions::all())).await;
                    let report = report.expect("scrub");
                    assert_eq!((report.checked, report.bytes, report.intact), (8, bytes, 8), "{report:?}");
                    scrubs.push(t);
                } else {
                    let files = files.clone();
                    let (n, t) = timed(async { tokio::task::spawn_blocking(move || read_and_hash(&files)).await }).await;
                    assert_eq!(n.expect("read"), bytes);
                    reads.push(t);
                }
            }
        }
        let (s, r) = (mb_per_s(bytes, median(&scrubs)), mb_per_s(bytes, median(&reads)));
        println!("P8 scrub_vs_read ratio={:.2}", s / r);
        println!("   scrub_vs_read: scrub {s:.0} MB/s, read-and-hash {r:.0} MB/s (medians of {rounds} rounds of {bytes} bytes)");
        let ms = |d: &[Duration]| d.iter().map(|d| d.as_millis().to_string()).collect::<Vec<_>>().join(" ");
        println!("   scrub_vs_read samples (ms): scrub {} | read-and-hash {}", ms(&scrubs), ms(&reads));

        // P8 rebuild_per_s: a local store of `versions` small versions in 10 collections,
        // rebuilt into a fresh SQLite catalog. The store is filled without fsync (only the
        // rebuild is measured, and it only reads it): 10,000 synced uploads would drain the
        // disk's budget of syncs for the benchmarks after this one.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        std::fs::create_dir_all(dir.path().join("blobs")).expect("blobs");
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("blobs")).expect("store"));
        let engine =
            Engine::builder().store(store.clone()).catalog(Arc::new(MemoryCatalog::new())).build().expect("engine");
        let per = versions.div_ceil(10);
        let mut ids = Vec::new();
        for c in 0..10 {
            let id: CollectionId = format!("c{c}").parse().expect("id");
            let limits = Limits::new(u32::try_from(per).expect("count"), 1 << 20, 1 << 30).expect("limits");
            engine.create_collection(&me, &id, CollectionSpec::new("f-${version}", limits)).await.expect("collection");
            ids.push(id);
        }
        let mut made = 0;
        'fill: for n in 0..per {
            for id in &ids {
                if made == versions {
                    break 'fill;
                }
                let chunk = Bytes::from(format!("version {n} of {id}: {}", "x".repeat(100)));
                engine.upload(&me, id, stream::iter([Ok::<_, std::io::Error>(chunk)])).await.expect("upload");
                made += 1;
            }
        }
        let fresh: Arc<dyn Catalog> = Arc::new(SqliteCatalog::open(dir.path().join("rebuilt.db")).await.expect("sqlite"));
        let rebuilt = Engine::builder().store(store).catalog(fresh).adopt_store(true).build().expect("engine");
        let _ = std::process::Command::new("sync").status();
        let (report, t) = timed(rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog())).await;
        let report = report.expect("rebuild");
        assert_eq!(report.versions, versions, "{}", report.summary());
        println!(
            "P8 rebuild rebuild_per_s={:.0} versions={versions} seconds={:.2}",
            versions as f64 / t.as_secs_f64(),
            t.as_secs_f64()
        );
    });
    // The benchmarks after this one measure fsyncs: leave them no writeback of ours.
    let _ = std::process::Command::new("sync").status();
}
