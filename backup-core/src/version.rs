//! Collections and versions as stored in a catalog.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::id::{CollectionId, SessionId, VersionId};
use crate::lock::VersionLock;
use crate::spec::CollectionSpec;
use crate::time::Timestamp;

/// A collection: its id and specification, as a catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Collection {
    /// The id.
    pub id: CollectionId,
    /// The specification.
    pub spec: CollectionSpec,
    /// When the collection was created.
    pub created_at: Timestamp,
    /// When the specification last changed.
    pub updated_at: Timestamp,
    /// Incremented by every change of the specification.
    pub revision: u64,
}

impl Collection {
    /// A new collection at revision 1.
    pub fn new(id: CollectionId, spec: CollectionSpec, now: impl Into<Timestamp>) -> Self {
        let now = now.into();
        Collection { id, spec, created_at: now, updated_at: now, revision: 1 }
    }

    /// Sets the revision (for catalogs reading their rows).
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = revision;
        self
    }

    /// Sets when the spec last changed.
    pub fn with_updated_at(mut self, at: impl Into<Timestamp>) -> Self {
        self.updated_at = at.into();
        self
    }

    /// The same collection with another spec, one revision later.
    pub fn with_new_spec(&self, spec: CollectionSpec, now: impl Into<Timestamp>) -> Self {
        Collection { spec, updated_at: now.into(), revision: self.revision + 1, ..self.clone() }
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
    /// Its object is deleted (or being deleted: a tombstone says so); the row stays for the
    /// record.
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
#[non_exhaustive]
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

impl Uploader {
    /// A user, without access key or session.
    pub fn user(user: impl Into<String>) -> Self {
        Uploader { user: user.into(), access_key: None, session: None }
    }

    /// Sets the access key.
    pub fn with_access_key(mut self, key: Option<String>) -> Self {
        self.access_key = key;
        self
    }

    /// Sets the session.
    pub fn with_session(mut self, session: Option<SessionId>) -> Self {
        self.session = session;
        self
    }
}

/// A version of a collection: an immutable, numbered upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
    pub created_at: Timestamp,
    /// When it was committed.
    pub committed_at: Timestamp,
    /// Who uploaded it.
    pub uploader: Uploader,
    /// Its state.
    pub state: VersionState,
    /// When it left the collection, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trashed_at: Option<Timestamp>,
    /// Why it left the collection (the rotation reason, or a deletion), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trash_reason: Option<String>,
    /// When its object was given up for deletion, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<Timestamp>,
    /// Held (legal hold): no retention and no deletion removes it until the hold is lifted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Protected from retention and deletion until this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until: Option<Timestamp>,
    /// Its retention lock ([`crate::lock`]): set at commit from the collection's
    /// [`crate::LockPolicy`], lengthened on request, cleared by maintenance once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<VersionLock>,
    /// When a scrub last read it back and found its bytes intact or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
    /// Why it is quarantined (its object is damaged or missing), if it is: it stays listed,
    /// and downloads are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
    /// What the uploader recorded about the bytes (say, the refs a git bundle holds), given
    /// at upload ([`crate::UploadOptions::metadata`]) and never changed afterwards.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
}

/// The highest version number: `i64::MAX − 1`. Numbers start at 1; every catalog stores
/// them (SQL catalogs as signed 64-bit integers), and the number after the highest, which a
/// collection records as its next one, fits as well. A description, an import or a snapshot
/// naming a number outside `1..=MAX_VERSION_NUMBER` is refused ([`check_version_number`]); a
/// collection that has given out every number refuses further commits.
pub const MAX_VERSION_NUMBER: u64 = i64::MAX as u64 - 1;

/// Checks a version number that comes from outside the engine's own numbering (a description
/// read back, a version imported from another system, a catalog snapshot).
///
/// ```
/// use backup_core::{MAX_VERSION_NUMBER, check_version_number};
/// assert!(check_version_number(1).is_ok() && check_version_number(MAX_VERSION_NUMBER).is_ok());
/// for bad in [0, MAX_VERSION_NUMBER + 1, u64::MAX] {
///     assert!(check_version_number(bad).is_err());
/// }
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] naming the number when it is 0 or above [`MAX_VERSION_NUMBER`].
pub fn check_version_number(number: u64) -> Result<(), Error> {
    if (1..=MAX_VERSION_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(Error::invalid(
            "version number",
            format!("version number {number} is out of range (1 to {MAX_VERSION_NUMBER})"),
        ))
    }
}

/// The number after `number`, if `number` is a version number: what a collection records as
/// its next number once `number` is given out (it never overflows: numbers stop below
/// `u64::MAX`).
///
/// # Errors
/// As [`check_version_number`].
pub(crate) fn number_after(number: u64) -> Result<u64, Error> {
    check_version_number(number)?;
    number.checked_add(1).ok_or_else(|| Error::internal("a version number in range has a successor"))
}

/// A version's metadata: names to texts (see [`check_metadata`] for the limits).
pub type Metadata = BTreeMap<String, String>;

/// The most entries a version's metadata may have.
pub const MAX_METADATA_ENTRIES: usize = 64;

/// The most bytes a version's metadata may have, names and texts together: it lives in the
/// catalog's row and in the version's description, not in the object. A description has room
/// for the most metadata this allows, whatever its characters (JSON escapes a control
/// character in six bytes), so every version that passes [`check_metadata`] comes back in a
/// rebuild.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Checks a version's metadata: at most [`MAX_METADATA_ENTRIES`] entries and
/// [`MAX_METADATA_BYTES`] bytes; names of 1 to 64 ASCII letters, digits, `.`, `_` and `-`;
/// texts of any characters but NUL (which PostgreSQL cannot store).
///
/// # Errors
/// [`Error::InvalidInput`] naming the first entry that breaks a rule.
pub fn check_metadata(metadata: &Metadata) -> Result<(), Error> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid("metadata", format!("{} entries, at most {MAX_METADATA_ENTRIES}", metadata.len())));
    }
    let mut bytes = 0usize;
    for (name, text) in metadata {
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(Error::invalid(
                "metadata",
                format!("{name:?} is not a name of 1 to 64 ASCII letters, digits, '.', '_' or '-'"),
            ));
        }
        if text.contains('\0') {
            return Err(Error::invalid("metadata", format!("the text of {name:?} contains a NUL character")));
        }
        bytes += name.len() + text.len();
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(Error::invalid("metadata", format!("{bytes} bytes, at most {MAX_METADATA_BYTES}")));
    }
    Ok(())
}

impl Version {
    /// A committed version with the given identity and content; times at the Unix epoch,
    /// no filename and an anonymous uploader until set (for catalogs reading their rows,
    /// and for tests).
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        number: u64,
        object_key: impl Into<String>,
        size: u64,
        digest: Digest,
    ) -> Self {
        Version {
            id,
            collection,
            number,
            filename: String::new(),
            object_key: object_key.into(),
            size,
            digest,
            created_at: Timestamp::UNIX_EPOCH,
            committed_at: Timestamp::UNIX_EPOCH,
            uploader: Uploader::default(),
            state: VersionState::Committed,
            trashed_at: None,
            trash_reason: None,
            purged_at: None,
            held: false,
            protected_until: None,
            lock: None,
            verified_at: None,
            quarantined: None,
            metadata: Metadata::new(),
        }
    }

    /// Sets the filename.
    pub fn with_filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = filename.into();
        self
    }

    /// Sets when it was received and committed.
    pub fn with_times(mut self, created_at: impl Into<Timestamp>, committed_at: impl Into<Timestamp>) -> Self {
        self.created_at = created_at.into();
        self.committed_at = committed_at.into();
        self
    }

    /// Sets the uploader.
    pub fn with_uploader(mut self, uploader: Uploader) -> Self {
        self.uploader = uploader;
        self
    }

    /// Sets the state and the times and reason that go with it.
    pub fn with_state(
        mut self,
        state: VersionState,
        trashed: Option<(Timestamp, String)>,
        purged_at: Option<Timestamp>,
    ) -> Self {
        self.state = state;
        (self.trashed_at, self.trash_reason) = trashed.map_or((None, None), |(at, r)| (Some(at), Some(r)));
        self.purged_at = purged_at;
        self
    }

    /// Sets the protection: a hold and a protection deadline.
    pub fn with_protection(mut self, held: bool, protected_until: Option<Timestamp>) -> Self {
        self.held = held;
        self.protected_until = protected_until;
        self
    }

    /// Sets what the last scrub found.
    pub fn with_verification(mut self, verified_at: Option<Timestamp>, quarantined: Option<String>) -> Self {
        self.verified_at = verified_at;
        self.quarantined = quarantined;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the retention lock.
    pub fn with_lock(mut self, lock: Option<VersionLock>) -> Self {
        self.lock = lock;
        self
    }

    /// Its lock, if it still holds at `now`.
    pub fn lock_at(&self, now: Timestamp) -> Option<&VersionLock> {
        self.lock.as_ref().filter(|l| l.holds_at(now))
    }

    /// Whether it counts among a collection's protected versions: held, with a protection
    /// deadline or with a lock (ended or not, until maintenance clears them).
    pub fn has_protection(&self) -> bool {
        self.held || self.protected_until.is_some() || self.lock.is_some()
    }

    /// Whether retention and deletion must leave it alone at `now`: held, locked, or protected until
    /// a later time.
    pub fn is_protected(&self, now: Timestamp) -> bool {
        self.held || self.protected_until.is_some_and(|until| now < until) || self.lock_at(now).is_some()
    }
}

/// An upload in flight: a pending version row with its reservation and lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingUpload {
    /// The id the version will have.
    pub id: VersionId,
    /// The collection.
    pub collection: CollectionId,
    /// The object key being written.
    pub object_key: String,
    /// The most bytes this upload may commit (so far, for an upload of unknown size that
    /// reserves as its bytes arrive).
    pub reserved: u64,
    /// The part of `reserved` above the soft limit, drawn from the shared extra space.
    pub pool_share: u64,
    /// The exact size announced, when the client announced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<u64>,
    /// When the upload began.
    pub created_at: Timestamp,
    /// The lease: after this instant the upload is abandoned and `recover()` aborts it.
    pub lease_until: Timestamp,
    /// Who uploads.
    pub uploader: Uploader,
    /// The engine instance that runs the upload: it releases its own uploads when it starts
    /// again after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The store's id of the multipart upload writing the object (S3, GCS, Azure), recorded
    /// when it began: `recover()` aborts it if the upload is released, so parts a killed
    /// process left do not stay in the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
}

impl PendingUpload {
    /// A pending upload (for catalogs reading their rows, and for tests).
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        object_key: impl Into<String>,
        created_at: impl Into<Timestamp>,
        lease_until: impl Into<Timestamp>,
    ) -> Self {
        PendingUpload {
            id,
            collection,
            object_key: object_key.into(),
            reserved: 0,
            pool_share: 0,
            announced: None,
            created_at: created_at.into(),
            lease_until: lease_until.into(),
            uploader: Uploader::default(),
            owner: None,
            staging: None,
        }
    }

    /// Sets the reservation and its share of the extra space.
    pub fn with_reservation(mut self, reserved: u64, pool_share: u64, announced: Option<u64>) -> Self {
        self.reserved = reserved;
        self.pool_share = pool_share;
        self.announced = announced;
        self
    }

    /// Sets the uploader.
    pub fn with_uploader(mut self, uploader: Uploader) -> Self {
        self.uploader = uploader;
        self
    }

    /// Sets the owning engine instance.
    pub fn with_owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// Sets the store's id of the multipart upload writing the object.
    pub fn with_staging(mut self, staging: Option<String>) -> Self {
        self.staging = staging;
        self
    }

    /// Whether the lease is still running at `now`.
    pub fn is_live(&self, now: impl Into<Timestamp>) -> bool {
        now.into() < self.lease_until
    }
}

/// Why an object is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TombstoneKind {
    /// An upload that never committed: aborted, refused, or abandoned with its lease.
    Released,
    /// A version purged after it was trashed (rotated out or deleted).
    Purged,
}

impl TombstoneKind {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            TombstoneKind::Released => "released",
            TombstoneKind::Purged => "purged",
        }
    }
}

impl FromStr for TombstoneKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "released" => Ok(TombstoneKind::Released),
            "purged" => Ok(TombstoneKind::Purged),
            _ => Err(Error::invalid("tombstone kind", format!("{s:?} is unknown"))),
        }
    }
}

/// The catalog's proof that an object is its own garbage: written in the same transaction
/// that gives the object up, and kept until the object is confirmed deleted (and a grace
/// after, for a late write of an abandoned upload). `recover()` deletes only objects that
/// have one; an object without a row or a tombstone is reported, never deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tombstone {
    /// The object key.
    pub object_key: String,
    /// The collection the object belonged to.
    pub collection: CollectionId,
    /// The upload or version that wrote it.
    pub version: VersionId,
    /// Why it is garbage.
    pub kind: TombstoneKind,
    /// When it became garbage.
    pub recorded_at: Timestamp,
    /// For a released upload, the store's id of the multipart upload that wrote it, to abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
}

impl Tombstone {
    /// A tombstone.
    pub fn new(
        object_key: impl Into<String>,
        collection: CollectionId,
        version: VersionId,
        kind: TombstoneKind,
        recorded_at: impl Into<Timestamp>,
    ) -> Self {
        Tombstone {
            object_key: object_key.into(),
            collection,
            version,
            kind,
            recorded_at: recorded_at.into(),
            staging: None,
        }
    }

    /// Sets the id of the multipart upload to abort.
    pub fn with_staging(mut self, staging: Option<String>) -> Self {
        self.staging = staging;
        self
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
