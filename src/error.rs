//! The library's error type. Every variant says what failed, on which path,
//! artifact or chunk, and (where there is one) what the user can do.
//! [`Error::errno`] is the single place that maps an error to the errno the
//! FUSE view replies with.

use std::io;
use std::path::PathBuf;

use crate::id::ChunkId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {error}{}", path.display(), io_hint(error.raw_os_error()))]
    Io { path: PathBuf, error: io::Error },

    /// A refusal or failure the code itself decides on, with the errno the
    /// view replies with (EPERM, ENOTEMPTY, EISDIR, …): no `io::Error` is
    /// made up to carry it. Reads as an `Io` error with that errno would.
    #[error("{}: {}{}", what.display(), io::Error::from_raw_os_error(*errno), io_hint(Some(*errno)))]
    Errno { errno: i32, what: PathBuf },

    /// An error of SQLite on the index, by kind (see [`SqliteKind`]); the
    /// SQLite error itself is kept, not flattened to its message.
    #[error("{}", sqlite_message(path, *kind, &**error))]
    Sqlite {
        path: PathBuf,
        kind: SqliteKind,
        error: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("no store at {}: create one with `deploycache init` (or any `put`/`import`), or point --store / $DEPLOYCACHE_STORE at an existing store", .0.display())]
    NoStore(PathBuf),

    #[error("{} is not a deploycache store (no FORMAT file, and the directory is not empty): choose an empty or new directory", .0.display())]
    ForeignDirectory(PathBuf),

    #[error("store {} has format {found:?}, this deploycache reads format {supported}: upgrade deploycache", path.display())]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        supported: u32,
    },

    #[error("store {} is in use by host {host:?}; a store is used by one host at a time. Stop deploycache there (mounts, puts), or use a store local to this host", path.display())]
    HeldByOtherHost { path: PathBuf, host: String },

    #[error("invalid {kind} {name:?}: {why}")]
    InvalidName {
        kind: &'static str,
        name: String,
        why: &'static str,
    },

    #[error("no artifact {0:?} in the store (see `deploycache ls`)")]
    NoArtifact(String),

    #[error("artifact {artifact:?} has no file {file:?} (see `deploycache ls {artifact}`)")]
    NoFile { artifact: String, file: String },

    #[error("artifact {0:?} already exists")]
    ArtifactExists(String),

    #[error("{} is not a regular file or directory; only regular files can be stored", .0.display())]
    NotRegularFile(PathBuf),

    #[error("{} is a symbolic link: deploycache neither stores nor follows links (one in a directory others can write could point at any file you can read); give the file it points at instead", .0.display())]
    Symlink(PathBuf),

    #[error("{} is a directory inside a directory given to put; an artifact holds files only: put that directory's files as an artifact of its own", .0.display())]
    NestedDirectory(PathBuf),

    #[error("{} changed while it was being stored (size or mtime moved); store it again once it is stable", .0.display())]
    ChangedWhileReading(PathBuf),

    #[error("corrupt chunk {chunk} (artifact {artifact:?}, file {file:?}, offset {offset}): {why}; run `deploycache verify --full`")]
    CorruptChunk {
        chunk: ChunkId,
        artifact: String,
        file: String,
        offset: u64,
        why: String,
    },

    #[error("corrupt chunk {chunk} in pack {pack}: {why}")]
    CorruptPackRecord {
        chunk: ChunkId,
        pack: String,
        why: String,
    },

    #[error("store index {}: {message}", path.display())]
    Index { path: PathBuf, message: String },

    #[error("store index {} {why}, but the store's packs hold data: run `deploycache --store {} verify --rebuild-index` to rebuild it from the packs (nothing was changed)", path.display(), store.display())]
    IndexMissing {
        path: PathBuf,
        store: PathBuf,
        why: &'static str,
    },

    #[error("store {} is in use by another process (a mount, a put): stop it, then run this again", .0.display())]
    StoreBusy(PathBuf),

    /// A command line or setting that cannot work, said whole (what is
    /// wrong, and what to give instead).
    #[error("{0}")]
    Usage(String),

    /// What a remote's object store (or the network to it) said, for the
    /// object named; `errno` is what the view replies with.
    #[error("remote {url}: {message}")]
    Remote {
        url: String,
        message: String,
        errno: i32,
    },
}

/// What kind of SQLite error an [`Error::Sqlite`] is: what the view replies
/// and what the user is told to do follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteKind {
    /// SQLITE_FULL: the disk (or quota) is full; ENOSPC.
    DiskFull,
    /// SQLITE_BUSY or SQLITE_LOCKED: another connection held a lock for
    /// longer than the busy handler waits; EBUSY.
    Busy,
    /// Anything else (a damaged or foreign file, a malformed row, …): the
    /// index itself is the problem; EIO.
    Other,
}

impl SqliteKind {
    /// The errno the view replies with.
    fn errno(self) -> i32 {
        match self {
            SqliteKind::DiskFull => libc::ENOSPC,
            SqliteKind::Busy => libc::EBUSY,
            SqliteKind::Other => libc::EIO,
        }
    }
}

/// A full disk or a busy index reads as the I/O error it amounts to (with
/// its hint), anything else as a problem of the index.
fn sqlite_message(
    path: &std::path::Path,
    kind: SqliteKind,
    error: &(dyn std::error::Error + Send + Sync),
) -> String {
    match kind {
        SqliteKind::DiskFull | SqliteKind::Busy => Error::Errno {
            errno: kind.errno(),
            what: path.to_owned(),
        }
        .to_string(),
        SqliteKind::Other => format!("store index {}: {error}", path.display()),
    }
}

/// A short, actionable hint for the I/O errors users meet most.
fn io_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::ENOSPC) => " (free space on that filesystem)",
        Some(libc::EDQUOT) => " (disk quota exceeded: free space or raise the quota)",
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (check the permissions, or run as the store's owner)"
        }
        Some(libc::EROFS) => " (the filesystem is read-only)",
        Some(libc::EEXIST) => {
            " (something else is in the way there: move it, or choose another path)"
        }
        Some(libc::ENOTDIR) => " (part of that path is a file, not a directory)",
        Some(libc::EISDIR) => " (a directory is in the way there: move it, or choose another path)",
        _ => "",
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// The errno a FUSE handler replies with for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { error, .. } => error.raw_os_error().unwrap_or(libc::EIO),
            Error::Errno { errno, .. } => *errno,
            Error::Sqlite { kind, .. } => kind.errno(),
            Error::NoArtifact(_) | Error::NoFile { .. } | Error::NoStore(_) => libc::ENOENT,
            Error::ArtifactExists(_) => libc::EEXIST,
            Error::InvalidName { name, .. } if name.len() > crate::name::MAX_NAME_BYTES => {
                libc::ENAMETOOLONG
            }
            Error::InvalidName { .. } => libc::EINVAL,
            Error::NotRegularFile(_) | Error::NestedDirectory(_) | Error::Symlink(_) => libc::EPERM,
            Error::HeldByOtherHost { .. } => libc::EBUSY,
            Error::ChangedWhileReading(_) => libc::EAGAIN,
            Error::ForeignDirectory(_)
            | Error::UnsupportedFormat { .. }
            | Error::CorruptChunk { .. }
            | Error::CorruptPackRecord { .. }
            | Error::Index { .. }
            | Error::IndexMissing { .. } => libc::EIO,
            Error::StoreBusy(_) => libc::EBUSY,
            Error::Usage(_) => libc::EINVAL,
            Error::Remote { errno, .. } => *errno,
        }
    }

    /// True when the error came from a full disk or quota: callers report it
    /// without retrying.
    pub(crate) fn is_no_space(&self) -> bool {
        matches!(self.errno(), libc::ENOSPC | libc::EDQUOT)
    }

    /// True when the index itself is missing, empty or unreadable (so
    /// `verify` reports it as a problem, and `--rebuild-index` helps);
    /// false for a full disk or a busy index, which are no fault of it.
    pub fn is_index_problem(&self) -> bool {
        matches!(
            self,
            Error::Index { .. }
                | Error::IndexMissing { .. }
                | Error::Sqlite {
                    kind: SqliteKind::Other,
                    ..
                }
        )
    }
}

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Errno` replaces `Io` errors made up to carry an errno: callers that
    /// move to it keep their message and errno exactly.
    #[test]
    fn errno_reads_as_the_io_error_it_replaces() {
        for errno in [
            libc::EPERM,
            libc::ENOSPC,
            libc::EISDIR,
            libc::ENOTEMPTY,
            libc::EBUSY,
        ] {
            let old = Error::io("a/b.tar", io::Error::from_raw_os_error(errno));
            let new = Error::Errno {
                errno,
                what: "a/b.tar".into(),
            };
            assert_eq!(new.to_string(), old.to_string());
            assert_eq!(new.errno(), errno);
        }
        let full = Error::Errno {
            errno: libc::ENOSPC,
            what: "x".into(),
        };
        assert!(full.is_no_space());
        assert_eq!(
            full.to_string(),
            "x: No space left on device (os error 28) (free space on that filesystem)"
        );
    }
}
