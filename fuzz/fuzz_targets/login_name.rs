//! Any text as a login name: never a panic; an accepted name splits at the last `$` and
//! joins back to the input.
#![no_main]

use backup_policy::LoginName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(l) = text.parse::<LoginName>() {
        assert!(!l.user.is_empty());
        match &l.access_key {
            Some(k) => {
                assert!(!k.contains('$') && !k.is_empty());
                assert_eq!(format!("{}${k}", l.user), text);
            }
            None => assert_eq!(l.user, text),
        }
    }
});
