//! Replicas with real stores and real processes: copies between local disk, S3 (s3s-fs in
//! process) and Azure (Azurite), both ways; a server killed (SIGKILL) 20 times while it
//! replicates leaves every committed version on the replica, whole; a replica that is down
//! fails the collections' health and shows in the route and the metrics; the primary's loss
//! survived with `--promote-replica` and a catalog rebuilt from the replica alone.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_store::{StoreOptions, open_store};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use support::{NO_RATE_LIMITS, Server, args, armored, client, config_copy, eventually, json, login, upload};

/// Flags for quick replication in tests.
fn flags(replica: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["--upload-confirm-grace", "0s", "--replica-poll", "20ms", "--replica-rate", "0", "--detector-interval", "0s"]
            .map(str::to_owned)
            .to_vec();
    v.extend(["--replica-url".to_owned(), format!("offsite={replica}")]);
    v.extend(NO_RATE_LIMITS.iter().map(|s| s.to_string()));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The replicas route's first replica, as a systemAdmin reads it.
async fn replica_status(c: &reqwest::Client, server: &Server, token: &str) -> serde_json::Value {
    let (status, body) =
        json(c.get(server.url("/api/stable/repository/replicas")).bearer_auth(token).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["replicas"][0].clone()
}

/// Waits until the replica has every committed version.
async fn caught_up(c: &reqwest::Client, server: &Server, token: &str) -> serde_json::Value {
    eventually(Duration::from_secs(120), || async {
        let r = replica_status(c, server, token).await;
        (r["pendingVersions"] == 0 && r["catchingUp"] == false && r["unavailable"].is_null()).then_some(r)
    })
    .await
    .unwrap_or_else(|| {
        panic!("the replica never caught up: {}", futures::executor::block_on(replica_status(c, server, token)))
    })
}

/// The version objects under the server's prefix (not its records, not descriptions).
async fn version_objects(store: &Arc<dyn ObjectStore>) -> Vec<object_store::path::Path> {
    let all: Vec<_> = store.list(None).map_ok(|m| m.location).try_collect().await.unwrap();
    all.into_iter()
        .filter(|p| {
            let s = p.as_ref();
            !s.ends_with(backup_core::store::DESCRIPTION_SUFFIX)
                && !p.parts().any(|part| part.as_ref().starts_with('.'))
        })
        .collect()
}

/// Every version object of `primary` is in `replica`, byte-identical, with its description;
/// the replica holds no other version object. Returns how many.
async fn assert_same_versions(primary: &Arc<dyn ObjectStore>, replica: &Arc<dyn ObjectStore>) -> usize {
    let ours = version_objects(primary).await;
    let mut theirs = version_objects(replica).await;
    theirs.sort();
    let mut sorted = ours.clone();
    sorted.sort();
    assert_eq!(sorted, theirs, "the replica's version objects");
    for key in &ours {
        let a = primary.get(key).await.unwrap().bytes().await.unwrap();
        let b = replica.get(key).await.unwrap().bytes().await.unwrap();
        assert!(a == b, "{key} differs on the replica");
        let description = object_store::path::Path::from(format!("{key}{}", backup_core::store::DESCRIPTION_SUFFIX));
        replica.head(&description).await.unwrap_or_else(|e| panic!("{key}: no description on the replica: {e}"));
    }
    ours.len()
}

fn store(url: &str) -> Arc<dyn ObjectStore> {
    open_store(url, &StoreOptions::default()).unwrap().store
}

/// A `file://` URL of a folder.
fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// Uploads `n` versions (one over the replica's part size, so copied in parts) and checks the
/// replica gets each.
async fn copies_between(primary_url: &str, replica_url: &str) {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 6, "20MiB", "120MiB");
    let extra = flags(replica_url, &["--storage-url", primary_url]);
    let server =
        Server::in_process(&args(config.path(), data.path(), &extra.iter().map(String::as_str).collect::<Vec<_>>()))
            .await;
    let c = client();
    let admin = login(&c, &server, "root", "admin", None).await;
    let uploader = login(&c, &server, "some-user", "admin", None).await;
    for (i, len) in [700usize, 40_000, 9 << 20].into_iter().enumerate() {
        let (status, body) = upload(&c, &server, &uploader, "dumps", armored(len, i as u8), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let status = caught_up(&c, &server, &admin).await;
    assert_eq!(status["copied"], 3, "{status}");
    let n = assert_same_versions(&store(primary_url), &store(replica_url)).await;
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_between_local_disk_and_s3_both_ways() {
    let s3 = backup_store::testing::S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s3_under = |prefix: &str| s3.url().replacen("s3://test-bucket?", &format!("s3://test-bucket/{prefix}?"), 1);
    copies_between(&file_url(&dir.path().join("a")), &s3_under("replica-a")).await;
    copies_between(&s3_under("primary-b"), &file_url(&dir.path().join("b"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_between_s3_and_azurite_both_ways() {
    let Some(azurite) = backup_store::testing::azurite("replication_between_s3_and_azurite_both_ways") else { return };
    let s3 = backup_store::testing::S3Server::start().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let s3_under = |prefix: &str| s3.url().replacen("s3://test-bucket?", &format!("s3://test-bucket/{prefix}?"), 1);
    copies_between(&s3_under("primary-c"), &azurite.store_url(&format!("{run}/replica-c"))).await;
    copies_between(&azurite.store_url(&format!("{run}/primary-d")), &s3_under("replica-d")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_twenty_times_while_replicating_leaves_every_version_whole_on_the_replica() {
    let (config, data, replica_dir) = (config_copy(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 6, "20MiB", "120MiB");
    let replica_url = file_url(replica_dir.path());
    // One instance name across restarts: the restarted server takes its own cursor back at once.
    let extra = flags(&replica_url, &["--instance-name", "killed", "--replica-workers", "2"]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let c = client();
    let mut committed = 0u32;
    for round in 0..20u32 {
        let server = Server::start(&args(config.path(), data.path(), &extra));
        let uploader = login(&c, &server, "some-user", "admin", None).await;
        // Uploads of a few MiB keep copies in flight (in parts) when the kill comes.
        let uploads = {
            let (c, base, token) = (c.clone(), server.base.clone(), uploader.clone());
            tokio::spawn(async move {
                let mut ok = 0u32;
                for i in 0..3u32 {
                    let body = armored([1, 2, 3, 9][((round * 3 + i) % 4) as usize] << 20, (round * 3 + i) as u8);
                    let url = format!("{base}/api/alpha/repository/collection/dumps/version");
                    match c.post(url).bearer_auth(&token).body(body).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => break,
                    }
                }
                ok
            })
        };
        // A random moment: during the uploads, or during the copies after them.
        let pause = rand_millis(round, 50, 900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        drop(server); // SIGKILL
        committed += uploads.await.unwrap();
    }
    assert!(committed >= 10, "only {committed} uploads went through before the kills");
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let admin = login(&c, &server, "root", "admin", None).await;
    let status = caught_up(&c, &server, &admin).await;
    let primary = store(&file_url(&data.path().join("blobs")));
    let replica = store(&replica_url);
    let n = assert_same_versions(&primary, &replica).await;
    let uploader = login(&c, &server, "some-user", "admin", None).await;
    let listed = support::version_numbers(&c, &server, &uploader, "dumps", None).await;
    // The collection keeps its newest versions; every one it holds is on the replica.
    assert_eq!(n, listed.len(), "{status}");
    // Nothing partial on the replica's disk either: a copy cut by a kill is removed before it
    // is made again.
    let leftovers: Vec<_> =
        support::files_under(replica_dir.path()).into_iter().filter(|p| p.to_string_lossy().contains('#')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(server);
}

/// A pseudo-random number of milliseconds in `low..high` for `round`.
fn rand_millis(round: u32, low: u64, high: u64) -> u64 {
    // splitmix64 of the round: spread, and the same moments on every run.
    let mut x = (u64::from(round) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    low + (x ^ (x >> 31)) % (high - low)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_shows_in_the_route_the_metrics_and_the_health_then_catches_up() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 6, "20MiB", "120MiB");
    // Nothing listens there yet: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = format!(
        "s3://test-bucket?endpoint=http://127.0.0.1:{port}&region=us-east-1&allow_http=true&access_key_id=test-access&secret_access_key=test-secret-key"
    );
    let clock = Arc::new(backup_core::ManualClock::starting_now());
    let extra = flags(&down, &["--replica-lag-limit", "10m"]);
    let server = Server::in_process_with(
        support::server_config(&args(
            config.path(),
            data.path(),
            &extra.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .clock(clock.clone()),
    )
    .await;
    let c = client();
    let uploader = login(&c, &server, "some-user", "admin", None).await;
    for i in 0..3u8 {
        let (status, body) = upload(&c, &server, &uploader, "dumps", armored(900, i), None).await;
        assert_eq!(status, 200, "{body}");
    }
    clock.advance(chrono::Duration::minutes(11));
    let admin = login(&c, &server, "root", "admin", None).await;
    let status = eventually(Duration::from_secs(30), || async {
        let r = replica_status(&c, &server, &admin).await;
        r["unavailable"].is_string().then_some(r)
    })
    .await
    .expect("the replica is reported unavailable");
    assert_eq!(status["pendingVersions"], 3, "{status}");
    assert!(status["lagSeconds"].as_u64().unwrap() >= 600, "{status}");
    let (code, health) = json(
        c.get(server.url("/api/stable/repository/collection/dumps/health")).bearer_auth(&admin).send().await.unwrap(),
    )
    .await;
    assert_eq!(code, 500, "{health}");
    assert!(health.to_string().contains("replica offsite"), "{health}");
    let metrics = c.get(server.url("/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("backup_replica_pending_versions{replica=\"offsite\"} 3"), "{metrics}");
    assert!(metrics.contains("backup_replica_lag_seconds{replica=\"offsite\"}"), "{metrics}");
    let page = dashboard(&c, &server, "root", "admin").await;
    assert!(page.contains("Replicas") && page.contains("unavailable"), "{page}");

    // The store comes back where the replica looks: the queue drains, the health passes.
    let s3 = backup_store::testing::S3Server::start_on(port).await;
    let status = caught_up(&c, &server, &admin).await;
    assert_eq!((status["copied"].as_u64(), status["lagSeconds"].as_u64()), (Some(3), Some(0)), "{status}");
    let (code, health) = json(
        c.get(server.url("/api/stable/repository/collection/dumps/health")).bearer_auth(&admin).send().await.unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{health}");
    let metrics = c.get(server.url("/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("backup_replica_pending_versions{replica=\"offsite\"} 0"), "{metrics}");
    assert!(metrics.contains("backup_replica_copied_versions_total{replica=\"offsite\"} 3"), "{metrics}");
    let page = dashboard(&c, &server, "root", "admin").await;
    assert!(page.contains("up to date"), "{page}");
    drop(server);
    drop(s3);
}

/// The dashboard's overview page, logged in through its form.
async fn dashboard(_: &reqwest::Client, server: &Server, user: &str, password: &str) -> String {
    let c = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let page = c.get(server.url("/ui/login")).send().await.unwrap();
    let login_cookie = cookie(&page, "backup_ui_login");
    let body = page.text().await.unwrap();
    let at = body.find("name=\"csrf\" value=\"").expect("a login form") + 19;
    let csrf = body[at..].split('"').next().unwrap().to_owned();
    let answer = c
        .post(server.url("/ui/login"))
        .header("cookie", login_cookie)
        .form(&[("username", user), ("password", password), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let session = cookie(&answer, "backup_ui");
    c.get(server.url("/ui/")).header("cookie", session).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_lost_with_its_catalog_is_served_again_from_the_replica() {
    let (config, data, replica_dir) = (config_copy(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 6, "20MiB", "120MiB");
    let replica_url = file_url(replica_dir.path());
    let extra = flags(&replica_url, &[]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let c = client();
    let mut bodies = Vec::new();
    {
        let server = Server::start(&args(config.path(), data.path(), &extra));
        let uploader = login(&c, &server, "some-user", "admin", None).await;
        for i in 0..4u8 {
            let body = armored(5000 + usize::from(i) * 1000, i);
            let (status, answer) = upload(&c, &server, &uploader, "dumps", body.clone(), None).await;
            assert_eq!(status, 200, "{answer}");
            bodies.push(body);
        }
        let admin = login(&c, &server, "root", "admin", None).await;
        caught_up(&c, &server, &admin).await;
    }
    // The region is gone: the catalog and the primary's blobs with it.
    std::fs::remove_dir_all(data.path()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let promote = [
        "--replica-url".to_owned(),
        format!("offsite={replica_url}"),
        "--promote-replica".to_owned(),
        "offsite".to_owned(),
    ];
    let mut rebuild = args(config.path(), fresh.path(), &["--rebuild-catalog", "--verify"]);
    rebuild.extend(promote.iter().cloned());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backup-server")).args(&rebuild).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut serve = args(config.path(), fresh.path(), &["--upload-confirm-grace", "0s"]);
    serve.extend(NO_RATE_LIMITS.iter().map(|s| s.to_string()));
    serve.extend(promote.iter().cloned());
    let server = Server::start(&serve);
    let uploader = login(&c, &server, "some-user", "admin", None).await;
    let numbers = support::version_numbers(&c, &server, &uploader, "dumps", None).await;
    assert_eq!(numbers.len(), 4, "{numbers:?}");
    for (n, body) in numbers.iter().zip(&bodies) {
        let url = server.url(&format!("/api/alpha/repository/collection/dumps/version/{n}"));
        let got = c.get(url).bearer_auth(&uploader).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_slice(), "version {n}");
    }
    // And it takes new backups.
    let (status, answer) = upload(&c, &server, &uploader, "dumps", armored(800, 77), None).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_gives_its_collection_a_replica_of_its_own() {
    let (config, data, cold) = (config_copy(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 6, "20MiB", "120MiB");
    support::add_plain_collection(config.path(), "logs", 6, "20MiB", "120MiB");
    let manifest = config.path().join("backup-repository/backups.riotkit.org/v1alpha1/backupcollections/dumps.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{text}    replicas:\n        - name: cold\n          url: {}\n          deleteAfter: 7d\n",
            file_url(cold.path())
        ),
    )
    .unwrap();
    let mut extra: Vec<String> = [
        "--upload-confirm-grace",
        "0s",
        "--replica-poll",
        "20ms",
        "--detector-interval",
        "0s",
        "--maintenance-schedule",
        "* * * * * *",
    ]
    .map(str::to_owned)
    .to_vec();
    extra.extend(NO_RATE_LIMITS.iter().map(|s| s.to_string()));
    let server =
        Server::in_process(&args(config.path(), data.path(), &extra.iter().map(String::as_str).collect::<Vec<_>>()))
            .await;
    let c = client();
    let manager = login(&c, &server, "some-user", "admin", None).await;
    for collection in ["dumps", "logs"] {
        let (status, body) = upload(&c, &server, &manager, collection, armored(3000, 1), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let admin = login(&c, &server, "root", "admin", None).await;
    let status = caught_up(&c, &server, &admin).await;
    assert_eq!((status["name"].as_str(), status["copied"].as_u64()), (Some("cold"), Some(1)), "{status}");
    let copied = version_objects(&store(&file_url(cold.path()))).await;
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert!(copied[0].as_ref().contains("/dumps/"), "{copied:?}");

    // Deleted and purged from the primary (no trash retention, maintenance every second): the
    // replica keeps it for its seven days, and it comes back from there as a new version.
    let url = server.url("/api/stable/repository/collection/dumps/version/1");
    let (code, body) = json(c.delete(&url).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(code, 200, "{body}");
    let dumps_objects = || async {
        let primary = store(&file_url(&data.path().join("blobs")));
        version_objects(&primary).await.into_iter().filter(|p| p.as_ref().contains("/dumps/")).count()
    };
    eventually(Duration::from_secs(30), || async { (dumps_objects().await == 0).then_some(()) })
        .await
        .expect("the version's object is purged from the primary");
    let (code, body) = json(c.post(format!("{url}/restore")).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(code, 404, "gone from the primary's trash: {body}");
    let restore = format!("{url}/restore?replica=cold");
    let (code, body) = json(c.post(&restore).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(code, 200, "{body}");
    let number = body["data"]["version"]["versionNumber"].as_u64().unwrap();
    let got = c
        .get(server.url(&format!("/api/alpha/repository/collection/dumps/version/{number}")))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), armored(3000, 1).as_slice());
    let nowhere = format!("{url}/restore?replica=nowhere");
    let (code, body) = json(c.post(nowhere).bearer_auth(&manager).send().await.unwrap()).await;
    assert_eq!(code, 400, "{body}");

    // A manifest naming a replica the flags declare already (for every collection) is refused,
    // naming its file and entry.
    let e = backup_server::build(
        &support::server_config(&{
            let mut a = args(config.path(), data.path(), &[]);
            a.extend(["--replica-url".to_owned(), format!("cold={}", file_url(cold.path()))]);
            a
        })
        .args()
        .clone(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("dumps.yaml") && e.contains("spec.replicas[0]"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_catalog_copy_each_version_once() {
    let Some(database) = support::database_url("two_servers_on_one_postgres_catalog_copy_each_version_once") else {
        return;
    };
    let schema = support::fresh_schema("replicas");
    let catalog = format!("{database}{}schema={schema}", if database.contains('?') { '&' } else { '?' });
    let (config, blobs, replica) = (config_copy(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    support::add_system_admin(config.path(), "root");
    support::add_plain_collection(config.path(), "dumps", 50, "1MiB", "50MiB");
    let mut extra = flags(&file_url(replica.path()), &[]);
    extra.extend(["--catalog-url".into(), catalog, "--storage-url".into(), file_url(blobs.path())]);
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |data: &Path, name: &str| {
        let mut v: Vec<&str> = extra.iter().map(String::as_str).collect();
        v.extend(["--instance-name", name]);
        Server::start(&args(config.path(), data, &v))
    };
    let (a, b) = (start(data_a.path(), "a"), start(data_b.path(), "b"));
    let c = client();
    let tokens = [login(&c, &a, "some-user", "admin", None).await, login(&c, &b, "some-user", "admin", None).await];
    for i in 0..30u8 {
        let (server, token) = if i % 2 == 0 { (&a, &tokens[0]) } else { (&b, &tokens[1]) };
        let (status, body) = upload(&c, server, token, "dumps", armored(2000 + usize::from(i), i), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let admin = login(&c, &a, "root", "admin", None).await;
    let status = caught_up(&c, &a, &admin).await;
    // One of the two holds the replica's cursor at a time: between them every version was
    // copied once.
    assert_eq!(status["copied"].as_u64(), Some(30), "{status}");
    let n = assert_same_versions(&store(&file_url(blobs.path())), &store(&file_url(replica.path()))).await;
    assert_eq!(n, 30);
}
