//! Alerts and notifications over real HTTP: a webhook receiver on loopback gets
//! `upload.lighter` for a version at 40% of the ones before it, `window.missed` when the
//! server's clock passes a window's end plus its grace, and `window.ok` after the next upload;
//! every request is signed; a receiver that fails for a while then gets every event, in order,
//! once per id. The audit route's permissions, a hostile answer ignored, and a webhook URL
//! pointing back at the server refused at start.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use backup_core::ManualClock;
use chrono::TimeZone;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use support::{NO_RATE_LIMITS, Server, add_manifest, add_user, args, client, config_copy, eventually, login};

const SECRET: &str = "a webhook secret for tests";

/// What the receiver got: each request's headers and body.
#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Requests answered 500 before the receiver works.
    failures_left: Arc<Mutex<u32>>,
}

impl Received {
    fn events(&self) -> Vec<Value> {
        self.requests.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect()
    }

    fn actions(&self) -> Vec<String> {
        self.events().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
    }
}

/// A webhook receiver on loopback: answers 500 while `failures_left` lasts (with a large
/// hostile body), then 200 with another one.
async fn receiver(received: Received) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                let mut left = received.failures_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1 << 20));
                }
                received.requests.lock().unwrap().push((headers, body));
                (StatusCode::OK, "{\"data\": [1, 2, {\"evil\": \"\\u0000\"}]".repeat(1000))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn manifests(config: &std::path::Path) {
    add_manifest(
        config,
        "backups.riotkit.org/v1alpha1/backupcollections/nightly.yaml",
        r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: nightly
spec:
    filenameTemplate: nightly-${version}.bin
    maxBackupsCount: 10
    maxOneVersionSize: 1M
    maxCollectionSize: 100M
    contentRule: none
    windows:
        - from: "0 2 * * *"
          duration: 1h
    accessControl:
        - name: manager
          type: user
          roles: ["collectionManager"]
        - name: uploader
          type: user
          roles: ["backupUploader"]
"#,
    );
    for user in ["manager", "uploader", "stranger"] {
        add_user(config, user);
    }
    support::add_system_admin(config, "root");
}

struct Setup {
    server: Server,
    clock: Arc<ManualClock>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn start(hook: std::net::SocketAddr) -> Setup {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let secret_file = data.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (url, secret_path) = (format!("http://{hook}/hook"), secret_file.display().to_string());
    let extra = vec![
        "--upload-confirm-grace",
        "0s",
        "--webhook-url",
        &url,
        "--webhook-secret-file",
        &secret_path,
        "--notify-poll",
        "50ms",
        "--webhook-retry-min",
        "50ms",
        "--webhook-retry-max",
        "200ms",
        "--detector-interval",
        "100ms",
    ];
    let (server, clock) = serve_in_window(config.path(), data.path(), extra).await;
    Setup { server, clock, _dirs: (config, data) }
}

/// A server on these folders with `extra` flags and the rate limits lifted, on a clock inside
/// nightly's window slot of 2026-01-10, 02:00 to 03:00.
async fn serve_in_window(
    config: &std::path::Path,
    data: &std::path::Path,
    mut extra: Vec<&str>,
) -> (Server, Arc<ManualClock>) {
    extra.extend(NO_RATE_LIMITS);
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 1, 10, 2, 10, 0).unwrap()));
    let server_config = support::server_config(&args(config, data, &extra)).clock(clock.clone());
    (Server::in_process_with(server_config).await, clock)
}

async fn put(c: &reqwest::Client, s: &Server, token: &str, size: usize) {
    let (status, body) = support::upload(c, s, token, "nightly", vec![7u8; size], None).await;
    assert_eq!(status, 200, "{body}");
}

fn verify_signature(headers: &HeaderMap, body: &[u8]) {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(headers["x-backup-signature"].to_str().unwrap(), expected, "the signature covers the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_webhook_signed_in_order_once_per_id_after_failures() {
    let received = Received::default();
    *received.failures_left.lock().unwrap() = 4;
    let hook = receiver(received.clone()).await;
    let Setup { server, clock, _dirs } = start(hook).await;
    let c = client();
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    for _ in 0..5 {
        put(&c, &server, &uploader, 1000).await;
    }
    put(&c, &server, &uploader, 400).await;
    let lighter = eventually(Duration::from_secs(20), || {
        let r = received.clone();
        async move { r.events().into_iter().find(|e| e["action"] == "upload.lighter") }
    })
    .await
    .unwrap_or_else(|| panic!("no upload.lighter among {:?}", received.actions()));
    assert_eq!((lighter["collection"].as_str(), lighter["version"].as_u64()), (Some("nightly"), Some(6)));
    assert!(lighter["detail"].as_str().unwrap().contains("40% of the median"), "{lighter}");

    // The next day's slot ends at 03:00; with an hour's grace, 04:00 is when it was missed.
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 1, 11, 3, 59, 0).unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!received.actions().contains(&"window.missed".to_owned()), "not before the grace ends");
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 1, 11, 4, 1, 0).unwrap());
    let missed = eventually(Duration::from_secs(20), || {
        let r = received.clone();
        async move { r.events().into_iter().find(|e| e["action"] == "window.missed") }
    })
    .await
    .unwrap_or_else(|| panic!("no window.missed among {:?}", received.actions()));
    assert_eq!(missed["collection"], "nightly");
    // The next night's upload clears it.
    clock.set(chrono::Utc.with_ymd_and_hms(2026, 1, 12, 2, 5, 0).unwrap());
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    put(&c, &server, &uploader, 1000).await;
    eventually(Duration::from_secs(20), || {
        let r = received.clone();
        async move { r.actions().contains(&"window.ok".to_owned()).then_some(()) }
    })
    .await
    .unwrap_or_else(|| panic!("no window.ok among {:?}", received.actions()));
    assert_eq!(
        received.actions().iter().filter(|a| *a == "window.missed").count(),
        1,
        "one alert per missed slot: {:?}",
        received.actions()
    );

    // Every event of the log reached the receiver once, in order, after its failures.
    let admin = login(&c, &server, "root", "admin", None).await;
    let (status, log) =
        support::json(c.get(server.url("/api/stable/audit?limit=1000")).bearer_auth(&admin).send().await.unwrap())
            .await;
    assert_eq!(status, 200, "{log}");
    let logged: Vec<u64> =
        log["data"]["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let all = eventually(Duration::from_secs(20), || {
        let r = received.clone();
        let want = *logged.last().unwrap();
        async move { r.events().last().is_some_and(|e| e["seq"].as_u64() >= Some(want)).then(|| r.events()) }
    })
    .await
    .expect("the receiver catches up with the log");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in order, each once");
    // A new target starts at the log's head when it is first started: what the start wrote
    // before it (the manifests' collections) is not sent; everything after is.
    let first_login =
        log["data"]["events"].as_array().unwrap().iter().find(|e| e["action"] == "session.issue").unwrap();
    let since = first_login["seq"].as_u64().unwrap();
    assert!(
        logged.iter().filter(|s| **s >= since).all(|s| seqs.contains(s)),
        "every logged event was delivered: {logged:?} vs {seqs:?}"
    );
    for ((headers, body), e) in received.requests.lock().unwrap().iter().zip(&all) {
        verify_signature(headers, body);
        let id = headers["x-backup-event-id"].to_str().unwrap();
        assert_eq!(e["id"].as_str(), Some(id), "the id is in the body too");
        assert!(id.ends_with(&format!(":{}", e["seq"])), "{id}");
        assert!(e["hash"].as_str().is_some_and(|h| h.len() == 64), "{e}");
        assert!(e["timestamp"].as_str().is_some(), "the signed body has its time");
    }
    let commits = all.iter().filter(|e| e["action"] == "version.commit").count();
    assert_eq!(commits, 7);
    let metrics = c
        .get(server.url("/metrics"))
        .header("Authorization", format!("Bearer {admin}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("backup_notifications_failed_total{target=\"default\"} 0"), "{metrics}");
    // The target writes its place and counts when it is idle or every 250 ms.
    let state = eventually(Duration::from_secs(10), || {
        let (c, url, admin, want) =
            (c.clone(), server.url("/api/stable/notifications"), admin.clone(), all.len() as u64);
        async move {
            let (status, state) = support::json(c.get(url).bearer_auth(&admin).send().await.unwrap()).await;
            assert_eq!(status, 200, "{state}");
            (state["data"]["targets"][0]["delivered"].as_u64() >= Some(want)).then_some(state)
        }
    })
    .await
    .expect("the delivered count catches up");
    let target = &state["data"]["targets"][0];
    assert_eq!((target["name"].as_str(), target["kind"].as_str()), (Some("default"), Some("webhook")), "{state}");
    assert_eq!((target["failedTotal"].as_u64(), target["lastError"].as_str()), (Some(0), None), "{state}");
    let manager = login(&c, &server, "manager", "admin", None).await;
    let (status, body) =
        support::json(c.get(server.url("/api/stable/notifications")).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(status, 403, "a collection manager does not see the targets: {body}");
    assert!(metrics.contains("backup_collection_last_version_bytes{collection=\"nightly\"} 1000"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_route_shows_each_caller_what_it_may_see() {
    let hook = receiver(Received::default()).await;
    let Setup { server, _dirs, .. } = start(hook).await;
    let c = client();
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    put(&c, &server, &uploader, 10).await;
    let get = |token: String, query: &'static str| {
        let c = c.clone();
        let url = server.url(&format!("/api/stable/audit{query}"));
        async move { support::json(c.get(url).bearer_auth(token).send().await.unwrap()).await }
    };
    let root = login(&c, &server, "root", "admin", None).await;
    let (status, all) = get(root.clone(), "").await;
    assert_eq!(status, 200, "{all}");
    let actions: Vec<&str> =
        all["data"]["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"session.issue") && actions.contains(&"version.commit"), "{actions:?}");

    let manager = login(&c, &server, "manager", "admin", None).await;
    let (status, theirs) = get(manager.clone(), "").await;
    assert_eq!(status, 200, "{theirs}");
    let events = theirs["data"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["collection"] == "nightly"), "{theirs}");
    let (status, _) = get(manager, "?collection=nightly&limit=1").await;
    assert_eq!(status, 200);

    for (who, query) in [("uploader", ""), ("uploader", "?collection=nightly"), ("stranger", "")] {
        let token = login(&c, &server, who, "admin", None).await;
        let (status, body) = get(token, query).await;
        assert_eq!(status, 403, "{who} {query}: {body}");
    }
    let (status, page) = get(root.clone(), "?limit=2").await;
    assert_eq!(status, 200);
    let next = page["data"]["next"].as_u64().expect("a next page");
    let (_, rest) = get(root.clone(), Box::leak(format!("?after={next}&limit=1000").into_boxed_str())).await;
    assert!(rest["data"]["events"].as_array().unwrap().iter().all(|e| e["seq"].as_u64().unwrap() > next));
    assert!(rest["data"]["next"].is_null(), "{rest}");
    let (status, _) = get(root, "?limit=0").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_webhook_pointing_at_the_server_itself_is_refused() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://localhost:{port}/api/stable/audit");
    let mut config_of = support::server_config(&args(config.path(), data.path(), &["--webhook-url", &url]));
    config_of = config_of.listen(listen.parse().unwrap());
    let e = backup_server::spawn(config_of).await.expect_err("refused");
    assert!(e.contains("points back at this server"), "{e}");
}

/// An SMTP sink (aiosmtpd) on a free loopback port, writing what it receives into a maildir;
/// killed when dropped.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    async fn start(python: &str) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let up = eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        assert!(up.is_some(), "the SMTP sink did not start");
        SmtpSink { child, port, maildir }
    }

    /// The messages received, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail/new");
        std::fs::read_dir(new)
            .map(|d| d.filter_map(Result::ok).map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_arrives_by_email_with_the_collection_and_the_reason_in_its_subject() {
    let Some(python) =
        support::smtp_python("an_alert_arrives_by_email_with_the_collection_and_the_reason_in_its_subject")
    else {
        return;
    };
    let sink = SmtpSink::start(&python).await;
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let extra = vec![
        "--upload-confirm-grace",
        "0s",
        "--smtp-url",
        &smtp,
        "--smtp-from",
        "backups@example.org",
        "--smtp-to",
        "ops@example.org",
        "--notify-poll",
        "50ms",
        "--detector-interval",
        "100ms",
    ];
    let (server, _clock) = serve_in_window(config.path(), data.path(), extra).await;
    let c = client();
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    for size in [1000, 1000, 1000, 1000, 1000, 400] {
        put(&c, &server, &uploader, size).await;
    }
    let mail = eventually(Duration::from_secs(30), || {
        let messages = sink.messages();
        async move { messages.into_iter().find(|m| m.contains("upload.lighter")) }
    })
    .await
    .unwrap_or_else(|| panic!("no e-mail: {:?}", sink.messages()));
    // The header as one line (long ones are folded onto lines that start with a space).
    let unfolded = mail.replace("\r\n ", " ").replace("\n ", " ");
    let subject = unfolded.lines().find(|l| l.starts_with("Subject:")).unwrap_or_default();
    assert!(subject.contains("upload.lighter nightly") && subject.contains("40% of the median"), "{mail}");
    assert!(mail.contains("To: ops@example.org") && mail.contains("From: backups@example.org"), "{mail}");
    // Only alerts go by e-mail: no message for the commits.
    assert!(sink.messages().iter().all(|m| !m.contains("Subject: [backup] version.commit")), "{:?}", sink.messages());
}

/// Gives nightly's manifest (from [`manifests`]) these `spec.notify` entries.
fn notify_nightly(config: &std::path::Path, entries: &str) {
    let file = config.join("backup-repository/backups.riotkit.org/v1alpha1/backupcollections/nightly.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("    windows:", &format!("    notify:\n{entries}    windows:"), 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collections_manifest_routes_its_own_events_to_its_targets() {
    let received = Received::default();
    let hook = receiver(received.clone()).await;
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    // nightly's alerts (only) go to the receiver, signed with a secret from a Secret.
    notify_nightly(
        config.path(),
        &format!(
            "        - webhook: http://{hook}/hook\n          secretFrom:\n              name: \
             backup-repository-passwords\n              entry: admin\n          events: [upload.lighter]\n"
        ),
    );
    let extra = vec!["--upload-confirm-grace", "0s", "--notify-poll", "50ms", "--detector-interval", "100ms"];
    let (server, _clock) = serve_in_window(config.path(), data.path(), extra).await;
    let c = client();
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    for size in [1000, 1000, 1000, 400] {
        put(&c, &server, &uploader, size).await;
    }
    let got = eventually(Duration::from_secs(20), || {
        let r = received.clone();
        async move { (!r.events().is_empty()).then(|| r.events()) }
    })
    .await
    .expect("the lighter alert arrives");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.actions(), ["upload.lighter"], "only what the manifest routes: {got:?}");
    assert_eq!(received.events()[0]["collection"], "nightly");
    assert!(received.requests.lock().unwrap()[0].0.contains_key("x-backup-signature"), "signed");

    // An e-mail target needs the server's SMTP: the start is refused, naming the file.
    let (config2, data2) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config2.path());
    notify_nightly(config2.path(), "        - email: ops@example.org\n");
    let e = backup_server::spawn(support::server_config(&args(config2.path(), data2.path(), &[]))).await.unwrap_err();
    assert!(e.contains("nightly.yaml") && e.contains("spec.notify[0]") && e.contains("--smtp-url"), "{e}");
}
