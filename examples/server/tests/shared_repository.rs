//! Several server processes on one repository: one PostgreSQL database (its own schema per
//! run) and one S3 bucket (a real S3 server in this process). Concurrent uploads through both
//! into one collection respect the hard limit exactly; each sees the other's versions.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{NO_RATE_LIMITS, Server, add_manifest, args, armored, client, config_copy, json, login};

/// Five versions of 1M each, and 2M of extra space for versions over 1M.
const COLLECTION: &str = r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: shared
spec:
    description: Written by two servers at once
    filenameTemplate: shared-${version}.tar.gz
    maxBackupsCount: 5
    maxOneVersionSize: 1M
    maxCollectionSize: 7M
    strategyName: fifo
    accessControl:
        - name: some-user
          type: user
          roles: [collectionManager]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_and_s3_keep_the_hard_limit() {
    let Some(database) = support::database_url("two_servers_on_postgres_and_s3_keep_the_hard_limit") else { return };
    let schema = support::fresh_schema("server");
    let catalog = format!("{database}{}schema={schema}", if database.contains('?') { '&' } else { '?' });
    let s3 = support::S3Server::start().await;
    let config = config_copy();
    add_manifest(config.path(), "backups.riotkit.org/v1alpha1/backupcollections/shared.yaml", COLLECTION);
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let storage = s3.url();
    // Six uploads at once per user and server: the quota, not the cap on uploads, is under test.
    let mut extra = vec![
        "--catalog-url",
        catalog.as_str(),
        "--storage-url",
        storage.as_str(),
        "--upload-confirm-grace",
        "0s",
        "--max-uploads-per-user",
        "16",
        "--health-check-key",
        "ready",
    ];
    extra.extend(NO_RATE_LIMITS);
    let a = Server::start(&args(config.path(), data_a.path(), &extra));
    let b = Server::start(&args(config.path(), data_b.path(), &extra));
    let c = client();
    let tokens = [login(&c, &a, "some-user", "admin", None).await, login(&c, &b, "some-user", "admin", None).await];

    // The limits in bytes, as the server reads the manifest.
    let (status, body) =
        json(c.get(a.url("/api/stable/repository/collection")).bearer_auth(&tokens[0]).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let shared = body["data"]["collections"].as_array().unwrap().iter().find(|c| c["id"] == "shared").unwrap().clone();
    let (soft, hard) = (shared["maxOneVersionSize"].as_u64().unwrap(), shared["maxCollectionSize"].as_u64().unwrap());
    let extra_space = hard - 5 * soft;
    // Each upload is over the soft limit by 40% of the extra space: two fit, a third would not.
    let size = (soft + extra_space * 2 / 5) as usize;

    // A watcher samples the listing through the other server while uploads run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (c, url, token, stop) =
            (c.clone(), b.url("/api/stable/repository/collection/shared/version"), tokens[1].clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = json(c.get(&url).bearer_auth(&token).send().await.unwrap()).await;
                assert_eq!(status, 200, "{body}");
                let sizes: Vec<u64> = body["data"]["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["filesize"].as_u64().unwrap())
                    .collect();
                assert!(sizes.iter().sum::<u64>() <= hard, "over the hard limit: {sizes:?}");
                assert!(
                    sizes.iter().map(|s| s.saturating_sub(soft)).sum::<u64>() <= extra_space,
                    "over the extra space: {sizes:?}"
                );
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };

    let uploads = (0..12u8).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        let (c, url, token) = (
            c.clone(),
            server.url("/api/alpha/repository/collection/shared/version"),
            tokens[(i % 2) as usize].clone(),
        );
        async move {
            let body = armored(size, i);
            let (status, reply) = json(c.post(url).bearer_auth(token).body(body.clone()).send().await.unwrap()).await;
            (status, reply, body)
        }
    });
    let results = futures::future::join_all(uploads).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = watcher.await.unwrap();
    assert!(samples > 0);

    let accepted: Vec<_> = results.iter().filter(|(s, _, _)| *s == 200).collect();
    for (status, reply, _) in &results {
        assert!(*status == 200 || *status == 413, "{status} {reply}");
    }
    assert_eq!(accepted.len(), 2, "exactly two fit: {:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());

    // Both servers list the same two versions, numbered 1 and 2, and serve each other's bytes.
    for (server, token) in [(&a, &tokens[0]), (&b, &tokens[1])] {
        assert_eq!(support::version_numbers(&c, server, token, "shared", None).await, [1, 2]);
        for (_, reply, sent) in &accepted {
            let n = &reply["data"]["version"]["versionNumber"];
            let url = server.url(&format!("/api/alpha/repository/collection/shared/version/{n}"));
            let got = c.get(url).bearer_auth(token).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(&got[..], &sent[..], "version {n} through {}", server.base);
        }
    }
    // The catalog is PostgreSQL: nothing was written to the local default.
    assert!(!data_a.path().join("catalog.db").exists() && !data_b.path().join("catalog.db").exists());
    let (status, body) = json(c.get(a.url("/ready?code=ready")).send().await.unwrap()).await;
    assert_eq!((status, &body["status"]), (200, &json!(true)), "{body}");
}
