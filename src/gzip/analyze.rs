//! Analysis: a gz file read once, front to back; its content written out
//! as it goes and its side data built (module doc of `gzip`).

use std::fmt;
use std::io::{self, Read, Write};

use super::preflate::{Analyzer, Stop};
use super::{trailer_fields, GzipError, Piece, Segment, SideData, MAX_PIECE_GZ};
use crate::check::{gzip_header, Header, GZ_MAX_HEADER};

/// How analysis cuts and decides.
#[derive(Clone, Debug)]
pub struct Options {
    /// The side data may be at most 1/`side_fraction` of the gz bytes it
    /// rebuilds, plus `side_allowance` (module doc,
    /// "Decision"). Default 16.
    pub side_fraction: u64,
    /// Default 1 KiB.
    pub side_allowance: u64,
    /// Gz bytes handed to preflate per piece (a piece ends at the last
    /// deflate block boundary in them). Default 1 MiB: large enough that the
    /// per-piece costs (a CABAC flush, a few bytes of framing) vanish,
    /// small enough to bound memory. A block that does not fit doubles it,
    /// up to [`MAX_PIECE_GZ`].
    pub piece_gz: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            side_fraction: 16,
            side_allowance: 1024,
            piece_gz: 1 << 20,
        }
    }
}

/// What analysis decided.
#[derive(Debug)]
pub enum Verdict {
    /// Store the file as the content that was written plus this side data.
    Split(SideData),
    /// Keep the file as it is; discard the content that was written.
    Keep(KeepReason),
}

impl Verdict {
    /// The side data, if the file is to be split.
    pub fn into_side(self) -> Option<SideData> {
        match self {
            Verdict::Split(side) => Some(side),
            Verdict::Keep(_) => None,
        }
    }
}

/// Why a file is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// It does not start with a gzip member header (nothing was written).
    NotGzip,
    /// Its first member does not rebuild whole: why, and where.
    NothingRebuilds(String),
    /// Its side data is over the bound (module doc, "Decision").
    SideTooLarge { side: u64, limit: u64 },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::NotGzip => write!(f, "not gzip"),
            KeepReason::NothingRebuilds(why) => write!(f, "no gzip member rebuilds: {why}"),
            KeepReason::SideTooLarge { side, limit } => {
                write!(f, "side data of {side} bytes is over its bound of {limit}")
            }
        }
    }
}

/// [`analyze_with`] with the default [`Options`]: the side data, or `None`
/// when the file is to be kept as it is (then discard what was written to
/// `content`).
pub fn analyze(gz: impl Read, content: impl Write) -> Result<Option<SideData>, GzipError> {
    analyze_with(gz, content, &Options::default()).map(Verdict::into_side)
}

/// Read the gz file `gz` once, writing its content to `content` as it
/// goes, and decide how to store it. Errors are I/O errors of `gz` or
/// `content` only: what the file holds decides the verdict and the
/// segments, never an error.
pub fn analyze_with(
    gz: impl Read,
    content: impl Write,
    opts: &Options,
) -> Result<Verdict, GzipError> {
    let mut input = Input::new(gz);
    let mut out = Out {
        w: content,
        written: 0,
    };
    let mut segments = Vec::new();
    let mut whole = 0;
    loop {
        input.fill(1)?;
        let Some(&first) = input.avail().first() else {
            break;
        };
        let header = if whole > 0 && first != 0x1f {
            // After a whole member, what cannot start one is padding or
            // garbage, which `gzip -d` ignores.
            None
        } else {
            read_header(&mut input)?
        };
        let Some(header) = header else {
            if whole == 0 {
                return Ok(Verdict::Keep(KeepReason::NotGzip));
            }
            segments.push(Segment::Raw {
                len: raw_rest(&mut input, &mut out)?,
            });
            break;
        };
        let member = Member::take(&mut input, &mut out, opts)?;
        let cut = member.cut.map(|why| {
            format!(
                "member {} (at gz offset {}): {why}",
                segments.len() + 1,
                member.at
            )
        });
        segments.push(Segment::Member {
            header,
            pieces: member.pieces,
            trailer: member.trailer,
        });
        match cut {
            None => whole += 1,
            Some(why) if whole == 0 => return Ok(Verdict::Keep(KeepReason::NothingRebuilds(why))),
            Some(_) => {
                segments.push(Segment::Raw {
                    len: raw_rest(&mut input, &mut out)?,
                });
                break;
            }
        }
    }
    if whole == 0 {
        return Ok(Verdict::Keep(KeepReason::NotGzip));
    }
    let side = SideData { segments };
    let len = side.encode().len() as u64;
    let limit = side.rebuilt_bytes() / opts.side_fraction.max(1) + opts.side_allowance;
    if len > limit {
        return Ok(Verdict::Keep(KeepReason::SideTooLarge { side: len, limit }));
    }
    Ok(Verdict::Split(side))
}

/// A member's header at the input's position, taken; `None` (nothing
/// taken) when what is there is not a whole gzip member header.
fn read_header<R: Read>(input: &mut Input<R>) -> Result<Option<Vec<u8>>, GzipError> {
    let mut want = 10;
    loop {
        input.fill(want)?;
        match gzip_header(input.avail()) {
            Header::Done(n) => {
                let header = input.avail()[..n].to_vec();
                input.consume(n);
                return Ok(Some(header));
            }
            Header::Bad(_) => return Ok(None),
            Header::NeedMore => {
                let have = input.avail().len();
                if have < want || have > GZ_MAX_HEADER {
                    return Ok(None);
                }
                want = (have * 2).min(GZ_MAX_HEADER + 1);
            }
        }
    }
}

/// A member's deflate stream and trailer, as far as they rebuild.
struct Member {
    /// Gz offset of its deflate stream.
    at: u64,
    pieces: Vec<Piece>,
    trailer: Option<[u8; 8]>,
    /// Why it is cut (then `trailer` is `None`).
    cut: Option<String>,
}

impl Member {
    /// Take pieces from the input (writing their content out) until the
    /// stream ends and its trailer checks out, or it stops rebuilding.
    fn take<R: Read, W: Write>(
        input: &mut Input<R>,
        out: &mut Out<W>,
        opts: &Options,
    ) -> Result<Member, GzipError> {
        let mut m = Member {
            at: input.pos,
            pieces: Vec::new(),
            trailer: None,
            cut: None,
        };
        let mut analyzer = Analyzer::new();
        let (mut crc, mut size) = (crc32fast::Hasher::new(), 0u64);
        let piece_gz = opts.piece_gz.clamp(1, MAX_PIECE_GZ as usize);
        let mut want = piece_gz;
        loop {
            input.fill(want)?;
            match analyzer.take(input.avail()) {
                Ok(taken) => {
                    let content = analyzer.content();
                    out.write(content)?;
                    crc.update(content);
                    size += content.len() as u64;
                    m.pieces.push(Piece {
                        plain_len: content.len() as u32,
                        gz_len: taken.gz_len,
                        gz_crc: crc32fast::hash(&input.avail()[..taken.gz_len as usize]),
                        corrections: taken.corrections,
                    });
                    input.consume(taken.gz_len as usize);
                    want = piece_gz;
                    if analyzer.is_done() {
                        break;
                    }
                }
                Err(Stop::NeedMore) if input.avail().len() < want => {
                    m.cut = Some(format!(
                        "the file ends inside the deflate stream, at gz offset {}",
                        input.pos + input.avail().len() as u64
                    ));
                    return Ok(m);
                }
                Err(Stop::NeedMore) if want >= MAX_PIECE_GZ as usize => {
                    m.cut = Some(format!(
                        "no deflate block ends within {MAX_PIECE_GZ} bytes of gz offset {}",
                        input.pos
                    ));
                    return Ok(m);
                }
                Err(Stop::NeedMore) => want = (want * 2).min(MAX_PIECE_GZ as usize),
                Err(Stop::Failed(why)) => {
                    m.cut = Some(format!("{why}, in the piece at gz offset {}", input.pos));
                    return Ok(m);
                }
            }
        }
        input.fill(8)?;
        let Some(trailer) = input.avail().first_chunk::<8>().copied() else {
            m.cut = Some("the file ends inside the member's trailer".into());
            return Ok(m);
        };
        let (crc, (want_crc, want_size)) = (crc.finalize(), trailer_fields(&trailer));
        if crc != want_crc || size as u32 != want_size {
            m.cut = Some(format!(
                "the trailer at gz offset {} says CRC32 {want_crc:08x} and ISIZE {want_size}, \
                 the content has {crc:08x} and {size} bytes",
                input.pos
            ));
            return Ok(m);
        }
        input.consume(8);
        m.trailer = Some(trailer);
        Ok(m)
    }
}

/// The rest of the input, written to the content verbatim; its length.
fn raw_rest<R: Read, W: Write>(input: &mut Input<R>, out: &mut Out<W>) -> Result<u64, GzipError> {
    let mut len = 0;
    loop {
        let n = input.avail().len();
        out.write(input.avail())?;
        input.consume(n);
        len += n as u64;
        if input.eof {
            return Ok(len);
        }
        input.fill(RAW_READ)?;
    }
}

/// Bytes read at a time while copying a Raw segment.
const RAW_READ: usize = 1 << 20;

/// The gz file being read, with the bytes read but not yet taken.
struct Input<R> {
    r: R,
    buf: Vec<u8>,
    /// `buf[..start]` is taken.
    start: usize,
    /// Gz offset of `buf[start]`.
    pos: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    fn new(r: R) -> Input<R> {
        Input {
            r,
            buf: Vec::new(),
            start: 0,
            pos: 0,
            eof: false,
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Read until `want` bytes are available, or the file ends.
    fn fill(&mut self, want: usize) -> Result<(), GzipError> {
        if self.avail().len() >= want || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        while self.buf.len() < want && !self.eof {
            let had = self.buf.len();
            self.buf.resize(want, 0);
            match self.r.read(&mut self.buf[had..]) {
                Ok(0) => {
                    self.buf.truncate(had);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(had + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(had),
                Err(source) => {
                    self.buf.truncate(had);
                    return Err(GzipError::ReadGz {
                        offset: self.pos + had as u64,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The content sink, counting what it was given.
struct Out<W> {
    w: W,
    written: u64,
}

impl<W: Write> Out<W> {
    fn write(&mut self, data: &[u8]) -> Result<(), GzipError> {
        self.w
            .write_all(data)
            .map_err(|source| GzipError::WriteContent {
                offset: self.written,
                source,
            })?;
        self.written += data.len() as u64;
        Ok(())
    }
}
