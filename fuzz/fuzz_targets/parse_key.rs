//! Any string: `parse` never panics, and whatever it accepts round-trips to the same key id,
//! environment and digest.
#![no_main]

use keygate_shared::{Digest, KeyFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let format = KeyFormat::new("kg").expect("valid prefix");
    if let Ok(key) = format.parse(input) {
        assert!(input.starts_with("kg_"));
        assert!(input.contains(key.key_id().as_str()));
        assert_eq!(key.digest(), Digest::of_key(input));
    }
});
