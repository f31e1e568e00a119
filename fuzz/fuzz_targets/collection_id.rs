//! Any text as a collection id: never a panic; what is accepted follows every rule.
#![no_main]

use backup_core::CollectionId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match CollectionId::new(text) {
        Ok(id) => {
            let s = id.as_str();
            assert!(!s.is_empty() && s.len() <= 64);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            assert!(!s.contains("..") && !s.starts_with('.'));
            assert_eq!(s, text);
            // Round trip through serde validates again.
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<CollectionId>(&json).unwrap(), id);
        }
        Err(e) => {
            assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
            assert!(e.to_string().len() < 400, "errors stay short");
        }
    }
});
