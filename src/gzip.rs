//! The gzip codec: a `.gz` file as its *content* (the inflated bytes of
//! its members, which a chunker can dedupe against every other version)
//! plus *side data* (small: what it takes to rebuild the exact gz bytes
//! from the content), and back, bit-exact (issue 14).
//!
//! ```text
//! file bytes = rebuild(side, content)
//! ```
//!
//! **Segments.** The side data lists the file's segments in order:
//! - a [`Segment::Member`]: one gzip member, its exact header bytes
//!   (FEXTRA/FNAME/FCOMMENT/FHCRC included), its deflate stream as
//!   [`Piece`]s (each: how many content bytes it inflates to, how many gz
//!   bytes it is, and preflate's corrections that turn those content bytes
//!   back into exactly those gz bytes), and its 8-byte trailer (CRC32,
//!   ISIZE). Its content is the member's inflated bytes. A member whose
//!   rebuild stopped part-way (see below) has no trailer: it is *cut*.
//! - a [`Segment::Raw`]: `len` bytes of the file taken into the content
//!   verbatim: trailing padding or garbage after the last member, and
//!   everything from where a member stops rebuilding to the end of the file.
//!
//! **What does not rebuild** (a truncated or damaged member, an
//! odd producer, a preflate error or panic) is cut where analysis found it:
//! the pieces before that point stay (their content was already streamed to
//! the caller, and they rebuild exactly), and a Raw segment holds the rest
//! of the file. A failure in a member's first piece (where an unknown
//! producer fails: preflate estimates the compressor's parameters there)
//! leaves a cut member with no pieces: its header, then the rest of the
//! file Raw. A trailer
//! whose CRC32 or ISIZE disagrees with the content also cuts the member
//! before its trailer. Only members with their trailer count as rebuilt.
//!
//! **Decision** ([`analyze`]): the file is kept as it is ([`Verdict::Keep`])
//! when it does not start with a gzip member, when no member rebuilds
//! whole, or when the encoded side data exceeds 1/[`Options::side_fraction`]
//! (default 1/16) of the gz bytes it rebuilds (all but the Raw segments) plus
//! [`Options::side_allowance`] (default 1 KiB, for the headers, trailers
//! and framing of small files). Why 1/16: a converted file costs its
//! content's new chunks plus its side data in every version, so with no
//! dedupe at all it costs at most ~6 % more than stored as it is, and it
//! wins as soon as a version shares more than that of its content with
//! another (a package update shares most of an image). preflate's side data
//! on zlib-compatible producers is far below it (corrections are near zero
//! when the compressor's parameters are predicted); a stream it predicts
//! badly goes over it and stays as it is.
//!
//! **Streaming, bounded memory.** [`analyze`] reads the gz file through
//! `Read` and writes the content to a `Write` as it goes; [`Rebuild`] is a
//! `Read` over the rebuilt bytes, so `io::copy` works both ways. Memory is
//! bounded whatever the file size: analysis holds at most [`MAX_PIECE_GZ`]
//! bytes of gz input (normally [`Options::piece_gz`], 1 MiB), one piece's
//! content (at most [`PIECE_PLAIN_LIMIT`], 16 MiB, reached only by highly
//! compressible data such as runs of zeros) twice and its tokens twice (the
//! per-piece verification recompresses it), and preflate's 32 KiB
//! dictionary and hash chains; the side data grows by a few bytes per
//! piece. Rebuild holds one piece's content and its gz bytes. Analysis
//! runs with preflate's `verify_compression` on: each piece is recompressed
//! from the content and compared before it is accepted.
//!
//! **Producers.** GNU gzip (every level, with or without a name), pigz
//! (default level and -9), Python's `gzip` module and zlib in general
//! rebuild with side data far below the bound. pigz -1 goes over it, and
//! zlib-rs (flate2 here) finds no compressor parameters on binary-heavy
//! content: such files stay as they are. The first piece of a member is
//! where preflate estimates the parameters, so it must not be small (a
//! piece of one or two deflate blocks can estimate them wrongly and cut the
//! member at the next piece): [`Options::piece_gz`] stays large.
//!
//! **Past 2 GiB of one member's content** preflate 0.7's positions
//! (`i32`/`u32`) overflow: a debug build panics there (caught: the member
//! is cut), a release build wraps, which the per-piece verification at
//! analysis and the per-piece CRC32 at rebuild guard. A release build
//! rebuilt a member of 2.3 GB of zeros exactly; other content past 2 GiB
//! is untested.
//!
//! **Random access.** A read at an offset inside a member must rebuild from
//! the member's start: preflate's predictor (its hash chains, the
//! compressor parameters and the CABAC model state) evolves over the whole
//! stream and cannot be serialized, so a piece cannot be recompressed
//! alone. Checkpoints would need preflate to export and import that state
//! (or to restart its predictor at a block boundary, i.e. analyze each
//! span of pieces as a fresh stream with a preset 32 KiB dictionary, at the
//! cost of a parameter header per span); neither exists in 0.7. Until then
//! a reader wanting offset X skips content and gz output up to X.
//!
//! **Damage.** Decoding side data checks its magic, version, every length
//! against what is left and against the format's bounds (a forged length
//! is an error, never a huge allocation), and a BLAKE3 checksum of the
//! whole encoding. Rebuilding checks each piece's gz length and CRC32, each member's
//! CRC32 and ISIZE against the content it read, and that the content ends
//! exactly where the side data says; a panic inside preflate is an error.
//! The file digest check is the caller's.
//!
//! ## Side-data encoding, version 1
//!
//! Little-endian throughout.
//!
//! ```text
//! side     := "DCGZSIDE" version:u8 (= 1) file_len:u64 content_len:u64
//!             n:u32 segment{n} checksum[32]
//! segment  := 1 member | 2 raw
//! member   := header_len:u32 header[header_len] n:u32 piece{n} end
//! piece    := plain_len:u32 gz_len:u32 gz_crc:u32 corr_len:u32 corrections[corr_len]
//! end      := 0                    cut: the member stops after its pieces
//!           | 1 trailer[8]         the member's CRC32 and ISIZE, as in the file
//! raw      := len:u64
//! checksum := BLAKE3-256 of every byte before it
//! ```
//!
//! * `gz_crc` is the CRC32 of the piece's gz bytes: a rebuild checks every
//!   piece it produces before a byte of it is returned.
//! * `file_len` = the gz file's length = the sum of every header, piece
//!   `gz_len`, trailer and raw `len`; `content_len` = the sum of every
//!   `plain_len` and raw `len`. Decode checks both.
//! * `header_len` ≤ 1 MiB (the write-path check's limit), `plain_len` ≤
//!   [`MAX_PIECE_PLAIN`], `gz_len` ≤ [`MAX_PIECE_GZ`], `corr_len` ≤ what is
//!   left of the encoding.
//! * `corrections` are preflate-rs 0.7's (`PreflateStreamProcessor::
//!   decompress`, per piece, in order; a member's first piece carries the
//!   compressor parameters). They are only meaningful to the same
//!   preflate release line: a preflate upgrade that changes them needs a
//!   new version here.

mod analyze;
mod preflate;
mod rebuild;
mod side;

pub use analyze::{analyze, analyze_with, KeepReason, Options, Verdict};
pub use rebuild::{check_rebuild, rebuild_all, Rebuild};

/// Content bytes a piece may inflate to, as analysis cuts them (preflate's
/// plain-text limit: a piece ends at the last deflate block boundary
/// before it). Bounds the memory of both directions. preflate cannot cut
/// inside a Huffman block, so a block must fit: GNU gzip's blocks hold up
/// to 32 Ki symbols (zlib's 16 Ki at its default memLevel), and a run of
/// zeros (an image's free space) makes each a 258-byte match, 8.5 MB.
pub const PIECE_PLAIN_LIMIT: usize = 16 << 20;
/// Bound on a piece's content in the encoding: the limit plus what may run
/// past it (one match, or one stored block of at most 64 KiB), with room
/// to spare.
pub const MAX_PIECE_PLAIN: u32 = 32 << 20;
/// Bound on a piece's gz bytes: analysis gives a deflate block that does
/// not fit in this much input up (the member is cut there).
pub const MAX_PIECE_GZ: u32 = 16 << 20;

/// A gz file's side data: its segments in file order (module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideData {
    pub segments: Vec<Segment>,
}

/// A span of the gz file (module doc, "Segments").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Member {
        /// The member's header bytes, exactly as in the file.
        header: Vec<u8>,
        pieces: Vec<Piece>,
        /// CRC32 and ISIZE as in the file; `None`: the member is cut
        /// after its pieces and a `Raw` segment holds the rest of the file.
        trailer: Option<[u8; 8]>,
    },
    /// `len` bytes of the file, verbatim in the content.
    Raw { len: u64 },
}

/// A span of a member's deflate stream, ending at a block boundary (or
/// inside a stored block): `gz_len` bytes of the file that preflate
/// rebuilds from the next `plain_len` bytes of content and `corrections`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub plain_len: u32,
    pub gz_len: u32,
    /// CRC32 of the piece's gz bytes.
    pub gz_crc: u32,
    pub corrections: Vec<u8>,
}

impl SideData {
    /// Length of the gz file this rebuilds.
    pub fn file_len(&self) -> u64 {
        self.segments.iter().map(Segment::file_len).sum()
    }

    /// Length of the content stream it rebuilds from.
    pub fn content_len(&self) -> u64 {
        self.segments.iter().map(Segment::content_len).sum()
    }

    /// Members rebuilt whole (with their trailer).
    pub fn whole_members(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Segment::Member {
                        trailer: Some(_),
                        ..
                    }
                )
            })
            .count()
    }

    /// Gz bytes rebuilt from the side data and content (all but the Raw
    /// segments): what the side-data bound is taken of.
    pub fn rebuilt_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Member { .. }))
            .map(Segment::file_len)
            .sum()
    }
}

impl Segment {
    /// Bytes of the gz file this segment stands for.
    pub fn file_len(&self) -> u64 {
        match self {
            Segment::Member {
                header,
                pieces,
                trailer,
            } => {
                header.len() as u64
                    + pieces.iter().map(|p| p.gz_len as u64).sum::<u64>()
                    + if trailer.is_some() { 8 } else { 0 }
            }
            Segment::Raw { len } => *len,
        }
    }

    /// Bytes of content this segment takes.
    pub fn content_len(&self) -> u64 {
        match self {
            Segment::Member { pieces, .. } => pieces.iter().map(|p| p.plain_len as u64).sum(),
            Segment::Raw { len } => *len,
        }
    }
}

/// A member trailer's CRC32 and ISIZE (the content's length mod 2^32).
fn trailer_fields(t: &[u8; 8]) -> (u32, u32) {
    (
        u32::from_le_bytes([t[0], t[1], t[2], t[3]]),
        u32::from_le_bytes([t[4], t[5], t[6], t[7]]),
    )
}

/// What failed in the gzip codec, and where.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("gzip analysis: reading the gz file at offset {offset}: {source}")]
    ReadGz { offset: u64, source: std::io::Error },
    #[error("gzip analysis: writing the content at content offset {offset}: {source}")]
    WriteContent { offset: u64, source: std::io::Error },
    #[error("gzip rebuild: reading the content at content offset {offset}: {source}")]
    ReadContent { offset: u64, source: std::io::Error },
    #[error("gzip side data damaged at byte {at} of its encoding: {what}; the file must be read from another copy or analyzed again")]
    SideData { at: usize, what: String },
    #[error("gzip rebuild: member {member} (at gz offset {offset}): {what}; its side data or content is damaged")]
    Rebuild {
        member: usize,
        offset: u64,
        what: String,
    },
    #[error("gzip rebuild: the content ends at content offset {offset}, the side data needs {wanted} bytes; the content is damaged or belongs to another file")]
    ContentShort { offset: u64, wanted: u64 },
    #[error("gzip rebuild: the content runs past the {len} bytes the side data accounts for; it is damaged or belongs to another file")]
    ContentLong { len: u64 },
    #[error(
        "gzip rebuild check: the rebuilt bytes differ from the original at gz offset {offset}"
    )]
    Mismatch { offset: u64 },
    #[error("gzip rebuild: writing the rebuilt bytes at gz offset {offset}: {source}")]
    WriteGz { offset: u64, source: std::io::Error },
    #[error("gzip rebuild check: reading the original at offset {offset}: {source}")]
    ReadOriginal { offset: u64, source: std::io::Error },
}

impl GzipError {
    /// The error inside an `io::Error` that [`Rebuild`]'s `Read` returned,
    /// or the `io::Error` as a content read failure at `offset`.
    fn from_io(e: std::io::Error, offset: u64) -> GzipError {
        if e.get_ref().is_none() {
            return GzipError::ReadContent { offset, source: e };
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<GzipError>()) {
            Some(Ok(g)) => *g,
            Some(Err(other)) => GzipError::ReadContent {
                offset,
                source: std::io::Error::new(kind, other),
            },
            None => GzipError::ReadContent {
                offset,
                source: kind.into(),
            },
        }
    }
}
