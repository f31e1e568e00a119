//! [`Timestamp`]: the one time type of records, at the precision every catalog stores.

use std::fmt;
use std::ops::{Add, Sub};

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC, truncated to whole microseconds: what SQLite and PostgreSQL store
/// exactly, so that what an operation returns equals what a later read returns.
///
/// Every time in a record (versions, sessions, audit events) is a `Timestamp`; the
/// [`crate::Clock`] gives a `DateTime<Utc>`, and `Timestamp::from` truncates it.
///
/// ```
/// use backup_core::Timestamp;
/// use chrono::{Duration, TimeZone, Utc};
///
/// let t = Timestamp::from(Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap());
/// assert_eq!(t.as_micros(), 1_700_000_000_123_456);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
/// assert_eq!((t + Duration::seconds(1)) - t, Duration::seconds(1));
/// assert_eq!(Timestamp::from_micros(t.as_micros()), Some(t));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(DateTime::UNIX_EPOCH);

    /// 9999-12-31T23:59:59Z, the latest instant a record holds where a time must be
    /// clamped (every catalog stores it).
    pub fn end_of_time() -> Self {
        Timestamp(Utc.timestamp_opt(253_402_300_799, 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    /// The instant `micros` microseconds after the Unix epoch, if representable.
    pub fn from_micros(micros: i64) -> Option<Self> {
        Utc.timestamp_micros(micros).single().map(Timestamp)
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// As a chrono time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// `self + d`, or `None` when out of range.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        self.0.checked_add_signed(d).map(Self::from)
    }

    /// `self − d`, or `None` when out of range.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        self.0.checked_sub_signed(d).map(Self::from)
    }

    /// RFC 3339 with microseconds, as stored.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t.trunc_subsecs(6))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl PartialEq<DateTime<Utc>> for Timestamp {
    fn eq(&self, other: &DateTime<Utc>) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<DateTime<Utc>> for Timestamp {
    fn partial_cmp(&self, other: &DateTime<Utc>) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

/// Saturates at the ends of chrono's range instead of panicking.
impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.checked_add(d).unwrap_or(if d < Duration::zero() { MIN } else { MAX })
    }
}

/// Saturates at the ends of chrono's range instead of panicking.
impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.checked_sub(d).unwrap_or(if d < Duration::zero() { MAX } else { MIN })
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, other: Timestamp) -> Duration {
        self.0 - other.0
    }
}

const MIN: Timestamp = Timestamp(DateTime::<Utc>::MIN_UTC);
const MAX: Timestamp = Timestamp(DateTime::<Utc>::MAX_UTC);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Reads any RFC 3339 time and truncates it to microseconds.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DateTime::<Utc>::deserialize(d).map(Timestamp::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Timestamp::from(Utc::now());
        assert_eq!(t + Duration::MAX, MAX);
        assert_eq!(t - Duration::MAX, MIN);
        assert!(t.checked_add(Duration::MAX).is_none());
    }

    #[test]
    fn serde_round_trips_and_truncates() {
        let json = "\"2026-11-30T10:00:00.123456789Z\"";
        let t: Timestamp = serde_json::from_str(json).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T10:00:00.123456Z");
        let back: Timestamp = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}
