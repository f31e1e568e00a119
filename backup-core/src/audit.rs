//! The audit log: who did what to which collection, when. Kept by the catalog, appended in the
//! same transaction as the change it records, and hash-chained there: each event carries
//! the hash of itself and the one before it ([`AuditHash`]), so that a changed, removed or
//! reordered row no longer fits the chain ([`crate::Engine::verify_audit`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
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
    /// The event's link in the chain, assigned by the catalog with the sequence number
    /// (ignored on append; kept on import): [`AuditEvent::link`] of the previous event's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<AuditHash>,
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
            hash: None,
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

impl AuditEvent {
    /// Sets the chain hash (for catalogs reading their rows).
    pub fn with_hash(mut self, hash: AuditHash) -> Self {
        self.hash = Some(hash);
        self
    }

    /// This event's hash when it follows an event whose hash is `previous`: SHA-256 over a
    /// domain tag, `previous`, and every field (the sequence number, the time in
    /// microseconds, actor, action, collection, version, detail), each length-prefixed so
    /// that no two events encode alike.
    pub fn link(&self, previous: &AuditHash) -> AuditHash {
        let mut h = Sha256::new();
        h.update(AUDIT_LINK_TAG);
        h.update(previous.0);
        h.update(self.seq.to_be_bytes());
        h.update(self.link_tail());
        AuditHash(h.finalize().into())
    }

    /// What [`AuditEvent::link`] hashes after the tag, the previous hash and the sequence
    /// number: every other field, length-prefixed. For a catalog that computes the link in its
    /// database, where the head is (PostgreSQL: `sha256(tag || previous || int8send(seq) ||
    /// tail)`).
    pub fn link_tail(&self) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut out = Vec::with_capacity(64 + self.actor.len() + self.action.len() + self.detail.len());
        out.extend_from_slice(&self.at.as_micros().to_be_bytes());
        text(&mut out, &self.actor);
        text(&mut out, &self.action);
        match &self.collection {
            Some(c) => {
                out.push(1);
                text(&mut out, c.as_str());
            }
            None => out.push(0),
        }
        match self.version {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.push(0),
        }
        text(&mut out, &self.detail);
        out
    }

    /// This event as the next one after `head`: the next sequence number unless it has one
    /// (an import keeps its own, which must follow the head), and its hash unless it has one
    /// (an import keeps what the snapshot says, so that a snapshot's changed row stays
    /// detectable). What every catalog calls when it appends.
    ///
    /// ```
    /// use backup_core::audit::{AuditHead, AuditEvent};
    /// use backup_core::Timestamp;
    ///
    /// let first = AuditEvent::new(Timestamp::UNIX_EPOCH, "alice", "login").chained(&AuditHead::GENESIS)?;
    /// let second = AuditEvent::new(Timestamp::UNIX_EPOCH, "bob", "login").chained(&first.head()?)?;
    /// assert_eq!((first.seq, second.seq), (1, 2));
    /// assert_eq!(second.hash, Some(second.link(&first.hash.unwrap())));
    /// # Ok::<(), backup_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the event's own number does not come after the head's.
    pub fn chained(mut self, head: &AuditHead) -> Result<AuditEvent> {
        if self.seq == 0 {
            self.seq = head.seq + 1;
        } else if self.seq <= head.seq {
            return Err(Error::invalid(
                "audit event",
                format!("sequence number {} does not follow the log's last, {}", self.seq, head.seq),
            ));
        }
        if self.hash.is_none() {
            self.hash = Some(self.link(&head.hash));
        }
        Ok(self)
    }

    /// The head of a log that ends with this event, for a catalog chaining the next one: an
    /// event stored before its catalog kept hashes (and never chained by a migration) counts
    /// as [`AuditHash::ZERO`], so that appends go on; [`crate::Engine::verify_audit`] reports
    /// it.
    pub fn head_for_append(&self) -> AuditHead {
        AuditHead { seq: self.seq, hash: self.hash.unwrap_or(AuditHash::ZERO) }
    }

    /// The head of a log that ends with this event.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an event without a hash (not appended yet).
    pub fn head(&self) -> Result<AuditHead> {
        let hash = self.hash.ok_or_else(|| Error::invalid("audit event", format!("event {} has no hash", self.seq)))?;
        Ok(AuditHead { seq: self.seq, hash })
    }
}

/// The domain tag every link's hash starts with.
pub const AUDIT_LINK_TAG: &[u8] = b"backup-audit-v1\0";

/// A link of the audit chain: a SHA-256, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHash(pub [u8; 32]);

impl AuditHash {
    /// The hash before the first event: all zeros.
    pub const ZERO: AuditHash = AuditHash([0; 32]);
}

impl fmt::Display for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditHash({self})")
    }
}

impl FromStr for AuditHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::invalid("audit hash", format!("{s:?} is not 64 hex digits")))?;
        Ok(AuditHash(out))
    }
}

impl Serialize for AuditHash {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a log ends: the last event's sequence number and hash. The catalog keeps the head of
/// the part it pruned as its checkpoint ([`crate::catalog::Catalog::audit_checkpoint`]), so that the
/// first event it still has can be checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The last event's sequence number (0: none yet).
    pub seq: u64,
    /// Its hash ([`AuditHash::ZERO`]: none yet).
    pub hash: AuditHash,
}

impl AuditHead {
    /// The head of an empty log.
    pub const GENESIS: AuditHead = AuditHead { seq: 0, hash: AuditHash::ZERO };
}

/// The most events one read of the log returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// Which events [`crate::Engine::audit_events`] returns.
///
/// ```
/// use backup_core::audit::AuditQuery;
///
/// let q = AuditQuery::new().with_collection("db".parse()?).with_after(Some(120)).with_limit(50);
/// assert_eq!((q.after, q.limit), (Some(120), 50));
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only the events of this collection.
    pub collection: Option<CollectionId>,
    /// Only events numbered above this.
    pub after: Option<u64>,
    /// At most this many events (1 to [`MAX_AUDIT_PAGE`]; default 100).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery { collection: None, after: None, limit: 100 }
    }
}

impl AuditQuery {
    /// Every event, the first 100.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the events of `collection`.
    pub fn with_collection(mut self, collection: CollectionId) -> Self {
        self.collection = Some(collection);
        self
    }

    /// Only events numbered above `after`.
    pub fn with_after(mut self, after: Option<u64>) -> Self {
        self.after = after;
        self
    }

    /// At most `limit` events.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// How long the audit log keeps events ([`crate::EngineBuilder::audit_retention`]); pruning
/// ([`crate::Engine::prune_audit`]) removes an event when either bound says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AuditRetention {
    /// Events older than this go.
    pub max_age: Option<Duration>,
    /// Only this many of the newest events stay.
    pub max_events: Option<u64>,
}

impl AuditRetention {
    /// Keeps everything.
    pub fn forever() -> Self {
        Self::default()
    }

    /// Keeps events younger than `age`.
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keeps the newest `events`.
    pub fn with_max_events(mut self, events: u64) -> Self {
        self.max_events = Some(events);
        self
    }
}

/// An anchor: the log's head written to the store ([`crate::Engine::anchor_audit`]), out of the
/// catalog's reach, so that a catalog whose log was rewritten after it no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditAnchor {
    /// The head's sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: AuditHash,
    /// When it was written.
    pub at: Timestamp,
}

/// What [`crate::Engine::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditReport {
    /// Events whose link was checked.
    pub events: u64,
    /// Where the checked chain started: the checkpoint of the pruned part, if any.
    pub checkpoint: Option<AuditHead>,
    /// The log's head.
    pub head: AuditHead,
    /// Anchors compared with the log.
    pub anchors: u64,
    /// The first thing that does not fit; `None` when the log verifies.
    pub problem: Option<AuditProblem>,
}

impl AuditReport {
    /// Whether the log verifies.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first entry of the log that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditProblem {
    /// The sequence number of the entry.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit event {}: {}", self.seq, self.reason)
    }
}

/// A reader of the audit log that keeps its place in the catalog: a notification target, the
/// detectors. Whoever holds its lease ([`LogCursor::owner`] until [`LogCursor::lease_until`])
/// reads the events after [`LogCursor::seq`], handles them, and moves the cursor on in the same
/// step as what it records (`state`, alerts): a crash before that step handles them again,
/// never skips them (at least once, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogCursor {
    /// Its name (`webhook:ops`, `detectors`).
    pub name: String,
    /// The last event handled.
    pub seq: u64,
    /// The instance holding the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
    /// What the reader keeps between runs (its own format; JSON by convention).
    #[serde(default)]
    pub state: String,
}

impl LogCursor {
    /// A cursor after event `seq`, with no lease and no state.
    pub fn new(name: impl Into<String>, seq: u64) -> Self {
        LogCursor { name: name.into(), seq, owner: None, lease_until: None, state: String::new() }
    }

    /// Whether `owner` may take the lease at `now`: nobody holds it, `owner` does, or it ended.
    pub fn claimable_by(&self, owner: &str, now: Timestamp) -> bool {
        match (&self.owner, self.lease_until) {
            (None, _) | (_, None) => true,
            (Some(o), Some(until)) => o == owner || until <= now,
        }
    }
}

/// The refusal of a claim on a cursor another instance holds: what every catalog answers.
pub fn cursor_held(c: &LogCursor) -> Error {
    Error::conflict(format!(
        "log cursor {} is held by {} until {}",
        c.name,
        c.owner.as_deref().unwrap_or("nobody"),
        c.lease_until.map_or_else(|| "never".to_owned(), |t| t.to_string())
    ))
}

/// The refusal of an advance of a cursor that moved or changed hands: what every catalog
/// answers.
pub fn cursor_moved(name: &str) -> Error {
    Error::conflict(format!("log cursor {name} moved or changed hands: its lease was lost"))
}
