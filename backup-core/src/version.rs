//! Collections and versions as stored in a catalog.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::id::{CollectionId, SessionId, VersionId};
use crate::spec::CollectionSpec;

/// A collection: its id and specification, as a catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// The id.
    pub id: CollectionId,
    /// The specification.
    pub spec: CollectionSpec,
    /// When the collection was created.
    pub created_at: DateTime<Utc>,
    /// When the specification last changed.
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change of the specification.
    pub revision: u64,
}

impl Collection {
    /// A new collection at revision 1.
    pub fn new(id: CollectionId, spec: CollectionSpec, now: DateTime<Utc>) -> Self {
        Collection { id, spec, created_at: now, updated_at: now, revision: 1 }
    }
}

/// The life of a version: `Pending → Committed → Trashed → Purged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Being uploaded; invisible to listings and downloads.
    Pending,
    /// Acknowledged to the uploader; listed and downloadable.
    Committed,
    /// Removed from the collection (rotated out or deleted); its object may still exist.
    Trashed,
    /// Its object is deleted; the row stays for the record.
    Purged,
}

impl VersionState {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Committed => "committed",
            VersionState::Trashed => "trashed",
            VersionState::Purged => "purged",
        }
    }
}

impl FromStr for VersionState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "pending" => Ok(VersionState::Pending),
            "committed" => Ok(VersionState::Committed),
            "trashed" => Ok(VersionState::Trashed),
            "purged" => Ok(VersionState::Purged),
            _ => Err(Error::invalid("version state", format!("{s:?} is unknown"))),
        }
    }
}

/// Who uploaded a version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Uploader {
    /// The user name.
    pub user: String,
    /// The access key used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The session (token registration) used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
}

/// A version of a collection: an immutable, numbered upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The unique id (also the id of the upload that produced it).
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The number: consecutive among committed versions, in commit order, never reused.
    pub number: u64,
    /// The download filename (the collection's template rendered with the number).
    pub filename: String,
    /// The object key in the blob store; fresh for every upload.
    pub object_key: String,
    /// The size in bytes.
    pub size: u64,
    /// The digest of the bytes.
    pub digest: Digest,
    /// When the server began to receive it (its clock, never a client's).
    pub created_at: DateTime<Utc>,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// Who uploaded it.
    pub uploader: Uploader,
    /// Its state.
    pub state: VersionState,
    /// When it left the collection, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trashed_at: Option<DateTime<Utc>>,
    /// Why it left the collection (the rotation reason, or a deletion), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash_reason: Option<String>,
    /// When its object was deleted, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<DateTime<Utc>>,
}

/// An upload in flight: a pending version row with its reservation and lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    /// The id the version will have.
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The object key being written.
    pub object_key: String,
    /// The most bytes this upload may commit.
    pub reserved: u64,
    /// The part of `reserved` above the soft limit, drawn from the shared extra space.
    pub pool_share: u64,
    /// When the upload began.
    pub created_at: DateTime<Utc>,
    /// The lease: after this instant the upload is abandoned and `recover()` aborts it.
    pub lease_until: DateTime<Utc>,
    /// Who uploads.
    pub uploader: Uploader,
}

impl PendingUpload {
    /// Whether the lease is still running at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.lease_until
    }
}

/// Which version to fetch: `latest`, `N` or `vN`.
///
/// ```
/// use backup_core::VersionSelector;
///
/// assert_eq!("latest".parse::<VersionSelector>()?, VersionSelector::Latest);
/// assert_eq!("v21".parse::<VersionSelector>()?, VersionSelector::Number(21));
/// assert_eq!("21".parse::<VersionSelector>()?, VersionSelector::Number(21));
/// assert!("v0".parse::<VersionSelector>().is_err());
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// The committed version with the highest number.
    Latest,
    /// The version with this number.
    Number(u64),
}

impl FromStr for VersionSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "latest" {
            return Ok(VersionSelector::Latest);
        }
        let digits = s.strip_prefix('v').unwrap_or(s);
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("version selector", format!("{:?} is not latest, N or vN", truncate(s))));
        }
        match digits.parse::<u64>() {
            Ok(0) | Err(_) => Err(Error::invalid("version selector", "version numbers start at 1")),
            Ok(n) => Ok(VersionSelector::Number(n)),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSelector::Latest => f.write_str("latest"),
            VersionSelector::Number(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_refuse_garbage() {
        for bad in ["", "v", "-1", "0", "v0", "1.5", "first", "v 1", "99999999999999999999", "1e3", "+1"] {
            let e = bad.parse::<VersionSelector>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert_eq!("007".parse::<VersionSelector>().unwrap(), VersionSelector::Number(7));
    }
}
