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

use crate::http::caller::{Caller, client_addr};
use crate::http::json::ApiError;
use crate::state::AppState;
use crate::ui::layout;

/// The session cookie over plain HTTP. The API reads only its own `jwt` cookie, and refuses
/// this cookie's token anywhere else (it is marked a browser session's).
pub(crate) const SESSION_COOKIE: &str = "backup_ui";

/// The session cookie over TLS: the `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`, so neither a sibling subdomain nor a plain-HTTP
/// page of the same host can set or replace it.
pub(crate) const TLS_SESSION_COOKIE: &str = "__Host-backup_ui";

/// The login form's CSRF cookie over plain HTTP: a random value the form must repeat.
pub(crate) const LOGIN_COOKIE: &str = "backup_ui_login";

/// The login form's CSRF cookie over TLS (see [`TLS_SESSION_COOKIE`]).
pub(crate) const TLS_LOGIN_COOKIE: &str = "__Host-backup_ui_login";

/// Where the session cookie is sent over plain HTTP: the dashboard only. (`__Host-` cookies
/// are sent everywhere, `Path=/`; the API reads none of them.)
const COOKIE_PATH: &str = "/ui";

/// Where the login form's cookie is sent over plain HTTP.
const LOGIN_PATH: &str = "/ui/login";

/// The dashboard's cookies on one transport. Over TLS they carry the `__Host-` prefix; over
/// plain HTTP (a loopback deployment, where a `Secure` cookie would never come back) they
/// cannot, and keep the plain names under `/ui`. Each transport reads only its own names: a
/// plain cookie that a network attacker planted over HTTP is ignored by the TLS dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cookies {
    tls: bool,
}

impl Cookies {
    pub(crate) fn new(tls: bool) -> Self {
        Cookies { tls }
    }

    /// The session cookie's name.
    pub(crate) fn session(self) -> &'static str {
        if self.tls { TLS_SESSION_COOKIE } else { SESSION_COOKIE }
    }

    /// The login form's cookie's name.
    pub(crate) fn login(self) -> &'static str {
        if self.tls { TLS_LOGIN_COOKIE } else { LOGIN_COOKIE }
    }

    /// The session cookie for a token that lives `max_age_secs`.
    pub(crate) fn session_set(self, token: &str, max_age_secs: i64) -> HeaderValue {
        self.build(self.session(), token, COOKIE_PATH, max_age_secs)
    }

    /// The session cookie deleted.
    pub(crate) fn session_removed(self) -> HeaderValue {
        self.build(self.session(), "", COOKIE_PATH, 0)
    }

    /// The login form's cookie with `value`, for `max_age_secs` (zero deletes it).
    pub(crate) fn login_set(self, value: &str, max_age_secs: i64) -> HeaderValue {
        self.build(self.login(), value, LOGIN_PATH, max_age_secs)
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`; over TLS `Secure` and `Path=/` (as
    /// `__Host-` requires), else under `plain_path`; `max_age` zero deletes it.
    fn build(self, name: &str, value: &str, plain_path: &str, max_age_secs: i64) -> HeaderValue {
        let cookie = Cookie::build((name, value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path(if self.tls { "/" } else { plain_path })
            .secure(self.tls)
            .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)));
        // Names and values are ours: base64url, digits and `.`, all valid in a header.
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

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

impl layout::Viewer for UiSession {
    fn user(&self) -> &str {
        UiSession::user(self)
    }

    fn access_key(&self) -> Option<&str> {
        UiSession::access_key(self)
    }

    fn csrf(&self) -> &str {
        &self.csrf
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
/// in front says in `X-Forwarded-Proto`. Cookies are then `Secure` and `__Host-` named.
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

/// The session of a request, if its cookie holds a valid browser-session token that is
/// admitted as the API admits tokens (user active, key present, password unchanged, address
/// allowed).
///
/// # Errors
/// The session registry could not be asked: whether the session is valid is not known (its
/// cookie must then be kept).
pub(crate) async fn session_of(parts: &Parts, state: &AppState) -> Result<Option<UiSession>, ApiError> {
    let cookies = Cookies::new(over_tls(parts, state));
    let Some(raw) = cookie_value(&parts.headers, cookies.session()).filter(|v| !v.is_empty()) else {
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
        let cookies = Cookies::new(over_tls(parts, state));
        let stale = cookie_value(&parts.headers, cookies.session()).is_some();
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
            response.headers_mut().append(header::SET_COOKIE, cookies.session_removed());
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

/// The cookies of the request's transport, for handlers that set them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transport(pub(crate) Cookies);

impl FromRequestParts<AppState> for Transport {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Transport(Cookies::new(over_tls(parts, state))))
    }
}

/// A refusal of a form whose CSRF token is missing or not this session's.
pub(crate) fn csrf_refused(session: Option<&UiSession>) -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        session.map(|s| s as &dyn layout::Viewer),
        "Form refused",
        "This form did not come from your dashboard page (its security token is missing or belongs to another \
         session). Reload the page and try again.",
    )
    .into_response()
}
