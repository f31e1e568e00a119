//! Retention locks: a collection's [`LockPolicy`], the [`VersionLock`] each committed version
//! gets from it, and the store's own enforcement of them ([`ObjectLocks`]).
//!
//! A locked version is never removed before its lock ends, by any caller: no deletion, no
//! rotation, no purge, no deletion of its collection. In [`LockMode::Compliance`] nobody can
//! lift or shorten a lock; in [`LockMode::Governance`] a caller the authorizer allows
//! [`crate::Action::BypassGovernance`] can, and each use is audited (`lock.bypass`). A lock
//! can always be lengthened, never shortened ([`crate::Engine::lock_version`]); holds stay
//! legal holds on top.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::Duration;
use object_store::path::Path;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// The longest minimum retention a policy may name: 100 years (so that every lock's end is
/// a time every catalog stores).
pub const MAX_LOCK_RETENTION_DAYS: i64 = 36_525;

/// Who may lift or shorten a lock before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// A caller with the dedicated permission ([`crate::Action::BypassGovernance`]) may, and
    /// each use is an audit event; nobody else, system administrators included.
    Governance,
    /// Nobody, system administrators included, and no configuration change.
    Compliance,
}

impl LockMode {
    /// `governance` or `compliance`.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LockMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            other => Err(Error::InvalidSpec {
                field: "lock.mode",
                reason: format!("{:?} is not governance or compliance", other.chars().take(40).collect::<String>()),
            }),
        }
    }
}

/// A collection's lock policy: every version committed under it is locked until its
/// `created_at + min_retention`, in `mode`.
///
/// ```
/// use backup_core::{CollectionSpec, Limits, LockMode, LockPolicy};
/// use chrono::Duration;
///
/// let spec = CollectionSpec::new("db-${version}", Limits::new(5, 100, 500)?)
///     .with_lock(LockPolicy::new(LockMode::Compliance, Duration::days(30)));
/// spec.validate()?;
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LockPolicy {
    /// Who may lift a lock early.
    pub mode: LockMode,
    /// How long each committed version stays locked, from its `created_at`; stored as
    /// whole seconds.
    #[serde(rename = "min_retention_seconds", serialize_with = "seconds_out", deserialize_with = "seconds_in")]
    pub min_retention: Duration,
}

fn seconds_out<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_seconds())
}

fn seconds_in<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let secs = i64::deserialize(d)?;
    Duration::try_seconds(secs).ok_or_else(|| serde::de::Error::custom(format!("{secs} seconds is out of range")))
}

impl LockPolicy {
    /// A policy locking each version for `min_retention` (whole seconds; finer parts are
    /// dropped) in `mode`. Checked by [`LockPolicy::validate`].
    pub fn new(mode: LockMode, min_retention: Duration) -> Self {
        LockPolicy { mode, min_retention: Duration::seconds(min_retention.num_seconds()) }
    }

    /// Checks the retention: at least a second, at most [`MAX_LOCK_RETENTION_DAYS`].
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for `lock.min_retention`.
    pub fn validate(&self) -> Result<()> {
        if self.min_retention < Duration::seconds(1) || self.min_retention > Duration::days(MAX_LOCK_RETENTION_DAYS) {
            return Err(Error::InvalidSpec {
                field: "lock.min_retention",
                reason: format!(
                    "{} seconds is not between 1 second and {MAX_LOCK_RETENTION_DAYS} days",
                    self.min_retention.num_seconds()
                ),
            });
        }
        Ok(())
    }

    /// The lock of a version created at `created_at`.
    pub fn lock_from(&self, created_at: Timestamp) -> VersionLock {
        // Validated policies and stored times keep this in range; saturate rather than panic.
        let until = created_at.checked_add(self.min_retention).unwrap_or_else(Timestamp::end_of_time);
        VersionLock { mode: self.mode, until }
    }

    /// Why replacing `self` by `next` weakens the promise (a shorter retention, a removed
    /// policy, compliance turned into governance), or `None` when it keeps or strengthens it.
    pub fn weakened_by(&self, next: Option<&LockPolicy>) -> Option<String> {
        match next {
            None => Some(format!("it removes the {} lock policy", self.mode)),
            Some(n) if n.mode < self.mode => Some(format!("it turns a {} lock policy into {}", self.mode, n.mode)),
            Some(n) if n.min_retention < self.min_retention => Some(format!(
                "it shortens the {} lock's minimum retention from {} to {} seconds",
                self.mode,
                self.min_retention.num_seconds(),
                n.min_retention.num_seconds()
            )),
            Some(_) => None,
        }
    }
}

/// A version's lock: it may not be removed before `until`; see [`LockMode`] for who may lift
/// it early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VersionLock {
    /// Who may lift it early.
    pub mode: LockMode,
    /// When it ends.
    pub until: Timestamp,
}

impl VersionLock {
    /// A lock in `mode` until `until`.
    pub fn new(mode: LockMode, until: Timestamp) -> Self {
        VersionLock { mode, until }
    }

    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        now < self.until
    }

    /// The lock `self` becomes when asked to become `wanted`: the later end and the stricter
    /// mode; an error when `wanted` would shorten or weaken it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what would be shortened or weakened.
    pub fn lengthened_to(&self, wanted: VersionLock) -> Result<VersionLock> {
        if wanted.until < self.until {
            return Err(Error::invalid(
                "lock",
                format!("{} would shorten the lock until {}; a lock can only be lengthened", wanted.until, self.until),
            ));
        }
        if wanted.mode < self.mode {
            return Err(Error::invalid("lock", format!("a {} lock cannot become {}", self.mode, wanted.mode)));
        }
        Ok(wanted)
    }
}

impl fmt::Display for VersionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "locked ({}) until {}", self.mode, self.until)
    }
}

/// A store's own enforcement of version locks, so that they hold against the store's
/// credentials too: S3 Object Lock retention on a bucket that has it, read-only files on
/// local disk. Set it with [`crate::EngineBuilder::object_locks`].
///
/// The engine calls [`ObjectLocks::retain`] for a locked version's object and description
/// when it writes the description (after the commit, and again after the lock is
/// lengthened); one that fails leaves the version marked undescribed, so
/// [`crate::Engine::recover`] tries again. The engine itself never deletes an object before
/// its lock ends.
///
/// # Implementing it for another store
/// `retain` must be idempotent and must never shorten a retention the store already has
/// (S3 refuses that in compliance mode anyway); `check` answers whether the store will
/// enforce what `retain` sets.
#[async_trait]
pub trait ObjectLocks: fmt::Debug + Send + Sync + 'static {
    /// Makes the store keep the object at `key` until `lock.until` (in the store's
    /// equivalent of `lock.mode`), or longer if it already does.
    ///
    /// # Errors
    /// A failure to set it; the engine tries again at the next maintenance run.
    async fn retain(&self, key: &Path, lock: &VersionLock) -> Result<()>;

    /// Checks that the store enforces retention (an S3 bucket with Object Lock enabled): the
    /// server refuses to run a compliance collection on a store that claims it and does not.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what is missing; a failure to ask.
    async fn check(&self) -> Result<()>;

    /// What this enforcement guarantees and what it cannot stop, for logs and status pages.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: LockMode, days: i64) -> LockPolicy {
        LockPolicy::new(mode, Duration::days(days))
    }

    #[test]
    fn weakening_is_named_and_strengthening_is_not() {
        let c30 = policy(LockMode::Compliance, 30);
        assert!(c30.weakened_by(None).unwrap().contains("removes"));
        assert!(c30.weakened_by(Some(&policy(LockMode::Compliance, 29))).unwrap().contains("shortens"));
        assert!(c30.weakened_by(Some(&policy(LockMode::Governance, 60))).unwrap().contains("into governance"));
        assert_eq!(c30.weakened_by(Some(&policy(LockMode::Compliance, 31))), None);
        assert_eq!(policy(LockMode::Governance, 30).weakened_by(Some(&c30)), None);
    }

    #[test]
    fn retention_bounds() {
        assert!(policy(LockMode::Compliance, 0).validate().is_err());
        assert!(policy(LockMode::Compliance, MAX_LOCK_RETENTION_DAYS + 1).validate().is_err());
        assert!(LockPolicy::new(LockMode::Governance, Duration::seconds(1)).validate().is_ok());
        assert!(LockPolicy::new(LockMode::Governance, Duration::milliseconds(999)).validate().is_err());
    }

    #[test]
    fn locks_only_lengthen() {
        let t = Timestamp::UNIX_EPOCH + Duration::days(10);
        let lock = VersionLock::new(LockMode::Governance, t);
        assert!(lock.lengthened_to(VersionLock::new(LockMode::Governance, t - Duration::seconds(1))).is_err());
        assert!(
            VersionLock::new(LockMode::Compliance, t).lengthened_to(VersionLock::new(LockMode::Governance, t)).is_err()
        );
        let later = VersionLock::new(LockMode::Compliance, t + Duration::days(1));
        assert_eq!(lock.lengthened_to(later).unwrap(), later);
    }

    #[test]
    fn policy_serializes_seconds() {
        let json = serde_json::to_string(&policy(LockMode::Compliance, 1)).unwrap();
        assert_eq!(json, r#"{"mode":"compliance","min_retention_seconds":86400}"#);
        assert_eq!(serde_json::from_str::<LockPolicy>(&json).unwrap(), policy(LockMode::Compliance, 1));
    }
}
