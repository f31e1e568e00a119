//! `Idempotency-Key` on uploads, over real HTTP (in-process server): a retry of an upload
//! whose answer was lost gets the version already stored, never a second copy; keys are per
//! user; the listing finds a version by its key; the server's own metadata name is refused.

use backup_server::{ServerConfig, spawn};
use serde_json::Value;

async fn upload(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: &'static str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = c.post(url).bearer_auth(token).body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_gets_the_stored_version() {
    let server = spawn(
        ServerConfig::for_tests()
            .user("alice", "alice's password", &[])
            .user("bob", "bob's password", &[])
            .access_key("alice", "nightly", "the key's password", &[("db", &["backupUploader"])])
            .collection("db", 10, "1M", "10M", &[("alice", &["collectionManager"]), ("bob", &["collectionManager"])]),
    )
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let alice = server.token("alice", "alice's password").await.unwrap();
    let bob = server.token("bob", "bob's password").await.unwrap();
    let uploader = server.token("alice$nightly", "the key's password").await.unwrap();
    let url = server.url("/api/alpha/repository/collection/db/version");
    let versions = |token: String, query: &'static str| {
        let (c, server) = (c.clone(), &server);
        async move {
            let listed: Value = c
                .get(server.url(&format!("/api/stable/repository/collection/db/version{query}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            listed["data"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["versionNumber"].as_u64().unwrap())
                .collect::<Vec<_>>()
        }
    };

    let first = upload(&c, &url, &alice, "the nightly dump", Some("2026-12-07-nightly")).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["data"]["version"]["versionNumber"], 1);

    // The answer was lost; the client sends the upload again with the same key.
    let again = upload(&c, &url, &alice, "the nightly dump", Some("2026-12-07-nightly")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["version"], first["data"]["version"], "the same version, as stored");
    assert_eq!(versions(alice.clone(), "").await, [1], "stored once");

    // The listing finds it by its key; another key finds nothing.
    assert_eq!(versions(alice.clone(), "?idempotencyKey=2026-12-07-nightly").await, [1]);
    assert!(versions(alice.clone(), "?idempotencyKey=other").await.is_empty());
    // Keys are per user: bob's upload with the same key is his own version.
    let bobs: Value = upload(&c, &url, &bob, "bob's dump", Some("2026-12-07-nightly")).await.json().await.unwrap();
    assert_eq!(bobs["data"]["version"]["versionNumber"], 2);
    assert!(versions(bob.clone(), "?idempotencyKey=2026-12-07-nightly").await == [2]);
    // An upload-only access key may use keys and ask about its own uploads.
    let keyed: Value = upload(&c, &url, &uploader, "by the key", Some("k-1")).await.json().await.unwrap();
    assert_eq!(keyed["data"]["version"]["versionNumber"], 3);
    let replay = upload(&c, &url, &uploader, "by the key", Some("k-1")).await;
    assert_eq!((replay.status().as_u16(), replay.headers().get("idempotent-replayed").is_some()), (200, true));
    // Without a key, every upload is a new version.
    assert_eq!(upload(&c, &url, &alice, "plain", None).await.status(), 200);
    assert_eq!(versions(alice.clone(), "").await, [1, 2, 3, 4]);

    // Malformed keys and the server's own metadata name are refused before the body.
    let bad = upload(&c, &url, &alice, "x", Some("has a space")).await;
    assert_eq!(bad.status(), 400);
    let reserved = c
        .post(&url)
        .bearer_auth(&alice)
        .header("X-Backup-Meta-idempotency-key", "forged")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(reserved.status(), 400);
    assert!(reserved.text().await.unwrap().contains("Idempotency-Key"));
    assert_eq!(versions(alice, "").await, [1, 2, 3, 4]);
    server.shutdown().await;
}
