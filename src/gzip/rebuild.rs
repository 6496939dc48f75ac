//! Rebuild: the exact gz bytes from side data and content, streaming.

use std::borrow::Borrow;
use std::io::{self, Read, Write};

use super::preflate::Recompressor;
use super::{trailer_fields, GzipError, Segment, SideData, MAX_PIECE_GZ, MAX_PIECE_PLAIN};

/// Bytes of a Raw segment copied at a time; also the I/O buffer of
/// [`rebuild_all`] and [`check_rebuild`].
const COPY: usize = 1 << 20;

/// A `Read` over the gz file that `side` and `content` rebuild, produced
/// piece by piece: memory holds one piece's content and gz bytes (module
/// doc, "Streaming"). An error (damaged side data or content) is returned
/// as an `io::Error` wrapping a [`GzipError`], and again on every later
/// read: a rebuild that failed never looks like a file that ended.
pub struct Rebuild<S, R> {
    side: S,
    content: R,
    /// The segment being rebuilt.
    seg: usize,
    stage: Stage,
    /// Output produced and not yet read: `out[out_at..]`.
    out: Vec<u8>,
    out_at: usize,
    /// The content of the piece being rebuilt (reused).
    plain: Vec<u8>,
    content_pos: u64,
    /// Gz offset of the end of `out`.
    file_pos: u64,
    failed: bool,
}

enum Stage {
    /// At the start of segment `seg`.
    Start,
    /// Inside a member (which starts at gz offset `at`): the next piece.
    Piece {
        next: usize,
        at: u64,
        rec: Box<Recompressor>,
        crc: crc32fast::Hasher,
        size: u64,
    },
    /// Inside a Raw segment: bytes left.
    Raw(u64),
    /// Past the last segment; the content was checked to end there.
    End,
}

impl<S: Borrow<SideData>, R: Read> Rebuild<S, R> {
    /// `side` may be a `&SideData`, a `SideData` or an `Arc<SideData>`.
    pub fn new(side: S, content: R) -> Rebuild<S, R> {
        Rebuild {
            side,
            content,
            seg: 0,
            stage: Stage::Start,
            out: Vec::new(),
            out_at: 0,
            plain: Vec::new(),
            content_pos: 0,
            file_pos: 0,
            failed: false,
        }
    }

    /// Produce the next output into `out`; `false` at the end.
    fn step(&mut self) -> Result<bool, GzipError> {
        self.out.clear();
        self.out_at = 0;
        while self.out.is_empty() {
            let side = self.side.borrow();
            let Some(seg) = side.segments.get(self.seg) else {
                if !matches!(self.stage, Stage::End) {
                    let mut probe = [0u8; 1];
                    if read_full(&mut self.content, &mut probe, self.content_pos)? > 0 {
                        return Err(GzipError::ContentLong {
                            len: side.content_len(),
                        });
                    }
                    self.stage = Stage::End;
                }
                return Ok(false);
            };
            match (seg, &mut self.stage) {
                (_, Stage::End) => return Ok(false),
                (Segment::Member { header, .. }, Stage::Start) => {
                    self.out.extend_from_slice(header);
                    self.stage = Stage::Piece {
                        next: 0,
                        at: self.file_pos,
                        rec: Box::new(Recompressor::new()),
                        crc: crc32fast::Hasher::new(),
                        size: 0,
                    };
                }
                (
                    Segment::Member { pieces, .. },
                    Stage::Piece {
                        next,
                        at,
                        rec,
                        crc,
                        size,
                    },
                ) if *next < pieces.len() => {
                    let p = &pieces[*next];
                    let member = self.seg + 1;
                    let bad = |what: String| GzipError::Rebuild {
                        member,
                        offset: *at,
                        what,
                    };
                    if p.plain_len > MAX_PIECE_PLAIN || p.gz_len > MAX_PIECE_GZ {
                        return Err(bad(format!("piece {next} is over the piece bounds")));
                    }
                    self.plain.resize(p.plain_len as usize, 0);
                    self.content_pos +=
                        read_exact(&mut self.content, &mut self.plain, self.content_pos, side)?;
                    crc.update(&self.plain);
                    *size += self.plain.len() as u64;
                    let gz = rec
                        .piece(&self.plain, &p.corrections)
                        .map_err(|e| bad(format!("piece {next}: {e}")))?;
                    if gz.len() != p.gz_len as usize {
                        return Err(bad(format!(
                            "piece {next} rebuilt to {} gz bytes, not {}",
                            gz.len(),
                            p.gz_len
                        )));
                    }
                    if crc32fast::hash(&gz) != p.gz_crc {
                        return Err(bad(format!("piece {next} rebuilt to other bytes (CRC32)")));
                    }
                    self.out = gz;
                    *next += 1;
                }
                (Segment::Member { trailer, .. }, Stage::Piece { at, crc, size, .. }) => {
                    if let Some(t) = trailer {
                        let (want_crc, want_size) = trailer_fields(t);
                        let got = crc.clone().finalize();
                        if got != want_crc || *size as u32 != want_size {
                            return Err(GzipError::Rebuild {
                                member: self.seg + 1,
                                offset: *at,
                                what: format!(
                                    "the content has CRC32 {got:08x} and {size} bytes, \
                                     the trailer says {want_crc:08x} and {want_size}"
                                ),
                            });
                        }
                        self.out.extend_from_slice(t);
                    }
                    self.seg += 1;
                    self.stage = Stage::Start;
                }
                (Segment::Raw { len }, Stage::Start) => self.stage = Stage::Raw(*len),
                (Segment::Raw { .. }, Stage::Raw(0)) => {
                    self.seg += 1;
                    self.stage = Stage::Start;
                }
                (Segment::Raw { .. }, Stage::Raw(left)) => {
                    let n = (*left).min(COPY as u64) as usize;
                    self.out.resize(n, 0);
                    self.content_pos +=
                        read_exact(&mut self.content, &mut self.out, self.content_pos, side)?;
                    *left -= n as u64;
                }
                // Stage::Piece is entered only at a Member, Stage::Raw only
                // at a Raw segment, and each is left before the next segment.
                (Segment::Raw { .. }, Stage::Piece { .. })
                | (Segment::Member { .. }, Stage::Raw(_)) => {
                    return Err(GzipError::Rebuild {
                        member: self.seg + 1,
                        offset: self.file_pos,
                        what: "internal error: a segment rebuilt as another kind".into(),
                    })
                }
            }
        }
        self.file_pos += self.out.len() as u64;
        Ok(true)
    }
}

impl<S: Borrow<SideData>, R: Read> Read for Rebuild<S, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_at == self.out.len() {
            if self.failed {
                return Err(io::Error::other(
                    "gzip rebuild: an earlier read failed; the rest cannot be rebuilt",
                ));
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.failed = true;
                    return Err(io::Error::other(e));
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.out_at);
        buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
        self.out_at += n;
        Ok(n)
    }
}

/// Fill `buf` from the content, or fail: the content ended (short) or
/// could not be read. The bytes read.
fn read_exact(
    r: &mut impl Read,
    buf: &mut [u8],
    offset: u64,
    side: &SideData,
) -> Result<u64, GzipError> {
    let n = read_full(r, buf, offset)?;
    if n < buf.len() {
        return Err(GzipError::ContentShort {
            offset: offset + n as u64,
            wanted: side.content_len(),
        });
    }
    Ok(n as u64)
}

/// Read until `buf` is full or the reader ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, GzipError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(GzipError::from_io(e, offset + n as u64)),
        }
    }
    Ok(n)
}

/// Rebuild the whole gz file into `out`; its length.
pub fn rebuild_all(
    side: &SideData,
    content: impl Read,
    mut out: impl Write,
) -> Result<u64, GzipError> {
    let mut rebuild = Rebuild::new(side, content);
    let mut buf = vec![0u8; COPY];
    let mut len = 0u64;
    loop {
        let n = read_full(&mut rebuild, &mut buf, 0)?;
        if n == 0 {
            return Ok(len);
        }
        out.write_all(&buf[..n])
            .map_err(|source| GzipError::WriteGz {
                offset: len,
                source,
            })?;
        len += n as u64;
    }
}

/// Rebuild the gz file and compare it with `original`, byte for byte (the
/// check after analysis, before the original is let go).
pub fn check_rebuild(
    side: &SideData,
    content: impl Read,
    mut original: impl Read,
) -> Result<(), GzipError> {
    let mut rebuild = Rebuild::new(side, content);
    let (mut a, mut b) = (vec![0u8; COPY], vec![0u8; COPY]);
    let mut at = 0u64;
    loop {
        let n = read_full(&mut rebuild, &mut a, 0)?;
        let m = read_full(&mut original, &mut b, at).map_err(|e| match e {
            GzipError::ReadContent { offset, source } => GzipError::ReadOriginal { offset, source },
            e => e,
        })?;
        if let Some(i) = a[..n.min(m)].iter().zip(&b[..m]).position(|(x, y)| x != y) {
            return Err(GzipError::Mismatch {
                offset: at + i as u64,
            });
        }
        if n != m {
            return Err(GzipError::Mismatch {
                offset: at + n.min(m) as u64,
            });
        }
        if n == 0 {
            return Ok(());
        }
        at += n as u64;
    }
}
