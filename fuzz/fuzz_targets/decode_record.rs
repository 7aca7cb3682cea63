//! Any bytes: `SnapshotRecord::decode` never panics, and whatever it accepts encodes to a record
//! that decodes to the same value.
#![no_main]

use keygate_shared::SnapshotRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(record) = SnapshotRecord::decode(bytes) {
        let again = SnapshotRecord::decode(record.encode().as_bytes()).expect("re-decodes");
        assert_eq!(again, record);
    }
});
