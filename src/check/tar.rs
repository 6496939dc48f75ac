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

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| (b'0'..=b'7').contains(&b))
        .collect();
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

/// The `size` record of a pax extended header's data (POSIX.1-2001 records:
/// `"<length> <key>=<value>\n"`, the length counting the whole record).
/// `None` when it has none, or the records cannot be read.
fn pax_size(mut data: &[u8]) -> Option<u64> {
    let mut size = None;
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        let record = data.get(sp + 1..len)?.strip_suffix(b"\n")?;
        if let Some(v) = record.strip_prefix(b"size=") {
            size = Some(std::str::from_utf8(v).ok()?.parse().ok()?);
        }
        data = &data[len..];
    }
    size
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
