//! The store: opens a store directory, writes files into packs and the
//! index, reads them back with every chunk checked.
//!
//! Directory (store-layout.md has the full contract):
//! ```text
//! STORE/FORMAT          "deploycache-store 4"
//! STORE/index.sqlite    the index (WAL)
//! STORE/packs/ab/….pack chunk records
//! STORE/lock, owner     one host at a time (lock.rs)
//! STORE/gc.lock         writers vs gc (lock.rs)
//! ```
//! Write path: bytes → [`FileWriter`] → chunker → BLAKE3 + zstd (parallel)
//! → pack append → fsync → one index transaction ([`Store::commit_artifact`]
//! or [`Store::commit_file`]). Read path: [`Store::open_file`] loads the
//! file's recipe once (an `Arc`, shared by all readers) into a
//! [`FileReader`], whose `read_at` and `copy_to` read, decode and check the
//! chunks they need. No lock is held across pack I/O on the read path.
//!
//! [`Store`] is the one front door: the view and the commands call its
//! methods (namespaced by the store's namespace); only the store asks the
//! index, through its `core`.
//!
//! Where things are:
//! - `open`: opening and creating a store, its FORMAT, the full-disk
//!   reserve, the orphan-pack sweep;
//! - `ingest`: `put` and staging files from disk (the files cache);
//! - `write`: a file being written ([`FileWriter`]), the pack lanes,
//!   durability before commit, retiring and reclaiming packs;
//! - `pool`: the chunk workers that hash, dedupe, compress and append;
//! - `commit`: index transactions for staged files, pending rows;
//! - `read`: a file open for reading ([`FileReader`]): `read_at`,
//!   `copy_to`, checked chunk reads, prefetch, and `export`;
//! - `view`: what the FUSE view asks besides: lookups and changes of
//!   names in the namespace, reading back a staged file;
//! - `packs`: reading a chunk from the store's [`PackStore`], looked up
//!   again when its pack went away;
//! - `verify`: `verify`, through the index and the pack store;
//! - `gc`, `usage`, `uses`: gc's plan and eviction, the space report,
//!   recorded uses;
//! - `convert`, `promote`: the gzip form: conversion (and the seam to the
//!   gzip codec), and keeping a cold file's hot copy when it is read;
//! - `rebuild`: `verify --rebuild-index`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::{Error, Result};
use crate::id::FileHash;
use crate::index::{self, ArtifactSummary, FileRow, Index, Recipe, Totals};
use crate::lock::HostLock;
use crate::pack::{self, PackName, PackSink, PackStore};
use crate::perms;

mod commit;
mod convert;
pub mod gc;
mod ingest;
mod journal;
mod open;
mod packs;
mod pool;
mod promote;
mod read;
mod rebuild;
mod remote;
mod usage;
mod uses;
mod verify;
mod view;
mod write;

pub use convert::{Converted, ConvertedFile};
pub use ingest::PutReport;
pub use open::{network_filesystem, Swept};
pub use promote::Promotion;
pub use read::{FileReader, Pieces};
pub use rebuild::{rebuild_index, Rebuilt};
pub use remote::{Published, Pulled, RemoteGc, RemoteGcOptions, RemoteLink};
pub use usage::{SpaceReport, SpaceUse};
pub use verify::Report as VerifyReport;
pub use write::{FileWriter, StagedFile};

use open::{is_disk_full, make_reserve, RESERVE_FILE};
use pool::Pool;
use write::PendingChunks;

const FORMAT_FILE: &str = "FORMAT";
const INDEX_FILE: &str = "index.sqlite";
const FORMAT_PREFIX: &str = "deploycache-store ";

/// Packs a process appends to at once (see `StoreCore::writers`).
const PACK_LANES: usize = 4;

/// Input is read in blocks of this size.
const READ_BLOCK: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct OpenOptions {
    /// Create the store (directory, FORMAT, index) if it does not exist.
    pub create: bool,
    /// Artifacts live in a namespace ("" by default); chunks are shared by all.
    pub namespace: String,
    /// How chunks this process stores are compressed.
    pub compression: pack::Compression,
    /// The remote this store caches (`--remote`): recorded in the store
    /// the first time, and used from then on without it.
    pub remote: Option<crate::remote::RemoteUrl>,
    /// Bytes of remote packs kept on this host (default
    /// [`DEFAULT_CACHE_SIZE`]).
    pub cache_size: Option<u64>,
}

/// A test hook: with `$var` = `STEP:MS`, sleep MS milliseconds when `step`
/// is STEP, so that a test can kill the process there (conversion's and
/// publishing's pause points).
pub(crate) fn pause_at(var: &str, step: &str) {
    let Ok(v) = std::env::var(var) else {
        return;
    };
    if let Some((s, ms)) = v.split_once(':') {
        if s == step {
            if let Ok(ms) = ms.parse::<u64>() {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
    }
}

/// What `--cache-size` is when not given.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

pub struct Store {
    core: Arc<StoreCore>,
    ns: String,
    pool: Pool,
    workers: usize,
    /// What this open found open to other users (and tightened, where it could).
    exposure: perms::Exposure,
    /// Uses of artifacts not yet written to the index (`uses`).
    uses: uses::Uses,
    /// The remote this store caches, if any.
    remote: Option<RemoteLink>,
    _host: HostLock,
}

/// The parts of a store that the chunk workers share with it.
///
/// Lock order, where one mutex is taken while another is held: a lane of
/// `writers`, then `pending` (a worker appends and takes its pack hold
/// under its lane; `retire_idle_lanes` checks the holds under the lane),
/// then `index` (`reclaim_retired` asks where a pack's indexed records
/// end while it holds `pending`). Nothing takes a lane or `pending` while
/// holding `index`: commits release the index before `after_commit`.
/// `retired`, `created_packs`, `sealing`, `open_artifacts` are leaves (nothing is taken
/// under them).
pub struct StoreCore {
    /// This core, for the [`PackHold`]s handed to writers.
    me: Weak<StoreCore>,
    root: PathBuf,
    /// Where the packs live (`packs/`): every pack read, write, listing
    /// and deletion goes through it. Shared (an `Arc`) so that the
    /// manifest log can append to it too. A trait object, not a type
    /// parameter: one virtual call per pack I/O costs nothing beside the
    /// I/O, and `Store` stays one type for the view and the commands.
    packs: Arc<dyn PackStore>,
    index: Mutex<Index>,
    /// The packs this process appends to, one per lane: each file writer
    /// has a lane of its own, so files written at the same time (two files
    /// of a put, several scp streams into a mount) do not interleave their
    /// chunks in one pack, and each file's new chunks stay contiguous for
    /// sequential reads.
    writers: Vec<Mutex<Option<Box<dyn PackSink>>>>,
    /// Lane of the next file writer.
    next_lane: std::sync::atomic::AtomicUsize,
    /// Sealed packs being fsynced in the background.
    sealing: Mutex<Vec<(PackName, std::thread::JoinHandle<Result<()>>)>>,
    /// Packs whose fsync failed: nothing in them may be committed.
    failed_packs: Mutex<HashSet<PackName>>,
    /// Chunks this process wrote whose index rows may not be committed yet
    /// (lets concurrent writers in one process share them), and the live
    /// writers' holds on their packs.
    pending: Mutex<PendingChunks>,
    /// Packs taken out of their lane after a failed append or a write lost
    /// to a full disk: never appended to again, and reclaimed (deleted, or
    /// cut back to their last indexed record) once no live writer holds
    /// them (`reclaim_retired`).
    retired: Mutex<Vec<PackName>>,
    /// Packs this process created, and whether any index row points into
    /// them yet. Those still without one when the store is dropped (a
    /// failed put, a full disk) hold nothing anyone can reach: they are
    /// deleted.
    created_packs: Mutex<HashMap<PackName, bool>>,
    /// Recipes of recently opened files, by file row id and digest
    /// (checked against the digest when loaded): a mount reopening a file
    /// skips loading and rehashing its chunk list. Locations in them may go stale
    /// only through gc, which readers already survive (store-layout.md).
    recent_files: Mutex<VecDeque<RecentFile>>,
    /// Artifacts this process has a file of open for reading, with how
    /// many readers: a mount's lease on them in a remote.
    open_artifacts: Mutex<HashMap<String, usize>>,
}

/// A file row id, its digest, and its checked recipe.
type RecentFile = (i64, FileHash, Recipe);

impl Drop for Store {
    /// Delete the packs this process wrote that no index row points into
    /// (everything it stored was abandoned: a failed put, a full disk).
    fn drop(&mut self) {
        let _ = self.flush_uses();
        let sealing: Vec<_> = lock(&self.core.sealing).drain(..).collect();
        for (_, h) in sealing {
            let _ = h.join();
        }
        for w in &self.core.writers {
            if let Some(p) = lock(w).take() {
                lock(&self.core.retired).push(p.name());
            }
        }
        // Packs left with a dead tail are cut back; then those nothing
        // points into go.
        self.reclaim_retired();
        let created = std::mem::take(&mut *lock(&self.core.created_packs));
        for (name, committed) in created {
            if !committed {
                let _ = self.core.packs.delete(name);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the store: the data behind these
    // mutexes is valid between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// The index, locked, for the store's own modules. `pub(crate)` only
    /// while `verify` still asks it directly (it moves into the store).
    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        self.core.index()
    }

    pub fn root(&self) -> &Path {
        &self.core.root
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Entries of the store that were open to other users: tightened when
    /// this process opened the store, and any still open now (owned by
    /// another user, so not ours to change). `verify` warns about both.
    pub fn exposure(&self) -> Result<perms::Exposure> {
        let mut e = self.exposure.clone();
        for p in perms::exposed(&self.core.root)? {
            if !e.exposed.contains(&p) {
                e.exposed.push(p);
            }
        }
        Ok(e)
    }

    pub fn list(&self) -> Result<Vec<ArtifactSummary>> {
        self.index().list_artifacts(&self.ns)
    }

    pub fn list_files(&self, artifact: &str) -> Result<Vec<FileRow>> {
        self.index().list_files(&self.ns, artifact)
    }

    pub fn remove(&self, artifact: &str) -> Result<()> {
        self.with_reserve(|| self.index().remove_artifact(&self.ns, artifact))
    }

    /// Run an index write that must work on a full disk (dropping an
    /// artifact is how a user starts to make room): SQLite needs room to
    /// append to its WAL, so when the disk is full the store's `reserve`
    /// file gives its space up and the write is tried once more. The
    /// reserve is made again once there is room (see [`make_reserve`]).
    fn with_reserve<T>(&self, write: impl Fn() -> Result<T>) -> Result<T> {
        match write() {
            Err(e) if is_disk_full(&e) => {
                let reserve = self.core.root.join(RESERVE_FILE);
                match fs::remove_file(&reserve) {
                    Ok(()) => {}
                    Err(r) if r.kind() == io::ErrorKind::NotFound => return Err(e),
                    Err(r) => return Err(Error::io(reserve, r)),
                }
                let res = write();
                make_reserve(&self.core.root);
                res
            }
            res => res,
        }
    }

    /// Drop the quarantined files of `artifact` (of every artifact of the
    /// namespace when `None`), and whole the artifacts incomplete without
    /// them; see [`index::Index::remove_quarantined`].
    pub fn remove_quarantined(&self, artifact: Option<&str>) -> Result<index::Dropped> {
        self.with_reserve(|| self.index().remove_quarantined(&self.ns, artifact))
    }

    pub fn stats(&self) -> Result<Stats> {
        let totals = self.index().totals()?;
        let packs = self.core.packs.list()?;
        let pack_files = packs.len() as u64;
        let pack_bytes = packs.iter().map(|p| p.size).sum();
        Ok(Stats {
            gzip: self.index().gzip_saving()?,
            totals,
            pack_files,
            pack_bytes,
            index_bytes: self.index_bytes(),
        })
    }

    /// The index's bytes on disk, its WAL included.
    pub(crate) fn index_bytes(&self) -> u64 {
        ["index.sqlite", "index.sqlite-wal"]
            .iter()
            .map(|f| {
                fs::metadata(self.core.root.join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl StoreCore {
    /// The index, locked. Only the store asks the index: everything else
    /// goes through [`Store`]'s methods.
    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }
}

/// Totals for `stats`.
#[derive(Debug, Clone)]
pub struct Stats {
    pub totals: Totals,
    pub pack_files: u64,
    /// Bytes of pack files on disk: chunk data plus headers plus anything
    /// not yet reclaimed by gc.
    pub pack_bytes: u64,
    pub index_bytes: u64,
    /// What the gzip form saves (store-layout.md, "Gzip files (format 4)").
    pub gzip: index::GzipSaving,
}

/// Map `f` over `items` on up to `workers` threads, keeping order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    par_map_with(items, workers, || (), |_, t| f(t))
}

/// Like [`par_map`], with per-thread state (a compressor) made by `init`.
pub(crate) fn par_map_with<T: Sync, R: Send, S>(
    items: &[T],
    workers: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    if items.len() <= 1 || workers <= 1 {
        let mut s = init();
        return items.iter().map(|t| f(&mut s, t)).collect();
    }
    let per = items.len().div_ceil(workers);
    std::thread::scope(|sc| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| {
                let (init, f) = (&init, &f);
                sc.spawn(move || {
                    let mut s = init();
                    part.iter().map(|t| f(&mut s, t)).collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
