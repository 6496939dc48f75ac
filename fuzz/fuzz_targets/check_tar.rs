//! The tar check on any bytes: never panics, and its verdict (message
//! included: it names offsets of headers, not of pieces) does not depend on
//! how the bytes arrive; a nameless file with a ustar header gets the same
//! verdict.
#![no_main]

use deploycache_fuzz::{split_piece, verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((piece, data)) = split_piece(input) else {
        return;
    };
    let whole = verdict("x.tar", data, data.len());
    assert_eq!(verdict("x.tar", data, piece), whole, "piece {piece}");
    if data.get(257..262) == Some(b"ustar") && !data.starts_with(&[0x1f, 0x8b, 8]) {
        assert_eq!(verdict(".x.tar.Ab12Cd", data, piece), whole);
    }
});
