//! The middleware every request passes: rate limits per bucket, header limits, JSON for
//! every refusal, and the disk reserve given back when the disk fills.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backup_policy::{Bucket, RateKey};
use serde_json::json;

use crate::http::caller::client_addr;
use crate::http::json::{ApiError, json_response};
use crate::state::AppState;

/// The most header bytes a request may carry.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most header lines a request may carry.
pub(crate) const MAX_HEADERS: usize = 100;

/// How a refusal is answered: the API's JSON envelope, or the dashboard's page.
pub(crate) type Refusal = fn(ApiError) -> Response;

/// A token bucket per client address; `X-RateLimit-*` headers on the way out, a refusal
/// answered by `refuse`.
pub(crate) async fn rate_limit(
    State((state, bucket, refuse)): State<(AppState, Bucket, Refusal)>,
    req: Request,
    next: Next,
) -> Response {
    let addr = client_addr(req.extensions(), req.headers(), &state.inner.trusted_proxies);
    match state.inner.rate_limits.check(bucket, &RateKey::Addr(addr)) {
        Err(e) => refuse(ApiError::from_policy(&e, "")),
        Ok(info) => {
            let mut response = next.run(req).await;
            if let Some(info) = info {
                response.headers_mut().insert("x-ratelimit-limit", HeaderValue::from(info.limit));
                response.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from(info.remaining));
            }
            response
        }
    }
}

/// Refuses requests with too many header bytes or lines, with a JSON reason.
pub(crate) async fn header_guard(req: Request, next: Next) -> Response {
    let bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let too_large = |what: String| ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, what).into_response();
    if bytes > MAX_HEADER_BYTES {
        return too_large(format!("request headers are larger than {MAX_HEADER_BYTES} bytes"));
    }
    if req.headers().len() > MAX_HEADERS {
        return too_large(format!("a request carries at most {MAX_HEADERS} headers"));
    }
    next.run(req).await
}

/// A request that met a full disk (`507`) gives the disk reserve back, so that the next
/// login or deletion has room (see `space`).
pub(crate) async fn give_back_space_when_full(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() == StatusCode::INSUFFICIENT_STORAGE {
        tokio::task::spawn_blocking(move || state.inner.space.release());
    }
    response
}

/// Every client error in the envelope: axum's own refusals (a path that is not UTF-8, a bad
/// query, a wrong method) are plain text; they become `{"data": {}, "error": …}`.
pub(crate) async fn refusals_as_json(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    // The dashboard's pages and badges answer in their own types.
    let own_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| ["application/json", "text/html", "image/svg+xml"].iter().any(|t| v.starts_with(t)));
    if !status.is_client_error() || own_type {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let mut fixed = json_response(status, &json!({ "data": {}, "error": text, "status": false }));
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(k.clone(), v.clone());
        }
    }
    fixed
}
