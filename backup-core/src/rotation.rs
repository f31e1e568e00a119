//! Retention: which versions a collection keeps when a new one arrives.
//!
//! A [`RotationStrategy`] is a pure function from the versions it asked for, the incoming
//! upload and the time to a [`RotationPlan`] with a reason for every version. The engine runs
//! it inside the commit (so what is evicted is decided atomically with the new version), and
//! also for [`crate::Engine::usage`] (the space the next upload may take).
//!
//! Strategies are registered by name in a [`RotationStrategies`] registry (`fifo`,
//! `fifo-plus-older` and `gfs` are always there) and named by a collection's [`RetentionSpec`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::VersionId;
/// What a strategy's [`RotationStrategy::needs`] reads and returns, here so that a strategy
/// needs nothing from the catalog's interface.
pub use crate::protocol::{Counters, VersionRange};
/// The name of the built-in first-in, first-out strategy, always registered.
pub use crate::spec::FIFO;
use crate::spec::{CollectionSpec, RetentionSpec};
use crate::time::Timestamp;
use crate::version::Version;

mod calendar;
mod fifo;
mod fifo_plus_older;
mod gfs;

pub use calendar::CalendarDuration;
pub use fifo::Fifo;
pub use fifo_plus_older::FifoPlusOlder;
pub use gfs::{Count, Gfs, GfsMode, GfsPolicy, RuleName};

/// The facts about a committed version a rotation strategy may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionSummary {
    /// The version's id.
    pub id: VersionId,
    /// Its number.
    pub number: u64,
    /// Its size in bytes.
    pub size: u64,
    /// When the server began to receive it.
    pub created_at: Timestamp,
    /// When it was committed.
    pub committed_at: Timestamp,
    /// Held or protected at the time of the plan: the strategy must keep it (the engine
    /// keeps it anyway), and may count it.
    pub protected: bool,
}

impl VersionSummary {
    /// A summary (for strategies' tests and callers of [`crate::rotation`] plans).
    pub fn new(id: VersionId, number: u64, size: u64, created_at: impl Into<Timestamp>) -> Self {
        let created_at = created_at.into();
        VersionSummary { id, number, size, created_at, committed_at: created_at, protected: false }
    }

    /// Marks it protected.
    pub fn with_protected(mut self, protected: bool) -> Self {
        self.protected = protected;
        self
    }

    /// The summary of a version, protected or not at `now`.
    pub fn of(v: &Version, now: Timestamp) -> Self {
        VersionSummary {
            id: v.id,
            number: v.number,
            size: v.size,
            created_at: v.created_at,
            committed_at: v.committed_at,
            protected: v.is_protected(now),
        }
    }
}

/// The upload that is about to join the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Incoming {
    /// Its size, when known (at commit time it always is).
    pub size: Option<u64>,
    /// When the server began to receive it.
    pub created_at: Timestamp,
}

impl Incoming {
    /// An incoming upload.
    pub fn new(size: Option<u64>, created_at: impl Into<Timestamp>) -> Self {
        Incoming { size, created_at: created_at.into() }
    }
}

/// Everything a [`RotationStrategy`] decides on.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RotationInput<'a> {
    /// The collection's specification (limits and retention options).
    pub spec: &'a CollectionSpec,
    /// The committed versions the strategy asked for ([`RotationStrategy::needs`]),
    /// ascending by number. Versions not in it are kept.
    pub versions: &'a [VersionSummary],
    /// How many committed versions the collection holds in all.
    pub committed: u64,
    /// The upload about to join, or `None` when the plan is for the collection as it is (a
    /// maintenance run applying a time-based policy, or a preview).
    pub incoming: Option<Incoming>,
    /// The current time.
    pub now: Timestamp,
}

impl<'a> RotationInput<'a> {
    /// An input from its parts.
    pub fn new(
        spec: &'a CollectionSpec,
        versions: &'a [VersionSummary],
        committed: u64,
        incoming: Option<Incoming>,
        now: impl Into<Timestamp>,
    ) -> Self {
        RotationInput { spec, versions, committed, incoming, now: now.into() }
    }
}

/// Whether a version stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// The version stays committed.
    Keep,
    /// The version is trashed when the incoming upload commits.
    Evict,
}

/// The decision about one version, with the reasons people will read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationDecision {
    /// The version.
    pub id: VersionId,
    /// Its number.
    pub number: u64,
    /// Keep or evict.
    pub mark: Mark,
    /// Why: every rule that keeps it (`daily 2026-11-20`, `within 10d`, `held`), or why it
    /// goes.
    pub reasons: Vec<String>,
}

impl RotationDecision {
    /// A decision with one reason.
    pub fn new(id: VersionId, number: u64, mark: Mark, reason: impl Into<String>) -> Self {
        RotationDecision { id, number, mark, reasons: vec![reason.into()] }
    }

    /// A decision with several reasons.
    pub fn with_reasons(id: VersionId, number: u64, mark: Mark, reasons: Vec<String>) -> Self {
        RotationDecision { id, number, mark, reasons }
    }

    /// The reasons as one line.
    pub fn reason(&self) -> String {
        self.reasons.join("; ")
    }
}

/// A strategy's answer: one decision per version of its input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationPlan {
    /// One decision for every version of the input, in the input's order.
    pub decisions: Vec<RotationDecision>,
}

impl RotationPlan {
    /// A plan.
    pub fn new(decisions: Vec<RotationDecision>) -> Self {
        RotationPlan { decisions }
    }

    /// The versions marked [`Mark::Evict`].
    pub fn evicted(&self) -> impl Iterator<Item = &RotationDecision> {
        self.decisions.iter().filter(|d| d.mark == Mark::Evict)
    }

    /// Checks the contract: exactly one decision per input version, in order. (The engine
    /// keeps protected versions whatever the plan says.)
    ///
    /// # Errors
    /// [`Error::Internal`] naming the strategy when it broke the contract.
    pub fn check_against(&self, strategy: &str, versions: &[VersionSummary]) -> Result<()> {
        let matches = self.decisions.len() == versions.len()
            && self.decisions.iter().zip(versions).all(|(d, v)| d.id == v.id && d.number == v.number);
        if matches {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "rotation strategy {strategy} returned {} decisions for {} versions, or out of order",
                self.decisions.len(),
                versions.len()
            )))
        }
    }
}

/// A retention strategy: a pure function from the collection's versions, the incoming upload
/// and the time to a plan with reasons for every version.
///
/// Contract: [`RotationStrategy::plan`] returns exactly one decision per input version, in
/// input order, is deterministic, never evicts a protected version, and when an upload is
/// incoming keeps at most `max_versions − 1` versions in all (counting those it did not ask
/// for) so the incoming one fits; the engine refuses a commit otherwise. It must not panic on
/// any input. Implementations outside this crate need `#[async_trait]` for no method: this
/// trait is synchronous.
///
/// ```
/// use backup_core::rotation::{
///     Counters, Mark, PROTECTED, RotationDecision, RotationInput, RotationPlan, RotationStrategy, VersionRange,
/// };
/// use backup_core::CollectionSpec;
///
/// /// Keeps the newest two versions (making room for an incoming one), and whatever is
/// /// protected.
/// #[derive(Debug)]
/// struct KeepTwo;
///
/// impl RotationStrategy for KeepTwo {
///     fn name(&self) -> &str { "keep-two" }
///     // Every committed version: those it does not ask for would be kept. (A strategy
///     // bounded by `max_versions` may ask for fewer: `VersionRange::Newest(n)`.)
///     fn needs(&self, _spec: &CollectionSpec, _counters: &Counters) -> VersionRange { VersionRange::All }
///     fn plan(&self, input: &RotationInput<'_>) -> RotationPlan {
///         let room = if input.incoming.is_some() { 1 } else { 2 };
///         let keep_from = input.versions.len().saturating_sub(room);
///         RotationPlan::new(
///             input.versions.iter().enumerate().map(|(i, v)| {
///                 // A protected version must stay; PROTECTED lets the engine say how it is.
///                 let (mark, why) = if v.protected {
///                     (Mark::Keep, PROTECTED)
///                 } else if i >= keep_from {
///                     (Mark::Keep, "among the newest two")
///                 } else {
///                     (Mark::Evict, "older than the newest two")
///                 };
///                 RotationDecision::new(v.id, v.number, mark, why)
///             }).collect(),
///         )
///     }
/// }
///
/// let engine = backup_core::Engine::builder().rotation_strategy(std::sync::Arc::new(KeepTwo)).build()?;
/// # Ok::<(), backup_core::Error>(())
/// ```
pub trait RotationStrategy: Debug + Send + Sync + 'static {
    /// The name collections use to select it (`retention.strategy`).
    fn name(&self) -> &str;

    /// Checks a collection's options for this strategy when the collection is created or
    /// changed.
    ///
    /// # Errors
    /// A reason naming the refused option.
    fn validate(&self, spec: &CollectionSpec) -> std::result::Result<(), String> {
        match spec.retention.options.keys().next() {
            Some(key) => Err(format!("strategy {} takes no option {key:?}", self.name())),
            None => Ok(()),
        }
    }

    /// Which committed versions [`RotationStrategy::plan`] needs, given the collection's
    /// counters: the fewer, the cheaper every commit. Versions it does not ask for are
    /// kept. The default asks for all of them.
    fn needs(&self, spec: &CollectionSpec, counters: &Counters) -> VersionRange {
        let _ = (spec, counters);
        VersionRange::All
    }

    /// Whether the plan changes with time alone (a `keepWithin`, a calendar): the engine's
    /// maintenance then applies it between uploads too. Default: no.
    fn depends_on_time(&self, spec: &CollectionSpec) -> bool {
        let _ = spec;
        false
    }

    /// Decides which versions stay when `input.incoming` commits.
    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan;
}

/// The strategies an engine knows, by name: `fifo`, `gfs` and `fifo-plus-older` are built in.
#[derive(Debug, Clone)]
pub struct RotationStrategies {
    by_name: BTreeMap<String, Arc<dyn RotationStrategy>>,
}

impl Default for RotationStrategies {
    fn default() -> Self {
        let mut by_name: BTreeMap<String, Arc<dyn RotationStrategy>> = BTreeMap::new();
        by_name.insert(Fifo::NAME.to_owned(), Arc::new(Fifo));
        by_name.insert(Gfs::NAME.to_owned(), Arc::new(Gfs));
        by_name.insert(FifoPlusOlder::NAME.to_owned(), Arc::new(FifoPlusOlder));
        RotationStrategies { by_name }
    }
}

impl RotationStrategies {
    /// Registers (or replaces) a strategy under its name.
    pub fn register(&mut self, strategy: Arc<dyn RotationStrategy>) {
        self.by_name.insert(strategy.name().to_owned(), strategy);
    }

    /// The strategy a retention spec names.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for an unknown name, listing the known ones.
    pub fn resolve(&self, retention: &RetentionSpec) -> Result<Arc<dyn RotationStrategy>> {
        self.by_name.get(&retention.strategy).cloned().ok_or_else(|| Error::InvalidSpec {
            field: "retention.strategy",
            reason: format!(
                "unknown strategy {:?}; known: {}",
                retention.strategy,
                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// Resolves the spec's strategy and lets it check its options.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for an unknown strategy or a refused option.
    pub fn validate(&self, spec: &CollectionSpec) -> Result<()> {
        let strategy = self.resolve(&spec.retention)?;
        strategy.validate(spec).map_err(|reason| Error::InvalidSpec { field: "retention.options", reason })?;
        let max = spec.limits.max_versions;
        if spec.retention.min_keep >= max {
            return Err(Error::InvalidSpec {
                field: "retention.min_keep",
                reason: format!(
                    "{} must be under max_versions = {max} (a place stays for the next upload)",
                    spec.retention.min_keep
                ),
            });
        }
        Ok(())
    }

    /// The plan of `spec`'s retention over `versions` at `now`, with the incoming upload or
    /// without (a maintenance run, a preview), as the engine applies it: protected versions
    /// kept, `min_keep` held. The function a commit runs, for explanations and simulations.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for an unknown strategy or a refused option; [`Error::Internal`]
    /// when the strategy breaks its contract.
    pub fn plan(
        &self,
        spec: &CollectionSpec,
        versions: &[VersionSummary],
        incoming: Option<Incoming>,
        now: Timestamp,
    ) -> Result<Vec<RotationDecision>> {
        self.validate(spec)?;
        let strategy = self.resolve(&spec.retention)?;
        let plan = strategy.plan(&RotationInput::new(spec, versions, versions.len() as u64, incoming, now));
        plan.check_against(strategy.name(), versions)?;
        let mut decisions = plan.decisions;
        enforce(&mut decisions, versions, versions.len() as u64, spec.retention.min_keep, |_| PROTECTED.to_owned());
        Ok(decisions)
    }
}

/// The reason a strategy gives for keeping a protected version; the engine says how it is
/// protected instead.
pub const PROTECTED: &str = "protected";

/// What the engine adds to any strategy's plan: a protected version stays (with
/// `why_protected` of its index as the reason), and the newest evicted versions stay until
/// `min_keep` of the `committed` versions (loaded or not) remain.
pub(crate) fn enforce(
    decisions: &mut [RotationDecision],
    versions: &[VersionSummary],
    committed: u64,
    min_keep: u32,
    why_protected: impl Fn(usize) -> String,
) {
    for (i, (d, v)) in decisions.iter_mut().zip(versions).enumerate() {
        if !v.protected {
            continue;
        }
        if d.mark == Mark::Evict {
            // The contract says a strategy never does this; the engine makes sure.
            d.mark = Mark::Keep;
            d.reasons = vec![why_protected(i)];
        } else {
            // A strategy knows only that it is protected; say how (`held`, `protected until …`).
            for r in d.reasons.iter_mut().filter(|r| *r == PROTECTED) {
                *r = why_protected(i);
            }
        }
    }
    let evicted = decisions.iter().filter(|d| d.mark == Mark::Evict).count() as u64;
    let mut kept = committed.saturating_sub(evicted);
    let mut order: Vec<usize> = (0..versions.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((versions[i].created_at, versions[i].number)));
    for i in order {
        if kept >= u64::from(min_keep) {
            return;
        }
        if decisions[i].mark == Mark::Evict {
            decisions[i].mark = Mark::Keep;
            decisions[i].reasons = vec![format!("minKeep {min_keep}")];
            kept += 1;
        }
    }
}

/// Plans `spec`'s retention over `versions` at `now` with the built-in strategies, as a
/// commit would (protection and `min_keep` included): the decisions with their reasons, for
/// explaining or simulating a policy before it is applied.
///
/// ```
/// use backup_core::rotation::{Mark, VersionSummary, plan};
/// use backup_core::{CollectionSpec, Limits, RetentionSpec, Timestamp, VersionId};
/// use chrono::Duration;
///
/// let spec = CollectionSpec::new("x-${version}", Limits::new(100, 10, 1000)?)
///     .with_retention(RetentionSpec::named("gfs").with_option("keepWithin", "2d"));
/// let t = |h: i64| Timestamp::UNIX_EPOCH + Duration::hours(h);
/// let versions = [VersionSummary::new(VersionId::generate(), 1, 5, t(0)), VersionSummary::new(VersionId::generate(), 2, 5, t(72))];
/// let decisions = plan(&spec, &versions, t(73))?;
/// assert_eq!((decisions[0].mark, decisions[1].mark), (Mark::Evict, Mark::Keep));
/// assert_eq!(decisions[1].reasons, ["within 2d"]);
/// # Ok::<(), backup_core::Error>(())
/// ```
///
/// # Errors
/// As [`RotationStrategies::plan`].
pub fn plan(spec: &CollectionSpec, versions: &[VersionSummary], now: Timestamp) -> Result<Vec<RotationDecision>> {
    RotationStrategies::default().plan(spec, versions, None, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn registry_refuses_unknown_names_and_options() {
        let r = RotationStrategies::default();
        let spec = CollectionSpec::new("x-${version}", Limits::new(2, 1, 2).unwrap());
        r.validate(&spec).unwrap();
        let e = r.validate(&spec.clone().with_retention(RetentionSpec::named("no-such"))).unwrap_err();
        assert!(e.to_string().contains("unknown strategy \"no-such\"; known: fifo"), "{e}");
        let e = r.validate(&spec.with_retention(RetentionSpec::fifo().with_option("keep", "3"))).unwrap_err();
        assert!(e.to_string().contains("retention.options"), "{e}");
    }

    #[test]
    fn plan_contract_is_checked() {
        let now = Timestamp::UNIX_EPOCH;
        let vs: Vec<_> = (1..=2).map(|n| VersionSummary::new(VersionId::generate(), n, 1, now)).collect();
        assert_eq!(
            RotationPlan::default().check_against("custom", &vs).unwrap_err().kind(),
            crate::ErrorKind::Internal
        );
    }
}
