//! The sessions registry (issued tokens) and the audit log, both kept by the catalog.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{CollectionId, SessionId};

/// A registered token: every token the policy issues is recorded so it can be listed and
/// revoked; a token whose session is missing, revoked or expired is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The hex SHA-256 of the token.
    pub id: SessionId,
    /// The user it was issued to.
    pub user: String,
    /// The access key it was issued for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
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
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    /// A fresh, unrevoked session.
    pub fn new(
        id: SessionId,
        user: impl Into<String>,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        description: impl Into<String>,
    ) -> Self {
        Session {
            id,
            user: user.into(),
            access_key: None,
            issued_at,
            expires_at,
            requester_addr: None,
            description: description.into(),
            single_use: false,
            scope: None,
            revoked_at: None,
        }
    }

    /// Whether the session may be used at `now`: not revoked and not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// One entry of the audit log: who did what to which collection, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The position in the log, assigned by the catalog (ignored on append).
    #[serde(default)]
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it (a user name, or `engine` for the engine's own maintenance).
    pub actor: String,
    /// What was done (`collection.create`, `version.delete`, `session.revoke`, …).
    pub action: String,
    /// The collection, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<CollectionId>,
    /// The version number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Free-form details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl AuditEvent {
    /// An event without collection, version or detail.
    pub fn new(at: DateTime<Utc>, actor: impl Into<String>, action: impl Into<String>) -> Self {
        AuditEvent {
            seq: 0,
            at,
            actor: actor.into(),
            action: action.into(),
            collection: None,
            version: None,
            detail: String::new(),
        }
    }

    /// Sets the collection.
    pub fn collection(mut self, id: &CollectionId) -> Self {
        self.collection = Some(id.clone());
        self
    }

    /// Sets the version number.
    pub fn version(mut self, number: u64) -> Self {
        self.version = Some(number);
        self
    }

    /// Sets the details.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}
