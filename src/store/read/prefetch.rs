//! Asking the kernel to read the packs ahead of a reader
//! (POSIX_FADV_WILLNEED, no waiting): a window of chunks ahead of a
//! sequential `read_at`, a window of segments ahead of `copy_to`, and per
//! pack one growing run instead of overlapping requests.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::reader::FileReader;
use super::segment::SEGMENT_BYTES;
use crate::index::ChunkList;
use crate::pack::PackName;
use crate::store::lock;

/// `copy_to` asks the kernel for this many bytes ahead: a deduplicated
/// file is spread over several packs, so the disk needs many requests in
/// flight to keep up with a plain contiguous file.
const PREFETCH_BYTES: u64 = 128 * 1024 * 1024;
/// [`PREFETCH_BYTES`] in segments.
pub(super) const PREFETCH_SEGMENTS: usize = (PREFETCH_BYTES / SEGMENT_BYTES) as usize;

/// Sequential `read_at` callers get the pack ranges of this many chunks
/// ahead (about 4 MiB) started in the page cache, a window at a time.
const PREFETCH_CHUNKS: usize = 64;

/// Per pack, the byte run a reader last prefetched (see
/// [`FileReader::prefetch`]).
pub(super) type PrefetchRuns = HashMap<PackName, (u64, u64)>;

/// The sequential prefetch state of one reader's `read_at`.
pub(super) struct Window {
    /// Chunks below this index have been handed to the kernel's read-ahead.
    prefetched: AtomicUsize,
    /// The chunk of the last read (usize::MAX before the first), to tell
    /// sequential readers from random ones.
    last_chunk: AtomicUsize,
    /// What the window last asked for, per pack.
    runs: Mutex<PrefetchRuns>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            prefetched: AtomicUsize::new(0),
            last_chunk: AtomicUsize::new(usize::MAX),
            runs: Mutex::new(PrefetchRuns::new()),
        }
    }
}

impl FileReader {
    /// On sequential reads (chunk `i` right after the last one read), keep
    /// the kernel reading the packs ahead: when a read reaches the second
    /// half of the prefetched window, start the next window. Random reads
    /// fetch only what they read.
    pub(super) fn read_ahead(&self, list: &ChunkList, i: usize) {
        let w = &self.window;
        let prev = w.last_chunk.swap(i, Ordering::Relaxed);
        if prev.wrapping_add(1) != i {
            return;
        }
        let ahead = w.prefetched.load(Ordering::Relaxed);
        if i + PREFETCH_CHUNKS / 2 < ahead {
            return;
        }
        let from = ahead.max(i + 1);
        let to = (from + PREFETCH_CHUNKS).min(list.len());
        if from < to
            && w.prefetched
                .compare_exchange(ahead, to, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut runs = lock(&w.runs);
            for seg in list.segments(from..to, SEGMENT_BYTES) {
                self.prefetch(list, seg, &mut runs);
            }
        }
    }

    /// Ask the kernel to start reading chunks `range` (one segment) into
    /// the page cache, without waiting. Best effort. `runs` remembers, per
    /// pack, the run this reader last prefetched: a range that overlaps it
    /// or starts at its end asks only for the bytes past it, so the kernel
    /// sees one growing sequential run per pack instead of overlapping
    /// requests. Gaps are not bridged: on the benchmark corpus, bridging
    /// them read many more bytes (a gap often holds other files' chunks)
    /// and was slower (BENCHMARKS.md).
    pub(super) fn prefetch(&self, list: &ChunkList, range: Range<usize>, runs: &mut PrefetchRuns) {
        let Some((pack, bytes)) = list.pack_range(range) else {
            return;
        };
        let (mut lo, hi) = (bytes.start, bytes.end);
        let run = runs.entry(pack).or_insert((lo, lo));
        if lo >= run.0 && hi <= run.1 {
            return;
        }
        if lo >= run.0 && lo <= run.1 {
            (lo, run.1) = (run.1, hi);
        } else {
            *run = (lo, hi);
        }
        self.prefetch_pack(pack, lo..hi);
    }
}
