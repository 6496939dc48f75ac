//! The gzip check proper: RFC 1952 member headers, raw deflate through
//! zlib-rs, and each member's CRC32/ISIZE trailer, as the bytes stream in.

/// Checks a gzip file as it streams in: each member's header (RFC 1952),
/// its deflate stream inflated into a reused buffer and discarded, and its
/// trailer (CRC32 and ISIZE of the inflated bytes). Complete when the data
/// ends right after a member's trailer, or when what follows the last
/// whole member cannot start one: zero padding (which `gzip -d` ignores
/// silently) or other bytes not starting with 0x1f (which it decompresses
/// past with a warning, "trailing garbage ignored"). A cut-short transfer
/// ends inside a member, never in such a tail; bytes that start with 0x1f
/// must be a whole member.
///
/// Deflate is zlib-rs through flate2, in raw mode; the header and trailer
/// are read here so that the CRC32 is crc32fast's (carry-less multiply),
/// about ten times faster than the one zlib's gzip mode computes, and the
/// output buffer is 1 MiB, not flate2's `MultiGzDecoder`'s 32 KiB: both
/// together check an image markedly faster than `MultiGzDecoder` (figures
/// in BENCHMARKS.md).
pub struct Inflate {
    state: GzState,
    /// Output buffer, overwritten by every call.
    out: Vec<u8>,
    /// Bytes fed so far (for messages).
    pos: u64,
    members: u64,
    bad: Option<String>,
}

enum GzState {
    /// Gathering a member's header (these bytes so far).
    Header(Vec<u8>),
    Body {
        dec: Box<flate2::Decompress>,
        crc: crc32fast::Hasher,
        size: u64,
    },
    /// Gathering the 8-byte trailer of a member whose deflate stream ended.
    Trailer { crc: u32, size: u64, got: Vec<u8> },
    /// Bytes after the last member that do not start another one: ignored,
    /// as `gzip -d` ignores them.
    Tail,
}

/// Inflated bytes per call: large enough that zlib stays in its fast loop.
const GZ_OUT: usize = 1 << 20;
/// A header longer than this (its name, comment or extra field) is refused.
pub(crate) const GZ_MAX_HEADER: usize = 1 << 20;

/// What a member header's first bytes tell.
pub(crate) enum Header {
    /// Complete; the deflate stream starts after this many bytes.
    Done(usize),
    NeedMore,
    Bad(String),
}

/// Whether the bytes after a whole member (`had` gathered so far, then
/// `data`) may start another member: their first byte is 0x1f, where
/// `gzip -d` reads on for a member (of gzip or one of the older formats it
/// also takes, so a cut-short one fails there). True while no byte is known.
fn starts_member(had: &[u8], data: &[u8]) -> bool {
    had.iter().chain(data).next().is_none_or(|&b| b == 0x1f)
}

/// What a deflate error means, in words. zlib-rs 0.6 reports an error its
/// fast loop finds (a bad code or distance) as "repeated call with bad
/// state", losing the reason; that one is left out.
fn deflate_error(e: &flate2::DecompressError) -> String {
    match e.message() {
        Some(m) if !m.contains("repeated call") => format!("invalid deflate data ({m})"),
        _ => "invalid deflate data".into(),
    }
}

/// Parse an RFC 1952 member header at the start of `h`.
pub(crate) fn gzip_header(h: &[u8]) -> Header {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    for (i, want) in [0x1f, 0x8b, 8].into_iter().enumerate() {
        match h.get(i) {
            None => return Header::NeedMore,
            Some(&b) if b != want => {
                return Header::Bad(format!(
                    "gzip: not a gzip member header (byte {i} is {b:#04x}, not {want:#04x})"
                ))
            }
            Some(_) => {}
        }
    }
    let Some(&flags) = h.get(3) else {
        return Header::NeedMore;
    };
    if flags & 0xe0 != 0 {
        return Header::Bad(format!("gzip: reserved header flags set ({flags:#04x})"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(xlen) = h.get(at..at + 2) else {
            return Header::NeedMore;
        };
        at += 2 + u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match h
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(nul) => at += nul + 1,
                None => return Header::NeedMore,
            }
        }
    }
    if flags & FHCRC != 0 {
        // RFC 1952 2.3.1: the two low bytes of the CRC32 of every header
        // byte before them. gzip(1) refuses a member whose header fails it
        // ("header checksum ... != computed checksum"), so a damaged
        // header is no complete file either.
        let Some(stored) = h.get(at..at + 2) else {
            return Header::NeedMore;
        };
        let stored = u16::from_le_bytes([stored[0], stored[1]]);
        let computed = crc32fast::hash(&h[..at]) as u16;
        if stored != computed {
            return Header::Bad(format!(
                "gzip: member header fails its CRC16 (stored {stored:#06x}, computed {computed:#06x})"
            ));
        }
        at += 2;
    }
    if h.len() < at {
        Header::NeedMore
    } else {
        Header::Done(at)
    }
}

impl Inflate {
    pub(super) fn new() -> Inflate {
        Inflate {
            state: GzState::Header(Vec::new()),
            out: Vec::new(),
            pos: 0,
            members: 0,
            bad: None,
        }
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        if self.bad.is_none() {
            if let Err(e) = self.feed(data) {
                self.bad = Some(e);
            }
        }
        self.pos += data.len() as u64;
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        let (pos, len) = (self.pos, data.len());
        // The file offset of `data[0]` as it advances.
        let at = |data: &[u8]| pos + (len - data.len()) as u64;
        while !data.is_empty() {
            match &mut self.state {
                GzState::Header(h) if self.members > 0 && !starts_member(h, data) => {
                    self.state = GzState::Tail;
                    return Ok(());
                }
                GzState::Tail => return Ok(()),
                GzState::Header(h) => {
                    let had = h.len();
                    h.extend_from_slice(&data[..data.len().min(GZ_MAX_HEADER + 1 - had)]);
                    let start = at(data) - had as u64;
                    match gzip_header(h) {
                        Header::Bad(e) => return Err(format!("{e} at offset {start}")),
                        Header::NeedMore if h.len() > GZ_MAX_HEADER => {
                            return Err(format!(
                            "gzip: member header at offset {start} is over {GZ_MAX_HEADER} bytes"
                        ))
                        }
                        Header::NeedMore => return Ok(()),
                        Header::Done(len) => {
                            data = &data[len - had..];
                            self.state = GzState::Body {
                                dec: Box::new(flate2::Decompress::new(false)),
                                crc: crc32fast::Hasher::new(),
                                size: 0,
                            };
                        }
                    }
                }
                GzState::Body { dec, crc, size } => {
                    if self.out.len() < GZ_OUT {
                        self.out.resize(GZ_OUT, 0);
                    }
                    let (in0, out0) = (dec.total_in(), dec.total_out());
                    let status = dec
                        .decompress(data, &mut self.out, flate2::FlushDecompress::None)
                        .map_err(|e| {
                            format!(
                                "gzip: {} in member {}, in the bytes from offset {}",
                                deflate_error(&e),
                                self.members + 1,
                                at(data)
                            )
                        })?;
                    let used = (dec.total_in() - in0) as usize;
                    let made = (dec.total_out() - out0) as usize;
                    crc.update(&self.out[..made]);
                    *size += made as u64;
                    data = &data[used..];
                    if status == flate2::Status::StreamEnd {
                        let (crc, size) = (crc.clone().finalize(), *size);
                        self.state = GzState::Trailer {
                            crc,
                            size,
                            got: Vec::with_capacity(8),
                        };
                    } else if used == 0 && made < self.out.len() {
                        // No progress with input left: zlib wants none of it
                        // (cannot happen mid-stream; guard against a loop).
                        return Err(format!("gzip: deflate stalled at offset {}", at(data)));
                    }
                }
                GzState::Trailer { crc, size, got } => {
                    let n = (8 - got.len()).min(data.len());
                    got.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if got.len() == 8 {
                        let want_crc = u32::from_le_bytes(got[..4].try_into().unwrap());
                        let want_size = u32::from_le_bytes(got[4..].try_into().unwrap());
                        if want_crc != *crc {
                            return Err(format!(
                                "gzip: member {} fails its CRC32 (trailer {want_crc:08x}, data {crc:08x})",
                                self.members + 1
                            ));
                        }
                        if want_size != *size as u32 {
                            return Err(format!(
                                "gzip: member {} has {size} bytes, its trailer says {want_size} (mod 2^32)",
                                self.members + 1
                            ));
                        }
                        self.members += 1;
                        self.state = GzState::Header(Vec::new());
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), String> {
        if let Some(bad) = self.bad {
            return Err(bad);
        }
        if self.pos == 0 {
            return Err("gzip: the file is empty".into());
        }
        match self.state {
            GzState::Tail => Ok(()),
            GzState::Header(h) if h.is_empty() && self.members > 0 => Ok(()),
            GzState::Header(h) if !h.is_empty() && self.members > 0 => Err(format!(
                "gzip: {} bytes after the last complete member are not a whole member",
                h.len()
            )),
            _ => Err(format!(
                "gzip: stream incomplete at offset {} (no valid CRC32/ISIZE trailer)",
                self.pos
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::tests::{check, gz_with};
    use std::io::{Read, Write};

    #[test]
    fn gzip_complete_only_with_trailer_and_multi_member_ok() {
        use flate2::{write::GzEncoder, Compression};
        let gz = |d: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        let a = gz(&vec![7u8; 300_000]);
        let mut two = a.clone();
        two.extend(gz(b"second member"));
        for piece in [1, 100, 65536] {
            assert_eq!(check("x.img.gz", &a, piece), Ok(()));
            assert_eq!(check("x.img.gz", &two, piece), Ok(()));
        }
        for cut in [0, 5, a.len() / 2, a.len() - 8, a.len() - 1] {
            assert!(check("x.gz", &a[..cut], 1000).is_err(), "cut at {cut}");
        }
        let mut bad = a.clone();
        let n = bad.len();
        bad[n - 6] ^= 1; // ISIZE/CRC damaged
        assert!(check("x.gz", &bad, 4096).is_err());
        assert_eq!(check("id_rsa", b"", 1), Ok(()));
    }

    /// Every optional header field (extra, name, comment, header CRC) is
    /// skipped, wherever the pieces split it.
    #[test]
    fn gzip_header_fields_are_skipped_at_any_split() {
        let body: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let gz = gz_with(
            &body,
            flate2::GzBuilder::new()
                .extra(vec![1u8; 300])
                .filename("env_1_ubuntu_1404_amd64.img")
                .comment("built by CI")
                .mtime(1_500_000_000),
        );
        // flate2's builder sets no FHCRC: add one by hand (2 bytes after
        // the comment's NUL, the CRC32 of the header before them, low half).
        let hdr_len =
            10 + 2 + 300 + "env_1_ubuntu_1404_amd64.img".len() + 1 + "built by CI".len() + 1;
        let with_hcrc = with_header_crc(&gz, hdr_len);
        for piece in [1, 2, 3, 11, 12, 313, 4096] {
            assert_eq!(check("a.gz", &gz, piece), Ok(()), "piece {piece}");
            assert_eq!(check("a.gz", &with_hcrc, piece), Ok(()), "piece {piece}");
            assert!(check("a.gz", &gz[..hdr_len - 1], piece).is_err());
            assert!(check("a.gz", &with_hcrc[..hdr_len + 1], piece).is_err());
        }
    }

    /// `gz` (whose header is `hdr_len` bytes) with the FHCRC flag set and
    /// its header's CRC16 after the header.
    fn with_header_crc(gz: &[u8], hdr_len: usize) -> Vec<u8> {
        let mut out = gz[..hdr_len].to_vec();
        out[3] |= 2;
        let crc16 = crc32fast::hash(&out) as u16;
        out.extend_from_slice(&crc16.to_le_bytes());
        out.extend_from_slice(&gz[hdr_len..]);
        out
    }

    /// A header CRC16 (FHCRC) that does not match the header's bytes means
    /// a damaged header, as gzip(1) says ("header checksum ... != computed
    /// checksum"): the file is not complete, however its pieces arrive.
    /// gzip 1.12 gave these verdicts on the same bytes.
    #[test]
    fn a_header_crc16_that_does_not_match_is_damage() {
        let body = b"the image's bytes ".repeat(5000);
        let gz = gz_with(&body, flate2::GzBuilder::new().filename("img"));
        let hdr_len = 10 + "img".len() + 1;
        let good = with_header_crc(&gz, hdr_len);
        for piece in [1, 2, 15, 16, 4096] {
            assert_eq!(check("a.gz", &good, piece), Ok(()), "piece {piece}");
            // Either byte of the CRC16 wrong, or a header byte it covers.
            for at in [hdr_len, hdr_len + 1, 4, hdr_len - 2] {
                let mut bad = good.clone();
                bad[at] ^= 0x10;
                let err = check("a.gz", &bad, piece).unwrap_err();
                assert!(
                    err.contains("member header fails its CRC16") && err.contains("at offset 0"),
                    "byte {at} damaged, piece {piece}: {err}"
                );
            }
        }
        // The same in a second member, found by its offset.
        let mut two = gz.clone();
        let mut second = good.clone();
        second[hdr_len] ^= 1;
        two.extend_from_slice(&second);
        let err = check("a.gz", &two, 4096).unwrap_err();
        assert!(
            err.contains(&format!("fails its CRC16 (stored {:#06x}", {
                u16::from_le_bytes([second[hdr_len], second[hdr_len + 1]])
            })) && err.contains(&format!("at offset {}", gz.len())),
            "{err}"
        );
        // Sniffed by content too (no .gz name).
        assert!(check("image.tmp", &two, 4096).is_err());
    }

    /// The trailer's CRC32 and ISIZE are both checked. After the last whole
    /// member, zero padding and other bytes are a tail that `gzip -d`
    /// ignores (so does the check), but bytes starting with 0x1f must be a
    /// whole member.
    #[test]
    fn gzip_trailer_fields_and_trailing_bytes_are_checked() {
        let gz = gz_with(b"some bytes of an image", flate2::GzBuilder::new());
        let n = gz.len();
        let mut bad_crc = gz.clone();
        bad_crc[n - 8] ^= 0x40;
        let err = check("a.gz", &bad_crc, 5).unwrap_err();
        assert!(err.contains("CRC32"), "{err}");
        let mut bad_size = gz.clone();
        bad_size[n - 1] ^= 0x01;
        let err = check("a.gz", &bad_size, 5).unwrap_err();
        assert!(err.contains("trailer says"), "{err}");
        let with = |tail: &[u8]| [&gz[..], tail].concat();
        for piece in [1, 2, 5, 4096] {
            assert_eq!(check("a.gz", &with(&[0u8; 512]), piece), Ok(()));
            assert_eq!(check("a.gz", &with(b"garbage\n"), piece), Ok(()));
            // Zeros, then the start of a member: still a tail to gzip -d.
            assert_eq!(check("a.gz", &with(&[0, 0, 0x1f, 0x8b, 8]), piece), Ok(()));
            let err = check("a.gz", &with(&gz[..6]), piece).unwrap_err();
            assert!(err.contains("not a whole member"), "{err}");
            for start in [&[0x1f][..], &[0x1f, 0x8b]] {
                let err = check("a.gz", &with(start), piece).unwrap_err();
                assert!(err.contains("not a whole member"), "{err}");
            }
            let err = check("a.gz", &with(&[0x1f, 0x00, 0x8b]), piece).unwrap_err();
            assert!(err.contains("not a gzip member header"), "{err}");
            let err = check("a.gz", &with(&gz[..n - 1]), piece).unwrap_err();
            assert!(err.contains("incomplete"), "{err}");
        }
        // Nothing but zeros, or garbage, is no gzip: a tail needs a member.
        assert!(check("a.gz", &[0u8; 64], 8).is_err());
        assert!(check("a.gz", b"garbage", 8).is_err());
    }

    /// Damaged deflate data is named as such, with the member and where.
    #[test]
    fn damaged_deflate_data_is_named_with_member_and_offset() {
        let gz = gz_with(&vec![7u8; 100_000], flate2::GzBuilder::new());
        let mut noise: Vec<u8> = gz[..10].to_vec();
        noise.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        for data in [noise, [&gz[..], &gz[..10], &[0xff; 64][..]].concat()] {
            let err = check("x.img.gz", &data, 1 << 20).unwrap_err();
            assert!(err.starts_with("gzip: invalid deflate data"), "{err}");
            assert!(!err.contains("repeated call"), "{err}");
        }
        let err = check(
            "x.img.gz",
            &[&gz[..], &gz[..10], &[0xff; 64][..]].concat(),
            7,
        )
        .unwrap_err();
        assert!(err.contains("in member 2"), "{err}");
    }

    /// What `gzip -d` (gzip.c, `get_method`) accepts: one or more whole
    /// members, then nothing, or a tail whose first byte is not 0x1f
    /// (zeros are ignored silently, anything else with a warning,
    /// "decompression OK, trailing garbage ignored"). (After 0x1f gzip
    /// tries its other formats too; here that must be a gzip member.)
    fn gunzip_accepts(mut rest: &[u8]) -> bool {
        let mut members = 0;
        loop {
            if members > 0 && rest.first() != Some(&0x1f) {
                return true;
            }
            let mut d = flate2::bufread::GzDecoder::new(rest);
            if d.read_to_end(&mut Vec::new()).is_err() {
                return false;
            }
            rest = d.into_inner();
            members += 1;
        }
    }

    proptest::proptest! {
        /// On random members, cut anywhere, a bit flipped and fed in random
        /// pieces, the check agrees with `gzip -d` (modelled with flate2's
        /// single-member reader).
        #[test]
        fn gzip_verdicts_match_flate2(
            members in proptest::collection::vec(
                proptest::collection::vec(0u8..4, 0..5000), 1..4),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flip in proptest::prelude::any::<Option<proptest::sample::Index>>(),
            piece in 1usize..3000,
        ) {
            let mut gz = Vec::new();
            for m in &members {
                gz.extend(gz_with(m, flate2::GzBuilder::new()));
            }
            let mut data = gz[..=cut.index(gz.len())].to_vec();
            if let Some(f) = flip {
                let i = f.index(data.len());
                data[i] ^= 0x10;
            }
            let want = gunzip_accepts(&data);
            let got = check("x.gz", &data, piece);
            proptest::prop_assert_eq!(got.is_ok(), want, "{:?}", got);
        }
    }
}
