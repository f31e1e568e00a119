//! `RunningServer`, the in-process server other projects' tests embed: its tokens.

mod support;

use backup_server::spawn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_running_server_is_an_api_login_token() {
    let config =
        support::dashboard_config().access_key("alice", "reader", "readerreader", &[("db", &["backupDownloader"])]);
    let server = spawn(config).await.unwrap();
    let http = reqwest::Client::new();
    let listing = |token: String| {
        let request = http.get(server.url("/api/stable/repository/collection")).bearer_auth(token);
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            let ids =
                body["data"]["collections"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
            ids.into_iter().map(|id| id.as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(listing(server.token("alice", "alicealice").await.unwrap()).await, ["db", "web"]);
    // An access key's token carries the key's narrower access.
    assert_eq!(listing(server.token("alice$reader", "readerreader").await.unwrap()).await, ["db"]);
    // It is registered like a login's: listed among the user's sessions.
    let token = server.token("bob", "bobbob").await.unwrap();
    let sessions: serde_json::Value =
        http.get(server.url("/api/stable/auth/token")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions["data"]["grantedAccesses"][0]["requesterIP"], "127.0.0.1");
    let wrong = server.token("alice", "wrong").await.unwrap_err();
    assert!(wrong.contains("incorrect") || wrong.contains("password"), "{wrong}");
    assert!(server.token("nobody", "x").await.is_err());
    server.shutdown().await;
}
