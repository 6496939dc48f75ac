//! A remote in a directory (`file:///PATH`): each object a file at
//! `PATH/<key>`, written to a temporary name beside it, fsynced, then
//! renamed into place (and the directory fsynced), so that a reader on any
//! host sharing the directory (NFS) sees a whole object or none. No SQLite
//! file, no lock file, nothing that needs more than `open`, `rename` and
//! `unlink` to behave: what NFS does well.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{valid_key, Bucket, ObjectInfo};
use crate::error::{Error, IoContext, Result};

/// Temporary files start with this; listings skip them.
const TMP_PREFIX: &str = ".tmp-";

pub struct DirBucket {
    root: PathBuf,
}

impl DirBucket {
    /// The remote in directory `root`, created if missing.
    pub fn new(root: &Path) -> Result<DirBucket> {
        fs::create_dir_all(root).at(root)?;
        Ok(DirBucket {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if !valid_key(key) {
            return Err(Error::Usage(format!(
                "{}: not a key a remote holds",
                self.url(key)
            )));
        }
        Ok(self.root.join(key))
    }

    /// Write `path` whole through a temporary file beside it.
    fn write_whole(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut File) -> io::Result<u64>,
    ) -> Result<u64> {
        let dir = path.parent().expect("a key has a parent: the root");
        fs::create_dir_all(dir).at(dir)?;
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}-{:016x}",
            path.file_name().unwrap().to_string_lossy(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            let n = fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.at(path)
    }

    fn info(&self, key: String, meta: &fs::Metadata) -> ObjectInfo {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        ObjectInfo {
            key,
            size: meta.len(),
            modified_ns,
        }
    }

    /// Every object under `dir` (relative key `rel`), into `out`.
    fn walk(&self, dir: &Path, rel: &str, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for e in entries {
            let e = e.at(dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Only what can still match the prefix.
            let n = key.len().min(prefix.len());
            if key.as_bytes()[..n] != prefix.as_bytes()[..n] {
                continue;
            }
            let meta = match e.metadata() {
                Ok(m) => m,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::io(e.path(), err)),
            };
            if meta.is_dir() {
                self.walk(&e.path(), &key, prefix, out)?;
            } else if meta.is_file() && key.starts_with(prefix) {
                out.push(self.info(key, &meta));
            }
        }
        Ok(())
    }
}

impl Bucket for DirBucket {
    fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        self.write_whole(&path, |f| f.write_all(body).map(|_| body.len() as u64))?;
        Ok(())
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<u64> {
        let path = self.path(key)?;
        let mut from = File::open(src).at(src)?;
        self.write_whole(&path, |f| io::copy(&mut from, f))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        fs::read(&path).at(path)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let f = File::open(&path).at(&path)?;
        let size = f.metadata().at(&path)?.len();
        // As an S3 server answers: a range must lie within the object.
        if range.start > range.end || range.end > size {
            return Err(Error::Remote {
                url: self.url(key),
                message: format!("bytes {range:?} asked for, past the object's end ({size} bytes)"),
                errno: libc::EIO,
            });
        }
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        f.read_exact_at(&mut buf, range.start).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Remote {
                    url: self.url(key),
                    message: format!("bytes {range:?} asked for, past the object's end"),
                    errno: libc::EIO,
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        Ok(buf)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        self.walk(&self.root, "", prefix, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(self.info(key.to_owned(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }

    fn url(&self, key: &str) -> String {
        format!("file://{}/{key}", self.root.display())
    }
}
