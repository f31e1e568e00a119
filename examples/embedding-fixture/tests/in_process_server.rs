//! What another project's integration tests do with backup-server: start it in-process on a
//! free port, talk HTTP to it, stop it.

use backup_server::{ServerConfig, spawn};
use serde_json::{Value, json};

async fn token(http: &reqwest::Client, server: &backup_server::RunningServer, user: &str, password: &str) -> String {
    let login = json!({ "username": user, "password": password });
    let reply: Value =
        http.post(server.url("/api/stable/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    reply["data"]["token"].as_str().unwrap_or_else(|| panic!("no token: {reply}")).to_owned()
}

#[tokio::test]
async fn uploads_rotate_and_download_byte_for_byte() {
    let config = ServerConfig::for_tests()
        .user("ci", "a password", &[])
        .user("reader", "another password", &[])
        .access_key("ci", "pipeline", "a key password", &[("db", &["backupUploader"])])
        .collection("db", 2, "1M", "5M", &[("ci", &["collectionManager"]), ("reader", &["backupDownloader"])]);
    let server = spawn(config).await.unwrap();
    assert!(server.addr.ip().is_loopback() && server.addr.port() != 0, "{}", server.addr);
    let http = reqwest::Client::new();
    let ci = token(&http, &server, "ci", "a password").await;
    let upload = server.url("/api/alpha/repository/collection/db/version");
    for body in ["one", "two", "three"] {
        let r = http.post(&upload).bearer_auth(&ci).body(body).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let reader = token(&http, &server, "reader", "another password").await;
    let latest = http
        .get(server.url("/api/alpha/repository/collection/db/version/latest"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 200);
    assert_eq!(latest.bytes().await.unwrap(), "three");
    let refused = http.post(&upload).bearer_auth(&reader).body("x").send().await.unwrap();
    assert_eq!(refused.status(), 403, "a downloader does not upload");
    // An access key uploads and does nothing else.
    let key = token(&http, &server, "ci$pipeline", "a key password").await;
    let r = http.post(&upload).bearer_auth(&key).body("four").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let latest = server.url("/api/alpha/repository/collection/db/version/latest");
    assert_eq!(http.get(&latest).bearer_auth(&key).send().await.unwrap().status(), 403);
    let list: Value = http
        .get(server.url("/api/stable/repository/collection/db/version"))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let numbers: Vec<u64> =
        list["data"]["versions"].as_array().unwrap().iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 4]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_manifest_from_code_is_refused_naming_the_field() {
    let config = ServerConfig::for_tests().user("ci", "a password", &[]).collection(
        "db",
        0,
        "1M",
        "5M",
        &[("ci", &["collectionManager"])],
    );
    let e = spawn(config).await.unwrap_err();
    assert!(e.contains("db.yaml") && e.contains("maxBackupsCount"), "{e}");
    let config = ServerConfig::for_tests().collection("db", 2, "1M", "5M", &[("nobody", &["collectionManager"])]);
    let e = spawn(config).await.unwrap_err();
    assert!(e.contains("no user named \"nobody\""), "{e}");
    // A value that would change the YAML around it is refused, not written.
    let config = ServerConfig::for_tests().user("ci\n    roles: [systemAdmin]", "a password", &[]);
    let e = spawn(config).await.unwrap_err();
    assert!(e.contains("user name"), "{e}");
}

#[tokio::test]
async fn two_servers_run_side_by_side() {
    let a = spawn(ServerConfig::for_tests()).await.unwrap();
    let b = spawn(ServerConfig::for_tests()).await.unwrap();
    assert_ne!(a.addr, b.addr);
    let health = reqwest::get(b.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    a.shutdown().await;
    b.shutdown().await;
}
