//! `/health`, `/ready`, a collection's health, and `/metrics`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::CollectionId;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use backup_policy::Role;

use crate::http::caller::Caller;
use crate::http::json::{ApiError, json_response, ok};
use crate::ops::probes::probe_storage;
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
    let db = state.inner.engine.check_catalog().await.map_err(|e| hidden("DbValidator")(e.to_string()));
    let storage = probe_storage(&state).await.map_err(hidden("StorageAvailabilityValidator"));
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
    let code = collection_code(&q, &headers);
    let assessment = match state.inner.engine.health_if(&id, |_| code_opens(&state, &id, &code)).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(refused()),
        Err(e) if e.kind() == backup_core::ErrorKind::NotFound => return Err(refused()),
        Err(e) => return Err(ApiError::from_core(&e, "")),
    };
    let health = assessment
        .health
        .checks
        .iter()
        .map(|c| check(c.kind.name(), c.failure().map_or(Ok(()), |why| Err(why.to_owned()))))
        .collect();
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
    match state.inner.metrics.render(&state.inner.engine).await {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt};

    use crate::ops::probes::{PROBE_PREFIX, sweep_probes};
    use std::fmt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions, PutOptions,
        PutPayload, PutResult, RenameOptions,
    };

    use super::*;
    use crate::testing::{HEALTH_CODE, send, state_on, text};

    /// A memory store on which reads of the readiness probe's objects never end (a storage
    /// that stalls after the probe's write), and their deletions fail while `fail_deletes`;
    /// every deletion attempt of a probe object is signalled.
    #[derive(Debug, Default)]
    struct StallingProbes {
        inner: Arc<InMemory>,
        fail_deletes: AtomicBool,
        delete_attempted: Arc<tokio::sync::Notify>,
    }

    fn is_probe(location: &ObjectPath) -> bool {
        location.as_ref().starts_with(PROBE_PREFIX)
    }

    impl fmt::Display for StallingProbes {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "StallingProbes({})", self.inner)
        }
    }

    #[backup_core::async_trait]
    impl ObjectStore for StallingProbes {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> object_store::Result<GetResult> {
            if is_probe(location) {
                std::future::pending::<()>().await;
            }
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            let (inner, fail, attempted) =
                (self.inner.clone(), self.fail_deletes.load(Ordering::SeqCst), self.delete_attempted.clone());
            locations
                .then(move |location| {
                    let (inner, attempted) = (inner.clone(), attempted.clone());
                    async move {
                        let location = location?;
                        let probe = is_probe(&location);
                        let result = if probe && fail {
                            Err(object_store::Error::Generic { store: "StallingProbes", source: "refused".into() })
                        } else {
                            inner.delete(&location).await.map(|()| location)
                        };
                        if probe {
                            attempted.notify_one();
                        }
                        result
                    }
                })
                .boxed()
        }

        fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: RenameOptions,
        ) -> object_store::Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }

    async fn probes(store: &StallingProbes) -> Vec<ObjectPath> {
        let listed: Vec<ObjectMeta> =
            store.inner.list(Some(&ObjectPath::from(PROBE_PREFIX))).map(Result::unwrap).collect().await;
        listed.into_iter().map(|m| m.location).collect()
    }

    /// `/ready` on a store that stalls after the probe's write: the storage check fails
    /// (timed out), and the probe's object is deleted all the same.
    async fn ready_times_out(store: &Arc<StallingProbes>) {
        let state = state_on(store.clone(), Duration::from_millis(200)).await;
        let request =
            Request::get(format!("/ready?code={}", HEALTH_CODE.replace(' ', "%20"))).body(Body::empty()).unwrap();
        let answer = send(&state, request).await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: Value = serde_json::from_str(&text(answer).await).unwrap();
        let storage = body["data"]["health"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "StorageAvailabilityValidator")
            .cloned()
            .unwrap();
        assert_eq!(storage["status"], json!(false), "{body}");
        // The deletion runs after the answer, in its own task: await its attempt.
        tokio::time::timeout(Duration::from_secs(10), store.delete_attempted.notified())
            .await
            .expect("the probe's object was not deleted after the timeout cut the probe");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_cut_by_its_timeout_after_the_write_deletes_its_object() {
        let store = Arc::new(StallingProbes::default());
        ready_times_out(&store).await;
        assert_eq!(probes(&store).await, Vec::<ObjectPath>::new(), "nothing left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_maintenance_sweeps_probe_objects_left_behind() {
        let store = Arc::new(StallingProbes::default());
        store.fail_deletes.store(true, Ordering::SeqCst);
        ready_times_out(&store).await;
        assert_eq!(probes(&store).await.len(), 1, "the failed deletion left the object");
        store.fail_deletes.store(false, Ordering::SeqCst);
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        // Younger than the cut-off: a probe that may still run; it stays.
        let young = chrono::Utc::now() - chrono::Duration::minutes(5);
        assert_eq!(sweep_probes(&dyn_store, young).await.unwrap(), 0);
        assert_eq!(probes(&store).await.len(), 1);
        // Older: swept. The repository's own objects are not touched.
        let before: Vec<ObjectMeta> = store.inner.list(None).map(Result::unwrap).collect().await;
        let later = chrono::Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(sweep_probes(&dyn_store, later).await.unwrap(), 1);
        assert_eq!(probes(&store).await, Vec::<ObjectPath>::new(), "nothing left after the sweep");
        let after: Vec<ObjectMeta> = store.inner.list(None).map(Result::unwrap).collect().await;
        assert_eq!(after.len(), before.len() - 1, "only the probe went: {after:?}");
    }
}
