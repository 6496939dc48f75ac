//! Content-defined chunking (FastCDC 2020, from the `fastcdc` crate).
//!
//! Invariants:
//! - Cut points depend only on the bytes, never on how they were pushed:
//!   `Chunker::push` only cuts once it holds `MAX_SIZE` bytes (or at
//!   `Chunker::finish`), which is exactly the window FastCDC looks at.
//! - The parameters below define which chunk ids a store holds. Changing
//!   them (or the pinned `fastcdc` version) makes new data stop deduplicating
//!   against every existing store: that is a format change (store-layout.md).

use std::ops::Range;
use std::sync::Arc;

use fastcdc::v2020::{cut, select_masks, Normalization};

/// Smallest chunk, except the last chunk of a file.
pub const MIN_SIZE: usize = 16 * 1024;
/// Target average chunk size. Measured on the benchmark corpus (two versions
/// of each artifact, store-layout.md "Chunk size"): 64 KiB leaves 12.9% of an
/// updated bootstrap tar and 31% of an updated raw ext4 image as new data,
/// against 22.9% and 48% at 256 KiB, for ~13,000 index rows per GiB.
pub const AVG_SIZE: usize = 64 * 1024;
/// Largest chunk.
pub const MAX_SIZE: usize = 256 * 1024;
/// [`Chunker::push`] gathers pieces into blocks of about this size.
const GATHER: usize = 4 * MAX_SIZE;
/// FastCDC normalization level (how tightly sizes cluster around `AVG_SIZE`).
const LEVEL: Normalization = Normalization::Level1;

/// A chunk's bytes: a range of a block the caller handed over (no copy), or
/// bytes of its own where a chunk straddles two blocks.
#[derive(Clone, Debug)]
pub(crate) enum ChunkBytes {
    Shared(Arc<Vec<u8>>, Range<usize>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for ChunkBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ChunkBytes::Shared(block, r) => &block[r.clone()],
            ChunkBytes::Owned(v) => v,
        }
    }
}

/// A push-based chunker: feed it blocks of any size, receive chunks.
///
/// Chunks that lie inside one block are handed out as ranges of it, without
/// copying; only the bytes of a chunk that straddles two blocks are copied
/// (into `carry`), at most `MAX_SIZE` per block.
pub(crate) struct Chunker {
    /// Bytes not yet cut: the start of the chunk in progress (fewer than
    /// `MAX_SIZE` bytes that came before the current block), or pieces
    /// [`Chunker::push`] is gathering (about [`GATHER`] at most).
    carry: Vec<u8>,
    /// Capacity to give `carry` when it starts, so that a caller using
    /// [`Chunker::take_carry`] can read its next block in behind it.
    block_capacity: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunker {
    pub(crate) fn new() -> Self {
        let (mask_s, mask_l) = select_masks(AVG_SIZE, LEVEL);
        Chunker {
            carry: Vec::new(),
            block_capacity: 0,
            mask_s,
            mask_l,
        }
    }

    /// Length of the chunk starting at `window[0]`. `window` must hold at
    /// least `MAX_SIZE` bytes, or be the end of the input.
    fn cut(&self, window: &[u8]) -> usize {
        let (_, len) = cut(
            window,
            MIN_SIZE,
            AVG_SIZE,
            MAX_SIZE,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }

    /// Append `data`, copied once: pieces gather behind the chunk in
    /// progress in a buffer of about 1 MiB (`GATHER`), which is cut as one
    /// block when the next piece would not fit. (A FUSE write is smaller
    /// than `MAX_SIZE`: scp's arrive as about 256 KiB. Copying each into a
    /// block of its own, then into the carry, copied every byte twice.)
    pub(crate) fn push<E>(
        &mut self,
        data: &[u8],
        mut emit: impl FnMut(ChunkBytes) -> Result<(), E>,
    ) -> Result<(), E> {
        // The carry left after a cut starts with room for a whole gather.
        self.block_capacity = self.block_capacity.max(GATHER);
        if self.carry.len() >= MAX_SIZE && self.carry.len() + data.len() > self.carry.capacity() {
            // Cut what is gathered rather than grow the buffer (a copy).
            let gathered = std::mem::take(&mut self.carry);
            self.push_block(gathered, &mut emit)?;
        }
        self.carry
            .reserve(data.len().max(GATHER.saturating_sub(self.carry.len())));
        self.carry.extend_from_slice(data);
        Ok(())
    }

    /// Append a block, calling `emit` with every chunk that is now complete.
    pub(crate) fn push_block<E>(
        &mut self,
        block: Vec<u8>,
        mut emit: impl FnMut(ChunkBytes) -> Result<(), E>,
    ) -> Result<(), E> {
        let block = if self.carry.len() >= MAX_SIZE {
            // Pieces gathered by `push` come first: cut them with the block.
            let mut gathered = std::mem::take(&mut self.carry);
            gathered.extend_from_slice(&block);
            gathered
        } else {
            block
        };
        let block = Arc::new(block);
        let mut pos = 0;
        // The seam: a chunk in progress from earlier blocks.
        while !self.carry.is_empty() {
            let take = (MAX_SIZE - self.carry.len()).min(block.len() - pos);
            let before = self.carry.len();
            self.carry.extend_from_slice(&block[pos..pos + take]);
            pos += take;
            if self.carry.len() < MAX_SIZE {
                return Ok(()); // the block is used up; the chunk goes on
            }
            let len = self.cut(&self.carry);
            if len >= before {
                // The rest came from this block: give it back, uncopied.
                pos -= self.carry.len() - len;
                self.carry.truncate(len);
                emit(ChunkBytes::Owned(std::mem::take(&mut self.carry)))?;
            } else {
                let rest = self.carry.split_off(len);
                emit(ChunkBytes::Owned(std::mem::replace(&mut self.carry, rest)))?;
            }
        }
        while block.len() - pos >= MAX_SIZE {
            let len = self.cut(&block[pos..]);
            emit(ChunkBytes::Shared(block.clone(), pos..pos + len))?;
            pos += len;
        }
        if self.carry.capacity() < self.block_capacity {
            self.carry = Vec::with_capacity(self.block_capacity);
        }
        self.carry.extend_from_slice(&block[pos..]);
        Ok(())
    }

    /// Give the chunk in progress a buffer of `capacity` bytes when it
    /// starts (see [`Chunker::take_carry`]).
    pub(crate) fn set_block_capacity(&mut self, capacity: usize) {
        self.block_capacity = capacity;
    }

    /// Take the bytes of the chunk in progress. A caller that appends its
    /// next input to them and hands the whole back to [`Chunker::push_block`]
    /// saves the copy at the seam between blocks: only the carried bytes
    /// are ever copied.
    pub(crate) fn take_carry(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// Emit whatever is left: the file's last chunks, as ranges of what
    /// was carried (up to `GATHER` bytes gathered by `push`), uncopied.
    pub(crate) fn finish<E>(
        &mut self,
        mut emit: impl FnMut(ChunkBytes) -> Result<(), E>,
    ) -> Result<(), E> {
        let rest = Arc::new(std::mem::take(&mut self.carry));
        let mut pos = 0;
        while pos < rest.len() {
            let len = self.cut(&rest[pos..]);
            emit(ChunkBytes::Shared(rest.clone(), pos..pos + len))?;
            pos += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk lengths of `data` chunked in one piece.
    fn chunk_lengths(data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut c = Chunker::new();
        let mut f = |ch: ChunkBytes| -> Result<(), ()> {
            out.push(ch.len());
            Ok(())
        };
        let _ = c.push(data, &mut f);
        let _ = c.finish(&mut f);
        out
    }
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};

    fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn chunks_with_pieces(data: &[u8], piece_sizes: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut bytes = Vec::new();
        let mut c = Chunker::new();
        let mut rest = data;
        let mut i = 0;
        let mut record = |ch: ChunkBytes| -> Result<(), ()> {
            out.push(ch.len());
            bytes.extend_from_slice(&ch);
            Ok(())
        };
        while !rest.is_empty() {
            let n = piece_sizes[i % piece_sizes.len()].clamp(1, rest.len());
            // Rotate through the copying, the block-taking and the
            // read-behind-the-carry entry points.
            match i % 3 {
                0 => c.push(&rest[..n], &mut record).unwrap(),
                1 => c.push_block(rest[..n].to_vec(), &mut record).unwrap(),
                _ => {
                    let mut block = c.take_carry();
                    block.extend_from_slice(&rest[..n]);
                    c.push_block(block, &mut record).unwrap()
                }
            }
            rest = &rest[n..];
            i += 1;
        }
        c.finish(&mut record).unwrap();
        assert!(bytes == data, "chunks do not concatenate to the input");
        out
    }

    /// Golden cut points: if this changes, every existing store stops
    /// deduplicating against new data. Do not update it casually; it is a
    /// format change (store-layout.md).
    #[test]
    fn golden_cut_points_of_seeded_input() {
        let data = seeded(4 * 1024 * 1024, 0x5eed);
        let lens = chunk_lengths(&data);
        let digest = blake3::hash(
            &lens
                .iter()
                .flat_map(|l| (*l as u64).to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        assert_eq!(
            (
                lens.len(),
                lens[0],
                lens[1],
                lens[2],
                digest.to_hex().as_str()
            ),
            GOLDEN
        );
    }
    const GOLDEN: (usize, usize, usize, usize, &str) = (
        53,
        92310,
        140056,
        191377,
        "b2478207c05f69fb9c45ad0f33dfbc544d3efff016ee93d6bc02157b3e6d770a",
    );

    #[test]
    fn sizes_within_bounds() {
        let data = seeded(8 * 1024 * 1024, 7);
        let lens = chunk_lengths(&data);
        let (last, body) = lens.split_last().unwrap();
        assert!(
            body.iter().all(|&l| (MIN_SIZE..=MAX_SIZE).contains(&l)),
            "{lens:?}"
        );
        assert!(*last <= MAX_SIZE);
        let avg = data.len() / lens.len();
        assert!(avg > AVG_SIZE / 2 && avg < AVG_SIZE * 2, "average {avg}");
    }

    #[test]
    fn edge_lengths() {
        assert_eq!(chunk_lengths(&[]), Vec::<usize>::new());
        assert_eq!(chunk_lengths(&[1]), vec![1]);
        for len in [
            MIN_SIZE - 1,
            MIN_SIZE,
            MIN_SIZE + 1,
            AVG_SIZE,
            MAX_SIZE - 1,
            MAX_SIZE,
            MAX_SIZE + 1,
        ] {
            let lens = chunk_lengths(&seeded(len, len as u64));
            assert_eq!(lens.iter().sum::<usize>(), len);
        }
        // Zeros never find a cut point: max-size chunks.
        assert_eq!(chunk_lengths(&vec![0u8; 3 * MAX_SIZE]), vec![MAX_SIZE; 3]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn cut_points_independent_of_push_sizes(
            seed in any::<u64>(),
            len in 0usize..3_000_000,
            pieces in proptest::collection::vec(1usize..2_500_000, 1..8),
        ) {
            let data = seeded(len, seed);
            prop_assert_eq!(chunks_with_pieces(&data, &pieces), chunk_lengths(&data));
        }
    }
}
