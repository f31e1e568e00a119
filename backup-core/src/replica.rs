//! Replicas: more copies of a repository's versions, in other object stores.
//!
//! A [`Replica`] is an object store that receives, asynchronously, a byte-identical copy of
//! every committed version's object and its description, under the same keys as in the
//! primary store. Its queue is the audit log: the `version.commit` event is appended in the
//! commit's own catalog step, so a crash between the commit and the copy loses nothing. A
//! [log cursor](crate::audit::LogCursor) per replica (`replica:<name>`) records how far the
//! copies went, with the versions whose copy failed (attempts and the last error) in its
//! state. [`crate::Engine::replicate`] runs one batch; a host runs it in a loop.
//!
//! What a replica adds:
//! - **A second copy.** A version whose object is lost or damaged in the primary is copied
//!   back from a replica whose copy matches the recorded digest (by a scrub, or by the
//!   download that found it), instead of being quarantined.
//! - **Deletions travel late.** A version purged from the primary leaves a replica only after
//!   the replica's delay ([`Replica::delete_after`], by default the trash retention), so a
//!   rogue deletion can be undone from it ([`crate::Engine::restore_from_replica`]).
//! - **Disaster recovery.** A replica holds the descriptions and the repository marker, so
//!   [`crate::Engine::rebuild_catalog`] on an engine whose store is the replica gets the
//!   catalog back without the primary.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::replica::{Replica, ReplicationOptions};
//! use backup_core::{Actor, CollectionSpec, Engine, Limits};
//! use object_store::memory::InMemory;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let offsite = Arc::new(InMemory::new());
//! let engine = Engine::builder().replica(Replica::new("offsite", offsite.clone())?).build()?;
//! let (me, db) = (Actor::user("me"), "db".parse()?);
//! engine.create_collection(&me, &db, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
//! let v = engine.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("data"))])).await?;
//!
//! let run = engine.replicate("offsite", "this-instance", &ReplicationOptions::default()).await?;
//! assert_eq!(run.copied, 1);
//! let status = engine.replica_status("offsite").await?;
//! assert_eq!(status.pending_versions, 0);
//! # let _ = v;
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::lock::ObjectLocks;
use crate::store::UploadLeftovers;
use crate::time::Timestamp;

/// What the log cursor of a replica is called: this, then the replica's name.
pub const REPLICA_CURSOR_PREFIX: &str = "replica:";

/// The longest replica name.
pub const MAX_REPLICA_NAME_LEN: usize = 64;

/// At most this many failed copies are kept in a replica's record; beyond, the oldest are
/// dropped from it (the versions stay uncopied, and the next catch-up of the replica, see
/// [`crate::Engine::resync_replica`], copies them).
pub const MAX_RECORDED_FAILURES: usize = 1000;

/// An extra object store that receives a copy of every committed version (see the
/// [module](self)).
#[derive(Clone)]
pub struct Replica {
    name: String,
    store: Arc<dyn ObjectStore>,
    descriptions: Option<Arc<dyn ObjectStore>>,
    leftovers: Option<Arc<dyn UploadLeftovers>>,
    object_locks: Option<Arc<dyn ObjectLocks>>,
    delete_after: Option<Duration>,
    collections: Option<BTreeSet<CollectionId>>,
    location: String,
    lag_limit: Duration,
    part_size: usize,
}

/// The parts copies to a replica are written in, unless [`Replica::part_size`] says
/// otherwise: 8 MiB (S3 refuses parts under 5 MiB but the last). Objects up to a part are
/// written in one PUT.
pub const DEFAULT_REPLICA_PART_SIZE: usize = 8 << 20;

/// How far a replica may lag before the collections it copies fail their replication check,
/// unless [`Replica::lag_limit`] says otherwise: an hour.
pub const DEFAULT_LAG_LIMIT: Duration = Duration::from_secs(3600);

impl Replica {
    /// A replica called `name` (1 to 64 of `a-z`, `0-9`, `-`, `_`) in `store`, for every
    /// collection.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name.
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>) -> Result<Self> {
        let name = name.into();
        check_name(&name)?;
        Ok(Replica {
            location: store.to_string(),
            name,
            store,
            descriptions: None,
            leftovers: None,
            object_locks: None,
            delete_after: None,
            collections: None,
            lag_limit: DEFAULT_LAG_LIMIT,
            part_size: DEFAULT_REPLICA_PART_SIZE,
        })
    }

    /// How long a version purged from the primary stays on this replica (default: the
    /// engine's trash retention).
    pub fn delete_after(mut self, delay: Duration) -> Self {
        self.delete_after = Some(delay);
        self
    }

    /// Only these collections are copied to this replica.
    pub fn only_for(mut self, collections: impl IntoIterator<Item = CollectionId>) -> Self {
        self.collections = Some(collections.into_iter().collect());
        self
    }

    /// Where the descriptions go: the same keys as the store, with weaker durability (for
    /// local disk, the folder without fsync: a description lost in a power cut is written
    /// again by the next run, which finds the object without it), as
    /// [`crate::EngineBuilder::description_store`] does for the primary.
    pub fn description_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.descriptions = Some(store);
        self
    }

    pub(crate) fn descriptions_ref(&self) -> &Arc<dyn ObjectStore> {
        self.descriptions.as_ref().unwrap_or(&self.store)
    }

    /// What removes the remains of a copy a killed process left (staging files, open
    /// multipart uploads) before the copy is made again.
    pub fn leftovers(mut self, leftovers: Arc<dyn UploadLeftovers>) -> Self {
        self.leftovers = Some(leftovers);
        self
    }

    /// The replica store's own enforcement of version locks: locked versions are locked
    /// there too.
    pub fn object_locks(mut self, locks: Arc<dyn ObjectLocks>) -> Self {
        self.object_locks = Some(locks);
        self
    }

    /// Where it is, for status pages (a URL without credentials); the store's name by default.
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// How far it may lag (the age of the oldest version not copied yet) before the
    /// collections it copies fail their replication check (default [`DEFAULT_LAG_LIMIT`]).
    pub fn lag_limit(mut self, limit: Duration) -> Self {
        self.lag_limit = limit;
        self
    }

    /// The size of the parts copies are written in (at least 5 MiB for S3; memory per copy is
    /// about two parts).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a size of 0 or above 5 GiB.
    pub fn part_size(mut self, bytes: usize) -> Result<Self> {
        if bytes == 0 || bytes > 5 << 30 {
            return Err(Error::invalid("replica part size", "must be between 1 byte and 5 GiB"));
        }
        self.part_size = bytes;
        Ok(self)
    }

    pub(crate) fn part_size_value(&self) -> usize {
        self.part_size
    }

    /// Its lag limit.
    pub fn lag_limit_value(&self) -> Duration {
        self.lag_limit
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where it is.
    pub fn location_text(&self) -> &str {
        &self.location
    }

    /// Its delay for deletions, if set.
    pub fn deletion_delay(&self) -> Option<Duration> {
        self.delete_after
    }

    /// The collections it is limited to, if it is.
    pub fn collections(&self) -> Option<&BTreeSet<CollectionId>> {
        self.collections.as_ref()
    }

    /// Whether versions of `collection` are copied here.
    pub fn covers(&self, collection: &CollectionId) -> bool {
        self.collections.as_ref().is_none_or(|c| c.contains(collection))
    }

    /// The name of its log cursor.
    pub fn cursor_name(&self) -> String {
        format!("{REPLICA_CURSOR_PREFIX}{}", self.name)
    }

    pub(crate) fn leftovers_ref(&self) -> Option<&Arc<dyn UploadLeftovers>> {
        self.leftovers.as_ref()
    }

    pub(crate) fn object_locks_ref(&self) -> Option<&Arc<dyn ObjectLocks>> {
        self.object_locks.as_ref()
    }
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("delete_after", &self.delete_after)
            .field("collections", &self.collections)
            .finish()
    }
}

/// Checks a replica's name.
///
/// # Errors
/// [`Error::InvalidInput`] naming what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_REPLICA_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_REPLICA_NAME_LEN + 1).collect();
        Err(Error::invalid(
            "replica name",
            format!("{shown:?}: expected 1 to {MAX_REPLICA_NAME_LEN} of a-z, 0-9, '-' and '_'"),
        ))
    }
}

/// Checks a set of replicas: names unique, and the event log on (it is their queue).
///
/// # Errors
/// [`Error::InvalidInput`] naming the problem.
pub(crate) fn check_replicas(replicas: &[Replica], event_log: bool) -> Result<()> {
    if !replicas.is_empty() && !event_log {
        return Err(Error::invalid("replicas", "need the event log, which is their queue: turn event_log on"));
    }
    let mut names = BTreeSet::new();
    for r in replicas {
        if !names.insert(r.name.as_str()) {
            return Err(Error::invalid("replicas", format!("two replicas are called {:?}", r.name)));
        }
    }
    Ok(())
}

/// How [`crate::Engine::replicate`] runs one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationOptions {
    /// Copies made at once (default 4).
    pub workers: usize,
    /// Log events (or, while catching up, versions) handled per run (default 100).
    pub batch: usize,
    /// Bytes read per second from the primary, over all workers (default: unthrottled).
    pub bytes_per_second: Option<NonZeroU64>,
    /// How long the run holds its replica's cursor before renewing (default 60 s); another
    /// instance takes it over when a holder dies.
    pub lease: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions { workers: 4, batch: 100, bytes_per_second: None, lease: Duration::from_secs(60) }
    }
}

impl ReplicationOptions {
    /// Copies made at once.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Events handled per run.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Bytes read per second from the primary.
    pub fn throttle(mut self, bytes_per_second: u64) -> Self {
        self.bytes_per_second = NonZeroU64::new(bytes_per_second);
        self
    }

    /// The cursor's lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no workers or more than 64, a batch of 0 or above 1000, a
    /// lease under 2 seconds or above a day.
    pub fn check(&self) -> Result<()> {
        if !(1..=64).contains(&self.workers) {
            return Err(Error::invalid("replication workers", "must be 1 to 64"));
        }
        if !(1..=1000).contains(&self.batch) {
            return Err(Error::invalid("replication batch", "must be 1 to 1000"));
        }
        if self.lease < Duration::from_secs(2) || self.lease > Duration::from_secs(86_400) {
            return Err(Error::invalid("replication lease", "must be 2 seconds to a day"));
        }
        Ok(())
    }
}

/// What one run of [`crate::Engine::replicate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicationRun {
    /// Versions copied (object and description), each verified by digest as it streamed.
    pub copied: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Versions found on the replica already (a copy made before a crash, or by another
    /// instance): not copied again.
    pub already_there: u64,
    /// Versions not copied because they left the primary before their turn.
    pub skipped: u64,
    /// Copies that failed because the primary's object is missing or damaged (recorded,
    /// tried again later; a scrub may repair the primary meanwhile).
    pub failed: u64,
    /// Versions removed from the replica after their delay.
    pub deleted: u64,
    /// Whether events (or versions of a catch-up) remain for another run.
    pub more: bool,
    /// Why the run stopped early: the replica (or the primary) could not be written or read.
    /// The queue holds; the next run tries again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// A version whose copy to a replica failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplicaFailure {
    /// The collection.
    pub collection: CollectionId,
    /// The version's number.
    pub number: u64,
    /// Its size.
    pub size: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When the first attempt failed.
    pub since: Timestamp,
    /// When the last attempt was made.
    pub last_attempt: Timestamp,
}

impl ReplicaFailure {
    /// When the next attempt is due: backing off from 10 seconds, doubling, to an hour.
    pub fn next_attempt(&self) -> Timestamp {
        let wait = 10i64.saturating_mul(1 << self.attempts.saturating_sub(1).min(9)).min(3600);
        self.last_attempt + chrono::Duration::seconds(wait)
    }
}

/// How far a replica is behind the primary: [`crate::Engine::replica_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The replica's name.
    pub name: String,
    /// Where it is.
    pub location: String,
    /// The last log event handled; `None` before the first run.
    pub cursor: Option<u64>,
    /// Committed versions not yet copied (failed ones included).
    pub pending_versions: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// When the oldest of them was committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<Timestamp>,
    /// Seconds since then (0 when nothing is pending).
    pub lag_seconds: u64,
    /// Versions whose copy failed, with attempts and the last error.
    pub failed: Vec<ReplicaFailure>,
    /// Versions purged from the primary, still on the replica (their delay runs).
    pub deletions_pending: u64,
    /// Whether it is still catching up with versions committed before it was added.
    pub catching_up: bool,
    /// Versions copied since it was added.
    pub copied: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Versions found there already.
    pub already_there: u64,
    /// Versions removed from it after their delay.
    pub deleted: u64,
    /// Why the last run stopped early, and since when runs do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<Timestamp>,
    /// The instance holding its cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Where a catch-up (a walk over the catalog's versions) stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatchUp {
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// The last version handled: its collection and number.
    pub after: Option<(CollectionId, u64)>,
}

/// What a replica's log cursor keeps between runs (its state, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaState {
    #[serde(default)]
    pub copied: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub already_there: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub deleted: u64,
    /// The last log event the deletion pass handled (it trails the copies by the delay).
    #[serde(default)]
    pub deletes_after: u64,
    /// A walk over the catalog still to finish (a new replica, or one whose log events were
    /// pruned before it read them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<ReplicaFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<Timestamp>,
}

impl ReplicaState {
    /// The state of a cursor; an empty or unreadable one is a replica that starts (it
    /// catches up with every version there is).
    pub(crate) fn parse(text: &str, at: u64) -> (ReplicaState, bool) {
        match serde_json::from_str::<ReplicaState>(text) {
            Ok(s) if !text.is_empty() => (s, false),
            _ => (ReplicaState { deletes_after: at, catch_up: Some(CatchUp::default()), ..Default::default() }, true),
        }
    }

    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Records a failed copy (a later attempt of a known one counts up).
    pub(crate) fn fail(&mut self, collection: &CollectionId, number: u64, size: u64, error: String, now: Timestamp) {
        if let Some(f) = self.failed.iter_mut().find(|f| &f.collection == collection && f.number == number) {
            f.attempts = f.attempts.saturating_add(1);
            f.last_error = error;
            f.last_attempt = now;
            return;
        }
        self.failed.push(ReplicaFailure {
            collection: collection.clone(),
            number,
            size,
            attempts: 1,
            last_error: error,
            since: now,
            last_attempt: now,
        });
        if self.failed.len() > MAX_RECORDED_FAILURES {
            self.failed.remove(0);
        }
    }
}

/// The detail of a `version.commit` event: its size and digest. Replicas read the size back
/// from it ([`committed_size`]) to count the bytes they lag by.
pub(crate) fn commit_detail(size: u64, digest: &crate::Digest) -> String {
    format!("{size} bytes, {digest}")
}

/// The size a `version.commit` event's detail names.
pub(crate) fn committed_size(detail: &str) -> Option<u64> {
    detail.split_once(" bytes")?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["offsite", "eu-west_2", "a"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Offsite", "a b", "x/y", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_details_give_their_size_back() {
        let d = crate::DigestAlgorithm::Sha256.hasher().finalize();
        assert_eq!(committed_size(&commit_detail(1234, &d)), Some(1234));
        assert_eq!(committed_size("garbage"), None);
    }

    #[test]
    fn failures_count_up_and_back_off() {
        let now = Timestamp::from_micros(1_000_000_000_000).unwrap();
        let c: CollectionId = "db".parse().unwrap();
        let mut s = ReplicaState::default();
        s.fail(&c, 3, 10, "gone".into(), now);
        s.fail(&c, 3, 10, "still gone".into(), now);
        assert_eq!(s.failed.len(), 1);
        assert_eq!((s.failed[0].attempts, s.failed[0].last_error.as_str()), (2, "still gone"));
        assert_eq!(s.failed[0].next_attempt(), now + chrono::Duration::seconds(20));
        let (fresh, new) = ReplicaState::parse("", 7);
        assert!(new && fresh.catch_up.is_some() && fresh.deletes_after == 7);
        let (back, new) = ReplicaState::parse(&s.to_text(), 7);
        assert!(!new);
        assert_eq!(back, s);
    }

    #[test]
    fn options_are_checked() {
        ReplicationOptions::default().check().unwrap();
        assert!(ReplicationOptions::default().workers(0).check().is_err());
        assert!(ReplicationOptions::default().batch(1001).check().is_err());
        assert!(ReplicationOptions::default().lease(Duration::from_secs(1)).check().is_err());
    }
}
