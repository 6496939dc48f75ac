//! The store: opens a store directory, writes files into packs and the
//! index, reads them back with every chunk checked.
//!
//! Directory (store-layout.md has the full contract):
//! ```text
//! STORE/FORMAT          "deploycache-store 2"
//! STORE/index.sqlite    the index (WAL)
//! STORE/packs/ab/….pack chunk records
//! STORE/lock, owner     one host at a time (lock.rs)
//! STORE/gc.lock         writers vs gc (lock.rs)
//! ```
//! Write path: bytes → [`FileWriter`] → chunker → BLAKE3 + zstd (parallel)
//! → pack append → fsync → one index transaction ([`Store::commit_artifact`]
//! or [`Store::commit_file`]). Read path: [`Store::open_file`] loads the
//! file's chunk list once (an `Arc`, shared by all readers), then
//! [`Store::read_at`] reads, decodes and checks the chunks it needs. No lock
//! is held across pack I/O on the read path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::UNIX_EPOCH;

use crate::check::Check;
use crate::chunker::{ChunkBytes, Chunker};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, FileHash};
use crate::index::{
    self, ArtifactSummary, ChunkSpan, FileMeta, FileRow, Index, IndexState, NewFile, Totals,
};
use crate::lock::{GcGuard, HostLock, InitLock};
use crate::manifest::ManifestLog;
use crate::name;
use crate::pack::{self, EncodedChunk, Location, PackName, PackWriter};
use crate::perms;
use crate::progress::Progress;

mod open_packs;
mod rebuild;
mod view;

pub use rebuild::{rebuild_index, Rebuilt};

const FORMAT_FILE: &str = "FORMAT";
const INDEX_FILE: &str = "index.sqlite";
const FORMAT_PREFIX: &str = "deploycache-store ";
/// Chunks a writer may have in the worker pool at once (~2 MiB at the
/// average chunk size): bounds a writer's memory whatever the file size.
const MAX_INFLIGHT_CHUNKS: usize = 32;
/// Packs a process appends to at once (see `StoreCore::writers`).
const PACK_LANES: usize = 4;
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
/// Input is read in blocks of this size.
const READ_BLOCK: usize = 4 * 1024 * 1024;
/// `put` asks the kernel to read this far ahead of the chunker.
const READ_AHEAD_BYTES: u64 = 32 * 1024 * 1024;

/// What [`Store::sweep_orphan_packs`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub packs: u64,
    pub bytes: u64,
}

#[derive(Default)]
pub struct OpenOptions {
    /// Create the store (directory, FORMAT, index) if it does not exist.
    pub create: bool,
    /// Artifacts live in a namespace ("" by default); chunks are shared by all.
    pub namespace: String,
    /// How chunks this process stores are compressed.
    pub compression: pack::Compression,
}

pub struct Store {
    core: Arc<StoreCore>,
    ns: String,
    pool: Pool,
    workers: usize,
    /// What this open found open to other users (and tightened, where it could).
    exposure: perms::Exposure,
    _host: HostLock,
}

/// The parts of a store that the chunk workers share with it.
pub struct StoreCore {
    /// This core, for the [`PackHold`]s handed to writers.
    me: Weak<StoreCore>,
    root: PathBuf,
    packs_dir: PathBuf,
    index: Mutex<Index>,
    /// The packs this process appends to, one per lane: each file writer
    /// has a lane of its own, so files written at the same time (two files
    /// of a put, several scp streams into a mount) do not interleave their
    /// chunks in one pack, and each file's new chunks stay contiguous for
    /// sequential reads.
    writers: Vec<Mutex<Option<PackWriter>>>,
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
    /// Open pack files for reading (bounded; see `open_packs`).
    pack_files: Mutex<open_packs::OpenPacks>,
    /// Packs this process created, and whether any index row points into
    /// them yet. Those still without one when the store is dropped (a
    /// failed put, a full disk) hold nothing anyone can reach: they are
    /// deleted.
    created_packs: Mutex<HashMap<PackName, bool>>,
    /// Chunk lists of recently opened files, by file row id and digest
    /// (checked against the digest when loaded): a mount reopening a file
    /// skips loading and rehashing its list. Locations in them may go stale
    /// only through gc, which readers already survive (store-layout.md).
    recent_files: Mutex<VecDeque<RecentFile>>,
}

/// A file row id, its digest, and its checked chunk list.
type RecentFile = (i64, FileHash, Arc<[ChunkSpan]>);

impl Drop for Store {
    /// Delete the packs this process wrote that no index row points into
    /// (everything it stored was abandoned: a failed put, a full disk).
    fn drop(&mut self) {
        let sealing: Vec<_> = lock(&self.sealing).drain(..).collect();
        for (_, h) in sealing {
            let _ = h.join();
        }
        for w in &self.writers {
            if let Some(p) = lock(w).take() {
                lock(&self.retired).push(p.name);
            }
        }
        // Packs left with a dead tail are cut back; then those nothing
        // points into go.
        self.reclaim_retired();
        let created = std::mem::take(&mut *lock(&self.created_packs));
        for (name, committed) in created {
            if !committed {
                let _ = fs::remove_file(self.pack_path(name));
            }
        }
    }
}

impl std::ops::Deref for Store {
    type Target = StoreCore;
    fn deref(&self) -> &StoreCore {
        &self.core
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the store: the data behind these
    // mutexes is valid between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    pub fn open(root: &Path, opts: OpenOptions) -> Result<Store> {
        name::check_namespace(&opts.namespace)?;
        let format_path = root.join(FORMAT_FILE);
        let format = match fs::read_to_string(&format_path) {
            Ok(s) => check_format(root, &s)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if may_create(root)? {
                    if !opts.create {
                        return Err(Error::NoStore(root.to_owned()));
                    }
                    create(root)?;
                    index::FORMAT_VERSION
                } else {
                    // Another process may have finished creating it between
                    // the two looks: its FORMAT is there now.
                    match fs::read_to_string(&format_path) {
                        Ok(s) => check_format(root, &s)?,
                        Err(_) => return Err(Error::ForeignDirectory(root.to_owned())),
                    }
                }
            }
            Err(e) => return Err(Error::io(&format_path, e)),
        };
        // A store made before stores were private (or chmod'ed since) is
        // made owner-only by the first open of its owner: whoever else can
        // read it can read every stored key. The walk happens only while
        // the root itself is open to others, which it stays until the walk
        // is done.
        let exposure = if perms::needs_tightening(root) {
            perms::tighten(root)?
        } else {
            perms::Exposure::default()
        };
        let host = HostLock::acquire(root)?;
        make_reserve(root);
        let index = open_index(root)?;
        if format != index::FORMAT_VERSION {
            // The index was migrated (now or by a run that stopped short of
            // this): FORMAT follows it.
            write_format(root)?;
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let core = Arc::new_cyclic(|me| StoreCore {
            me: me.clone(),
            root: root.to_owned(),
            packs_dir: root.join("packs"),
            index: Mutex::new(index),
            writers: (0..PACK_LANES).map(|_| Mutex::new(None)).collect(),
            next_lane: std::sync::atomic::AtomicUsize::new(0),
            sealing: Mutex::new(Vec::new()),
            failed_packs: Mutex::new(HashSet::new()),
            pending: Mutex::new(PendingChunks::default()),
            retired: Mutex::new(Vec::new()),
            pack_files: Mutex::new(open_packs::OpenPacks::default()),
            created_packs: Mutex::new(HashMap::new()),
            recent_files: Mutex::new(VecDeque::new()),
        });
        Ok(Store {
            pool: Pool::start(workers, Arc::downgrade(&core), opts.compression),
            core,
            ns: opts.namespace,
            workers,
            exposure,
            _host: host,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Entries of the store that were open to other users: tightened when
    /// this process opened the store, and any still open now (owned by
    /// another user, so not ours to change). `verify` warns about both.
    pub fn exposure(&self) -> Result<perms::Exposure> {
        let mut e = self.exposure.clone();
        for p in perms::exposed(&self.root)? {
            if !e.exposed.contains(&p) {
                e.exposed.push(p);
            }
        }
        Ok(e)
    }

    /// Delete the pack files no index row points into that no live writer
    /// can still commit into: those a killed `put`, `import` or mount left
    /// behind (store-layout.md, "Orphan packs"). Runs only when `gc.lock`
    /// can be taken exclusively at once (else None: a writer is between
    /// its first chunk and its commit, and the sweep waits for another
    /// day rather than keep it waiting). Holding it, no process has
    /// uncommitted chunks in a sealed pack; a pack still being appended to
    /// is flocked by its writer and skipped.
    pub fn sweep_orphan_packs(&self) -> Result<Option<Swept>> {
        let Some(_gc) = GcGuard::try_collector(&self.root)? else {
            return Ok(None);
        };
        // Read under the lock: every commit of a chunk happens under
        // gc.lock shared, so this list is complete until the lock goes.
        let indexed: HashSet<PackName> = self.index().packs()?.into_iter().collect();
        let mine: HashSet<PackName> = lock(&self.created_packs).keys().copied().collect();
        let mut swept = Swept::default();
        for entry in walkdir::WalkDir::new(&self.packs_dir)
            .min_depth(2)
            .max_depth(2)
        {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(PackName::parse)
            else {
                continue;
            };
            if !entry.file_type().is_file() || indexed.contains(&name) || mine.contains(&name) {
                continue;
            }
            // Write access: on NFS an exclusive flock is a write lock,
            // which needs a descriptor open for writing.
            let file = match fs::OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
            let len = file.metadata().at(path)?.len();
            fs::remove_file(path).at(path)?;
            swept.packs += 1;
            swept.bytes += len;
        }
        Ok(Some(swept))
    }

    pub(crate) fn pack_path(&self, p: PackName) -> PathBuf {
        p.path(&self.packs_dir)
    }

    // ---- writing -------------------------------------------------------

    /// Start writing one file. The returned writer pins the chunks it uses
    /// against gc until it is committed or dropped.
    pub fn file_writer(&self) -> Result<FileWriter> {
        Ok(FileWriter {
            chunker: Chunker::new(),
            size: 0,
            sink: ChunkSink {
                new_chunks: Pending {
                    core: Arc::downgrade(&self.core),
                    chunks: Vec::new(),
                    holds: Vec::new(),
                },
                lane: self
                    .next_lane
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ..ChunkSink::default()
            },
            _gc: GcGuard::writer(&self.root)?,
        })
    }

    /// Commit files as artifact `name` in one transaction. With `replace`,
    /// an earlier artifact of that name is replaced atomically.
    pub fn commit_artifact(&self, name: &str, files: Vec<StagedFile>, replace: bool) -> Result<()> {
        self.commit_artifact_with(name, files, Vec::new(), replace)
    }

    /// Commit an artifact whose `cut` files were found cut short, in one
    /// transaction: those are kept aside (quarantined, with their reason),
    /// which leaves the artifact incomplete.
    pub fn commit_artifact_with(
        &self,
        name: &str,
        mut files: Vec<StagedFile>,
        cut: Vec<(StagedFile, String)>,
        replace: bool,
    ) -> Result<()> {
        name::check_artifact(name)?;
        let rows: Vec<NewFile> = files.iter().map(|f| f.row()).collect();
        let kept: Vec<(NewFile, &str)> =
            cut.iter().map(|(f, why)| (f.row(), why.as_str())).collect();
        let res = self
            .index()
            .commit_artifact(&self.ns, name, &rows, &kept, replace);
        files.extend(cut.into_iter().map(|(f, _)| f));
        self.after_commit(&files, res)
    }

    /// Add or replace one file of an existing artifact; `pending` (from
    /// [`Store::begin_pending`]) is cleared in the same transaction.
    pub fn commit_file(
        &self,
        artifact: &str,
        file: StagedFile,
        pending: Option<i64>,
    ) -> Result<()> {
        let res = self
            .index()
            .commit_file(&self.ns, artifact, &file.row(), pending);
        self.after_commit(std::slice::from_ref(&file), res)
    }

    /// Keep a file aside instead of committing it: not visible, listed by
    /// [`Store::list_quarantine`], its chunks kept. It replaces `pending`.
    pub fn quarantine_file(
        &self,
        artifact: &str,
        file: StagedFile,
        reason: &str,
        pending: Option<i64>,
    ) -> Result<()> {
        let res = self
            .index()
            .quarantine_file(&self.ns, artifact, &file.row(), reason, pending);
        self.after_commit(std::slice::from_ref(&file), res)
    }

    /// Durably mark file `name` of `artifact` as being written: until it
    /// commits (or after a crash, until it is written whole), the artifact
    /// is incomplete to every reader. See [`Index::begin_pending`].
    pub fn begin_pending(&self, artifact: &str, name: &str, reason: &str) -> Result<i64> {
        self.index().begin_pending(&self.ns, artifact, name, reason)
    }

    /// The pending file was renamed.
    pub fn move_pending(&self, id: i64, artifact: &str, name: &str) -> Result<()> {
        self.index().move_pending(id, &self.ns, artifact, name)
    }

    /// The pending file will not be committed: dropped (`None`: it was
    /// unlinked) or kept as lost, with the reason.
    pub fn end_pending(&self, id: i64, lost: Option<&str>) -> Result<()> {
        self.index().end_pending(id, lost)
    }

    /// Whether `artifact` has a pending row whose reason starts with `prefix`.
    pub fn has_pending(&self, artifact: &str, prefix: &str) -> Result<bool> {
        Ok(self
            .index()
            .pending_rows(&self.ns, prefix)?
            .iter()
            .any(|(_, a, _)| a == artifact))
    }

    /// Pending rows of this namespace whose reason starts with `prefix`.
    pub fn pending_rows(&self, prefix: &str) -> Result<Vec<(i64, String, String)>> {
        self.index().pending_rows(&self.ns, prefix)
    }

    /// Files of `artifact` cut short and not written whole since; see
    /// [`Index::missing_files`].
    pub fn missing_files(&self, artifact: &str) -> Result<Vec<String>> {
        self.index().missing_files(&self.ns, artifact)
    }

    pub fn list_quarantine(&self) -> Result<Vec<index::QuarantineEntry>> {
        self.index().list_quarantine(&self.ns)
    }

    /// After a commit (or its failure): the committed chunks are found in
    /// the index from now on, and their packs are referenced.
    fn after_commit(&self, files: &[StagedFile], res: Result<()>) -> Result<()> {
        if res.is_ok() {
            let mut created = lock(&self.created_packs);
            for (_, loc) in files.iter().flat_map(|f| f.new_chunks.iter()) {
                if let Some(c) = created.get_mut(&loc.pack) {
                    *c = true;
                }
            }
        }
        self.forget_pending(files);
        res
    }

    fn forget_pending(&self, files: &[StagedFile]) {
        let mut pending = lock(&self.pending);
        for f in files {
            for (id, _) in f.new_chunks.iter() {
                pending.chunks.remove(id);
            }
        }
    }

    /// A write through this store was lost to a full disk (or quota): the
    /// packs its lanes append to are retired, so that what the lost writes
    /// appended can be cut away, and everything retired is reclaimed that
    /// no live writer holds. Later writers start new packs.
    pub fn abandon_writes(&self) {
        for w in &self.writers {
            if let Some(p) = lock(w).take() {
                lock(&self.retired).push(p.name);
            }
        }
        self.reclaim_retired();
    }

    /// Reclaim retired packs no live writer holds: a pack no index row
    /// points into is deleted; one with indexed records is cut back to the
    /// end of its last one (the bytes after it belong to no file, and
    /// nobody appends to a retired pack). Best effort: what fails stays
    /// for gc, which reclaims unindexed pack data too.
    pub fn reclaim_retired(&self) {
        let retired: Vec<PackName> = lock(&self.retired).clone();
        for p in retired {
            // Holding `pending`: no writer can take a new hold on `p`'s
            // unindexed records meanwhile (holds come from that map).
            let pending = lock(&self.pending);
            if pending.holds.get(&p).is_some_and(|n| *n > 0) {
                continue;
            }
            let path = self.pack_path(p);
            let done = match self.index().pack_end(p) {
                Ok(None) => fs::remove_file(&path)
                    .or_else(|e| (e.kind() == io::ErrorKind::NotFound).then_some(()).ok_or(e))
                    .is_ok(),
                Ok(Some(end)) => fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        if f.metadata()?.len() > end {
                            f.set_len(end)?;
                            f.sync_all()?;
                        }
                        Ok(())
                    })
                    .is_ok(),
                Err(_) => false,
            };
            drop(pending);
            if done {
                lock(&self.retired).retain(|x| *x != p);
                lock(&self.created_packs).remove(&p);
            }
        }
    }

    /// Store one file from disk (streamed: memory does not grow with size).
    ///
    /// With `use_cache`, a file unchanged since an earlier put (same path,
    /// device, inode, size, mtime and ctime: the files cache of borg and
    /// restic) is not read again when a stored file has its content.
    pub fn stage_path(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
        use_cache: bool,
    ) -> Result<StagedFile> {
        self.stage_inner(path, file_name, progress, use_cache, None)
    }

    /// Like [`Store::stage_path`], running the completeness check the file's
    /// name or first bytes call for ([`Check::for_name`]) on the bytes as
    /// they are chunked: the verdict is `Err(reason)` for a file cut short.
    /// The file is always read (the files cache knows no verdicts).
    pub fn stage_checked(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
    ) -> Result<(StagedFile, std::result::Result<(), String>)> {
        let mut check = Check::for_name(&file_name);
        let staged = self.stage_inner(path, file_name, progress, false, Some(&mut check))?;
        Ok((staged, check.finish()))
    }

    fn stage_inner(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
        use_cache: bool,
        mut check: Option<&mut Check>,
    ) -> Result<StagedFile> {
        // O_NOFOLLOW: a file swapped for a link after `collect_inputs` or
        // `import` looked at it is refused too.
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Symlink(path.to_owned()))
            }
            res => res.at(path)?,
        };
        let before = file.metadata().at(path)?;
        if !before.is_file() {
            return Err(Error::NotRegularFile(path.to_owned()));
        }
        let meta = FileMeta {
            name: file_name,
            size: before.len(),
            mode: before.permissions().mode() & 0o7777,
            mtime_ns: before.mtime() * 1_000_000_000 + before.mtime_nsec(),
        };
        let key = source_key(path, &before);
        if let (true, Some(key)) = (use_cache, &key) {
            let index = self.index();
            if let Some(hash) = index.cached_source_hash(key)? {
                if let Some(chunks) = index.chunks_of_content(&hash, before.len())? {
                    drop(index);
                    progress.inc(before.len());
                    return Ok(StagedFile {
                        meta,
                        hash,
                        chunks,
                        new_chunks: Pending::default(),
                        _gc: GcGuard::writer(&self.root)?,
                    });
                }
            }
        }
        let mut w = self.file_writer()?;
        w.chunker
            .set_block_capacity(READ_BLOCK + crate::chunker::MAX_SIZE);
        let mut offset = 0u64;
        let staged = loop {
            // The kernel reads ahead of the chunker, so the read below is a
            // copy out of the page cache, not a wait on the disk.
            let _ = rustix::fs::fadvise(
                &file,
                offset,
                std::num::NonZeroU64::new(READ_AHEAD_BYTES),
                rustix::fs::Advice::WillNeed,
            );
            let n = w.write_from(self, &mut &file, path, &mut |b| {
                if let Some(c) = check.as_deref_mut() {
                    c.update(b);
                }
            })?;
            if n == 0 {
                break w.finish(self, meta)?;
            }
            offset += n as u64;
            progress.inc(n as u64);
        };
        let after = fs::metadata(path).at(path)?;
        if after.len() != staged.meta.size
            || after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec()
        {
            return Err(Error::ChangedWhileReading(path.to_owned()));
        }
        if let Some(key) = key {
            self.index().remember_source(&key, &staged.hash)?;
        }
        Ok(staged)
    }

    /// `put`: store files (a directory's regular files, non-recursively) as
    /// artifact `name`, replacing an earlier one atomically.
    pub fn put(
        &self,
        name: &str,
        paths: &[PathBuf],
        progress_label: Option<&str>,
        use_cache: bool,
    ) -> Result<PutReport> {
        name::check_artifact(name)?;
        let inputs = collect_inputs(paths)?;
        let total: u64 = inputs.iter().map(|(_, _, len)| len).sum();
        let progress = match progress_label {
            Some(l) => Progress::bytes(total, l.to_owned()),
            None => Progress::hidden(),
        };
        let before = self.index().totals()?;
        let staged = self.stage_all(&inputs, &progress, use_cache)?;
        progress.finish();
        let logical: u64 = staged.iter().map(|f| f.meta.size).sum();
        let files = staged.len();
        self.commit_artifact(name, staged, true)?;
        let after = self.index().totals()?;
        Ok(PutReport {
            files: files as u64,
            logical_bytes: logical,
            new_unique_bytes: after.unique_bytes.saturating_sub(before.unique_bytes),
        })
    }

    /// Stage files two (one per core) at a time, largest first: chunking
    /// a stream is sequential, so an artifact of several big files (a tar
    /// and an image) is chunked on both cores at once. Keeps input order.
    fn stage_all(
        &self,
        inputs: &[(PathBuf, String, u64)],
        progress: &Progress,
        use_cache: bool,
    ) -> Result<Vec<StagedFile>> {
        self.stage_each(inputs, |path, name| {
            self.stage_path(path, name, progress, use_cache)
        })
    }

    /// [`Store::stage_checked`] for several files, as `put` stages them:
    /// one per core, largest first (a tar chunks on one core while an image
    /// inflates on the other). Keeps input order.
    pub fn stage_all_checked(
        &self,
        inputs: &[(PathBuf, String, u64)],
        progress: &Progress,
    ) -> Result<Vec<(StagedFile, std::result::Result<(), String>)>> {
        self.stage_each(inputs, |path, name| {
            self.stage_checked(path, name, progress)
        })
    }

    /// Run `stage` on each input (path, file name, size) on up to one
    /// thread per core, largest first; results in input order.
    fn stage_each<T: Send>(
        &self,
        inputs: &[(PathBuf, String, u64)],
        stage: impl Fn(&Path, String) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].2));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<(usize, Result<T>)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..self.workers.min(inputs.len()).max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if k >= order.len() || failed.load(std::sync::atomic::Ordering::Relaxed)
                            {
                                return out;
                            }
                            let (path, file_name, _) = &inputs[order[k]];
                            let res = stage(path, file_name.clone());
                            if res.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            out.push((order[k], res));
                        }
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut slots: Vec<Option<T>> = (0..inputs.len()).map(|_| None).collect();
        for (i, res) in results {
            slots[i] = Some(res?);
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| Error::ChangedWhileReading(inputs[i].0.clone())))
            .collect()
    }

    // ---- reading -------------------------------------------------------

    /// Look up a file for reading. The chunk list is loaded once and shared.
    pub fn open_file(&self, artifact: &str, file: &str) -> Result<FileReader> {
        let row = self.index().file(&self.ns, artifact, file)?;
        self.reader_for(artifact, row)
    }

    /// A reader for a file row: loads its chunk list and checks it against
    /// the file digest, which commits to every chunk id; each chunk is then
    /// checked against its id when read. Together: every byte served is the
    /// byte stored.
    fn reader_for(&self, artifact: &str, row: FileRow) -> Result<FileReader> {
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

    fn pack_file(&self, p: PackName) -> Result<Arc<File>> {
        lock(&self.pack_files).get(p, &self.pack_path(p))
    }

    /// Packs this process holds open for reading (bounded).
    pub fn open_pack_count(&self) -> usize {
        lock(&self.pack_files).len()
    }

    /// Read, decode and check one chunk of a file. A chunk whose pack is
    /// gone (gc moved it) is looked up in the index again, once; failing
    /// that, the error names the chunk, file and offset.
    pub fn read_chunk(&self, r: &FileReader, i: usize) -> Result<Vec<u8>> {
        let span = &r.spans[i];
        let corrupt = |why: String| r.corrupt(i, why);
        let mut loc = span.loc;
        let file = match self.pack_file(loc.pack) {
            Ok(f) => f,
            Err(e) if e.errno() == libc::ENOENT => {
                let moved = self
                    .index()
                    .chunk_location(&span.id)?
                    .filter(|l| l.pack != loc.pack && l.raw_len == loc.raw_len);
                let Some(moved) = moved else {
                    return Err(corrupt(format!("pack unreadable: {e}")));
                };
                loc = moved;
                self.pack_file(loc.pack)
                    .map_err(|e| corrupt(format!("pack unreadable: {e}")))?
            }
            Err(e) => return Err(corrupt(format!("pack unreadable: {e}"))),
        };
        let path = self.pack_path(loc.pack);
        let payload = pack::read_payload(&file, &path, &loc).map_err(|e| corrupt(e.to_string()))?;
        pack::decode(&span.id, &loc, payload).map_err(corrupt)
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
        {
            if let Ok(file) = self.pack_file(loc.pack) {
                if std::os::unix::fs::FileExt::read_exact_at(&*file, dst, loc.offset).is_ok()
                    && ChunkId::of(dst) == span.id
                {
                    return Ok(());
                }
            }
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
        let file = self.pack_file(first.loc.pack).ok()?;
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut seg.packed[..n], lo).ok()?;
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
                    let dctx = match &mut seg.dctx {
                        Some(d) => d,
                        None => seg.dctx.insert(zstd::bulk::Decompressor::new().ok()?),
                    };
                    let got = dctx
                        .decompress_to_buffer(payload, &mut seg.decoded[start..start + raw_len])
                        .ok()?;
                    if got != raw_len {
                        return None;
                    }
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
        if let Ok(f) = self.pack_file(first.loc.pack) {
            let _ = rustix::fs::fadvise(
                &*f,
                lo,
                std::num::NonZeroU64::new(hi - lo),
                rustix::fs::Advice::WillNeed,
            );
        }
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
                        self.pack_path(r.spans[range.start].loc.pack),
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

    // ---- listing, removing, totals ---------------------------------------

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
                let reserve = self.root.join(RESERVE_FILE);
                match fs::remove_file(&reserve) {
                    Ok(()) => {}
                    Err(r) if r.kind() == io::ErrorKind::NotFound => return Err(e),
                    Err(r) => return Err(Error::io(reserve, r)),
                }
                let res = write();
                make_reserve(&self.root);
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
        let mut pack_files = 0;
        let mut pack_bytes = 0;
        for entry in walkdir::WalkDir::new(&self.packs_dir)
            .min_depth(2)
            .max_depth(2)
        {
            let entry = entry.map_err(|e| Error::io(&self.packs_dir, e.into()))?;
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "pack")
            {
                pack_files += 1;
                pack_bytes += entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path(), e.into()))?
                    .len();
            }
        }
        let mut index_bytes = 0;
        for f in ["index.sqlite", "index.sqlite-wal"] {
            index_bytes += fs::metadata(self.root.join(f))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok(Stats {
            totals,
            pack_files,
            pack_bytes,
            index_bytes,
        })
    }
}

impl StoreCore {
    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

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
                    lock(&self.retired).push(p.name);
                }
                return Err(e);
            }
        };
        drop(writer);
        // A worker on another lane may have stored it in the meantime: the
        // first copy wins, and this record stays unreferenced (gc's to take).
        let mut pending = lock(&self.pending);
        let loc = *pending.chunks.entry(id).or_insert(loc);
        Ok(Outcome::Stored(loc, pending.hold(self, loc.pack)))
    }

    /// A chunk another writer of this process stored, held for this one.
    fn hold_pending(&self, id: &ChunkId) -> Option<Outcome> {
        let mut pending = lock(&self.pending);
        let loc = *pending.chunks.get(id)?;
        Some(Outcome::Stored(loc, pending.hold(self, loc.pack)))
    }

    fn append(
        &self,
        writer: &mut Option<PackWriter>,
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
            if let Some(mut full) = writer.take() {
                let name = full.name;
                let handle = std::thread::spawn(move || full.sync());
                lock(&self.sealing).push((name, handle));
            }
        }
        if writer.is_none() {
            let p = PackWriter::create(&self.packs_dir)?;
            lock(&self.created_packs).insert(p.name, false);
            *writer = Some(p);
        }
        writer
            .as_mut()
            .expect("pack writer just created")
            .append(e, raw)
    }

    /// Make the chunks a writer stored durable before the index points at them.
    fn sync_for(&self, new_chunks: &[(ChunkId, Location)]) -> Result<()> {
        let sealing: Vec<_> = lock(&self.sealing).drain(..).collect();
        let mut first_err = None;
        for (name, h) in sealing {
            let res = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    &self.packs_dir,
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
                    &self.packs_dir,
                    io::Error::other("a pack holding this file's chunks could not be synced"),
                )
            }));
        }
        for w in &self.writers {
            if let Some(p) = lock(w).as_mut() {
                if new_chunks.iter().any(|(_, loc)| loc.pack == p.name) {
                    p.sync()?;
                }
            }
        }
        Ok(())
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
}

#[derive(Debug, Clone)]
pub struct PutReport {
    pub files: u64,
    pub logical_bytes: u64,
    /// Chunk bytes (uncompressed) this put added to the store.
    pub new_unique_bytes: u64,
}

/// Streams one file's bytes into the store. Nothing is visible until the
/// [`StagedFile`] from [`FileWriter::finish`] is committed.
pub struct FileWriter {
    chunker: Chunker,
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
        store.sync_for(&sink.new_chunks)?;
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
#[derive(Default)]
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
        let done = rx
            .recv()
            .map_err(|_| Error::io(&store.packs_dir, io::Error::other("chunk worker exited")))?;
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

/// What a worker found out about a chunk.
enum Outcome {
    /// The index already has it.
    Indexed,
    /// It is in a pack of this process (stored now, or earlier by another
    /// writer); its index row may not be committed yet, so the writer
    /// holds the pack against reclaiming.
    Stored(Location, PackHold),
}

/// [`StoreCore::pending`]: chunks stored by writers in flight, and per pack
/// how many [`PackHold`]s live writers have on it.
#[derive(Default)]
struct PendingChunks {
    chunks: HashMap<ChunkId, Location>,
    holds: HashMap<PackName, usize>,
}

impl PendingChunks {
    fn hold(&mut self, core: &StoreCore, pack: PackName) -> PackHold {
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

struct Encoded {
    id: ChunkId,
    raw_len: u32,
    outcome: Result<Outcome>,
}

struct Job {
    lane: usize,
    data: ChunkBytes,
    reply: mpsc::SyncSender<Encoded>,
}

/// A chunk worker's own index connection, looking chunks up in read
/// transactions of up to [`LOOKUPS_PER_SNAPSHOT`] lookups.
#[derive(Default)]
struct WorkerIndex {
    index: Option<Index>,
    lookups: usize,
}

const LOOKUPS_PER_SNAPSHOT: usize = 1024;

impl WorkerIndex {
    fn knows(&mut self, path: &Path, id: &ChunkId) -> Result<bool> {
        if self.index.is_none() {
            self.index = Some(Index::open_reader(path)?);
        }
        let index = self.index.as_ref().expect("opened above");
        if self.lookups == 0 {
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

/// Threads that hash, look up and compress chunks for every writer of the
/// process. Results go back on each job's own channel, so writers keep order.
struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Pool {
    fn start(workers: usize, store: Weak<StoreCore>, compression: pack::Compression) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers {
            let (rx, store) = (rx.clone(), store.clone());
            std::thread::spawn(move || {
                let mut compressor = pack::new_compressor(compression);
                let mut reader = WorkerIndex::default();
                loop {
                    let job = {
                        let rx = lock(&rx);
                        match rx.try_recv() {
                            Ok(j) => Ok(j),
                            Err(_) => {
                                // Idle: let go of the read snapshot first.
                                reader.end();
                                rx.recv()
                            }
                        }
                    };
                    let Ok(job) = job else { return }; // the store was dropped
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

    fn submit(&self, job: Job) {
        // Workers only exit once this sender is dropped, so sending succeeds;
        // if it ever did not, the writer sees "chunk worker exited".
        let _ = lock(&self.jobs).send(job);
    }
}

/// A file whose chunks are durable, waiting for its index commit.
pub struct StagedFile {
    pub meta: FileMeta,
    pub hash: FileHash,
    chunks: Vec<(ChunkId, u32)>,
    new_chunks: Pending,
    _gc: GcGuard,
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
    fn row(&self) -> NewFile {
        NewFile {
            meta: self.meta.clone(),
            hash: self.hash,
            chunks: self.chunks.clone(),
            new_chunks: self.new_chunks.chunks.clone(),
        }
    }
}

/// A committed file opened for reading: its chunk list never changes.
#[derive(Clone)]
pub struct FileReader {
    pub artifact: String,
    pub file: String,
    pub row: FileRow,
    spans: Arc<[ChunkSpan]>,
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
    dctx: Option<zstd::bulk::Decompressor<'static>>,
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

/// The store's format version from its FORMAT file: the current one, or 1
/// (migrated when the store is opened).
fn check_format(root: &Path, s: &str) -> Result<u32> {
    let found = s.trim();
    match found
        .strip_prefix(FORMAT_PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(v) if v == index::FORMAT_VERSION || v == 1 => Ok(v),
        _ => Err(Error::UnsupportedFormat {
            path: root.to_owned(),
            found: found.to_owned(),
            supported: index::FORMAT_VERSION,
        }),
    }
}

/// The index of the store at `root`, ready for changes: refused when it is
/// missing or empty while packs hold data (it would show an empty store,
/// and gc would take every pack for garbage), migrated from format 1.
fn open_index(root: &Path) -> Result<Index> {
    let path = root.join(INDEX_FILE);
    let packs_dir = root.join("packs");
    let refuse = |why| Error::IndexMissing {
        path: path.clone(),
        store: root.to_owned(),
        why,
    };
    if !path.exists() && has_packs(&packs_dir)? {
        return Err(refuse("is missing"));
    }
    let mut index = Index::open(&path)?;
    index.set_journal(Box::new(ManifestLog::new(root)));
    match index.state() {
        IndexState::Current => {}
        IndexState::Empty if has_packs(&packs_dir)? => {
            return Err(refuse("is empty (it holds no format_version)"));
        }
        IndexState::Empty => index.init_format()?,
        IndexState::Legacy => {
            index.migrate_v1()?;
        }
    }
    Ok(index)
}

/// Whether any pack file exists under `packs_dir`.
fn has_packs(packs_dir: &Path) -> Result<bool> {
    for entry in walkdir::WalkDir::new(packs_dir).min_depth(2).max_depth(2) {
        match entry {
            Ok(e) if e.path().extension().is_some_and(|x| x == "pack") => return Ok(true),
            Ok(_) => {}
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => {}
            Err(e) => return Err(Error::io(packs_dir, e.into())),
        }
    }
    Ok(false)
}

/// Write FORMAT for the current version: temp, fsync, rename, directory fsync.
fn write_format(root: &Path) -> Result<()> {
    let tmp = root.join("FORMAT.tmp");
    let mut f = perms::create_file(&tmp)?;
    writeln!(f, "{FORMAT_PREFIX}{}", index::FORMAT_VERSION)
        .and_then(|_| f.sync_all())
        .at(&tmp)?;
    fs::rename(&tmp, root.join(FORMAT_FILE)).at(root)?;
    pack::sync_dir(root)
}

/// The store's reserve: space set aside so that `rm` works on a full disk
/// (see [`Store::with_reserve`]).
const RESERVE_FILE: &str = "reserve";
/// Enough WAL for dropping an artifact of about 100,000 chunks (6 GiB):
/// each changed index page costs a 4 KiB WAL frame.
const RESERVE_BYTES: usize = 8 * 1024 * 1024;

/// Make the store's reserve file if it is missing and there is room for
/// it; a failure leaves none (it is tried again at the next open).
fn make_reserve(root: &Path) {
    let path = root.join(RESERVE_FILE);
    if fs::symlink_metadata(&path).is_ok() {
        return;
    }
    let tmp = root.join("reserve.tmp");
    let made = (|| -> Result<()> {
        let mut f = perms::create_file(&tmp)?;
        // Bytes that do not compress, so that a compressing filesystem
        // (zfs, btrfs) sets aside real space; written, not fallocated,
        // because NFS may not do fallocate.
        let mut block = vec![0u8; 1024 * 1024];
        for _ in 0..RESERVE_BYTES / block.len() {
            rand::fill(&mut block[..]);
            f.write_all(&block).at(&tmp)?;
        }
        f.sync_all().at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// Whether `e` says the disk (or quota) is full, from the filesystem or
/// from SQLite (SQLITE_FULL: "database or disk is full").
fn is_disk_full(e: &Error) -> bool {
    e.is_no_space()
        || matches!(e, Error::Index { message, .. } if message.contains("database or disk is full"))
}

/// What a store being created holds before its `FORMAT` is written: a
/// directory holding only these (or nothing) is a store in the making, not
/// a foreign directory.
const CREATION_ENTRIES: [&str; 4] = ["init.lock", "packs", "FORMAT.tmp", "index.sqlite"];

/// Whether `root` (which has no `FORMAT`) may become a store: it is
/// missing, empty, or a store another process is creating (or crashed
/// while creating).
fn may_create(root: &Path) -> Result<bool> {
    let entries = match fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(root, e)),
    };
    for e in entries {
        let e = e.at(root)?;
        if !CREATION_ENTRIES.iter().any(|n| e.file_name() == *n) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Create the store at `root`, serialised by `init.lock` so that processes
/// creating it at once (four `put`s into a new store) all end up with it:
/// the first creates it, the others wait, then find its `FORMAT`.
fn create(root: &Path) -> Result<()> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).at(parent)?;
    }
    perms::create_dir(root)?;
    let _creating = InitLock::acquire(root)?;
    match fs::read_to_string(root.join(FORMAT_FILE)) {
        Ok(s) => return check_format(root, &s).map(drop),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(root.join(FORMAT_FILE), e)),
    }
    // Checked again under the lock: nothing but a store in the making may
    // have appeared meanwhile.
    if !may_create(root)? {
        return Err(Error::ForeignDirectory(root.to_owned()));
    }
    // A directory that was there already (made by an installer, say)
    // becomes owner-only too; one that is not ours stays as it is, and
    // `verify` names it.
    match fs::set_permissions(root, fs::Permissions::from_mode(perms::DIR_MODE)) {
        Err(e) if e.raw_os_error() != Some(libc::EPERM) => return Err(Error::io(root, e)),
        _ => {}
    }
    perms::create_dir(&root.join("packs"))?;
    // Created here, 0600, so that SQLite (which gives the -wal and -shm
    // files the mode of the database file) never makes any of them
    // readable by others, whatever the umask.
    let index = root.join("index.sqlite");
    perms::open_file(fs::OpenOptions::new().write(true).create(true), &index)?;
    let tmp = root.join("FORMAT.tmp");
    let mut f = perms::create_file(&tmp)?;
    writeln!(f, "{FORMAT_PREFIX}{}", index::FORMAT_VERSION)
        .and_then(|_| f.sync_all())
        .at(&tmp)?;
    // FORMAT last: until it is there, the store is "in the making".
    fs::rename(&tmp, root.join(FORMAT_FILE)).at(root)?;
    pack::sync_dir(root)
}

/// The files-cache key of a source file, or None when the file changed too
/// recently to trust its timestamps (it may still be changing within one
/// timestamp tick: the "racy git" problem).
fn source_key(path: &Path, md: &fs::Metadata) -> Option<index::SourceKey> {
    use std::os::unix::ffi::OsStrExt;
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    if md.mtime() >= now - 2 || md.ctime() >= now - 2 {
        return None;
    }
    let abs = fs::canonicalize(path).ok()?;
    Some(index::SourceKey {
        path: abs.as_os_str().as_bytes().to_vec(),
        dev: md.dev(),
        ino: md.ino(),
        size: md.len(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    })
}

/// The files `put` stores: (path, name in the artifact, size).
fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String, u64)>> {
    let mut out: Vec<(PathBuf, String, u64)> = Vec::new();
    let mut add = |p: PathBuf, md: fs::Metadata| -> Result<()> {
        let Some(fname) = p.file_name() else {
            return Err(Error::NotRegularFile(p));
        };
        let n = name::from_os("file name", fname)?;
        if out.iter().any(|(_, m, _)| *m == n) {
            return Err(Error::InvalidName {
                kind: "file name",
                name: n,
                why: "given twice; file names in an artifact must be unique",
            });
        }
        out.push((p, n, md.len()));
        Ok(())
    };
    // Links are refused, not followed, even when named on the command line:
    // a glob over a cache that others can write (`put NAME cache/sha/*`)
    // names them too.
    for p in paths {
        let md = fs::symlink_metadata(p).at(p)?;
        if md.is_symlink() {
            return Err(Error::Symlink(p.clone()));
        }
        if md.is_dir() {
            let mut entries: Vec<_> = fs::read_dir(p).at(p)?.collect::<io::Result<_>>().at(p)?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let ep = e.path();
                let emd = fs::symlink_metadata(&ep).at(&ep)?;
                if emd.is_symlink() {
                    return Err(Error::Symlink(ep));
                }
                if emd.is_file() {
                    add(ep, emd)?;
                } else if emd.is_dir() {
                    return Err(Error::NestedDirectory(ep));
                } else {
                    return Err(Error::NotRegularFile(ep));
                }
            }
        } else if md.is_file() {
            add(p.clone(), md)?;
        } else {
            return Err(Error::NotRegularFile(p.clone()));
        }
    }
    Ok(out)
}

fn read_block(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        match r.take(READ_BLOCK as u64).read_to_end(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
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
