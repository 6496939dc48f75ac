//! A file's recipe: how its bytes are made from stored chunks, and the
//! geometry of reading it (which chunk holds a byte, which chunks one pack
//! read can fetch).
//!
//! Invariant: a [`ChunkList`] only exists with offsets that are the running
//! sum of its chunks' lengths, starting at 0 (checked when it is built), so
//! every offset computed from it lies inside the chunk it names.

use std::ops::Range;
use std::sync::Arc;

use super::ChunkSpan;
use crate::id::{ChunkId, FileHash};
use crate::pack::{self, Location};

/// How a committed file's bytes are made from stored chunks.
///
/// A new form is a new variant: code that reads a file matches on the
/// recipe, so a new variant is a compile error at each place that must
/// learn it, not a silent special case. The index says which form a file
/// has (`files.form`, store-layout.md "Gzip files (format 4)"); the file
/// digest is [`FileHash::of_chunks`] of the file's own bytes' chunks in
/// every form, so conversion never changes it.
///
/// Cloning is cheap (`Arc`s): readers of one file share one recipe.
#[derive(Clone, Debug)]
pub enum Recipe {
    /// The file is its chunks' bytes, in order (form 0).
    Chunks(ChunkList),
    /// A gzip file stored as its inflated `content` plus the `side` data
    /// that deflates it back bit for bit (form 1). `gz` are the ids and
    /// lengths of the chunks of its own bytes (what its digest commits to
    /// and a rebuild is checked against); `hot`, when kept, those chunks
    /// themselves, read like a form-0 file's.
    Gzip {
        content: ChunkList,
        side: ChunkList,
        gz: GzChunks,
        hot: Option<ChunkList>,
    },
}

impl Recipe {
    /// The recipe of a file from its `file_chunks` rows, in `seq` order;
    /// `Err(what is wrong)` when their offsets are not the running sum of
    /// their lengths.
    pub fn from_spans(spans: Vec<ChunkSpan>) -> Result<Recipe, String> {
        ChunkList::new(spans).map(Recipe::Chunks)
    }

    /// The recipe of a gzip-form file from its streams, its gzip chunk
    /// list, and its hot copy's `file_chunks` rows (empty: none kept);
    /// `Err(what is wrong)` when a list is inconsistent or the hot copy is
    /// not the gzip chunk list.
    pub fn gzip(
        content: Vec<ChunkSpan>,
        side: Vec<ChunkSpan>,
        gz: Vec<(ChunkId, u32)>,
        hot: Vec<ChunkSpan>,
    ) -> Result<Recipe, String> {
        let content = ChunkList::new(content).map_err(|e| format!("content stream: {e}"))?;
        let side = ChunkList::new(side).map_err(|e| format!("side data: {e}"))?;
        let gz = GzChunks::new(gz);
        let hot = if hot.is_empty() {
            None
        } else {
            let hot = ChunkList::new(hot).map_err(|e| format!("hot copy: {e}"))?;
            let same = hot.len() == gz.len()
                && hot
                    .spans()
                    .iter()
                    .zip(gz.list())
                    .all(|(s, (id, len))| s.id == *id && s.loc.raw_len == *len);
            if !same {
                return Err("the hot copy is not the file's gzip chunk list".into());
            }
            Some(hot)
        };
        Ok(Recipe::Gzip {
            content,
            side,
            gz,
            hot,
        })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        match self {
            Recipe::Chunks(list) => list.size(),
            Recipe::Gzip { gz, .. } => gz.size(),
        }
    }

    /// The file digest this recipe commits to (see [`FileHash`]).
    pub fn digest(&self) -> FileHash {
        match self {
            Recipe::Chunks(list) => {
                FileHash::of_chunks(list.spans().iter().map(|s| (s.id, s.loc.raw_len)))
            }
            Recipe::Gzip { gz, .. } => FileHash::of_chunks(gz.list().iter().copied()),
        }
    }

    /// Whether this recipe makes the file a row describes: `size` bytes with
    /// digest `hash`. The digest commits to every chunk id and length, so a
    /// row whose size disagrees would otherwise serve a silently shortened
    /// (or padded) file.
    pub fn matches(&self, size: u64, hash: &FileHash) -> bool {
        self.size() == size && self.digest() == *hash
    }

    /// Every chunk the recipe holds (what refs, verify and gc count): a
    /// form-0 file's chunks in order; a gzip-form file's content, side data
    /// and hot copy, in that order.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkSpan> {
        let none: &[ChunkSpan] = &[];
        let (a, b, c) = match self {
            Recipe::Chunks(list) => (list.spans(), none, none),
            Recipe::Gzip {
                content, side, hot, ..
            } => (
                content.spans(),
                side.spans(),
                hot.as_ref().map_or(none, |h| h.spans()),
            ),
        };
        a.iter().chain(b).chain(c)
    }
}

/// The ids and lengths of a gzip-form file's own bytes' chunks, in order:
/// what its digest commits to, what a rebuild is cut at and checked
/// against, and what a promotion stores.
#[derive(Clone, Debug)]
pub struct GzChunks {
    list: Arc<[(ChunkId, u32)]>,
    size: u64,
}

impl GzChunks {
    pub fn new(list: Vec<(ChunkId, u32)>) -> GzChunks {
        let size = list.iter().map(|(_, l)| u64::from(*l)).sum();
        GzChunks {
            list: list.into(),
            size,
        }
    }

    pub fn list(&self) -> &[(ChunkId, u32)] {
        &self.list
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The file's size: the sum of the chunks' lengths.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A file's chunks in order, each with its offset in the file and where it
/// is stored; shared (`Arc`) by every reader of the file.
#[derive(Clone, Debug)]
pub struct ChunkList {
    spans: Arc<[ChunkSpan]>,
    size: u64,
}

impl ChunkList {
    /// A chunk list from spans in file order; `Err(what is wrong)` unless
    /// each offset is the sum of the lengths before it.
    pub fn new(spans: Vec<ChunkSpan>) -> Result<ChunkList, String> {
        let mut size = 0u64;
        for (i, s) in spans.iter().enumerate() {
            if s.offset != size {
                return Err(format!(
                    "chunk {i} is at offset {}, but the chunks before it hold {size} bytes",
                    s.offset
                ));
            }
            size += u64::from(s.loc.raw_len);
        }
        Ok(ChunkList {
            spans: spans.into(),
            size,
        })
    }

    /// The sum of the chunks' lengths.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn spans(&self) -> &[ChunkSpan] {
        &self.spans
    }

    /// Index of the chunk holding byte `pos`, if `pos` is inside the file.
    pub fn chunk_at(&self, pos: u64) -> Option<usize> {
        if pos >= self.size {
            return None;
        }
        Some(self.spans.partition_point(|s| s.offset <= pos) - 1)
    }

    /// The bytes of the file that chunk `i` holds.
    pub fn span(&self, i: usize) -> Range<u64> {
        let s = &self.spans[i];
        s.offset..s.offset + u64::from(s.loc.raw_len)
    }

    /// Chunks `range` cut into runs that one read can fetch: consecutive
    /// chunks in one pack whose records fill (nearly: at least 3/4) the byte
    /// range they span, at most `max_bytes` long in the pack and decoded. A
    /// file's new chunks are appended close together, though the chunk
    /// workers may swap neighbours.
    pub fn segments(&self, range: Range<usize>, max_bytes: u64) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = range.start;
        let (mut lo, mut hi, mut used, mut raw) = (0u64, 0u64, 0u64, 0u64);
        for i in range.clone() {
            let loc = &self.spans[i].loc;
            let (a, b) = record_range(loc);
            if i > start {
                let (nlo, nhi) = (lo.min(a), hi.max(b));
                let nused = used + (b - a);
                let nraw = raw + u64::from(loc.raw_len);
                let dense = nused * 4 >= (nhi - nlo) * 3;
                // Bounded in decoded bytes too: a run of one repeated chunk
                // (zeros) spans a few bytes of pack but any number of bytes
                // of file.
                if loc.pack != self.spans[start].loc.pack
                    || !dense
                    || nhi - nlo > max_bytes
                    || nraw > max_bytes
                {
                    out.push(start..i);
                    start = i;
                } else {
                    (lo, hi, used, raw) = (nlo, nhi, nused, nraw);
                    continue;
                }
            }
            (lo, hi, used, raw) = (a, b, b - a, u64::from(loc.raw_len));
        }
        if start < range.end {
            out.push(start..range.end);
        }
        out
    }

    /// The pack bytes that chunks `range` span, record headers included, if
    /// they all lie in one pack.
    pub fn pack_range(&self, range: Range<usize>) -> Option<(pack::PackName, Range<u64>)> {
        let spans = &self.spans[range];
        let first = spans.first()?;
        if spans.iter().any(|s| s.loc.pack != first.loc.pack) {
            return None;
        }
        let (lo, hi) = spans
            .iter()
            .map(|s| record_range(&s.loc))
            .fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
        Some((first.loc.pack, lo..hi))
    }
}

/// The bytes a chunk's record occupies in its pack (header included).
fn record_range(loc: &Location) -> (u64, u64) {
    (
        loc.offset - pack::RECORD_HEADER_LEN as u64,
        loc.offset + u64::from(loc.stored_len),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{Codec, PackName};
    use proptest::prelude::*;

    /// Spans of chunks of these lengths, laid out in packs as `pack_of`
    /// says (records back to back within a pack, in file order).
    fn spans(lens: &[u32], pack_of: impl Fn(usize) -> u128) -> Vec<ChunkSpan> {
        let mut ends = std::collections::HashMap::<u128, u64>::new();
        let mut offset = 0u64;
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let pack = pack_of(i);
                let end = ends.entry(pack).or_insert(0);
                let at = *end + pack::RECORD_HEADER_LEN as u64;
                *end = at + u64::from(len);
                let s = ChunkSpan {
                    id: ChunkId::of(&i.to_le_bytes()),
                    offset,
                    loc: Location {
                        pack: PackName(pack),
                        offset: at,
                        stored_len: len,
                        raw_len: len,
                        codec: Codec::Raw,
                    },
                };
                offset += u64::from(len);
                s
            })
            .collect()
    }

    #[test]
    fn offsets_that_do_not_follow_each_other_are_refused() {
        let mut s = spans(&[10, 20, 30], |_| 1);
        assert!(ChunkList::new(s.clone()).is_ok());
        s[2].offset = 29;
        let err = ChunkList::new(s).unwrap_err();
        assert!(err.contains("chunk 2 is at offset 29"), "{err}");
        let mut s = spans(&[10], |_| 1);
        s[0].offset = 1;
        assert!(ChunkList::new(s).is_err());
    }

    #[test]
    fn an_empty_file_has_no_chunk_and_the_empty_digest() {
        let r = Recipe::from_spans(Vec::new()).unwrap();
        assert_eq!(r.size(), 0);
        let Recipe::Chunks(list) = &r else {
            unreachable!("from_spans makes a chunk list")
        };
        assert_eq!(list.chunk_at(0), None);
        assert!(list.segments(0..0, 1 << 20).is_empty());
        let empty: [(ChunkId, u32); 0] = [];
        assert!(r.matches(0, &FileHash::of_chunks(empty)));
    }

    #[test]
    fn the_digest_commits_to_sizes_and_ids() {
        let s = spans(&[5, 7], |_| 1);
        let r = Recipe::from_spans(s.clone()).unwrap();
        let hash = FileHash::of_chunks(s.iter().map(|s| (s.id, s.loc.raw_len)));
        assert!(r.matches(12, &hash));
        assert!(!r.matches(11, &hash));
        let other = FileHash::of_chunks([(s[1].id, 7u32), (s[0].id, 5u32)]);
        assert!(!r.matches(12, &other));
    }

    #[test]
    fn segments_split_where_the_pack_changes_and_at_the_size_bound() {
        // Chunks 0-2 in pack 1, 3-4 in pack 2, 5 in pack 1 again.
        let lens = [100, 100, 100, 100, 100, 100];
        let list =
            ChunkList::new(spans(&lens, |i| if (3..5).contains(&i) { 2 } else { 1 })).unwrap();
        assert_eq!(list.segments(0..6, 1 << 20), vec![0..3, 3..5, 5..6]);
        // Chunk 5 follows chunk 2 in pack 1, but one segment each side of
        // pack 2: segments never reorder.
        let rec = 100 + pack::RECORD_HEADER_LEN as u64;
        // Two records fit, three do not.
        assert_eq!(list.segments(0..3, 2 * rec), vec![0..2, 2..3]);
        assert_eq!(list.pack_range(0..3), Some((PackName(1), 0..3 * rec)));
        assert_eq!(list.pack_range(2..4), None);
    }

    #[test]
    fn a_sparse_run_in_one_pack_is_cut() {
        // Chunks 0 and 1 in pack 1 with another file's 10 KB between them.
        let mut s = spans(&[1000, 1000], |_| 1);
        s[1].loc.offset += 10_000;
        let list = ChunkList::new(s).unwrap();
        assert_eq!(list.segments(0..2, 1 << 20), vec![0..1, 1..2]);
    }

    proptest! {
        /// chunk_at and span agree with a running sum of the lengths, and
        /// segments cover the chunks in order, each in one pack and within
        /// its bound.
        #[test]
        fn geometry_agrees_with_a_running_sum(
            lens in proptest::collection::vec(1u32..5000, 0..60),
            packs in proptest::collection::vec(0u128..3, 60),
            probes in proptest::collection::vec(any::<u64>(), 20),
            max in 1u64..40_000,
        ) {
            let list = ChunkList::new(spans(&lens, |i| packs[i])).unwrap();
            let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
            prop_assert_eq!(list.size(), total);
            let mut start = 0u64;
            for (i, &len) in lens.iter().enumerate() {
                let end = start + u64::from(len);
                prop_assert_eq!(list.span(i), start..end);
                prop_assert_eq!(list.chunk_at(start), Some(i));
                prop_assert_eq!(list.chunk_at(end - 1), Some(i));
                start = end;
            }
            prop_assert_eq!(list.chunk_at(total), None);
            for p in probes {
                let pos = if total == 0 { p } else { p % (total + 10) };
                match list.chunk_at(pos) {
                    Some(i) => prop_assert!(list.span(i).contains(&pos)),
                    None => prop_assert!(pos >= total),
                }
            }
            let segs = list.segments(0..lens.len(), max);
            let mut next = 0;
            for seg in &segs {
                prop_assert_eq!(seg.start, next);
                prop_assert!(seg.end > seg.start);
                next = seg.end;
                prop_assert!(list.pack_range(seg.clone()).is_some());
                if seg.len() > 1 {
                    let (_, r) = list.pack_range(seg.clone()).unwrap();
                    prop_assert!(r.end - r.start <= max);
                    let raw: u64 = list.spans()[seg.clone()].iter().map(|s| u64::from(s.loc.raw_len)).sum();
                    prop_assert!(raw <= max);
                }
            }
            prop_assert_eq!(next, lens.len());
        }
    }
}
