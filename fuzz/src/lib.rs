//! What the fuzz targets share: feeding a completeness check the way the
//! mount does, in pieces whose size the input chooses.

use deploycache::check::Check;

/// The verdict of the check for a file named `name` on `data`, fed in
/// pieces of `piece` bytes (at least 1).
pub fn verdict(name: &str, data: &[u8], piece: usize) -> Result<(), String> {
    let mut c = Check::for_name(name);
    for p in data.chunks(piece.max(1)) {
        c.update(p);
    }
    c.finish()
}

/// The input's first byte chooses a piece size (1 to 1786 bytes); the rest
/// is the file. None for an empty input.
pub fn split_piece(input: &[u8]) -> Option<(usize, &[u8])> {
    let (&p, data) = input.split_first()?;
    Some((usize::from(p) * 7 + 1, data))
}
