//! `/health`, `/ready`, a collection's health, and `/metrics`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::CollectionId;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use backup_policy::Role;

use crate::assessment::assess_if;
use crate::caller::Caller;
use crate::json::{ApiError, json_response, ok};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
/// `?code=`: a health code.
pub(crate) struct CodeQuery {
    pub(crate) code: Option<String>,
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A collection health code: `?code=` wins over a raw `Authorization` header, as in
/// backup-repository.
fn collection_code(q: &CodeQuery, headers: &HeaderMap) -> String {
    q.code.clone().or_else(|| authorization(headers)).unwrap_or_default()
}

/// The server health key: a raw `Authorization` header wins over `?code=`, as in
/// backup-repository.
fn health_key(q: &CodeQuery, headers: &HeaderMap) -> String {
    authorization(headers).or_else(|| q.code.clone()).unwrap_or_default()
}

/// One check's result in backup-repository's form.
fn check(name: &str, result: Result<(), String>) -> Value {
    let status = result.is_ok();
    json!({
        "name": name,
        "status": status,
        "statusText": format!("{name}={status}"),
        "message": result.err().unwrap_or_else(|| "OK".to_owned()),
    })
}

fn checks_response(health: Vec<Value>, extra: Option<(&str, Value)>) -> Response {
    let mut data = json!({ "health": health });
    if let Some((key, value)) = extra {
        data[key] = value;
    }
    if health.iter().all(|h| h["status"] == json!(true)) {
        ok(data)
    } else {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "one of checks failed").with_data(data).into_response()
    }
}

/// `GET /health`: the process is up.
pub(crate) async fn health() -> Response {
    ok(
        json!({ "msg": "The server is up and running. Dependent services are not shown there. Take a look at /ready endpoint" }),
    )
}

/// A caller who may read `/ready` and `/metrics`: one with the health key when one is set, or
/// a `systemAdmin`'s token. Without a key, nothing is open to anonymous callers: both tell
/// which collections exist, and `/ready` writes to storage.
pub(crate) struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Query(q) =
            Query::<CodeQuery>::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
        let caller = Caller::from_request_parts(parts, state).await.ok();
        operator(state, &q, &parts.headers, caller.as_ref()).map(|()| Operator).map_err(IntoResponse::into_response)
    }
}

fn operator(state: &AppState, q: &CodeQuery, headers: &HeaderMap, caller: Option<&Caller>) -> Result<(), ApiError> {
    let key = state.inner.health_key.as_bytes();
    if !key.is_empty() && bool::from(key.ct_eq(health_key(q, headers).as_bytes())) {
        return Ok(());
    }
    if caller.is_some_and(|c| c.token.requester(&c.user).user().roles.contains(&Role::SystemAdmin)) {
        return Ok(());
    }
    let message = if key.is_empty() {
        "no health code is set (--health-check-key): only a systemAdmin's token opens this"
    } else {
        // backup-repository's text, its typos included.
        "health code invalid. Should be provided withing 'Authorization' header or 'code' query string. Must match --health-check-code commandline switch value"
    };
    Err(ApiError::forbidden(message))
}

/// A failed check's message for the caller: what failed, not how (a backend's error may name
/// hosts, paths or users); the details go to the log.
fn hidden(check: &'static str) -> impl FnOnce(String) -> String {
    move |detail| {
        tracing::error!(check, error = %detail, "readiness check failed");
        "failed; the server log has the details".to_owned()
    }
}

/// `GET /ready`: the catalog answers, the store takes a write, a read and a delete, the
/// manifests load and validate.
pub(crate) async fn ready(State(state): State<AppState>, _: Operator) -> Response {
    let db = state
        .inner
        .catalog
        .list_collections(None, 1)
        .await
        .map(|_| ())
        .map_err(|e| hidden("DbValidator")(e.to_string()));
    let storage = tokio::time::timeout(state.inner.storage_health_timeout, async {
        let key = ObjectPath::from(format!(".health/{}", uuid::Uuid::new_v4()));
        let store = &state.inner.store;
        store.put(&key, "ok".into()).await.map_err(|e| e.to_string())?;
        let read = match store.get(&key).await {
            Ok(got) => got.bytes().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        // Deleted whatever the read gave, so no probe stays behind.
        let deleted = store.delete(&key).await.map_err(|e| e.to_string());
        if read? != "ok" {
            return Err("read back something else than was written".to_owned());
        }
        deleted
    })
    .await
    .unwrap_or_else(|_| Err("timed out".into()))
    .map_err(hidden("StorageAvailabilityValidator"));
    // The manifests load and validate as they would at a reload.
    let config = state.inner.manifests.load_async().await.map(|_| ()).map_err(hidden("ConfigurationProviderValidator"));
    // The catalog and the storage still belong to the repository served since the start.
    let repository = state.inner.engine.check_repository_now().await;
    let id = repository.as_ref().ok().map(|id| json!(id.to_string())).unwrap_or(Value::Null);
    checks_response(
        vec![
            check("DbValidator", db),
            check("StorageAvailabilityValidator", storage),
            check("ConfigurationProviderValidator", config),
            check(
                "RepositoryValidator",
                repository.map(|_| ()).map_err(|e| hidden("RepositoryValidator")(e.to_string())),
            ),
        ],
        Some(("repository", id)),
    )
}

/// `GET /api/stable/repository/collection/{collectionId}/health[?code=…]`: the last backup
/// came in a window slot, no version passes the soft limit, the sum stays under the hard one,
/// no version is quarantined.
pub(crate) async fn collection_health(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(q): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Without the right code, an unknown collection and a known one are answered alike: no
    // anonymous answer tells that a collection exists. A collection without a health secret
    // has a public health endpoint, by its manifest's choice.
    let refused = || ApiError::forbidden("not authorized - invalid value of 'code' parameter in query string");
    let id = CollectionId::new(collection).map_err(|_| refused())?;
    let assessment = match assess_if(&state, &id, || code_opens(&state, &id, &collection_code(&q, &headers))).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(refused()),
        Err(e) if e.kind() == backup_core::ErrorKind::NotFound => return Err(refused()),
        Err(e) => return Err(ApiError::from_core(&e, "")),
    };
    let health = assessment.checks.into_iter().map(|c| check(c.name, c.result)).collect();
    Ok(checks_response(health, None))
}

/// Whether `code` opens the health of collection `id`: the collection has no health secret,
/// or this is it (compared in constant time).
pub(crate) fn code_opens(state: &AppState, id: &CollectionId, code: &str) -> bool {
    let given: [u8; 32] = sha2::Sha256::digest(code.as_bytes()).into();
    match state.inner.directory.snapshot().collections.get(id).and_then(|p| p.health_code_sha256) {
        Some(expected) => bool::from(given.ct_eq(&expected)),
        None => true,
    }
}

/// `GET /metrics`: Prometheus text, for the health code or a `systemAdmin`'s token.
pub(crate) async fn metrics(State(state): State<AppState>, _: Operator) -> Response {
    match state.inner.metrics.render(state.inner.catalog.as_ref()).await {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        Err(e) => ApiError::from_core(&e, "").into_response(),
    }
}

/// A JSON 404 for routes that do not exist.
pub(crate) async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({ "data": {}, "error": "route not found", "status": false }))
}
