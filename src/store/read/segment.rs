//! Runs of a file's chunks fetched with one read ([`ChunkList::segments`]),
//! checked, and served from reused buffers.

use std::ops::Range;

use super::reader::FileReader;
use crate::error::Result;
use crate::id::ChunkId;
use crate::index::ChunkList;
use crate::pack::{Codec, Decoder};

/// Sequential reads fetch runs of chunks that lie close together in a pack
/// with one read of at most this many bytes: small enough that a reader's
/// buffers stay in its core's L2 cache between the read and the BLAKE3
/// check (BENCHMARKS.md: 256 KiB runs beat 2 MiB ones on a warm `cat`).
pub(super) const SEGMENT_BYTES: u64 = 256 * 1024;

/// Segment buffers each reader thread of `copy_to` cycles through.
pub(super) const SEGMENT_BUFFERS: usize = 3;

/// Where a chunk's checked bytes are in a [`Segment`].
#[derive(Clone)]
pub(super) enum Part {
    Packed(Range<usize>),
    Decoded(Range<usize>),
}

/// A run of a file's chunks read with one read and checked, with buffers
/// that keep their size from one run to the next.
#[derive(Default)]
pub(super) struct Segment {
    /// The pack bytes of the run: raw chunks are served from here.
    packed: Vec<u8>,
    /// Decoded compressed chunks, `decoded_len` bytes of it in use.
    decoded: Vec<u8>,
    decoded_len: usize,
    /// The chunks in file order.
    parts: Vec<Part>,
    /// Keeps its zstd context from one run to the next.
    decoder: Decoder,
}

impl Segment {
    fn clear(&mut self) {
        self.parts.clear();
        self.decoded_len = 0;
    }

    fn push_decoded(&mut self, data: &[u8]) {
        let start = self.decoded_len;
        self.decoded.truncate(start);
        self.decoded.extend_from_slice(data);
        self.decoded_len += data.len();
        self.parts.push(Part::Decoded(start..self.decoded_len));
    }

    /// The chunks of the run, in file order.
    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub(super) fn bytes(&self, part: &Part) -> &[u8] {
        match part {
            Part::Packed(r) => &self.packed[r.clone()],
            Part::Decoded(r) => &self.decoded[r.clone()],
        }
    }
}

impl FileReader {
    /// Read, decode and check chunks `range` (a segment from
    /// [`ChunkList::segments`], whose pack range `prefetch` asked the kernel
    /// to read ahead as one sequential run) into `seg`, reusing its buffers:
    /// one read for the whole run, raw chunks checked and served in place,
    /// compressed ones decoded beside them. On any failure the chunks are
    /// read again one by one, so that an error names the exact chunk, file
    /// and offset.
    pub(super) fn read_segment(
        &self,
        list: &ChunkList,
        range: Range<usize>,
        seg: &mut Segment,
    ) -> Result<()> {
        seg.clear();
        if self.try_read_segment(list, range.clone(), seg).is_some() {
            return Ok(());
        }
        seg.clear();
        for i in range {
            let data = self.read_chunk(list, i)?;
            seg.push_decoded(&data);
        }
        Ok(())
    }

    /// [`FileReader::read_segment`]'s fast path; `None` on any failure.
    fn try_read_segment(
        &self,
        list: &ChunkList,
        range: Range<usize>,
        seg: &mut Segment,
    ) -> Option<()> {
        if range.is_empty() {
            return Some(());
        }
        let (pack, bytes) = list.pack_range(range.clone())?;
        let lo = bytes.start;
        let n = (bytes.end - lo) as usize;
        if seg.packed.len() < n {
            seg.packed.resize(n, 0);
        }
        self.read_pack(pack, lo, &mut seg.packed[..n]).ok()?;
        // A run of one repeated chunk (zeros) is checked once.
        let mut last: Option<(u64, Part)> = None;
        for s in &list.spans()[range] {
            if let Some((offset, part)) = &last {
                if *offset == s.loc.offset {
                    seg.parts.push(part.clone());
                    continue;
                }
            }
            let at = (s.loc.offset - lo) as usize;
            let payload = &seg.packed[at..at + s.loc.stored_len as usize];
            let raw_len = s.loc.raw_len as usize;
            let part = match s.loc.codec {
                Codec::Raw if payload.len() == raw_len => Part::Packed(at..at + raw_len),
                Codec::Raw => return None,
                Codec::Zstd => {
                    let start = seg.decoded_len;
                    if seg.decoded.len() < start + raw_len {
                        seg.decoded.resize(start + raw_len, 0);
                    }
                    seg.decoder
                        .decode_into(
                            Codec::Zstd,
                            payload,
                            &mut seg.decoded[start..start + raw_len],
                        )
                        .ok()?;
                    seg.decoded_len += raw_len;
                    Part::Decoded(start..start + raw_len)
                }
            };
            if ChunkId::of(seg.bytes(&part)) != s.id {
                return None;
            }
            seg.parts.push(part.clone());
            last = Some((s.loc.offset, part));
        }
        Some(())
    }
}
