//! `/api/openapi.json` describes every body: real requests and answers of every route, and
//! their refusals, are validated against the schemas it serves (JSON Schema 2020-12, as
//! OpenAPI 3.1 uses). Through the router (`oneshot`): nothing here needs a socket.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, header};
use backup_server::ServerConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

/// `request` through `app`: its status, headers and body.
async fn send(app: &axum::Router, request: Request<Body>) -> (u16, HeaderMap, bytes::Bytes) {
    let r = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap())
}

/// A request, with a bearer token when given.
fn request(method: Method, path: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    r.body(body).unwrap()
}

/// The schema the document gives for `method path` answering `status` (`200`, `4XX`, `5XX`),
/// or for its request body with `status` `request`.
fn schema_of(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "no {method} {path} in the document");
    let content = if status == "request" { &op["requestBody"]["content"] } else { &op["responses"][status]["content"] };
    let schema = content["application/json"]["schema"].clone();
    assert!(schema.is_object(), "no JSON schema for {method} {path} {status}: {content}");
    // The components travel with it, so that its references resolve.
    json!({ "allOf": [schema], "components": doc["components"] })
}

fn check(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let class = match status {
        200 => "200".to_owned(),
        400..=499 => "4XX".to_owned(),
        _ => "5XX".to_owned(),
    };
    let schema = schema_of(doc, path, method, &class);
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{method} {path}: bad schema: {e}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} {status}: {body}\ndoes not match its schema:\n{}", errors.join("\n"));
}

fn check_request(doc: &Value, path: &str, method: &str, body: &Value) {
    let validator = jsonschema::validator_for(&schema_of(doc, path, method, "request")).unwrap();
    assert!(validator.is_valid(body), "{method} {path}: the request {body} does not match its schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_served_schemas() {
    let mut config = ServerConfig::for_tests()
        .user("admin", "a password", &["systemAdmin", "collectionManager"])
        .collection("db", 3, "1M", "5M", &[("admin", &["collectionManager"])]);
    config.args_mut().trash_retention = std::time::Duration::from_secs(3600);
    let app = backup_server::router(&config).await.unwrap();
    let (_, _, doc) = send(&app, request(Method::GET, "/api/openapi.json", None, Body::empty())).await;
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    let call = |method: Method, path: String, token: Option<String>, body: Option<Value>| {
        let mut r = request(
            method,
            &path,
            token.as_deref(),
            Body::from(body.as_ref().map(Value::to_string).unwrap_or_default()),
        );
        if body.is_some() {
            r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        }
        let app = &app;
        async move {
            let (status, _, bytes) = send(app, r).await;
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let mut checked = 0;
    let mut expect = |template: &str, method: &str, (status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{method} {template}: {body}");
        check(&doc, template, method, status, &body);
        checked += 1;
        body
    };

    let login = json!({ "username": "admin", "password": "a password" });
    check_request(&doc, "/api/stable/auth/login", "post", &login);
    let body = expect(
        "/api/stable/auth/login",
        "post",
        call(Method::POST, "/api/stable/auth/login".into(), None, Some(login)).await,
        200,
    );
    let token = Some(body["data"]["token"].as_str().unwrap().to_owned());
    let t = || token.clone();
    expect(
        "/api/stable/auth/refresh_token",
        "get",
        call(Method::GET, "/api/stable/auth/refresh_token".into(), t(), None).await,
        200,
    );
    expect("/api/stable/auth/whoami", "get", call(Method::GET, "/api/stable/auth/whoami".into(), t(), None).await, 200);
    expect(
        "/api/stable/auth/whoami",
        "get",
        call(Method::GET, "/api/stable/auth/whoami".into(), None, None).await,
        401,
    );
    expect(
        "/api/stable/auth/user/{userName}",
        "get",
        call(Method::GET, "/api/stable/auth/user/admin".into(), t(), None).await,
        200,
    );
    expect("/api/stable/auth/token", "get", call(Method::GET, "/api/stable/auth/token".into(), t(), None).await, 200);
    expect(
        "/api/stable/repository/collection",
        "get",
        call(Method::GET, "/api/stable/repository/collection".into(), t(), None).await,
        200,
    );
    let upload = "/api/alpha/repository/collection/{collectionId}/version";
    for body in ["one", "two"] {
        let r = request(Method::POST, "/api/alpha/repository/collection/db/version", t().as_deref(), Body::from(body));
        let (status, _, bytes) = send(&app, r).await;
        expect(upload, "post", (status, serde_json::from_slice(&bytes).unwrap()), 200);
    }
    let r = request(Method::POST, "/api/alpha/repository/collection/nope/version", t().as_deref(), Body::from("x"));
    let (status, _, bytes) = send(&app, r).await;
    expect(upload, "post", (status, serde_json::from_slice(&bytes).unwrap()), 404);
    expect(
        "/api/stable/repository/collection/{collectionId}/version",
        "get",
        call(Method::GET, "/api/stable/repository/collection/db/version".into(), t(), None).await,
        200,
    );
    let protection = "/api/stable/repository/collection/{collectionId}/version/{versionNum}/protection";
    for change in [json!({ "held": true }), json!({ "held": false, "protectedUntil": null })] {
        check_request(&doc, protection, "put", &change);
        expect(
            protection,
            "put",
            call(Method::PUT, "/api/stable/repository/collection/db/version/2/protection".into(), t(), Some(change))
                .await,
            200,
        );
    }
    let lock = "/api/stable/repository/collection/{collectionId}/version/{versionNum}/lock";
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    for (change, status) in [
        (json!({ "until": until.to_rfc3339(), "mode": "governance" }), 200),
        (json!({ "until": (until - chrono::Duration::hours(1)).to_rfc3339() }), 400),
    ] {
        check_request(&doc, lock, "put", &change);
        let url = "/api/stable/repository/collection/db/version/2/lock".into();
        expect(lock, "put", call(Method::PUT, url, t(), Some(change)).await, status);
    }
    expect(
        "/api/stable/repository/collection/{collectionId}/version/{versionNum}",
        "delete",
        call(Method::DELETE, "/api/stable/repository/collection/db/version/2".into(), t(), None).await,
        409,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/version/{versionNum}",
        "delete",
        call(Method::DELETE, "/api/stable/repository/collection/db/version/1".into(), t(), None).await,
        200,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/version/{versionNum}/restore",
        "post",
        call(Method::POST, "/api/stable/repository/collection/db/version/1/restore".into(), t(), None).await,
        200,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/version/{versionNum}/restore",
        "post",
        call(Method::POST, "/api/stable/repository/collection/db/version/9/restore".into(), t(), None).await,
        404,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/verify",
        "post",
        call(Method::POST, "/api/stable/repository/collection/db/verify".into(), t(), None).await,
        200,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/retention",
        "get",
        call(Method::GET, "/api/stable/repository/collection/db/retention".into(), t(), None).await,
        200,
    );
    let simulation = json!({
        "policy": { "strategy": "gfs", "keepDaily": 2 },
        "now": "2026-01-10T00:00:00Z",
        "versions": [{ "number": 1, "createdAt": "2026-01-08T00:00:00Z" }, { "number": 2, "createdAt": "2026-01-09T00:00:00Z" }],
    });
    check_request(&doc, "/api/stable/retention/simulate", "post", &simulation);
    expect(
        "/api/stable/retention/simulate",
        "post",
        call(Method::POST, "/api/stable/retention/simulate".into(), t(), Some(simulation)).await,
        200,
    );
    expect(
        "/api/stable/repository/collection/{collectionId}/health",
        "get",
        call(Method::GET, "/api/stable/repository/collection/db/health".into(), None, None).await,
        200,
    );
    let replicas = expect(
        "/api/stable/repository/replicas",
        "get",
        call(Method::GET, "/api/stable/repository/replicas".into(), t(), None).await,
        200,
    );
    assert_eq!(replicas["data"]["replicas"], json!([]), "no replica is configured");
    expect("/health", "get", call(Method::GET, "/health".into(), None, None).await, 200);
    expect("/ready", "get", call(Method::GET, "/ready".into(), t(), None).await, 200);
    expect("/ready", "get", call(Method::GET, "/ready".into(), None, None).await, 403);
    expect("/api/openapi.json", "get", call(Method::GET, "/api/openapi.json".into(), None, None).await, 200);
    // The two answers that are not JSON: their media types are the document's.
    for (path, template, media) in [
        (
            "/api/alpha/repository/collection/db/version/latest",
            "/api/alpha/repository/collection/{collectionId}/version/{versionNum}",
            "application/octet-stream",
        ),
        ("/metrics", "/metrics", "text/plain"),
    ] {
        let (status, headers, _) = send(&app, request(Method::GET, path, t().as_deref(), Body::empty())).await;
        assert_eq!(status, 200, "{path}");
        let got = headers["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(media), "{path}: {got}");
        assert!(doc["paths"][template]["get"]["responses"]["200"]["content"][media].is_object(), "{template}");
    }
    expect(
        "/api/stable/auth/logout",
        "delete",
        call(Method::DELETE, "/api/stable/auth/logout".into(), t(), None).await,
        200,
    );
    expect("/api/stable/auth/whoami", "get", call(Method::GET, "/api/stable/auth/whoami".into(), t(), None).await, 403);

    // Every route is in the document, with a schema for its success.
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, 25, "{}", doc["paths"]);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let content = op["responses"]["200"]["content"].as_object().unwrap_or_else(|| panic!("{method} {path}"));
            assert!(!content.is_empty(), "{method} {path}");
        }
    }
    assert_eq!(checked, 30);
    // The check can fail: a login answer without its token, a version without its digest.
    for (path, method, wrong) in [
        (
            "/api/stable/auth/login",
            "post",
            json!({ "data": { "sessionId": "x", "expire": "2026-01-01T00:00:00Z", "msg": "" }, "status": true }),
        ),
        (
            "/api/stable/repository/collection/{collectionId}/version",
            "get",
            json!({ "data": { "versions": [{ "id": "x" }] }, "status": true }),
        ),
        ("/api/stable/auth/whoami", "get", json!({ "data": {}, "status": true })),
    ] {
        let validator = jsonschema::validator_for(&schema_of(&doc, path, method, "200")).unwrap();
        assert!(!validator.is_valid(&wrong), "{method} {path} accepted {wrong}");
    }
}
