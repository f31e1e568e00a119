//! The library against a real server on loopback (`backup_server::spawn`), and against small
//! proxies and fake servers that damage, lose or refuse answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_client::testing::{Lose, answer_losing_proxy, flipping_proxy};
use backup_client::{Client, Error, ErrorKind, LoginRequest, TokenStore, UploadOptions};
use backup_server::{RunningServer, ServerConfig, spawn};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "a password for tests";

async fn server() -> RunningServer {
    let mut config = ServerConfig::for_tests();
    // Deleted versions stay restorable.
    config.args_mut().trash_retention = Duration::from_secs(3600);
    let config = config.user("ci", PASSWORD, &[]).user("reader", PASSWORD, &[]).collection(
        "db",
        10,
        "10M",
        "100M",
        &[("ci", &["collectionManager"]), ("reader", &["backupDownloader"])],
    );
    spawn(config).await.expect("the server starts")
}

/// A client of `url` (the server or a proxy in front of it) with a token of `user`.
async fn client_of(url: &str, server: &RunningServer, user: &str) -> Client {
    let token = server.token(user, PASSWORD).await.unwrap();
    Client::builder().with_server(url).with_token(token).with_attempts(2).build().unwrap()
}

fn body(chunks: &[&'static [u8]]) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>())
}

/// Bytes that do not compress, of a given length.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_upload_with_metadata_and_key_replay_list_and_manage() {
    let server = server().await;
    let anonymous = Client::builder().with_server(format!("{}/", server.url(""))).build().unwrap();
    assert_eq!(anonymous.server(), server.url(""), "the address is normalized");

    // Login, and the session kept in a private token file.
    let wrong = anonymous.login(&LoginRequest::new("ci", "not the password")).await.unwrap_err();
    assert_eq!((wrong.kind(), wrong.status()), (ErrorKind::Refused, Some(401)), "{wrong}");
    let session = anonymous.login(&LoginRequest::new("ci", PASSWORD)).await.unwrap();
    assert_eq!(session.username, "ci");
    assert!(!session.token.is_empty() && !session.session_id.is_empty() && !session.expire.is_empty());
    assert!(!format!("{session:?}").contains(&session.token), "Debug never shows a token");
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::new(dir.path().join("cli/tokens.json"));
    store.put(anonymous.server(), &session).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is the user's alone");
    }
    let stored = store.get(anonymous.server()).unwrap().unwrap();
    assert!(stored == session);
    let client = anonymous.with_token(Some(stored.token));

    // An upload with metadata (any text) and a key.
    let options = UploadOptions::new()
        .metadata("git.head", "refs/heads/main")
        .metadata("Note", "two\nlines, «ü»")
        .idempotency_key("job-1");
    let first = client.upload("db", body(&[b"hello, ", b"world"]), options).await.unwrap();
    assert_eq!((first.version.number, first.version.size), (1, 12));
    assert!(!first.replayed && first.lost_answer.is_none());
    assert_eq!(first.idempotency_key, "job-1");
    assert_eq!(first.version.metadata["git.head"], "refs/heads/main");
    assert_eq!(first.version.metadata["note"], "two\nlines, «ü»", "names are lower case over HTTP");
    assert_eq!(first.version.user, "ci");
    assert!(first.version.digest.is_some() && first.version.created_at.is_some());

    // The same key again: the stored version, and the body is not read.
    let replay = client.upload("db", body(&[b"other bytes"]), UploadOptions::new().idempotency_key("job-1")).await;
    let replay = replay.unwrap();
    assert!(replay.replayed, "Idempotent-Replayed: true");
    assert_eq!(replay.version.id, first.version.id);
    // Without a key, each upload has its own: a new version; the length announced.
    let second = client.upload("db", body(&[b"second"]), UploadOptions::new().content_length(6)).await.unwrap().version;
    assert_eq!(second.number, 2);
    let short = client.upload("db", body(&[b"short"]), UploadOptions::new().content_length(6)).await.unwrap_err();
    assert_ne!(short.kind(), ErrorKind::Refused, "a body shorter than announced never becomes a version: {short}");

    // Listings and the lookup by key.
    let versions = client.versions("db").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(versions[0], first.version);
    assert_eq!(versions[0].json()["versionNumber"], 1, "the server's JSON is kept");
    let found = client.version_by_idempotency_key("db", "job-1").await.unwrap().unwrap();
    assert_eq!(found.id, first.version.id);
    assert!(client.version_by_idempotency_key("db", "job-2").await.unwrap().is_none());
    let collections = client.collections().await.unwrap();
    let ids: Vec<&str> = collections.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["db"]);

    // Local checks, before any request.
    let bad = UploadOptions::new().metadata("a b", "c");
    assert_eq!(client.upload("db", body(&[b"x"]), bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let bad = UploadOptions::new().idempotency_key("two words");
    assert_eq!(client.upload("db", body(&[b"x"]), bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(client.download("db", "yesterday").await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // Delete, restore, retention, verify, health.
    assert_eq!(client.delete_version("db", 2).await.unwrap().number, 2);
    assert_eq!(client.versions("db").await.unwrap().len(), 1);
    assert_eq!(client.restore_version("db", "v2").await.unwrap().number, 2);
    assert_eq!(client.versions("db").await.unwrap().len(), 2);
    assert!(client.retention("db").await.unwrap()["versions"].is_array());
    let verified = client.verify("db").await.unwrap();
    assert!(verified.len() == 2 && verified.iter().all(|v| v.ok), "{verified:?}");
    let health = anonymous.health("db", None).await.unwrap();
    assert!(health.is_healthy(), "{health:?}");
    assert!(health.checks.iter().any(|c| c.name == "VersionsSizeValidator"), "{health:?}");

    // A downloader may not upload; the refusal carries the server's reason.
    let reader = client_of(&server.url(""), &server, "reader").await;
    let refused = reader.upload("db", body(&[b"data"]), UploadOptions::new()).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    assert!(refused.to_string().contains("not authorized to upload"), "{refused}");

    // Logout revokes the token.
    client.logout().await.unwrap();
    let revoked = client.versions("db").await.unwrap_err();
    assert!(matches!(revoked.status(), Some(401 | 403)), "{revoked}");
    assert!(store.remove(client.server()).unwrap());
    assert!(store.get(client.server()).unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_is_verified_and_a_flipped_byte_fails_at_its_end() {
    let server = server().await;
    let client = client_of(&server.url(""), &server, "ci").await;
    let data = noise(300_000, 5);
    let chunks = data.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))).collect::<Vec<_>>();
    let len = data.len() as u64;
    client.upload("db", futures::stream::iter(chunks), UploadOptions::new().content_length(len)).await.unwrap();

    // Straight from the server: every byte, checked.
    let download = client.download("db", "latest").await.unwrap();
    assert_eq!(download.content_length(), Some(len));
    assert!(download.digest().is_some(), "the server announces the digest");
    assert_eq!(download.file_name(), Some("db-1"));
    let got: Vec<Bytes> = download.try_collect().await.unwrap();
    assert!(got.concat() == data);

    // Through a proxy that flips one bit of the body: every byte arrives, then the verdict.
    let proxy = flipping_proxy(server.addr, 200_000).await;
    let damaged = client_of(&format!("http://{proxy}"), &server, "ci").await;
    let mut download = damaged.download("db", 1).await.unwrap();
    let mut received = 0usize;
    let mut failure = None;
    while let Some(item) = download.next().await {
        match item {
            Ok(chunk) => received += chunk.len(),
            Err(e) => failure = Some(e),
        }
    }
    assert_eq!(received, data.len(), "the bytes stream as they arrive");
    let failure = failure.expect("the damage is reported");
    assert_eq!(failure.kind(), ErrorKind::Integrity, "{failure}");
    assert!(failure.to_string().contains("the server announced"), "{failure}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_settled_by_the_key_and_a_failed_body_stores_nothing() {
    let server = server().await;
    let direct = client_of(&server.url(""), &server, "ci").await;

    // The upload's answer is lost after the body went out: the version is found by its key.
    let proxy = answer_losing_proxy(server.addr, Lose::Posts).await;
    let lossy = client_of(&format!("http://{proxy}"), &server, "ci").await;
    let uploaded = lossy.upload("db", body(&[b"the dump"]), UploadOptions::new()).await.unwrap();
    let lost = uploaded.lost_answer.expect("the answer was lost");
    assert_eq!(lost.kind(), ErrorKind::Network, "{lost}");
    assert_eq!(uploaded.version.number, 1);
    assert_eq!(direct.versions("db").await.unwrap().len(), 1, "stored once");

    // Every answer is lost: the lookup fails too, and the outcome is unknown, with the key.
    let proxy = answer_losing_proxy(server.addr, Lose::All).await;
    let deaf = client_of(&format!("http://{proxy}"), &server, "ci").await;
    let unknown = deaf.upload("db", body(&[b"again"]), UploadOptions::new().idempotency_key("k-7")).await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::OutcomeUnknown, "{unknown}");
    assert!(matches!(&unknown, Error::OutcomeUnknown { key, .. } if key == "k-7"));
    // It was stored; the same key, sent straight, stores nothing twice.
    let again = direct.upload("db", body(&[b"again"]), UploadOptions::new().idempotency_key("k-7")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(direct.versions("db").await.unwrap().len(), 2);

    // A body that fails cancels the upload: nothing is stored, and no lookup is needed.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"the first half")),
        Err(std::io::Error::other("pg_dump exited with 1")),
    ]);
    let failed = direct.upload("db", failing, UploadOptions::new()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Body, "{failed}");
    assert!(failed.to_string().contains("pg_dump exited with 1"), "{failed}");
    assert_eq!(direct.versions("db").await.unwrap().len(), 2, "nothing stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_on_503() {
    // Two 503s, then a listing: the GET is tried three times and succeeds.
    let fake = FakeServer::start(2).await;
    let notes = Arc::new(AtomicUsize::new(0));
    let counted = notes.clone();
    let client = Client::builder()
        .with_server(fake.url())
        .with_token("t")
        .with_attempts(3)
        .with_retry_notifier(move |e, _| {
            assert_eq!(e.status(), Some(503));
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    assert!(client.versions("db").await.unwrap().is_empty());
    assert_eq!(fake.methods(), ["GET", "GET", "GET"]);
    assert_eq!(notes.load(Ordering::Relaxed), 2, "the caller hears of each pause");

    // Always 503: a GET gives up after its attempts; the others are sent once.
    let fake = FakeServer::start(usize::MAX).await;
    let client = Client::builder().with_server(fake.url()).with_token("t").with_attempts(3).build().unwrap();
    assert_eq!(client.versions("db").await.unwrap_err().status(), Some(503));
    assert_eq!(fake.take_methods(), ["GET", "GET", "GET"]);
    assert_eq!(client.delete_version("db", 1).await.unwrap_err().status(), Some(503));
    assert_eq!(fake.take_methods(), ["DELETE"]);
    assert_eq!(client.login(&LoginRequest::new("ci", "pw")).await.unwrap_err().status(), Some(503));
    assert_eq!(fake.take_methods(), ["POST"]);
    assert_eq!(client.verify("db").await.unwrap_err().status(), Some(503));
    assert_eq!(fake.take_methods(), ["POST"]);
    // An upload answered 503 may have been stored: it is not sent again, the key is asked
    // for (a GET, retried), and the outcome is unknown.
    let uploaded = client.upload("db", body(&[b"x"]), UploadOptions::new().content_length(1)).await;
    assert_eq!(uploaded.unwrap_err().kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(fake.take_methods(), ["POST", "GET", "GET", "GET"]);
    // A success is one request.
    let fake = FakeServer::start(0).await;
    let client = Client::builder().with_server(fake.url()).with_attempts(3).build().unwrap();
    assert!(client.versions("db").await.is_ok());
    assert_eq!(fake.take_methods(), ["GET"]);
}

/// A server on loopback that reads each request whole, records its method, and answers 503
/// to the first `unavailable` requests, then an empty listing; one request per connection.
struct FakeServer {
    addr: SocketAddr,
    methods: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    async fn start(unavailable: usize) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let methods = Arc::new(Mutex::new(Vec::new()));
        let seen = methods.clone();
        tokio::spawn(async move {
            let mut count = 0usize;
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(method) = read_request(&mut stream).await else { continue };
                seen.lock().unwrap().push(method);
                count += 1;
                let (status, body) = if count <= unavailable {
                    ("503 Service Unavailable", r#"{"status":false,"error":"busy","data":{}}"#)
                } else {
                    ("200 OK", r#"{"status":true,"data":{"versions":[]}}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        FakeServer { addr, methods }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn methods(&self) -> Vec<String> {
        self.methods.lock().unwrap().clone()
    }

    fn take_methods(&self) -> Vec<String> {
        std::mem::take(&mut *self.methods.lock().unwrap())
    }
}

/// Reads a request's head and its `Content-Length` body; its method.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        seen.extend_from_slice(&buf[..n]);
        if let Some(p) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while seen.len() < head_end + length {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        seen.extend_from_slice(&buf[..n]);
    }
    head.split(' ').next().map(str::to_ascii_uppercase)
}
