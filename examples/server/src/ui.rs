//! The dashboard under `/ui/`: server-rendered pages (maud, no script) over the same engine
//! calls and permission decisions as the API.
//!
//! Sessions are browser-session tokens in an `HttpOnly`, `SameSite=Strict` cookie, registered
//! and revocable like API tokens; every form carries a CSRF token derived from the session;
//! posts from another origin are refused; the Content-Security-Policy allows our stylesheet
//! and images only; the login is the API's, with its limits.

mod activity;
mod badge;
mod chart;
mod collection;
pub(crate) mod layout;
mod login;
mod overview;
pub(crate) mod session;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use backup_policy::Bucket;
use tower_http::timeout::TimeoutLayer;

use crate::http::json::ApiError;
use crate::http::middleware::{Refusal, rate_limit};
use crate::state::AppState;

/// How long a page may take until its answer starts.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest form the dashboard reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The dashboard's routes, with their limits.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let refuse: Refusal = too_many;
    let limit = |bucket| middleware::from_fn_with_state((state.clone(), bucket, refuse), rate_limit);
    let login = Router::new()
        .route("/ui/login", post(login::login))
        .route_layer(limit(Bucket::Login))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.inner.login_timeout));
    let pages = Router::new()
        .route("/ui", get(|| async { layout::redirect("/ui/") }))
        .route("/ui/", get(overview::overview))
        .route("/ui/login", get(login::form))
        .route("/ui/logout", post(login::logout))
        .route("/ui/collections/{id}", get(collection::page))
        .route("/ui/collections/{id}/versions/{number}/download", get(collection::download))
        .route("/ui/collections/{id}/versions/{number}/delete", post(collection::delete))
        .route("/ui/collections/{id}/versions/{number}/restore", post(collection::restore))
        .route(layout::stylesheet_path(), get(stylesheet))
        .route("/ui/{*rest}", any(not_found))
        .route_layer(limit(Bucket::Default))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, PAGE_TIMEOUT));
    let badges =
        Router::new().route("/ui/badge/{file}", get(badge::badge)).route_layer(limit(Bucket::CollectionHealth));
    Router::new()
        .merge(login)
        .merge(pages)
        .merge(badges)
        .route_layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .route_layer(middleware::from_fn(same_origin_posts))
}

/// The page of a rate-limit refusal (the API's bucket, per address), with its `Retry-After`.
fn too_many(api: ApiError) -> Response {
    let mut page = layout::error_page(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "Too many requests",
        "This address sent too many requests. Wait a moment and try again.",
    );
    if let Some(secs) = api.retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    page
}

/// Refuses a form posted from another site, whatever its cookies: by the browser's
/// `Sec-Fetch-Site`, else by `Origin` against `Host`. (The `SameSite=Strict` cookie and the
/// CSRF tokens refuse it too; this is the third lock.)
async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cross_site = match text("sec-fetch-site").as_deref() {
        Some("same-origin") | Some("none") => false,
        Some(_) => true,
        None => match (text("origin"), text("host")) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").map(|(_, authority)| authority) != Some(host.as_str())
            }
            // No Origin: not a browser's cross-site form (browsers send it with every POST).
            _ => false,
        },
    };
    if cross_site {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            None,
            "Form refused",
            "This form was sent from another site. Use the dashboard's own pages.",
        );
    }
    next.run(req).await
}

/// The stylesheet, cached for a day (its address changes with its content).
async fn stylesheet() -> Response {
    let mut response = layout::STYLESHEET_TEXT.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    layout::secure(response, "public, max-age=86400")
}

async fn not_found() -> Response {
    layout::error_page(StatusCode::NOT_FOUND, None, "Not found", "There is no such page.")
}
