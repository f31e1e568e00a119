//! The router: the API's routes from the OpenAPI table and the dashboard's, each group with
//! its rate-limit bucket, timeout and body limit, under the middleware of [`crate::http`].

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use backup_policy::Bucket;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::api::openapi::path;
use crate::api::{audit, auth, collections, health, openapi, replicas, retention, versions};
use crate::http::json::ApiError;
use crate::http::middleware::{Refusal, give_back_space_when_full, header_guard, rate_limit, refusals_as_json};
use crate::state::AppState;

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
        .route(path("lock_version"), put(retention::lock))
        .route(path("retention"), get(retention::preview))
        .route(path("simulate_retention"), post(retention::simulate))
        .route(path("audit"), get(audit::list))
        .route(path("notifications"), get(audit::notifications))
        .route(path("replicas"), get(replicas::list))
        .route_layer(limit(Bucket::Default))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    // Uploads are not rate limited (backup-repository's behaviour); their size is the quota's.
    let upload = Router::new()
        .route(path("upload"), post(versions::upload))
        .route_layer(DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn(crate::http::linger::linger));
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
