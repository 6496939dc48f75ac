//! Completeness checks for files written through the view (and for the
//! files of a plain cache that `import` adopts), run on the bytes as they
//! stream in (never as a second pass): a cut-short transfer must not look
//! like a cached artifact.
//!
//! - `*.tar`: walk the headers block by block; complete once the archive's
//!   two zero end blocks arrive and no member is cut short.
//! - `*.gz`, `*.tgz`: inflate every member, checking each trailer (CRC32
//!   and ISIZE); complete once the last member's trailer checks out.
//! - any other name: the first bytes decide. A gzip header (`1f 8b 08`)
//!   gets the gzip check and a ustar header (`ustar` at 257) the tar check,
//!   so a transfer under a temporary name (rsync's `.NAME.XXXXXX`, renamed
//!   into place afterwards) is checked as its content says; anything else
//!   is always complete.

mod gzip;
mod inflate;
mod tar;
#[cfg(test)]
mod tar_differential;

pub use gzip::GzCheck;
pub use inflate::Inflate;
// The gzip codec (crate::gzip) parses member headers as this check does.
pub(crate) use inflate::{gzip_header, Header, GZ_MAX_HEADER};
pub use tar::TarCheck;

/// A tar block: headers and member data come in whole blocks.
const BLOCK: usize = 512;

/// The incremental check for one file.
pub enum Check {
    None,
    /// The name says nothing: the first `SNIFF_LEN` bytes gathered so
    /// far, which will decide.
    Sniff(Vec<u8>),
    Tar(TarCheck),
    Gzip(GzCheck),
}

/// Bytes a nameless check looks at: a tar's first header block.
const SNIFF_LEN: usize = BLOCK;

impl Check {
    /// The check that applies to a file of this name.
    pub fn for_name(name: &str) -> Check {
        if name.ends_with(".tar") {
            Check::Tar(TarCheck::default())
        } else if name.ends_with(".gz") || name.ends_with(".tgz") {
            Check::Gzip(GzCheck::new())
        } else {
            Check::Sniff(Vec::with_capacity(SNIFF_LEN))
        }
    }

    /// The check that the first bytes `head` call for, fed with them.
    fn decided(head: Vec<u8>) -> Check {
        let mut c = Check::for_content(&head);
        c.update(&head);
        c
    }

    /// The check that the first bytes of a file call for (see the module doc).
    fn for_content(head: &[u8]) -> Check {
        // gzip: ID1 ID2, method 8 (deflate), and no reserved flag bits.
        let gzip = head.len() >= 3
            && head[..3] == [0x1f, 0x8b, 8]
            && head.get(3).is_none_or(|f| f & 0xe0 == 0);
        if gzip {
            Check::Gzip(GzCheck::new())
        } else if head.get(257..262) == Some(b"ustar") {
            Check::Tar(TarCheck::default())
        } else {
            Check::None
        }
    }

    /// Feed the next bytes of the file, in order.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Check::None => {}
            Check::Sniff(head) => {
                let n = (SNIFF_LEN - head.len()).min(data.len());
                head.extend_from_slice(&data[..n]);
                if head.len() == SNIFF_LEN {
                    *self = Check::decided(std::mem::take(head));
                    self.update(&data[n..]);
                }
            }
            Check::Tar(t) => t.update(data),
            Check::Gzip(g) => g.update(data),
        }
    }

    /// After the last byte: `Err(reason)` when the content is incomplete.
    pub fn finish(self) -> Result<(), String> {
        match self {
            Check::None => Ok(()),
            // Shorter than a tar block: decide on what there is.
            Check::Sniff(head) => Check::decided(head).finish(),
            Check::Tar(t) => t.finish(),
            Check::Gzip(g) => g.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The helpers here serve the tests of every check module.
    use super::*;
    use std::io::Write;

    pub(super) fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, len) in files {
            out.extend_from_slice(&tar_header(name.as_bytes(), b'0', *len as u64, false));
            out.extend((0..*len).map(|i| (i % 251) as u8));
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out.resize(out.len().div_ceil(10240) * 10240, 0);
        out
    }

    /// One ustar header block: `name`, type flag `kind`, size field `len`;
    /// `signed` computes the checksum over signed chars (old Sun tar).
    pub(super) fn tar_header(name: &[u8], kind: u8, len: u64, signed: bool) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{len:011o}\0").as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: i64 = if signed {
            h.iter().map(|&b| b as i8 as i64).sum()
        } else {
            h.iter().map(|&b| b as i64).sum()
        };
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    pub(super) fn check(name: &str, data: &[u8], piece: usize) -> Result<(), String> {
        let mut c = Check::for_name(name);
        for p in data.chunks(piece.max(1)) {
            c.update(p);
        }
        c.finish()
    }

    pub(super) fn gz_with(d: &[u8], header: flate2::GzBuilder) -> Vec<u8> {
        let mut e = header.write(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    /// Under a name that says nothing (rsync's temporary names), the
    /// content decides: gzip and tar are checked, anything else is not.
    #[test]
    fn nameless_files_are_checked_by_their_first_bytes() {
        use flate2::{write::GzEncoder, Compression};
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&vec![3u8; 200_000]).unwrap();
        let gz = e.finish().unwrap();
        let tar = tar_of(&[("a", 3000)]);
        let tmp = ".env_1.img.gz.Xy12Ab";
        for piece in [1, 100, 511, 512, 513, 65536] {
            assert_eq!(check(tmp, &gz, piece), Ok(()), "piece {piece}");
            assert!(
                check(tmp, &gz[..gz.len() - 3], piece).is_err(),
                "piece {piece}"
            );
            assert_eq!(check(".c.tar.Q1w2E3", &tar, piece), Ok(()), "piece {piece}");
            assert!(check(".c.tar.Q1w2E3", &tar[..2048], piece).is_err());
        }
        // A gzip cut inside its own header, and a short complete one.
        assert!(check(tmp, &gz[..5], 2).is_err());
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b"tiny").unwrap();
        assert_eq!(check(tmp, &e.finish().unwrap(), 7), Ok(()));
        // Other content is never held back, whatever its length.
        assert_eq!(
            check("id_rsa", b"-----BEGIN OPENSSH PRIVATE KEY-----", 3),
            Ok(())
        );
        assert_eq!(check("raw.img", &vec![0u8; 100_000], 4096), Ok(()));
        assert_eq!(check("x", &[0x1f], 1), Ok(()));
        assert_eq!(check("x", &[0x1f, 0x8b, 8, 0xff], 1), Ok(()));
    }
}
