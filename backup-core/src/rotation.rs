//! Retention: which versions a collection keeps when a new one arrives.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::id::VersionId;
use crate::spec::{CollectionSpec, RetentionSpec};

/// The facts about a committed version a rotation strategy may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSummary {
    /// The version's id.
    pub id: VersionId,
    /// Its number.
    pub number: u64,
    /// Its size in bytes.
    pub size: u64,
    /// When the server began to receive it.
    pub created_at: DateTime<Utc>,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
}

/// The upload that is about to join the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// Its size, when known (at commit time it always is).
    pub size: Option<u64>,
    /// When the server began to receive it.
    pub created_at: DateTime<Utc>,
}

/// Everything a [`RotationStrategy`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct RotationInput<'a> {
    /// The collection's specification (limits and retention options).
    pub spec: &'a CollectionSpec,
    /// The committed versions, ascending by number.
    pub versions: &'a [VersionSummary],
    /// The upload about to join.
    pub incoming: Incoming,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// Whether a version stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// The version stays committed.
    Keep,
    /// The version is trashed when the incoming upload commits.
    Evict,
}

/// The decision about one version, with the reason people will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationDecision {
    /// The version.
    pub id: VersionId,
    /// Its number.
    pub number: u64,
    /// Keep or evict.
    pub mark: Mark,
    /// Why.
    pub reason: String,
}

/// A strategy's answer: one decision per committed version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationPlan {
    /// One decision for every version of the input, in the input's order.
    pub decisions: Vec<RotationDecision>,
}

impl RotationPlan {
    /// The versions marked [`Mark::Evict`].
    pub fn evicted(&self) -> impl Iterator<Item = &RotationDecision> {
        self.decisions.iter().filter(|d| d.mark == Mark::Evict)
    }

    /// Checks the contract: exactly one decision per input version, in order.
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
/// and the time to a plan with a reason for every version.
///
/// Contract: [`RotationStrategy::plan`] returns exactly one decision per input version, in
/// input order, is deterministic, and keeps at most `max_versions − 1` versions so the
/// incoming one fits (the engine refuses a commit otherwise). It must not panic on any input.
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

    /// Decides which versions stay when `input.incoming` commits.
    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan;
}

/// First in, first out, with backup-repository's semantics: when the count would pass
/// `max_versions`, the oldest versions are evicted, as many as needed (which also trims a
/// collection that holds too many, for example after `max_versions` was lowered).
///
/// ```
/// use backup_core::rotation::{Fifo, Incoming, Mark, RotationInput, RotationStrategy, VersionSummary};
/// use backup_core::{CollectionSpec, Limits, VersionId};
/// use chrono::Utc;
///
/// let spec = CollectionSpec::new("b-${version}", Limits::new(2, 10, 20)?);
/// let now = Utc::now();
/// let versions: Vec<_> = (1..=2)
///     .map(|n| VersionSummary { id: VersionId::generate(), number: n, size: 5, created_at: now, committed_at: now })
///     .collect();
/// let plan = Fifo.plan(&RotationInput {
///     spec: &spec,
///     versions: &versions,
///     incoming: Incoming { size: Some(5), created_at: now },
///     now,
/// });
/// let marks: Vec<_> = plan.decisions.iter().map(|d| d.mark).collect();
/// assert_eq!(marks, [Mark::Evict, Mark::Keep]);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

impl Fifo {
    /// The name `fifo`.
    pub const NAME: &'static str = "fifo";
}

impl RotationStrategy for Fifo {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn plan(&self, input: &RotationInput<'_>) -> RotationPlan {
        let max = input.spec.limits.max_versions as usize;
        // The incoming version takes one place; evict the oldest beyond the rest.
        let evict = (input.versions.len() + 1).saturating_sub(max);
        let decisions = input
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (mark, reason) = if i < evict {
                    (
                        Mark::Evict,
                        format!("fifo: version {} is among the {evict} oldest beyond max_versions={max}", v.number),
                    )
                } else {
                    (Mark::Keep, format!("fifo: version {} is among the newest {max}", v.number))
                };
                RotationDecision { id: v.id, number: v.number, mark, reason }
            })
            .collect();
        RotationPlan { decisions }
    }
}

/// The strategies an engine knows, by name; `fifo` is always there.
#[derive(Debug, Clone)]
pub struct RotationStrategies {
    by_name: BTreeMap<String, Arc<dyn RotationStrategy>>,
}

impl Default for RotationStrategies {
    fn default() -> Self {
        let mut by_name: BTreeMap<String, Arc<dyn RotationStrategy>> = BTreeMap::new();
        by_name.insert(Fifo::NAME.to_owned(), Arc::new(Fifo));
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
        strategy.validate(spec).map_err(|reason| Error::InvalidSpec { field: "retention.options", reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    fn versions(n: u64) -> Vec<VersionSummary> {
        let now = Utc::now();
        (1..=n)
            .map(|number| VersionSummary {
                id: VersionId::generate(),
                number,
                size: 1,
                created_at: now,
                committed_at: now,
            })
            .collect()
    }

    fn evicted_numbers(max_versions: u32, existing: u64) -> Vec<u64> {
        let spec = CollectionSpec::new("x-${version}", Limits::new(max_versions, 1, u64::from(max_versions)).unwrap());
        let vs = versions(existing);
        let plan = Fifo.plan(&RotationInput {
            spec: &spec,
            versions: &vs,
            incoming: Incoming { size: None, created_at: Utc::now() },
            now: Utc::now(),
        });
        plan.check_against("fifo", &vs).unwrap();
        plan.evicted().map(|d| d.number).collect()
    }

    /// The matrix of backup-repository's `rotation_test.go`: nothing is deleted below the
    /// limit; at or above it the oldest `existing − max + 1` go.
    #[test]
    fn fifo_matrix() {
        let table: &[(u32, u64, &[u64])] = &[
            (3, 0, &[]),
            (3, 1, &[]),
            (3, 2, &[]),
            (3, 3, &[1]),
            (3, 5, &[1, 2, 3]),
            (1, 1, &[1]),
            (1, 0, &[]),
            (5, 4, &[]),
            (5, 5, &[1]),
        ];
        for &(max, existing, expected) in table {
            assert_eq!(evicted_numbers(max, existing), expected, "max={max} existing={existing}");
        }
    }

    #[test]
    fn every_decision_has_a_reason() {
        let spec = CollectionSpec::new("x-${version}", Limits::new(2, 1, 2).unwrap());
        let vs = versions(3);
        let plan = Fifo.plan(&RotationInput {
            spec: &spec,
            versions: &vs,
            incoming: Incoming { size: Some(1), created_at: Utc::now() },
            now: Utc::now(),
        });
        assert!(plan.decisions.iter().all(|d| d.reason.starts_with("fifo: ")));
    }

    #[test]
    fn registry_refuses_unknown_names_and_options() {
        let r = RotationStrategies::default();
        let spec = CollectionSpec::new("x-${version}", Limits::new(2, 1, 2).unwrap());
        r.validate(&spec).unwrap();
        let e = r.validate(&spec.clone().with_retention(RetentionSpec::named("fifo-plus-older"))).unwrap_err();
        assert!(e.to_string().contains("unknown strategy \"fifo-plus-older\"; known: fifo"), "{e}");
        let e = r.validate(&spec.with_retention(RetentionSpec::fifo().with_option("keep", "3"))).unwrap_err();
        assert!(e.to_string().contains("retention.options"), "{e}");
    }

    #[test]
    fn plan_contract_is_checked() {
        let vs = versions(2);
        let plan = RotationPlan::default();
        assert_eq!(plan.check_against("custom", &vs).unwrap_err().kind(), crate::ErrorKind::Internal);
    }
}
