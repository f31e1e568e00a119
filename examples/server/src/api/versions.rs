//! Versions: upload, download, list, delete, restore.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::catalog::protocol::LockBypass;
use backup_core::{Action, CollectionId, ErrorKind, StagedUpload, UploadOptions, VersionQuery, VersionSelector};
use futures::StreamExt;
use serde_json::json;

use crate::api::idempotency;
use crate::api::model;
use crate::http::caller::{Caller, UploadCaller};
use crate::http::json::{ApiError, ok};
use crate::state::AppState;

pub(crate) fn collection_id(raw: &str) -> Result<CollectionId, ApiError> {
    // A malformed id cannot name a collection: the same answer as an unknown one.
    CollectionId::new(raw).map_err(|_| ApiError::not_found("cannot find specified collection"))
}

fn refusal_reason(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::QuotaExceeded => "quota",
        ErrorKind::ContentRejected => "content",
        ErrorKind::OutsideWindow => "window",
        ErrorKind::PermissionDenied | ErrorKind::Unauthenticated => "permission",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Conflict => "conflict",
        _ => "error",
    }
}

/// `POST /api/alpha/repository/collection/{collectionId}/version`: the body is the backup,
/// raw (any other or no `Content-Type`, chunked or not) or as the multipart field `file`;
/// `X-Backup-Meta-NAME: VALUE` headers (the value percent-encoded, so it may hold any text)
/// become the version's metadata, under lower-case names. It streams
/// through the quota and content checks into storage; after its end the server waits
/// `--upload-confirm-grace` for the client to cancel (backup-maker does when its command
/// failed after the output ended), then commits. `200 OK` with the version.
pub(crate) async fn upload(
    State(state): State<AppState>,
    UploadCaller(caller): UploadCaller,
    Path(collection): Path<String>,
    request: Request,
) -> Response {
    let id = match collection_id(&collection) {
        Ok(id) => id,
        Err(e) => {
            state.inner.metrics.refused("", "not_found");
            return e.into_response();
        }
    };
    // Only configured collections become metric labels: clients could make up any number of
    // ids, and each label lives as long as the process.
    let label = if state.inner.directory.snapshot().collections.contains_key(&id) { id.as_str() } else { "" };
    let metrics = &state.inner.metrics;
    // Who may upload here is decided before a byte of the body is read.
    if let Err(e) = state.inner.engine.check_access(&caller.actor, &id, Action::Upload).await {
        let e = UploadError::from(e);
        metrics.refused(label, e.reason);
        return e.error.into_response();
    }
    // The disk filled and its reserve was given back for logins and deletions: uploads wait
    // until the maintenance finds room again.
    if state.inner.space.is_low() {
        metrics.refused(label, "storage_full");
        return ApiError::storage_full().into_response();
    }
    // A retry of an upload that committed (its answer was lost) gets that version, before a
    // byte of the body is read.
    let idempotency = match idempotency::key_of(request.headers()) {
        Ok(key) => key,
        Err(e) => {
            metrics.refused(label, "bad_request");
            return e.into_response();
        }
    };
    let _claim = match &idempotency {
        None => None,
        Some(key) => {
            let Some(claim) = state.inner.idempotent_uploads.claim(id.as_str(), &caller.user.name, key) else {
                metrics.refused(label, "conflict");
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "an upload with this Idempotency-Key is in progress; ask again when it ends",
                )
                .into_response();
            };
            match state.inner.engine.version_with_idempotency_key(&caller.actor, &id, key).await {
                Ok(Some(v)) => {
                    let mut replay = ok(json!({ "version": model::version(&v) }));
                    replay.headers_mut().insert(idempotency::REPLAYED, HeaderValue::from_static("true"));
                    return replay;
                }
                Ok(None) => {}
                Err(e) => {
                    let e = UploadError::from(e);
                    metrics.refused(label, e.reason);
                    return e.error.into_response();
                }
            }
            Some(claim)
        }
    };
    let _slot = match state.inner.uploads_per_user.acquire(&caller.user.name) {
        Ok(slot) => slot,
        Err(busy) => {
            metrics.refused(label, "busy");
            return ApiError::from(busy).into_response();
        }
    };
    // The timeout covers receiving the body, not the commit: a version committed after the
    // deadline must not be reported as a failure (a retry would store it twice).
    let upload = upload_inner(&state, &caller, &id, idempotency.as_deref(), request);
    let staged = match tokio::time::timeout(state.inner.upload_timeout, upload).await {
        Err(_elapsed) => {
            metrics.refused(label, "timeout");
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request took too long").into_response();
        }
        Ok(Err(e)) => {
            metrics.refused(label, e.reason);
            return e.error.into_response();
        }
        Ok(Ok(staged)) => staged,
    };
    match staged.commit().await {
        Ok(v) => {
            metrics.uploaded(&id, v.size);
            ok(json!({ "version": model::version(&v) }))
        }
        Err(e) => {
            let e = UploadError::from(e);
            metrics.refused(label, e.reason);
            e.error.into_response()
        }
    }
}

struct UploadError {
    error: ApiError,
    reason: &'static str,
}

impl From<backup_core::Error> for UploadError {
    fn from(e: backup_core::Error) -> Self {
        let mut error = ApiError::from_core(&e, "not authorized to upload versions to this collection");
        // backup-repository's texts for what fails while the body streams; for the content
        // rule, its fixed texts, ours (which says what is wrong) in `data.reason`.
        const STREAMING: &str = "cannot upload version. cannot upload file, cannot copy stream, error: ";
        match &e {
            backup_core::Error::ContentRejected { reason, at_end, .. } => {
                error.message = format!(
                    "{STREAMING}{}",
                    if *at_end {
                        "end of stream does not contain a valid GPG footer, suspecting a data corruption"
                    } else {
                        "first chunk of uploaded data does not contain a valid GPG header"
                    }
                );
                error = error.with_data(serde_json::json!({ "reason": reason }));
            }
            e if matches!(e.kind(), ErrorKind::QuotaExceeded | ErrorKind::Interrupted) => {
                error.message = format!("{STREAMING}{}", error.message);
            }
            _ => {}
        }
        UploadError { reason: refusal_reason(e.kind()), error }
    }
}

/// Streams the body into a staged upload and waits out the confirmation grace.
async fn upload_inner(
    state: &AppState,
    caller: &Caller,
    id: &CollectionId,
    idempotency: Option<&str>,
    request: Request,
) -> Result<StagedUpload, UploadError> {
    let engine = &state.inner.engine;
    let mut metadata = metadata_headers(request.headers())?;
    if let Some(key) = idempotency {
        metadata = metadata.idempotency_key(key);
    }
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let staged = if content_type.starts_with("multipart/form-data") {
        let bad = |msg: String| UploadError { error: ApiError::bad_request(msg), reason: "bad_request" };
        // What comes before the `file` field's bytes (the preamble, other fields, part
        // headers) is parsed in memory: it is capped.
        let file_started = Arc::new(AtomicBool::new(false));
        let (parts, body) = request.into_parts();
        let before_file = BeforeFile::new(body.into_data_stream(), file_started.clone());
        let overflowed = before_file.overflowed.clone();
        let body = Body::from_stream(before_file);
        let unreadable = |e: String| {
            if overflowed.load(Ordering::Relaxed) {
                bad(format!(
                    "cannot read file from multipart/urlencoded form: more than {MAX_BEFORE_FILE} bytes before the field \"file\""
                ))
            } else {
                bad(format!("cannot read file from multipart/urlencoded form: {e}"))
            }
        };
        let mut form = Multipart::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| unreadable(e.body_text()))?;
        loop {
            let Some(field) = form.next_field().await.map_err(|e| unreadable(e.to_string()))? else {
                return Err(bad("cannot read file from multipart/urlencoded form: no field \"file\"".into()));
            };
            if field.name() == Some("file") {
                file_started.store(true, Ordering::Relaxed);
                break engine.begin_upload(&caller.actor, id, field, metadata).await?;
            }
        }
    } else {
        // Any other type, or none, is the raw body. That includes `curl --data-binary`'s
        // default `application/x-www-form-urlencoded` (a file cannot be url-encoded; the
        // original refused such uploads with a 500).
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut options = metadata;
        if let Some(n) = length {
            options = options.expected_size(n);
        }
        let body = request.into_body().into_data_stream();
        engine.begin_upload(&caller.actor, id, body, options).await?
    };
    // The producer may still fail after the end of its output; its client then closes the
    // connection, which drops this future and, with it, the staged upload: it is aborted and
    // never becomes a version.
    if !state.inner.upload_grace.is_zero() {
        tokio::time::sleep(state.inner.upload_grace).await;
    }
    Ok(staged)
}

/// The prefix of the headers that carry a version's metadata.
pub(crate) const METADATA_HEADER: &str = "x-backup-meta-";

/// `X-Backup-Meta-*` headers as upload options (the engine checks names and sizes).
fn metadata_headers(headers: &axum::http::HeaderMap) -> Result<UploadOptions, UploadError> {
    let mut options = UploadOptions::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(METADATA_HEADER) else { continue };
        if key == backup_core::IDEMPOTENCY_KEY {
            return Err(UploadError {
                error: ApiError::bad_request(format!(
                    "{name}: the name {:?} is the server's own; send an Idempotency-Key header instead",
                    backup_core::IDEMPOTENCY_KEY
                )),
                reason: "bad_request",
            });
        }
        let text = percent_encoding::percent_decode(value.as_bytes()).decode_utf8().map_err(|_| UploadError {
            error: ApiError::bad_request(format!("the value of {name} is not percent-encoded UTF-8")),
            reason: "bad_request",
        })?;
        options = options.metadata(key, text);
    }
    Ok(options)
}

/// The most bytes of a multipart form before the `file` field's content.
pub(crate) const MAX_BEFORE_FILE: u64 = 64 * 1024;

/// A form's body that fails once more than [`MAX_BEFORE_FILE`] bytes were read before the
/// `file` field began (one more chunk may be read past it: the one that starts the field).
struct BeforeFile<S> {
    inner: S,
    read: u64,
    file_started: Arc<AtomicBool>,
    /// Set when the cap was hit (the form parser's error does not say why).
    overflowed: Arc<AtomicBool>,
}

impl<S> BeforeFile<S> {
    fn new(inner: S, file_started: Arc<AtomicBool>) -> Self {
        BeforeFile { inner, read: 0, file_started, overflowed: Arc::default() }
    }
}

impl<S> futures::Stream for BeforeFile<S>
where
    S: futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
{
    type Item = Result<bytes::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.read > MAX_BEFORE_FILE && !self.file_started.load(Ordering::Relaxed) {
            self.overflowed.store(true, Ordering::Relaxed);
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("more than {MAX_BEFORE_FILE} bytes before the field \"file\""),
            );
            return std::task::Poll::Ready(Some(Err(axum::Error::new(e))));
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len() as u64;
            self.read = self.read.saturating_add(n);
        }
        polled
    }
}

pub(crate) fn selector(raw: &str) -> Result<VersionSelector, ApiError> {
    raw.parse().map_err(|e: backup_core::Error| ApiError::bad_request(e.to_string()))
}

/// A version named by its number (`N` or `vN`), for a change to it (`verb`: what it does):
/// `latest` could name another version by the time the change is made.
pub(crate) fn number(raw: &str, verb: &str) -> Result<u64, ApiError> {
    match selector(raw)? {
        VersionSelector::Number(n) => Ok(n),
        VersionSelector::Latest => Err(ApiError::bad_request(format!("name the version to {verb} by its number"))),
    }
}

/// `GET /api/alpha/repository/collection/{collectionId}/version/{versionNum}`: `latest`, `N`
/// or `vN`. The bytes stream as they are read and verified; a mismatch in the first chunk is
/// a 500, a later one cuts the response short of its `Content-Length` (the engine holds the
/// last chunk back until the digest matches), so no client mistakes damaged bytes for the
/// backup.
pub(crate) async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    let sel = selector(&version)?;
    stream_version(&state, &caller, &id, sel).await
}

/// A version's bytes as a response, for the API's download and the dashboard's: the caller's
/// download slot is held until the last byte is sent or the client goes.
///
/// # Errors
/// The engine's refusal; the caller's downloads all busy.
pub(crate) async fn stream_version(
    state: &AppState,
    caller: &Caller,
    id: &CollectionId,
    sel: VersionSelector,
) -> Result<Response, ApiError> {
    const DENIED: &str = "not authorized to download versions from this collection";
    let slot = state.inner.downloads_per_user.acquire(&caller.user.name).map_err(ApiError::from)?;
    let download =
        state.inner.engine.download(&caller.actor, id, sel).await.map_err(|e| ApiError::from_core(&e, DENIED))?;
    let (v, mut stream) = download.into_parts();
    // The first chunk is read before the answer: a damaged object that fails at once (all of
    // a small one is one chunk) gets an error status rather than a cut-off 200.
    let first = stream.next().await.transpose().map_err(|e| ApiError::from_core(&e, DENIED))?;
    let deadline = tokio::time::sleep(state.inner.download_timeout);
    // The slot is held until the answer's last byte is sent or the client goes. For a client
    // that does not read, hyper buffers about 400 KiB and one chunk before it stops polling.
    let stream = futures::stream::iter(first.map(Ok)).chain(stream).take_until(deadline).map(move |chunk| {
        let _held = &slot;
        chunk
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(v.size));
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", v.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, cd);
    }
    if let Ok(d) = HeaderValue::from_str(&v.digest.to_string()) {
        headers.insert("x-backup-digest", d);
    }
    Ok(response)
}

/// `GET /api/stable/repository/collection/{collectionId}/version`: every committed version,
/// by number.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    // Ours: the version an upload with this Idempotency-Key committed, if any (a client that
    // lost the answer asks before it uploads again).
    if let Some(key) = query.idempotency_key {
        let found = state
            .inner
            .engine
            .version_with_idempotency_key(&caller.actor, &id, &key)
            .await
            .map_err(|e| ApiError::from_core(&e, "not authorized to list versions"))?;
        let versions: Vec<serde_json::Value> = found.iter().map(model::version).collect();
        return Ok(ok(json!({ "versions": versions })));
    }
    let mut versions = Vec::new();
    let mut query = VersionQuery::first(1000);
    loop {
        let page = state
            .inner
            .engine
            .versions(&caller.actor, &id, query)
            .await
            .map_err(|e| ApiError::from_core(&e, "not authorized to list versions"))?;
        versions.extend(page.items.iter().map(model::version));
        match page.next {
            Some(n) => query = VersionQuery::first(1000).after(n),
            None => break,
        }
    }
    Ok(ok(json!({ "versions": versions })))
}

/// The listing's query.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    idempotency_key: Option<String>,
}

async fn number_of(state: &AppState, caller: &Caller, id: &CollectionId, raw: &str) -> Result<u64, ApiError> {
    match selector(raw)? {
        VersionSelector::Number(n) => Ok(n),
        VersionSelector::Latest => state
            .inner
            .engine
            .version(&caller.actor, id, VersionSelector::Latest)
            .await
            .map(|v| v.number)
            .map_err(|e| ApiError::from_core(&e, "not authorized to list versions")),
    }
}

/// `DELETE /api/stable/repository/collection/{collectionId}/version/{versionNum}` (ours).
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    let n = number_of(&state, &caller, &id, &version).await?;
    let bypass = match query.bypass_governance.as_deref() {
        None | Some("false") => LockBypass::NONE,
        Some("true") => LockBypass::GOVERNANCE,
        Some(other) => return Err(ApiError::bad_request(format!("bypassGovernance={other:?} is not true or false"))),
    };
    let v = state
        .inner
        .engine
        .delete_version_with(&caller.actor, &id, n, bypass)
        .await
        .map_err(|e| ApiError::from_core(&e, "not authorized to delete versions of this collection"))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}

/// The query of a deletion: `bypassGovernance=true` asks to lift a governance lock.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    bypass_governance: Option<String>,
}

/// `POST /api/stable/repository/collection/{collectionId}/version/{versionNum}/restore`
/// (ours): a trashed version, within the trash retention, comes back; with `?replica=NAME`, a
/// version the primary no longer has comes back from that replica's copy as a new version.
pub(crate) async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
    Query(query): Query<RestoreQuery>,
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    let n = number(&version, "restore")?;
    let engine = &state.inner.engine;
    let restored = match &query.replica {
        None => engine.restore_version(&caller.actor, &id, n).await,
        Some(replica) => engine.restore_from_replica(&caller.actor, replica, &id, n).await,
    };
    let v = restored.map_err(|e| ApiError::from_core(&e, "not authorized to restore versions of this collection"))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}

/// The restore's query.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RestoreQuery {
    replica: Option<String>,
}
