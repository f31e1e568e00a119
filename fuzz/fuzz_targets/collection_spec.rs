//! Any JSON as a collection spec: parsing and validation never panic, and a valid spec has
//! consistent limits and a renderable template.
#![no_main]

use backup_core::CollectionSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<CollectionSpec>(data) else { return };
    if spec.validate().is_ok() {
        let l = spec.limits;
        assert!(l.max_versions >= 1 && l.max_version_size >= 1);
        let base = u64::from(l.max_versions).checked_mul(l.max_version_size).unwrap();
        assert_eq!(l.extra_space(), l.max_collection_size - base);
        let name = spec.filename_template.render(u64::MAX);
        assert!(name.contains(&u64::MAX.to_string()));
        assert!(!name.contains('/') && !name.contains('"'));
        let back: CollectionSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
});
