//! Packs as files under the store's `packs/` directory
//! (`packs/<2 hex>/<32 hex>.pack`): reads by `pread` through a bounded
//! cache of open files, read-ahead by `posix_fadvise`, appends by `writev`
//! with early writeback, durability by `fdatasync` and a directory fsync.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{Location, PackName, RecordHead, RecordKind, PACK_MAGIC};
use super::open_packs::OpenPacks;
use super::{EncodedChunk, PackHandle, PackInfo, PackSink, PackStore};
use crate::error::{Error, IoContext, Result};

/// Writeback of a pack being appended to is started (not waited for) each
/// time this many bytes have been appended since the last start, so that the
/// disk writes while chunks are still being made, and the fsync a commit
/// needs finds little left to write (BENCHMARKS.md has the figures).
/// RocksDB's `bytes_per_sync` does the same.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// The packs of a store on a local (or NFS) filesystem.
pub struct LocalPackStore {
    dir: PathBuf,
    /// Packs open for reading (bounded; see `open_packs`).
    open: Mutex<OpenPacks>,
    /// Pack files [`PackStore::list`] found outside the directory their
    /// name puts them in (`packs/<2 hex>/`), by where they are: nothing
    /// points into them, but they are still listed, counted and swept,
    /// like every `*.pack` file under `packs/`.
    strays: Mutex<HashMap<PackName, PathBuf>>,
}

impl LocalPackStore {
    /// The packs under `packs_dir` (created with the first pack).
    pub fn new(packs_dir: impl Into<PathBuf>) -> LocalPackStore {
        LocalPackStore {
            dir: packs_dir.into(),
            open: Mutex::new(OpenPacks::default()),
            strays: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, p: PackName) -> PathBuf {
        match lock(&self.strays).get(&p) {
            Some(stray) => stray.clone(),
            None => p.path(&self.dir),
        }
    }

    fn cache(&self) -> MutexGuard<'_, OpenPacks> {
        lock(&self.open)
    }

    /// The open file of pack `p`. The cache's lock is not held while the
    /// caller reads from it.
    fn file(&self, p: PackName) -> Result<Arc<File>> {
        self.cache().get(p, || self.path(p))
    }

    /// `p` is gone: out of the cache and the strays.
    fn forget(&self, p: PackName) {
        self.cache().forget(p);
        lock(&self.strays).remove(&p);
    }
}

/// An open pack file: it reads the pack's bytes for as long as it is held,
/// even once the pack is unlinked (POSIX keeps an unlinked open file; NFS
/// keeps it as `.nfsXXXX` until closed).
struct LocalHandle {
    file: Arc<File>,
    path: PathBuf,
}

impl PackHandle for LocalHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_exact(&self.file, offset, buf).map_err(|e| Error::io(&self.path, e))
    }

    fn prefetch(&self, offset: u64, len: u64) {
        will_need(&self.file, offset, len);
    }
}

/// `pread` of exactly `buf.len()` bytes; a short pack says so.
fn read_exact(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "pack is shorter than the index says (it ends before byte {} of a read at {offset})",
                    offset + buf.len() as u64
                ),
            )
        } else {
            e
        }
    })
}

/// Start reading `len` bytes at `offset` into the page cache
/// (POSIX_FADV_WILLNEED), without waiting. Best effort.
fn will_need(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::WillNeed,
    );
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these mutexes is valid between statements: a panic
    // elsewhere must not wedge every reader.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PackStore for LocalPackStore {
    fn create(&self) -> Result<Box<dyn PackSink>> {
        Ok(Box::new(PackWriter::create(&self.dir)?))
    }

    fn read_at(&self, pack: PackName, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = self.file(pack)?;
        read_exact(&file, offset, buf).map_err(|e| Error::io(self.path(pack), e))
    }

    fn prefetch(&self, pack: PackName, offset: u64, len: u64) {
        if let Ok(f) = self.file(pack) {
            will_need(&f, offset, len);
        }
    }

    fn open(&self, pack: PackName) -> Result<Arc<dyn PackHandle>> {
        Ok(Arc::new(LocalHandle {
            file: self.file(pack)?,
            path: self.path(pack),
        }))
    }

    fn list(&self) -> Result<Vec<PackInfo>> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir).min_depth(2).max_depth(2) {
            let entry = match entry {
                Ok(e) => e,
                // No packs directory yet: no packs.
                Err(e) if e.depth() == 0 && is_not_found(&e) => break,
                Err(e) => {
                    let at = e.path().unwrap_or(&self.dir).to_owned();
                    return Err(Error::io(at, e.into()));
                }
            };
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(PackName::parse)
            else {
                continue;
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                // Deleted since the directory was read (gc, the sweep).
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(Error::io(entry.path(), e.into())),
            };
            let home = name.path(&self.dir);
            if entry.path() != home {
                if home.exists() {
                    continue; // a copy of a pack: the pack is listed
                }
                lock(&self.strays).insert(name, entry.into_path());
            }
            out.push(PackInfo { name, size });
        }
        out.sort_by_key(|p| p.name);
        Ok(out)
    }

    fn size(&self, pack: PackName) -> Result<u64> {
        let path = self.path(pack);
        Ok(fs::metadata(&path).at(&path)?.len())
    }

    fn delete(&self, pack: PackName) -> Result<()> {
        let path = self.path(pack);
        self.forget(pack);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }

    fn truncate(&self, pack: PackName, len: u64) -> Result<()> {
        let path = self.path(pack);
        let f = OpenOptions::new().write(true).open(&path).at(&path)?;
        if f.metadata().at(&path)?.len() > len {
            f.set_len(len).at(&path)?;
            f.sync_all().at(&path)?;
        }
        Ok(())
    }

    fn delete_if_idle(&self, pack: PackName) -> Result<Option<u64>> {
        let path = self.path(pack);
        // Write access: on NFS an exclusive flock is a write lock, which
        // needs a descriptor open for writing.
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        // A writer holds its pack locked while it may still append
        // (`PackWriter::create`).
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        let len = file.metadata().at(&path)?.len();
        self.forget(pack);
        fs::remove_file(&path).at(&path)?;
        Ok(Some(len))
    }

    fn writer_holds(&self, pack: PackName) -> Result<bool> {
        let path = self.path(pack);
        // As in `delete_if_idle`: the writer's flock says it may append.
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
        }
    }

    fn describe(&self, pack: PackName) -> String {
        self.path(pack).display().to_string()
    }

    fn open_count(&self) -> usize {
        self.cache().len()
    }
}

fn is_not_found(e: &walkdir::Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound)
}

/// A pack file this process appends to.
pub struct PackWriter {
    pub name: PackName,
    path: PathBuf,
    file: File,
    len: u64,
    synced_len: u64,
    /// Writeback has been started for every byte below this.
    writeback_len: u64,
    dir_synced: bool,
}

impl PackWriter {
    /// A new pack under `packs_dir`, its header written, locked for this
    /// process.
    pub fn create(packs_dir: &Path) -> Result<Self> {
        let name = PackName::random();
        let path = name.path(packs_dir);
        let dir = path.parent().expect("pack path has a parent");
        crate::perms::create_dir(packs_dir)?;
        crate::perms::create_dir(dir)?;
        let mut file =
            crate::perms::open_file(OpenOptions::new().write(true).create_new(true), &path)?;
        // Held while this process may still append: the orphan sweep
        // (`Store::sweep_orphan_packs`) and gc never delete a pack they
        // cannot lock (store-layout.md, "How gc reclaims space"). Nobody
        // can sweep between the create and this lock: a writer creates
        // packs only while it holds gc.lock shared, and a sweep needs it
        // exclusively.
        let header = file.lock().and_then(|()| file.write_all(PACK_MAGIC));
        if let Err(e) = header {
            // A full disk fails the header: every chunk a writer then tries
            // would leave one more empty pack file behind (23 for one `put`
            // on a full tmpfs) that nothing but gc's sweep removes. Nobody
            // else has seen this name (it is new, and random).
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(&path, e));
        }
        Ok(PackWriter {
            name,
            path,
            file,
            len: PACK_MAGIC.len() as u64,
            synced_len: 0,
            writeback_len: 0,
            dir_synced: false,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= PACK_MAGIC.len() as u64
    }

    /// Append one record of kind `magic` ([`super::RECORD_MAGIC`] or
    /// [`super::MANIFEST_MAGIC`]; `raw` is its decoded bytes); returns
    /// where its payload is. The manifest log's form of
    /// [`PackSink::append`].
    pub fn append_record(
        &mut self,
        magic: &[u8; 4],
        chunk: &EncodedChunk,
        raw: &[u8],
    ) -> Result<Location> {
        let kind = RecordKind::from_magic(magic).ok_or_else(|| {
            Error::io(
                &self.path,
                io::Error::new(io::ErrorKind::InvalidInput, "unknown record kind"),
            )
        })?;
        self.append(&chunk.head(kind), chunk.payload(raw))
    }

    /// Make everything appended so far durable (file data and its directory entry).
    pub fn sync(&mut self) -> Result<()> {
        if self.synced_len == self.len {
            return Ok(());
        }
        self.file.sync_data().at(&self.path)?;
        if !self.dir_synced {
            let dir = self.path.parent().expect("pack path has a parent");
            sync_dir(dir)?;
            self.dir_synced = true;
        }
        self.synced_len = self.len;
        Ok(())
    }
}

impl PackSink for PackWriter {
    fn name(&self) -> PackName {
        self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, head: &RecordHead, payload: &[u8]) -> Result<Location> {
        let stored_len = u32::try_from(payload.len()).map_err(|_| {
            Error::io(
                &self.path,
                io::Error::new(io::ErrorKind::InvalidInput, "record payload over 4 GiB"),
            )
        })?;
        let header = head.encode(stored_len);
        if let Err(e) = write_all_pair(&mut self.file, &header, payload) {
            // A partial record may be on disk; nothing will point at it, but
            // later appends must not land after garbage of unknown length.
            let _ = self.file.set_len(self.len);
            return Err(Error::io(&self.path, e));
        }
        let offset = self.len + header.len() as u64;
        self.len = offset + payload.len() as u64;
        if self.len - self.writeback_len >= WRITEBACK_STEP {
            start_writeback(
                &self.file,
                self.writeback_len,
                self.len - self.writeback_len,
            );
            self.writeback_len = self.len;
        }
        Ok(Location {
            pack: self.name,
            offset,
            stored_len,
            raw_len: head.raw_len,
            codec: head.codec,
        })
    }

    fn sync(&mut self) -> Result<()> {
        PackWriter::sync(self)
    }

    fn seal(mut self: Box<Self>) -> Result<()> {
        // Dropping the file lets go of its lock: the pack is complete.
        PackWriter::sync(&mut self)
    }
}

/// Ask the kernel to start writing `len` bytes at `offset` to disk, without
/// waiting. Only a hint: durability still comes from `sync`, which reports
/// any error, so this one's result is ignored.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes no pointers; the descriptor is borrowed
    // from a `File` that outlives the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Write `a` then `b` with as few syscalls as the kernel allows (one writev).
fn write_all_pair(file: &mut File, a: &[u8], b: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let total = a.len() + b.len();
    while done < total {
        let n = if done < a.len() {
            file.write_vectored(&[io::IoSlice::new(&a[done..]), io::IoSlice::new(b)])
        } else {
            file.write(&b[done - a.len()..])
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Make a directory's entries durable (after a create or rename in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
