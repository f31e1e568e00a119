//! Versions: upload, download, list, delete, restore.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::{CollectionId, ErrorKind, StagedUpload, UploadOptions, VersionQuery, VersionSelector};
use futures::StreamExt;
use serde_json::json;

use crate::caller::Caller;
use crate::json::{ApiError, ok};
use crate::model;
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
/// raw (any other or no `Content-Type`, chunked or not) or as the multipart field `file`. It streams
/// through the quota and content checks into storage; after its end the server waits
/// `--upload-confirm-grace` for the client to cancel (backup-maker does when its command
/// failed after the output ended), then commits. `200 OK` with the version.
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
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
    // The timeout covers receiving the body, not the commit: a version committed after the
    // deadline must not be reported as a failure (a retry would store it twice).
    let staged =
        match tokio::time::timeout(state.inner.upload_timeout, upload_inner(&state, &caller, &id, request)).await {
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
        // backup-repository's text for what fails while the body streams.
        if matches!(e.kind(), ErrorKind::QuotaExceeded | ErrorKind::ContentRejected | ErrorKind::Interrupted) {
            error.message = format!("cannot upload version. {}", error.message);
        }
        UploadError { reason: refusal_reason(e.kind()), error }
    }
}

/// Streams the body into a staged upload and waits out the confirmation grace.
async fn upload_inner(
    state: &AppState,
    caller: &Caller,
    id: &CollectionId,
    request: Request,
) -> Result<StagedUpload, UploadError> {
    let engine = &state.inner.engine;
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let staged = if content_type.starts_with("multipart/form-data") {
        let bad = |msg: String| UploadError { error: ApiError::bad_request(msg), reason: "bad_request" };
        let mut form = Multipart::from_request(request, state)
            .await
            .map_err(|e| bad(format!("cannot read file from multipart/urlencoded form: {}", e.body_text())))?;
        loop {
            let Some(field) = form
                .next_field()
                .await
                .map_err(|e| bad(format!("cannot read file from multipart/urlencoded form: {e}")))?
            else {
                return Err(bad("cannot read file from multipart/urlencoded form: no field \"file\"".into()));
            };
            if field.name() == Some("file") {
                break engine.begin_upload(&caller.actor, id, field, UploadOptions::new()).await?;
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
        let mut options = UploadOptions::new();
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

pub(crate) fn selector(raw: &str) -> Result<VersionSelector, ApiError> {
    raw.parse().map_err(|e: backup_core::Error| ApiError::bad_request(e.to_string()))
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
    const DENIED: &str = "not authorized to download versions from this collection";
    let id = collection_id(&collection)?;
    let sel = selector(&version)?;
    let download =
        state.inner.engine.download(&caller.actor, &id, sel).await.map_err(|e| ApiError::from_core(&e, DENIED))?;
    let (v, mut stream) = download.into_parts();
    // The first chunk is read before the answer: a damaged object that fails at once (all of
    // a small one is one chunk) gets an error status rather than a cut-off 200.
    let first = stream.next().await.transpose().map_err(|e| ApiError::from_core(&e, DENIED))?;
    let deadline = tokio::time::sleep(state.inner.download_timeout);
    let stream = futures::stream::iter(first.map(Ok)).chain(stream).take_until(deadline);
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
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
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
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    let n = number_of(&state, &caller, &id, &version).await?;
    let v = state
        .inner
        .engine
        .delete_version(&caller.actor, &id, n)
        .await
        .map_err(|e| ApiError::from_core(&e, "not authorized to delete versions of this collection"))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}

/// `POST /api/stable/repository/collection/{collectionId}/version/{versionNum}/restore`
/// (ours): a trashed version, within the trash retention, comes back.
pub(crate) async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = collection_id(&collection)?;
    let n = match selector(&version)? {
        VersionSelector::Number(n) => n,
        VersionSelector::Latest => return Err(ApiError::bad_request("name the version to restore by its number")),
    };
    let v = state
        .inner
        .engine
        .restore_version(&caller.actor, &id, n)
        .await
        .map_err(|e| ApiError::from_core(&e, "not authorized to restore versions of this collection"))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}
