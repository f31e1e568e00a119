//! Concurrent uploads into one collection over real HTTP: uploads of unknown size (chunked,
//! as backup-maker sends) share the collection's extra space as their bytes arrive, a stalled
//! one holds nobody's room, and what a killed server left on disk is swept by the next
//! maintenance run of the restarted one. Each test prints its figures as `SHARED …` (run with
//! `--nocapture` to see them).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{NO_RATE_LIMITS, Server, add_plain_collection, args, client, config_copy, files_under, json, login};

const KIB: usize = 1024;

/// A server with a collection `shared` of 100 versions of 1 KiB, 3 MiB in all (about 2.9 MiB
/// of extra space, room for three uploads of 900 KiB), up to 32 uploads in progress; a client
/// logged in as its manager, and the upload URL.
struct Shared {
    server: Server,
    client: reqwest::Client,
    token: String,
    url: String,
    config: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Shared {
    async fn start(extra: &[&str]) -> Shared {
        let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
        add_plain_collection(config.path(), "shared", 100, "1K", "3M");
        let server = Server::start(&args(config.path(), data.path(), &server_args(extra)));
        let client = client();
        let token = login(&client, &server, "some-user", "admin", None).await;
        let url = server.url("/api/alpha/repository/collection/shared/version");
        Shared { server, client, token, url, config, data }
    }
}

fn server_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--max-uploads-per-collection", "32", "--max-uploads-per-user", "32"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    all
}

/// A chunked body of `len` bytes, sent in 16 KiB chunks.
fn chunked(len: usize, seed: u8) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..len).step_by(16 * KIB).map(|start| Ok(Bytes::from(vec![seed; (len - start).min(16 * KIB)]))).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

/// Scenario 1 of the load test: 32 chunked uploads of 900 KiB started together. Before, the
/// first took the whole extra space at once and 31 were refused; now the three that fit
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_share_the_extra_space() {
    let Shared { server, client: c, token, url, config: _config, data: _data } = Shared::start(&[]).await;
    let started = Instant::now();
    let uploads = (0..32u8).map(|i| {
        let request = c.post(&url).bearer_auth(&token).body(chunked(900 * KIB, i));
        async move { json(request.send().await.unwrap()).await }
    });
    let answers = futures::future::join_all(uploads).await;
    let committed = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&serde_json::Value> = answers.iter().filter(|(s, _)| *s == 413).map(|(_, b)| b).collect();
    println!(
        "SHARED 32 chunked uploads of 900 KiB into 2.9 MiB of extra space: committed={committed} refused={} in {:?}",
        refused.len(),
        started.elapsed()
    );
    assert_eq!((committed, refused.len()), (3, 29), "{answers:?}");
    assert!(refused.iter().all(|b| b.to_string().contains("allowed to upload only")), "{refused:?}");
    let listing = server.url("/api/stable/repository/collection/shared/version");
    let (status, body) = json(c.get(listing).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let versions = body["data"]["versions"].as_array().unwrap();
    let total: u64 = versions.iter().map(|v| v["filesize"].as_u64().unwrap()).sum();
    assert_eq!(total, 3 * 900 * KIB as u64);
}

/// Scenario 1b: one chunked upload stalls 4 KiB in; an upload of 900 KiB with a
/// `Content-Length` is accepted beside it, and the stalled one commits too once its bytes come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_chunked_upload_holds_nobodys_room() {
    let Shared { server: _server, client: c, token, url, config: _config, data: _data } = Shared::start(&[]).await;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    tx.unbounded_send(Ok(Bytes::from(vec![1u8; 4 * KIB]))).unwrap();
    let stalled = tokio::spawn(c.post(&url).bearer_auth(&token).body(reqwest::Body::wrap_stream(rx)).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = json(c.post(&url).bearer_auth(&token).body(vec![2u8; 900 * KIB]).send().await.unwrap()).await;
    assert_eq!(status, 200, "an announced upload fits beside a stalled one: {body}");
    for _ in 0..(896 / 16) {
        tx.unbounded_send(Ok(Bytes::from(vec![1u8; 16 * KIB]))).unwrap();
    }
    drop(tx);
    let (status, body) = json(stalled.await.unwrap().unwrap()).await;
    assert_eq!(status, 200, "the stalled upload commits once its bytes arrive: {body}");
    assert_eq!(body["data"]["version"]["filesize"], 900 * KIB);
}

/// Scenario 2: a server killed during an upload leaves a staging file; the restarted server's
/// maintenance removes it (by the catalog's record of the released upload) within seconds, not
/// after a second restart, and touches nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_uploads_staging_file_is_swept_while_the_server_runs() {
    let every_second = ["--maintenance-schedule", "* * * * * *"];
    let Shared { mut server, client: c, token, url, config, data } = Shared::start(&every_second).await;
    let (status, body) = json(c.post(&url).bearer_auth(&token).body(vec![3u8; 100 * KIB]).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let blobs = data.path().join("blobs");
    let committed = files_under(&blobs);
    // An upload past its first 2 MiB part: its staging file is on disk.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    for _ in 0..(2560 / 16) {
        tx.unbounded_send(Ok(Bytes::from(vec![4u8; 16 * KIB]))).unwrap();
    }
    let _cut = tokio::spawn(c.post(&url).bearer_auth(&token).body(reqwest::Body::wrap_stream(rx)).send());
    let staging = |files: Vec<std::path::PathBuf>| -> Vec<std::path::PathBuf> {
        files.into_iter().filter(|f| f.file_name().unwrap().to_string_lossy().contains('#')).collect()
    };
    let found = support::eventually(Duration::from_secs(10), || {
        let found = staging(files_under(&blobs));
        async move { (!found.is_empty()).then_some(found) }
    })
    .await
    .expect("a staging file appears");
    let mut child = server.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(found.iter().all(|f| f.exists()), "the staging file outlives the killed server");
    drop(tx);

    let server = Server::start(&args(config.path(), data.path(), &server_args(&every_second)));
    let started = Instant::now();
    let gone = support::eventually(Duration::from_secs(10), || {
        let left = staging(files_under(&blobs));
        async move { left.is_empty().then_some(()) }
    })
    .await;
    println!("SHARED staging file of a killed upload removed after {:?} of the restarted server", started.elapsed());
    assert!(gone.is_some(), "staging files left: {:?}", staging(files_under(&blobs)));
    for f in &committed {
        assert!(f.exists(), "{} was deleted", f.display());
    }
    let token = login(&c, &server, "some-user", "admin", None).await;
    let r = c.get(server.url("/api/alpha/repository/collection/shared/version/latest")).bearer_auth(&token);
    let got = r.send().await.unwrap().bytes().await.unwrap();
    assert!(got.len() == 100 * KIB && got.iter().all(|&b| b == 3), "the committed version is intact");
}
