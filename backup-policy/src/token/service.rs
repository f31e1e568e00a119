//! [`TokenService`]: issues tokens and keeps each as a session in the catalog's registry,
//! verifies them against it, and lists and revokes sessions for their users.

use std::sync::Arc;
use std::time::Duration;

use backup_core::catalog::{Catalog, CatalogExt};
use backup_core::{AuditEvent, Clock, Session, SessionId};

use super::claims::{Claims, IssuedToken, TokenRequest, VerifiedToken};
use super::key::{KeyRing, TokenKey};
use super::rejection::{Rejection, TokenRejection};
use super::requester::Requester;
use crate::error::{Error, Result};
use crate::identity::{OperationsScope, User};
use crate::role::Role;

/// How long tokens live unless configured: 6 hours, as in backup-repository.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// How long a chain of refreshed tokens lives after its login unless configured: 24 hours.
pub const DEFAULT_MAX_CHAIN: Duration = Duration::from_secs(24 * 3600);

/// Issues and verifies tokens; every token is registered as a session in the catalog.
#[derive(Debug, Clone)]
pub struct TokenService {
    keys: KeyRing,
    lifetime: Duration,
    max_chain: Duration,
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
}

impl TokenService {
    /// Signs with `key`; tokens live [`DEFAULT_LIFETIME`].
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] when `key` cannot sign (a public key only).
    pub fn new(key: TokenKey, catalog: Arc<dyn Catalog>, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(TokenService {
            keys: KeyRing::new(key)?,
            lifetime: DEFAULT_LIFETIME,
            max_chain: DEFAULT_MAX_CHAIN,
            catalog,
            clock,
        })
    }

    /// Sets how long tokens live.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for zero or more than a year.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self> {
        if lifetime.is_zero() || lifetime > Duration::from_secs(366 * 24 * 3600) {
            return Err(Error::invalid("token lifetime", "must be between 1 s and a year"));
        }
        self.lifetime = lifetime;
        Ok(self)
    }

    /// Sets how long a chain of refreshes may go on after its login.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for zero or more than a year.
    pub fn with_max_chain(mut self, max_chain: Duration) -> Result<Self> {
        if max_chain.is_zero() || max_chain > Duration::from_secs(366 * 24 * 3600) {
            return Err(Error::invalid("refresh chain", "must be between 1 s and a year"));
        }
        self.max_chain = max_chain;
        Ok(self)
    }

    /// How long a chain of refreshes may go on after its login.
    pub fn max_chain(&self) -> Duration {
        self.max_chain
    }

    /// Also accepts tokens signed with an older key (key rotation).
    pub fn accepting(mut self, retired: TokenKey) -> Self {
        self.keys.accept(retired);
        self
    }

    /// The default lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Issues a token for an authenticated user and registers its session, bound to the
    /// credential the login proved (a changed password or key ends it) and to its chain of
    /// refreshes (which ends [`TokenService::max_chain`] after the login).
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] for an access key the user does not have, or a
    /// refresh past the end of its chain; [`Error::Core`] if the session cannot be registered
    /// (a token that could not be registered is never handed out).
    pub async fn issue(&self, user: &User, access_key: Option<&str>, request: TokenRequest) -> Result<IssuedToken> {
        let now = backup_core::Timestamp::from(self.clock.now());
        let credential = user.credential(access_key).ok_or_else(|| {
            Error::unauthenticated(format!("user {} has no access key {}", user.name, access_key.unwrap_or_default()))
        })?;
        let chain_started_at = request.chain_started_at.unwrap_or(now);
        let chain_ends = chain_started_at
            + chrono::Duration::from_std(self.max_chain).map_err(|e| Error::invalid("refresh chain", e.to_string()))?;
        if chain_ends <= now {
            return Err(Error::unauthenticated(format!(
                "this token's refreshes began at {chain_started_at}, longer ago than {}s: log in again",
                self.max_chain.as_secs()
            )));
        }
        let lifetime = request.lifetime.map_or(self.lifetime, |l| l.min(self.lifetime));
        let expires_at = (now
            + chrono::Duration::from_std(lifetime).map_err(|e| Error::invalid("token lifetime", e.to_string()))?)
        .min(chain_ends);
        let scope = request.scope.filter(OperationsScope::is_limiting);
        let claims = Claims {
            sub: user.name.clone(),
            login: user.name.clone(),
            access_key_name: access_key.unwrap_or_default().to_owned(),
            operations_scope: scope.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now.to_datetime().timestamp(),
            exp: expires_at.to_datetime().timestamp(),
            single_use: request.single_use,
            browser: request.browser_session,
        };
        let token = self.keys.sign(&claims)?;
        let mut session = Session::new(
            SessionId::of_token(&token),
            user.name.clone(),
            now,
            expires_at,
            if request.description.is_empty() { "Login".to_owned() } else { request.description },
        )
        .with_single_use(request.single_use)
        .with_credential(credential)
        .with_chain_started_at(chain_started_at);
        session.access_key = access_key.map(str::to_owned);
        session.requester_addr = request.requester_addr;
        session.scope = scope.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
        // Every token issued is in the audit log, in the step that registers it: a login, a
        // refresh, a one-time upload token.
        let mut detail = format!("{}: session {}, until {}", session.description, session.id, session.expires_at);
        if let Some(k) = &session.access_key {
            detail.push_str(&format!(", access key {k}"));
        }
        if let Some(addr) = &session.requester_addr {
            detail.push_str(&format!(", from {addr}"));
        }
        let audit = AuditEvent::new(now, user.name.clone(), "session.issue").with_detail(detail);
        self.catalog.issue_session(&session, &audit).await?;
        Ok(IssuedToken { token, session })
    }

    /// Verifies a token: its size, algorithm (never `none`, only the key's own), key id,
    /// signature, expiry at the clock's `now`, and that its session is registered, not revoked
    /// and not expired.
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] with the reason for any failed check; [`Error::Core`] when
    /// the catalog cannot be asked.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken> {
        self.verify_token(token).await.map_err(Error::from)
    }

    /// [`TokenService::verify`], telling why a token was refused (an HTTP layer answers a
    /// revoked token differently from a malformed one).
    ///
    /// # Errors
    /// The [`TokenRejection`].
    pub async fn verify_token(&self, token: &str) -> std::result::Result<VerifiedToken, TokenRejection> {
        let now = self.clock.now();
        let claims = self.keys.decode(token, now)?;
        let session = match self.catalog.get_session(&SessionId::of_token(token)).await {
            Ok(s) => s,
            Err(e) if e.kind() == backup_core::ErrorKind::NotFound => {
                return Err(TokenRejection::new(
                    Rejection::Unregistered,
                    "the token is not registered (never issued here, or its records were lost)",
                ));
            }
            Err(e) => return Err(TokenRejection::new(Rejection::Unavailable, e.to_string())),
        };
        if session.revoked_at.is_some() {
            return Err(TokenRejection::new(Rejection::Revoked, "the token was revoked"));
        }
        if !session.is_active(now) {
            return Err(TokenRejection::new(Rejection::Expired, "the token expired"));
        }
        let access_key = (!claims.access_key_name.is_empty()).then_some(claims.access_key_name);
        if session.user != claims.sub || session.access_key != access_key {
            return Err(TokenRejection::new(Rejection::Unregistered, "the token does not match its registration"));
        }
        Ok(VerifiedToken {
            user: claims.sub,
            access_key,
            scope: claims.operations_scope.unwrap_or_default(),
            session: session.id,
            single_use: claims.single_use,
            browser_session: claims.browser,
            expires_at: session.expires_at.to_datetime(),
            chain_started_at: session.chain_started_at.unwrap_or(session.issued_at),
            credential: session.credential,
        })
    }

    /// The session a verified token belongs to, as the registry holds it now (its
    /// description, address, expiry, revocation).
    ///
    /// # Errors
    /// [`Error::Core`] with `NotFound` when the registry no longer has it; the catalog's.
    pub async fn session_of(&self, token: &VerifiedToken) -> Result<Session> {
        Ok(self.catalog.get_session(token.session()).await?)
    }

    /// The sessions of `user` (the requester's own when `None`), newest first: a user sees
    /// their own, a `systemAdmin` anyone's, a narrowed token only its own session.
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`] for someone else's sessions without `systemAdmin`.
    pub async fn sessions(
        &self,
        requester: impl Into<Requester>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Session>> {
        let requester = requester.into();
        let me = requester.user();
        let of = user.unwrap_or(&me.name);
        if of != me.name && !me.roles.contains(&Role::SystemAdmin) {
            return Err(Error::denied("no permissions to act as other user"));
        }
        if let Some(own) = requester.only_session() {
            return Ok(vec![self.catalog.get_session(own).await?]);
        }
        Ok(self.catalog.list_sessions(Some(of), limit).await?)
    }

    /// Revokes one session: the owner's own, or anyone's for a `systemAdmin`; a narrowed token
    /// only its own. For others, an unknown session and someone else's are refused alike
    /// (nothing to enumerate).
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`]; [`Error::Core`] with `NotFound` (for a `systemAdmin`).
    pub async fn revoke(&self, requester: impl Into<Requester>, session: &SessionId) -> Result<Session> {
        let requester = requester.into();
        let me = requester.user();
        let denied = || Error::denied("you don't have permissions to revoke session of other user");
        if requester.only_session().is_some_and(|own| own != session) {
            return Err(denied());
        }
        let admin = me.roles.contains(&Role::SystemAdmin);
        let owner = match self.catalog.get_session(session).await {
            Ok(s) => Some(s.user),
            Err(e) if e.kind() == backup_core::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        match owner {
            Some(u) if u == me.name || admin => {}
            None if admin => return Err(backup_core::Error::SessionNotFound { session: session.to_string() }.into()),
            _ => return Err(denied()),
        }
        let audit =
            AuditEvent::new(self.clock.now(), me.name.clone(), "session.revoke").with_detail(session.to_string());
        Ok(self.catalog.revoke_session(session, &audit).await?)
    }

    /// Revokes every active session of `user`: their own, or anyone's for a `systemAdmin`;
    /// never for a narrowed token.
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`].
    pub async fn revoke_all(&self, requester: impl Into<Requester>, user: &str) -> Result<u64> {
        let requester = requester.into();
        let me = requester.user();
        if requester.only_session().is_some() || (user != me.name && !me.roles.contains(&Role::SystemAdmin)) {
            return Err(Error::denied("you don't have permissions to revoke sessions of other users"));
        }
        let audit =
            AuditEvent::new(self.clock.now(), me.name.clone(), "session.revoke_all").with_detail(user.to_owned());
        Ok(self.catalog.revoke_user_sessions(user, &audit).await?)
    }
}
