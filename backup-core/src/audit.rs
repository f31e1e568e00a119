//! The audit log: who did what to which collection, when. Kept by the catalog, appended in the
//! same transaction as the change it records.

use serde::{Deserialize, Serialize};

use crate::id::CollectionId;
use crate::time::Timestamp;

/// One entry of the audit log.
///
/// ```
/// use backup_core::{AuditEvent, Timestamp};
///
/// let e = AuditEvent::new(Timestamp::UNIX_EPOCH, "alice", "version.delete")
///     .with_collection(&"db".parse()?)
///     .with_version(3)
///     .with_detail("by hand");
/// assert_eq!((e.action.as_str(), e.version), ("version.delete", Some(3)));
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// The position in the log, assigned by the catalog (ignored on append).
    #[serde(default)]
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (a user name, `engine` for the engine's own maintenance, `configuration`
    /// for manifests).
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
    pub fn new(at: impl Into<Timestamp>, actor: impl Into<String>, action: impl Into<String>) -> Self {
        AuditEvent {
            seq: 0,
            at: at.into(),
            actor: actor.into(),
            action: action.into(),
            collection: None,
            version: None,
            detail: String::new(),
        }
    }

    /// Sets the sequence number (for catalogs reading their rows).
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// Sets the action.
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = action.into();
        self
    }

    /// Sets the collection.
    pub fn with_collection(mut self, id: &CollectionId) -> Self {
        self.collection = Some(id.clone());
        self
    }

    /// Sets the version number.
    pub fn with_version(mut self, number: u64) -> Self {
        self.version = Some(number);
        self
    }

    /// Sets the details.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}
