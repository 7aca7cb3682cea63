//! Any pair of header values: finding and checking the credential never panics.
#![no_main]

use keygate_shared::{Environment, KeyFormat, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|headers: (Option<&str>, Option<&str>)| {
    let verifier = Verifier::new(KeyFormat::new("kg").expect("prefix"), Environment::Production);
    let _ = verifier.identify(headers.0, headers.1);
});
