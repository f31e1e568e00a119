//! Alerts: what the detectors ([`crate::Engine::run_detectors`]) find in a collection's state
//! and write to the audit log as events of their own, for notification targets to deliver.
//!
//! | action | when |
//! |---|---|
//! | `window.missed` | a backup window's slot ended, plus [`AlertPolicy::window_grace`], without a version created in it |
//! | `window.ok` | the first version after a `window.missed` |
//! | `collection.stale` | no version for [`AlertPolicy::stale_after`] (collections without windows) |
//! | `upload.lighter` | a version under [`AlertPolicy::lighter_percent`] of the median of the previous [`AlertPolicy::lighter_versions`] |
//! | `upload.refused` | uploads were refused (each refusal is an `upload.refusal` event); one alert per [`AlertPolicy::refused_quiet`] |
//! | `quota.near` | the committed bytes passed [`AlertPolicy::quota_near_percent`] of the hard limit |
//! | `version.quarantined` | a scrub or a download found a version damaged |
//! | `scrub.failed` | a scrub found damage or could not check something (written by the scrub itself) |

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use crate::engine::detect::{DETECTORS_CURSOR, DetectorRun};

/// The actions of alert events, as targets subscribe to them.
pub const ALERTS: [&str; 8] = [
    WINDOW_MISSED,
    WINDOW_OK,
    COLLECTION_STALE,
    UPLOAD_LIGHTER,
    UPLOAD_REFUSED,
    QUOTA_NEAR,
    VERSION_QUARANTINED,
    SCRUB_FAILED,
];
/// A window's slot ended (plus the grace) without a version.
pub const WINDOW_MISSED: &str = "window.missed";
/// A version arrived after a missed window.
pub const WINDOW_OK: &str = "window.ok";
/// No version for too long.
pub const COLLECTION_STALE: &str = "collection.stale";
/// A version much smaller than the ones before it.
pub const UPLOAD_LIGHTER: &str = "upload.lighter";
/// Uploads were refused.
pub const UPLOAD_REFUSED: &str = "upload.refused";
/// The collection is nearly full.
pub const QUOTA_NEAR: &str = "quota.near";
/// A version was quarantined.
pub const VERSION_QUARANTINED: &str = "version.quarantined";
/// A scrub found damage or failed.
pub const SCRUB_FAILED: &str = "scrub.failed";

/// Whether `action` is an alert's.
pub fn is_alert(action: &str) -> bool {
    ALERTS.contains(&action)
}

/// How a collection's detectors judge it (in [`crate::CollectionSpec::alerts`]; every field
/// has a default, so `{}` is the defaults).
///
/// ```
/// use backup_core::alerts::AlertPolicy;
///
/// let p: AlertPolicy = serde_json::from_str(r#"{"lighter_percent": 60, "stale_after_seconds": 172800}"#)?;
/// assert_eq!((p.lighter_percent, p.lighter_versions, p.quota_near_percent), (60, 5, 90));
/// assert_eq!(p.stale_after, Some(std::time::Duration::from_secs(172_800)));
/// p.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertPolicy {
    /// How long after a window's slot ends a missing version is an alert (default 1 hour).
    #[serde(rename = "window_grace_seconds", with = "seconds")]
    pub window_grace: Duration,
    /// No version for this long is an alert, for collections without windows (default:
    /// never).
    #[serde(rename = "stale_after_seconds", with = "optional_seconds", skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<Duration>,
    /// A version smaller than this share (in percent) of the median of the previous ones is
    /// an alert (default 50; 0 turns it off).
    pub lighter_percent: u8,
    /// How many previous versions the median takes (default 5).
    pub lighter_versions: u32,
    /// Committed bytes over this share (in percent) of the hard limit are an alert (default
    /// 90; 0 turns it off).
    pub quota_near_percent: u8,
    /// Refused uploads make one alert per this long (default 1 hour).
    #[serde(rename = "refused_quiet_seconds", with = "seconds")]
    pub refused_quiet: Duration,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            window_grace: Duration::from_secs(3600),
            stale_after: None,
            lighter_percent: 50,
            lighter_versions: 5,
            quota_near_percent: 90,
            refused_quiet: Duration::from_secs(3600),
        }
    }
}

impl AlertPolicy {
    /// Whether this is the default policy (then a spec's JSON leaves it out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Alerts when no version came for `age`.
    pub fn with_stale_after(mut self, age: Duration) -> Self {
        self.stale_after = Some(age);
        self
    }

    /// Alerts on versions under `percent` of the median of the previous `versions`.
    pub fn with_lighter(mut self, percent: u8, versions: u32) -> Self {
        self.lighter_percent = percent;
        self.lighter_versions = versions;
        self
    }

    /// Alerts once the committed bytes pass `percent` of the hard limit.
    pub fn with_quota_near(mut self, percent: u8) -> Self {
        self.quota_near_percent = percent;
        self
    }

    /// The grace after a window's slot.
    pub fn with_window_grace(mut self, grace: Duration) -> Self {
        self.window_grace = grace;
        self
    }

    /// Checks the ranges: percentages up to 100, 1 to 100 previous versions, durations
    /// under 100 years.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
        let bad = |reason: String| Err(Error::invalid("alert policy", reason));
        if self.lighter_percent > 100 || self.quota_near_percent > 100 {
            return bad("percentages are 0 to 100".into());
        }
        if !(1..=100).contains(&self.lighter_versions) {
            return bad(format!("lighter_versions is {}, not 1 to 100", self.lighter_versions));
        }
        for d in [Some(self.window_grace), self.stale_after, Some(self.refused_quiet)].into_iter().flatten() {
            if d > CENTURY {
                return bad(format!("{}s is longer than 100 years", d.as_secs()));
            }
        }
        if self.stale_after.is_some_and(|d| d.is_zero()) {
            return bad("stale_after is zero".into());
        }
        Ok(())
    }
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

mod optional_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|s| s.map(Duration::from_secs))
    }
}
