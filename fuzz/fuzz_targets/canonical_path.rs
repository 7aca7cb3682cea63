//! Any string: `canonical_path` never panics, whatever it accepts is a fixed point (normalising
//! it again changes nothing), and it never holds a dot or empty segment.
#![no_main]

use keygate_shared::canonical_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    if let Ok(canonical) = canonical_path(raw) {
        assert_eq!(canonical_path(&canonical).as_deref(), Ok(canonical.as_str()));
        let inner = canonical.trim_matches('/');
        assert!(inner.is_empty() || !inner.split('/').any(|s| s.is_empty() || s == "." || s == ".."));
    }
});
