//! Store-wide locks (store-layout.md, "Locks").
//!
//! - `lock` + `owner`: one host at a time. Every process holds a shared flock
//!   on `lock` while it has the store open. The first process on a host
//!   (the one that gets the flock exclusively) writes its host name to
//!   `owner`, then downgrades to shared. A process that cannot get it
//!   exclusively waits for shared and reads `owner`: another host's name
//!   means another host is using the store, and we refuse. On NFS, flock is
//!   carried by NFS byte-range locks, which are seen across hosts.
//! - `gc.lock`: writers hold it shared from their first chunk until their
//!   index commit; gc takes it exclusively to delete chunks, so a writer
//!   never references a chunk that gc is about to delete.
//! - `init.lock`: held exclusively while a store is created (store.rs), so
//!   that processes creating one store at once do not take each other's
//!   half-made store for a foreign directory.
//!
//! A process that has to wait for a lock says so on stderr after
//! [`WAIT_NOTICE`], once, naming the lock and the processes holding it (from
//! `/proc/locks`): a lock held by a stuck or foreign process must not look
//! like a hang of deploycache.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::perms;

/// How long a process waits on a lock before it says what it waits for.
pub const WAIT_NOTICE: Duration = Duration::from_secs(1);

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    perms::open_file(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        path,
    )
}

/// Take `file`'s flock (exclusive or shared), blocking; after
/// [`WAIT_NOTICE`] of waiting, say once on stderr that we wait for `what`
/// and who holds it.
pub(crate) fn lock_or_wait(file: &File, path: &Path, exclusive: bool, what: &str) -> Result<()> {
    let tried = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match tried {
        Ok(()) => return Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
    }
    let ino = std::os::unix::fs::MetadataExt::ino(&file.metadata().at(path)?);
    let (done, waiting) = mpsc::channel::<()>();
    let what = what.to_owned();
    let shown = path.to_owned();
    let notice = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(WAIT_NOTICE) {
            eprintln!(
                "deploycache: waiting for {what} ({}), held by {}; this goes on once it is released",
                shown.display(),
                holders(ino)
            );
        }
    });
    let res = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    drop(done);
    let _ = notice.join();
    res.at(path)
}

/// Who holds an flock on inode `ino`: "pid 123 (deploycache)", from
/// `/proc/locks` (on NFS a lock held on another host shows no local pid).
fn holders(ino: u64) -> String {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut pids: Vec<String> = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"; waiters are
        // "1: -> FLOCK ...".
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" {
            continue;
        }
        let inode = f[5].rsplit(':').next().and_then(|i| i.parse::<u64>().ok());
        if inode != Some(ino) {
            continue;
        }
        let pid = f[4];
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let who = match comm.trim() {
            "" => format!("pid {pid}"),
            c => format!("pid {pid} ({c})"),
        };
        if !pids.contains(&who) {
            pids.push(who);
        }
    }
    if pids.is_empty() {
        "a process this host cannot name (on another host, or gone meanwhile)".to_owned()
    } else {
        pids.join(", ")
    }
}

/// Held while a store is being created; see the module doc.
pub struct InitLock {
    _file: File,
}

impl InitLock {
    pub fn acquire(root: &Path) -> Result<InitLock> {
        let path: PathBuf = root.join("init.lock");
        let file = open_lock_file(&path)?;
        lock_or_wait(&file, &path, true, "the lock on creating the store")?;
        Ok(InitLock { _file: file })
    }
}

/// Held for as long as the store is open in this process.
pub struct HostLock {
    _file: File,
}

impl HostLock {
    pub fn acquire(root: &Path) -> Result<HostLock> {
        let lock_path = root.join("lock");
        let owner_path = root.join("owner");
        let file = open_lock_file(&lock_path)?;
        let me = hostname();
        match file.try_lock() {
            Ok(()) => {
                // Nobody anywhere holds the store: claim it for this host
                // (no write when it is ours already: a full disk must not
                // keep us from reading).
                let current = std::fs::read_to_string(&owner_path).unwrap_or_default();
                if current.trim() == me {
                    file.lock_shared().at(&lock_path)?;
                    return Ok(HostLock { _file: file });
                }
                let tmp = root.join("owner.tmp");
                let mut f = perms::create_file(&tmp)?;
                writeln!(f, "{me}").and_then(|_| f.sync_all()).at(&tmp)?;
                std::fs::rename(&tmp, &owner_path).at(&owner_path)?;
                file.lock_shared().at(&lock_path)?;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                lock_or_wait(&file, &lock_path, false, "the store's host lock")?;
                let owner = std::fs::read_to_string(&owner_path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                if !owner.is_empty() && owner != me {
                    return Err(Error::HeldByOtherHost {
                        path: root.to_owned(),
                        host: owner,
                    });
                }
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        Ok(HostLock { _file: file })
    }
}

/// Shared while a writer has uncommitted chunk references; exclusive for gc.
pub struct GcGuard {
    _file: File,
}

impl GcGuard {
    pub fn writer(root: &Path) -> Result<GcGuard> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        lock_or_wait(&file, &path, false, "the store's gc lock")?;
        Ok(GcGuard { _file: file })
    }

    pub fn collector(root: &Path) -> Result<GcGuard> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        lock_or_wait(&file, &path, true, "the store's gc lock")?;
        Ok(GcGuard { _file: file })
    }

    /// The gc lock exclusively if nobody holds it now, else None: for work
    /// that is worth doing only when it keeps nobody waiting (the orphan
    /// pack sweep).
    pub fn try_collector(root: &Path) -> Result<Option<GcGuard>> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcGuard { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}
