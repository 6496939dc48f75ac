//! `put` and `import` staging: files read from disk into the store, one
//! per core, with the files cache that skips unchanged ones.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::write::{Pending, StagedFile};
use super::{Store, READ_BLOCK};
use crate::check::Check;
use crate::error::{Error, IoContext, Result};
use crate::index::{self, FileMeta};
use crate::lock::GcGuard;
use crate::name;
use crate::progress::Progress;

/// `put` asks the kernel to read this far ahead of the chunker.
const READ_AHEAD_BYTES: u64 = 32 * 1024 * 1024;

impl Store {
    /// Store one file from disk (streamed: memory does not grow with size).
    ///
    /// With `use_cache`, a file unchanged since an earlier put (same path,
    /// device, inode, size, mtime and ctime: the files cache of borg and
    /// restic) is not read again when a stored file has its content.
    pub fn stage_path(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
        use_cache: bool,
    ) -> Result<StagedFile> {
        self.stage_inner(path, file_name, progress, use_cache, None)
    }

    /// Like [`Store::stage_path`], running the completeness check the file's
    /// name or first bytes call for ([`Check::for_name`]) on the bytes as
    /// they are chunked: the verdict is `Err(reason)` for a file cut short.
    /// The file is always read (the files cache knows no verdicts).
    pub fn stage_checked(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
    ) -> Result<(StagedFile, std::result::Result<(), String>)> {
        let mut check = Check::for_name(&file_name);
        let staged = self.stage_inner(path, file_name, progress, false, Some(&mut check))?;
        Ok((staged, check.finish()))
    }

    fn stage_inner(
        &self,
        path: &Path,
        file_name: String,
        progress: &Progress,
        use_cache: bool,
        mut check: Option<&mut Check>,
    ) -> Result<StagedFile> {
        // O_NOFOLLOW: a file swapped for a link after `collect_inputs` or
        // `import` looked at it is refused too.
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Symlink(path.to_owned()))
            }
            res => res.at(path)?,
        };
        let before = file.metadata().at(path)?;
        if !before.is_file() {
            return Err(Error::NotRegularFile(path.to_owned()));
        }
        let meta = FileMeta {
            name: file_name,
            size: before.len(),
            mode: before.permissions().mode() & 0o7777,
            mtime_ns: before.mtime() * 1_000_000_000 + before.mtime_nsec(),
        };
        let key = source_key(path, &before);
        if let (true, Some(key)) = (use_cache, &key) {
            let index = self.index();
            if let Some(hash) = index.cached_source_hash(key)? {
                if let Some(chunks) = index.chunks_of_content(&hash, before.len())? {
                    drop(index);
                    progress.inc(before.len());
                    return Ok(StagedFile {
                        meta,
                        hash,
                        chunks,
                        new_chunks: Pending::default(),
                        _gc: GcGuard::writer(&self.core.root)?,
                    });
                }
            }
        }
        let mut w = self.file_writer()?;
        w.chunker
            .set_block_capacity(READ_BLOCK + crate::chunker::MAX_SIZE);
        let mut offset = 0u64;
        let staged = loop {
            // The kernel reads ahead of the chunker, so the read below is a
            // copy out of the page cache, not a wait on the disk.
            let _ = rustix::fs::fadvise(
                &file,
                offset,
                std::num::NonZeroU64::new(READ_AHEAD_BYTES),
                rustix::fs::Advice::WillNeed,
            );
            let n = w.write_from(self, &mut &file, path, &mut |b| {
                if let Some(c) = check.as_deref_mut() {
                    c.update(b);
                }
            })?;
            if n == 0 {
                break w.finish(self, meta)?;
            }
            offset += n as u64;
            progress.inc(n as u64);
        };
        let after = fs::metadata(path).at(path)?;
        if after.len() != staged.meta.size
            || after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec()
        {
            return Err(Error::ChangedWhileReading(path.to_owned()));
        }
        if let Some(key) = key {
            self.index().remember_source(&key, &staged.hash)?;
        }
        Ok(staged)
    }

    /// `put`: store files (a directory's regular files, non-recursively) as
    /// artifact `name`, replacing an earlier one atomically.
    pub fn put(
        &self,
        name: &str,
        paths: &[PathBuf],
        progress_label: Option<&str>,
        use_cache: bool,
    ) -> Result<PutReport> {
        name::check_artifact(name)?;
        let inputs = collect_inputs(paths)?;
        let total: u64 = inputs.iter().map(|(_, _, len)| len).sum();
        let progress = match progress_label {
            Some(l) => Progress::bytes(total, l.to_owned()),
            None => Progress::hidden(),
        };
        let before = self.index().totals()?;
        let staged = self.stage_all(&inputs, &progress, use_cache)?;
        progress.finish();
        let logical: u64 = staged.iter().map(|f| f.meta.size).sum();
        let files = staged.len();
        self.commit_artifact(name, staged, true)?;
        let after = self.index().totals()?;
        Ok(PutReport {
            files: files as u64,
            logical_bytes: logical,
            new_unique_bytes: after.unique_bytes.saturating_sub(before.unique_bytes),
        })
    }

    /// Stage files two (one per core) at a time, largest first: chunking
    /// a stream is sequential, so an artifact of several big files (a tar
    /// and an image) is chunked on both cores at once. Keeps input order.
    fn stage_all(
        &self,
        inputs: &[(PathBuf, String, u64)],
        progress: &Progress,
        use_cache: bool,
    ) -> Result<Vec<StagedFile>> {
        self.stage_each(inputs, |path, name| {
            self.stage_path(path, name, progress, use_cache)
        })
    }

    /// [`Store::stage_checked`] for several files, as `put` stages them:
    /// one per core, largest first (a tar chunks on one core while an image
    /// inflates on the other). Keeps input order.
    pub fn stage_all_checked(
        &self,
        inputs: &[(PathBuf, String, u64)],
        progress: &Progress,
    ) -> Result<Vec<(StagedFile, std::result::Result<(), String>)>> {
        self.stage_each(inputs, |path, name| {
            self.stage_checked(path, name, progress)
        })
    }

    /// Run `stage` on each input (path, file name, size) on up to one
    /// thread per core, largest first; results in input order.
    fn stage_each<T: Send>(
        &self,
        inputs: &[(PathBuf, String, u64)],
        stage: impl Fn(&Path, String) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].2));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<(usize, Result<T>)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..self.workers.min(inputs.len()).max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if k >= order.len() || failed.load(std::sync::atomic::Ordering::Relaxed)
                            {
                                return out;
                            }
                            let (path, file_name, _) = &inputs[order[k]];
                            let res = stage(path, file_name.clone());
                            if res.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            out.push((order[k], res));
                        }
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut slots: Vec<Option<T>> = (0..inputs.len()).map(|_| None).collect();
        for (i, res) in results {
            slots[i] = Some(res?);
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| Error::ChangedWhileReading(inputs[i].0.clone())))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct PutReport {
    pub files: u64,
    pub logical_bytes: u64,
    /// Chunk bytes (uncompressed) this put added to the store.
    pub new_unique_bytes: u64,
}

/// The files-cache key of a source file, or None when the file changed too
/// recently to trust its timestamps (it may still be changing within one
/// timestamp tick: the "racy git" problem).
fn source_key(path: &Path, md: &fs::Metadata) -> Option<index::SourceKey> {
    use std::os::unix::ffi::OsStrExt;
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    if md.mtime() >= now - 2 || md.ctime() >= now - 2 {
        return None;
    }
    let abs = fs::canonicalize(path).ok()?;
    Some(index::SourceKey {
        path: abs.as_os_str().as_bytes().to_vec(),
        dev: md.dev(),
        ino: md.ino(),
        size: md.len(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    })
}

/// The files `put` stores: (path, name in the artifact, size).
fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String, u64)>> {
    let mut out: Vec<(PathBuf, String, u64)> = Vec::new();
    let mut add = |p: PathBuf, md: fs::Metadata| -> Result<()> {
        let Some(fname) = p.file_name() else {
            return Err(Error::NotRegularFile(p));
        };
        let n = name::from_os("file name", fname)?;
        if out.iter().any(|(_, m, _)| *m == n) {
            return Err(Error::InvalidName {
                kind: "file name",
                name: n,
                why: "given twice; file names in an artifact must be unique",
            });
        }
        out.push((p, n, md.len()));
        Ok(())
    };
    // Links are refused, not followed, even when named on the command line:
    // a glob over a cache that others can write (`put NAME cache/sha/*`)
    // names them too.
    for p in paths {
        let md = fs::symlink_metadata(p).at(p)?;
        if md.is_symlink() {
            return Err(Error::Symlink(p.clone()));
        }
        if md.is_dir() {
            let mut entries: Vec<_> = fs::read_dir(p).at(p)?.collect::<io::Result<_>>().at(p)?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let ep = e.path();
                let emd = fs::symlink_metadata(&ep).at(&ep)?;
                if emd.is_symlink() {
                    return Err(Error::Symlink(ep));
                }
                if emd.is_file() {
                    add(ep, emd)?;
                } else if emd.is_dir() {
                    return Err(Error::NestedDirectory(ep));
                } else {
                    return Err(Error::NotRegularFile(ep));
                }
            }
        } else if md.is_file() {
            add(p.clone(), md)?;
        } else {
            return Err(Error::NotRegularFile(p.clone()));
        }
    }
    Ok(out)
}
