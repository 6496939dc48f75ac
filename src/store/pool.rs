//! The chunk workers: threads that hash, dedupe, compress and append the
//! chunks of every writer of the process.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::write::PackHold;
use super::{lock, StoreCore, PACK_LANES};
use crate::chunker::ChunkBytes;
use crate::error::Result;
use crate::id::ChunkId;
use crate::index::{self, Index};
use crate::pack::{self, Location};

impl StoreCore {
    /// Dedupe one chunk against this process's packs and the index, and
    /// store it if nobody has it. Runs on the worker threads.
    fn store_chunk(
        &self,
        lane: usize,
        id: ChunkId,
        data: &[u8],
        compressor: Option<&mut pack::ChunkCompressor>,
        reader: &mut WorkerIndex,
    ) -> Result<Outcome> {
        if let Some(stored) = self.hold_pending(&id) {
            return Ok(stored);
        }
        if reader.knows(&self.root.join("index.sqlite"), &id)? {
            return Ok(Outcome::Indexed);
        }
        let enc = pack::encode_with_id(id, data, compressor);
        // Appended by the worker, so the write overlaps the writer thread's
        // chunking. Workers finish nearly in file order, so a file's new
        // chunks land close together; reads fetch them as one run
        // (FileReader::segments).
        let mut writer = lock(&self.writers[lane % PACK_LANES]);
        // Another worker may have stored the same chunk meanwhile.
        if let Some(stored) = self.hold_pending(&id) {
            return Ok(stored);
        }
        let loc = match self.append(&mut writer, &enc, data) {
            Ok(loc) => loc,
            Err(e) => {
                // The pack's tail may be torn: nobody appends to it again.
                if let Some(p) = writer.take() {
                    lock(&self.retired).push(p.name());
                }
                return Err(e);
            }
        };
        // A worker on another lane may have stored it in the meantime: the
        // first copy wins, and this record stays unreferenced (gc's to take).
        // The hold is taken before the lane is let go of, so that
        // `retire_idle_lanes` never retires a pack with a chunk on its way
        // to a commit.
        let mut pending = lock(&self.pending);
        let loc = *pending.chunks.entry(id).or_insert(loc);
        let hold = pending.hold(self, loc.pack);
        drop(pending);
        drop(writer);
        Ok(Outcome::Stored(loc, hold))
    }

    /// A chunk another writer of this process stored, held for this one.
    fn hold_pending(&self, id: &ChunkId) -> Option<Outcome> {
        let mut pending = lock(&self.pending);
        let loc = *pending.chunks.get(id)?;
        Some(Outcome::Stored(loc, pending.hold(self, loc.pack)))
    }
}

/// What a worker found out about a chunk.
pub(super) enum Outcome {
    /// The index already has it.
    Indexed,
    /// It is in a pack of this process (stored now, or earlier by another
    /// writer); its index row may not be committed yet, so the writer
    /// holds the pack against reclaiming.
    Stored(Location, PackHold),
}

pub(super) struct Encoded {
    pub(super) id: ChunkId,
    pub(super) raw_len: u32,
    pub(super) outcome: Result<Outcome>,
}

pub(super) struct Job {
    pub(super) lane: usize,
    pub(super) data: ChunkBytes,
    pub(super) reply: mpsc::SyncSender<Encoded>,
}

/// A chunk worker's own index connection, looking chunks up in read
/// transactions of up to [`LOOKUPS_PER_SNAPSHOT`] lookups and
/// [`SNAPSHOT_MAX_AGE`]. A snapshot older than this process's last commit
/// is dropped before the next lookup: it would miss the chunks that
/// commit indexed, and the worker would store them again (dead space in a
/// pack). The age bound is for commits of other processes (gc), which
/// this process does not count: a snapshot held while a slow transfer
/// trickles in keeps the index's WAL from being checkpointed and reset,
/// and a gc writing meanwhile grew it by hundreds of MB.
#[derive(Default)]
struct WorkerIndex {
    index: Option<Index>,
    lookups: usize,
    /// [`index::commits`] when the snapshot began.
    commits: u64,
    began: Option<Instant>,
}

const LOOKUPS_PER_SNAPSHOT: usize = 1024;
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(200);

impl WorkerIndex {
    fn knows(&mut self, path: &Path, id: &ChunkId) -> Result<bool> {
        if self.index.is_none() {
            self.index = Some(Index::open_reader(path)?);
        }
        if self.lookups > 0
            && (index::commits() != self.commits
                || self.began.is_some_and(|t| t.elapsed() > SNAPSHOT_MAX_AGE))
        {
            self.end();
        }
        let index = self.index.as_ref().expect("opened above");
        if self.lookups == 0 {
            self.commits = index::commits();
            self.began = Some(Instant::now());
            index.begin_read()?;
        }
        self.lookups += 1;
        let known = index.chunk_location(id);
        if self.lookups >= LOOKUPS_PER_SNAPSHOT || known.is_err() {
            self.end();
        }
        Ok(known?.is_some())
    }

    /// End the read transaction, so the snapshot does not pin the WAL.
    fn end(&mut self) {
        if let (Some(index), true) = (&self.index, self.lookups > 0) {
            let _ = index.end_read();
        }
        self.lookups = 0;
    }
}

/// How long the chunk workers wait with nothing to store before the lanes'
/// packs are let go of ([`StoreCore::retire_idle_lanes`]): long enough
/// that a transfer's files keep filling the same packs, short next to
/// gc's interval. `DEPLOYCACHE_IDLE_RETIRE_MS` overrides it (tests).
const IDLE_RETIRE: Duration = Duration::from_secs(30);

fn idle_retire() -> Duration {
    std::env::var("DEPLOYCACHE_IDLE_RETIRE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(IDLE_RETIRE, Duration::from_millis)
}

/// Threads that hash, look up and compress chunks for every writer of the
/// process. Results go back on each job's own channel, so writers keep order.
pub(super) struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Pool {
    pub(super) fn start(
        workers: usize,
        store: Weak<StoreCore>,
        compression: pack::Compression,
    ) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let idle_retire = idle_retire();
        for _ in 0..workers {
            let (rx, store) = (rx.clone(), store.clone());
            std::thread::spawn(move || {
                let mut compressor = pack::new_compressor(compression);
                let mut reader = WorkerIndex::default();
                loop {
                    let job = {
                        // Another worker waits on the queue: this one will
                        // wait behind it, so it lets go of its read snapshot
                        // first (a snapshot held while idle pins the WAL
                        // and would miss the next commit's chunks).
                        let rx = match rx.try_lock() {
                            Ok(g) => g,
                            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                            Err(std::sync::TryLockError::WouldBlock) => {
                                reader.end();
                                lock(&rx)
                            }
                        };
                        match rx.try_recv() {
                            Ok(j) => Ok(j),
                            Err(_) => {
                                // Idle: let go of the read snapshot first.
                                reader.end();
                                rx.recv_timeout(idle_retire)
                            }
                        }
                    };
                    let job = match job {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            match store.upgrade() {
                                Some(core) => core.retire_idle_lanes(),
                                None => return,
                            }
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return, // the store was dropped
                    };
                    let Some(core) = store.upgrade() else { return };
                    let id = ChunkId::of(&job.data);
                    let outcome =
                        core.store_chunk(job.lane, id, &job.data, compressor.as_mut(), &mut reader);
                    let _ = job.reply.send(Encoded {
                        id,
                        raw_len: job.data.len() as u32,
                        outcome,
                    });
                }
            });
        }
        Pool {
            jobs: Mutex::new(tx),
        }
    }

    pub(super) fn submit(&self, job: Job) {
        // Workers only exit once this sender is dropped, so sending succeeds;
        // if it ever did not, the writer sees "chunk worker exited".
        let _ = lock(&self.jobs).send(job);
    }
}
