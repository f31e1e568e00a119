//! Notifications that are never lost, with real processes: a server killed (SIGKILL) while
//! 100 events wait for a receiver that is down delivers every one of them after its restart
//! (a duplicate, if any, with the same id); two servers on one PostgreSQL catalog deliver each
//! event once.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use support::{NO_RATE_LIMITS, Server, args, armored, client, config_copy, eventually, json, login, upload};

/// A receiver on loopback: every request it answered 200, by event id (with how many times),
/// and a switch that makes it answer 503.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<BTreeMap<String, (u64, u32)>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    if me.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let id = headers["x-backup-event-id"].to_str().unwrap().to_owned();
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(event["id"].as_str(), Some(id.as_str()));
                    let mut got = me.got.lock().unwrap();
                    got.entry(id).or_insert((event["seq"].as_u64().unwrap(), 0)).1 += 1;
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn seqs(&self) -> Vec<u64> {
        self.got.lock().unwrap().values().map(|(s, _)| *s).collect()
    }

    fn duplicates(&self) -> Vec<(String, u32)> {
        self.got.lock().unwrap().iter().filter(|(_, (_, n))| *n > 1).map(|(id, (_, n))| (id.clone(), *n)).collect()
    }
}

fn flags(hook: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "--upload-confirm-grace",
        "0s",
        "--webhook-url",
        hook,
        "--notify-poll",
        "50ms",
        "--webhook-retry-min",
        "50ms",
        "--webhook-retry-max",
        "100ms",
        "--detector-interval",
        "0s",
    ]
    .map(str::to_owned)
    .to_vec();
    v.extend(NO_RATE_LIMITS.iter().map(|s| s.to_string()));
    v
}

/// The sequence numbers of every event the log holds after `after`, as a systemAdmin reads it.
async fn logged(c: &reqwest::Client, server: &Server, token: &str, after: u64) -> Vec<u64> {
    let url = server.url(&format!("/api/stable/audit?after={after}&limit=1000"));
    let (status, body) = json(c.get(url).bearer_auth(token).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_delivers_every_pending_event_after_its_restart() {
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    let extra = flags(&hook);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    // The target starts at the log's head: its first delivery marks where it begins.
    let admin = login(&c, &server, "root", "admin", None).await;
    assert!(
        eventually(Duration::from_secs(20), || async { (!receiver.seqs().is_empty()).then_some(()) }).await.is_some()
    );
    receiver.down.store(true, Ordering::SeqCst);
    let start = *receiver.seqs().last().unwrap();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    for i in 0..100u32 {
        let (status, body) = upload(&c, &server, &uploader, "iwa-ait", armored(600, i as u8), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let pending = logged(&c, &server, &admin, start).await;
    assert!(pending.len() >= 100, "{} events wait", pending.len());
    drop(server); // SIGKILL
    receiver.down.store(false, Ordering::SeqCst);

    let server = Server::start(&args(config.path(), data.path(), &extra));
    let want = *pending.last().unwrap();
    let delivered =
        eventually(Duration::from_secs(60), || async { receiver.seqs().contains(&want).then(|| receiver.seqs()) })
            .await
            .unwrap_or_else(|| panic!("not every event arrived: {:?}", receiver.seqs()));
    for seq in &pending {
        assert!(delivered.contains(seq), "event {seq} was lost");
    }
    // At least once: a duplicate carries the id of its first delivery (one entry per id).
    let dupes = receiver.duplicates();
    assert!(dupes.iter().all(|(id, _)| id.ends_with(&format!(":{}", receiver.got.lock().unwrap()[id].0))), "{dupes:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_catalog_deliver_each_event_once() {
    let Some(database) = support::database_url("two_servers_on_one_postgres_catalog_deliver_each_event_once") else {
        return;
    };
    let schema = support::fresh_schema("notify");
    let catalog = format!("{database}{}schema={schema}", if database.contains('?') { '&' } else { '?' });
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let config = config_copy();
    support::add_system_admin(config.path(), "root");
    let (data_a, data_b, blobs) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let storage = format!("file://{}", blobs.path().display());
    let mut extra = flags(&hook);
    extra.extend(["--catalog-url".into(), catalog, "--storage-url".into(), storage]);
    // Instances sharing a catalog have names of their own (the lease of a target is held by
    // a name: a restarted instance takes its own back at once).
    let named = |name: &str| {
        let mut v: Vec<&str> = extra.iter().map(String::as_str).collect();
        v.extend(["--instance-name", name]);
        v.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let (flags_a, flags_b) = (named("a"), named("b"));
    let a = Server::start(&args(config.path(), data_a.path(), &flags_a.iter().map(String::as_str).collect::<Vec<_>>()));
    let b = Server::start(&args(config.path(), data_b.path(), &flags_b.iter().map(String::as_str).collect::<Vec<_>>()));
    let c = client();
    let admin = login(&c, &a, "root", "admin", None).await;
    let uploaders = [
        login(&c, &a, "some-user$uploader", "test", None).await,
        login(&c, &b, "some-user$uploader", "test", None).await,
    ];
    for i in 0..40u32 {
        let (server, token) = if i % 2 == 0 { (&a, &uploaders[0]) } else { (&b, &uploaders[1]) };
        let (status, body) = upload(&c, server, token, "iwa-ait", armored(600, i as u8), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let all = logged(&c, &a, &admin, 0).await;
    let want = *all.last().unwrap();
    assert!(
        eventually(Duration::from_secs(60), || async { receiver.seqs().contains(&want).then_some(()) }).await.is_some(),
        "not delivered: {:?}",
        receiver.seqs()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.duplicates(), [], "one delivery per event across both servers:\n{}\n{}", a.log(), b.log());
    let first = *receiver.seqs().first().unwrap();
    for seq in all.iter().filter(|s| **s >= first) {
        assert!(receiver.seqs().contains(seq), "event {seq} was not delivered");
    }
}
