//! Who calls: the client address (behind trusted proxies), and the verified bearer token.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use backup_core::Actor;
use backup_policy::{Rejection, User, VerifiedToken, client_address};
use ipnet::IpNet;

use crate::http::json::ApiError;
use crate::state::AppState;

/// The client's address: the peer, or what a trusted proxy says in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions, &parts.headers, &state.inner.trusted_proxies)))
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, what the
/// `X-Forwarded-For` lines say (every line, in order: a proxy may add its own line after the
/// client's). Without a known peer (the router served without connect info) the address is
/// unspecified, which no allow-list matches: address checks fail closed.
pub(crate) fn client_addr(extensions: &Extensions, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
        return IpAddr::from(Ipv6Addr::UNSPECIFIED);
    };
    let lines: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    client_address(peer.ip(), forwarded.as_deref(), trusted)
}

/// An authenticated caller: the verified token, the actor for the engine, the user record.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) token: VerifiedToken,
    pub(crate) actor: Actor,
    pub(crate) user: User,
    pub(crate) addr: IpAddr,
}

/// The bearer token: `Authorization: Bearer …`, else `?token=`, else the `jwt` cookie.
fn token_of(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim().to_owned());
        }
    }
    if let Some(q) = parts.uri.query() {
        for pair in q.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some(t.to_owned());
            }
        }
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .find_map(|c| c.trim().strip_prefix("jwt=").map(str::to_owned))
}

impl Caller {
    /// Verifies the bearer token and admits it: the user exists and is active, the key is
    /// still there, the password or key did not change since the login, the address is
    /// allowed ([`backup_policy::PolicySet::admit`]).
    async fn from_token(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = client_addr(&parts.extensions, &parts.headers, &state.inner.trusted_proxies);
        let Some(raw) = token_of(parts) else {
            // gin-jwt's last lookup (the cookie) names the failure.
            return Err(ApiError::jwt(StatusCode::UNAUTHORIZED, "cookie token is empty"));
        };
        let caller = Caller::admit(&raw, addr, state).await?;
        // A dashboard session's token lives in a cookie that only the dashboard reads, behind
        // its CSRF checks; the API accepts what it accepted before the dashboard existed.
        if caller.token.is_browser_session() {
            return Err(ApiError::jwt(
                StatusCode::UNAUTHORIZED,
                "a dashboard session is not an API token: log in at /api/stable/auth/login",
            ));
        }
        Ok(caller)
    }

    /// Verifies a raw token from `addr` and admits it (see [`Caller::from_token`]), whatever
    /// carried it: the API's bearer token or the dashboard's cookie.
    pub(crate) async fn admit(raw: &str, addr: IpAddr, state: &AppState) -> Result<Self, ApiError> {
        let forbidden = || ApiError::jwt(StatusCode::FORBIDDEN, "you don't have permission to access this resource");
        let token = state.inner.tokens.verify_token(raw).await.map_err(|r| match r.kind {
            Rejection::Revoked | Rejection::Unregistered => forbidden(),
            Rejection::Unavailable => {
                ApiError::jwt(StatusCode::SERVICE_UNAVAILABLE, "the session registry is unavailable")
            }
            // backup-repository's texts (gin-jwt's and golang-jwt's).
            Rejection::Expired => ApiError::jwt(StatusCode::UNAUTHORIZED, "Token is expired"),
            Rejection::BadSignature => ApiError::jwt(StatusCode::UNAUTHORIZED, "signature is invalid"),
            Rejection::BadAlgorithm => ApiError::jwt(StatusCode::UNAUTHORIZED, "invalid signing algorithm"),
            Rejection::Malformed if raw.split('.').count() != 3 => {
                ApiError::jwt(StatusCode::UNAUTHORIZED, "token contains an invalid number of segments")
            }
            _ => ApiError::jwt(StatusCode::UNAUTHORIZED, r.reason),
        })?;
        let set = state.inner.directory.snapshot();
        // A deleted user's token is refused cleanly (backup-repository panicked), and so is
        // a token whose password or key changed since its login.
        let user = match set.admit(&token, Some(addr)) {
            Ok(user) => user.clone(),
            Err(e) if e.kind() == backup_policy::ErrorKind::PermissionDenied => {
                return Err(ApiError::jwt(
                    StatusCode::FORBIDDEN,
                    "you don't have permission to access this resource from this address",
                ));
            }
            Err(_) => return Err(forbidden()),
        };
        let actor = token.actor(Some(addr));
        Ok(Caller { token, actor, user, addr })
    }
}

/// Any token but a one-time upload token, which may upload once and do nothing else.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_token(parts, state).await?;
        if caller.token.is_single_use() {
            return Err(ApiError::jwt(StatusCode::FORBIDDEN, "a one-time upload token may only upload"));
        }
        Ok(caller)
    }
}

/// The caller of the upload route: any token, one-time upload tokens included.
#[derive(Debug, Clone)]
pub(crate) struct UploadCaller(pub(crate) Caller);

impl FromRequestParts<AppState> for UploadCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Caller::from_token(parts, state).await.map(UploadCaller)
    }
}
