//! The token types: what a token claims on the wire ([`Claims`]), what to put in a new one
//! ([`TokenRequest`]), what issuing gives ([`IssuedToken`]) and what verifying gives
//! ([`VerifiedToken`]).

use std::time::Duration;

use backup_core::{Session, SessionId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::requester::Requester;
use crate::identity::{OperationsScope, User};

/// The claims of a token. The names of backup-repository's claims are kept (`login`,
/// `accessKeyName`, `operationsScope`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) sub: String,
    pub(super) login: String,
    #[serde(rename = "accessKeyName", default)]
    pub(super) access_key_name: String,
    #[serde(rename = "operationsScope", default, skip_serializing_if = "Option::is_none")]
    pub(super) operations_scope: Option<OperationsScope>,
    pub(super) jti: String,
    pub(super) iat: i64,
    pub(super) exp: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) single_use: bool,
    /// A browser session's token, carried in a cookie (see [`TokenRequest::browser_session`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) browser: bool,
}

/// What to put in a new token.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// Limit the token to these objects and roles (it can only narrow the user's rights).
    pub scope: Option<OperationsScope>,
    /// Valid for exactly one successful upload.
    pub single_use: bool,
    /// A browser session's token (see [`TokenRequest::browser_session`]).
    pub browser_session: bool,
    /// A lifetime other than the service's (at most that).
    pub lifetime: Option<Duration>,
    /// Where the login came from.
    pub requester_addr: Option<String>,
    /// Why it is issued ("Login" when empty).
    pub description: String,
    /// For a refresh: when the chain of refreshes began (the login). A chain ends
    /// [`crate::TokenService::max_chain`] after its login, however often it is refreshed.
    pub chain_started_at: Option<backup_core::Timestamp>,
}

impl TokenRequest {
    /// A plain login token.
    pub fn login() -> Self {
        TokenRequest { description: "Login".into(), ..Self::default() }
    }

    /// Limits it to a scope.
    pub fn with_scope(mut self, scope: OperationsScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Makes it single-use.
    pub fn single_use(mut self) -> Self {
        self.single_use = true;
        self
    }

    /// Marks it as a browser session's: a token a web page keeps in a cookie. It is registered
    /// and revoked like any other, and [`VerifiedToken::is_browser_session`] tells it apart,
    /// so an API that reads bearer tokens can refuse it and a page can refuse anything else
    /// (a cookie is sent by the browser on its own, a bearer token only by a client that
    /// chose to: each is accepted only where its protections apply).
    pub fn browser_session(mut self) -> Self {
        self.browser_session = true;
        self
    }

    /// Records the requester's address.
    pub fn from_addr(mut self, addr: impl Into<String>) -> Self {
        self.requester_addr = Some(addr.into());
        self
    }

    /// Shortens its lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// A refresh of `token`: same chain (and so the same end of chain).
    pub fn refreshing(mut self, token: &VerifiedToken) -> Self {
        self.chain_started_at = Some(token.chain_started_at);
        self
    }
}

/// A token just issued, and its session.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token to give the client.
    pub token: String,
    /// Its registration.
    pub session: Session,
}

/// A token that passed every check: signature, algorithm, key, expiry, registration. Put it
/// into [`backup_core::Actor::extensions`] for the [`crate::PolicyAuthorizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub(super) user: String,
    pub(super) access_key: Option<String>,
    pub(super) scope: OperationsScope,
    pub(super) session: SessionId,
    pub(super) single_use: bool,
    pub(super) browser_session: bool,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) credential: Option<String>,
    pub(super) chain_started_at: backup_core::Timestamp,
}

impl VerifiedToken {
    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The access key the token was issued for.
    pub fn access_key(&self) -> Option<&str> {
        self.access_key.as_deref()
    }

    /// The scope (empty: not limited).
    pub fn scope(&self) -> &OperationsScope {
        &self.scope
    }

    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Whether it is valid for one upload only.
    pub fn is_single_use(&self) -> bool {
        self.single_use
    }

    /// Whether it is a browser session's token ([`TokenRequest::browser_session`]).
    pub fn is_browser_session(&self) -> bool {
        self.browser_session
    }

    /// When it expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The fingerprint of the credential its login proved (see [`User::credential`]).
    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// When the login that began its chain of refreshes happened.
    pub fn chain_started_at(&self) -> backup_core::Timestamp {
        self.chain_started_at
    }

    /// Whether it carries less than its user's rights: an access key's, a scope, or a
    /// one-time upload token.
    pub fn is_narrowed(&self) -> bool {
        self.access_key.is_some() || self.scope.is_limiting() || self.single_use
    }

    /// `user` (this token's) as far as the token may act on sessions: a narrowed token (an
    /// access key's, a scoped or a one-time one) sees and revokes only its own session, and
    /// carries none of the user's global roles. Pass this as the requester of
    /// [`crate::TokenService::sessions`], [`crate::TokenService::revoke`] and
    /// [`crate::TokenService::revoke_all`] for a request made with the token.
    pub fn requester(&self, user: &User) -> Requester {
        if self.is_narrowed() { Requester::narrowed(user, self.session.clone()) } else { Requester::from(user) }
    }

    /// An engine actor for this token, with the token attached for the authorizer.
    pub fn actor(&self, client_addr: Option<std::net::IpAddr>) -> backup_core::Actor {
        let mut actor =
            backup_core::Actor::user(self.user.clone()).with_session(self.session.clone()).with_extension(self.clone());
        actor.access_key = self.access_key.clone();
        actor.client_addr = client_addr;
        actor
    }
}
