//! The tar check: walks the headers block by block as the bytes stream
//! in, skipping member data; complete once the archive's two zero end
//! blocks arrive and no member is cut short. Reads what GNU tar reads:
//! ustar and GNU headers, base-256 sizes, pax `size` records, checksums over
//! signed chars.

use super::BLOCK;

/// Where the tar walk is.
#[derive(Default)]
pub struct TarCheck {
    /// Bytes of the current 512-byte block gathered so far (headers only).
    block: Vec<u8>,
    /// Member data (padded to whole blocks) still to skip.
    skip: u64,
    /// Offset in the file of the next byte.
    pos: u64,
    /// Consecutive zero blocks seen where a header was expected.
    zeros: u32,
    /// Set once two zero blocks ended the archive.
    ended: bool,
    /// The first structural problem met, with its offset.
    bad: Option<String>,
    /// Member being read: (name, offset of its header, data size).
    member: Option<(String, u64, u64)>,
    /// The data of a pax extended header ('x') being read, kept up to
    /// `PAX_MAX` bytes: its `size` record overrides the next member's
    /// header (how pax archives carry members of 8 GiB and more).
    pax: Option<Vec<u8>>,
    /// The size the last pax extended header gave for the next member.
    pax_size: Option<u64>,
    /// Every header walked: (type flag, offset, data size), for the
    /// differential test against the `tar` crate.
    #[cfg(test)]
    pub(super) walked: Vec<(u8, u64, u64)>,
}

/// Pax extended headers longer than this are skipped unread.
const PAX_MAX: usize = 64 * 1024;

impl TarCheck {
    pub(super) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.ended && self.bad.is_none() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    let room = PAX_MAX.saturating_sub(pax.len()).min(n);
                    pax.extend_from_slice(&data[..room]);
                }
                self.skip -= n as u64;
                self.pos += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.block.len() == BLOCK {
                let block = std::mem::take(&mut self.block);
                self.header(&block);
            }
        }
    }

    fn header(&mut self, h: &[u8]) {
        let at = self.pos - BLOCK as u64;
        if h.iter().all(|&b| b == 0) {
            self.zeros += 1;
            if self.zeros == 2 {
                self.ended = true;
            }
            return;
        }
        if self.zeros > 0 {
            self.bad = Some(format!("tar: a lone zero block before offset {at}"));
            return;
        }
        // The checksum field counts as spaces. Like GNU tar, accept the sum
        // of the bytes as signed chars too (old Sun and other tars).
        let sum = |byte: fn(u8) -> i64| -> i64 {
            h.iter()
                .enumerate()
                .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { byte(b) })
                .sum()
        };
        let stored = parse_octal(&h[148..156]).and_then(|s| i64::try_from(s).ok());
        if stored != Some(sum(|b| b as i64)) && stored != Some(sum(|b| b as i8 as i64)) {
            self.bad = Some(format!(
                "tar: header checksum mismatch at offset {at} (not a tar, or damaged)"
            ));
            return;
        }
        let Some(size) = parse_size(&h[124..136]) else {
            self.bad = Some(format!("tar: unreadable member size at offset {at}"));
            return;
        };
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        // A pax extended header's records apply to the member after it.
        if let Some(mut pax) = self.pax.take() {
            // Its data, without the padding to a whole block.
            if let Some((_, _, len)) = &self.member {
                pax.truncate(usize::try_from(*len).unwrap_or(usize::MAX));
            }
            self.pax_size = pax_size(&pax);
        }
        let kind = h[156];
        // Hard links, symlinks, devices, directories and FIFOs carry no data.
        let data = match kind {
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => 0,
            b'x' | b'g' => size,
            _ => self.pax_size.take().unwrap_or(size),
        };
        if kind == b'x' {
            self.pax = Some(Vec::new());
        }
        self.skip = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        #[cfg(test)]
        self.walked.push((kind, at, data));
        self.member = Some((name, at, data));
    }

    pub(super) fn finish(self) -> Result<(), String> {
        if let Some(bad) = self.bad {
            return Err(bad);
        }
        if self.ended {
            return Ok(());
        }
        if self.skip > 0 {
            let (name, at, size) = self.member.unwrap_or_default();
            return Err(format!(
                "tar: member {name:?} (header at offset {at}, {size} bytes) is cut short: \
                 the file ends at {} with {} bytes of it missing",
                self.pos, self.skip
            ));
        }
        Err(format!(
            "tar: no end-of-archive marker (two zero blocks); the file ends at offset {}",
            self.pos
        ))
    }
}

/// An octal header field: leading spaces or NULs, digits, then the end of
/// the field, a NUL or white space. Anything else after the digits makes
/// the field unreadable, as GNU tar reads it (`from_header`): a damaged
/// terminator is a damaged header, not a number.
fn parse_octal(f: &[u8]) -> Option<u64> {
    let start = f.iter().position(|&b| b != b' ' && b != 0)?;
    let digits = f[start..]
        .iter()
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .count();
    if digits == 0 {
        return None;
    }
    // C's isspace: space, \t, \n, \v, \f, \r.
    if let Some(&b) = f.get(start + digits) {
        if b != 0 && b != 0x0b && !b.is_ascii_whitespace() {
            return None;
        }
    }
    u64::from_str_radix(std::str::from_utf8(&f[start..start + digits]).ok()?, 8).ok()
}

/// The `size` record of a pax extended header's data (POSIX.1-2001 records:
/// `"<length> <key>=<value>\n"`, the length counting the whole record),
/// read as GNU tar reads them (`decode_record`): the records before the
/// first malformed one apply, and of their `size` records the last readable
/// one. `None` when no size applies.
fn pax_size(mut data: &[u8]) -> Option<u64> {
    let mut size = None;
    while let Some((record, rest)) = pax_record(data) {
        if let Some(v) = record.strip_prefix(b"size=") {
            if let Some(v) = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()) {
                size = Some(v);
            }
        }
        data = rest;
    }
    size
}

/// The first pax record in `data` (its `key=value`) and the data after it;
/// `None` at the end, or when the record is malformed: its length unreadable
/// or past the data, no newline at its end, or no `=` in it.
fn pax_record(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = data.iter().position(|&b| b == b' ')?;
    let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
    let record = data.get(sp + 1..len)?.strip_suffix(b"\n")?;
    record.contains(&b'=').then_some((record, &data[len..]))
}

/// A member size: octal, or GNU base-256 when the top bit is set.
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = (f[0] & 0x7f) as u64;
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    if f.iter().all(|&b| b == 0 || b == b' ') {
        return Some(0);
    }
    parse_octal(f)
}

#[cfg(test)]
mod tests {
    use crate::check::tests::{check, tar_header, tar_of};

    #[test]
    fn tar_complete_only_with_end_blocks_and_whole_members() {
        let t = tar_of(&[("a", 1000), ("b", 0), ("c", 70000)]);
        for piece in [1, 7, 512, 4096, 1 << 20] {
            assert_eq!(check("x.tar", &t, piece), Ok(()), "piece {piece}");
        }
        let end_of_members = 512 + 1024 + 512 + 512 + 70144;
        for cut in [
            0,
            100,
            512,
            1500,
            3000,
            end_of_members,
            end_of_members + 512,
        ] {
            assert!(check("x.tar", &t[..cut], 333).is_err(), "cut at {cut}");
        }
        assert!(check("x.tar", &t[..end_of_members + 1024], 333).is_ok());
    }

    /// Found by the differential test against the `tar` crate: a header
    /// whose checksum digits run into a stray byte (a damaged NUL
    /// terminator) passed as intact. GNU tar refuses such a number, and so
    /// a damaged header; so does the check, for the size field too.
    #[test]
    fn a_number_run_into_a_stray_byte_is_a_damaged_header() {
        let t = tar_of(&[("a", 10)]);
        assert_eq!(&t[154..156], b"\0 ", "the helper's checksum field ends so");
        for stray in [0x0e, b'x', b'8'] {
            let mut bad = t.clone();
            bad[154] = stray;
            let err = check("x.tar", &bad, 512).unwrap_err();
            assert!(err.contains("checksum mismatch at offset 0"), "{err}");
        }
        for terminator in [b'\t', b'\n', 0x0b, b'\r', b' '] {
            let mut ok = t.clone();
            ok[154] = terminator;
            assert_eq!(check("x.tar", &ok, 512), Ok(()), "{terminator:#x}");
        }
        // After the terminator, nothing more is read.
        let mut ok = t.clone();
        ok[155] = b'x';
        assert_eq!(check("x.tar", &ok, 512), Ok(()));
        // The size field: its terminator is not in the checksum's blanked
        // range, so the header is re-summed with the stray byte.
        let mut h = tar_header(b"a", b'0', 10, false);
        h[135] = b'#';
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut bad = h.to_vec();
        bad.extend_from_slice(&[b'v'; 512]);
        bad.extend_from_slice(&[0; 1024]);
        let err = check("x.tar", &bad, 512).unwrap_err();
        assert!(err.contains("unreadable member size at offset 0"), "{err}");
    }

    /// Found by the differential test against the `tar` crate: a pax
    /// record without its `=` did not stop the reading of the records, so a
    /// `size` after it still applied, where GNU tar (and the crate) stop at
    /// the malformed record and take the member's size from its header.
    #[test]
    fn pax_records_after_a_malformed_one_do_not_apply() {
        let pax_then_member = |records: &str| {
            let mut t = Vec::new();
            t.extend_from_slice(&tar_header(
                b"PaxHeaders/m",
                b'x',
                records.len() as u64,
                false,
            ));
            t.extend_from_slice(records.as_bytes());
            t.resize(1024, 0);
            t.extend_from_slice(&tar_header(b"m", b'0', 0, false));
            t.extend((0..1025u32).map(|i| (i % 200) as u8 + 1));
            t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
            t
        };
        let good = pax_then_member("13 path=m2/a\n13 size=1025\n");
        assert_eq!(check("x.tar", &good, 100), Ok(()));
        let size_first = pax_then_member("13 size=1025\n13 path<m2/a\n");
        assert_eq!(check("x.tar", &size_first, 100), Ok(()));
        // The size is not read: the member's data is taken for a header.
        let size_after = pax_then_member("13 path<m2/a\n13 size=1025\n");
        let err = check("x.tar", &size_after, 100).unwrap_err();
        assert!(err.contains("checksum mismatch at offset 1536"), "{err}");
        // An unreadable size value is skipped, not the end of the records.
        let bad_value = pax_then_member("12 size=1x5\n13 size=1025\n");
        assert_eq!(check("x.tar", &bad_value, 100), Ok(()));
    }

    /// A pax extended header's `size` record gives the next member's data
    /// size (how pax archives carry members of 8 GiB and more, with 0 in the
    /// ustar field), and a checksum over signed chars is accepted, as GNU
    /// tar reads both.
    #[test]
    fn tar_pax_sizes_and_signed_checksums_are_read_as_gnu_tar_reads_them() {
        let record = "15 size=300000\n";
        assert_eq!(record.len(), 15);
        let mut t = Vec::new();
        t.extend_from_slice(&tar_header(b"./PaxHeaders/big.img", b'x', 15, false));
        t.extend_from_slice(record.as_bytes());
        t.resize(1024, 0);
        t.extend_from_slice(&tar_header(b"big.img", b'0', 0, false));
        t.extend((0..300_000u32).map(|i| (i % 241) as u8 + 1));
        t.resize(t.len().div_ceil(512) * 512, 0);
        t.extend_from_slice(&tar_header("k\u{e9}rnel".as_bytes(), b'0', 5, true));
        t.extend_from_slice(&[b'v'; 512]);
        let end = t.len();
        t.extend_from_slice(&[0u8; 1024]);
        for piece in [1, 100, 512, 4096, 1 << 20] {
            assert_eq!(check("b.tar", &t, piece), Ok(()), "piece {piece}");
            let err = check("b.tar", &t[..200_000], piece).unwrap_err();
            assert!(
                err.contains("\"big.img\"") && err.contains("cut short"),
                "{err}"
            );
            assert!(check("b.tar", &t[..end], piece).is_err());
        }
    }
}
