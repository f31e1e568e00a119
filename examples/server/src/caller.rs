//! Who calls: the client address (behind trusted proxies), and the verified bearer token.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use backup_core::Actor;
use backup_policy::{Rejection, User, VerifiedToken, client_address};
use ipnet::IpNet;

use crate::json::ApiError;
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state).await?;
        let Some(raw) = token_of(parts) else {
            // gin-jwt's last lookup (the cookie) names the failure.
            return Err(ApiError::jwt(StatusCode::UNAUTHORIZED, "cookie token is empty"));
        };
        let token = state.inner.tokens.verify_token(&raw).await.map_err(|r| match r.kind {
            Rejection::Revoked | Rejection::Unregistered => {
                ApiError::jwt(StatusCode::FORBIDDEN, "you don't have permission to access this resource")
            }
            Rejection::Unavailable => {
                ApiError::jwt(StatusCode::SERVICE_UNAVAILABLE, "the session registry is unavailable")
            }
            Rejection::Expired => ApiError::jwt(StatusCode::UNAUTHORIZED, "Token is expired"),
            _ => ApiError::jwt(StatusCode::UNAUTHORIZED, r.reason),
        })?;
        let set = state.inner.directory.snapshot();
        // A deleted user's token is refused cleanly (backup-repository panicked).
        let Some(user) = set.users.get(token.user()).cloned() else {
            return Err(ApiError::jwt(StatusCode::FORBIDDEN, "you don't have permission to access this resource"));
        };
        if user.deactivated || token.access_key().is_some_and(|k| user.access_key(k).is_none()) {
            return Err(ApiError::jwt(StatusCode::FORBIDDEN, "you don't have permission to access this resource"));
        }
        if !user.allows_address(Some(addr)) {
            return Err(ApiError::jwt(
                StatusCode::FORBIDDEN,
                "you don't have permission to access this resource from this address",
            ));
        }
        let actor = token.actor(Some(addr));
        Ok(Caller { token, actor, user, addr })
    }
}
