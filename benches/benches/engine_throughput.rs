//! P1: upload of 1 GiB through the engine to a local-disk store (fsync on, BLAKE3 digest on)
//! against a bare `object_store` multipart put of the same bytes to the same kind of store.
//! P2: verified download through the engine against a bare `get` stream of the same object.
//!
//! ```text
//! cargo bench -p backup-benches --bench engine_throughput
//! BENCH_BYTES=268435456 BENCH_ROUNDS=2 cargo bench -p backup-benches --bench engine_throughput
//! ```
//!
//! Both sides use 8 MiB parts with two in flight (the engine's defaults) and receive the
//! same 1 MiB chunks from memory. Rounds alternate which side goes first and start from
//! flushed disk caches; the medians are compared. The download baseline is the stream a
//! plain `store.get(..).into_stream()` gives (8 KiB reads on local disk); the engine reads
//! local files in 1 MiB blocks, hence its lead there.

use std::sync::Arc;
use std::time::Duration;

use backup_benches::{env_u64, mb_per_s, median, timed};
use backup_core::{Actor, CollectionId, CollectionSpec, Engine, Limits, MemoryCatalog, UploadOptions, VersionSelector};
use backup_store::local_disk_store;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};

const CHUNK: usize = 1 << 20;
const PART: usize = 8 << 20;

fn chunks(total: u64) -> Vec<Bytes> {
    // Distinct pseudo-random chunks so nothing downstream can shortcut repeated data.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..total.div_ceil(CHUNK as u64))
        .map(|_| {
            let mut v = Vec::with_capacity(CHUNK);
            while v.len() < CHUNK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.extend_from_slice(&x.to_le_bytes());
            }
            Bytes::from(v)
        })
        .collect()
}

async fn bare_put(store: &Arc<dyn ObjectStore>, path: &Path, data: &[Bytes], in_flight: usize) {
    let upload = store.put_multipart(path).await.expect("put_multipart");
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    for c in data {
        w.wait_for_capacity(in_flight).await.expect("capacity");
        w.put(c.clone());
    }
    w.finish().await.expect("finish");
}

/// The fastest plain read of a local object: its file in 1 MiB blocks, no verification.
async fn bare_file_read(store: &Arc<dyn ObjectStore>, path: &Path) -> u64 {
    let got = store.get(path).await.expect("get");
    let GetResultPayload::File(file, _) = got.payload else { panic!("not a local file") };
    let mut s = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK);
    let mut n = 0;
    while let Some(c) = s.try_next().await.expect("read") {
        n += c.len() as u64;
    }
    n
}

async fn bare_get(store: &Arc<dyn ObjectStore>, path: &Path) -> u64 {
    let mut s = store.get(path).await.expect("get").into_stream();
    let mut n = 0;
    while let Some(c) = s.try_next().await.expect("read") {
        n += c.len() as u64;
    }
    n
}

fn main() {
    let total = env_u64("BENCH_BYTES", 1 << 30);
    let rounds = env_u64("BENCH_ROUNDS", 10) as usize;
    let in_flight = env_u64("BENCH_PARTS_IN_FLIGHT", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let store = local_disk_store(dir.path()).expect("store");
        let engine = Engine::builder()
            .store(store.clone())
            .catalog(Arc::new(MemoryCatalog::new()))
            .part_size(PART)
            .parts_in_flight(in_flight)
            .build()
            .expect("engine");
        let me = Actor::user("bench");
        let id: CollectionId = "bench".parse().expect("id");
        let spec = CollectionSpec::new("b-${version}", Limits::new(1, total, total).expect("limits"));
        // Each version is deleted (outside the timed sections) before the next upload.
        engine.create_collection(&me, &id, spec).await.expect("collection");
        let data = chunks(total);
        let total = data.iter().map(|c| c.len() as u64).sum::<u64>();

        let (mut put, mut upload) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which side goes first; each upload starts from flushed disk caches and
            // is deleted right after, so every upload meets the same state.
            for engine_first in [round % 2 == 0, round % 2 == 1] {
                sync();
                if engine_first {
                    let body = stream::iter(data.clone()).map(Ok::<_, std::io::Error>);
                    let (v, t) =
                        timed(engine.upload_with(&me, &id, body, UploadOptions::new().expected_size(total))).await;
                    upload.push(t);
                    engine.delete_version(&me, &id, v.expect("upload").number).await.expect("delete version");
                } else {
                    let path = Path::from(format!("baseline/{round}"));
                    let ((), t) = timed(bare_put(&store, &path, &data, in_flight)).await;
                    put.push(t);
                    store.delete(&path).await.expect("delete");
                }
            }
        }

        let body = stream::iter(data.clone()).map(Ok::<_, std::io::Error>);
        let v = engine.upload_with(&me, &id, body, UploadOptions::new().expected_size(total)).await.expect("upload");
        let key = Path::from(v.object_key.as_str());
        let (mut get, mut download, mut file_read) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (n, t) = timed(bare_get(&store, &key)).await;
            assert_eq!(n, total);
            get.push(t);
            let (n, t) = timed(bare_file_read(&store, &key)).await;
            assert_eq!(n, total);
            file_read.push(t);
            let (n, t) = timed(async {
                let d = engine.download(&me, &id, VersionSelector::Latest).await.expect("download");
                d.into_stream().try_fold(0u64, |n, c| async move { Ok(n + c.len() as u64) }).await.expect("verified")
            })
            .await;
            assert_eq!(n, total);
            download.push(t);
        }
        report("P1", "upload_vs_put", total, &upload, &put);
        report("P2", "download_vs_get", total, &download, &get);
        let (d, f) = (mb_per_s(total, median(&download)), mb_per_s(total, median(&file_read)));
        println!(
            "   for scale: verified download {d:.0} MB/s vs unverified 1 MiB file reads {f:.0} MB/s, ratio {:.2}",
            d / f
        );
    });
}

/// Flushes the file system's dirty pages, outside of any timed section.
fn sync() {
    let _ = std::process::Command::new("sync").status();
}

fn report(id: &str, name: &str, bytes: u64, candidate: &[Duration], baseline: &[Duration]) {
    let (c, b) = (mb_per_s(bytes, median(candidate)), mb_per_s(bytes, median(baseline)));
    println!("{id} {name} ratio={:.2}", c / b);
    println!(
        "   {name}: engine {c:.0} MB/s, baseline {b:.0} MB/s (medians of {} rounds of {bytes} bytes)",
        candidate.len()
    );
    let ms = |d: &[Duration]| d.iter().map(|d| d.as_millis().to_string()).collect::<Vec<_>>().join(" ");
    println!("   {name} samples (ms): engine {} | baseline {}", ms(candidate), ms(baseline));
}
