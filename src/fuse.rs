//! The mounted view: one directory per artifact of the namespace, each
//! listing its files. fuser lives only in this module.
//!
//! Each handler has two layers: a `View` method holding the logic and
//! returning `Result` (an error's errno comes from [`Error::errno`]), and the
//! `Filesystem` trait method that only replies.
//!
//! Invariants:
//! - Reads never hold a lock across chunk I/O: a read handle owns an `Arc`'d
//!   chunk list ([`FileReader`]) and a one-chunk cache of its own.
//! - A file inode's bytes never change (see `inodes`), so committed content
//!   is opened with `FOPEN_KEEP_CACHE`; a reader that opened earlier content
//!   keeps reading it to the end.
//! - Written bytes become visible only when the last writing handle closes
//!   (commit on flush, so `close()` reports errors such as ENOSPC); a file
//!   whose content is incomplete for its type is quarantined instead
//!   (`check`). Nothing half-written is ever committed.
//! - An artifact with a cut-short (quarantined) file that has not been
//!   written whole since lists as empty, so the deploy scripts' hit test
//!   (`isdir and listdir`) misses and the next run fills it again; its other
//!   files still open by name, and rmdir removes it whole.
//! - A file created through the view is recorded as pending in the index
//!   (a quarantined row, durably) before its first byte is accepted, and
//!   that row goes in the transaction that commits the file. So while it is
//!   being written, and after a crash or a failed write until it is written
//!   whole, its artifact is incomplete to every reader (it lists as empty),
//!   never a hit without it. `stat` by name shows it with its current size,
//!   but opening it for reading fails with ENOENT until it is committed.
//!   While committed content is being overwritten, the name keeps showing
//!   (and serving) the committed content until the writer closes; a failed
//!   overwrite is discarded and the committed content stays.
//! - With `--complete-when PATTERN…` an artifact lists only once a visible
//!   file matches a pattern and no file of it is pending.
//!
//! Lock order (see [`View`]): a session's own mutex may be held while
//! taking `sessions`, `inodes` or `handles` briefly; never the other way
//! round. Code that needs the sessions of a table clones the `Arc`s out and
//! drops the table's lock before locking any of them.

mod inodes;
mod write;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::error::{Error, Result};
use crate::index::{FileRow, LOST, PENDING};
use crate::name;
use crate::store::{FileReader, PrefetchRuns, Store};
use inodes::{FileInfo, Inodes, Node, ROOT};
use write::Session;

pub use crate::check::Check;

/// How long the kernel may cache attributes and directory entries. File
/// entries are not cached: a name must resolve to its newest content.
const ATTR_TTL: Duration = Duration::from_secs(1);
const DIR_ENTRY_TTL: Duration = Duration::from_secs(1);
const FILE_ENTRY_TTL: Duration = Duration::ZERO;
const BLKSIZE: u32 = 128 * 1024;
/// The mount's type is `fuse.` + this.
const FS_SUBTYPE: &str = "deploycache";

/// Options of `deploycache mount`.
#[derive(Clone, Debug, Default)]
pub struct MountConfig {
    pub read_only: bool,
    pub allow_other: bool,
    /// Request-handling threads.
    pub threads: usize,
    /// Glob patterns (`opnfv-bootstraps-cache.tar`, `env_*.yaml`): an
    /// artifact lists only once a visible file matches one of them and no
    /// file of it is pending. Empty: every complete artifact lists.
    pub complete_when: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error carrying a plain errno (EPERM, ENOTEMPTY, …), naming what it is about.
fn errno_err(errno: i32, what: impl Into<PathBuf>) -> Error {
    Error::io(what, io::Error::from_raw_os_error(errno))
}

/// One line to the log (stderr; the daemon's stderr is its log file).
pub fn log_line(msg: &str) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    eprintln!("{now} deploycache mount: {msg}");
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn time_ns(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::Now => now_ns(),
        TimeOrNow::SpecificTime(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

/// A file open for reading: its own chunk list and last decoded chunk.
struct ReadHandle {
    reader: FileReader,
    last: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    /// Chunks below this index have been handed to the kernel's read-ahead.
    prefetched: std::sync::atomic::AtomicUsize,
    /// The chunk of the last decode (usize::MAX before the first), to tell
    /// sequential readers from random ones.
    last_chunk: std::sync::atomic::AtomicUsize,
    /// What the sequential prefetch last asked for, per pack.
    runs: Mutex<PrefetchRuns>,
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
    fn read(&self, store: &Store, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<usize> {
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

enum Handle {
    Read(Arc<ReadHandle>),
    /// Open for writing (or reading and writing) on a session's inode.
    Write(u64),
}

/// The filesystem: the store, the inode table, open handles and sessions.
///
/// Lock order: a `Session`'s mutex, then at most one of `sessions`,
/// `inodes`, `handles` (each held only for a map operation). Never lock a
/// session while holding a table: clone the `Arc`s out of `sessions` and
/// drop its guard first (as `View::sessions_snapshot` does). A commit
/// holds its session while it leaves `sessions`, so the reverse order
/// deadlocks (rmdir against a closing `cp` did, before this rule).
pub struct View {
    store: Store,
    read_only: bool,
    uid: u32,
    gid: u32,
    started: SystemTime,
    spill_dir: PathBuf,
    complete_when: Option<globset::GlobSet>,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
}

/// `statfs` numbers of the store's filesystem.
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub frsize: u32,
}

impl View {
    pub fn new(store: Store, read_only: bool, complete_when: Option<globset::GlobSet>) -> View {
        let (uid, gid) = current_ids();
        View {
            spill_dir: store.root().join("tmp"),
            store,
            read_only,
            complete_when,
            uid,
            gid,
            started: SystemTime::now(),
            inodes: Mutex::new(Inodes::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(errno_err(libc::EROFS, self.store.root()))
        } else {
            Ok(())
        }
    }

    fn dir_attr(&self, ino: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn file_attr(&self, ino: u64, info: FileInfo) -> FileAttr {
        let t = system_time(info.mtime_ns);
        FileAttr {
            ino: INodeNo(ino),
            size: info.size,
            blocks: info.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: FileType::RegularFile,
            perm: (info.mode & 0o7777) as u16,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn artifact(&self, dir: u64) -> Result<String> {
        lock(&self.inodes)
            .dir_name(dir)
            .ok_or_else(|| errno_err(libc::ENOENT, format!("inode {dir}")))
    }

    fn session(&self, ino: u64) -> Option<Arc<Mutex<Session>>> {
        lock(&self.sessions).get(&ino).cloned()
    }

    /// Every session, cloned out of the table so that none is locked while
    /// the table is (the lock order of [`View`]).
    fn sessions_snapshot(&self) -> Vec<(u64, Arc<Mutex<Session>>)> {
        lock(&self.sessions)
            .iter()
            .map(|(i, s)| (*i, s.clone()))
            .collect()
    }

    /// A created file still being written at `dir/name`.
    fn created_session(&self, dir: u64, name: &str) -> Option<(u64, Arc<Mutex<Session>>)> {
        self.sessions_snapshot().into_iter().find(|(_, s)| {
            let s = lock(s);
            s.created && !s.unlinked && s.dir == dir && s.name == name
        })
    }

    fn session_info(s: &Session) -> FileInfo {
        FileInfo {
            size: s.size(),
            mode: s.mode,
            mtime_ns: s.mtime_ns.unwrap_or_else(now_ns),
        }
    }

    // ---- lookups and listings ----------------------------------------------

    pub fn lookup_entry(&self, parent: u64, name: &OsStr) -> Result<(FileAttr, Duration)> {
        // A name the store cannot hold is simply not there (or too long).
        let name = name::from_os("name", name).map_err(|e| match e.errno() {
            libc::ENAMETOOLONG => e,
            _ => errno_err(libc::ENOENT, name.to_string_lossy().into_owned()),
        })?;
        if parent == ROOT {
            if !self
                .store
                .index()
                .artifact_exists(self.store.namespace(), &name)?
            {
                return Err(Error::NoArtifact(name));
            }
            let ino = lock(&self.inodes).dir(&name);
            return Ok((self.dir_attr(ino), DIR_ENTRY_TTL));
        }
        let artifact = self.artifact(parent)?;
        if let Some((ino, s)) = self.created_session(parent, &name) {
            let info = Self::session_info(&lock(&s));
            return Ok((self.file_attr(ino, info), FILE_ENTRY_TTL));
        }
        let row = self
            .store
            .index()
            .file(self.store.namespace(), &artifact, &name)?;
        let info = FileInfo {
            size: row.meta.size,
            mode: row.meta.mode,
            mtime_ns: row.meta.mtime_ns,
        };
        let ino = lock(&self.inodes).file(parent, (row.id, row.hash), &name, info);
        Ok((self.file_attr(ino, info), FILE_ENTRY_TTL))
    }

    pub fn attr_of(&self, ino: u64) -> Result<FileAttr> {
        let node = lock(&self.inodes).get(ino).cloned();
        match node {
            Some(Node::Root) | Some(Node::Dir { .. }) => Ok(self.dir_attr(ino)),
            Some(Node::File { row, info, .. }) => {
                if let Some(s) = self.session(ino) {
                    let s = lock(&s);
                    if s.created {
                        return Ok(self.file_attr(ino, Self::session_info(&s)));
                    }
                }
                let Some(row) = row else {
                    return Ok(self.file_attr(ino, info));
                };
                // Mode and mtime may change (chmod, utimes); size never does.
                let fresh = self
                    .store
                    .index()
                    .file_by_id(row.0)?
                    .filter(|r| r.hash == row.1);
                let info = match fresh {
                    Some(r) => {
                        let info = FileInfo {
                            size: r.meta.size,
                            mode: r.meta.mode,
                            mtime_ns: r.meta.mtime_ns,
                        };
                        lock(&self.inodes).set_info(ino, info);
                        info
                    }
                    None => info,
                };
                Ok(self.file_attr(ino, info))
            }
            None => Err(errno_err(libc::ENOENT, format!("inode {ino}"))),
        }
    }

    /// Entries of a directory (without `.` and `..`).
    pub fn list_dir(&self, ino: u64) -> Result<Vec<(u64, FileType, String)>> {
        if ino == ROOT {
            let names = self.store.artifact_names()?;
            let mut inodes = lock(&self.inodes);
            return Ok(names
                .into_iter()
                .map(|n| (inodes.dir(&n), FileType::Directory, n))
                .collect());
        }
        let artifact = self.artifact(ino)?;
        let rows = self.store.list_files(&artifact)?;
        if !self.store.missing_files(&artifact)?.is_empty() || !self.completed(&artifact, &rows)? {
            // A cut-short, lost or pending file makes its artifact list as
            // empty, so the deploy scripts' hit test (listdir non-empty)
            // misses and the next run fills it again. Lookups by name
            // still work.
            return Ok(Vec::new());
        }
        let mut out: Vec<(u64, FileType, String)> = {
            let mut inodes = lock(&self.inodes);
            rows.into_iter()
                .map(|r| {
                    let info = FileInfo {
                        size: r.meta.size,
                        mode: r.meta.mode,
                        mtime_ns: r.meta.mtime_ns,
                    };
                    let i = inodes.file(ino, (r.id, r.hash), &r.meta.name, info);
                    (i, FileType::RegularFile, r.meta.name)
                })
                .collect()
        };
        for (i, s) in self.sessions_snapshot() {
            let s = lock(&s);
            if s.created && !s.unlinked && s.dir == ino && !out.iter().any(|e| e.2 == s.name) {
                out.push((i, FileType::RegularFile, s.name.clone()));
            }
        }
        out.sort_by(|a, b| a.2.cmp(&b.2));
        Ok(out)
    }

    /// `--complete-when`: a visible file matches a pattern and no file of
    /// the artifact is pending (here or in another process).
    fn completed(&self, artifact: &str, rows: &[FileRow]) -> Result<bool> {
        let Some(set) = &self.complete_when else {
            return Ok(true);
        };
        if !rows.iter().any(|r| set.is_match(&r.meta.name)) {
            return Ok(false);
        }
        Ok(!self.store.has_pending(artifact, PENDING)?)
    }

    pub fn statfs(&self) -> Result<FsStats> {
        statvfs(self.store.root())
    }

    // ---- directories ---------------------------------------------------------

    pub fn make_dir(&self, parent: u64, name: &OsStr) -> Result<FileAttr> {
        self.writable()?;
        let name = name::from_os("artifact name", name)?;
        if parent != ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: artifacts hold files only, no subdirectories"),
            ));
        }
        self.store
            .index()
            .create_artifact(self.store.namespace(), &name)?;
        let ino = lock(&self.inodes).dir(&name);
        Ok(self.dir_attr(ino))
    }

    pub fn remove_dir(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable()?;
        let name = name::from_os("artifact name", name)?;
        if parent != ROOT {
            return Err(errno_err(libc::ENOTDIR, name));
        }
        let files = self.store.list_files(&name)?;
        let dir = lock(&self.inodes).dir(&name);
        let writing = self.sessions_snapshot().iter().any(|(_, s)| {
            let s = lock(s);
            s.dir == dir && !s.unlinked
        });
        // An incomplete artifact lists as empty, so it removes as empty:
        // whole, with the files it hides (`rm -rf` of it must work).
        let incomplete = !files.is_empty() && !self.store.missing_files(&name)?.is_empty();
        if (!files.is_empty() && !incomplete) || writing {
            return Err(errno_err(libc::ENOTEMPTY, name));
        }
        self.store.remove(&name)?;
        lock(&self.inodes).forget_dir(&name);
        Ok(())
    }

    // ---- opening, reading, writing -----------------------------------------

    fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, h);
        fh
    }

    /// Create a file in an artifact directory and open it for writing.
    pub fn create_file(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64)> {
        self.writable()?;
        let name = name::from_os("file name", name)?;
        if parent == ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: the root holds artifact directories only"),
            ));
        }
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return Err(errno_err(libc::EPERM, name));
        }
        let artifact = self.artifact(parent)?;
        let excl = flags & libc::O_EXCL != 0;
        // The kernel sends a create for a name it believed absent; a second
        // writer racing the first (or a stale negative entry) finds it here
        // and, without O_EXCL, opens it as open(2) would.
        if let Some((ino, _)) = self.created_session(parent, &name) {
            if excl {
                return Err(errno_err(libc::EEXIST, name));
            }
            return self.create_as_open(ino, flags);
        }
        if let Ok(row) = self
            .store
            .index()
            .file(self.store.namespace(), &artifact, &name)
        {
            if excl {
                return Err(errno_err(libc::EEXIST, name));
            }
            let info = FileInfo {
                size: row.meta.size,
                mode: row.meta.mode,
                mtime_ns: row.meta.mtime_ns,
            };
            let ino = lock(&self.inodes).file(parent, (row.id, row.hash), &name, info);
            return self.create_as_open(ino, flags);
        }
        let perm = mode & 0o7777;
        // `>>` onto a file kept aside as cut short goes on from its bytes,
        // as it would in a plain directory, instead of silently starting
        // an empty file under the same name.
        let resumed = if flags & libc::O_APPEND != 0 {
            self.quarantined_content(&artifact, &name)?
        } else {
            None
        };
        let mut s = Session::new(&self.store, parent, &name, resumed, perm, true)?;
        // Durable before the first byte is accepted: a crash or a failed
        // write from here on leaves the artifact incomplete, never a hit.
        let reason = format!("{PENDING} (pid {})", std::process::id());
        s.pending = Some(self.store.begin_pending(&artifact, &name, &reason)?);
        s.writers = 1;
        let ino = lock(&self.inodes).created(parent, &name, perm, now_ns());
        let info = Self::session_info(&s);
        // A created file replaces any earlier one of its name only at commit.
        lock(&self.sessions).insert(ino, Arc::new(Mutex::new(s)));
        let fh = self.new_fh(Handle::Write(ino));
        Ok((self.file_attr(ino, info), fh))
    }

    /// The newest content kept aside (quarantined) under `artifact/name`.
    fn quarantined_content(&self, artifact: &str, name: &str) -> Result<Option<FileReader>> {
        let newest =
            self.store.list_quarantine()?.into_iter().find(|q| {
                q.artifact == artifact && q.file.meta.name == name && q.file.meta.size > 0
            });
        match newest {
            Some(q) => {
                log_line(&format!(
                    "{artifact}/{name}: appending to the {} bytes kept aside ({})",
                    q.file.meta.size, q.reason
                ));
                self.store.open_file_id(artifact, q.file.id).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A create of a name that exists: open it for writing instead.
    fn create_as_open(&self, ino: u64, flags: i32) -> Result<(FileAttr, u64)> {
        let (fh, _) = self.open_file(ino, flags)?;
        match self.attr_of(ino) {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                let _ = self.release(fh);
                Err(e)
            }
        }
    }

    pub fn open_file(&self, ino: u64, flags: i32) -> Result<(u64, FopenFlags)> {
        let node = lock(&self.inodes).get(ino).cloned();
        let Some(Node::File { dir, name, row, .. }) = node else {
            return Err(errno_err(libc::EISDIR, format!("inode {ino}")));
        };
        let writing = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        if !writing {
            if let Some(s) = self.session(ino) {
                if lock(&s).created {
                    return Err(errno_err(
                        libc::ENOENT,
                        format!("{name} (still being written)"),
                    ));
                }
            }
            let Some(row) = row else {
                return Err(errno_err(
                    libc::ENOENT,
                    format!("{name} (still being written)"),
                ));
            };
            let artifact = self.artifact(dir).unwrap_or_default();
            let reader = self.open_version(&artifact, row)?;
            let fh = self.new_fh(Handle::Read(Arc::new(ReadHandle {
                reader,
                last: Mutex::new(None),
                prefetched: std::sync::atomic::AtomicUsize::new(0),
                last_chunk: std::sync::atomic::AtomicUsize::new(usize::MAX),
                runs: Mutex::new(PrefetchRuns::new()),
            })));
            return Ok((fh, FopenFlags::FOPEN_KEEP_CACHE));
        }
        self.writable()?;
        let trunc = flags & libc::O_TRUNC != 0;
        let s = self.session_for(ino, trunc)?;
        {
            let mut s = lock(&s);
            s.writers += 1;
            if trunc {
                // O_TRUNC arrives here (FUSE_ATOMIC_O_TRUNC, asked for in
                // init). It empties the session, but does not count as the
                // writer's own change: a shell's `open; dup2; close` of a
                // redirection must not commit the empty file on that close
                // (flush), only the writes that follow or the last release.
                let touched = s.touched;
                s.truncate(&self.store, &self.spill_dir, 0)?;
                s.touched = touched;
                s.dirty = true;
            }
        }
        // Direct I/O: written bytes never enter the page cache of an inode
        // whose committed content other readers may hold.
        Ok((self.new_fh(Handle::Write(ino)), FopenFlags::FOPEN_DIRECT_IO))
    }

    /// The session writing `ino`, started (over its committed content) if none.
    fn session_for(&self, ino: u64, trunc: bool) -> Result<Arc<Mutex<Session>>> {
        if let Some(s) = self.session(ino) {
            return Ok(s);
        }
        let node = lock(&self.inodes).get(ino).cloned();
        let Some(Node::File {
            dir,
            name,
            row,
            info,
        }) = node
        else {
            return Err(errno_err(libc::ENOENT, format!("inode {ino}")));
        };
        let artifact = self.artifact(dir)?;
        // The base is the name's current content: a session restarted after
        // a commit on flush (a descriptor still open through a dup) goes on
        // over what that flush committed, which has a newer row than this
        // inode's.
        let current = match row {
            Some(_) => self
                .store
                .index()
                .file(self.store.namespace(), &artifact, &name)
                .ok()
                .map(|r| (r.id, r.hash)),
            None => None,
        };
        let base = match (current.or(row), trunc) {
            (Some(r), false) => Some(self.open_version(&artifact, r)?),
            _ => None,
        };
        let s = Session::new(
            &self.store,
            dir,
            &name,
            base,
            info.mode & 0o7777,
            row.is_none(),
        )?;
        let arc = Arc::new(Mutex::new(s));
        // Locked before it is in the table: whoever finds it there waits
        // until its pending row is recorded (session, then table: the
        // lock order of `View`).
        let mut s = lock(&arc);
        {
            let mut sessions = lock(&self.sessions);
            if let Some(other) = sessions.get(&ino) {
                // Another request started one meanwhile.
                return Ok(other.clone());
            }
            sessions.insert(ino, arc.clone());
        }
        // Pending before anything changes: an overwrite in flight (or lost)
        // leaves the artifact incomplete too, since what it replaces need
        // not be what the writer meant to be there.
        let reason = format!("{PENDING} (pid {})", std::process::id());
        match self.store.begin_pending(&artifact, &name, &reason) {
            Ok(id) => s.pending = Some(id),
            Err(e) => {
                s.done = true;
                lock(&self.sessions).remove(&ino);
                return Err(e);
            }
        }
        drop(s);
        Ok(arc)
    }

    /// Open one committed content; fails with ENOENT once it was replaced.
    fn open_version(&self, artifact: &str, v: inodes::Version) -> Result<FileReader> {
        let r = self.store.open_file_id(artifact, v.0)?;
        if r.row.hash != v.1 {
            return Err(errno_err(
                libc::ENOENT,
                format!("{artifact}/{}: replaced meanwhile", r.file),
            ));
        }
        Ok(r)
    }

    fn handle_ino(&self, fh: u64) -> Result<Option<u64>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::Write(ino)) => Ok(Some(*ino)),
            Some(Handle::Read(_)) => Ok(None),
            None => Err(errno_err(libc::EBADF, format!("file handle {fh}"))),
        }
    }

    /// Read into the front of `buf`; returns the byte count.
    pub fn read(&self, fh: u64, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<usize> {
        let h = match lock(&self.handles).get(&fh) {
            Some(Handle::Read(h)) => Ok(h.clone()),
            Some(Handle::Write(ino)) => Err(*ino),
            None => return Err(errno_err(libc::EBADF, format!("file handle {fh}"))),
        };
        match h {
            Ok(h) => h.read(&self.store, offset, size, buf).inspect_err(|e| {
                log_line(&format!(
                    "read of {}/{} at {offset} failed: {e}",
                    h.reader.artifact, h.reader.file
                ))
            }),
            Err(ino) => {
                let s = self.session_for(ino, false)?;
                let mut s = lock(&s);
                let data = s.read(&self.store, &self.spill_dir, offset, size)?;
                if buf.len() < data.len() {
                    buf.resize(data.len(), 0);
                }
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8], owner: Option<u64>) -> Result<u32> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Err(errno_err(
                libc::EBADF,
                format!("file handle {fh} is read-only"),
            ));
        };
        let s = self.session_for(ino, false)?;
        let mut s = lock(&s);
        if let Some(e) = s.failed {
            return Err(errno_err(e, &s.name));
        }
        if owner.is_some() {
            s.owner = owner;
        }
        if s.writers == 0 {
            // The session was restarted after a commit on flush (a dup'd fd).
            s.writers = 1;
        }
        match s.write(&self.store, &self.spill_dir, offset, data) {
            Ok(()) => Ok(data.len() as u32),
            Err(e) => {
                log_line(&format!("writing {}: {e}", s.name));
                s.failed = Some(e.errno());
                Err(e)
            }
        }
    }

    /// close(): commit when this is the last handle writing the file and
    /// the closing process is the one that wrote, so the file is visible
    /// when close() returns and the closing program sees any error. Other
    /// sessions commit on their last release.
    pub fn flush(&self, fh: u64, owner: u64) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Ok(());
        };
        let Some(s) = self.session(ino) else {
            return Ok(());
        };
        let last = {
            let s = lock(&s);
            s.writers <= 1 && s.touched && s.owner.is_none_or(|o| o == owner)
        };
        if last {
            self.commit(ino)
        } else {
            match lock(&s).failed {
                Some(e) => Err(errno_err(e, format!("inode {ino}"))),
                None => Ok(()),
            }
        }
    }

    pub fn fsync(&self, fh: u64) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Ok(());
        };
        match self.session(ino).and_then(|s| lock(&s).failed) {
            Some(e) => Err(errno_err(e, format!("inode {ino}"))),
            None => Ok(()),
        }
    }

    /// fallocate(2). The store keeps no preallocated space, so only growing
    /// the file (mode 0) has an effect, as a truncate up would; KEEP_SIZE
    /// is accepted and changes nothing; punching holes and the other modes
    /// are refused with EOPNOTSUPP, as file systems without them do (glibc's
    /// posix_fallocate then writes zeros itself).
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Err(errno_err(
                libc::EBADF,
                format!("file handle {fh} is read-only"),
            ));
        };
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(errno_err(libc::EOPNOTSUPP, format!("inode {ino}")));
        }
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(length)
            .ok_or_else(|| errno_err(libc::EFBIG, format!("inode {ino}")))?;
        if end > self.attr_of(ino)?.size {
            self.set_attr(ino, None, Some(end), None)?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) -> Result<()> {
        let h = lock(&self.handles).remove(&fh);
        let Some(Handle::Write(ino)) = h else {
            return Ok(());
        };
        let Some(s) = self.session(ino) else {
            return Ok(());
        };
        let last = {
            let mut s = lock(&s);
            s.writers = s.writers.saturating_sub(1);
            s.writers == 0
        };
        if last {
            self.commit(ino)
        } else {
            Ok(())
        }
    }

    /// Finish the session of `ino`: commit, quarantine, or discard.
    fn commit(&self, ino: u64) -> Result<()> {
        let Some(arc) = self.session(ino) else {
            return Ok(());
        };
        let mut s = lock(&arc);
        if s.done {
            return Ok(());
        }
        s.done = true;
        let res = self.finish_session(ino, &mut s);
        // Leave the map only now, still holding the session: whoever waited
        // on it sees `done` and finds the committed file.
        let mut map = lock(&self.sessions);
        if map.get(&ino).is_some_and(|x| Arc::ptr_eq(x, &arc)) {
            map.remove(&ino);
        }
        res
    }

    fn finish_session(&self, ino: u64, s: &mut Session) -> Result<()> {
        if s.unlinked || !s.dirty || s.failed.is_some() {
            if let Some(e) = s.failed {
                log_line(&format!("{}: discarded after a failed write", s.name));
                // Its chunks belong to no file: give their pack space back
                // (a full disk retires the packs being appended to, so what
                // the lost write put there can be cut away).
                s.abandon();
                if e == libc::ENOSPC || e == libc::EDQUOT {
                    self.store.abandon_writes();
                } else {
                    self.store.reclaim_retired();
                }
                let lost = format!(
                    "{LOST}: a write failed ({}); write it again",
                    io::Error::from_raw_os_error(e)
                );
                self.end_pending(s, (!s.unlinked).then_some(lost.as_str()));
                return Err(errno_err(e, &s.name));
            }
            self.end_pending(s, None);
            return Ok(());
        }
        let res = self.commit_session(ino, s);
        if let Err(e) = &res {
            log_line(&format!(
                "committing {}: {e}; nothing was committed",
                s.name
            ));
            let lost = format!("{LOST}: its commit failed ({e}); write it again");
            self.end_pending(s, Some(&lost));
        }
        res
    }

    /// Clear a session's pending row, or relabel it as lost (best effort:
    /// on a full disk it stays pending, which keeps its artifact incomplete
    /// all the same).
    fn end_pending(&self, s: &mut Session, lost: Option<&str>) {
        if let Some(id) = s.pending.take() {
            if let Err(e) = self.store.end_pending(id, lost) {
                log_line(&format!("{}: cannot update its pending row: {e}", s.name));
            }
        }
    }

    fn commit_session(&self, ino: u64, s: &mut Session) -> Result<()> {
        let artifact = self.artifact(s.dir)?;
        let (staged, verdict) = s.finish(&self.store, &self.spill_dir)?;
        let info = FileInfo {
            size: staged.meta.size,
            mode: staged.meta.mode,
            mtime_ns: staged.meta.mtime_ns,
        };
        match verdict {
            Ok(()) => {
                self.store.commit_file(&artifact, staged, s.pending)?;
                s.pending = None;
                let row = self
                    .store
                    .index()
                    .file(self.store.namespace(), &artifact, &s.name)?;
                let mut inodes = lock(&self.inodes);
                if s.created {
                    inodes.committed(ino, (row.id, row.hash), s.dir, &s.name, info);
                } else {
                    inodes.file(s.dir, (row.id, row.hash), &s.name, info);
                }
                Ok(())
            }
            Err(reason) => {
                log_line(&format!(
                    "{artifact}/{}: incomplete, kept aside in quarantine (see `deploycache ls --quarantine`): {reason}; \
                     {artifact} lists no files until {} is written whole",
                    s.name,
                    name::intended(&s.name)
                ));
                self.store
                    .quarantine_file(&artifact, staged, &reason, s.pending)?;
                s.pending = None;
                Ok(())
            }
        }
    }

    // ---- attributes, names ---------------------------------------------------

    pub fn set_attr(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr> {
        if mode.is_none() && size.is_none() && mtime.is_none() {
            return self.attr_of(ino);
        }
        let is_dir =
            matches!(lock(&self.inodes).get(ino), Some(n) if !matches!(n, Node::File { .. }));
        if is_dir {
            // Directories have no stored mode or times: accepted, unchanged
            // (so `cp -a` and `rsync -a` of a tree succeed).
            return Ok(self.dir_attr(ino));
        }
        self.writable()?;
        let mode = mode.map(|m| m & 0o7777);
        let mtime_ns = mtime.map(time_ns);
        if let Some(arc) = self.session(ino) {
            // Waits for a commit in progress; a done session takes no changes.
            let mut s = lock(&arc);
            if !s.done {
                if let Some(m) = mode {
                    s.mode = m;
                    s.dirty = true;
                }
                if let Some(t) = mtime_ns {
                    s.mtime_ns = Some(t);
                    s.dirty = true;
                }
                if let Some(n) = size {
                    s.truncate(&self.store, &self.spill_dir, n)?;
                }
                if s.created {
                    return Ok(self.file_attr(ino, Self::session_info(&s)));
                }
                drop(s);
                return self.attr_of(ino);
            }
        }
        // Read after any commit we waited for above.
        let node = lock(&self.inodes).get(ino).cloned();
        let Some(Node::File { dir, name, row, .. }) = node else {
            return Err(errno_err(libc::ENOENT, format!("inode {ino}")));
        };
        let Some(row) = row else {
            return self.attr_of(ino);
        };
        let artifact = self.artifact(dir)?;
        if mode.is_some() || mtime_ns.is_some() {
            self.store.index().update_file_meta(
                self.store.namespace(),
                &artifact,
                &name,
                mode,
                mtime_ns,
            )?;
        }
        if let Some(n) = size {
            let current = self
                .store
                .index()
                .file_by_id(row.0)?
                .filter(|r| r.hash == row.1)
                .map(|r| r.meta.size);
            if current != Some(n) {
                // truncate(2) of a committed file: a new content, committed at once.
                let s = self.session_for(ino, false)?;
                lock(&s).truncate(&self.store, &self.spill_dir, n)?;
                self.commit(ino)?;
            }
        }
        self.attr_of(ino)
    }

    pub fn unlink_file(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable()?;
        let name = name::from_os("file name", name)?;
        let artifact = self.artifact(parent)?;
        let mut found = false;
        if let Some((_, s)) = self.created_session(parent, &name) {
            lock(&s).unlinked = true;
            found = true;
        }
        match self
            .store
            .index()
            .file(self.store.namespace(), &artifact, &name)
        {
            Ok(row) => {
                let ino = lock(&self.inodes).of_row((row.id, row.hash));
                if let Some(ino) = ino {
                    if let Some(s) = self.session(ino) {
                        lock(&s).unlinked = true;
                    }
                }
            }
            Err(Error::NoFile { .. }) if found => return Ok(()),
            Err(e) => return Err(e),
        }
        self.store
            .index()
            .remove_file(self.store.namespace(), &artifact, &name)
    }

    pub fn rename_entry(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        let name = name::from_os("name", name)?;
        let newname = name::from_os("name", newname)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(errno_err(libc::EINVAL, name));
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let ns = self.store.namespace().to_owned();
        if parent == ROOT && newparent == ROOT {
            if noreplace && self.store.index().artifact_exists(&ns, &newname)? {
                return Err(errno_err(libc::EEXIST, newname));
            }
            match self.store.index().rename_artifact(&ns, &name, &newname) {
                Err(Error::ArtifactExists(n)) => return Err(errno_err(libc::ENOTEMPTY, n)),
                other => other?,
            }
            lock(&self.inodes).rename_dir(&name, &newname);
            return Ok(());
        }
        if parent == ROOT || newparent == ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: artifacts hold files only, and the root holds artifacts only"),
            ));
        }
        let (from_a, to_a) = (self.artifact(parent)?, self.artifact(newparent)?);
        let target_exists = self.created_session(newparent, &newname).is_some()
            || self.store.index().file(&ns, &to_a, &newname).is_ok();
        if noreplace && target_exists {
            return Err(errno_err(libc::EEXIST, newname));
        }
        if let Some((_, s)) = self.created_session(newparent, &newname) {
            lock(&s).unlinked = true;
        }
        if let Some((ino, s)) = self.created_session(parent, &name) {
            let mut s = lock(&s);
            if let Some(id) = s.pending {
                self.store.move_pending(id, &to_a, &newname)?;
            }
            s.dir = newparent;
            s.name = newname.clone();
            lock(&self.inodes).set_place(ino, newparent, &newname);
            return Ok(());
        }
        let row = self.store.index().file(&ns, &from_a, &name)?;
        self.store
            .index()
            .rename_file(&ns, (&from_a, &name), (&to_a, &newname))?;
        let ino = lock(&self.inodes).of_row((row.id, row.hash));
        if let Some(ino) = ino {
            if let Some(s) = self.session(ino) {
                let mut s = lock(&s);
                s.dir = newparent;
                s.name = newname.clone();
            }
            lock(&self.inodes).set_place(ino, newparent, &newname);
        }
        Ok(())
    }
}

fn current_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

fn statvfs(path: &Path) -> Result<FsStats> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::io(path, e.into()))?;
    Ok(FsStats {
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        files: st.f_files,
        ffree: st.f_ffree,
        bsize: u32::try_from(st.f_bsize).unwrap_or(u32::MAX),
        frsize: u32::try_from(st.f_frsize).unwrap_or(u32::MAX),
    })
}

fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

impl Filesystem for View {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config
            .set_max_readahead(u32::MAX)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        // O_TRUNC comes with the open, not as a separate setattr(size=0)
        // before it: see `open_file`.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_entry(parent.0, name) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Ownership is not stored: chown is accepted and changes nothing.
        match self.set_attr(ino.0, mode, size, mtime) {
            Ok(attr) => reply.attr(&ATTR_TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.make_dir(parent.0, name) {
            Ok(attr) => reply.entry(&DIR_ENTRY_TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.unlink_file(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove_dir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.rename_entry(parent.0, name, newparent.0, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino.0, flags.0) {
            Ok((fh, f)) => reply.opened(FileHandle(fh), f),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        thread_local! {
            /// Each FUSE thread's read buffer, reused across requests.
            static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        READ_BUF.with_borrow_mut(|buf| match self.read(fh.0, offset, size, buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(&e)),
        })
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write(fh.0, offset, data, lock_owner.map(|o| o.0)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.flush(fh.0, lock_owner.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.list_dir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (ino.0, FileType::Directory, ".".to_owned()),
            (ROOT, FileType::Directory, "..".to_owned()),
        ];
        for (i, (child, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are index transactions, durable when they return.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.bfree,
                s.bavail,
                s.files,
                s.ffree,
                s.bsize,
                name::MAX_NAME_BYTES as u32,
                s.frsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(parent.0, name, mode, flags) {
            Ok((attr, fh)) => reply.created(
                &FILE_ENTRY_TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// Serve `store` at `mountpoint` until it is unmounted or the process gets
/// SIGINT, SIGTERM or SIGHUP (which unmount cleanly).
pub fn mount(store: Store, mountpoint: &Path, cfg: &MountConfig) -> Result<()> {
    prepare_mountpoint(mountpoint)?;
    let root = store.root().to_owned();
    let complete_when = complete_when_set(&cfg.complete_when)?;
    if !cfg.read_only {
        relabel_lost(&store)?;
    }
    let view = View::new(store, cfg.read_only, complete_when);
    let mut config = Config::default();
    // The store is the mount's source and `fuse.deploycache` its type, as
    // sshfs shows `user@host:path` and `fuse.sshfs`: `findmnt -t
    // fuse.deploycache` finds it, and `mount -a` sees an fstab line of that
    // store already mounted. As root fuser calls mount(2) itself with type
    // "fuse" and leaves the subtype to fusermount3, so the subtype goes to
    // the kernel as an option (which fusermount3 would refuse a second
    // time).
    let source = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    config.mount_options = vec![
        MountOption::FSName(source.to_string_lossy().into_owned()),
        if current_ids().0 == 0 {
            MountOption::CUSTOM(format!("subtype={FS_SUBTYPE}"))
        } else {
            MountOption::Subtype(FS_SUBTYPE.into())
        },
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        if cfg.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    config.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(cfg.threads.max(1));
    let mut session = fuser::Session::new(view, mountpoint, &config).map_err(|e| {
        // A bare ENOENT from here means FUSE itself is missing, not the path.
        let hint = if !Path::new("/dev/fuse").exists() {
            "; /dev/fuse is missing: install fuse3 (apt-get install fuse3) or load the module (modprobe fuse)"
        } else if e.kind() == io::ErrorKind::NotFound {
            "; is fusermount3 installed (apt-get install fuse3)?"
        } else if e.kind() == io::ErrorKind::PermissionDenied && current_ids().0 != 0 {
            "; a user other than root needs read and write access to /dev/fuse \
             (mode 0666, as Debian's fuse3 sets it) and a setuid fusermount3"
        } else {
            ""
        };
        Error::io(
            mountpoint,
            io::Error::new(e.kind(), format!("cannot mount: {e}{hint}")),
        )
    })?;
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Error::io(mountpoint, e))?;
    let signal_handle = signals.handle();
    let mp = mountpoint.to_owned();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            log_line(&format!("signal {sig}: unmounting {}", mp.display()));
            match unmounter.unmount() {
                Ok(()) => break,
                Err(e) => log_line(&format!(
                    "cannot unmount {} yet ({e}); close the files open there and signal again",
                    mp.display()
                )),
            }
        }
    });
    log_line(&format!(
        "serving store {} at {} ({} threads{})",
        root.display(),
        mountpoint.display(),
        cfg.threads.max(1),
        if cfg.read_only { ", read-only" } else { "" }
    ));
    let mp = mountpoint.to_owned();
    std::thread::spawn(move || raise_read_ahead(&mp));
    let res = session.run().map_err(|e| Error::io(mountpoint, e));
    signal_handle.close();
    log_line(&format!("unmounted {}", mountpoint.display()));
    res
}

/// `--complete-when` patterns, compiled; a bad one names itself.
fn complete_when_set(patterns: &[String]) -> Result<Option<globset::GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidName {
                kind: "--complete-when pattern",
                name: p.clone(),
                why: glob_why(&e),
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| Error::InvalidName {
        kind: "--complete-when pattern",
        name: patterns.join(" "),
        why: glob_why(&e),
    })
}

fn glob_why(e: &globset::Error) -> &'static str {
    match e.kind() {
        globset::ErrorKind::UnclosedClass => "a `[` class is not closed",
        globset::ErrorKind::UnclosedAlternates => "a `{` alternation is not closed",
        globset::ErrorKind::UnopenedAlternates => "a `}` has no `{`",
        globset::ErrorKind::NestedAlternates => "alternations cannot nest",
        globset::ErrorKind::DanglingEscape => "it ends with a lone `\\`",
        _ => "not a valid glob (see glob(7))",
    }
}

/// Pending rows whose daemon is gone (killed, crashed, the machine went
/// down) stand for files lost in flight: say so, so that `ls --quarantine`
/// tells the user. They keep their artifacts incomplete either way.
fn relabel_lost(store: &Store) -> Result<()> {
    for (id, artifact, reason) in store.pending_rows(PENDING)? {
        let pid = reason
            .rsplit_once("(pid ")
            .and_then(|(_, p)| p.trim_end_matches(')').parse::<u32>().ok());
        if pid.is_some_and(daemon_alive) {
            continue;
        }
        log_line(&format!(
            "{artifact}: a file was being written when its mount stopped; the artifact stays incomplete until it is written whole"
        ));
        store.end_pending(
            id,
            Some(&format!(
                "{LOST}: its mount stopped (killed, crashed or disk full) before it was written whole; write it again"
            )),
        )?;
    }
    Ok(())
}

/// A live deploycache process with this pid (not a reused pid).
fn daemon_alive(pid: u32) -> bool {
    // This process is only starting to serve: a row with its pid is an
    // earlier process's that had the same pid.
    pid != std::process::id()
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .is_some_and(|a| a.ends_with(b"deploycache"))
            })
            .unwrap_or(false)
}

/// The kernel gives a FUSE mount 128 KiB of read-ahead, whatever the
/// INIT reply asks for: sequential reads then arrive as 128 KiB requests,
/// each a round trip. The mount's read-ahead is raised through sysfs (as
/// root), so cold sequential reads arrive as 1 MiB requests (`max_write`
/// caps each) several at a time and the daemon's pack prefetch can run ahead.
const READ_AHEAD_KB: u32 = 4096;

/// Set the mount's read-ahead once it serves; best effort, logged.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..200 {
        if is_mounted(mountpoint) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    match std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        Ok(()) => log_line(&format!("read-ahead {READ_AHEAD_KB} KiB ({knob})")),
        Err(e) => log_line(&format!(
            "read-ahead left at the kernel's 128 KiB: cannot write {knob}: {e}"
        )),
    }
}

/// True when `path` is a mount point (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.join("..");
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Make `mountpoint` ready for a new mount. A deploycache mount whose
/// daemon is gone (every access fails with ENOTCONN, as after a `kill -9` or
/// an OOM kill of the daemon) is unmounted, saying so on stderr, so that
/// restarting a mount just works. A live deploycache mount there is an error
/// (mounting again would stack a second view over it), and so is a dead FUSE
/// mount of another program, which is left alone.
pub fn prepare_mountpoint(mountpoint: &Path) -> Result<()> {
    let refuse = |why: String| Err(Error::io(mountpoint, io::Error::other(why)));
    let dead = match std::fs::read_dir(mountpoint) {
        Err(e) if is_dead(&e) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return refuse(format!(
                "cannot mount: no such directory; create it first (mkdir -p {})",
                mountpoint.display()
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return refuse("cannot mount: not a directory".into())
        }
        _ if is_mounted(mountpoint) => false,
        _ => return Ok(()),
    };
    let info = "/proc/self/mountinfo";
    let table = std::fs::read_to_string(info).map_err(|e| Error::io(info, e))?;
    let at = absolute(mountpoint);
    // The last entry for the path is the mount on top.
    let ours = table
        .lines()
        .rev()
        .filter_map(MountEntry::parse)
        .find(|m| Some(&m.point) == at.as_ref())
        .is_some_and(|m| m.is_deploycache());
    match (dead, ours) {
        (false, true) => refuse(format!(
            "cannot mount: a deploycache mount is already serving here; \
             `deploycache umount {}` first to mount it anew",
            mountpoint.display()
        )),
        (false, false) => Ok(()),
        (true, false) => refuse(format!(
            "cannot mount: a dead FUSE mount of another program is here \
             (transport endpoint is not connected); remove it with \
             `fusermount3 -u {}` and mount again",
            mountpoint.display()
        )),
        (true, true) => {
            unmount(mountpoint).or_else(|_| unmount_lazily(mountpoint))?;
            log_line(&format!(
                "{} was a deploycache mount whose daemon had exited; unmounted it",
                mountpoint.display()
            ));
            Ok(())
        }
    }
}

/// Whether listing a mount point failed because its FUSE daemon is gone.
/// (Listing, not stat: the kernel may still answer a stat from cached
/// attributes.)
fn is_dead(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

/// `path` made absolute without resolving its last component (which may be
/// a dead mount that cannot be looked at).
fn absolute(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

/// One line of `/proc/self/mountinfo` (proc(5)): the fields we need.
#[derive(Debug)]
struct MountEntry {
    point: PathBuf,
    fstype: String,
    source: String,
}

impl MountEntry {
    fn parse(line: &str) -> Option<MountEntry> {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        Some(MountEntry {
            point: PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(unescape_octal(
                    fields.get(4)?,
                )),
            ),
            fstype: (*fields.get(sep + 1)?).to_owned(),
            source: String::from_utf8_lossy(&unescape_octal(fields.get(sep + 2)?)).into_owned(),
        })
    }

    /// Mounted by `deploycache mount`: type "fuse.deploycache" (the store
    /// as its source), or, from a daemon of an earlier version, type
    /// "fuse" with source "deploycache".
    fn is_deploycache(&self) -> bool {
        self.fstype == format!("fuse.{FS_SUBTYPE}")
            || (self.fstype == "fuse" && self.source == FS_SUBTYPE)
    }
}

/// mountinfo writes space, tab, newline and backslash in names as `\NNN`.
fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4);
        match digits {
            Some(d) if b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// `fusermount3 -uz`: detach a mount still in use (a shell's working
/// directory inside a dead mount keeps a plain unmount busy).
fn unmount_lazily(path: &Path) -> Result<()> {
    let ok = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(Error::io(
            path,
            io::Error::other("cannot unmount the dead mount there; run `umount -l` on it"),
        ))
    }
}

/// `deploycache umount`: unmount `path`, with errors that say what to do
/// (nothing mounted there; busy, and how to find out by whom).
pub fn umount(path: &Path, lazy: bool) -> Result<()> {
    let refuse = |why: String| Err(Error::io(path, io::Error::other(why)));
    let dead = std::fs::read_dir(path).is_err_and(|e| is_dead(&e));
    if !dead && !is_mounted(path) {
        return refuse(if path.exists() {
            "cannot unmount: nothing is mounted there".into()
        } else {
            "cannot unmount: no such directory".into()
        });
    }
    if lazy {
        return unmount_lazily(path);
    }
    match unmount(path) {
        Err(e) if e.to_string().contains("busy") => refuse(format!(
            "cannot unmount: busy: a process has a file open or its working directory \
             there (`fuser -vm {0}` lists them); close them, or `deploycache umount --lazy {0}`",
            path.display()
        )),
        res => res,
    }
}

/// Unmount a deploycache mount (`fusermount3 -u`, or umount(8) as root).
pub fn unmount(path: &Path) -> Result<()> {
    // The C locale: `umount` below recognises "busy" in its message.
    let out = std::process::Command::new("fusermount3")
        .env("LC_ALL", "C")
        .arg("-u")
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            let o = std::process::Command::new("umount").arg(path).output();
            match o {
                Ok(o) if o.status.success() => Ok(()),
                _ => Err(Error::io(
                    path,
                    io::Error::other(format!("cannot unmount: {why}")),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escaped_names() {
        let root =
            "43 27 0:39 / /tmp/ex/mnt rw,nosuid,nodev,relatime - fuse deploycache rw,user_id=0";
        let e = MountEntry::parse(root).unwrap();
        assert_eq!(e.point, PathBuf::from("/tmp/ex/mnt"));
        assert!(e.is_deploycache());
        // Optional fields before the separator; a space and a backslash in
        // the mount point; the subtype fusermount3 gives a user's mount.
        let user = r"51 27 0:41 / /srv/deploy\040cache/a\134b rw shared:7 master:1 - fuse.deploycache deploycache rw";
        let e = MountEntry::parse(user).unwrap();
        assert_eq!(e.point, PathBuf::from(r"/srv/deploy cache/a\b"));
        assert!(e.is_deploycache());
        let now = "52 27 0:42 / /iso/c rw - fuse.deploycache /var/lib/deploycache rw";
        assert!(MountEntry::parse(now).unwrap().is_deploycache());
        let sshfs = "60 27 0:45 / /mnt/x rw - fuse.sshfs host:/dir rw";
        assert!(!MountEntry::parse(sshfs).unwrap().is_deploycache());
        assert!(MountEntry::parse("garbage").is_none());
        // A backslash not followed by three octal digits is kept as is.
        assert_eq!(unescape_octal(r"a\9b\12"), br"a\9b\12".to_vec());
    }
}
