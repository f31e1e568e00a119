//! Any crontab, duration and time zone as a backup window: parsing never panics, and an
//! accepted window answers consistently: open only strictly inside its last slot.
#![no_main]

use arbitrary::Arbitrary;
use backup_policy::BackupWindow;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    from: String,
    duration: String,
    zone: Option<String>,
    now: i64,
}

fuzz_target!(|input: Input| {
    let Ok(w) = BackupWindow::parse(&input.from, &input.duration, input.zone.as_deref()) else { return };
    // Instants between 1970 and 2200.
    let secs = input.now.rem_euclid(7_258_118_400);
    let Some(now) = DateTime::<Utc>::from_timestamp(secs, 0) else { return };
    let open = w.is_open(now);
    match w.last_slot(now) {
        Some((start, end)) => {
            assert!(start < now, "the previous start is strictly before now");
            assert_eq!(open, now < end);
        }
        None => assert!(!open),
    }
    let _ = w.to_string();
});
