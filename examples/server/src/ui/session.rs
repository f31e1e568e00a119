//! The dashboard's session: a browser-session token in an `HttpOnly`, `SameSite=Strict`
//! cookie, registered and revocable like any API token, and the CSRF tokens of its forms.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::caller::{Caller, client_addr};
use crate::json::ApiError;
use crate::state::AppState;
use crate::ui::layout;

/// The session cookie. The API reads only its own `jwt` cookie, and refuses this cookie's
/// token anywhere else (it is marked a browser session's).
pub(crate) const SESSION_COOKIE: &str = "backup_ui";

/// The login form's CSRF cookie: a random value the form must repeat.
pub(crate) const LOGIN_COOKIE: &str = "backup_ui_login";

/// Where the session cookie is sent: the dashboard only.
const COOKIE_PATH: &str = "/ui";

/// A logged-in dashboard user: the same [`Caller`] the API builds from a bearer token, so
/// every page asks the engine with the same actor and permissions.
#[derive(Debug, Clone)]
pub(crate) struct UiSession {
    pub(crate) caller: Caller,
    /// The CSRF token of this session's forms.
    pub(crate) csrf: String,
}

impl UiSession {
    /// Whether a form's CSRF token is this session's (compared in constant time).
    pub(crate) fn csrf_matches(&self, given: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }

    /// The user's name, for the page header.
    pub(crate) fn user(&self) -> &str {
        &self.caller.user.name
    }

    /// The access key the session was opened with, if any.
    pub(crate) fn access_key(&self) -> Option<&str> {
        self.caller.token.access_key()
    }
}

/// A session's CSRF token: derived from its token, so it needs no storage (several
/// instances serve the same sessions) and a page of another session carries another one.
/// Knowing it tells nothing of the token (a one-way digest of a secret).
fn csrf_of(token: &str) -> String {
    let digest = sha2::Sha256::new().chain_update(b"backup-ui csrf\0").chain_update(token.as_bytes()).finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The value of the request's cookie `name` (the first, as browsers send the most specific
/// path first).
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Whether the browser reached us over TLS: the request's own scheme, or what a trusted proxy
/// in front says in `X-Forwarded-Proto`. Cookies are then `Secure`.
pub(crate) fn over_tls(parts: &Parts, state: &AppState) -> bool {
    if parts.uri.scheme_str() == Some("https") {
        return true;
    }
    let from_trusted_proxy = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| state.inner.trusted_proxies.iter().any(|net| net.contains(&peer.ip())));
    from_trusted_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, under `path`, `Secure` over TLS;
/// `max_age` zero deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: i64, tls: bool) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path(path)
        .secure(tls)
        .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)));
    // Names and values are ours: base64url, digits and `.`, all valid in a header.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie for a token that lives `max_age_secs`.
pub(crate) fn session_cookie(token: &str, max_age_secs: i64, tls: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, token, COOKIE_PATH, max_age_secs, tls)
}

/// The session cookie deleted.
pub(crate) fn session_cookie_removed(tls: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", COOKIE_PATH, 0, tls)
}

/// The session of a request, if its cookie holds a valid browser-session token that is
/// admitted as the API admits tokens (user active, key present, password unchanged, address
/// allowed).
///
/// # Errors
/// The session registry could not be asked: whether the session is valid is not known (its
/// cookie must then be kept).
pub(crate) async fn session_of(parts: &Parts, state: &AppState) -> Result<Option<UiSession>, ApiError> {
    let Some(raw) = cookie_value(&parts.headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let addr = client_addr(&parts.extensions, &parts.headers, &state.inner.trusted_proxies);
    let caller = match Caller::admit(&raw, addr, state).await {
        Ok(caller) => caller,
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => return Err(e),
        Err(_) => return Ok(None),
    };
    // An API token copied into the cookie is not a dashboard session: it was never given to
    // a browser, and the page's protections were not made for it.
    if !caller.token.is_browser_session() {
        return Ok(None);
    }
    Ok(Some(UiSession { csrf: csrf_of(&raw), caller }))
}

/// Without a valid session, a page sends the browser to the login form (and drops a stale
/// cookie); an action is refused.
impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match session_of(parts, state).await {
            Ok(Some(session)) => return Ok(session),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e.message, "dashboard: the session registry is unavailable");
                return Err(layout::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "Try again in a moment",
                    "The server cannot check sessions right now. You are still logged in.",
                ));
            }
        }
        let tls = over_tls(parts, state);
        let stale = cookie_value(&parts.headers, SESSION_COOKIE).is_some();
        let mut response = if parts.method == Method::GET || parts.method == Method::HEAD {
            layout::redirect(if stale { "/ui/login?ended=1" } else { "/ui/login" })
        } else {
            layout::error_page(
                StatusCode::UNAUTHORIZED,
                None,
                "Not logged in",
                "Your session has ended or was never opened. Log in again and repeat what you did.",
            )
        };
        if stale {
            response.headers_mut().append(header::SET_COOKIE, session_cookie_removed(tls));
        }
        Err(response)
    }
}

/// The session of a page that also serves visitors without one (the login form, badges).
#[derive(Debug)]
pub(crate) struct MaybeSession(pub(crate) Option<UiSession>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Without the registry, a page that serves visitors anyway serves one.
        Ok(MaybeSession(session_of(parts, state).await.ok().flatten()))
    }
}

/// Whether the request is over TLS, for handlers that set cookies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tls(pub(crate) bool);

impl FromRequestParts<AppState> for Tls {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Tls(over_tls(parts, state)))
    }
}

/// A refusal of a form whose CSRF token is missing or not this session's.
pub(crate) fn csrf_refused(session: Option<&UiSession>) -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        session,
        "Form refused",
        "This form did not come from your dashboard page (its security token is missing or belongs to another \
         session). Reload the page and try again.",
    )
    .into_response()
}
