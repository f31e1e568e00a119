//! Hostile input over real HTTP: every request here is refused with a 4xx and a JSON reason;
//! none causes a panic or a 5xx, and the server keeps serving.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::{
    NO_RATE_LIMITS, RawResponse, Server, add_manifest, args, armored, client, config_copy, eventually, json, login,
    raw, try_login,
};

/// Asserts a refusal: a 4xx (or exactly `status`), a JSON envelope with `status: false` and a
/// reason.
#[track_caller]
fn assert_refused(case: &str, status: u16, body: &Value, expected: Option<u16>) {
    assert!((400..500).contains(&status), "{case}: {status} {body}");
    if let Some(e) = expected {
        assert_eq!(status, e, "{case}: {body}");
    }
    assert_eq!(body["status"], json!(false), "{case}: {body}");
    let reason = body["error"].as_str().or_else(|| body["message"].as_str()).unwrap_or_default();
    assert!(!reason.is_empty(), "{case}: no reason in {body}");
}

async fn raw_case(server: &Server, case: &str, request: Vec<u8>, expected: Option<u16>) -> RawResponse {
    let r = raw(&server.addr(), &request).await.unwrap_or_else(|| panic!("{case}: no answer"));
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {r:?}"));
    assert_refused(case, r.status, &body, expected);
    r
}

fn get(path: &str, token: Option<&str>, extra_headers: &[u8]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n").into_bytes();
    if let Some(t) = token {
        r.extend_from_slice(format!("Authorization: Bearer {t}\r\n").as_bytes());
    }
    r.extend_from_slice(extra_headers);
    r.extend_from_slice(b"\r\n");
    r
}

fn post(path: &str, token: Option<&str>, extra_headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len())
        .into_bytes();
    if let Some(t) = token {
        r.extend_from_slice(format!("Authorization: Bearer {t}\r\n").as_bytes());
    }
    r.extend_from_slice(extra_headers);
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn start(config: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> Server {
    let mut all = vec!["--upload-confirm-grace", "0s", "--config-reload-interval", "0s"];
    all.extend(NO_RATE_LIMITS);
    all.extend(extra);
    Server::start(&args(config, data, &all))
}

/// The server answers and logged no panic.
async fn assert_still_healthy(server: &Server) {
    let (status, _) = json(client().get(server.url("/health")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_headers_and_bodies_are_refused_with_json() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let server = start(config.path(), data.path(), &["--health-check-key", "metrics-code"]);
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let t = Some(uploader.as_str());
    let version = "/api/alpha/repository/collection";
    let long_id = "a".repeat(5000);
    let path_cases: Vec<(&str, String, Option<u16>)> = vec![
        ("traversal in segments", format!("{version}/../../../../etc/passwd/version/latest"), Some(404)),
        ("encoded traversal", format!("{version}/..%2F..%2F..%2Fetc%2Fpasswd/version/latest"), Some(404)),
        ("dot-dot id", format!("{version}/%2e%2e/version/latest"), Some(404)),
        ("backslashes", format!("{version}/..%5C..%5Cwindows/version/1"), Some(404)),
        ("NUL in the id", format!("{version}/iwa%00ait/version/1"), Some(404)),
        ("upper case id", format!("{version}/IWA-AIT/version/1"), Some(404)),
        ("a 5000-byte id", format!("{version}/{long_id}/version/1"), Some(404)),
        ("invalid UTF-8 in the path", format!("{version}/%FF%FE/version/1"), Some(400)),
        ("negative version", format!("{version}/iwa-ait/version/-1"), Some(400)),
        ("bare v", format!("{version}/iwa-ait/version/v"), Some(400)),
        ("overflowing version", format!("{version}/iwa-ait/version/99999999999999999999999"), Some(400)),
        ("NUL in the version", format!("{version}/iwa-ait/version/latest%00"), Some(400)),
        ("unknown version", format!("{version}/iwa-ait/version/424242"), Some(404)),
        // Past what any catalog stores (2^63 and up): not there, not a 500.
        ("version 2^63", format!("{version}/iwa-ait/version/9223372036854775808"), Some(404)),
        ("version 10^19 - 1", format!("{version}/iwa-ait/version/9999999999999999999"), Some(404)),
        ("unknown route", "/api/stable/nothing-here".to_owned(), Some(404)),
        // Anonymous answers never tell whether a collection exists: an unknown one is refused
        // as one with a health code would be.
        ("health of an unknown collection", "/api/stable/repository/collection/made-up/health".to_owned(), Some(403)),
        ("bad query encoding", "/api/stable/auth/token?userName=%FF".to_owned(), None),
        ("a malformed query", "/api/stable/auth/logout?sessionId=%zz&&==".to_owned(), None),
    ];
    for (case, path, expected) in &path_cases {
        raw_case(&server, case, get(path, Some(&manager), b""), *expected).await;
    }
    for n in ["9223372036854775808", "9999999999999999999"] {
        let path = format!("/api/stable/repository/collection/iwa-ait/version/{n}");
        let delete = format!(
            "DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {manager}\r\n\r\n"
        );
        raw_case(&server, &format!("delete version {n}"), delete.into_bytes(), Some(404)).await;
        raw_case(
            &server,
            &format!("restore version {n}"),
            post(&format!("{path}/restore"), Some(&manager), b"", b""),
            Some(404),
        )
        .await;
    }

    let upload = format!("{version}/iwa-ait/version");
    let padding = |n: usize| format!("X-Padding: {}\r\n", "p".repeat(n)).into_bytes();
    let many: Vec<u8> = (0..150).flat_map(|i| format!("X-Many-{i}: 1\r\n").into_bytes()).collect();
    let header_cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("a 20 KiB header", get("/api/stable/auth/whoami", t, &padding(20 << 10)), Some(431)),
        ("a 300 KiB header", get("/api/stable/auth/whoami", t, &padding(300 << 10)), Some(431)),
        ("150 headers", get("/api/stable/auth/whoami", t, &many), Some(431)),
        (
            "invalid UTF-8 in the token",
            get("/api/stable/auth/whoami", None, b"Authorization: Bearer \xff\xfe\xfd\r\n"),
            Some(401),
        ),
        ("a token that is not a JWT", get("/api/stable/auth/whoami", Some("not.a.jwt"), b""), Some(401)),
        ("an empty bearer", get("/api/stable/auth/whoami", None, b"Authorization: Bearer \r\n"), Some(401)),
        ("basic auth", get("/api/stable/auth/whoami", None, b"Authorization: Basic YWRtaW46YWRtaW4=\r\n"), Some(401)),
        ("no token", get("/api/stable/auth/whoami", None, b""), Some(401)),
        ("a token in a broken cookie", get("/api/stable/auth/whoami", None, b"Cookie: jwt=\xff;;;=\r\n"), Some(401)),
        ("multipart without a boundary", post(&upload, t, b"Content-Type: multipart/form-data\r\n", b"xx"), Some(400)),
        (
            "multipart with garbage",
            post(&upload, t, b"Content-Type: multipart/form-data; boundary=zzz\r\n", b"--zzz\r\nnot a part\r\n"),
            Some(400),
        ),
        (
            "multipart without a file field",
            post(
                &upload,
                t,
                b"Content-Type: multipart/form-data; boundary=zzz\r\n",
                b"--zzz\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--zzz--\r\n",
            ),
            Some(400),
        ),
        (
            "truncated login JSON",
            post("/api/stable/auth/login", None, b"Content-Type: application/json\r\n", b"{\"username\":"),
            Some(400),
        ),
        (
            "invalid UTF-8 in login JSON",
            post(
                "/api/stable/auth/login",
                None,
                b"Content-Type: application/json\r\n",
                b"{\"username\":\"\xff\xfe\",\"password\":\"x\"}",
            ),
            Some(400),
        ),
        (
            "invalid UTF-8 in a login form",
            post(
                "/api/stable/auth/login",
                None,
                b"Content-Type: application/x-www-form-urlencoded\r\n",
                b"username=%FF%FE&password=x",
            ),
            None,
        ),
        (
            "a login body over 64 KiB",
            post("/api/stable/auth/login", None, b"Content-Type: application/json\r\n", &vec![b' '; 100 << 10]),
            None,
        ),
        (
            "a user name with a NUL",
            post(
                "/api/stable/auth/login",
                None,
                b"Content-Type: application/json\r\n",
                br#"{"username":"admin\u0000","password":"admin"}"#,
            ),
            Some(401),
        ),
        ("a wrong method", post("/api/stable/auth/whoami", t, b"", b""), Some(405)),
        ("not armored", post(&upload, t, b"", b"plain bytes"), Some(422)),
        ("an empty upload", post(&upload, t, b"", b""), None),
        (
            "an upload to a made-up collection",
            post(&format!("{version}/made-up-name/version"), t, b"", b"x"),
            Some(404),
        ),
    ];
    for (case, request, expected) in header_cases {
        raw_case(&server, case, request, expected).await;
    }

    // Bodies longer than the quota (1M a version, 5M extra): declared, and streamed.
    let url = server.url(&upload);
    let too_big = armored(7 << 20, 3);
    let (status, body) = json(c.post(&url).bearer_auth(&uploader).body(too_big.clone()).send().await.unwrap()).await;
    assert_refused("over the quota with Content-Length", status, &body, Some(413));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = too_big.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let streamed =
        c.post(&url).bearer_auth(&uploader).body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))).send();
    let (status, body) = json(streamed.await.expect("the refusal reaches the client")).await;
    assert_refused("over the quota, chunked", status, &body, Some(413));
    // A Content-Length that lies low: the body is cut at the declared length, which is
    // not an OpenPGP message.
    let mut lying = format!("POST {upload} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\nAuthorization: Bearer {uploader}\r\n\r\n").into_bytes();
    lying.extend_from_slice(&armored(10_000, 4));
    raw_case(&server, "a Content-Length lower than the body", lying, Some(422)).await;

    let (status, body) = json(
        c.get(server.url("/api/stable/repository/collection/iwa-ait/version"))
            .bearer_auth(&manager)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["versions"], json!([]), "nothing was committed by any of these");
    assert!(support::files_under(&data.path().join("blobs")).is_empty(), "no bytes left behind");
    // Refusals are counted, but made-up ids do not become metric labels.
    let metrics = c.get(server.url("/metrics?code=metrics-code")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("reason=\"not_found\""), "{metrics}");
    assert!(!metrics.contains("made-up-name"), "{metrics}");
    assert_still_healthy(&server).await;
}

/// The token's three parts, with the header and payload decoded.
fn token_parts(token: &str) -> (Value, Value, String) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, payload, parts.next().unwrap().to_owned())
}

fn encode(header: &Value, payload: &Value, signature: &str) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{signature}", part(header), part(payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_revoked_and_orphaned_tokens_are_refused() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let server = start(config.path(), data.path(), &[]);
    let c = client();
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let unprivileged = login(&c, &server, "unprivileged", "admin", None).await;
    let some_user = login(&c, &server, "some-user", "admin", None).await;
    let upload = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let whoami = server.url("/api/stable/auth/whoami");

    let refused = |case: &'static str, token: String, expected: u16| {
        let (c, whoami) = (c.clone(), whoami.clone());
        async move {
            let (status, body) = json(c.get(&whoami).bearer_auth(&token).send().await.unwrap()).await;
            assert_refused(case, status, &body, Some(expected));
        }
    };

    // Forgeries of a real token.
    let (header, payload, signature) = token_parts(&uploader);
    refused("alg none, no signature", encode(&json!({"alg": "none", "typ": "JWT"}), &payload, ""), 401).await;
    refused("alg none, the real signature", encode(&json!({"alg": "none", "typ": "JWT"}), &payload, &signature), 401)
        .await;
    refused("alg HS512", encode(&json!({"alg": "HS512", "typ": "JWT"}), &payload, &signature), 401).await;
    let mut escalated = payload.clone();
    escalated["sub"] = json!("admin");
    refused("another subject, the old signature", encode(&header, &escalated, &signature), 401).await;
    let mut longer = payload.clone();
    longer["exp"] = json!(4_102_444_800u64);
    refused("a later expiry, the old signature", encode(&header, &longer, &signature), 401).await;
    refused("a truncated signature", encode(&header, &payload, &signature[..10]), 401).await;

    // Signed with a foreign key: another server's token.
    let (other_config, other_data) = (config_copy(), tempfile::tempdir().unwrap());
    let mut other_args = args(other_config.path(), other_data.path(), &NO_RATE_LIMITS);
    let secret_at = other_args.iter().position(|a| a == "--jwt-secret-key").unwrap() + 1;
    other_args[secret_at] = "another server's secret, also long".into();
    let other = Server::start(&other_args);
    let foreign = login(&c, &other, "some-user$uploader", "test", None).await;
    refused("a foreign key", foreign, 401).await;

    // Expired: a server whose tokens live one second.
    let (short_config, short_data) = (config_copy(), tempfile::tempdir().unwrap());
    let short = start(short_config.path(), short_data.path(), &["--token-lifetime", "1s"]);
    let expiring = login(&c, &short, "unprivileged", "admin", None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) =
        json(c.get(short.url("/api/stable/auth/whoami")).bearer_auth(&expiring).send().await.unwrap()).await;
    assert_refused("expired", status, &body, Some(401));
    assert_eq!(body["message"], "Token is expired");

    // Revoked.
    let doomed = login(&c, &server, "unprivileged", "admin", None).await;
    let (status, _) =
        json(c.delete(server.url("/api/stable/auth/logout")).bearer_auth(&doomed).send().await.unwrap()).await;
    assert_eq!(status, 200);
    refused("revoked", doomed, 403).await;

    // Someone else's session: not revocable, not listable, not viewable by the unprivileged.
    let admin_session = {
        let (status, body) = json(c.get(&whoami).bearer_auth(&some_user).send().await.unwrap()).await;
        assert_eq!(status, 200);
        body["data"]["sessionId"].as_str().unwrap().to_owned()
    };
    let escalations = [
        (
            "revoke another's session",
            c.delete(server.url(&format!("/api/stable/auth/logout?sessionId={admin_session}"))),
            403,
        ),
        ("revoke a malformed session id", c.delete(server.url("/api/stable/auth/logout?sessionId=..%2F..%2Fx")), 404),
        ("list another's sessions", c.get(server.url("/api/stable/auth/token?userName=admin")), 403),
        ("view another's profile", c.get(server.url("/api/stable/auth/user/admin")), 403),
        ("delete a version", c.delete(server.url("/api/stable/repository/collection/iwa-ait/version/1")), 403),
        ("list versions", c.get(server.url("/api/stable/repository/collection/iwa-ait/version")), 403),
    ];
    for (case, request, expected) in escalations {
        let (status, body) = json(request.bearer_auth(&unprivileged).send().await.unwrap()).await;
        assert_refused(case, status, &body, Some(expected));
    }
    // The access key may upload, nothing else.
    let (status, body) = json(c.post(&upload).bearer_auth(&uploader).body(armored(500, 1)).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    for (case, request) in [
        ("key deletes", c.delete(server.url("/api/stable/repository/collection/iwa-ait/version/1"))),
        ("key restores", c.post(server.url("/api/stable/repository/collection/iwa-ait/version/1/restore"))),
        ("key downloads", c.get(server.url("/api/alpha/repository/collection/iwa-ait/version/1"))),
    ] {
        let (status, body) = json(request.bearer_auth(&uploader).send().await.unwrap()).await;
        assert_refused(case, status, &body, Some(403));
    }

    // Remove the access key and the unprivileged user from the manifests, reload (SIGHUP):
    // their tokens fail closed (backup-repository panicked on a deleted user's token).
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupusers/some-user.yaml",
        r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: some-user
spec:
    email: user@riseup.net
    passwordFromRef:
        name: backup-repository-passwords
        entry: admin
    roles:
        - collectionManager
"#,
    );
    std::fs::remove_file(
        config.path().join("backup-repository/backups.riotkit.org/v1alpha1/backupusers/unprivileged.yaml"),
    )
    .unwrap();
    let pid = server.child.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let reloaded = eventually(Duration::from_secs(10), || {
        let (c, whoami, token) = (c.clone(), whoami.clone(), unprivileged.clone());
        async move { (c.get(&whoami).bearer_auth(&token).send().await.unwrap().status() == 403).then_some(()) }
    })
    .await;
    assert!(reloaded.is_some(), "the reload did not take effect within 10 s:\n{}", server.log());
    refused("a deleted user", unprivileged, 403).await;
    refused("a removed access key", uploader.clone(), 403).await;
    let (status, body) = json(c.post(&upload).bearer_auth(&uploader).body(armored(500, 2)).send().await.unwrap()).await;
    assert_refused("a removed access key uploads", status, &body, Some(403));
    let (status, body) = try_login(&c, &server, "unprivileged", "admin", None).await;
    assert_refused("a deleted user logs in", status, &body, Some(401));
    // The user itself still works.
    let (status, _) = json(c.get(&whoami).bearer_auth(&some_user).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_still_healthy(&server).await;
    assert_still_healthy(&other).await;
    assert_still_healthy(&short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    // No --trusted-proxy: the loopback peer's header is a spoof.
    let server = start(config.path(), data.path(), &[]);
    let c = client();
    for spoof in ["1.2.3.4", "1.2.3.4, 127.0.0.1", "127.0.0.1, 1.2.3.4", "garbage, ;;; 1.2.3.4"] {
        let (status, body) = try_login(&c, &server, "admin", "admin", Some(spoof)).await;
        assert_refused(spoof, status, &body, Some(401));
    }
    // Trusting loopback: the rightmost untrusted address counts, so a client cannot prepend
    // the allowed one to what the proxy appends.
    let trusting_data = tempfile::tempdir().unwrap();
    let trusting = start(config.path(), trusting_data.path(), &["--trusted-proxy", "127.0.0.1/32"]);
    let (status, body) = try_login(&c, &trusting, "admin", "admin", Some("1.2.3.4, 6.6.6.6")).await;
    assert_refused("the allowed address prepended by the client", status, &body, Some(401));
    // The same with the client's forged line first and the proxy's own line after it.
    let r = c
        .post(trusting.url("/api/stable/auth/login"))
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X-Forwarded-For", "6.6.6.6")
        .json(&json!({"username": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_refused("a forged X-Forwarded-For line before the proxy's", status, &body, Some(401));
    login(&c, &trusting, "admin", "admin", Some("1.2.3.4")).await;
    // Each refusal above was the address's (a right password answered as a wrong one): the log
    // says so.
    assert!(server.log().contains("user admin may not log in from 127.0.0.1"), "{}", server.log());
    assert!(trusting.log().contains("user admin may not log in from 6.6.6.6"), "{}", trusting.log());
    assert_still_healthy(&server).await;
}
