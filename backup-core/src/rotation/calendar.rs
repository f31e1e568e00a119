//! Calendar facts of a version's receipt time in a collection's time zone, and calendar
//! durations (`10d`, `36h`, `1y6m`): what the calendar strategies decide on.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::time::Timestamp;

/// A receipt time's periods in a time zone, as comparable keys (restic's `ymdh`, `ymd`, `yw`,
/// `ym`, `y`), computed once per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Periods {
    pub(crate) hour: i64,
    pub(crate) day: i64,
    pub(crate) week: i64,
    pub(crate) month: i64,
    pub(crate) year: i64,
}

impl Periods {
    pub(crate) fn of(t: Timestamp, tz: Tz) -> Self {
        let local = tz.from_utc_datetime(&t.to_datetime().naive_utc());
        let (y, m, d, h) =
            (i64::from(local.year()), i64::from(local.month()), i64::from(local.day()), i64::from(local.hour()));
        let iso = local.iso_week();
        Periods {
            hour: y * 1_000_000 + m * 10_000 + d * 100 + h,
            day: y * 10_000 + m * 100 + d,
            week: i64::from(iso.year()) * 100 + i64::from(iso.week()),
            month: y * 100 + m,
            year: y,
        }
    }
}

/// How a period key reads in a reason: `2026-11-20 14h`, `2026-11-20`, `2026-W47`,
/// `2026-11`, `2026`.
pub(crate) fn period_label(rule: Rule, key: i64) -> String {
    match rule {
        Rule::Hourly => {
            format!("{:04}-{:02}-{:02} {:02}h", key / 1_000_000, key / 10_000 % 100, key / 100 % 100, key % 100)
        }
        Rule::Daily => format!("{:04}-{:02}-{:02}", key / 10_000, key / 100 % 100, key % 100),
        Rule::Weekly => format!("{:04}-W{:02}", key / 100, key % 100),
        Rule::Monthly => format!("{:04}-{:02}", key / 100, key % 100),
        Rule::Yearly => format!("{key:04}"),
        Rule::Last => String::new(),
    }
}

/// The count rules of a calendar policy, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    pub(crate) const ALL: [Rule; 6] =
        [Rule::Last, Rule::Hourly, Rule::Daily, Rule::Weekly, Rule::Monthly, Rule::Yearly];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The period key of a version; `Last` gives every version its own (its position).
    pub(crate) fn key(self, p: &Periods, position: usize) -> i64 {
        match self {
            Rule::Last => position as i64,
            Rule::Hourly => p.hour,
            Rule::Daily => p.day,
            Rule::Weekly => p.week,
            Rule::Monthly => p.month,
            Rule::Yearly => p.year,
        }
    }
}

/// A calendar duration, as restic reads `--keep-within`: years, months, days and hours,
/// written `1y6m`, `10d`, `36h`, `2d12h`.
///
/// ```
/// use backup_core::rotation::CalendarDuration;
///
/// let d: CalendarDuration = "1y2m10d36h".parse()?;
/// assert_eq!((d.years, d.months, d.days, d.hours), (1, 2, 10, 36));
/// assert_eq!(d.to_string(), "1y2m10d36h");
/// assert!("10 days".parse::<CalendarDuration>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CalendarDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl CalendarDuration {
    /// Whether it is zero.
    pub fn is_zero(&self) -> bool {
        *self == CalendarDuration::default()
    }

    /// `t − self` on the calendar of `tz`: years, months and days are taken from the local
    /// date (a day-of-month past the month's end carries into the next month, as Go's
    /// `AddDate` does), hours from the instant.
    pub(crate) fn before(&self, t: Timestamp, tz: Tz) -> Timestamp {
        let local = tz.from_utc_datetime(&t.to_datetime().naive_utc()).naive_local();
        let months = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
        let shifted = i32::try_from(year)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, month0 as u32 + 1, 1))
            .and_then(|first| first.checked_add_days(Days::new(u64::from(local.day() - 1))))
            .and_then(|d| d.checked_sub_days(Days::new(u64::from(self.days))))
            .map(|d| NaiveDateTime::new(d, local.time()));
        let Some(naive) = shifted else { return Timestamp::UNIX_EPOCH };
        // A local time skipped by a DST change counts as the instant just after it.
        let instant = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.to_utc(),
            chrono::LocalResult::None => tz.from_utc_datetime(&naive).to_utc(),
        };
        Timestamp::from(instant) - chrono::Duration::hours(i64::from(self.hours))
    }
}

impl FromStr for CalendarDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like 10d, 36h, 1y6m (y, m, d, h)");
        if s.is_empty() || s.len() > 40 {
            return Err(bad());
        }
        let mut d = CalendarDuration::default();
        let mut number = String::new();
        let mut seen = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().map_err(|_| bad())?;
            number.clear();
            if seen.contains(c) {
                return Err(bad());
            }
            seen.push(c);
            match c {
                'y' => d.years = n,
                'm' => d.months = n,
                'd' => d.days = n,
                'h' => d.hours = n,
                _ => return Err(bad()),
            }
        }
        if !number.is_empty() || seen.is_empty() || d.years > 1000 || d.months > 12_000 {
            return Err(bad());
        }
        Ok(d)
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> Timestamp {
        Timestamp::from(chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn periods_follow_the_time_zone_and_iso_weeks() {
        // 23:30 UTC on Sunday 2026-03-29 is already Monday in Warsaw (after the DST switch).
        let t = at("2026-03-29T23:30:00Z");
        let utc = Periods::of(t, Tz::UTC);
        let waw = Periods::of(t, chrono_tz::Europe::Warsaw);
        assert_eq!((utc.day, utc.week, utc.hour), (20260329, 202613, 2026032923));
        assert_eq!((waw.day, waw.week, waw.hour), (20260330, 202614, 2026033001));
        // 2027-01-01 is in ISO week 53 of 2026.
        assert_eq!(Periods::of(at("2027-01-01T12:00:00Z"), Tz::UTC).week, 202653);
    }

    #[test]
    fn calendar_subtraction_carries_like_go() {
        let d: CalendarDuration = "1m".parse().unwrap();
        // March 31 minus a month: February 31st carries to March 3rd (2026 is not a leap year).
        assert_eq!(d.before(at("2026-03-31T10:00:00Z"), Tz::UTC), at("2026-03-03T10:00:00Z"));
        let d: CalendarDuration = "1d2h".parse().unwrap();
        assert_eq!(d.before(at("2026-01-01T01:00:00Z"), Tz::UTC), at("2025-12-30T23:00:00Z"));
        // A day before 2026-03-30 12:00 in Warsaw is 2026-03-29 12:00 local (a 23-hour day).
        let day: CalendarDuration = "1d".parse().unwrap();
        assert_eq!(day.before(at("2026-03-30T10:00:00Z"), chrono_tz::Europe::Warsaw), at("2026-03-29T10:00:00Z"));
    }

    #[test]
    fn durations_parse_and_print() {
        for ok in ["10d", "36h", "1y6m", "2d12h", "1y2m3d4h"] {
            assert_eq!(ok.parse::<CalendarDuration>().unwrap().to_string(), ok);
        }
        for bad in ["", "10", "d", "1w", "1d1d", "-1d", "1.5d", "10 d", &"9".repeat(50)] {
            assert!(bad.parse::<CalendarDuration>().is_err(), "{bad:?}");
        }
    }
}
