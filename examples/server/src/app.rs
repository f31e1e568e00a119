//! The router: routes from the OpenAPI table, rate limits per bucket, JSON for every refusal.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use backup_policy::{Bucket, RateKey};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::caller::client_addr;
use crate::json::{ApiError, json_response};
use crate::routes::openapi::path;
use crate::routes::{auth, collections, health, openapi, retention, versions};
use crate::state::AppState;

/// The most header bytes a request may carry.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most header lines a request may carry.
pub(crate) const MAX_HEADERS: usize = 100;

/// How long any other request but an upload may take until its answer starts (a download's
/// bytes then stream under their own timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's router, for tests without a socket and for a program that serves the routes
/// itself ([`crate::spawn`] does all of this for you).
///
/// The routes need each connection's address (IP allow-lists, rate limits and per-address
/// limits decide on it): serve the router with it, or every client is `::` and one client's
/// requests count against all of them:
///
/// ```no_run
/// # async fn serve(state: backup_server::AppState) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let service = backup_server::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
/// axum::serve(listener, service).await
/// # }
/// ```
pub fn app(state: AppState) -> Router {
    let refuse: Refusal = IntoResponse::into_response;
    let limit = |bucket| middleware::from_fn_with_state((state.clone(), bucket, refuse), rate_limit);
    let login = Router::new()
        .route(path("login"), post(auth::login))
        .route(path("refresh"), get(auth::refresh))
        .route_layer(limit(Bucket::Login))
        .route_layer(DefaultBodyLimit::max(64 * 1024))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.inner.login_timeout));
    let default = Router::new()
        .route(path("whoami"), get(auth::whoami))
        .route(path("user"), get(auth::user))
        .route(path("logout"), delete(auth::logout))
        .route(path("tokens"), get(auth::tokens))
        .route(path("collections"), get(collections::list))
        .route(path("download"), get(versions::download))
        .route(path("versions"), get(versions::list))
        .route(path("delete_version"), delete(versions::delete))
        .route(path("restore_version"), post(versions::restore))
        .route(path("protect_version"), put(retention::protect))
        .route(path("retention"), get(retention::preview))
        .route(path("simulate_retention"), post(retention::simulate))
        .route_layer(limit(Bucket::Default))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    // Uploads are not rate limited (backup-repository's behaviour); their size is the quota's.
    let upload = Router::new()
        .route(path("upload"), post(versions::upload))
        .route_layer(DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn(crate::linger::linger));
    // A verification reads a whole collection: not cut after a minute.
    let verify = Router::new()
        .route(path("verify"), post(retention::verify))
        .route_layer(limit(Bucket::Default))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.inner.download_timeout));
    let collection_health = Router::new()
        .route(path("collection_health"), get(health::collection_health))
        .route_layer(limit(Bucket::CollectionHealth));
    let server_health = Router::new()
        .route(path("health"), get(health::health))
        .route(path("ready"), get(health::ready))
        .route(path("metrics"), get(health::metrics))
        .route_layer(limit(Bucket::Health));
    Router::new()
        .merge(login)
        .merge(default)
        .merge(upload)
        .merge(verify)
        .merge(collection_health)
        .merge(server_health)
        .route(path("openapi"), get(openapi::serve))
        .merge(crate::ui::routes(&state))
        .fallback(health::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), give_back_space_when_full))
        .layer(middleware::from_fn(refusals_as_json))
        .layer(middleware::from_fn(header_guard))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error, the server log has the details")
                .into_response()
        }))
        .with_state(state)
}

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
async fn header_guard(req: Request, next: Next) -> Response {
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

/// Every client error in the envelope: axum's own refusals (a path that is not UTF-8, a bad
/// query, a wrong method) are plain text; they become `{"data": {}, "error": …}`.
/// A request that met a full disk (`507`) gives the disk reserve back, so that the next
/// login or deletion has room (see `space`).
async fn give_back_space_when_full(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() == StatusCode::INSUFFICIENT_STORAGE {
        tokio::task::spawn_blocking(move || state.inner.space.release());
    }
    response
}

async fn refusals_as_json(req: Request, next: Next) -> Response {
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
