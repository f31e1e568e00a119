//! Numbers and times as the dashboard shows them.

use backup_core::Timestamp;

/// Bytes in binary units with one decimal (`1.5 MiB`), exact below a KiB.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time in UTC to the minute (`2026-12-01 10:38 UTC`).
pub(crate) fn time(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time for `<time datetime=…>`.
pub(crate) fn machine_time(t: Timestamp) -> String {
    t.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `part` of `whole` in percent, 0 for an empty whole, at most 999 (a collection may be over
/// its limit).
pub(crate) fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 { 0 } else { (u128::from(part) * 100 / u128::from(whole)).min(999) as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(1, 0), 0);
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(u64::MAX, 1), 999);
    }
}
