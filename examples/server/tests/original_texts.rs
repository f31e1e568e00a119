//! backup-repository's response texts, route by route, as its source produces them
//! (riotkit-org/backup-repository at d1460461: `pkg/http/*.go`, `pkg/storage/*.go`,
//! `pkg/security/*.go`, `pkg/health/*.go`, and the gin-jwt and golang-jwt texts it passes
//! through), against the server as the binary serves it, over real HTTP. Each row is one text a
//! client can meet; the status is ours where the README documents the difference (refused
//! uploads are 4xx, not 500).
//!
//! Not here, because a client cannot meet them on this server: texts of its database, storage
//! and Kubernetes errors, its panics (empty 500s), and its lock table ("cannot upload to same
//! collection in parallel").

mod support;

use serde_json::Value;
use support::{NO_RATE_LIMITS, Server, add_manifest, args, armored, client, config_copy, json, login, try_login};

/// An address `admin` may log in from (its `restrictByIP`), through the trusted proxy.
const ADMIN_IP: &str = "1.2.3.4";

/// A collection whose only backup window (1 minute on the 1st of January) is closed.
const CLOSED: &str = "---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: closed
spec:
    filenameTemplate: closed-${version}.tar.gz
    maxBackupsCount: 2
    maxOneVersionSize: 1M
    maxCollectionSize: 2M
    windows:
        - from: \"0 0 1 1 *\"
          duration: 1m
    accessControl:
        - name: unprivileged
          type: user
          roles: [backupUploader]
";

/// One row: what was asked, what came back, what the original says.
struct Row {
    case: &'static str,
    status: u16,
    body: Value,
    want_status: u16,
    /// The envelope field (`error`, `message`, `data.msg`, …).
    field: &'static str,
    /// The original's exact text, or its start when `prefix`.
    text: String,
    prefix: bool,
}

fn field<'a>(body: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(body, |v, k| v.get(k)).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_a_client_can_meet_is_the_originals() {
    let config = config_copy();
    add_manifest(config.path(), "backups.riotkit.org/v1alpha1/backupcollections/closed.yaml", CLOSED);
    let data = tempfile::tempdir().unwrap();
    let mut extra = vec!["--trusted-proxy", "127.0.0.1", "--upload-confirm-grace", "0s", "--health-check-key", "k"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::in_process(&args(config.path(), data.path(), &extra)).await;
    let c = client();
    let url = |p: &str| server.url(p);
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let user = login(&c, &server, "some-user", "admin", None).await;
    let nobody = login(&c, &server, "unprivileged", "admin", None).await;
    let admin = login(&c, &server, "admin", "admin", Some(ADMIN_IP)).await;
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |case, (status, body): (u16, Value), want_status, field, text: &str| {
        rows.push(Row { case, status, body, want_status, field, text: text.to_owned(), prefix: false });
    };
    let whoami = url("/api/stable/auth/whoami");

    // The JWT middleware (gin-jwt, golang-jwt).
    row("no token", json(c.get(&whoami).send().await.unwrap()).await, 401, "message", "cookie token is empty");
    row(
        "a token without three segments",
        json(c.get(&whoami).bearer_auth("abc").send().await.unwrap()).await,
        401,
        "message",
        "token contains an invalid number of segments",
    );
    let parts: Vec<&str> = uploader.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], parts[1], "AAAA".repeat(10));
    row(
        "a bad signature",
        json(c.get(&whoami).bearer_auth(&tampered).send().await.unwrap()).await,
        401,
        "message",
        "signature is invalid",
    );
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let other_alg = format!("{}.{}.{}", b64(r#"{"alg":"HS512","typ":"JWT"}"#), parts[1], parts[2]);
    row(
        "another algorithm",
        json(c.get(&whoami).bearer_auth(&other_alg).send().await.unwrap()).await,
        401,
        "message",
        "invalid signing algorithm",
    );

    // Login, logout, users, tokens.
    let login_url = url("/api/stable/auth/login");
    let no_password = serde_json::json!({ "username": "some-user" });
    row(
        "login without a password",
        json(c.post(&login_url).json(&no_password).send().await.unwrap()).await,
        401,
        "message",
        "missing Username or Password",
    );
    row(
        "login with a wrong password",
        try_login(&c, &server, "some-user", "wrong", None).await,
        401,
        "message",
        "incorrect Username or Password",
    );
    row(
        "login",
        try_login(&c, &server, "some-user", "admin", None).await,
        200,
        "data.msg",
        "Use this sessionId to revoke this token anytime",
    );
    row(
        "another user's account",
        json(c.get(url("/api/stable/auth/user/admin")).bearer_auth(&nobody).send().await.unwrap()).await,
        403,
        "error",
        "no permissions to view that user account",
    );
    let admins_session = {
        let (_, body) =
            json(c.get(&whoami).bearer_auth(&admin).header("X-Forwarded-For", ADMIN_IP).send().await.unwrap()).await;
        body["data"]["sessionId"].as_str().unwrap().to_owned()
    };
    row(
        "revoking another user's session",
        json(
            c.delete(url(&format!("/api/stable/auth/logout?sessionId={admins_session}")))
                .bearer_auth(&nobody)
                .send()
                .await
                .unwrap(),
        )
        .await,
        403,
        "error",
        "you don't have permissions to revoke session of other user",
    );
    row(
        "revoking an unknown session",
        json(
            c.delete(url(&format!("/api/stable/auth/logout?sessionId={}", "0".repeat(64))))
                .bearer_auth(&admin)
                .header("X-Forwarded-For", ADMIN_IP)
                .send()
                .await
                .unwrap(),
        )
        .await,
        404,
        "error",
        "specified session identifier is not valid, cannot find GrantedAccess of specified id",
    );
    row(
        "another user's tokens",
        json(c.get(url("/api/stable/auth/token?userName=admin")).bearer_auth(&nobody).send().await.unwrap()).await,
        403,
        "error",
        "no permissions to act as other user",
    );
    let leaving = login(&c, &server, "unprivileged", "admin", None).await;
    row(
        "logout",
        json(c.delete(url("/api/stable/auth/logout")).bearer_auth(&leaving).send().await.unwrap()).await,
        200,
        "data.message",
        "JWT was revoked",
    );
    row(
        "a logged-out token",
        json(c.get(&whoami).bearer_auth(&leaving).send().await.unwrap()).await,
        403,
        "message",
        "you don't have permission to access this resource",
    );

    // Uploads (our statuses are 4xx where the original answered 500: see the README).
    let upload = |collection: &str| url(&format!("/api/alpha/repository/collection/{collection}/version"));
    let post = |u: String, token: &str, body: Vec<u8>| c.post(u).bearer_auth(token).body(body).send();
    row(
        "upload to an unknown collection",
        json(post(upload("nope"), &uploader, armored(100, 1)).await.unwrap()).await,
        404,
        "error",
        "cannot find specified collection",
    );
    row(
        "upload without the right",
        json(post(upload("iwa-ait"), &nobody, armored(100, 1)).await.unwrap()).await,
        403,
        "error",
        "not authorized to upload versions to this collection",
    );
    row(
        "upload outside the backup windows",
        json(post(upload("closed"), &nobody, armored(100, 1)).await.unwrap()).await,
        403,
        "error",
        "backup window does not allow you to send a backup at this time. You need a token that has a special permission 'uploadsAnytime'",
    );
    let streaming = "cannot upload version. cannot upload file, cannot copy stream, error: ";
    row(
        "upload of plain bytes",
        json(post(upload("iwa-ait"), &uploader, b"CREATE TABLE t ();".to_vec()).await.unwrap()).await,
        422,
        "error",
        &format!("{streaming}first chunk of uploaded data does not contain a valid GPG header"),
    );
    row(
        "upload of nothing",
        json(post(upload("iwa-ait"), &uploader, Vec::new()).await.unwrap()).await,
        422,
        "error",
        &format!("{streaming}first chunk of uploaded data does not contain a valid GPG header"),
    );
    let mut cut = armored(5000, 2);
    cut.truncate(4000);
    row(
        "upload without its end",
        json(post(upload("iwa-ait"), &uploader, cut).await.unwrap()).await,
        422,
        "error",
        &format!("{streaming}end of stream does not contain a valid GPG footer, suspecting a data corruption"),
    );
    let (status, body) = json(post(upload("iwa-ait"), &uploader, armored(7 << 20, 3)).await.unwrap()).await;
    rows.push(Row {
        case: "upload over the quota",
        status,
        body,
        want_status: 413,
        field: "error",
        text: format!("{streaming}filesize reached allowed limit. Uploaded "),
        prefix: true,
    });
    let mut row = |case, (status, body): (u16, Value), want_status, field, text: &str| {
        rows.push(Row { case, status, body, want_status, field, text: text.to_owned(), prefix: false });
    };

    // Downloads and listings.
    let version =
        |collection: &str, v: &str| url(&format!("/api/alpha/repository/collection/{collection}/version/{v}"));
    row(
        "download from an unknown collection",
        json(c.get(version("nope", "latest")).bearer_auth(&user).send().await.unwrap()).await,
        404,
        "error",
        "cannot find specified collection",
    );
    row(
        "download without the right",
        json(c.get(version("iwa-ait", "latest")).bearer_auth(&nobody).send().await.unwrap()).await,
        403,
        "error",
        "not authorized to download versions from this collection",
    );
    row(
        "download of a version that does not exist",
        json(c.get(version("iwa-ait", "77")).bearer_auth(&user).send().await.unwrap()).await,
        404,
        "error",
        "cannot find specified version",
    );
    let list = |collection: &str| url(&format!("/api/stable/repository/collection/{collection}/version"));
    row(
        "listing without the right",
        json(c.get(list("iwa-ait")).bearer_auth(&nobody).send().await.unwrap()).await,
        403,
        "error",
        "not authorized to list versions",
    );
    row(
        "listing an unknown collection",
        json(c.get(list("nope")).bearer_auth(&user).send().await.unwrap()).await,
        404,
        "error",
        "cannot find specified collection",
    );

    // Health.
    let health = url("/api/stable/repository/collection/iwa-ait/health");
    row(
        "collection health with a wrong code",
        json(c.get(format!("{health}?code=wrong")).send().await.unwrap()).await,
        403,
        "error",
        "not authorized - invalid value of 'code' parameter in query string",
    );
    let (status, body) = json(c.get(format!("{health}?code=admin")).send().await.unwrap()).await;
    for (i, name) in
        ["BackupWindowValidator", "VersionsSizeValidator", "SumOfVersionsValidator"].into_iter().enumerate()
    {
        let check = &body["data"]["health"][i];
        assert_eq!((check["name"].as_str(), check["message"].as_str()), (Some(name), Some("OK")), "{body}");
        assert_eq!(check["statusText"].as_str(), Some(format!("{name}=true").as_str()), "{body}");
    }
    assert_eq!(status, 200, "{body}");
    row(
        "server health",
        json(c.get(url("/health")).send().await.unwrap()).await,
        200,
        "data.msg",
        "The server is up and running. Dependent services are not shown there. Take a look at /ready endpoint",
    );
    row(
        "readiness with a wrong code",
        json(c.get(url("/ready?code=wrong")).send().await.unwrap()).await,
        403,
        "error",
        "health code invalid. Should be provided withing 'Authorization' header or 'code' query string. Must match --health-check-code commandline switch value",
    );

    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| {
            let got = field(&r.body, r.field);
            let same = got.is_some_and(|g| if r.prefix { g.starts_with(&r.text) } else { g == r.text });
            !same || r.status != r.want_status
        })
        .map(|r| format!("{}: want {} {} = {:?}, got {} {}", r.case, r.want_status, r.field, r.text, r.status, r.body))
        .collect();
    assert!(wrong.is_empty(), "{} of {} rows differ:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}
