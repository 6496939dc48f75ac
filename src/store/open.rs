//! Opening a store: creating it (several processes at once), checking
//! and migrating its FORMAT and index, the reserve that lets `rm` work on
//! a full disk, and the sweep of packs a killed writer left behind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::journal::ManifestLog;
use super::pool::Pool;
use super::write::PendingChunks;
use super::{
    lock, OpenOptions, Store, StoreCore, FORMAT_FILE, FORMAT_PREFIX, INDEX_FILE, PACK_LANES,
};
use crate::error::{Error, IoContext, Result};
use crate::index::{self, Index, IndexState};
use crate::lock::{GcGuard, HostLock, InitLock};
use crate::name;
use crate::pack::{self, LocalPackStore, PackName, PackStore};
use crate::perms;
use crate::remote::RemotePacks;

/// What [`Store::sweep_orphan_packs`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub packs: u64,
    pub bytes: u64,
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
        let remote = super::remote::resolve(root, opts.remote.as_ref())?;
        let local = LocalPackStore::new(root.join("packs"));
        let packs: Arc<dyn PackStore> = match &remote {
            Some(link) => Arc::new(RemotePacks::new(
                local,
                link.bucket.clone(),
                root.join("remote-cache"),
                opts.cache_size.unwrap_or(super::DEFAULT_CACHE_SIZE),
            )),
            None => Arc::new(local),
        };
        let index = open_index(root, &packs)?;
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
            packs,
            index: Mutex::new(index),
            writers: (0..PACK_LANES).map(|_| Mutex::new(None)).collect(),
            next_lane: std::sync::atomic::AtomicUsize::new(0),
            sealing: Mutex::new(Vec::new()),
            failed_packs: Mutex::new(HashSet::new()),
            pending: Mutex::new(PendingChunks::default()),
            retired: Mutex::new(Vec::new()),
            created_packs: Mutex::new(HashMap::new()),
            recent_files: Mutex::new(VecDeque::new()),
            open_artifacts: Mutex::new(HashMap::new()),
        });
        Ok(Store {
            pool: Pool::start(workers, Arc::downgrade(&core), opts.compression),
            core,
            ns: opts.namespace,
            workers,
            exposure,
            uses: Default::default(),
            remote,
            _host: host,
        })
    }

    /// Let go of the packs this process's writers append to that no write
    /// in progress holds (their dead tails cut, as after 30 s of
    /// idleness): the mount's own gc calls it before each run, so that
    /// it can reclaim what was written and removed through the mount
    /// since, instead of finding it held ("a writer may still append").
    pub fn let_go_of_idle_packs(&self) {
        self.core.retire_idle_lanes();
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
        let Some(_gc) = GcGuard::try_collector(&self.core.root)? else {
            return Ok(None);
        };
        // Read under the lock: every commit of a chunk happens under
        // gc.lock shared, so this list is complete until the lock goes.
        let indexed: HashSet<PackName> = self.index().packs()?.into_iter().collect();
        let mine: HashSet<PackName> = lock(&self.core.created_packs).keys().copied().collect();
        let mut swept = Swept::default();
        for p in self.core.packs.list()? {
            if indexed.contains(&p.name) || mine.contains(&p.name) {
                continue;
            }
            // A pack still being appended to is its writer's (flocked).
            if let Some(bytes) = self.core.packs.delete_if_idle(p.name)? {
                swept.packs += 1;
                swept.bytes += bytes;
            }
        }
        Ok(Some(swept))
    }
}

/// The store's format version from its FORMAT file: the current one, or an
/// older one (1, 2, 3: migrated when the store is opened).
pub(super) fn check_format(root: &Path, s: &str) -> Result<u32> {
    let found = s.trim();
    match found
        .strip_prefix(FORMAT_PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(v) if (1..=index::FORMAT_VERSION).contains(&v) => Ok(v),
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
fn open_index(root: &Path, packs: &Arc<dyn PackStore>) -> Result<Index> {
    let path = root.join(INDEX_FILE);
    let has_packs = || packs.list().map(|l| !l.is_empty());
    let refuse = |why| Error::IndexMissing {
        path: path.clone(),
        store: root.to_owned(),
        why,
    };
    if !path.exists() && has_packs()? {
        return Err(refuse("is missing"));
    }
    let mut index = Index::open(&path)?;
    index.set_journal(Box::new(ManifestLog::new(root, packs.clone())));
    match index.state() {
        IndexState::Current => {}
        IndexState::Empty if has_packs()? => {
            return Err(refuse("is empty (it holds no format_version)"));
        }
        IndexState::Empty => index.init_format()?,
        IndexState::Legacy => {
            index.migrate_v1()?;
            index.migrate_v4()?;
        }
        IndexState::Old => {
            index.migrate_v4()?;
        }
    }
    Ok(index)
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
pub(super) const RESERVE_FILE: &str = "reserve";
/// Enough WAL for dropping an artifact of about 100,000 chunks (6 GiB):
/// each changed index page costs a 4 KiB WAL frame.
const RESERVE_BYTES: usize = 8 * 1024 * 1024;

/// Make the store's reserve file if it is missing and there is room for
/// it; a failure leaves none (it is tried again at the next open).
pub(super) fn make_reserve(root: &Path) {
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
pub(super) fn is_disk_full(e: &Error) -> bool {
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
    // FORMAT last: until it is there, the store is "in the making".
    write_format(root)
}

/// The kind of network filesystem `path` (or the nearest directory above it
/// that exists) is on, if it is on one: SQLite's WAL needs shared memory
/// that works only between processes of one host, and its locks are not
/// to be trusted over NFS, so a store's index must not live there (share
/// a cache between hosts through a remote instead).
pub fn network_filesystem(path: &Path) -> Option<&'static str> {
    let mut p = path;
    let st = loop {
        match rustix::fs::statfs(p) {
            Ok(st) => break st,
            Err(_) => p = p.parent()?,
        }
    };
    network_fs_name(st.f_type as i64)
}

/// The name of network filesystem type `magic` (`statfs.f_type`).
fn network_fs_name(magic: i64) -> Option<&'static str> {
    Some(match magic as u32 {
        0x6969 => "NFS",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x517B => "SMB",
        0x00C3_6400 => "CephFS",
        0x0102_1997 => "9P",
        0x5346_414F => "AFS",
        0x0BD0_0BD0 => "Lustre",
        _ => return None,
    })
}

#[cfg(test)]
mod network_fs_tests {
    use super::*;

    #[test]
    fn network_filesystems_are_named_and_local_ones_are_not() {
        assert_eq!(network_fs_name(0x6969), Some("NFS"));
        assert_eq!(network_fs_name(0xFF53_4D42_u32 as i64), Some("CIFS"));
        assert_eq!(network_fs_name(0xEF53), None, "ext4");
        assert_eq!(network_fs_name(0x0102_1994), None, "tmpfs");
        // A local directory (and one not made yet, by its parent).
        let t = tempfile::tempdir().unwrap();
        assert_eq!(network_filesystem(t.path()), None);
        assert_eq!(network_filesystem(&t.path().join("not/yet")), None);
    }
}
