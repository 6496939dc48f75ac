//! Reading committed files: the chunk list loaded and checked once, each
//! chunk checked as it is read, runs of chunks read and prefetched as one,
//! `copy_to` and `export`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::UNIX_EPOCH;

use super::{lock, Store, READ_BLOCK};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, FileHash};
use crate::index::{ChunkSpan, FileRow};
use crate::pack::{self, Location, PackName};
use crate::progress::Progress;

/// Chunk lists kept by `StoreCore::recent_files` (a 2 GB file's is ~2.5 MiB).
const RECENT_FILES: usize = 16;

/// Sequential reads fetch runs of chunks that lie close together in a pack
/// with one read of at most this many bytes. Small enough that a reader's
/// buffers stay in its core's L2 cache between the read and the BLAKE3
/// check: warm `cat` of 557 MB took 158 ms with 2 MiB runs, 134 ms with
/// 256 KiB.
pub const SEGMENT_BYTES: u64 = 256 * 1024;
/// Sequential reads ask the kernel for this many bytes ahead: a
/// deduplicated file is spread over several packs, so the disk needs many
/// requests in flight to keep up with a plain contiguous file.
const PREFETCH_BYTES: u64 = 128 * 1024 * 1024;
/// [`PREFETCH_BYTES`] in segments.
const PREFETCH_SEGMENTS: usize = (PREFETCH_BYTES / SEGMENT_BYTES) as usize;
/// Per pack, the byte run a reader last prefetched (see [`Store::prefetch`]).
pub type PrefetchRuns = HashMap<PackName, (u64, u64)>;
/// Segment buffers each reader thread of [`Store::copy_to`] cycles through.
const SEGMENT_BUFFERS: usize = 3;

impl Store {
    /// Look up a file for reading. The chunk list is loaded once and shared.
    pub fn open_file(&self, artifact: &str, file: &str) -> Result<FileReader> {
        let row = self.index().file(&self.ns, artifact, file)?;
        self.reader_for(artifact, row)
    }

    /// A reader for a file row: loads its chunk list and checks it against
    /// the file digest, which commits to every chunk id; each chunk is then
    /// checked against its id when read. Together: every byte served is the
    /// byte stored.
    pub(super) fn reader_for(&self, artifact: &str, row: FileRow) -> Result<FileReader> {
        let spans = match self.recent_spans(&row) {
            Some(spans) => spans,
            None => {
                let spans: Arc<[ChunkSpan]> = self.index().file_chunks(row.id)?.into();
                // The digest commits to every chunk id and length, so the
                // size must be their sum: a row whose size disagrees would
                // otherwise serve a silently shortened (or padded) file.
                let sum: u64 = spans.iter().map(|s| u64::from(s.loc.raw_len)).sum();
                if sum != row.meta.size
                    || FileHash::of_chunks(spans.iter().map(|s| (s.id, s.loc.raw_len))) != row.hash
                {
                    return Err(Error::Index {
                        path: self.root.join("index.sqlite"),
                        message: format!(
                            "artifact {artifact:?} file {:?}: chunk list does not match the file digest and size ({} bytes); run `deploycache verify`",
                            row.meta.name,
                            row.meta.size
                        ),
                    });
                }
                let mut recent = lock(&self.recent_files);
                recent.push_front((row.id, row.hash, spans.clone()));
                recent.truncate(RECENT_FILES);
                spans
            }
        };
        Ok(FileReader {
            artifact: artifact.to_owned(),
            file: row.meta.name.clone(),
            row,
            spans,
        })
    }

    /// A checked chunk list of this file row from `recent_files`, moved to
    /// the front.
    fn recent_spans(&self, row: &FileRow) -> Option<Arc<[ChunkSpan]>> {
        let mut recent = lock(&self.recent_files);
        let at = recent
            .iter()
            .position(|(id, hash, _)| (*id, *hash) == (row.id, row.hash))?;
        let entry = recent.remove(at)?;
        let spans = entry.2.clone();
        recent.push_front(entry);
        Some(spans)
    }

    /// Packs this process holds open for reading (bounded).
    pub fn open_pack_count(&self) -> usize {
        self.packs.open_count()
    }

    /// Read, decode and check one chunk of a file. A chunk whose pack is
    /// gone (gc moved it) is looked up in the index again, once; failing
    /// that, the error names the chunk, file and offset.
    pub fn read_chunk(&self, r: &FileReader, i: usize) -> Result<Vec<u8>> {
        let span = &r.spans[i];
        self.read_checked(&span.id, span.loc, |why| r.corrupt(i, why))
    }

    /// Read chunk `i` of a file into `dst` (exactly its length) and check
    /// it. A raw chunk is read and hashed in place; anything else, and any
    /// failure, takes [`Store::read_chunk`]'s path, whose error names the
    /// chunk, file and offset.
    pub fn read_chunk_into(&self, r: &FileReader, i: usize, dst: &mut [u8]) -> Result<()> {
        let span = &r.spans[i];
        let loc = &span.loc;
        if loc.codec == pack::Codec::Raw
            && loc.stored_len == loc.raw_len
            && dst.len() == loc.raw_len as usize
            && self.packs.read_at(loc.pack, loc.offset, dst).is_ok()
            && ChunkId::of(dst) == span.id
        {
            return Ok(());
        }
        let data = self.read_chunk(r, i)?;
        if data.len() != dst.len() {
            let why = format!(
                "decoded to {} bytes, the file needs {}",
                data.len(),
                dst.len()
            );
            return Err(r.corrupt(i, why));
        }
        dst.copy_from_slice(&data);
        Ok(())
    }

    /// Read, decode and check chunks `range` of a file (a segment from
    /// [`FileReader::segments`], whose pack range [`Store::prefetch`] asked
    /// the kernel to read ahead as one sequential run) into `seg`, reusing
    /// its buffers: one read for the whole run, raw chunks checked and
    /// served in place, compressed ones decoded beside them. On any failure
    /// the chunks are read again one by one, so that an error names the
    /// exact chunk, file and offset.
    fn read_segment(
        &self,
        r: &FileReader,
        range: std::ops::Range<usize>,
        seg: &mut Segment,
    ) -> Result<()> {
        seg.clear();
        if self.try_read_segment(r, range.clone(), seg).is_some() {
            return Ok(());
        }
        seg.clear();
        for i in range {
            let data = self.read_chunk(r, i)?;
            seg.push_decoded(&data);
        }
        Ok(())
    }

    /// [`Store::read_segment`]'s fast path; `None` on any failure.
    fn try_read_segment(
        &self,
        r: &FileReader,
        range: std::ops::Range<usize>,
        seg: &mut Segment,
    ) -> Option<()> {
        let spans = &r.spans[range];
        let Some(first) = spans.first() else {
            return Some(());
        };
        if spans.iter().any(|s| s.loc.pack != first.loc.pack) {
            return None;
        }
        let (lo, hi) = pack_range(spans);
        let n = (hi - lo) as usize;
        if seg.packed.len() < n {
            seg.packed.resize(n, 0);
        }
        self.packs
            .read_at(first.loc.pack, lo, &mut seg.packed[..n])
            .ok()?;
        // A run of one repeated chunk (zeros) is checked once.
        let mut last: Option<(u64, Part)> = None;
        for s in spans {
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
                pack::Codec::Raw if payload.len() == raw_len => Part::Packed(at..at + raw_len),
                pack::Codec::Raw => return None,
                pack::Codec::Zstd => {
                    let start = seg.decoded_len;
                    if seg.decoded.len() < start + raw_len {
                        seg.decoded.resize(start + raw_len, 0);
                    }
                    let dst = &mut seg.decoded[start..start + raw_len];
                    seg.decoder.decode_into(s.loc.codec, payload, dst).ok()?;
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

    /// Ask the kernel to start reading chunks `range` of a file into the
    /// page cache (POSIX_FADV_WILLNEED), without waiting. Best effort.
    /// `runs` remembers, per pack, the run this reader last prefetched: a
    /// range that overlaps it or starts at its end asks only for the bytes
    /// past it, so the kernel sees one growing sequential run per pack
    /// instead of overlapping requests. Gaps are not bridged: on the
    /// benchmark corpus, bridging gaps of up to 1 MiB read 38% more bytes (a
    /// gap often holds other files' chunks) and was slower.
    pub fn prefetch(&self, r: &FileReader, range: std::ops::Range<usize>, runs: &mut PrefetchRuns) {
        let spans = &r.spans[range];
        let Some(first) = spans.first() else { return };
        if spans.iter().any(|s| s.loc.pack != first.loc.pack) {
            return;
        }
        let (mut lo, hi) = pack_range(spans);
        let run = runs.entry(first.loc.pack).or_insert((lo, lo));
        if lo >= run.0 && hi <= run.1 {
            return;
        }
        if lo >= run.0 && lo <= run.1 {
            (lo, run.1) = (run.1, hi);
        } else {
            *run = (lo, hi);
        }
        self.packs.prefetch(first.loc.pack, lo, hi - lo);
    }

    /// Read up to `buf.len()` bytes at `offset`; returns how many (0 at EOF).
    pub fn read_at(&self, r: &FileReader, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let Some(i) = r.chunk_at(pos) else { break };
            let data = self.read_chunk(r, i)?;
            let start = (pos - r.spans[i].offset) as usize;
            let n = (data.len() - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&data[start..start + n]);
            done += n;
        }
        Ok(done)
    }

    /// Stream a whole file to `out`. Chunks are read, decoded and checked
    /// ahead on worker threads (worker k takes chunks k, k+W, k+2W, …; the
    /// caller takes them back in order), so disk reads, decompression and
    /// hashing overlap.
    pub fn copy_to(&self, r: &FileReader, out: &mut dyn Write, progress: &Progress) -> Result<()> {
        let segments = r.segments();
        let n = segments.len();
        // One reader per core: the disk is kept busy by the prefetch below,
        // not by readers waiting on it (twice the cores measured the same
        // cold and 10% slower warm).
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
                            let res = self.read_segment(r, range.clone(), &mut seg).map(|()| seg);
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
                self.prefetch(r, seg.clone(), &mut runs);
            }
            for (i, range) in segments.iter().enumerate() {
                if let Some(ahead) = segments.get(i + PREFETCH_SEGMENTS) {
                    self.prefetch(r, ahead.clone(), &mut runs);
                }
                let seg = rxs[i % w].recv().map_err(|_| {
                    Error::io(
                        self.packs.describe(r.spans[range.start].loc.pack),
                        io::Error::other("reader thread exited"),
                    )
                })??;
                for part in &seg.parts {
                    let bytes = seg.bytes(part);
                    out.write_all(bytes).map_err(|e| Error::io("<output>", e))?;
                    progress.inc(bytes.len() as u64);
                }
                let _ = backs[i % w].send(seg);
            }
            Ok(())
        })
    }

    /// Write the artifact's files into `dest` byte-identical, with mode and
    /// mtime. All or nothing: every file is first written whole and checked
    /// under a temporary name in `dest`, and only then are they renamed
    /// into place; a failure (a damaged chunk, a full disk) removes the
    /// temporary files, and `dest` itself when this call created it, so a
    /// failed export leaves `dest` as it found it. (Not a temporary sibling
    /// directory renamed onto `dest`: `dest` may exist and hold other
    /// files, which a directory rename cannot merge with.)
    pub fn export(&self, artifact: &str, dest: &Path, show_progress: bool) -> Result<Vec<FileRow>> {
        let files = self.index().list_files(&self.ns, artifact)?;
        let created = !dest.exists();
        fs::create_dir_all(dest).at(dest)?;
        let total = files.iter().map(|f| f.meta.size).sum();
        let progress = if show_progress {
            Progress::bytes(total, format!("export {artifact}"))
        } else {
            Progress::hidden()
        };
        let mut written: Vec<PathBuf> = Vec::new();
        let res = (|| -> Result<()> {
            for f in &files {
                let r = self.open_file(artifact, &f.meta.name)?;
                let tmp = dest.join(format!(".{}.deploycache-tmp", f.meta.name));
                written.push(tmp.clone());
                let mut out =
                    io::BufWriter::with_capacity(READ_BLOCK, File::create(&tmp).at(&tmp)?);
                self.copy_to(&r, &mut out, &progress)?;
                let out = out
                    .into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?;
                out.set_permissions(fs::Permissions::from_mode(f.meta.mode))
                    .at(&tmp)?;
                let mtime =
                    UNIX_EPOCH + std::time::Duration::from_nanos(f.meta.mtime_ns.max(0) as u64);
                out.set_modified(mtime).at(&tmp)?;
                out.sync_all().at(&tmp)?;
            }
            for f in &files {
                let target = dest.join(&f.meta.name);
                // A directory where a file goes fails here, before any
                // file of this export has replaced anything.
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(Error::io(
                        &target,
                        io::Error::from_raw_os_error(libc::EISDIR),
                    ));
                }
            }
            for (f, tmp) in files.iter().zip(&written) {
                let target = dest.join(&f.meta.name);
                fs::rename(tmp, &target).at(&target)?;
            }
            written.clear();
            pack::sync_dir(dest)
        })();
        if res.is_err() {
            for tmp in &written {
                let _ = fs::remove_file(tmp);
            }
            if created {
                let _ = fs::remove_dir(dest);
            }
        }
        res?;
        progress.finish();
        self.index().touch(&self.ns, artifact)?;
        Ok(files)
    }

    /// Record that an artifact was read.
    pub fn touch(&self, artifact: &str) -> Result<()> {
        self.index().touch(&self.ns, artifact)
    }
}

/// A committed file opened for reading: its chunk list never changes.
#[derive(Clone)]
pub struct FileReader {
    pub artifact: String,
    pub file: String,
    pub row: FileRow,
    pub(super) spans: Arc<[ChunkSpan]>,
}

impl FileReader {
    /// The error for chunk `i` of this file failing its check.
    fn corrupt(&self, i: usize, why: String) -> Error {
        Error::CorruptChunk {
            chunk: self.spans[i].id,
            artifact: self.artifact.clone(),
            file: self.file.clone(),
            offset: self.spans[i].offset,
            why,
        }
    }

    pub fn size(&self) -> u64 {
        self.row.meta.size
    }

    pub fn chunk_count(&self) -> usize {
        self.spans.len()
    }

    /// The file's chunks cut into runs that one read can fetch: consecutive
    /// chunks in one pack whose records fill (nearly: at least 3/4) the
    /// byte range they span, at most [`SEGMENT_BYTES`] long in the pack and
    /// decoded. A file's new
    /// chunks are appended close together, though the chunk workers may
    /// swap neighbours.
    pub fn segments(&self) -> Vec<std::ops::Range<usize>> {
        self.segments_of(0..self.spans.len())
    }

    /// [`FileReader::segments`] of chunks `range` only.
    pub fn segments_of(&self, range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = range.start;
        let (mut lo, mut hi, mut used, mut raw) = (0u64, 0u64, 0u64, 0u64);
        for i in range.clone() {
            let loc = &self.spans[i].loc;
            let (a, b) = record_range(loc);
            if i > start {
                let (nlo, nhi) = (lo.min(a), hi.max(b));
                let nused = used + (b - a);
                let nraw = raw + loc.raw_len as u64;
                let dense = nused * 4 >= (nhi - nlo) * 3;
                // Bounded in decoded bytes too: a run of one repeated chunk
                // (zeros) spans a few bytes of pack but any number of bytes
                // of file.
                if loc.pack != self.spans[start].loc.pack
                    || !dense
                    || nhi - nlo > SEGMENT_BYTES
                    || nraw > SEGMENT_BYTES
                {
                    out.push(start..i);
                    start = i;
                } else {
                    (lo, hi, used, raw) = (nlo, nhi, nused, nraw);
                    continue;
                }
            }
            (lo, hi, used, raw) = (a, b, b - a, loc.raw_len as u64);
        }
        if start < range.end {
            out.push(start..range.end);
        }
        out
    }

    /// Index of the chunk holding byte `pos`, if `pos` is inside the file.
    pub fn chunk_at(&self, pos: u64) -> Option<usize> {
        if pos >= self.size() {
            return None;
        }
        Some(self.spans.partition_point(|s| s.offset <= pos) - 1)
    }
}

/// Where a chunk's checked bytes are in a [`Segment`].
#[derive(Clone)]
enum Part {
    Packed(std::ops::Range<usize>),
    Decoded(std::ops::Range<usize>),
}

/// A run of a file's chunks read with one read and checked, with buffers
/// that keep their size from one run to the next.
#[derive(Default)]
struct Segment {
    /// The pack bytes of the run: raw chunks are served from here.
    packed: Vec<u8>,
    /// Decoded compressed chunks, `decoded_len` bytes of it in use.
    decoded: Vec<u8>,
    decoded_len: usize,
    /// The chunks in file order.
    parts: Vec<Part>,
    decoder: pack::Decoder,
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

    fn bytes(&self, part: &Part) -> &[u8] {
        match part {
            Part::Packed(r) => &self.packed[r.clone()],
            Part::Decoded(r) => &self.decoded[r.clone()],
        }
    }
}

/// The pack bytes that chunks (all in one pack) span, record headers included.
fn pack_range(spans: &[ChunkSpan]) -> (u64, u64) {
    spans
        .iter()
        .map(|s| record_range(&s.loc))
        .fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)))
}

/// The bytes a chunk's record occupies in its pack (header included).
fn record_range(loc: &Location) -> (u64, u64) {
    (
        loc.offset - pack::RECORD_HEADER_LEN as u64,
        loc.offset + loc.stored_len as u64,
    )
}
