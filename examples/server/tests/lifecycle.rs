//! The process around the API: a producer failing after its output, graceful shutdown (an
//! upload in flight finishes; one that stalls is cut and aborts), configuration errors, the
//! helper modes, and memory that does not grow with the file size.

mod support;

use std::time::{Duration, Instant};

use support::{
    NO_RATE_LIMITS, Server, add_manifest, args, armored, client, config_copy, files_under, json, login, try_login,
    version_numbers,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn chunked_head(addr: &str, token: &str, collection: &str) -> Vec<u8> {
    format!(
        "POST /api/alpha/repository/collection/{collection}/version HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// Waits (bounded) until nothing is left under the blob folder but committed versions.
async fn only_committed_blobs(data: &std::path::Path, committed: usize) -> Vec<std::path::PathBuf> {
    let blobs = data.join("blobs");
    support::eventually(Duration::from_secs(10), || {
        let files = files_under(&blobs);
        async move { (files.len() == committed).then_some(()) }
    })
    .await;
    files_under(&blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_the_connection_after_the_body_leaves_no_version() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut extra = vec!["--upload-confirm-grace", "2s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let body = armored(300_000, 1);

    // As backup-maker does when the backup command fails after its output ended: the whole
    // body, its last chunk, then the connection closes.
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(&chunked_head(&server.addr(), &uploader, "iwa-ait")).await.unwrap();
    for part in body.chunks(64 * 1024) {
        socket.write_all(&chunk(part)).await.unwrap();
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);

    // Past the grace, nothing was committed and the staged bytes are gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, Vec::<u64>::new());
    let left = only_committed_blobs(data.path(), 0).await;
    assert!(left.is_empty(), "left behind: {left:?}");

    // The same upload kept open commits after the grace, and its quota was not held by the
    // cancelled one.
    let started = Instant::now();
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let (status, v) = json(c.post(url).bearer_auth(&uploader).body(body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert!(started.elapsed() >= Duration::from_secs(2), "committed before the grace ended");
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, vec![1]);
    assert_eq!(only_committed_blobs(data.path(), 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_upload_in_flight_finish() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut extra = vec!["--upload-confirm-grace", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server_args = args(config.path(), data.path(), &extra);
    let mut server = Server::start(&server_args);
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let body = armored(400_000, 2);
    let (first, second) = body.split_at(200_000);

    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(&chunked_head(&server.addr(), &uploader, "iwa-ait")).await.unwrap();
    socket.write_all(&chunk(first)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // SIGTERM with half the body sent: the listener closes, the upload goes on.
    let pid = server.child.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let closed = support::eventually(Duration::from_secs(10), || {
        let addr = server.addr();
        async move { tokio::net::TcpStream::connect(addr).await.is_err().then_some(()) }
    })
    .await;
    assert!(closed.is_some(), "still accepting connections 10 s after SIGTERM");
    socket.write_all(&chunk(second)).await.unwrap();
    socket.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = support::parse_raw(&answer).expect("an HTTP answer");
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{answer:?}");
    let status = server.stop();
    assert!(status.success(), "exit status {status}: {}", server.log());

    // Restarted on the same folder: the version is there, whole.
    let server = Server::start(&server_args);
    let manager_again = login(&c, &server, "some-user", "admin", None).await;
    drop(manager);
    assert_eq!(version_numbers(&c, &server, &manager_again, "iwa-ait", None).await, vec![1]);
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version/1");
    let got = c.get(url).bearer_auth(&manager_again).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got, body);
    assert_eq!(only_committed_blobs(data.path(), 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_stalled_upload_which_then_aborts() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut extra = vec!["--upload-confirm-grace", "0s", "--shutdown-timeout", "1s"];
    extra.extend(NO_RATE_LIMITS);
    let server_args = args(config.path(), data.path(), &extra);
    let mut server = Server::start(&server_args);
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;

    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(&chunked_head(&server.addr(), &uploader, "iwa-ait")).await.unwrap();
    socket.write_all(&chunk(&armored(200_000, 3))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(started.elapsed() < Duration::from_secs(20), "the stalled client held the shutdown");
    assert!(server.log().contains("cutting them"), "the upload was not cut: {}", server.log());
    // The cut upload was answered before its connection closed (issue 24 §5.7): 503, come back.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let answer = support::parse_raw(&answer).expect("an answer before the close");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("30"), "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(answer.json()["error"].as_str().unwrap().contains("shutting down"), "{answer:?}");
    drop(socket);

    let server = Server::start(&server_args);
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, Vec::<u64>::new());
    let left = only_committed_blobs(data.path(), 0).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    // The reservation went with it: a full-size upload fits.
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let (status, body) = json(
        c.post(url)
            .bearer_auth(&login(&c, &server, "some-user$uploader", "test", None).await)
            .body(armored(1_000_000, 4))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 24 §5.7: an upload whose body stops coming is answered (408, `Connection: close`)
/// before its connection is closed, and aborts: no version, nothing left in the storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_answered_before_its_connection_closes() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut extra = vec!["--upload-confirm-grace", "0s", "--stall-timeout", "2s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let body = armored(1_000_000, 5);
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/alpha/repository/collection/iwa-ait/version HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {uploader}\r\nContent-Length: {}\r\n\r\n",
        server.addr(),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..200_000]).await.unwrap();
    // The client sends nothing more; the server answers within the stall time and closes.
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = support::parse_raw(&answer).expect("an answer before the close");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert_eq!(answer.json()["status"], serde_json::json!(false), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let manager = login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(version_numbers(&c, &server, &manager, "iwa-ait", None).await, Vec::<u64>::new());
    let left = only_committed_blobs(data.path(), 0).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Starts the binary expecting it to refuse; returns its stderr.
fn refused_start(extra: &[String]) -> String {
    match Server::try_start(extra) {
        Ok(_) => panic!("the server started with {extra:?}"),
        Err(e) => e,
    }
}

#[test]
fn configuration_errors_stop_the_start_with_file_field_and_reason() {
    let collection = "backups.riotkit.org/v1alpha1/backupcollections/iwa-ait.yaml";
    let original = std::fs::read_to_string(config_copy().path().join("backup-repository").join(collection)).unwrap();
    let cases = [
        ("maxBackupsCount: 5", "maxBackupsCount: lots", "spec.maxBackupsCount"),
        ("maxOneVersionSize: 1M", "maxOneVersionSize: 1 lightyear", "spec.maxOneVersionSize"),
        ("from: \"*/30 * * * *\"", "from: \"every day at noon\"", "spec.windows[0].from"),
        ("duration: 30m", "duration: soon", "spec.windows[0].duration"),
        ("- name: admin", "- name: nobody", "spec.accessControl[0].name"),
        ("- collectionManager", "- overlord", "spec.accessControl[0].roles[0]"),
        ("entry: iwa-ait", "entry: missing-entry", "spec.healthSecretRef"),
    ];
    for (from, to, field) in cases {
        assert!(original.contains(from), "{from}");
        let config = config_copy();
        add_manifest(config.path(), collection, &original.replace(from, to));
        let data = tempfile::tempdir().unwrap();
        let stderr = refused_start(&args(config.path(), data.path(), &[]));
        assert!(stderr.contains("iwa-ait.yaml"), "{to}: the file is not named: {stderr}");
        assert!(stderr.contains(field), "{to}: the field {field} is not named: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let config = config_copy();
    let data = tempfile::tempdir().unwrap();
    for (flag, value, named) in [
        ("--provider", "kubernetes", "--provider"),
        ("--storage-url", "ftp://somewhere/x", "storage"),
        ("--catalog-url", "mysql://db/x", "catalog"),
        ("--jwt-secret-key", "short", "--jwt-secret-key"),
        ("--maintenance-schedule", "whenever", "--maintenance-schedule"),
    ] {
        let stderr = refused_start(&args(config.path(), data.path(), &[flag, value]));
        assert!(stderr.contains(named), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let stderr = refused_start(&args(&config.path().join("nothing-here"), data.path(), &[]));
    assert!(stderr.contains("nothing-here"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_modes_produce_what_the_server_accepts() {
    let binary = env!("CARGO_BIN_EXE_backup-server");
    let out = std::process::Command::new(binary).args(["--encode-password", "correct horse battery"]).output().unwrap();
    assert!(out.status.success());
    let encoded = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // The encoded password, put in a Secret, logs a new user in.
    let config = config_copy();
    add_manifest(
        config.path(),
        "v1/secrets/helper.yaml",
        &format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n    name: helper\ntype: Opaque\ndata:\n    horse: \"{encoded}\"\n"
        ),
    );
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupusers/horse.yaml",
        "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nmetadata:\n    name: horse\nspec:\n    email: horse@example.org\n    passwordFromRef:\n        name: helper\n        entry: horse\n    roles: []\n",
    );
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&args(config.path(), data.path(), &NO_RATE_LIMITS));
    let c = client();
    let (status, body) = try_login(&c, &server, "horse", "correct horse", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = try_login(&c, &server, "horse", "correct horse battery", None).await;
    assert_eq!(status, 200, "{body}");

    // --hash-jwt prints the session id the server gave the token.
    let token = body["data"]["token"].as_str().unwrap();
    let out = std::process::Command::new(binary).args(["--hash-jwt", token]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), body["data"]["sessionId"].as_str().unwrap());
}

/// The peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_the_file_size() {
    let config = config_copy();
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupcollections/big.yaml",
        "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: big\nspec:\n    description: Large files\n    filenameTemplate: big-${version}.tar.gz\n    maxBackupsCount: 2\n    maxOneVersionSize: 300M\n    maxCollectionSize: 600M\n    strategyName: fifo\n    accessControl:\n        - name: admin\n          type: user\n          roles: [collectionManager]\n",
    );
    let data = tempfile::tempdir().unwrap();
    let mut extra = vec!["--upload-confirm-grace", "0s", "--trusted-proxy", "127.0.0.1"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let pid = server.child.as_ref().unwrap().id();
    let c = client();
    let admin = login(&c, &server, "admin", "admin", Some("1.2.3.4")).await;

    // One round trip of `len` bytes, streamed from and to the client without keeping them.
    let round_trip = |len: u64, number: u64| {
        let (c, admin) = (c.clone(), admin.clone());
        let (up, down) = (
            server.url("/api/alpha/repository/collection/big/version"),
            server.url(&format!("/api/alpha/repository/collection/big/version/{number}")),
        );
        async move {
            let (head, tail) = (b"-----BEGIN PGP MESSAGE-----\n\n".to_vec(), b"\n-----END PGP MESSAGE-----\n".to_vec());
            let middle = len - (head.len() + tail.len()) as u64;
            let pieces = std::iter::once(head)
                .chain((0..middle >> 20).map(|_| vec![b'A'; 1 << 20]))
                .chain(std::iter::once(vec![b'B'; (middle % (1 << 20)) as usize]))
                .chain(std::iter::once(tail));
            let stream = futures::stream::iter(pieces.map(Ok::<_, std::io::Error>));
            let r = c
                .post(up)
                .bearer_auth(&admin)
                .header("X-Forwarded-For", "1.2.3.4")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .unwrap();
            let (status, body) = json(r).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["version"]["filesize"], len);
            let mut r = c.get(down).bearer_auth(&admin).header("X-Forwarded-For", "1.2.3.4").send().await.unwrap();
            assert_eq!(r.status(), 200);
            let mut got = 0u64;
            while let Some(bytes) = r.chunk().await.unwrap() {
                got += bytes.len() as u64;
            }
            assert_eq!(got, len);
        }
    };
    round_trip(16 << 20, 1).await;
    let after_small = peak_rss_kib(pid);
    round_trip(256 << 20, 2).await;
    let after_large = peak_rss_kib(pid);
    eprintln!("peak RSS: {after_small} KiB after 16 MiB, {after_large} KiB after 256 MiB");
    // A server that held the file would grow by 240 MiB or more; a streaming one by its
    // buffers at most.
    assert!(
        after_large < after_small + 32 * 1024,
        "peak RSS grew from {after_small} KiB to {after_large} KiB for 240 MiB more data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_blob_never_downloads_as_complete() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut extra = vec!["--upload-confirm-grace", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let body = armored(200_000, 5);
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let (status, reply) = json(c.post(url).bearer_auth(&uploader).body(body.clone()).send().await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");

    // Flip one byte of the stored object; its size stays the same.
    let blobs = files_under(&data.path().join("blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let mut stored = std::fs::read(&blobs[0]).unwrap();
    assert_eq!(stored, body);
    stored[150_000] ^= 0x20;
    std::fs::write(&blobs[0], &stored).unwrap();

    // The object is one read chunk: it fails before the answer starts, with a refusal that
    // says why.
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version/latest");
    let (status, reply) = json(c.get(&url).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(status, 409, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("version 1 of collection iwa-ait is corrupted"), "{reply}");
    assert!(server.log().contains("corrupted") || server.log().contains("digest"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_large_blob_is_cut_short_of_its_content_length() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupcollections/big.yaml",
        "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: big\nspec:\n    description: Large files\n    filenameTemplate: big-${version}.asc\n    maxBackupsCount: 2\n    maxOneVersionSize: 20M\n    maxCollectionSize: 40M\n    strategyName: fifo\n    accessControl:\n        - name: some-user\n          type: user\n          roles: [collectionManager]\n",
    );
    let mut extra = vec!["--upload-confirm-grace", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let body = armored(5 << 20, 6);
    let url = server.url("/api/alpha/repository/collection/big/version");
    let (status, reply) = json(c.post(url).bearer_auth(&manager).body(body.clone()).send().await.unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let blobs = files_under(&data.path().join("blobs"));
    let mut stored = std::fs::read(&blobs[0]).unwrap();
    stored[4 << 20] ^= 0x20;
    std::fs::write(&blobs[0], &stored).unwrap();

    // The answer started (200, the full Content-Length), but never delivers all the bytes.
    let request = format!(
        "GET /api/alpha/repository/collection/big/version/latest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {manager}\r\nConnection: close\r\n\r\n"
    );
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server cuts the connection: the read may end in a reset.
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await.unwrap();
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    if let Some(head_end) = head_end {
        let head = String::from_utf8_lossy(&answer[..head_end]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let delivered = answer.len() - head_end;
        assert!(
            delivered < body.len(),
            "all {delivered} bytes of the damaged object were delivered as a complete response"
        );
    }
    // A client reading the response sees an error, not a backup.
    let url = server.url("/api/alpha/repository/collection/big/version/latest");
    match c.get(url).bearer_auth(&manager).send().await {
        Ok(r) => assert!(r.bytes().await.is_err(), "the damaged download read as complete"),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
}
