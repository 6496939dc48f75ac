//! The gzip check on any bytes: never panics, and whether a file is
//! complete does not depend on how its bytes arrive (the message may: a
//! deflate error names the offset of the piece it was found in); a nameless
//! file that starts like gzip gets the same verdict.
#![no_main]

use deploycache_fuzz::{split_piece, verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((piece, data)) = split_piece(input) else {
        return;
    };
    let whole = verdict("x.gz", data, data.len()).is_ok();
    assert_eq!(verdict("x.gz", data, piece).is_ok(), whole, "piece {piece}");
    let gzip_magic = data.len() >= 3 && data[..3] == [0x1f, 0x8b, 8];
    if gzip_magic && data.get(3).is_none_or(|f| f & 0xe0 == 0) {
        assert_eq!(verdict(".x.gz.Ab12Cd", data, piece).is_ok(), whole);
    }
});
