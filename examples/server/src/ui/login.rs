//! The login form, the login itself (the API's checks and limits) and the logout.

use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use backup_policy::TokenRequest;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::api::auth::check_login;
use crate::http::caller::ClientAddr;
use crate::state::AppState;
use crate::ui::layout;
use crate::ui::session::{Cookies, MaybeSession, Transport, UiSession, cookie_value, csrf_refused};

/// How long a login form may stay open before it must be reloaded.
const LOGIN_FORM_SECS: i64 = 3600;

#[derive(Debug, Deserialize)]
pub(crate) struct LoginPageQuery {
    #[serde(default)]
    ended: Option<String>,
}

/// `GET /ui/login`: the form, or the dashboard for a browser already logged in.
pub(crate) async fn form(
    MaybeSession(session): MaybeSession,
    Transport(cookies): Transport,
    Query(q): Query<LoginPageQuery>,
) -> Response {
    if session.is_some() {
        return layout::redirect("/ui/");
    }
    let notice = q.ended.is_some().then_some("You are logged out.");
    login_page(StatusCode::OK, notice, None, "", cookies)
}

/// The form with a fresh CSRF value, in its cookie and in the form.
fn login_page(
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    username: &str,
    cookies: Cookies,
) -> Response {
    let csrf = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let body = html! {
        section.login {
            h1 { "Log in" }
            p.muted { "The users and access keys of the API: a key logs in as " code { "user$key" } "." }
            @if let Some(n) = notice { p.notice { (n) } }
            @if let Some(e) = error { p.problem role="alert" { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="username" { "User" }
                input #username type="text" name="username" value=(username) autocomplete="username"
                    required autofocus[username.is_empty()];
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required
                    autofocus[!username.is_empty()];
                button type="submit" { "Log in" }
            }
        }
    };
    let mut response = layout::page(status, "Log in", None, body);
    response.headers_mut().append(header::SET_COOKIE, cookies.login_set(&csrf, LOGIN_FORM_SECS));
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/login`: the API's login checks (argon2id, per-address and per-user limits,
/// allow-lists), then a browser-session token, registered like an API token, in the
/// session cookie.
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Transport(cookies): Transport,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // The form must come from a login page this browser was given (no login forced on a
    // browser by another site).
    let expected = cookie_value(&headers, cookies.login()).unwrap_or_default();
    if expected.is_empty() || form.csrf.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return login_page(
            StatusCode::FORBIDDEN,
            None,
            Some("The login form expired or did not come from this server. Try again."),
            "",
            cookies,
        );
    }
    let who = match check_login(&state, addr, Some(form.username.clone()), Some(form.password)).await {
        Ok(who) => who,
        Err(e) => return login_page(e.status, None, Some(&e.message), &form.username, cookies),
    };
    let mut request = TokenRequest::login().browser_session().from_addr(addr.to_string());
    request.description = "Dashboard".into();
    let issued = match state.inner.tokens.issue(&who.user, who.access_key.as_deref(), request).await {
        Ok(issued) => issued,
        Err(e) => {
            tracing::error!(error = %e, "dashboard login: the session could not be registered");
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some("The session could not be registered; the server log has the details."),
                &form.username,
                cookies,
            );
        }
    };
    let lifetime = (issued.session.expires_at.to_datetime() - state.inner.engine.clock().now()).num_seconds();
    let mut response = layout::redirect("/ui/");
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, cookies.session_set(&issued.token, lifetime));
    headers.append(header::SET_COOKIE, cookies.login_set("", 0));
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// `POST /ui/logout`: the session is revoked in the catalog (its token is refused from now on,
/// by every instance) and the cookie dropped.
pub(crate) async fn logout(
    State(state): State<AppState>,
    session: UiSession,
    Transport(cookies): Transport,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session.csrf_matches(&form.csrf) {
        return csrf_refused(Some(&session));
    }
    let caller = &session.caller;
    if let Err(e) = state.inner.tokens.revoke(&caller.token.requester(&caller.user), caller.token.session()).await {
        tracing::error!(error = %e, "dashboard logout: the session could not be revoked");
        return layout::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&session),
            "Not logged out",
            "The session could not be revoked; it is still valid. Try again.",
        );
    }
    let mut response = layout::redirect("/ui/login?ended=1");
    response.headers_mut().append(header::SET_COOKIE, cookies.session_removed());
    response
}
