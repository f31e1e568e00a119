//! Any text as a size: never a panic; accepted sizes are consistent with their number.
#![no_main]

use backup_policy::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(n) = parse_size(text) {
        assert!(!text.trim().starts_with('-'), "negative sizes are refused");
        // A plain integer is that many bytes.
        if let Ok(plain) = text.trim().parse::<u64>() {
            assert_eq!(n, plain);
        }
    }
});
