//! A file open for reading: its own chunk list, a one-chunk cache and the
//! sequential prefetch of the packs ahead of the reader.

use std::sync::{Arc, Mutex};

use super::lock;
use crate::error::Result;
use crate::store::{FileReader, PrefetchRuns, Store};

/// A file open for reading: its own chunk list and last decoded chunk.
pub(super) struct ReadHandle {
    pub(super) reader: FileReader,
    pub(super) last: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    /// Chunks below this index have been handed to the kernel's read-ahead.
    pub(super) prefetched: std::sync::atomic::AtomicUsize,
    /// The chunk of the last decode (usize::MAX before the first), to tell
    /// sequential readers from random ones.
    pub(super) last_chunk: std::sync::atomic::AtomicUsize,
    /// What the sequential prefetch last asked for, per pack.
    pub(super) runs: Mutex<PrefetchRuns>,
}

/// Sequential readers get the pack ranges of this many chunks ahead
/// (about 4 MiB) started in the page cache, a window at a time.
const PREFETCH_CHUNKS: usize = 64;

impl ReadHandle {
    fn chunk(&self, store: &Store, i: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((j, data)) = &*lock(&self.last) {
            if *j == i {
                return Ok(data.clone());
            }
        }
        self.read_ahead(store, i);
        // Decoded without the lock held: concurrent reads of one handle
        // may decode a chunk twice, but never wait on each other's I/O.
        let data = Arc::new(store.read_chunk(&self.reader, i)?);
        *lock(&self.last) = Some((i, data.clone()));
        Ok(data)
    }

    /// On sequential reads, keep the kernel reading the packs ahead: when
    /// a read reaches the second half of the prefetched window, start the
    /// next window (POSIX_FADV_WILLNEED; no waiting). Random reads fetch
    /// only what they read.
    fn read_ahead(&self, store: &Store, i: usize) {
        use std::sync::atomic::Ordering;
        let prev = self.last_chunk.swap(i, Ordering::Relaxed);
        if prev.wrapping_add(1) != i {
            return;
        }
        let ahead = self.prefetched.load(Ordering::Relaxed);
        if i + PREFETCH_CHUNKS / 2 < ahead {
            return;
        }
        let from = ahead.max(i + 1);
        let to = (from + PREFETCH_CHUNKS).min(self.reader.chunk_count());
        if from < to
            && self
                .prefetched
                .compare_exchange(ahead, to, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut runs = lock(&self.runs);
            for seg in self.reader.segments_of(from..to) {
                store.prefetch(&self.reader, seg, &mut runs);
            }
        }
    }

    /// Read `[offset, offset + size)` into the front of `buf` (grown as
    /// needed, never shrunk: one buffer per FUSE thread serves every
    /// request); returns the byte count. Chunks wholly inside the request
    /// are read and checked in place; the partial ones at its edges come
    /// through the handle's chunk cache, as the next request needs them too.
    pub(super) fn read(
        &self,
        store: &Store,
        offset: u64,
        size: u32,
        buf: &mut Vec<u8>,
    ) -> Result<usize> {
        let end = self.reader.size().min(offset.saturating_add(size as u64));
        let total = end.saturating_sub(offset) as usize;
        if buf.len() < total {
            buf.resize(total, 0);
        }
        let (mut pos, mut at) = (offset, 0usize);
        while pos < end {
            let Some(i) = self.reader.chunk_at(pos) else {
                break;
            };
            let (start, len) = self.reader.chunk_span(i);
            if pos == start && start + len <= end {
                self.read_ahead(store, i);
                store.read_chunk_into(&self.reader, i, &mut buf[at..at + len as usize])?;
                at += len as usize;
                pos += len;
                continue;
            }
            let data = self.chunk(store, i)?;
            let from = (pos - start) as usize;
            let to = ((end - start).min(len)) as usize;
            buf[at..at + to - from].copy_from_slice(&data[from..to]);
            at += to - from;
            pos = start + to as u64;
        }
        Ok(at)
    }
}
