//! The [`FileReader`]: a committed file open for reading. It owns reading:
//! `read_at` (random access, with a one-chunk cache and a sequential
//! prefetch window), `copy_to` (the whole file, on worker threads), and
//! the checked read of each chunk.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex};

use super::prefetch::{PrefetchRuns, Window, PREFETCH_SEGMENTS};
use super::segment::{Segment, SEGMENT_BUFFERS, SEGMENT_BYTES};
use crate::error::{Error, Result};
use crate::index::{ChunkList, FileRow, Recipe};
use crate::pack::{PackHandle, PackName};
use crate::progress::Progress;
use crate::store::{lock, StoreCore};

/// A committed file opened for reading: its recipe never changes. Shared
/// by the threads reading it (`&self` everywhere); its caches are its own.
pub struct FileReader {
    core: Arc<StoreCore>,
    /// Reader threads of [`FileReader::copy_to`].
    workers: usize,
    pub artifact: String,
    pub file: String,
    pub row: FileRow,
    recipe: Recipe,
    /// The last chunk decoded for a read that needed only part of it: the
    /// next request of a sequential reader needs the rest.
    last: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    /// The sequential prefetch of `read_at`.
    pub(super) window: Window,
    /// The packs this reader opened, held open while it lives (see
    /// `FileReader::pack`).
    pub(super) packs: Mutex<HashMap<PackName, Arc<dyn PackHandle>>>,
}

impl Drop for FileReader {
    fn drop(&mut self) {
        let mut open = lock(&self.core.open_artifacts);
        if let Some(n) = open.get_mut(&self.artifact) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.artifact);
            }
        }
    }
}

impl FileReader {
    /// A reader of `row`, whose `recipe` was checked against its digest.
    pub(in crate::store) fn new(
        core: Arc<StoreCore>,
        workers: usize,
        artifact: &str,
        row: FileRow,
        recipe: Recipe,
    ) -> FileReader {
        *lock(&core.open_artifacts)
            .entry(artifact.to_owned())
            .or_default() += 1;
        FileReader {
            core,
            workers,
            artifact: artifact.to_owned(),
            file: row.meta.name.clone(),
            row,
            recipe,
            last: Mutex::new(None),
            window: Window::default(),
            packs: Mutex::new(HashMap::new()),
        }
    }

    pub fn size(&self) -> u64 {
        self.row.meta.size
    }

    /// The index row of the content this reader reads.
    pub fn file_id(&self) -> i64 {
        self.row.id
    }

    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    pub(super) fn core(&self) -> &StoreCore {
        &self.core
    }

    /// Read up to `buf.len()` bytes at `offset`; returns how many (fewer
    /// only at the end of the file, 0 past it).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match &self.recipe {
            Recipe::Chunks(list)
            | Recipe::Gzip {
                hot: Some(list), ..
            } => self.read_chunks_at(list, offset, buf),
            Recipe::Gzip { hot: None, .. } => self.read_cold_at(offset, buf),
        }
    }

    /// Stream the whole file to `out`. Runs of chunks are read, decoded and
    /// checked ahead on worker threads (worker k takes runs k, k+W, k+2W,
    /// …; the caller takes them back in order), so disk reads,
    /// decompression and hashing overlap.
    pub fn copy_to(&self, out: &mut dyn Write, progress: &Progress) -> Result<()> {
        match &self.recipe {
            Recipe::Chunks(list)
            | Recipe::Gzip {
                hot: Some(list), ..
            } => self.copy_chunks_to(list, out, progress),
            Recipe::Gzip { hot: None, .. } => self.copy_cold_to(out, progress, &mut |_| Ok(())),
        }
    }

    /// [`FileReader::read_at`] of chunks. Chunks wholly inside the request
    /// are read and checked in place; the partial ones at its edges come
    /// through the one-chunk cache, as the next request needs them too.
    fn read_chunks_at(&self, list: &ChunkList, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let end = list.size().min(offset.saturating_add(buf.len() as u64));
        let (mut pos, mut at) = (offset, 0usize);
        while pos < end {
            let Some(i) = list.chunk_at(pos) else { break };
            let span = list.span(i);
            if pos == span.start && span.end <= end {
                let len = (span.end - span.start) as usize;
                self.read_ahead(list, i);
                self.read_chunk_into(list, i, &mut buf[at..at + len])?;
                at += len;
                pos = span.end;
                continue;
            }
            let data = self.cached_chunk(list, i)?;
            let from = (pos - span.start) as usize;
            let to = (end.min(span.end) - span.start) as usize;
            buf[at..at + to - from].copy_from_slice(&data[from..to]);
            at += to - from;
            pos = span.start + to as u64;
        }
        Ok(at)
    }

    /// Chunk `i`, from the one-chunk cache or read (and then cached).
    fn cached_chunk(&self, list: &ChunkList, i: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((j, data)) = &*lock(&self.last) {
            if *j == i {
                return Ok(data.clone());
            }
        }
        self.read_ahead(list, i);
        // Decoded without the lock held: concurrent reads of one reader
        // may decode a chunk twice, but never wait on each other's I/O.
        let data = Arc::new(self.read_chunk(list, i)?);
        *lock(&self.last) = Some((i, data.clone()));
        Ok(data)
    }

    /// The error for chunk `i` failing its check.
    pub(super) fn corrupt(&self, list: &ChunkList, i: usize, why: String) -> Error {
        let span = &list.spans()[i];
        Error::CorruptChunk {
            chunk: span.id,
            artifact: self.artifact.clone(),
            file: self.file.clone(),
            offset: span.offset,
            why,
        }
    }

    /// Read, decode and check chunk `i`. A chunk whose pack is gone (gc
    /// moved it) is looked up in the index again, once; failing that, the
    /// error names the chunk, file and offset.
    pub(super) fn read_chunk(&self, list: &ChunkList, i: usize) -> Result<Vec<u8>> {
        let span = &list.spans()[i];
        self.core.read_checked(
            &span.id,
            span.loc,
            |loc| self.read_payload(loc),
            |why| self.corrupt(list, i, why),
        )
    }

    /// Read chunk `i` into `dst` (exactly its length) and check it. A raw
    /// chunk is read and hashed in place; anything else, and any failure,
    /// takes [`FileReader::read_chunk`]'s path, whose error names the
    /// chunk, file and offset.
    fn read_chunk_into(&self, list: &ChunkList, i: usize, dst: &mut [u8]) -> Result<()> {
        let span = &list.spans()[i];
        let loc = &span.loc;
        if loc.codec == crate::pack::Codec::Raw
            && loc.stored_len == loc.raw_len
            && dst.len() == loc.raw_len as usize
            && self.read_pack(loc.pack, loc.offset, dst).is_ok()
            && crate::id::ChunkId::of(dst) == span.id
        {
            return Ok(());
        }
        let data = self.read_chunk(list, i)?;
        if data.len() != dst.len() {
            let why = format!(
                "decoded to {} bytes, the file needs {}",
                data.len(),
                dst.len()
            );
            return Err(self.corrupt(list, i, why));
        }
        dst.copy_from_slice(&data);
        Ok(())
    }

    /// [`FileReader::copy_to`] of chunks.
    fn copy_chunks_to(
        &self,
        list: &ChunkList,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<()> {
        let segments = list.segments(0..list.len(), SEGMENT_BYTES);
        let n = segments.len();
        // One reader per core: the disk is kept busy by the prefetch below,
        // not by readers waiting on it (twice the cores was no faster cold
        // and slower warm: BENCHMARKS.md).
        let w = self.workers.min(n).max(1);
        std::thread::scope(|s| -> Result<()> {
            // Each reader owns SEGMENT_BUFFERS buffers, passed to the
            // writer full and handed back empty: no allocation per chunk.
            let (rxs, backs): (Vec<_>, Vec<_>) = (0..w)
                .map(|k| {
                    let (tx, rx) = mpsc::sync_channel::<Result<Segment>>(SEGMENT_BUFFERS);
                    let (back, empty) = mpsc::sync_channel::<Segment>(SEGMENT_BUFFERS);
                    for _ in 0..SEGMENT_BUFFERS {
                        let _ = back.send(Segment::default());
                    }
                    let segments = &segments;
                    s.spawn(move || {
                        for range in segments.iter().skip(k).step_by(w) {
                            let Ok(mut seg) = empty.recv() else { return };
                            let res = self
                                .read_segment(list, range.clone(), &mut seg)
                                .map(|()| seg);
                            let failed = res.is_err();
                            if tx.send(res).is_err() || failed {
                                return;
                            }
                        }
                    });
                    (rx, back)
                })
                .unzip();
            // Keep the disk busy ahead of the readers: the kernel's own
            // read-ahead cannot follow several threads reading one pack.
            let mut runs = PrefetchRuns::new();
            for seg in segments.iter().take(PREFETCH_SEGMENTS) {
                self.prefetch(list, seg.clone(), &mut runs);
            }
            for (i, range) in segments.iter().enumerate() {
                if let Some(ahead) = segments.get(i + PREFETCH_SEGMENTS) {
                    self.prefetch(list, ahead.clone(), &mut runs);
                }
                let seg = rxs[i % w].recv().map_err(|_| {
                    Error::io(
                        self.core.packs.describe(list.spans()[range.start].loc.pack),
                        io::Error::other("reader thread exited"),
                    )
                })??;
                for part in seg.parts() {
                    let bytes = seg.bytes(part);
                    out.write_all(bytes).map_err(|e| Error::io("<output>", e))?;
                    progress.inc(bytes.len() as u64);
                }
                let _ = backs[i % w].send(seg);
            }
            Ok(())
        })
    }
}
