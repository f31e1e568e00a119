//! The whole flow of backup-repository's API over real HTTP, with the server as the binary
//! serves it (in this process) and the reference example manifests: logins, uploads, listing,
//! downloads, rotation, quota, windows, logout, health, and our additions (delete, restore,
//! collections, metrics, OpenAPI).

mod support;

use chrono::Timelike;
use serde_json::json;
use support::{
    NO_RATE_LIMITS, Server, add_manifest, args, armored, client, config_copy, json, login, raw, try_login,
    version_numbers,
};

/// The admin's address allowed by its `restrictByIP`, sent through the trusted loopback proxy.
const ADMIN_IP: &str = "1.2.3.4";

async fn start(extra: &[&str]) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut all = vec!["--trusted-proxy", "127.0.0.1", "--upload-confirm-grace", "100ms"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    let server = Server::in_process(&args(config.path(), data.path(), &all)).await;
    (server, config, data)
}

async fn upload(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    collection: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    support::upload(c, s, token, collection, body, Some(ADMIN_IP)).await
}

async fn download(c: &reqwest::Client, s: &Server, token: &str, collection: &str, which: &str) -> reqwest::Response {
    let url = s.url(&format!("/api/alpha/repository/collection/{collection}/version/{which}"));
    // Through the trusted proxy, as the admin's restrictByIP wants; ignored by servers
    // without one.
    c.get(url).bearer_auth(token).header("X-Forwarded-For", ADMIN_IP).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_flow_works_end_to_end() {
    let (server, _config, _data) = start(&["--trash-retention", "1h", "--health-check-key", "ready-code"]).await;
    let c = client();

    // Liveness and readiness.
    let (status, body) = json(c.get(server.url("/health")).send().await.unwrap()).await;
    assert_eq!((status, body["status"].clone()), (200, json!(true)), "{body}");
    let (status, body) = json(c.get(server.url("/ready")).send().await.unwrap()).await;
    assert_eq!(status, 403, "/ready without the code: {body}");
    let (status, body) = json(c.get(server.url("/ready?code=ready-code")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let checks = body["data"]["health"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{body}");
    assert!(body["data"]["repository"].as_str().is_some_and(|id| id.len() == 36), "the repository served: {body}");
    assert!(checks.iter().all(|c| c["status"] == json!(true)), "{body}");
    let (status, _) =
        json(c.get(server.url("/ready")).header("Authorization", "ready-code").send().await.unwrap()).await;
    assert_eq!(status, 200, "the code in the Authorization header");

    // The admin may only log in from its restrictByIP address (through the trusted proxy).
    // From elsewhere, the right password gets the answer of a wrong one (no answer tells
    // them apart); the log has the real reason.
    let (status, body) = try_login(&c, &server, "admin", "admin", None).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "incorrect Username or Password"), "{body}");
    assert_eq!(body["status"], json!(false));
    assert_eq!(try_login(&c, &server, "admin", "wrong", None).await, (status, body), "right and wrong alike");
    let admin = login(&c, &server, "admin", "admin", Some(ADMIN_IP)).await;
    let (status, body) = try_login(&c, &server, "admin", "wrong", Some(ADMIN_IP)).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "incorrect Username or Password"));

    // whoami.
    let req = c.get(server.url("/api/stable/auth/whoami")).bearer_auth(&admin).header("X-Forwarded-For", ADMIN_IP);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["email"], "riotkit@riseup.net");
    let roles = body["data"]["permissions"].as_array().unwrap();
    assert!(roles.contains(&json!("systemAdmin")) && roles.contains(&json!("collectionManager")), "{body}");
    assert_eq!(body["data"]["grantedAccess"]["user"], "admin");
    assert_eq!(body["data"]["grantedAccess"]["requesterIP"], ADMIN_IP);

    // The access key: upload only, on iwa-ait.
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let req = c.get(server.url("/api/stable/auth/whoami")).bearer_auth(&uploader);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["grantedAccess"]["accessKeyName"], "uploader");

    // Upload v1 as a chunked raw body with no Content-Type, as backup-maker does, and read
    // the status line off the socket: backup-maker wants exactly `200 OK`.
    let first = armored(20_000, 1);
    let mut request = format!(
        "POST /api/alpha/repository/collection/iwa-ait/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {uploader}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in first.chunks(7000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw(&server.addr(), &request).await.expect("an answer");
    assert_eq!(response.status_line, "HTTP/1.1 200 OK", "{response:?}");
    let v1 = response.json();
    assert_eq!(v1["data"]["version"]["versionNumber"], 1, "{v1}");
    assert_eq!(v1["data"]["version"]["filename"], "iwa-ait-1.tar.gz");
    assert_eq!(v1["data"]["version"]["filesize"], first.len());

    // The key cannot download or list: it only narrows some-user's rights.
    let denied = download(&c, &server, &uploader, "iwa-ait", "latest").await;
    let (status, body) = json(denied).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "not authorized to download versions from this collection", "the original's text");
    assert!(body["data"]["reason"].as_str().unwrap().contains("uploader"), "{body}");

    // Download v1 three ways, byte-identical, with the headers of the original.
    for which in ["latest", "1", "v1"] {
        let r = download(&c, &server, &admin, "iwa-ait", which).await;
        assert_eq!(r.status(), 200, "{which}");
        assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"iwa-ait-1.tar.gz\"");
        assert_eq!(r.headers()["content-length"], first.len().to_string().as_str());
        assert_eq!(r.bytes().await.unwrap(), first, "{which}");
    }

    // A multipart upload (field `file`) from the admin, then more up to rotation.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(armored(10_000, 2)).file_name("b.asc"));
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let req = c.post(&url).bearer_auth(&admin).header("X-Forwarded-For", ADMIN_IP).multipart(form);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!((status, body["data"]["version"]["versionNumber"].clone()), (200, json!(2)), "{body}");
    let mut last = Vec::new();
    for seed in 3..=6u8 {
        last = armored(15_000 + seed as usize, seed);
        let (status, body) = upload(&c, &server, &uploader, "iwa-ait", last.clone()).await;
        assert_eq!((status, body["data"]["version"]["versionNumber"].clone()), (200, json!(seed)), "{body}");
    }
    // maxBackupsCount is 5: v1 rotated out.
    assert_eq!(version_numbers(&c, &server, &admin, "iwa-ait", Some(ADMIN_IP)).await, vec![2, 3, 4, 5, 6]);
    let gone = download(&c, &server, &admin, "iwa-ait", "1").await;
    let (status, body) = json(gone).await;
    assert_eq!(status, 404, "{body}");

    // Over the quota (1M per version, 5M of extra space): refused, as Content-Length and as a
    // chunked stream, and every kept version stays as it was.
    let too_big = armored(7 << 20, 7);
    let (status, body) = upload(&c, &server, &uploader, "iwa-ait", too_big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with(
            "cannot upload version. cannot upload file, cannot copy stream, error: filesize reached allowed limit"
        ),
        "{body}"
    );
    let stream = futures::stream::iter(
        too_big.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let r = c.post(&url).bearer_auth(&uploader).body(reqwest::Body::wrap_stream(stream)).send().await;
    let (status, body) = json(r.expect("the refusal reaches the client")).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(version_numbers(&c, &server, &admin, "iwa-ait", Some(ADMIN_IP)).await, vec![2, 3, 4, 5, 6]);
    let latest = download(&c, &server, &admin, "iwa-ait", "latest").await;
    assert_eq!(latest.bytes().await.unwrap(), last);

    // Not an OpenPGP message: refused by the content rule.
    let (status, body) = upload(&c, &server, &uploader, "iwa-ait", b"plain text, not encrypted".to_vec()).await;
    assert_eq!(status, 422, "{body}");

    // Delete v6 and restore it (ours), within the trash retention.
    let req = c
        .delete(server.url("/api/stable/repository/collection/iwa-ait/version/6"))
        .bearer_auth(&admin)
        .header("X-Forwarded-For", ADMIN_IP);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version_numbers(&c, &server, &admin, "iwa-ait", Some(ADMIN_IP)).await, vec![2, 3, 4, 5]);
    let req = c
        .post(server.url("/api/stable/repository/collection/iwa-ait/version/6/restore"))
        .bearer_auth(&admin)
        .header("X-Forwarded-For", ADMIN_IP);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version_numbers(&c, &server, &admin, "iwa-ait", Some(ADMIN_IP)).await, vec![2, 3, 4, 5, 6]);
    let latest = download(&c, &server, &admin, "iwa-ait", "latest").await;
    assert_eq!(latest.bytes().await.unwrap(), last);

    // Collection health: the code is the secret's sha256 preimage, "admin".
    let health = server.url("/api/stable/repository/collection/iwa-ait/health");
    let (status, body) = json(c.get(&health).send().await.unwrap()).await;
    assert_eq!(status, 403, "no code: {body}");
    let (status, body) = json(c.get(format!("{health}?code=admin")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["data"]["health"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["BackupWindowValidator", "VersionsSizeValidator", "SumOfVersionsValidator", "IntegrityValidator"]
    );
    let (status, _) = json(c.get(&health).header("Authorization", "admin").send().await.unwrap()).await;
    assert_eq!(status, 200, "the code in the Authorization header");

    // Collections (ours): the admin sees iwa-ait with its manifest's limits.
    let req =
        c.get(server.url("/api/stable/repository/collection")).bearer_auth(&admin).header("X-Forwarded-For", ADMIN_IP);
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["collections"][0]["id"], "iwa-ait");
    assert_eq!(body["data"]["collections"][0]["maxBackupsCount"], 5);

    // Metrics (ours), behind the health code: versions, bytes, refusals by reason.
    let text = c.get(server.url("/metrics?code=ready-code")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("backup_collection_versions{collection=\"iwa-ait\"} 5"), "{text}");
    assert!(text.contains("reason=\"quota\""), "{text}");
    assert!(text.contains("reason=\"content\""), "{text}");
    let (status, _) = json(c.get(server.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 403);

    // The OpenAPI description (ours) names every route the server answers.
    let (status, doc) = json(c.get(server.url("/api/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    for path in ["/api/stable/auth/login", "/api/alpha/repository/collection/{collectionId}/version", "/ready"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from {doc}");
    }

    // Logout revokes the token; it is refused afterwards.
    let (status, body) =
        json(c.delete(server.url("/api/stable/auth/logout")).bearer_auth(&uploader).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "JWT was revoked");
    let (status, body) = upload(&c, &server, &uploader, "iwa-ait", armored(1000, 9)).await;
    assert_eq!(status, 403, "a revoked token: {body}");
    assert_eq!(body["message"], "you don't have permission to access this resource");

    // A version over the soft limit (1M) fits the extra space, and collection health says so.
    let (status, body) = upload(&c, &server, &admin, "iwa-ait", armored(1_500_000, 8)).await;
    assert_eq!((status, body["data"]["version"]["versionNumber"].clone()), (200, json!(7)), "{body}");
    let (status, body) = json(c.get(format!("{health}?code=admin")).send().await.unwrap()).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "one of checks failed");
    let sizes =
        body["data"]["health"].as_array().unwrap().iter().find(|c| c["name"] == "VersionsSizeValidator").unwrap();
    assert_eq!(sizes["status"], json!(false), "{body}");
    assert!(sizes["message"].as_str().unwrap().contains("Failed file: iwa-ait-7.tar.gz (size="), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_only_narrow() {
    let (server, _config, _data) = start(&[]).await;
    let c = client();
    let login_scoped = |user: &'static str, roles: serde_json::Value| {
        let c = c.clone();
        let url = server.url("/api/stable/auth/login");
        async move {
            let body = json!({
                "username": user, "password": "admin",
                "operationsScope": { "elements": [{ "type": "collection", "name": "iwa-ait", "roles": roles }] },
            });
            let (status, body) =
                json(c.post(url).header("X-Forwarded-For", ADMIN_IP).json(&body).send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            body["data"]["token"].as_str().unwrap().to_owned()
        }
    };
    // The admin scoped to downloading: it may not upload.
    let downloader = login_scoped("admin", json!(["backupDownloader"])).await;
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let req = c.post(&url).bearer_auth(&downloader).header("X-Forwarded-For", ADMIN_IP).body(armored(1000, 1));
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    // A user without rights on iwa-ait cannot grant itself some with a scope.
    let escalated = login_scoped("unprivileged", json!(["collectionManager", "backupUploader", "systemAdmin"])).await;
    let (status, body) = json(c.post(&url).bearer_auth(&escalated).body(armored(1000, 1)).send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    let list = server.url("/api/stable/repository/collection/iwa-ait/version");
    let (status, body) = json(c.get(&list).bearer_auth(&escalated).send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");

    // A scoped token narrows the user's global roles too: the administrator may list and
    // revoke anyone's sessions, its scoped token may not.
    let full = login(&c, &server, "admin", "admin", Some(ADMIN_IP)).await;
    let victim = login(&c, &server, "some-user", "admin", None).await;
    let sessions = server.url("/api/stable/auth/token?userName=some-user");
    let (status, body) =
        json(c.get(&sessions).bearer_auth(&full).header("X-Forwarded-For", ADMIN_IP).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let victim_session = body["data"]["grantedAccesses"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) =
        json(c.get(&sessions).bearer_auth(&downloader).header("X-Forwarded-For", ADMIN_IP).send().await.unwrap()).await;
    assert_eq!(status, 403, "a scoped token lists another user's sessions: {body}");
    let revoke = server.url(&format!("/api/stable/auth/logout?sessionId={victim_session}"));
    let (status, body) =
        json(c.delete(&revoke).bearer_auth(&downloader).header("X-Forwarded-For", ADMIN_IP).send().await.unwrap())
            .await;
    assert_eq!(status, 403, "a scoped token revokes another user's session: {body}");
    let whoami = server.url("/api/stable/auth/whoami");
    assert_eq!(c.get(&whoami).bearer_auth(&victim).send().await.unwrap().status(), 200, "the session survived");

    // The scope may come as form fields too (its JSON in `operationsScope`), and Go's nil
    // slice (`"elements": null`) means no scope.
    let scope =
        json!({ "elements": [{ "type": "collection", "name": "iwa-ait", "roles": ["backupDownloader"] }] }).to_string();
    let form = [("username", "some-user"), ("password", "admin"), ("operationsScope", scope.as_str())];
    let (status, body) = json(c.post(server.url("/api/stable/auth/login")).form(&form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let form_scoped = body["data"]["token"].as_str().unwrap().to_owned();
    let (status, body) =
        json(c.post(&url).bearer_auth(&form_scoped).body(armored(1000, 2)).send().await.unwrap()).await;
    assert_eq!(status, 403, "the form's scope was applied: {body}");
    let form = [("username", "some-user"), ("password", "admin"), ("operationsScope", "{not json")];
    let (status, body) = json(c.post(server.url("/api/stable/auth/login")).form(&form).send().await.unwrap()).await;
    assert_eq!(status, 400, "a scope that does not parse is refused, not dropped: {body}");
    let body = json!({ "username": "some-user", "password": "admin", "operationsScope": { "elements": null } });
    let (status, body) = json(c.post(server.url("/api/stable/auth/login")).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

/// A collection whose only window opens half an hour from now, for a minute each hour.
fn closed_window_manifests(config: &std::path::Path) {
    let minute = (chrono::Utc::now().minute() + 30) % 60;
    add_manifest(
        config,
        "backups.riotkit.org/v1alpha1/backupcollections/nightly.yaml",
        &format!(
            r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: nightly
spec:
    description: Uploads only in its window
    filenameTemplate: nightly-${{version}}.tar.gz
    maxBackupsCount: 2
    maxOneVersionSize: 1M
    maxCollectionSize: 4M
    windows:
        - from: "{minute} * * * *"
          duration: 1m
    strategyName: fifo
    accessControl:
        - name: window-keeper
          type: user
          roles: ["backupUploader", "backupDownloader"]
        - name: anytime
          type: user
          roles: ["backupUploader", "uploadsAnytime"]
"#
        ),
    );
    for name in ["window-keeper", "anytime"] {
        support::add_user(config, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_windows_refuse_uploads_except_for_uploads_anytime() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    closed_window_manifests(config.path());
    let mut all = vec!["--upload-confirm-grace", "0s"];
    all.extend(NO_RATE_LIMITS);
    let server = Server::in_process(&args(config.path(), data.path(), &all)).await;
    let c = client();
    let keeper = login(&c, &server, "window-keeper", "admin", None).await;
    let anytime = login(&c, &server, "anytime", "admin", None).await;
    let (status, body) = upload(&c, &server, &keeper, "nightly", armored(2000, 1)).await;
    assert_eq!(status, 403, "outside the window: {body}");
    assert!(body["error"].as_str().unwrap().contains("window"), "{body}");
    let (status, body) = upload(&c, &server, &anytime, "nightly", armored(2000, 2)).await;
    assert_eq!(status, 200, "uploadsAnytime: {body}");
    // The window check is for uploads only: downloads work at any time.
    let r = download(&c, &server, &keeper, "nightly", "latest").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), armored(2000, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_rate_limited_with_a_json_reason() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let server = Server::in_process(&args(config.path(), data.path(), &["--rate-auth-limit", "3"])).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = c
            .post(server.url("/api/stable/auth/login"))
            .json(&json!({ "username": "unprivileged", "password": "wrong" }))
            .send()
            .await
            .unwrap();
        let retry_after = r.headers().get("retry-after").is_some();
        let (status, body) = json(r).await;
        assert_eq!(body["status"], json!(false), "{body}");
        if status == 429 {
            assert!(retry_after, "429 without Retry-After");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}
