//! A file being written: the chunks it hands to the worker pool, the
//! pack lanes they are appended to, making them durable before a commit,
//! and retiring and reclaiming packs after a failed write.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::path::Path;
use std::sync::{mpsc, Arc, Weak};

use super::pool::{Encoded, Job, Outcome};
use super::{lock, Store, StoreCore, READ_BLOCK};
use crate::chunker::{ChunkBytes, Chunker};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, FileHash};
use crate::index::{FileMeta, NewFile};
use crate::lock::GcGuard;
use crate::name;
use crate::pack::{self, EncodedChunk, Location, PackName, PackSink, RecordKind};

/// Chunks a writer may have in the worker pool at once (~2 MiB at the
/// average chunk size): bounds a writer's memory whatever the file size.
const MAX_INFLIGHT_CHUNKS: usize = 32;

impl Store {
    /// Start writing one file. The returned writer pins the chunks it uses
    /// against gc until it is committed or dropped.
    pub fn file_writer(&self) -> Result<FileWriter> {
        Ok(FileWriter {
            chunker: Chunker::new(),
            size: 0,
            sink: ChunkSink {
                inflight: VecDeque::new(),
                chunks: Vec::new(),
                new_chunks: Pending {
                    core: Arc::downgrade(&self.core),
                    chunks: Vec::new(),
                    holds: Vec::new(),
                },
                seen: HashMap::new(),
                lane: self
                    .core
                    .next_lane
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            },
            _gc: GcGuard::writer(&self.core.root)?,
        })
    }

    /// A write through this store was lost to a full disk (or quota): the
    /// packs its lanes append to are retired, so that what the lost writes
    /// appended can be cut away, and everything retired is reclaimed that
    /// no live writer holds. Later writers start new packs.
    pub fn abandon_writes(&self) {
        for w in &self.core.writers {
            if let Some(p) = lock(w).take() {
                lock(&self.core.retired).push(p.name());
            }
        }
        self.reclaim_retired();
    }

    /// Reclaim retired packs no live writer holds: a pack no index row
    /// points into is deleted, one with indexed records cut back to the end
    /// of its last one. Best effort: what fails stays for gc.
    pub fn reclaim_retired(&self) {
        self.core.reclaim_retired();
    }
}

impl StoreCore {
    /// Reclaim retired packs no live writer holds: a pack no index row
    /// points into is deleted; one with indexed records is cut back to the
    /// end of its last one (the bytes after it belong to no file, and
    /// nobody appends to a retired pack). Best effort: what fails stays
    /// for gc, which reclaims unindexed pack data too.
    pub(super) fn reclaim_retired(&self) {
        let retired: Vec<PackName> = lock(&self.retired).clone();
        for p in retired {
            // Holding `pending`: no writer can take a new hold on `p`'s
            // unindexed records meanwhile (holds come from that map).
            let pending = lock(&self.pending);
            if pending.holds.get(&p).is_some_and(|n| *n > 0) {
                continue;
            }
            let done = match self.index().pack_end(p) {
                Ok(None) => self.packs.delete(p).is_ok(),
                Ok(Some(end)) => self.packs.truncate(p, end).is_ok(),
                Err(_) => false,
            };
            drop(pending);
            if done {
                lock(&self.retired).retain(|x| *x != p);
                lock(&self.created_packs).remove(&p);
            }
        }
    }

    /// Let go of the packs the lanes append to that no writer holds (every
    /// chunk in them committed or abandoned), once the process has stored
    /// nothing for a while (`pool::IDLE_RETIRE`): a pack a lane keeps open is one no gc
    /// may rewrite or unlink (its flock says a writer may still append), so
    /// a mount idle between deploys would otherwise keep up to a lane's
    /// worth of dead bytes per lane on disk, over any `--max-size`.
    /// Retired like a lane after a failed write: its unindexed tail is cut
    /// away, an unindexed pack deleted. The next write starts a new pack.
    /// The pack of the process's manifest records is let go of too.
    pub(super) fn retire_idle_lanes(&self) {
        for w in &self.writers {
            let mut w = lock(w);
            let Some(name) = w.as_ref().map(|p| p.name()) else {
                continue;
            };
            // A worker appends and takes its hold under the lane's lock
            // (`store_chunk`), so no hold can be on its way here.
            if lock(&self.pending).holds.contains_key(&name) {
                continue;
            }
            drop(w.take());
            lock(&self.retired).push(name);
        }
        self.reclaim_retired();
        // The manifest log's pack too: its records are all committed (or
        // void) between transactions.
        self.index().journal_let_go();
    }

    pub(super) fn append(
        &self,
        writer: &mut Option<Box<dyn PackSink>>,
        e: &EncodedChunk,
        raw: &[u8],
    ) -> Result<Location> {
        if writer
            .as_ref()
            .is_some_and(|p| p.len() >= pack::PACK_TARGET_SIZE)
        {
            // Seal: the full pack is fsynced on a thread of its own so that
            // writeback overlaps the next pack's hashing and compression;
            // commits wait for it in `sync_for`.
            if let Some(full) = writer.take() {
                let name = full.name();
                let handle = std::thread::spawn(move || full.seal());
                lock(&self.sealing).push((name, handle));
            }
        }
        if writer.is_none() {
            let p = self.packs.create()?;
            lock(&self.created_packs).insert(p.name(), false);
            *writer = Some(p);
        }
        writer
            .as_mut()
            .expect("pack writer just created")
            .append(&e.head(RecordKind::Chunk), e.payload(raw))
    }

    /// Make the chunks a writer stored durable before the index points at them.
    fn sync_for(&self, new_chunks: &[(ChunkId, Location)]) -> Result<()> {
        let sealing: Vec<_> = lock(&self.sealing).drain(..).collect();
        let mut first_err = None;
        for (name, h) in sealing {
            let res = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    self.packs.describe(name),
                    io::Error::other("pack sync thread panicked"),
                ))
            });
            if let Err(e) = res {
                lock(&self.failed_packs).insert(name);
                first_err.get_or_insert(e);
            }
        }
        if new_chunks
            .iter()
            .any(|(_, l)| lock(&self.failed_packs).contains(&l.pack))
        {
            return Err(first_err.unwrap_or_else(|| {
                Error::io(
                    self.root.join("packs"),
                    io::Error::other("a pack holding this file's chunks could not be synced"),
                )
            }));
        }
        for w in &self.writers {
            if let Some(p) = lock(w).as_mut() {
                if new_chunks.iter().any(|(_, loc)| loc.pack == p.name()) {
                    p.sync()?;
                }
            }
        }
        Ok(())
    }
}

/// Streams one file's bytes into the store. Nothing is visible until the
/// [`StagedFile`] from [`FileWriter::finish`] is committed.
pub struct FileWriter {
    pub(super) chunker: Chunker,
    size: u64,
    sink: ChunkSink,
    _gc: GcGuard,
}

impl FileWriter {
    /// Append bytes to the file.
    pub fn write(&mut self, store: &Store, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        let FileWriter { chunker, sink, .. } = self;
        chunker.push(data, |c| sink.submit(store, c))
    }

    /// Read the next block of `r` in behind the chunk in progress and chunk
    /// it; returns how many bytes were read (0 at the end). Each byte is
    /// copied once, by the read, except the few carried between blocks.
    pub fn write_from(
        &mut self,
        store: &Store,
        r: &mut impl Read,
        path: &Path,
        observe: &mut dyn FnMut(&[u8]),
    ) -> Result<usize> {
        let mut buf = self.chunker.take_carry();
        buf.reserve(READ_BLOCK);
        let start = buf.len();
        let n = read_block(r, &mut buf).at(path)?;
        observe(&buf[start..]);
        self.size += n as u64;
        let FileWriter { chunker, sink, .. } = self;
        chunker.push_block(buf, |c| sink.submit(store, c))?;
        Ok(n)
    }

    /// Append `piece` as one whole chunk, cut where the caller says, not
    /// by the chunker (a promotion stores a gzip-form file's pieces, cut
    /// where its gzip chunks were). Not to be mixed with [`FileWriter::write`].
    pub fn write_chunk(&mut self, store: &Store, piece: Vec<u8>) -> Result<()> {
        self.size += piece.len() as u64;
        self.sink.submit(store, ChunkBytes::Owned(piece))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Flush the last chunks and make them durable. `meta.size` is filled in.
    pub fn finish(mut self, store: &Store, mut meta: FileMeta) -> Result<StagedFile> {
        name::check_file(&meta.name)?;
        let FileWriter { chunker, sink, .. } = &mut self;
        chunker.finish(|c| sink.submit(store, c))?;
        while !sink.inflight.is_empty() {
            sink.complete_one(store)?;
        }
        store.core.sync_for(&sink.new_chunks)?;
        meta.size = self.size;
        Ok(StagedFile {
            meta,
            hash: FileHash::of_chunks(&self.sink.chunks),
            chunks: std::mem::take(&mut self.sink.chunks),
            new_chunks: std::mem::take(&mut self.sink.new_chunks),
            _gc: self._gc,
        })
    }
}

/// Chunks handed to the worker pool, and their results taken back in order.
struct ChunkSink {
    inflight: VecDeque<mpsc::Receiver<Encoded>>,
    chunks: Vec<(ChunkId, u32)>,
    new_chunks: Pending,
    /// Chunks already in this file; Some(location) when this writer must
    /// provide the index row.
    seen: HashMap<ChunkId, Option<Location>>,
    /// The pack lane new chunks go to.
    lane: usize,
}

impl Drop for ChunkSink {
    /// A writer dropped before its end (a failed or abandoned write) waits
    /// for its chunks still with the workers: otherwise they would go on
    /// appending to its lane after the store retired and reclaimed that
    /// lane's pack, into a new pack nobody reclaims while the process
    /// lives (seen as a full-disk write leaving pack data behind, under load).
    fn drop(&mut self) {
        for rx in self.inflight.drain(..) {
            let _ = rx.recv();
        }
    }
}

impl ChunkSink {
    fn submit(&mut self, store: &Store, data: ChunkBytes) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        store.pool.submit(Job {
            lane: self.lane,
            data,
            reply: tx,
        });
        self.inflight.push_back(rx);
        while self.inflight.len() > MAX_INFLIGHT_CHUNKS {
            self.complete_one(store)?;
        }
        Ok(())
    }

    /// Take the oldest chunk back from the pool and store it if it is new.
    fn complete_one(&mut self, store: &Store) -> Result<()> {
        let Some(rx) = self.inflight.pop_front() else {
            return Ok(());
        };
        let done = rx.recv().map_err(|_| {
            Error::io(
                store.core.root.join("packs"),
                io::Error::other("chunk worker exited"),
            )
        })?;
        let (id, len) = (done.id, done.raw_len);
        self.chunks.push((id, len));
        if self.seen.contains_key(&id) {
            return Ok(());
        }
        let loc = match done.outcome? {
            Outcome::Indexed => None,
            Outcome::Stored(loc, hold) => {
                self.new_chunks.holds.push(hold);
                Some(loc)
            }
        };
        self.seen.insert(id, loc);
        if let Some(loc) = loc {
            self.new_chunks.push((id, loc));
        }
        Ok(())
    }
}

/// [`StoreCore::pending`]: chunks stored by writers in flight, and per pack
/// how many [`PackHold`]s live writers have on it.
#[derive(Default)]
pub(super) struct PendingChunks {
    pub(super) chunks: HashMap<ChunkId, Location>,
    pub(super) holds: HashMap<PackName, usize>,
}

impl PendingChunks {
    pub(super) fn hold(&mut self, core: &StoreCore, pack: PackName) -> PackHold {
        *self.holds.entry(pack).or_default() += 1;
        PackHold {
            core: core.me.clone(),
            pack,
        }
    }
}

/// A live writer's claim on a pack holding chunks it may still commit:
/// while any is held, [`Store::reclaim_retired`] leaves the pack alone.
pub(crate) struct PackHold {
    core: Weak<StoreCore>,
    pack: PackName,
}

impl Drop for PackHold {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let mut pending = lock(&core.pending);
            if let Some(n) = pending.holds.get_mut(&self.pack) {
                *n -= 1;
                if *n == 0 {
                    pending.holds.remove(&self.pack);
                }
            }
        }
    }
}

/// A file whose chunks are durable, waiting for its index commit.
pub struct StagedFile {
    pub meta: FileMeta,
    pub hash: FileHash,
    pub(super) chunks: Vec<(ChunkId, u32)>,
    pub(super) new_chunks: Pending,
    pub(super) _gc: GcGuard,
}

/// Chunks a writer stored that the index does not point at yet, with the
/// process-wide `pending` entries that let other writers share them. When
/// a writer or staged file is dropped uncommitted (an error, a discarded
/// mount write), its entries leave `pending`, so the map only ever holds
/// chunks of writes in flight.
#[derive(Default)]
pub(crate) struct Pending {
    core: Weak<StoreCore>,
    chunks: Vec<(ChunkId, Location)>,
    /// Dropped after `drop` has run, so after the entries left the map.
    holds: Vec<PackHold>,
}

impl std::ops::Deref for Pending {
    type Target = Vec<(ChunkId, Location)>;
    fn deref(&self) -> &Self::Target {
        &self.chunks
    }
}

impl std::ops::DerefMut for Pending {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.chunks
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let mut pending = lock(&core.pending);
            for (id, loc) in &self.chunks {
                if pending.chunks.get(id) == Some(loc) {
                    pending.chunks.remove(id);
                }
            }
        }
    }
}

impl StagedFile {
    pub(super) fn row(&self) -> NewFile {
        NewFile {
            meta: self.meta.clone(),
            hash: self.hash,
            chunks: self.chunks.clone(),
            new_chunks: self.new_chunks.chunks.clone(),
        }
    }
}

fn read_block(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        match r.take(READ_BLOCK as u64).read_to_end(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}
