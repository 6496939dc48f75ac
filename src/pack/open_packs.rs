//! The reader's cache of open pack files: bounded, least recently used
//! first out, and never serving a pack that was deleted on disk for long.
//!
//! Why bounded: a store of 64 GiB has about 1,000 packs; a daemon that kept
//! every pack it ever read open would reach the default limit of 1,024 open
//! files. Why revalidated: an unlinked pack kept open keeps its space, so
//! gc's freed bytes would not show in `df` while the daemon lives. An entry
//! older than [`RECHECK`] is checked with one `fstat` (link count 0:
//! dropped and reopened by path, which then fails with ENOENT, so the
//! caller looks the chunk's location up again). A pack this process
//! deletes leaves the cache at once ([`OpenPacks::forget`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PackName;
use crate::error::{IoContext, Result};

/// Packs kept open at most: far below the usual limit of 1,024 open files,
/// and far above what a sequential read or a handful of parallel ones use.
const MAX_OPEN_PACKS: usize = 128;

/// How long an open pack is trusted before its link count is checked again.
const RECHECK: Duration = Duration::from_secs(5);

struct Entry {
    file: Arc<File>,
    used: u64,
    checked: Instant,
}

#[derive(Default)]
pub(super) struct OpenPacks {
    entries: HashMap<PackName, Entry>,
    tick: u64,
}

impl OpenPacks {
    /// The open pack `p`, opened from `path()` when not cached (or when
    /// the cached one was deleted meanwhile).
    pub(super) fn get(&mut self, p: PackName, path: impl FnOnce() -> PathBuf) -> Result<Arc<File>> {
        self.tick += 1;
        let now = Instant::now();
        if let Some(e) = self.entries.get_mut(&p) {
            let due = now.duration_since(e.checked) >= RECHECK;
            let gone = due && e.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
            if !gone {
                e.used = self.tick;
                if due {
                    e.checked = now;
                }
                return Ok(e.file.clone());
            }
            self.entries.remove(&p);
        }
        let path = path();
        let file = Arc::new(File::open(&path).at(&path)?);
        if self.entries.len() >= MAX_OPEN_PACKS {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            p,
            Entry {
                file: file.clone(),
                used: self.tick,
                checked: now,
            },
        );
        Ok(file)
    }

    /// Drop `p` from the cache (it is being deleted).
    pub(super) fn forget(&mut self, p: PackName) {
        self.entries.remove(&p);
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
