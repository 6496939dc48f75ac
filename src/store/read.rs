//! Reading committed files. A file's [`Recipe`] is loaded and checked
//! against its digest once (and kept for files opened again); a
//! [`FileReader`] then owns reading it: `read_at` with its one-chunk cache
//! and sequential prefetch, `copy_to` with runs of chunks read, decoded
//! and checked on worker threads. Each chunk is checked as it is read, so
//! every byte served is the byte stored. No lock is held across pack I/O.
//!
//! Where things are:
//! - here: opening a file for reading, the recipes of recent files,
//!   `export`, and the read path's only calls into pack files (the end of
//!   this file);
//! - `reader`: the [`FileReader`]: `read_at`, `copy_to`, checked chunks;
//! - `segment`: runs of chunks fetched with one read;
//! - `prefetch`: asking the kernel to read the packs ahead of a reader.

mod gzip;
mod prefetch;
mod reader;
mod segment;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::{lock, Store, READ_BLOCK};
use crate::error::{Error, IoContext, Result};
use crate::index::{FileRow, Recipe};
use crate::pack::{self, Location, PackHandle, PackName};
use crate::progress::Progress;

pub use gzip::Pieces;
pub use reader::FileReader;

/// Recipes kept by `StoreCore::recent_files` (a 2 GB file's is ~2.5 MiB).
const RECENT_FILES: usize = 16;

impl Store {
    /// Look up a file for reading. Its recipe is loaded once and shared.
    pub fn open_file(&self, artifact: &str, file: &str) -> Result<FileReader> {
        let row = self.index().file(&self.ns, artifact, file)?;
        self.reader_for(artifact, row)
    }

    /// A reader for a file row: loads its recipe and checks it against the
    /// file digest, which commits to every chunk id and length; each chunk
    /// is then checked against its id when read. Together: every byte
    /// served is the byte stored.
    pub(super) fn reader_for(&self, artifact: &str, row: FileRow) -> Result<FileReader> {
        let recipe = match self.recent_recipe(&row) {
            Some(recipe) => recipe,
            None => {
                let recipe = self.index().file_recipe(&row)?;
                let wrong = |what: String| Error::Index {
                    path: self.core.root.join("index.sqlite"),
                    message: format!(
                        "artifact {artifact:?} file {:?}: {what}; run `deploycache verify`",
                        row.meta.name,
                    ),
                };
                let recipe =
                    recipe.map_err(|why| wrong(format!("chunk list is inconsistent ({why})")))?;
                if !recipe.matches(row.meta.size, &row.hash) {
                    return Err(wrong(format!(
                        "chunk list does not match the file digest and size ({} bytes)",
                        row.meta.size
                    )));
                }
                let mut recent = lock(&self.core.recent_files);
                recent.push_front((row.id, row.hash, recipe.clone()));
                recent.truncate(RECENT_FILES);
                recipe
            }
        };
        Ok(FileReader::new(
            self.core.clone(),
            self.workers,
            artifact,
            row,
            recipe,
        ))
    }

    /// The checked recipe of this file row from `recent_files`, moved to
    /// the front.
    fn recent_recipe(&self, row: &FileRow) -> Option<Recipe> {
        let mut recent = lock(&self.core.recent_files);
        // The form is part of the key: a hot copy kept or dropped since
        // changes the recipe, not the row id or digest.
        let at = recent.iter().position(|(id, hash, r)| {
            (*id, *hash) == (row.id, row.hash) && form_of(r) == row.form
        })?;
        let entry = recent.remove(at)?;
        let recipe = entry.2.clone();
        recent.push_front(entry);
        Some(recipe)
    }

    /// Packs this process holds open for reading (bounded).
    pub fn open_pack_count(&self) -> usize {
        self.core.packs.open_count()
    }

    /// Write the artifact's files into `dest` byte-identical, with mode and
    /// mtime. All or nothing: every file is first written whole and checked
    /// under a temporary name in `dest`, and only then are they renamed
    /// into place; a failure (a damaged chunk, a full disk) removes the
    /// temporary files, and `dest` itself when this call created it, so a
    /// failed export leaves `dest` as it found it. (Not a temporary sibling
    /// directory renamed onto `dest`: `dest` may exist and hold other
    /// files, which a directory rename cannot merge with.)
    pub fn export(&self, artifact: &str, dest: &Path, show_progress: bool) -> Result<Vec<FileRow>> {
        let files = self.index().list_files(&self.ns, artifact)?;
        let created = !dest.exists();
        fs::create_dir_all(dest).at(dest)?;
        let total = files.iter().map(|f| f.meta.size).sum();
        let progress = if show_progress {
            Progress::bytes(total, format!("export {artifact}"))
        } else {
            Progress::hidden()
        };
        let mut written: Vec<PathBuf> = Vec::new();
        let res = (|| -> Result<()> {
            for f in &files {
                let r = self.open_file(artifact, &f.meta.name)?;
                let tmp = dest.join(format!(".{}.deploycache-tmp", f.meta.name));
                written.push(tmp.clone());
                let mut out =
                    io::BufWriter::with_capacity(READ_BLOCK, File::create(&tmp).at(&tmp)?);
                self.copy_to(&r, &mut out, &progress)?;
                let out = out
                    .into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?;
                out.set_permissions(fs::Permissions::from_mode(f.meta.mode))
                    .at(&tmp)?;
                let mtime =
                    UNIX_EPOCH + std::time::Duration::from_nanos(f.meta.mtime_ns.max(0) as u64);
                out.set_modified(mtime).at(&tmp)?;
                out.sync_all().at(&tmp)?;
            }
            for f in &files {
                let target = dest.join(&f.meta.name);
                // A directory where a file goes fails here, before any
                // file of this export has replaced anything.
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(Error::io(
                        &target,
                        io::Error::from_raw_os_error(libc::EISDIR),
                    ));
                }
            }
            for (f, tmp) in files.iter().zip(&written) {
                let target = dest.join(&f.meta.name);
                fs::rename(tmp, &target).at(&target)?;
            }
            written.clear();
            pack::sync_dir(dest)
        })();
        if res.is_err() {
            for tmp in &written {
                let _ = fs::remove_file(tmp);
            }
            if created {
                let _ = fs::remove_dir(dest);
            }
        }
        res?;
        progress.finish();
        self.index().touch(&self.ns, artifact)?;
        Ok(files)
    }

    /// Record that an artifact was read.
    pub fn touch(&self, artifact: &str) -> Result<()> {
        self.index().touch(&self.ns, artifact)
    }
}

// ---- pack I/O ------------------------------------------------------------
// The read path's only calls into the store's packs (its [`PackStore`]):
// each reader opens the packs it reads and holds them until it is dropped,
// so gc deleting a pack (an evicted artifact's, a rewritten one) never takes
// bytes from under a reader that started on them. Checked chunk reads are
// `StoreCore::read_checked`.

impl FileReader {
    /// Pack `p`, opened by this reader (once) and held while it lives.
    fn pack(&self, p: PackName) -> Result<Arc<dyn PackHandle>> {
        if let Some(h) = lock(&self.packs).get(&p) {
            return Ok(h.clone());
        }
        let h = self.core().packs.open(p)?;
        lock(&self.packs).insert(p, h.clone());
        Ok(h)
    }

    /// Read `buf.len()` bytes of pack `p` at `offset`, exactly.
    fn read_pack(&self, p: PackName, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.pack(p)?.read_at(offset, buf)
    }

    /// The stored payload of the record at `loc`.
    fn read_payload(&self, loc: &Location) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.stored_len as usize];
        self.read_pack(loc.pack, loc.offset, &mut buf)?;
        Ok(buf)
    }

    /// Ask for `range` of pack `p` to be fetched ahead, without waiting.
    fn prefetch_pack(&self, p: PackName, range: Range<u64>) {
        if let Ok(h) = self.pack(p) {
            h.prefetch(range.start, range.end - range.start);
        }
    }
}

/// The form a recipe stores its file in.
fn form_of(r: &Recipe) -> crate::index::Form {
    match r {
        Recipe::Chunks(_) => crate::index::Form::AsIs,
        Recipe::Gzip { hot: None, .. } => crate::index::Form::Gzip,
        Recipe::Gzip { hot: Some(_), .. } => crate::index::Form::GzipHot,
    }
}
