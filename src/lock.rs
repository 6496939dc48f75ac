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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)
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
                // Nobody anywhere holds the store: claim it for this host.
                let tmp = root.join("owner.tmp");
                let mut f = File::create(&tmp).at(&tmp)?;
                writeln!(f, "{me}").and_then(|_| f.sync_all()).at(&tmp)?;
                std::fs::rename(&tmp, &owner_path).at(&owner_path)?;
                file.lock_shared().at(&lock_path)?;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                file.lock_shared().at(&lock_path)?;
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
        file.lock_shared().at(&path)?;
        Ok(GcGuard { _file: file })
    }

    pub fn collector(root: &Path) -> Result<GcGuard> {
        let path = root.join("gc.lock");
        let file = open_lock_file(&path)?;
        file.lock().at(&path)?;
        Ok(GcGuard { _file: file })
    }
}
