//! P12: what replicas cost.
//!
//! - `replication_vs_copy`: versions of 1 MiB committed on local disk (fsync on, SQLite
//!   catalog) are replicated to another local folder (blobs with fsync, descriptions without,
//!   as the server opens a `file://` replica) by `Engine::replicate`, 4 workers; the baseline
//!   copies the same objects (each version's blob and its description) with plain
//!   `object_store` gets and puts, 4 versions at a time, into a fresh folder opened the same
//!   way. Versions per second, medians of the rounds (each copy after a `sync`, the three in
//!   turns). `ratio_blobs_only` is against a baseline
//!   that copies the blobs alone: on ext4 most of a copy's time is the kernel creating files,
//!   and a replica creates two per version.
//! - `upload_with_replica`: P5's small uploads (4 KiB, 16 collections, 8 at a time, local disk
//!   with fsync, SQLite) with one replica whose replication loop runs meanwhile, against the
//!   same without a replica. `ratio` has the replica in memory, standing for one on another
//!   machine (what it costs this one: the commit's queue row, the copies' reads, hashing and
//!   catalog reads); `ratio_replica_on_this_disk` has it in a folder of the same disk, whose
//!   fsyncs the copies then share with the uploads. Rounds take turns; each ratio is a round's,
//!   then their median and spread.
//!
//! ```text
//! .ci/with-services cargo bench -p backup-benches --bench replication
//! ```
//!
//! `BENCH_REPLICA_VERSIONS` (300), `BENCH_REPLICA_ROUNDS` (5), `BENCH_SMALL_UPLOADS` (4000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_benches::env_u64;
use backup_core::replica::{Replica, ReplicationOptions};
use backup_core::{Actor, CollectionSpec, Engine, Limits, UploadOptions};
use backup_store::{SqliteCatalog, local_disk_store};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

const VERSION_SIZE: usize = 1 << 20;
const WORKERS: usize = 4;

async fn engine(dir: &std::path::Path, replica: Option<std::path::PathBuf>) -> Engine {
    std::fs::create_dir_all(dir).expect("dir");
    let catalog = Arc::new(SqliteCatalog::open(dir.join("catalog.db")).await.expect("sqlite"));
    let blobs = dir.join("blobs");
    let mut builder = Engine::builder()
        .catalog(catalog)
        .store(local_disk_store(&blobs).expect("store"))
        .description_store(backup_store::local_disk::description_store(&blobs).expect("descriptions"));
    if let Some(folder) = replica {
        // As the server opens a `file://` replica: blobs with fsync, descriptions without.
        let replica = backup_store::OpenedStore::local_disk(&folder).and_then(|o| o.replica("bench")).expect("replica");
        builder = builder.replica(replica);
    }
    builder.build().expect("engine")
}

/// Commits `n` versions of 1 MiB into one collection; their object keys.
async fn versions(engine: &Engine, n: u64) -> Vec<String> {
    let me = Actor::user("bench");
    let id = "copies".parse().expect("id");
    let spec = CollectionSpec::new("c-${version}", Limits::new(10_000, 2 << 20, 20 << 30).expect("limits"));
    engine.create_collection(&me, &id, spec).await.expect("collection");
    let mut keys = Vec::new();
    for i in 0..n {
        let body = bytes::Bytes::from(vec![(i % 251) as u8; VERSION_SIZE]);
        let s = futures::stream::iter([Ok::<_, std::io::Error>(body)]);
        let v = engine
            .upload_with(&me, &id, s, UploadOptions::new().expected_size(VERSION_SIZE as u64))
            .await
            .expect("upload");
        keys.push(v.object_key);
    }
    keys
}

/// Replicates what is queued; versions per second.
async fn replicate_all(engine: &Engine, n: u64) -> f64 {
    let options = ReplicationOptions::default().workers(WORKERS);
    let start = Instant::now();
    let mut copied = 0;
    loop {
        let run = engine.replicate("bench", "bench", &options).await.expect("replicate");
        assert!(run.unavailable.is_none(), "{run:?}");
        copied += run.copied;
        if !run.more {
            break;
        }
    }
    assert_eq!(copied, n, "every version copied once");
    n as f64 / start.elapsed().as_secs_f64()
}

/// The same objects copied with plain gets and puts, `WORKERS` versions at a time (with
/// `descriptions`, each version's description after its blob, into that store); versions per
/// second.
async fn plain_copy(
    from: &Arc<dyn ObjectStore>,
    to: &Arc<dyn ObjectStore>,
    descriptions: Option<&Arc<dyn ObjectStore>>,
    keys: &[String],
) -> f64 {
    let start = Instant::now();
    futures::stream::iter(keys.iter().map(|k| async move {
        let key = object_store::path::Path::from(k.as_str());
        let bytes = from.get(&key).await.expect("get").bytes().await.expect("bytes");
        to.put(&key, bytes.into()).await.expect("put");
        if let Some(d) = descriptions {
            let key = object_store::path::Path::from(format!("{k}{}", backup_core::store::DESCRIPTION_SUFFIX));
            let bytes = from.get(&key).await.expect("get").bytes().await.expect("bytes");
            d.put(&key, bytes.into()).await.expect("put");
        }
    }))
    .buffer_unordered(WORKERS)
    .collect::<Vec<()>>()
    .await;
    keys.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Where the replica of the small uploads is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplicaAt {
    None,
    Memory,
    Disk,
}

/// Small uploads with a replica being written meanwhile, or without one.
async fn small_uploads(dir: &std::path::Path, total: u64, at: ReplicaAt) -> f64 {
    let engine = match at {
        ReplicaAt::None => engine(dir, None).await,
        ReplicaAt::Disk => engine(dir, Some(dir.join("replica"))).await,
        ReplicaAt::Memory => {
            let engine = engine(dir, None).await;
            let memory = Replica::new("bench", Arc::new(object_store::memory::InMemory::new())).expect("replica");
            engine.set_replicas(vec![memory]).expect("replica");
            engine
        }
    };
    let with = at != ReplicaAt::None;
    let looping = with.then(|| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let options = ReplicationOptions::default();
            loop {
                let run = engine.replicate("bench", "bench", &options).await.expect("replicate");
                if !run.more {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    });
    let rate = backup_benches::small_uploads(&engine, "replicated", total).await;
    if let Some(l) = looping {
        l.abort();
    }
    rate
}

fn main() {
    let n = env_u64("BENCH_REPLICA_VERSIONS", 300);
    let rounds = env_u64("BENCH_REPLICA_ROUNDS", 5) as usize;
    let total = env_u64("BENCH_SMALL_UPLOADS", 4000);
    let _ = std::process::Command::new("sync").status();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let (mut ours, mut plain, mut blobs) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let dir = tmp.path().join(format!("copy-{r}"));
            let engine = engine(&dir, Some(dir.join("replica"))).await;
            // The replica's cursor exists before the versions: they come through its queue.
            engine.replicate("bench", "bench", &ReplicationOptions::default()).await.expect("first run");
            let keys = versions(&engine, n).await;
            let to = local_disk_store(dir.join("plain")).expect("plain");
            let descriptions = backup_store::local_disk::description_store(dir.join("plain")).expect("plain");
            let only = local_disk_store(dir.join("blobs-only")).expect("plain");
            // Each copy starts on a clean disk (the previous one's writes flushed), and each
            // takes each place in the order once every three rounds.
            for phase in 0..3 {
                let _ = std::process::Command::new("sync").status();
                match (phase + r) % 3 {
                    0 => plain.push(plain_copy(engine.store(), &to, Some(&descriptions), &keys).await),
                    1 => ours.push(replicate_all(&engine, n).await),
                    _ => blobs.push(plain_copy(engine.store(), &only, None, &keys).await),
                }
            }
        }
        // Each round's ratio (its three copies ran on the same data, one after another),
        // then their median and spread: the disk's mood changes from round to round.
        let ratios: Vec<f64> = ours.iter().zip(&plain).map(|(o, p)| o / p).collect();
        let blob_ratios: Vec<f64> = ours.iter().zip(&blobs).map(|(o, b)| o / b).collect();
        let spread = |v: &[f64]| {
            let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{lo:.2}-{hi:.2}")
        };
        println!(
            "P12 replication_vs_copy ratio={:.2} spread={} ratio_blobs_only={:.2} replicated_per_s={:.1} \
             plain_copy_per_s={:.1} blobs_only_per_s={:.1} versions={n} size=1MiB workers={WORKERS} rounds={rounds}",
            median(ratios.clone()),
            spread(&ratios),
            median(blob_ratios),
            median(ours),
            median(plain),
            median(blobs),
        );
        let (mut without, mut memory, mut disk) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            for phase in 0..3 {
                let _ = std::process::Command::new("sync").status();
                let dir = tmp.path().join(format!("small-{r}-{phase}"));
                match (phase + r) % 3 {
                    0 => without.push(small_uploads(&dir, total, ReplicaAt::None).await),
                    1 => memory.push(small_uploads(&dir, total, ReplicaAt::Memory).await),
                    _ => disk.push(small_uploads(&dir, total, ReplicaAt::Disk).await),
                }
            }
        }
        let ratios: Vec<f64> = memory.iter().zip(&without).map(|(w, o)| w / o).collect();
        let disk_ratios: Vec<f64> = disk.iter().zip(&without).map(|(w, o)| w / o).collect();
        println!(
            "P12 upload_with_replica ratio={:.2} spread={} ratio_replica_on_this_disk={:.2} spread={} \
             with_per_s={:.0} without_per_s={:.0} (4 KiB uploads, sqlite, replication running) rounds={rounds}",
            median(ratios.clone()),
            spread(&ratios),
            median(disk_ratios.clone()),
            spread(&disk_ratios),
            median(memory),
            median(without)
        );
    });
}
