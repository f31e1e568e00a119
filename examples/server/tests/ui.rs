//! The dashboard's handlers over `app(state)`: login, sessions, CSRF, permissions, escaping,
//! badges, and the line between dashboard cookies and API tokens.

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use backup_server::{AppState, RunningServer, app, spawn};
use tower::ServiceExt;

/// One answer, read whole (pages are small).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The value a `Set-Cookie` header gives `name`, if one does.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The value of the first `name="csrf" value="…"` of the page.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("the page has a form") + 19;
        self.body[at..].split('"').next().unwrap().to_owned()
    }
}

/// A request to the router, from a client on loopback (as a served router would see it).
async fn send(state: &AppState, method: Method, path: &str, cookie: Option<&str>, form: Option<&str>) -> Answer {
    send_with(state, method, path, cookie, form, &[]).await
}

async fn send_with(
    state: &AppState,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path).header(header::HOST, "127.0.0.1:8080");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let mut request = request.body(Body::from(form.unwrap_or_default().to_owned())).unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// The `name=value` part of a `Set-Cookie` line.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Logs in through the form; the session cookie as a `Cookie` header value.
async fn log_in(state: &AppState, user: &str, password: &str) -> String {
    let page = send(state, Method::GET, "/ui/login", None, None).await;
    let login_cookie = pair(&page.set_cookie("backup_ui_login").unwrap());
    let answer = send(
        state,
        Method::POST,
        "/ui/login",
        Some(&login_cookie),
        Some(&form(&[("username", user), ("password", password), ("csrf", &page.csrf())])),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), "/ui/");
    pair(&answer.set_cookie("backup_ui").expect("a session cookie"))
}

async fn server() -> RunningServer {
    spawn(support::dashboard_config()).await.unwrap()
}

/// An API token of `user`.
async fn api_token(state: &AppState, user: &str, password: &str) -> String {
    let mut request = Request::post("/api/stable/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({ "username": user, "password": password }).to_string()))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    body["data"]["token"].as_str().expect("an API token").to_owned()
}

/// Uploads `bytes` as the next version of `collection` through the API.
async fn upload(state: &AppState, token: &str, collection: &str, bytes: Vec<u8>) {
    let mut request = Request::post(format!("/api/alpha/repository/collection/{collection}/version"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(bytes))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_sets_a_strict_http_only_cookie_and_pages_carry_a_strict_policy() {
    let server = server().await;
    let state = &server.state;
    let anonymous = send(state, Method::GET, "/ui/", None, None).await;
    assert_eq!((anonymous.status, anonymous.location()), (StatusCode::SEE_OTHER, "/ui/login"));

    let page = send(state, Method::GET, "/ui/login", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "no script may run: {csp}");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let login_cookie = page.set_cookie("backup_ui_login").unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"), "{login_cookie}");

    let answer = send(
        state,
        Method::POST,
        "/ui/login",
        Some(&pair(&login_cookie)),
        Some(&form(&[("username", "alice"), ("password", "alicealice"), ("csrf", &page.csrf())])),
    )
    .await;
    let session = answer.set_cookie("backup_ui").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(session.contains(attribute), "{attribute} missing: {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: a Secure cookie would never come back: {session}");
    let overview = send(state, Method::GET, "/ui/", Some(&pair(&session)), None).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("alice"), "the page names the user");
    assert_eq!(overview.headers[header::CACHE_CONTROL], "no-store");
    server.shutdown().await;
}

/// Over TLS (here behind a trusted proxy) the cookies are `__Host-` cookies: `Secure`,
/// `Path=/`, no `Domain` (issue 24 §2.8). Each transport reads only its own names: over TLS a
/// plain `backup_ui` cookie (which anyone on the network could have planted over HTTP) opens
/// nothing, and over plain HTTP a `__Host-` one opens nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_tls_proxy_the_cookie_is_secure() {
    let mut config = support::dashboard_config();
    config.args_mut().trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let tls = [("x-forwarded-proto", "https")];
    let page = send_with(state, Method::GET, "/ui/login", None, None, &tls).await;
    assert!(page.set_cookie("backup_ui_login").is_none(), "no plain name over TLS");
    let login_cookie = page.set_cookie("__Host-backup_ui_login").unwrap();
    assert!(login_cookie.contains("Secure"), "{login_cookie}");
    for attribute in ["Secure", "Path=/;", "HttpOnly", "SameSite=Strict"] {
        assert!(format!("{login_cookie};").contains(attribute), "{attribute} missing: {login_cookie}");
    }
    assert!(!login_cookie.contains("Domain"), "{login_cookie}");
    // The plain login cookie does not carry the form over TLS.
    let fields = form(&[("username", "alice"), ("password", "alicealice"), ("csrf", &page.csrf())]);
    let plain = pair(&login_cookie).replace("__Host-", "");
    let refused = send_with(state, Method::POST, "/ui/login", Some(&plain), Some(&fields), &tls).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let answer = send_with(state, Method::POST, "/ui/login", Some(&pair(&login_cookie)), Some(&fields), &tls).await;
    assert!(answer.set_cookie("backup_ui").is_none(), "no plain name over TLS");
    let session = answer.set_cookie("__Host-backup_ui").unwrap();
    assert!(session.contains("Secure"));
    for attribute in ["Secure", "Path=/;", "HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(format!("{session};").contains(attribute), "{attribute} missing: {session}");
    }
    assert!(!session.contains("Domain"), "{session}");
    let cookie = pair(&session);
    let overview = send_with(state, Method::GET, "/ui/", Some(&cookie), None, &tls).await;
    assert_eq!(overview.status, StatusCode::OK, "the __Host- cookie opens the dashboard over TLS");
    // The same token under the other transport's name opens nothing.
    let plain = cookie.replace("__Host-", "");
    let over_tls = send_with(state, Method::GET, "/ui/", Some(&plain), None, &tls).await;
    assert_eq!((over_tls.status, over_tls.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    let over_http = send(state, Method::GET, "/ui/", Some(&cookie), None).await;
    assert_eq!((over_http.status, over_http.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    // Logging out drops the __Host- cookie.
    let csrf = overview.csrf();
    let out = send_with(state, Method::POST, "/ui/logout", Some(&cookie), Some(&form(&[("csrf", &csrf)])), &tls).await;
    let dropped = out.set_cookie("__Host-backup_ui").expect("the cookie is dropped");
    assert!(dropped.contains("Max-Age=0") && dropped.contains("Secure") && dropped.contains("Path=/"), "{dropped}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_without_its_form_token_or_with_a_wrong_password_opens_no_session() {
    let server = server().await;
    let state = &server.state;
    let page = send(state, Method::GET, "/ui/login", None, None).await;
    let login_cookie = pair(&page.set_cookie("backup_ui_login").unwrap());
    let good = [("username", "alice"), ("password", "alicealice")];
    // No token, a made-up token, a token without its cookie.
    for (cookie, csrf) in
        [(Some(login_cookie.as_str()), None), (Some(login_cookie.as_str()), Some("forged")), (None, Some("x"))]
    {
        let mut fields = good.to_vec();
        if let Some(c) = csrf {
            fields.push(("csrf", c));
        }
        let answer = send(state, Method::POST, "/ui/login", cookie, Some(&form(&fields))).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(answer.set_cookie("backup_ui").is_none());
    }
    let wrong = form(&[("username", "alice"), ("password", "wrong"), ("csrf", &page.csrf())]);
    let answer = send(state, Method::POST, "/ui/login", Some(&login_cookie), Some(&wrong)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("incorrect Username or Password"), "{}", answer.body);
    assert!(answer.set_cookie("backup_ui").is_none());
    // The name typed stays in the form, escaped.
    let hostile = form(&[("username", "<img src=x>"), ("password", "p"), ("csrf", &page.csrf())]);
    let answer = send(state, Method::POST, "/ui/login", Some(&login_cookie), Some(&hostile)).await;
    assert!(!answer.body.contains("<img src=x>") && answer.body.contains("&lt;img src=x&gt;"), "{}", answer.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_only_the_collections_open_to_them_and_markup_is_escaped() {
    let server = server().await;
    let state = &server.state;
    let alice = log_in(state, "alice", "alicealice").await;
    let overview = send(state, Method::GET, "/ui/", Some(&alice), None).await;
    assert!(overview.body.contains("data-collection=\"db\"") && overview.body.contains("data-collection=\"web\""));
    assert!(!overview.body.contains("data-collection=\"other\""), "bob's collection is not listed");
    assert!(!overview.body.contains("<script>alert(1)</script>") && !overview.body.contains("<b>database</b>"));
    assert!(overview.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the description is shown, escaped");
    // `web` missed its window: failing, and the chip says which check.
    let web = overview.body.split("data-collection=\"web\"").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(web.contains("badge fail") && web.contains("class=\"fail\" title=\"previous backup was not executed"));
    let db = overview.body.split("data-collection=\"db\"").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(db.contains("badge ok"), "{db}");

    // Another user's collection and one that does not exist answer alike.
    let other = send(state, Method::GET, "/ui/collections/other", Some(&alice), None).await;
    let none = send(state, Method::GET, "/ui/collections/nothing", Some(&alice), None).await;
    assert_eq!((other.status, none.status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(other.body.replace("other", "X"), none.body.replace("nothing", "X"));
    let bob_token = api_token(state, "bob", "bobbob").await;
    upload(state, &bob_token, "other", b"bob's secret".to_vec()).await;
    let download = send(state, Method::GET, "/ui/collections/other/versions/1/download", Some(&alice), None).await;
    assert_eq!(download.status, StatusCode::NOT_FOUND);
    assert!(!download.body.contains("bob's secret"));
    // Markup in an address is text.
    let hostile = send(state, Method::GET, "/ui/collections/%3Cscript%3E", Some(&alice), None).await;
    assert_eq!(hostile.status, StatusCode::NOT_FOUND);
    assert!(!hostile.body.contains("<script>"), "{}", hostile.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_this_sessions_token_or_from_another_site_change_nothing() {
    let server = server().await;
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "db", b"version one".to_vec()).await;
    let alice = log_in(state, "alice", "alicealice").await;
    let alice_again = log_in(state, "alice", "alicealice").await;
    let page = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    assert!(page.body.contains("/ui/collections/db/versions/1/delete"), "the delete button is shown");
    let own = page.csrf();
    let foreign = send(state, Method::GET, "/ui/collections/db", Some(&alice_again), None).await.csrf();
    assert_ne!(own, foreign, "each session has its own form token");
    let delete = "/ui/collections/db/versions/1/delete";
    for fields in [form(&[]), form(&[("csrf", "")]), form(&[("csrf", &foreign)])] {
        let answer = send(state, Method::POST, delete, Some(&alice), Some(&fields)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{fields}");
    }
    // This page's token with a cookie from another session (of the same user, even).
    let own_form = form(&[("csrf", &own)]);
    let answer = send(state, Method::POST, delete, Some(&alice_again), Some(&own_form)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "a cookie from another session");
    // The right token from another site's page.
    for header in [("sec-fetch-site", "cross-site"), ("origin", "http://evil.example")] {
        let answer = send_with(state, Method::POST, delete, Some(&alice), Some(&own_form), &[header]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{header:?}");
    }
    let still = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    assert!(still.body.contains("data-version=\"1\" data-state=\"committed\""), "nothing was deleted");

    let answer = send_with(
        state,
        Method::POST,
        delete,
        Some(&alice),
        Some(&own_form),
        &[("sec-fetch-site", "same-origin"), ("origin", "http://127.0.0.1:8080")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.location()),
        (StatusCode::SEE_OTHER, "/ui/collections/db?done=deleted&version=1")
    );
    let after = send(state, Method::GET, answer.location(), Some(&alice), None).await;
    assert!(after.body.contains("data-version=\"1\" data-state=\"trashed\""));
    assert!(after.body.contains("Version 1 was deleted"));
    let restore =
        send(state, Method::POST, "/ui/collections/db/versions/1/restore", Some(&alice), Some(&own_form)).await;
    assert_eq!(restore.status, StatusCode::SEE_OTHER);
    let back = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    assert!(back.body.contains("data-version=\"1\" data-state=\"committed\""));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_or_revoked_session_is_refused_everywhere() {
    let server = server().await;
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "db", b"keep me".to_vec()).await;
    let alice = log_in(state, "alice", "alicealice").await;
    let page = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    let csrf = page.csrf();
    let out = send(state, Method::POST, "/ui/logout", Some(&alice), Some(&form(&[("csrf", &csrf)]))).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/ui/login?ended=1"));
    assert!(out.set_cookie("backup_ui").unwrap().contains("Max-Age=0"), "the cookie is dropped");

    // The old cookie, kept by someone: pages send to the login, actions are refused.
    let again = send(state, Method::GET, "/ui/", Some(&alice), None).await;
    assert_eq!((again.status, again.location()), (StatusCode::SEE_OTHER, "/ui/login?ended=1"));
    let download = send(state, Method::GET, "/ui/collections/db/versions/1/download", Some(&alice), None).await;
    assert_eq!(download.status, StatusCode::SEE_OTHER);
    let delete = send(
        state,
        Method::POST,
        "/ui/collections/db/versions/1/delete",
        Some(&alice),
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    let still =
        send(state, Method::GET, "/ui/collections/db", Some(&log_in(state, "alice", "alicealice").await), None).await;
    assert!(still.body.contains("data-version=\"1\" data-state=\"committed\""));

    // A session is listed and revoked through the API like any token.
    let bob = log_in(state, "bob", "bobbob").await;
    let bob_token = api_token(state, "bob", "bobbob").await;
    let mut request = Request::get("/api/stable/auth/token")
        .header(header::AUTHORIZATION, format!("Bearer {bob_token}"))
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let sessions: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(app(state.clone()).oneshot(request).await.unwrap().into_body(), 1 << 20).await.unwrap(),
    )
    .unwrap();
    let dashboard = sessions["data"]["grantedAccesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["description"] == "Dashboard")
        .expect("the dashboard session is registered")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut request = Request::delete(format!("/api/stable/auth/logout?sessionId={dashboard}"))
        .header(header::AUTHORIZATION, format!("Bearer {bob_token}"))
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    assert_eq!(app(state.clone()).oneshot(request).await.unwrap().status(), StatusCode::OK);
    let revoked = send(state, Method::GET, "/ui/", Some(&bob), None).await;
    assert_eq!(revoked.location(), "/ui/login?ended=1");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_cookies_and_api_tokens_each_work_only_where_they_belong() {
    let server = server().await;
    let state = &server.state;
    let cookie = log_in(state, "alice", "alicealice").await;
    let session_token = cookie.strip_prefix("backup_ui=").unwrap();
    // The dashboard's token is no API token: not as a bearer, not in the API's own cookie.
    for (name, value) in
        [("authorization", format!("Bearer {session_token}")), ("cookie", format!("jwt={session_token}"))]
    {
        let answer =
            send_with(state, Method::GET, "/api/stable/repository/collection", None, None, &[(name, &value)]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}: {}", answer.body);
        assert!(answer.body.contains("not an API token"), "{}", answer.body);
    }
    // The dashboard cookie is not read by the API at all.
    let answer = send(state, Method::GET, "/api/stable/repository/collection", Some(&cookie), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // An API token in the dashboard's cookie opens no page.
    let api = api_token(state, "alice", "alicealice").await;
    let answer = send(state, Method::GET, "/ui/", Some(&format!("backup_ui={api}")), None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_tell_health_and_nothing_else() {
    let server = server().await;
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "db", b"a backup".to_vec()).await;
    let db = send(state, Method::GET, "/ui/badge/db.svg", None, None).await;
    assert_eq!(db.status, StatusCode::OK);
    assert_eq!(db.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(db.body.contains("backup: healthy"), "{}", db.body);
    let web = send(state, Method::GET, "/ui/badge/web.svg", None, None).await;
    assert!(web.body.contains("backup: failing"));
    // Unknown collections, ids that are no ids, and other paths: the same unknown badge.
    let unknown = send(state, Method::GET, "/ui/badge/nothing.svg", None, None).await;
    assert!(unknown.body.contains("backup: unknown"));
    for path in ["/ui/badge/..%2Fetc.svg", "/ui/badge/db.png", "/ui/badge/%3Cb%3E.svg"] {
        let answer = send(state, Method::GET, path, None, None).await;
        assert_eq!((answer.status, &answer.body), (StatusCode::OK, &unknown.body), "{path}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_behind_a_health_code_needs_the_code_or_a_session_that_may_read_it() {
    use backup_policy::manifest::DocumentKind;
    let config = support::dashboard_config()
        .manifest(
            DocumentKind::Secret,
            "codes",
            "apiVersion: v1\nkind: Secret\nmetadata:\n    name: codes\ntype: Opaque\ndata:\n    vault: \"8c198a645237d0e4f01b5597eca3898ee155d1b48021eaff590ad5eca38542f3\"\n",
        )
        .manifest(
            DocumentKind::Collection,
            "vault",
            "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: vault\nspec:\n    \
             filenameTemplate: vault-${version}\n    maxBackupsCount: 2\n    maxOneVersionSize: 1M\n    \
             maxCollectionSize: 2M\n    strategyName: fifo\n    contentRule: none\n    healthSecretRef:\n        \
             name: codes\n        entry: vault\n    accessControl:\n        - name: alice\n          type: user\n          \
             roles: [collectionManager]\n",
        );
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let unknown = send(state, Method::GET, "/ui/badge/nothing.svg", None, None).await.body;
    let anonymous = send(state, Method::GET, "/ui/badge/vault.svg", None, None).await;
    let wrong = send(state, Method::GET, "/ui/badge/vault.svg?code=guess", None, None).await;
    assert_eq!((&anonymous.body, &wrong.body), (&unknown, &unknown), "no answer tells that vault exists");
    let right = send(state, Method::GET, "/ui/badge/vault.svg?code=secret-code", None, None).await;
    assert!(right.body.contains("backup: healthy"), "{}", right.body);
    assert_eq!(right.headers[header::CACHE_CONTROL], "no-cache");
    let alice = log_in(state, "alice", "alicealice").await;
    let by_session = send(state, Method::GET, "/ui/badge/vault.svg", Some(&alice), None).await;
    assert!(by_session.body.contains("backup: healthy"));
    assert_eq!(by_session.headers[header::CACHE_CONTROL], "private, no-store", "no shared cache keeps it");
    let bob = log_in(state, "bob", "bobbob").await;
    assert_eq!(send(state, Method::GET, "/ui/badge/vault.svg", Some(&bob), None).await.body, unknown);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collection_page_shows_versions_retention_and_a_chart() {
    let server = server().await;
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    for i in 1..=6u8 {
        upload(state, &token, "db", vec![i; 1000 * usize::from(i)]).await;
    }
    let alice = log_in(state, "alice", "alicealice").await;
    let page = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    assert_eq!(page.status, StatusCode::OK);
    // Five kept (maxBackupsCount), the first rotated into the trash and restorable.
    for n in 2..=6 {
        assert!(page.body.contains(&format!("data-version=\"{n}\" data-state=\"committed\"")), "version {n}");
    }
    assert!(page.body.contains("data-version=\"1\" data-state=\"trashed\""));
    assert!(page.body.contains("/ui/collections/db/versions/1/restore"));
    assert!(page.body.contains("db-6.sql.gz") && page.body.contains("5.9 KiB"));
    // The retention preview: the next commit removes the oldest kept version.
    let row2 = page.body.split("data-version=\"2\"").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row2.contains("class=\"evict\""), "{row2}");
    // The chart: one point per kept version, with a tooltip.
    let chart = page.body.split("<svg class=\"chart\"").nth(1).unwrap().split("</svg>").next().unwrap();
    assert_eq!(chart.matches("<circle").count(), 5);
    assert!(chart.contains("<title>version 6: 5.9 KiB"));
    // Its recent activity, newest first: the commits and the rotation's eviction.
    let activity = page.body.split("<h2>Recent activity</h2>").nth(1).expect("a manager sees the activity");
    // Version 6's commit first; its eviction of version 1 was recorded in the same step, just
    // before it.
    let commit6 = activity.find("6000 bytes").expect("version 6's commit");
    let evict1 = activity.find("rotated out by version 6").expect("the eviction");
    let commit5 = activity.find("5000 bytes").expect("version 5's commit");
    assert!(commit6 < evict1 && evict1 < commit5, "{activity}");
    // The stylesheet it links is served, cacheable.
    let css_path = page.body.split("rel=\"stylesheet\" href=\"").nth(1).unwrap().split('"').next().unwrap();
    let css = send(state, Method::GET, css_path, None, None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_shares_the_api_logins_rate_limit() {
    let mut config = support::dashboard_config();
    config.args_mut().rate_auth_limit = 3;
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let page = send(state, Method::GET, "/ui/login", None, None).await;
    let login_cookie = pair(&page.set_cookie("backup_ui_login").unwrap());
    let wrong = form(&[("username", "alice"), ("password", "guess"), ("csrf", &page.csrf())]);
    // One API login and two form logins use up this address's three per minute.
    api_token(state, "alice", "alicealice").await;
    for _ in 0..2 {
        let answer = send(state, Method::POST, "/ui/login", Some(&login_cookie), Some(&wrong)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.headers["x-ratelimit-limit"], "3", "the API's rate headers");
    }
    let right = form(&[("username", "alice"), ("password", "alicealice"), ("csrf", &page.csrf())]);
    let limited = send(state, Method::POST, "/ui/login", Some(&login_cookie), Some(&right)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.body);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert!(limited.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "a page, not JSON");
    assert!(limited.set_cookie("backup_ui").is_none());
    server.shutdown().await;
}

/// A session registry that cannot answer (its table gone for a moment, on a real PostgreSQL)
/// neither lets anyone in nor logs the browser out: pages answer 503 and keep the cookie, and
/// the same cookie works once the registry is back.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_keeps_the_session_and_lets_no_one_in() {
    let test = "a_registry_outage_keeps_the_session_and_lets_no_one_in";
    let Some(database) = support::database_url(test) else { return };
    let schema = support::fresh_schema("ui_outage");
    let mut config = support::dashboard_config();
    config.args_mut().catalog_url =
        Some(format!("{database}{}schema={schema}", if database.contains('?') { '&' } else { '?' }));
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let alice = log_in(state, "alice", "alicealice").await;
    let (db, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    db.batch_execute(&format!("ALTER TABLE \"{schema}\".sessions RENAME TO sessions_away")).await.unwrap();
    let during = send(state, Method::GET, "/ui/", Some(&alice), None).await;
    let stranger = send(state, Method::GET, "/ui/", Some("backup_ui=not.a.token"), None).await;
    db.batch_execute(&format!("ALTER TABLE \"{schema}\".sessions_away RENAME TO sessions")).await.unwrap();
    assert_eq!(during.status, StatusCode::SERVICE_UNAVAILABLE, "{}", during.body);
    assert!(during.set_cookie("backup_ui").is_none(), "the cookie is kept");
    assert_eq!(stranger.status, StatusCode::SEE_OTHER, "a token that fails its signature needs no registry");
    let after = send(state, Method::GET, "/ui/", Some(&alice), None).await;
    assert_eq!(after.status, StatusCode::OK);
    server.shutdown().await;
    db.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_key_logs_in_and_sees_only_the_buttons_its_roles_allow() {
    let config =
        support::dashboard_config().access_key("alice", "reader", "readerreader", &[("db", &["backupDownloader"])]);
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "db", b"downloadable".to_vec()).await;
    let key = log_in(state, "alice$reader", "readerreader").await;
    let overview = send(state, Method::GET, "/ui/", Some(&key), None).await;
    assert!(overview.body.contains("alice") && overview.body.contains("(key reader)"), "the header names the key");
    assert!(overview.body.contains("data-collection=\"db\""));
    assert!(!overview.body.contains("data-collection=\"web\""), "the key's access is db only");
    assert!(overview.body.contains("12 B, 0% of the 1.0 MiB soft limit"), "the last upload against the soft limit");
    let page = send(state, Method::GET, "/ui/collections/db", Some(&key), None).await;
    assert!(page.body.contains("/ui/collections/db/versions/1/download"), "a downloader downloads");
    assert!(!page.body.contains("/versions/1/delete"), "but sees no delete button");
    let download = send(state, Method::GET, "/ui/collections/db/versions/1/download", Some(&key), None).await;
    assert_eq!((download.status, download.body.as_str()), (StatusCode::OK, "downloadable"));
    // A forged delete is refused by the engine, as through the API.
    let refused = send(
        state,
        Method::POST,
        "/ui/collections/db/versions/1/delete",
        Some(&key),
        Some(&form(&[("csrf", &page.csrf())])),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let still = send(state, Method::GET, "/ui/collections/db", Some(&key), None).await;
    assert!(still.body.contains("data-version=\"1\" data-state=\"committed\""));
    server.shutdown().await;
}

/// A user manifest of `name` with alice's password (from [`ALICES_PASSWORD`]) and `extra`
/// lines in its spec.
fn user_manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nmetadata:\n    name: {name}\nspec:\n    \
         email: {name}@localhost\n    passwordFromRef:\n        name: {ALICES_PASSWORD}\n        entry: alice\n    \
         roles: []\n{extra}    accessKeys:\n        - name: ci\n          passwordFromRef:\n              \
         name: {ALICES_PASSWORD}\n              entry: alice\n          objects: []\n"
    )
}

/// The secret [`user_manifest`] takes alice's password from.
const ALICES_PASSWORD: &str = "alices-password";

/// The [`ALICES_PASSWORD`] secret.
fn alices_password() -> String {
    let stored = backup_policy::StoredPassword::hash(b"alicealice").unwrap().to_backup_repository_form().unwrap();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n    name: {ALICES_PASSWORD}\ntype: Opaque\ndata:\n    alice: \"{stored}\"\n"
    )
}

/// An API login from loopback: its status and body.
async fn api_login(state: &AppState, user: &str, password: &str) -> (StatusCode, String) {
    let mut request = Request::post("/api/stable/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({ "username": user, "password": password }).to_string()))
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A dashboard login from loopback: its status and page (the form's fresh token blanked),
/// and whether it set a session cookie.
async fn form_login(state: &AppState, user: &str, password: &str) -> (StatusCode, String, bool) {
    let page = send(state, Method::GET, "/ui/login", None, None).await;
    let login_cookie = pair(&page.set_cookie("backup_ui_login").unwrap());
    let fields = form(&[("username", user), ("password", password), ("csrf", &page.csrf())]);
    let answer = send(state, Method::POST, "/ui/login", Some(&login_cookie), Some(&fields)).await;
    let session = answer.set_cookie("backup_ui").is_some();
    let body = if answer.body.contains("name=\"csrf\"") {
        answer.body.replace(&answer.csrf(), "TOKEN")
    } else {
        answer.body.clone()
    };
    (answer.status, body, session)
}

/// Issue 24 §2.2: the API's and the dashboard's logins answer a right password as a wrong one
/// when the login is refused anyway (an address outside the user's `restrictByIP`, a
/// deactivated user, their access keys); the audit log has the real reason for users of the
/// manifests, and nothing for names nobody configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_answers_alike_for_a_right_and_a_wrong_password() {
    use backup_policy::manifest::DocumentKind;
    let config = support::dashboard_config()
        .manifest(DocumentKind::Secret, ALICES_PASSWORD, alices_password())
        .manifest(DocumentKind::User, "carol", user_manifest("carol", "    restrictByIP: [\"10.0.0.0/8\"]\n"))
        .manifest(DocumentKind::User, "dave", user_manifest("dave", "    deactivated: true\n"));
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let (wrong_status, wrong_body) = api_login(state, "nobody-at-all", "alicealice").await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert!(wrong_body.contains("incorrect Username or Password"), "{wrong_body}");
    for login in ["carol", "carol$ci", "dave", "dave$ci"] {
        let right = api_login(state, login, "alicealice").await;
        let wrong = api_login(state, login, "a guess").await;
        assert_eq!(right, wrong, "API, {login}: the right password answered apart from a wrong one");
        assert_eq!(right, (wrong_status, wrong_body.clone()), "API, {login}: as an unknown name");
        let right = form_login(state, login, "alicealice").await;
        let wrong = form_login(state, login, "a guess").await;
        assert!(!right.2, "dashboard, {login}: no session");
        assert_eq!((right.0, right.2), (wrong.0, wrong.2), "dashboard, {login}");
        assert_eq!(right.1, wrong.1, "dashboard, {login}");
        assert!(right.1.contains("incorrect Username or Password"), "{}", right.1);
    }
    // The audit log has why, for the configured users only.
    let refusals = support::eventually(std::time::Duration::from_secs(10), || async {
        let events = state.engine().catalog().list_audit(None, 1000).await.unwrap();
        let refusals: Vec<(String, String)> =
            events.into_iter().filter(|e| e.action == "auth.login_refused").map(|e| (e.actor, e.detail)).collect();
        (refusals.len() >= 16).then_some(refusals)
    })
    .await
    .expect("every refusal of carol and dave is audited");
    assert!(refusals.iter().all(|(actor, _)| actor == "carol" || actor == "dave"), "{refusals:?}");
    let with = |actor: &str, text: &str| refusals.iter().filter(|(a, d)| a == actor && d.contains(text)).count();
    assert_eq!(with("carol", "user carol may not log in from 127.0.0.1"), 4, "{refusals:?}");
    assert_eq!(with("carol", "access key ci"), 4, "{refusals:?}");
    assert_eq!(with("dave", "user dave is deactivated"), 4, "{refusals:?}");
    assert_eq!(with("dave", "incorrect Username or Password"), 4, "{refusals:?}");
    server.shutdown().await;
}

/// Issue 24 §2.5: the dashboard's download, delete and restore answer a collection the user
/// may not see exactly as one that does not exist, as its page does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_a_hidden_collection_answer_as_on_a_missing_one() {
    let server = server().await;
    let state = &server.state;
    let bob_token = api_token(state, "bob", "bobbob").await;
    upload(state, &bob_token, "other", b"bob's secret".to_vec()).await;
    upload(state, &bob_token, "other", b"bob's second".to_vec()).await;
    let bob = log_in(state, "bob", "bobbob").await;
    let bobs_csrf = send(state, Method::GET, "/ui/collections/other", Some(&bob), None).await.csrf();
    let deleted = send(
        state,
        Method::POST,
        "/ui/collections/other/versions/2/delete",
        Some(&bob),
        Some(&form(&[("csrf", &bobs_csrf)])),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "version 2 is in the trash, restorable");
    let alice = log_in(state, "alice", "alicealice").await;
    let csrf = send(state, Method::GET, "/ui/", Some(&alice), None).await.csrf();
    let page = |collection: &str| format!("/ui/collections/{collection}");
    let actions: [(&str, Method, &str); 3] = [
        ("download", Method::GET, "1/download"),
        ("delete", Method::POST, "1/delete"),
        ("restore", Method::POST, "2/restore"),
    ];
    let hidden_page = send(state, Method::GET, &page("other"), Some(&alice), None).await;
    for (what, method, tail) in actions {
        let fields = (method == Method::POST).then(|| form(&[("csrf", &csrf)]));
        let hidden =
            send(state, method.clone(), &format!("{}/versions/{tail}", page("other")), Some(&alice), fields.as_deref())
                .await;
        let missing =
            send(state, method, &format!("{}/versions/{tail}", page("nothing")), Some(&alice), fields.as_deref()).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{what}: {}", hidden.body);
        assert_eq!((hidden.status, &hidden.body), (missing.status, &missing.body), "{what}: the same answer");
        assert_eq!(hidden.body, hidden_page.body, "{what}: the page's answer");
        assert!(!hidden.body.contains("bob's") && !hidden.body.contains("\"other\""), "{what}: {}", hidden.body);
    }
    // Nothing changed in bob's collection.
    let still = send(state, Method::GET, &page("other"), Some(&bob), None).await;
    assert!(still.body.contains("data-version=\"1\" data-state=\"committed\""));
    assert!(still.body.contains("data-version=\"2\" data-state=\"trashed\""));
    server.shutdown().await;
}

/// Issue 24 §2.8: a download from the dashboard carries the pages' security headers: never
/// stored, never sniffed, never loaded by another site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_downloads_carry_the_pages_security_headers() {
    let server = server().await;
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "db", b"a dump".to_vec()).await;
    let alice = log_in(state, "alice", "alicealice").await;
    let download = send(state, Method::GET, "/ui/collections/db/versions/1/download", Some(&alice), None).await;
    assert_eq!((download.status, download.body.as_str()), (StatusCode::OK, "a dump"));
    assert_eq!(download.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(download.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(download.headers["cross-origin-resource-policy"], "same-origin");
    assert!(download.headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    let page = send(state, Method::GET, "/ui/collections/db", Some(&alice), None).await;
    for name in ["cache-control", "x-content-type-options", "cross-origin-resource-policy", "referrer-policy"] {
        assert_eq!(download.headers.get(name), page.headers.get(name), "{name} as on the pages");
    }
    server.shutdown().await;
}

/// A locked collection's page shows its lock policy and each version's lock, and offers no
/// delete button for a locked version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_versions_are_shown_locked_and_offer_no_deletion() {
    let lock = backup_core::LockPolicy::new(backup_core::LockMode::Compliance, chrono::Duration::days(30));
    let config = support::dashboard_config()
        .collection("vault", 3, "1M", "3M", &[("alice", &["collectionManager"])])
        .lock("vault", lock);
    let server = spawn(config).await.unwrap();
    let state = &server.state;
    let token = api_token(state, "alice", "alicealice").await;
    upload(state, &token, "vault", b"keep me".to_vec()).await;
    let alice = log_in(state, "alice", "alicealice").await;
    let page = send(state, Method::GET, "/ui/collections/vault", Some(&alice), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("compliance lock"), "the policy is shown: {}", page.body);
    assert!(page.body.contains("locked (compliance) until"), "the version's lock is shown: {}", page.body);
    assert!(!page.body.contains("/ui/collections/vault/versions/1/delete"), "no delete button for a locked version");
}
