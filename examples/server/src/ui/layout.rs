//! The frame of every dashboard page, its security headers, redirects and error pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::http::json::ApiError;

/// Who a page is shown to, as its header shows them (a dashboard session is one).
pub(crate) trait Viewer {
    /// The user's name.
    fn user(&self) -> &str;
    /// The access key the user logged in with, if any.
    fn access_key(&self) -> Option<&str>;
    /// The CSRF token of the viewer's forms.
    fn csrf(&self) -> &str;
}

/// Nothing but our own stylesheet and images, no script at all, forms only to us, never in a
/// frame. Inline SVG is markup, not a resource, so the charts need nothing more.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet.
pub(crate) const STYLESHEET_TEXT: &str = include_str!("style.css");

/// The stylesheet's address: a digest of its content in the name, so it can be cached for
/// long and a changed stylesheet is fetched at once.
pub(crate) fn stylesheet_path() -> &'static str {
    static PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(STYLESHEET_TEXT.as_bytes());
        format!("/ui/static/style-{}.css", hex::encode(&digest[..6]))
    });
    &PATH
}

/// The headers every dashboard answer carries: the policy above, no sniffing, no referrer
/// (addresses carry collection names), and pages are never stored (they show what a
/// logged-in user may see).
pub(crate) fn secure(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// A page: the header with the user and a logout button, then `body`.
pub(crate) fn page(status: StatusCode, title: &str, session: Option<&dyn Viewer>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · backup-server" }
                link rel="stylesheet" href=(stylesheet_path());
            }
            body {
                header.top {
                    a.brand href="/ui/" { "backup-server" }
                    @if let Some(s) = session {
                        span.who {
                            (s.user())
                            @if let Some(key) = s.access_key() { " (key " (key) ")" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    secure((status, markup).into_response(), "no-store")
}

/// A page that says what went wrong, with a way back.
pub(crate) fn error_page(status: StatusCode, session: Option<&dyn Viewer>, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        session,
        html! {
            section.error {
                h1 { (title) }
                p { (message) }
                p { a href=(if session.is_some() { "/ui/" } else { "/ui/login" }) { "Back to the dashboard" } }
            }
        },
    )
}

/// The page of an error the API would answer as JSON: its status, its message (server errors
/// are logged, not shown, by [`ApiError::from_core`]) and its `Retry-After`.
pub(crate) fn api_error_page(session: &dyn Viewer, e: ApiError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "Something went wrong",
        _ => "Refused",
    };
    let mut response = error_page(e.status, Some(session), title, &e.message);
    if let Some(secs) = e.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `303 See Other` to `to` (after a form, the browser asks for the page anew).
pub(crate) fn redirect(to: &'static str) -> Response {
    redirect_to(to.to_owned())
}

/// [`redirect`] to an address built at run time (only from our own path pieces).
pub(crate) fn redirect_to(to: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    secure(response, "no-store")
}
