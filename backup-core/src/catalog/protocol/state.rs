//! What a decision reads: the state a catalog loads, as a [`StateQuery`] asks for it.

use std::sync::Arc;

use crate::id::{CollectionId, RepositoryId, SessionId, VersionId};
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Version};

/// A range of a collection's committed versions, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum VersionRange {
    /// None.
    #[default]
    None,
    /// The `n` oldest (lowest numbers).
    Oldest(u64),
    /// The `n` newest (highest numbers).
    Newest(u64),
    /// All of them.
    All,
}

/// Chooses the committed versions to load once the collection row is read.
pub type ChooseVersions = Arc<dyn Fn(&Collection, &Counters) -> VersionRange + Send + Sync>;

/// Which committed versions of a collection a decision needs, beyond the counters.
///
/// This is what keeps the cost of a reservation or a commit flat with history: FIFO needs
/// the oldest few versions, so a collection holding 100,000 versions loads one row, not
/// 100,000. A catalog reads the collection row and its [`Counters`], calls
/// [`VersionsNeeded::resolve`], and loads that range from an index on
/// (collection, state, number).
#[derive(Clone, Default)]
pub enum VersionsNeeded {
    /// A fixed range.
    Range(VersionRange),
    /// A range chosen from the collection row (the retention strategy's
    /// [`crate::RotationStrategy::needs`]).
    FromRow(ChooseVersions),
    /// None.
    #[default]
    Nothing,
}

impl VersionsNeeded {
    /// The range to load, given the collection row.
    pub fn resolve(&self, collection: &Collection, counters: &Counters) -> VersionRange {
        match self {
            VersionsNeeded::Range(r) => *r,
            VersionsNeeded::FromRow(choose) => choose(collection, counters),
            VersionsNeeded::Nothing => VersionRange::None,
        }
    }
}

impl std::fmt::Debug for VersionsNeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionsNeeded::Range(r) => f.debug_tuple("Range").field(r).finish(),
            VersionsNeeded::FromRow(_) => f.write_str("FromRow(..)"),
            VersionsNeeded::Nothing => f.write_str("Nothing"),
        }
    }
}

/// What one collection's part of a [`StateQuery`] loads: the collection row with its
/// [`Counters`], every pending upload, and the versions asked for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectionQuery {
    /// The collection.
    pub id: CollectionId,
    /// Which committed versions to load.
    pub committed: VersionsNeeded,
    /// Versions to load by number, in any state but pending.
    pub numbers: Vec<u64>,
}

impl CollectionQuery {
    /// The collection row, its counters and its pending uploads.
    pub fn new(id: CollectionId) -> Self {
        CollectionQuery { id, committed: VersionsNeeded::Nothing, numbers: Vec::new() }
    }

    /// Also these committed versions.
    pub fn with_committed(mut self, needed: VersionsNeeded) -> Self {
        self.committed = needed;
        self
    }

    /// Also the versions with these numbers.
    pub fn with_numbers(mut self, numbers: impl IntoIterator<Item = u64>) -> Self {
        self.numbers = numbers.into_iter().collect();
        self
    }
}

/// What a catalog loads for one atomic step, under locks that keep it unchanged until the
/// step's writes are applied: a collection (locked), rows by id (locked), sessions (locked),
/// the repository id.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StateQuery {
    /// The step's name (`reserve`, `commit`, …), for errors, logs and traces.
    pub label: &'static str,
    /// A collection, its counters, pending uploads and the versions asked for.
    pub collection: Option<CollectionQuery>,
    /// Version rows by id, in any state, pending included.
    pub versions: Vec<VersionId>,
    /// Sessions by id.
    pub sessions: Vec<SessionId>,
    /// The active sessions of this user.
    pub sessions_of: Option<String>,
    /// The repository id.
    pub repository: bool,
    /// The step may be lost in a power cut without harm, `recover()` repairing it (a
    /// reservation, a lease renewal, an abort): a catalog may acknowledge it before it is on
    /// disk. Every other step is durable once acknowledged.
    pub relaxed: bool,
}

impl StateQuery {
    /// Nothing: for steps that only write (an audit event).
    pub fn none() -> Self {
        StateQuery::default()
    }

    /// A collection.
    pub fn collection(query: CollectionQuery) -> Self {
        StateQuery { collection: Some(query), ..StateQuery::default() }
    }

    /// Version rows by id.
    pub fn versions(ids: impl IntoIterator<Item = VersionId>) -> Self {
        StateQuery { versions: ids.into_iter().collect(), ..StateQuery::default() }
    }

    /// Sessions by id.
    pub fn sessions(ids: impl IntoIterator<Item = SessionId>) -> Self {
        StateQuery { sessions: ids.into_iter().collect(), ..StateQuery::default() }
    }

    /// The active sessions of a user.
    pub fn sessions_of(user: impl Into<String>) -> Self {
        StateQuery { sessions_of: Some(user.into()), ..StateQuery::default() }
    }

    /// The repository id.
    pub fn repository() -> Self {
        StateQuery { repository: true, ..StateQuery::default() }
    }

    /// Marks the step as one whose loss in a power cut is harmless.
    pub fn relaxed(mut self) -> Self {
        self.relaxed = true;
        self
    }

    /// Names the step.
    pub fn with_label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    /// Also these sessions.
    pub fn with_sessions(mut self, ids: impl IntoIterator<Item = SessionId>) -> Self {
        self.sessions.extend(ids);
        self
    }
}

/// A collection's aggregates, kept in its row and updated by every step that changes what is
/// committed: the quota arithmetic reads these instead of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// The number the next committed version gets.
    pub next_number: u64,
    /// Committed versions.
    pub versions: u64,
    /// Σ committed sizes, in bytes.
    pub bytes: u64,
    /// Σ overage of committed versions (bytes above the spec's soft limit).
    pub overage: u64,
    /// Committed versions that are held, carry a protection deadline or a retention lock
    /// (one that ended counts until maintenance clears it).
    pub protected: u64,
    /// Committed versions that are held.
    pub held: u64,
    /// Committed versions carrying a quarantine (a scrub found their bytes damaged or their
    /// object missing): what a collection's health reads instead of scanning the versions.
    /// Absent from counters serialized before it existed: a catalog that kept those recounts
    /// it from its versions when it upgrades.
    #[serde(default)]
    pub quarantined: u64,
    /// When the newest commit happened (commits keep their times in order).
    pub last_committed_at: Option<Timestamp>,
}

impl Counters {
    /// The counters of a new collection: nothing committed, next number 1.
    pub fn empty() -> Self {
        Counters { next_number: 1, ..Counters::default() }
    }
}

/// A consistent snapshot of one collection, as a [`CollectionQuery`] asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionState {
    /// The collection and its specification.
    pub collection: Collection,
    /// Its aggregates.
    pub counters: Counters,
    /// Every pending upload, live or with an expired lease.
    pub pending: Vec<PendingUpload>,
    /// The committed versions asked for, ascending by number.
    pub committed: Vec<Version>,
    /// The versions asked for by number that exist (any state but pending), ascending.
    pub by_number: Vec<Version>,
}

impl CollectionState {
    /// A snapshot from its parts (for catalog implementations).
    pub fn new(
        collection: Collection,
        counters: Counters,
        pending: Vec<PendingUpload>,
        committed: Vec<Version>,
        by_number: Vec<Version>,
    ) -> Self {
        CollectionState { collection, counters, pending, committed, by_number }
    }

    /// The pending uploads whose lease runs at `now`.
    pub fn live_pending(&self, now: Timestamp) -> impl Iterator<Item = &PendingUpload> {
        self.pending.iter().filter(move |p| p.is_live(now))
    }

    /// The version with this number among those loaded by number.
    pub fn version_numbered(&self, number: u64) -> Option<&Version> {
        self.by_number.iter().find(|v| v.number == number)
    }
}

/// A row of the versions table: a pending upload, or a version in any other state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionRow {
    /// An upload in flight.
    Pending(PendingUpload),
    /// A committed, trashed or purged version.
    Version(Version),
}

impl VersionRow {
    /// The row's id.
    pub fn id(&self) -> VersionId {
        match self {
            VersionRow::Pending(p) => p.id,
            VersionRow::Version(v) => v.id,
        }
    }
}

/// What a catalog loaded for a [`StateQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LoadedState {
    /// The collection asked for; `None` when it does not exist.
    pub collection: Option<CollectionState>,
    /// The version rows asked for that exist.
    pub versions: Vec<VersionRow>,
    /// The sessions asked for that exist, and the active sessions of the user asked for.
    pub sessions: Vec<Session>,
    /// The repository id, when asked for and set.
    pub repository: Option<RepositoryId>,
}

impl LoadedState {
    /// A loaded state from its parts (for catalog implementations).
    pub fn new(
        collection: Option<CollectionState>,
        versions: Vec<VersionRow>,
        sessions: Vec<Session>,
        repository: Option<RepositoryId>,
    ) -> Self {
        LoadedState { collection, versions, sessions, repository }
    }

    /// The row with this id, if loaded.
    pub fn version_row(&self, id: &VersionId) -> Option<&VersionRow> {
        self.versions.iter().find(|r| r.id() == *id)
    }

    /// The session with this id, if loaded.
    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id == *id)
    }
}
