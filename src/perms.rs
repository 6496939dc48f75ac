//! A store is its owner's only: directories 0700, files 0600, whatever the
//! umask (store-layout.md, "Permissions"). Packs hold the bytes of every
//! stored file, `id_rsa` included, so a store readable by others leaks them;
//! `lock` and `gc.lock` writable (or merely openable) by others would let any
//! local user hang every operation by taking an flock on them.
//!
//! Everything the store creates goes through `create_dir` or
//! [`open_file`], which set the mode explicitly after creating (a umask can
//! only take bits away, and one like 0277 would leave the owner unable to
//! write). `tighten` brings a store made by an older deploycache in line.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// Bits that let anyone but the owner in.
const OTHERS: u32 = 0o077;

/// Create directory `path` (its parent must exist) as 0700. An existing
/// directory is left as it is: `tighten` deals with those.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)).at(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Open `path` with `opts`; a file this call creates is made 0600.
pub fn open_file(opts: &mut OpenOptions, path: &Path) -> Result<File> {
    let file = opts.mode(FILE_MODE).open(path).at(path)?;
    let mode = file.metadata().at(path)?.mode() & 0o7777;
    // A file left looser than 0600, or made tighter by the umask.
    if mode != FILE_MODE {
        match file.set_permissions(fs::Permissions::from_mode(FILE_MODE)) {
            Ok(()) => {}
            // Not ours (another user's store we may only read): leave it;
            // `verify` names it.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(file)
}

/// Create (or truncate) `path` for writing, 0600.
pub(crate) fn create_file(path: &Path) -> Result<File> {
    open_file(
        OpenOptions::new().write(true).create(true).truncate(true),
        path,
    )
}

/// What `tighten` and `exposed` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Exposure {
    /// Paths that were open to other users and are now owner-only.
    pub tightened: Vec<PathBuf>,
    /// Paths open to other users that this process could not change (owned
    /// by another user): their owner must `chmod go-rwx` them.
    pub exposed: Vec<PathBuf>,
}

/// Every entry of the store (the root, its files, `packs/` and what is in
/// it) whose mode lets other users in. Symlinks are not followed (a chmod
/// through one would change what it points at).
fn open_to_others(root: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).max_depth(3) {
        let entry = match entry {
            Ok(e) => e,
            // Vanished meanwhile (a pack deleted, a temp file renamed).
            Err(e) if e.io_error().map(|e| e.kind()) == Some(io::ErrorKind::NotFound) => continue,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                return Err(Error::io(path, e.into()));
            }
        };
        if entry.file_type().is_symlink() {
            continue;
        }
        let md = match entry.metadata() {
            Ok(m) => m,
            Err(_) => continue,
        };
        if md.mode() & OTHERS != 0 {
            out.push((entry.into_path(), md.is_dir()));
        }
    }
    Ok(out)
}

/// Make every entry of the store owner-only where this process may; see
/// [`Exposure`].
pub(crate) fn tighten(root: &Path) -> Result<Exposure> {
    let mut report = Exposure::default();
    // The root last: it is what `needs_tightening` looks at, so a tightening
    // cut short is taken up again by the next open.
    let mut found = open_to_others(root)?;
    found.sort_by_key(|(p, _)| p == root);
    for (path, is_dir) in found {
        let mode = if is_dir { DIR_MODE } else { FILE_MODE };
        match fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
            Ok(()) => report.tightened.push(path),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => report.exposed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(report)
}

/// Whether the store's root lets other users in (a store made before
/// stores were private, or chmod'ed since): the cheap test an open makes
/// before walking the store.
pub(crate) fn needs_tightening(root: &Path) -> bool {
    fs::metadata(root).is_ok_and(|m| m.mode() & OTHERS != 0)
}

/// Entries of the store open to other users, without changing any.
pub(crate) fn exposed(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(open_to_others(root)?.into_iter().map(|(p, _)| p).collect())
}
