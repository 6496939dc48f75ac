//! The mounted view: one directory per artifact of the namespace, each
//! listing its files. fuser lives only in this module.
//!
//! Each handler has two layers: a `View` method holding the logic and
//! returning `Result` (an error's errno comes from [`Error::errno`]), and the
//! `Filesystem` trait method that only replies.
//!
//! Invariants:
//! - A read handle is a [`FileReader`]: the view asks it for bytes and
//!   knows nothing of chunks. It holds no lock across chunk I/O.
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
//!
//! Where things are:
//! - `view`: the [`View`] (its state and lock order), lookups, listings
//!   and attributes;
//! - `handles`: opening, reading, writing, closing and committing files;
//! - `names`: mkdir, rmdir, unlink and rename;
//! - `write`: a file being written;
//! - `inodes`: the inode table;
//! - `adapter`: the `Filesystem` trait methods, which only reply;
//! - `mountpoint`: mounting, unmounting and the mount table;
//! - `gc`: the mount's own gc thread (`mount --gc-max-size …`);
//! - `convert`: the mount's background converter of gzip files;
//! - `cold`: reads of gzip-form files without a hot copy, one shared
//!   rebuild per file.
//!
//! [`FileReader`]: crate::store::FileReader

mod adapter;
mod cold;
mod convert;
mod gc;
mod handles;
mod inodes;
mod mountpoint;
mod names;
mod remote_sync;
mod view;
mod write;

use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::TimeOrNow;

use crate::error::Error;

pub use crate::check::Check;
pub use gc::{GcConfig, DEFAULT_INTERVAL as DEFAULT_GC_INTERVAL};
pub use mountpoint::{is_mounted, mount, prepare_mountpoint, umount, unmount, MountConfig};
pub use view::{FsStats, View};

/// How long the kernel may cache attributes and directory entries. File
/// entries are not cached: a name must resolve to its newest content.
const ATTR_TTL: Duration = Duration::from_secs(1);
const DIR_ENTRY_TTL: Duration = Duration::from_secs(1);
const FILE_ENTRY_TTL: Duration = Duration::ZERO;
const BLKSIZE: u32 = 128 * 1024;

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
