//! `/api/stable/auth/*`: login, refresh, whoami, user lookup, logout, session listing.

use axum::extract::{Form, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use backup_core::SessionId;
use backup_policy::{Authenticated, Bucket, LoginName, OperationsScope, Permission, RateKey, TokenRequest, User};
use serde::Deserialize;
use serde_json::json;

use crate::api::model::granted_access;
use crate::http::caller::{Caller, ClientAddr};
use crate::http::json::{ApiError, json_response, ok};
use crate::state::AppState;

/// The login form, in whichever encoding the client sent it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    operations_scope: Option<OperationsScope>,
    /// Ours: a token valid for one successful upload.
    #[serde(default)]
    single_use: bool,
}

/// Reads the login form as Gin's `ShouldBind` does: JSON, url-encoded or multipart, by type.
async fn login_body(request: Request, state: &AppState) -> Result<LoginBody, ApiError> {
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let bad = |e: String| ApiError::bad_request(format!("cannot read the login form: {e}"));
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let Form(fields) =
            Form::<Vec<(String, String)>>::from_request(request, state).await.map_err(|e| bad(e.body_text()))?;
        return form_fields(fields);
    }
    if content_type.starts_with("multipart/form-data") {
        let mut m = Multipart::from_request(request, state).await.map_err(|e| bad(e.body_text()))?;
        let mut fields = Vec::new();
        while let Some(field) = m.next_field().await.map_err(|e| bad(e.body_text()))? {
            let name = field.name().unwrap_or_default().to_owned();
            fields.push((name, field.text().await.map_err(|e| bad(e.body_text()))?));
        }
        return form_fields(fields);
    }
    let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024).await.map_err(|e| bad(e.to_string()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(LoginBody::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

/// A login sent as form fields; `operationsScope` is then the scope's JSON, `singleUse`
/// `true` or `false`. A field that does not parse is refused rather than ignored: a client
/// that asked for a narrowed token must not get a broader one.
fn form_fields(fields: Vec<(String, String)>) -> Result<LoginBody, ApiError> {
    let bad = |e: String| ApiError::bad_request(format!("cannot read the login form: {e}"));
    let mut body = LoginBody::default();
    for (name, value) in fields {
        match name.as_str() {
            "username" => body.username = Some(value),
            "password" => body.password = Some(value),
            "operationsScope" => {
                body.operations_scope = Some(
                    serde_json::from_str(&value)
                        .map_err(|e| bad(format!("operationsScope is not a scope's JSON: {e}")))?,
                );
            }
            "singleUse" => {
                body.single_use =
                    value.parse().map_err(|_| bad(format!("singleUse is {value:?}, not true or false")))?;
            }
            _ => {}
        }
    }
    Ok(body)
}

/// `POST /api/stable/auth/login`.
pub(crate) async fn login(State(state): State<AppState>, ClientAddr(addr): ClientAddr, request: Request) -> Response {
    match login_inner(&state, addr, request).await {
        Ok(r) | Err(r) => r,
    }
}

async fn login_inner(state: &AppState, addr: std::net::IpAddr, request: Request) -> Result<Response, Response> {
    use axum::response::IntoResponse;
    let body = login_body(request, state).await.map_err(IntoResponse::into_response)?;
    let who = check_login(state, addr, body.username, body.password).await.map_err(IntoResponse::into_response)?;
    let mut request = TokenRequest::login().from_addr(addr.to_string());
    if let Some(scope) = body.operations_scope {
        request = request.with_scope(scope);
    }
    if body.single_use {
        request = request.single_use();
        request.description = "One-time upload".into();
    }
    let issued = state
        .inner
        .tokens
        .issue(&who.user, who.access_key.as_deref(), request)
        .await
        .map_err(|e| ApiError::from_policy(&e, "").into_response())?;
    Ok(ok(json!({
        "token": issued.token,
        "sessionId": issued.session.id.as_str(),
        "expire": issued.session.expires_at.to_rfc3339(),
        "msg": "Use this sessionId to revoke this token anytime",
    })))
}

/// `GET /api/stable/auth/refresh_token`: a new token with the same user, key and scope,
/// registered like any other (backup-repository's was not, and so unusable).
pub(crate) async fn refresh(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    // The new token continues the chain: it ends a day (`--token-max-refresh`) after the
    // login, however often it is refreshed. One-time tokens never get here (see `Caller`).
    let mut request = TokenRequest::login().from_addr(caller.addr.to_string()).refreshing(&caller.token);
    request.description = "Refresh".into();
    if caller.token.scope().is_limiting() {
        request = request.with_scope(caller.token.scope().clone());
    }
    let issued =
        state.inner.tokens.issue(&caller.user, caller.token.access_key(), request).await.map_err(|e| {
            match e.kind() {
                backup_policy::ErrorKind::Unauthenticated => ApiError::jwt(StatusCode::UNAUTHORIZED, e.to_string()),
                _ => ApiError::from_policy(&e, ""),
            }
        })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "code": 200, "token": issued.token, "expire": issued.session.expires_at.to_rfc3339() }),
    ))
}

fn roles(user: &User) -> Vec<&'static str> {
    user.roles.iter().map(|r| r.name()).collect()
}

/// `GET /api/stable/auth/whoami`.
pub(crate) async fn whoami(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let session = state.inner.tokens.session_of(&caller.token).await.map_err(|e| ApiError::from_policy(&e, ""))?;
    Ok(ok(json!({
        "email": caller.user.email,
        "permissions": roles(&caller.user),
        "sessionId": caller.token.session().as_str(),
        "grantedAccess": granted_access(&session),
    })))
}

/// `GET /api/stable/auth/user/{userName}`: a user manager (or administrator) sees anyone, a
/// user sees itself.
pub(crate) async fn user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let login: LoginName = name.parse().map_err(|e| ApiError::not_found(format!("IsError retrieving user: {e}")))?;
    let set = state.inner.directory.snapshot();
    let Some(target) = set.users.get(&login.user) else {
        return Err(ApiError::not_found(format!("IsError retrieving user: no user named {:?}", login.user)));
    };
    let key = caller.token.access_key().and_then(|k| caller.user.access_key(k));
    let asker = backup_policy::Asker { user: &caller.user, access_key: key, scope: Some(caller.token.scope()) };
    let manager = backup_policy::decide(&asker, None, Permission::ViewProfiles).is_ok();
    if !manager && target.email != caller.user.email {
        return Err(ApiError::forbidden("no permissions to view that user account"));
    }
    Ok(ok(json!({ "email": target.email, "permissions": roles(target) })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogoutQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// `DELETE /api/stable/auth/logout[?sessionId=…]`.
pub(crate) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<LogoutQuery>,
) -> Result<Response, ApiError> {
    let target = match q.session_id.filter(|s| !s.is_empty()) {
        None => caller.token.session().clone(),
        Some(s) => SessionId::new(s).map_err(|_| {
            ApiError::not_found("specified session identifier is not valid, cannot find GrantedAccess of specified id")
        })?,
    };
    match state.inner.tokens.revoke(&caller.token.requester(&caller.user), &target).await {
        // The session revoked, which may be another than the caller's (`?sessionId=`).
        Ok(revoked) => Ok(ok(json!({ "message": "JWT was revoked", "sessionId": revoked.id.as_str() }))),
        Err(e) if e.kind() == backup_core::ErrorKind::NotFound => Err(ApiError::not_found(
            "specified session identifier is not valid, cannot find GrantedAccess of specified id",
        )),
        Err(e) if e.kind() == backup_core::ErrorKind::PermissionDenied => {
            Err(ApiError::forbidden("you don't have permissions to revoke session of other user"))
        }
        Err(e) => Err(ApiError::from_policy(&e, "")),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokensQuery {
    #[serde(rename = "userName")]
    user_name: Option<String>,
}

/// `GET /api/stable/auth/token[?userName=…]`: the newest 100 sessions.
pub(crate) async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TokensQuery>,
) -> Result<Response, ApiError> {
    let sessions = state
        .inner
        .tokens
        .sessions(&caller.token.requester(&caller.user), q.user_name.as_deref().filter(|u| !u.is_empty()), 100)
        .await
        .map_err(|e| match e.kind() {
            backup_core::ErrorKind::PermissionDenied => ApiError::forbidden("no permissions to act as other user"),
            _ => ApiError::from_policy(&e, ""),
        })?;
    Ok(ok(json!({ "grantedAccesses": sessions.iter().map(granted_access).collect::<Vec<_>>() })))
}

/// Checks a login's name and password as the API's login does, for the API and the
/// dashboard alike: the password is checked, then the per-user limit is charged for an address
/// the user has not logged in from lately; a success remembers the address.
///
/// Every refused login gets the same answer, whatever refused it: an unknown name or key, a
/// wrong password, a deactivated user, an address outside the user's `restrictByIP`. A
/// different answer for the last two would tell a right password from a wrong one (the
/// allow-listed account could be guessed from anywhere). The real reason goes to the log and,
/// for a user of the manifests, to the audit log (`auth.login_refused`).
///
/// # Errors
/// 401 "incorrect Username or Password" for every refused login, 401 "missing Username or
/// Password" for an empty field (backup-repository's texts), 429 past the per-user limit.
pub(crate) async fn check_login(
    state: &AppState,
    addr: std::net::IpAddr,
    username: Option<String>,
    password: Option<String>,
) -> Result<Authenticated, ApiError> {
    let (Some(username), Some(password)) = (username.filter(|u| !u.is_empty()), password.filter(|p| !p.is_empty()))
    else {
        return Err(ApiError::jwt(StatusCode::UNAUTHORIZED, "missing Username or Password"));
    };
    let login: LoginName = username.parse().map_err(|_| refused_login())?;
    // The password is always checked (as long for unknown names as for known ones, and for
    // deactivated or address-restricted users as for the others), then, from an address this
    // user has not logged in from lately, the user's own limit is charged whatever the
    // outcome: guessing one user's password from many addresses is limited, the answer does
    // not tell whether the guess was right, and the user logging in from a known address is
    // never locked out by someone else's guesses.
    let outcome = state.inner.directory.authenticate(&login, &password, Some(addr)).await;
    if !state.inner.known_logins.knows(&login.user, addr) {
        state
            .inner
            .rate_limits
            .check(Bucket::Login, &RateKey::User(login.user.clone()))
            .map_err(|e| ApiError::from_policy(&e, ""))?;
    }
    let who = match outcome {
        Ok(w) => w,
        // A right password from an address outside the allow-list.
        Err(backup_policy::Error::Core(backup_core::Error::PermissionDenied { reason })) => {
            tracing::warn!(user = %login.user, access_key = ?login.access_key, client = %addr, "login refused: {reason}");
            record_refused_login(state, &login, addr, &reason);
            return Err(refused_login());
        }
        // An unknown name or key, a wrong password, a deactivated user.
        Err(backup_policy::Error::Core(backup_core::Error::Unauthenticated { reason })) => {
            tracing::info!(user = %login.user, access_key = ?login.access_key, client = %addr, "login refused: {reason}");
            record_refused_login(state, &login, addr, &reason);
            return Err(refused_login());
        }
        Err(e) => return Err(ApiError::from_policy(&e, "")),
    };
    state.inner.known_logins.remember(&login.user, addr);
    Ok(who)
}

/// The one answer of every refused login (backup-repository's text for a wrong password).
fn refused_login() -> ApiError {
    ApiError::jwt(StatusCode::UNAUTHORIZED, "incorrect Username or Password")
}

/// The real reason of a refused login of a user of the manifests, in the audit log (the
/// caller logs it). The audit event is written in the background, so a refusal of a
/// known user takes no longer to answer than one of an unknown name.
fn record_refused_login(state: &AppState, login: &LoginName, addr: std::net::IpAddr, reason: &str) {
    // Names nobody configured stay out of the audit log: anyone could fill it with them.
    if !state.inner.directory.snapshot().users.contains_key(&login.user) {
        return;
    }
    let detail = match &login.access_key {
        Some(k) => format!("{reason} (access key {k}, from {addr})"),
        None => format!("{reason} (from {addr})"),
    };
    let engine = state.inner.engine.clone();
    let event =
        backup_core::AuditEvent::new(engine.clock().now(), login.user.clone(), LOGIN_REFUSED).with_detail(detail);
    tokio::spawn(async move {
        if let Err(e) = engine.record_audit(&event).await {
            tracing::warn!(error = %e, "the refused login could not be written to the audit log");
        }
    });
}

/// The audit action of a refused login; its detail holds the reason.
pub(crate) const LOGIN_REFUSED: &str = "auth.login_refused";
