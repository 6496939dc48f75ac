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
pub(crate) const WAIT_NOTICE: Duration = Duration::from_secs(1);

pub(crate) fn hostname() -> String {
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

/// The `-shm` files of the indexes this process opened (by inode), for
/// [`notice_index_wait`]: SQLite's busy handler gets no context.
static INDEX_SHM: std::sync::Mutex<Vec<(PathBuf, u64)>> = std::sync::Mutex::new(Vec::new());

/// Remember the index at `index` for [`notice_index_wait`].
pub(crate) fn watch_index(index: &Path) {
    let mut shm = index.as_os_str().to_owned();
    shm.push("-shm");
    let shm = PathBuf::from(shm);
    let Ok(md) = std::fs::metadata(&shm) else {
        return;
    };
    let ino = std::os::unix::fs::MetadataExt::ino(&md);
    let mut watched = INDEX_SHM.lock().unwrap_or_else(|p| p.into_inner());
    if !watched.iter().any(|(p, i)| *p == shm && *i == ino) {
        watched.push((shm, ino));
    }
}

/// Say that this process waits for the index: SQLite's busy handler calls
/// it once per wait, after [`WAIT_NOTICE`]. The writer holds a POSIX write
/// lock on the index's `-shm` file (SQLite's WAL write lock).
pub(crate) fn notice_index_wait() {
    let watched = INDEX_SHM.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut who = String::new();
    let mut path = PathBuf::from("index.sqlite");
    for (shm, ino) in &watched {
        let h = holders_of(*ino, true);
        if !h.is_empty() || who.is_empty() {
            path = shm.with_extension("sqlite");
            who = h.join(", ");
        }
    }
    if who.is_empty() {
        who = "another process".to_owned();
    }
    eprintln!(
        "deploycache: waiting for the store index ({}), which {who} is writing to; \
         this goes on once it is done",
        path.display()
    );
}

/// Who holds an flock on inode `ino`: "pid 123 (deploycache)", from
/// `/proc/locks` (on NFS a lock held on another host shows no local pid).
fn holders(ino: u64) -> String {
    let pids = holders_of(ino, false);
    if pids.is_empty() {
        "a process this host cannot name (on another host, or gone meanwhile)".to_owned()
    } else {
        pids.join(", ")
    }
}

/// Processes other than this one holding a lock on inode `ino` (with
/// `write_only`, write locks only), as "pid 123 (comm)".
fn holders_of(ino: u64, write_only: bool) -> Vec<String> {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let me = std::process::id().to_string();
    let mut pids: Vec<String> = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"; waiters are
        // "1: -> FLOCK ...".
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" || f[4] == me || (write_only && f[3] != "WRITE") {
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
    pids
}

/// Held while a store is being created; see the module doc.
pub(crate) struct InitLock {
    _file: File,
}

impl InitLock {
    pub(crate) fn acquire(root: &Path) -> Result<InitLock> {
        let path: PathBuf = root.join("init.lock");
        let file = open_lock_file(&path)?;
        lock_or_wait(&file, &path, true, "the lock on creating the store")?;
        Ok(InitLock { _file: file })
    }
}

/// Held for as long as the store is open in this process.
pub(crate) struct HostLock {
    _file: File,
}

impl HostLock {
    pub(crate) fn acquire(root: &Path) -> Result<HostLock> {
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
pub(crate) struct GcGuard {
    _file: File,
}

impl GcGuard {
    pub(crate) fn writer(root: &Path) -> Result<GcGuard> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        lock_or_wait(&file, &path, false, "the store's gc lock")?;
        Ok(GcGuard { _file: file })
    }

    /// The gc lock exclusively if nobody holds it now, else None: for work
    /// that is worth doing only when it keeps nobody waiting (the orphan
    /// pack sweep).
    pub(crate) fn try_collector(root: &Path) -> Result<Option<GcGuard>> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcGuard { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}
