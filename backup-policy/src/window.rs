//! Backup windows: a 5-field crontab start and a duration, in a time zone.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::error::{Error, Result};

/// The longest a window may last: a year.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A backup window: it opens at every time the crontab `from` names and stays open for
/// `duration`, in a time zone (UTC unless set).
///
/// With backup-repository's semantics: the *previous start* is the most recent start strictly
/// before now (at the exact instant of a start, it is the one before), and the window is open
/// when now is strictly after that start and strictly before start + duration.
///
/// ```
/// use backup_policy::BackupWindow;
/// use chrono::{TimeZone, Utc};
///
/// let w = BackupWindow::parse("*/30 * * * *", "10m", None)?;
/// let at = |h, m, s| Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).unwrap();
/// assert!(w.is_open(at(1, 30, 1)));
/// assert!(w.is_open(at(1, 39, 59)));
/// assert!(!w.is_open(at(1, 45, 34)));
/// # Ok::<(), backup_policy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BackupWindow {
    from: String,
    cron: Cron,
    duration: Duration,
    time_zone: Tz,
}

impl PartialEq for BackupWindow {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from && self.duration == other.duration && self.time_zone == other.time_zone
    }
}

impl BackupWindow {
    /// What [`BackupWindow::new`] and [`BackupWindow::parse`] name as `what` in
    /// [`backup_core::Error::InvalidInput`] when the crontab line is refused.
    pub const SCHEDULE: &'static str = "backup window schedule";
    /// … when the duration is refused.
    pub const DURATION: &'static str = "backup window duration";
    /// … when the time zone is refused.
    pub const TIME_ZONE: &'static str = "time zone";

    /// A window from a crontab line (`minute hour day-of-month month [day-of-week]`, as
    /// backup-repository reads it), a duration and a time zone.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for an invalid crontab, a zero or over-long duration.
    pub fn new(from: &str, duration: Duration, time_zone: Tz) -> Result<Self> {
        let fields = from.split_whitespace().count();
        // robfig/cron's DowOptional: four fields mean every day of the week.
        let pattern = match fields {
            4 => format!("{from} *"),
            5 => from.to_owned(),
            n => {
                return Err(Error::invalid(
                    Self::SCHEDULE,
                    format!("{from:?} has {n} fields; expected 5 (minute hour day-of-month month day-of-week)"),
                ));
            }
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| Error::invalid(Self::SCHEDULE, format!("{from:?} is not a valid crontab: {e}")))?;
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(Error::invalid(
                Self::DURATION,
                format!("duration {duration:?} must be between 1 s and a year"),
            ));
        }
        Ok(BackupWindow { from: from.to_owned(), cron, duration, time_zone })
    }

    /// Like [`BackupWindow::new`], with the duration as text (`30m`, `1h 30m`, `2h`) and an
    /// optional IANA time zone name (`Europe/Warsaw`).
    ///
    /// # Errors
    /// As [`BackupWindow::new`]; an unparsable duration or an unknown time zone.
    pub fn parse(from: &str, duration: &str, time_zone: Option<&str>) -> Result<Self> {
        let d = humantime::parse_duration(duration)
            .map_err(|e| Error::invalid(Self::DURATION, format!("duration {duration:?}: {e}")))?;
        let tz = match time_zone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| Error::invalid(Self::TIME_ZONE, format!("{name:?} is not an IANA time zone")))?,
        };
        Self::new(from, d, tz)
    }

    /// The crontab as configured.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// How long it stays open.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Its time zone.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The most recent start strictly before `now`, if there is one.
    pub fn previous_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.time_zone);
        self.cron.find_previous_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The slot `[start, start + duration)` of the most recent start before `now`.
    pub fn last_slot(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = self.previous_start(now)?;
        let length = chrono::Duration::from_std(self.duration).ok()?;
        Some((start, start + length))
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.last_slot(now).is_some_and(|(start, end)| start < now && now < end)
    }
}

impl fmt::Display for BackupWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interval({}) + {}", self.from, humantime::format_duration(self.duration))?;
        if self.time_zone != Tz::UTC {
            write!(f, " {}", self.time_zone.name())?;
        }
        Ok(())
    }
}

/// The window as a collection's health sees it ([`backup_core::health`]): its last slot, and
/// its description.
impl backup_core::health::Window for BackupWindow {
    fn last_slot(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        BackupWindow::last_slot(self, now)
    }
}

/// Whether uploads are allowed at `now` by the windows alone: no windows, or one open.
pub fn any_open(windows: &[BackupWindow], now: DateTime<Utc>) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.is_open(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// backup-repository's tests of the previous run: at the exact start it is the one before.
    #[test]
    fn previous_start_is_strictly_before_now() {
        let w = BackupWindow::parse("*/30 * * * *", "30m", None).unwrap();
        assert_eq!(w.previous_start(utc(2026, 1, 1, 1, 30, 0)), Some(utc(2026, 1, 1, 1, 0, 0)));
        assert_eq!(w.previous_start(utc(2026, 1, 1, 1, 35, 5)), Some(utc(2026, 1, 1, 1, 30, 0)));
    }

    /// backup-repository's `TestIsInWindowNow`, plus the boundaries.
    #[test]
    fn open_strictly_inside() {
        let w = BackupWindow::parse("*/30 * * * *", "10m", None).unwrap();
        let table = [
            (utc(2026, 1, 1, 1, 30, 1), true),
            (utc(2026, 1, 1, 1, 39, 59), true),
            (utc(2026, 1, 1, 1, 45, 34), false),
            (utc(2026, 1, 1, 1, 30, 0), false), // the start itself belongs to the previous slot
            (utc(2026, 1, 1, 1, 40, 0), false), // start + duration is outside
            (utc(2026, 1, 1, 1, 0, 0), false),
        ];
        for (now, open) in table {
            assert_eq!(w.is_open(now), open, "{now}");
        }
        assert!(any_open(&[], utc(2026, 1, 1, 0, 0, 0)), "no windows: always open");
    }

    #[test]
    fn a_monthly_window() {
        // The 1st of every month, 02:00 for six hours.
        let w = BackupWindow::parse("0 2 1 * *", "6h", None).unwrap();
        assert!(w.is_open(utc(2026, 3, 1, 3, 0, 0)));
        assert!(!w.is_open(utc(2026, 3, 1, 8, 0, 0)));
        assert!(!w.is_open(utc(2026, 3, 15, 3, 0, 0)));
        assert_eq!(w.previous_start(utc(2026, 3, 1, 1, 0, 0)), Some(utc(2026, 2, 1, 2, 0, 0)), "a month back");
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:30 in Warsaw, daily, for an hour.
        let w = BackupWindow::parse("30 2 * * *", "1h", Some("Europe/Warsaw")).unwrap();
        // Winter: UTC+1.
        assert!(w.is_open(utc(2026, 1, 10, 1, 45, 0)));
        assert!(!w.is_open(utc(2026, 1, 10, 2, 45, 0)));
        // Summer: UTC+2.
        assert!(w.is_open(utc(2026, 7, 10, 0, 45, 0)));
        // 2026-03-29 02:00 → 03:00: 02:30 does not exist that night. The window does not open
        // at a time that never was; it is open again the next night.
        let spring = w.previous_start(utc(2026, 3, 29, 5, 0, 0)).unwrap();
        assert!(spring <= utc(2026, 3, 29, 5, 0, 0));
        assert!(w.is_open(utc(2026, 3, 30, 0, 45, 0)));
        // 2026-10-25 03:00 → 02:00: 02:30 happens twice; the window opens (once or twice) and
        // is closed an hour after the second 02:30.
        assert!(w.is_open(utc(2026, 10, 25, 0, 45, 0)) || w.is_open(utc(2026, 10, 25, 1, 45, 0)));
        assert!(!w.is_open(utc(2026, 10, 25, 2, 45, 0)));
    }

    #[test]
    fn invalid_windows_are_refused() {
        for (from, duration, tz) in [
            ("00 30 * * *", "1h", None), // README's example: hour 30
            ("* * * * * *", "1h", None), // six fields
            ("*/30 * * * *", "0s", None),
            ("*/30 * * * *", "forever", None),
            ("*/30 * * * *", "1h", Some("Mars/Olympus")),
            ("", "1h", None),
        ] {
            assert!(BackupWindow::parse(from, duration, tz).is_err(), "{from:?} {duration:?} {tz:?}");
        }
        assert!(BackupWindow::parse("0 2 * *", "1h", None).is_ok(), "four fields: any weekday");
    }
}
