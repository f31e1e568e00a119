//! Any text as a version selector: never a panic; accepted selectors print back to a form
//! that parses to the same selector.
#![no_main]

use backup_core::VersionSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sel) = text.parse::<VersionSelector>() {
        if let VersionSelector::Number(n) = sel {
            assert!(n >= 1);
        }
        assert_eq!(sel.to_string().parse::<VersionSelector>().unwrap(), sel);
    }
});
