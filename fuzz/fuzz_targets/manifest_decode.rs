//! The manifest record decoder on any bytes: never panics, and a record it
//! accepts encodes to bytes that decode to the same record.
#![no_main]

use deploycache::manifest::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let again = Record::decode(&record.encode()).expect("an encoded record decodes");
        assert_eq!(again, record);
    }
});
