//! The side-data encoding (grammar in the module doc of `gzip`).

use super::{GzipError, Piece, Segment, SideData, MAX_PIECE_GZ, MAX_PIECE_PLAIN};
use crate::check::GZ_MAX_HEADER;

const MAGIC: &[u8; 8] = b"DCGZSIDE";
const VERSION: u8 = 1;
const CHECKSUM: usize = 32;
const MEMBER: u8 = 1;
const RAW: u8 = 2;
const CUT: u8 = 0;
const TRAILER: u8 = 1;

impl SideData {
    /// The encoding of this side data (version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.file_len().to_le_bytes());
        out.extend_from_slice(&self.content_len().to_le_bytes());
        put_u32(&mut out, self.segments.len());
        for s in &self.segments {
            match s {
                Segment::Member {
                    header,
                    pieces,
                    trailer,
                } => {
                    out.push(MEMBER);
                    put_u32(&mut out, header.len());
                    out.extend_from_slice(header);
                    put_u32(&mut out, pieces.len());
                    for p in pieces {
                        out.extend_from_slice(&p.plain_len.to_le_bytes());
                        out.extend_from_slice(&p.gz_len.to_le_bytes());
                        out.extend_from_slice(&p.gz_crc.to_le_bytes());
                        put_u32(&mut out, p.corrections.len());
                        out.extend_from_slice(&p.corrections);
                    }
                    match trailer {
                        None => out.push(CUT),
                        Some(t) => {
                            out.push(TRAILER);
                            out.extend_from_slice(t);
                        }
                    }
                }
                Segment::Raw { len } => {
                    out.push(RAW);
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let pieces: usize = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Member { header, pieces, .. } => {
                    header.len()
                        + 18
                        + pieces
                            .iter()
                            .map(|p| 16 + p.corrections.len())
                            .sum::<usize>()
                }
                Segment::Raw { .. } => 9,
            })
            .sum();
        MAGIC.len() + 1 + 20 + pieces + CHECKSUM
    }

    /// Decode side data; any damage is an error, never a huge allocation
    /// or a panic (module doc, "Damage").
    pub fn decode(data: &[u8]) -> Result<SideData, GzipError> {
        let bad = |at: usize, what: &str| GzipError::SideData {
            at,
            what: what.to_string(),
        };
        if data.len() < MAGIC.len() + 1 + CHECKSUM || &data[..MAGIC.len()] != MAGIC {
            return Err(bad(0, "no gzip side-data magic (DCGZSIDE)"));
        }
        if data[MAGIC.len()] != VERSION {
            return Err(bad(
                MAGIC.len(),
                &format!(
                    "version {} is not one this deploycache reads (it reads {VERSION})",
                    data[MAGIC.len()]
                ),
            ));
        }
        let (body, sum) = data.split_at(data.len() - CHECKSUM);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad(body.len(), "checksum mismatch"));
        }
        let mut r = Reader {
            data: body,
            at: MAGIC.len() + 1,
        };
        let file_len = r.u64()?;
        let content_len = r.u64()?;
        let n = r.u32()?;
        let mut segments = Vec::new();
        for _ in 0..n {
            let at = r.at;
            match r.u8()? {
                MEMBER => {
                    let header_len = r.len(GZ_MAX_HEADER as u32, "member header")?;
                    let header = r.bytes(header_len)?.to_vec();
                    let n = r.u32()?;
                    let mut pieces = Vec::new();
                    for _ in 0..n {
                        let plain_len = r.len(MAX_PIECE_PLAIN, "piece content")? as u32;
                        let gz_len = r.len(MAX_PIECE_GZ, "piece gz")? as u32;
                        let gz_crc = r.u32()?;
                        let corr_len = r.len(u32::MAX, "piece corrections")?;
                        let corrections = r.bytes(corr_len)?.to_vec();
                        pieces.push(Piece {
                            plain_len,
                            gz_len,
                            gz_crc,
                            corrections,
                        });
                    }
                    let trailer = match r.u8()? {
                        CUT => None,
                        TRAILER => Some(r.array()?),
                        k => return Err(bad(r.at - 1, &format!("member end kind {k}"))),
                    };
                    segments.push(Segment::Member {
                        header,
                        pieces,
                        trailer,
                    });
                }
                RAW => segments.push(Segment::Raw { len: r.u64()? }),
                k => return Err(bad(at, &format!("segment kind {k}"))),
            }
        }
        if r.at != body.len() {
            return Err(bad(r.at, "bytes after the last segment"));
        }
        let side = SideData { segments };
        if side.file_len() != file_len || side.content_len() != content_len {
            return Err(bad(
                MAGIC.len() + 1,
                &format!(
                    "lengths disagree: recorded file {file_len} / content {content_len}, \
                     segments sum to {} / {}",
                    side.file_len(),
                    side.content_len()
                ),
            ));
        }
        Ok(side)
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Every count and length encoded is bounded far below 4 GiB (pieces,
    // headers, corrections of at most MAX_PIECE_GZ of input each).
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// A cursor over the encoding that never reads past its end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], GzipError> {
        let b = self
            .data
            .get(self.at..)
            .and_then(|rest| rest.get(..n))
            .ok_or_else(|| GzipError::SideData {
                at: self.at,
                what: format!(
                    "{n} bytes wanted, {} left",
                    self.data.len().saturating_sub(self.at)
                ),
            })?;
        self.at += n;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, GzipError> {
        Ok(self.bytes(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GzipError> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, GzipError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GzipError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length field, refused over `max` (what it measures is read, or
    /// allocated, only after `bytes` checked it is there).
    fn len(&mut self, max: u32, what: &str) -> Result<usize, GzipError> {
        let at = self.at;
        let n = self.u32()?;
        if n > max {
            return Err(GzipError::SideData {
                at,
                what: format!("{what} length {n} is over the bound {max}"),
            });
        }
        Ok(n as usize)
    }
}
