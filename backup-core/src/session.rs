//! The sessions registry: every token the policy issues is recorded, so it can be listed and
//! revoked; a token whose session is missing, revoked or expired is refused.

use serde::{Deserialize, Serialize};

use crate::id::SessionId;
use crate::time::Timestamp;

/// A registered token.
///
/// ```
/// use backup_core::{Session, SessionId, Timestamp};
/// use chrono::Duration;
///
/// let now = Timestamp::UNIX_EPOCH;
/// let s = Session::new(SessionId::of_token("t"), "alice", now, now + Duration::hours(6), "Login")
///     .with_access_key("ci")
///     .with_single_use(true);
/// assert!(s.is_active(now) && !s.is_active(now + Duration::hours(6)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The hex SHA-256 of the token.
    pub id: SessionId,
    /// The user it was issued to.
    pub user: String,
    /// The access key it was issued for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The address the login came from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_addr: Option<String>,
    /// Why it was issued ("Login", "one-time upload", …).
    pub description: String,
    /// Valid for exactly one successful upload.
    #[serde(default)]
    pub single_use: bool,
    /// The scope the token is limited to, as the policy serialises it; none for full rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The credential (password or access key) generation the login proved, as the policy
    /// fingerprints it: a session whose credential changed since is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// When the chain of refreshes this session belongs to began (its first login): refreshes
    /// stop once the chain is older than the policy allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_started_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

impl Session {
    /// A fresh, unrevoked session.
    pub fn new(
        id: SessionId,
        user: impl Into<String>,
        issued_at: impl Into<Timestamp>,
        expires_at: impl Into<Timestamp>,
        description: impl Into<String>,
    ) -> Self {
        Session {
            id,
            user: user.into(),
            access_key: None,
            issued_at: issued_at.into(),
            expires_at: expires_at.into(),
            requester_addr: None,
            description: description.into(),
            single_use: false,
            scope: None,
            credential: None,
            chain_started_at: None,
            revoked_at: None,
        }
    }

    /// Sets the access key.
    pub fn with_access_key(mut self, key: impl Into<String>) -> Self {
        self.access_key = Some(key.into());
        self
    }

    /// Sets the requester's address.
    pub fn with_requester_addr(mut self, addr: impl Into<String>) -> Self {
        self.requester_addr = Some(addr.into());
        self
    }

    /// Makes it valid for one upload only.
    pub fn with_single_use(mut self, single_use: bool) -> Self {
        self.single_use = single_use;
        self
    }

    /// Limits it to a scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Binds it to a credential generation.
    pub fn with_credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// Sets when its chain of refreshes began.
    pub fn with_chain_started_at(mut self, at: impl Into<Timestamp>) -> Self {
        self.chain_started_at = Some(at.into());
        self
    }

    /// Sets when it was revoked.
    pub fn with_revoked_at(mut self, at: Option<Timestamp>) -> Self {
        self.revoked_at = at;
        self
    }

    /// Whether the session may be used at `now`: not revoked and not expired.
    pub fn is_active(&self, now: impl Into<Timestamp>) -> bool {
        self.revoked_at.is_none() && now.into() < self.expires_at
    }
}
