//! A file being written through the view: one session per inode, shared by
//! every handle open for writing on it, committed when the last one closes.
//!
//! The logical content is `streamed[0..pos] ++ base[pos..base_limit] ++
//! zeros` up to `size` while writes arrive in order (scp, cp, tar): bytes go
//! straight into a [`FileWriter`] and the completeness [`Check`], so memory
//! stays bounded whatever the file size. `base` is the committed content
//! the writer opened without `O_TRUNC` (legacy scp writes over it from 0 and
//! ends with `ftruncate`). A write behind `pos`, a read through a writing
//! handle, or a truncate below `pos` moves the content to a spill file in
//! `<store>/tmp/` (unlinked at once, so a crash leaves nothing), which is
//! ingested when the session commits.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::check::Check;
use crate::error::{Error, IoContext, Result};
use crate::index::FileMeta;
use crate::store::{FileReader, FileWriter, StagedFile, Store};

/// Bytes moved per step when filling, spilling and ingesting.
const BLOCK: usize = 1024 * 1024;

enum Body {
    Stream { w: Box<FileWriter>, pos: u64 },
    Spill { file: File },
    Done,
}

pub struct Session {
    /// Where the file will be committed (follows renames).
    pub dir: u64,
    pub name: String,
    /// Created through the view (no committed content under this inode).
    pub created: bool,
    /// Handles open for writing.
    pub writers: usize,
    pub mode: u32,
    /// Set by utimes/futimens; otherwise the commit time.
    pub mtime_ns: Option<i64>,
    /// Anything changed since open (an untouched overwrite-open commits nothing).
    pub dirty: bool,
    /// Written or truncated since open: a close (flush) then commits. A
    /// close before any write (a shell's `open; dup2; close` of a
    /// redirection) leaves the commit to the last release.
    pub touched: bool,
    /// Lock owner (the writing process's file table) of the last write: a
    /// close by another process (a forked child closing its inherited copy
    /// of the descriptor) must not commit the file under its writer.
    pub owner: Option<u64>,
    /// Unlinked or replaced while being written: discarded at close.
    pub unlinked: bool,
    /// The index row that marks a created file as pending (being written),
    /// cleared by the commit's own transaction.
    pub pending: Option<i64>,
    /// The first error, returned again on every later write, flush and close.
    pub failed: Option<i32>,
    /// Committed, quarantined or discarded: takes no more changes. Set, and
    /// the session left in the view's map, while the commit runs, so that a
    /// chmod or utimes racing the commit waits for it and then applies to
    /// the committed file instead of being lost.
    pub done: bool,
    base: Option<FileReader>,
    base_limit: u64,
    size: u64,
    body: Body,
    check: Check,
}

impl Session {
    pub fn new(
        store: &Store,
        dir: u64,
        name: &str,
        base: Option<FileReader>,
        mode: u32,
        created: bool,
    ) -> Result<Session> {
        let size = base.as_ref().map(|b| b.size()).unwrap_or(0);
        Ok(Session {
            dir,
            name: name.to_owned(),
            created,
            writers: 0,
            mode,
            mtime_ns: None,
            dirty: created,
            touched: false,
            owner: None,
            unlinked: false,
            pending: None,
            failed: None,
            done: false,
            base,
            base_limit: size,
            size,
            body: Body::Stream {
                w: Box::new(store.file_writer()?),
                pos: 0,
            },
            check: Check::for_name(name),
        })
    }

    /// The file's current logical size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feed the streamed writer and the check with the next in-order bytes.
    fn feed(store: &Store, w: &mut FileWriter, check: &mut Check, data: &[u8]) -> Result<()> {
        check.update(data);
        w.write(store, data)
    }

    /// Write the logical content of `[from, to)` that lies below the streamed
    /// prefix (base bytes, then zeros) to `sink`, block by block.
    fn fill(
        base: Option<&FileReader>,
        base_limit: u64,
        from: u64,
        to: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = vec![0u8; BLOCK.min((to - from) as usize)];
        let mut pos = from;
        while pos < to {
            let n = ((to - pos) as usize).min(buf.len());
            let from_base = match base {
                Some(b) if pos < base_limit => {
                    let want = n.min((base_limit - pos) as usize);
                    b.read_at(pos, &mut buf[..want])?
                }
                _ => 0,
            };
            buf[from_base..n].fill(0);
            sink(&buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Mark the file changed at byte `at`; a change behind what has already
    /// streamed into the store moves the content to a spill file first.
    fn change_at(&mut self, store: &Store, spill_dir: &Path, at: u64) -> Result<()> {
        self.dirty = true;
        self.touched = true;
        if let Body::Stream { pos, .. } = &self.body {
            if at < *pos {
                self.spill(store, spill_dir)?;
            }
        }
        Ok(())
    }

    pub fn write(&mut self, store: &Store, spill_dir: &Path, off: u64, data: &[u8]) -> Result<()> {
        self.change_at(store, spill_dir, off)?;
        match &mut self.body {
            Body::Stream { w, pos } => {
                let Session {
                    base,
                    base_limit,
                    check,
                    ..
                } = self;
                if off > *pos {
                    Self::fill(base.as_ref(), *base_limit, *pos, off, &mut |b| {
                        Self::feed(store, w, check, b)
                    })?;
                }
                Self::feed(store, w, check, data)?;
                *pos = off + data.len() as u64;
                self.size = self.size.max(*pos);
            }
            Body::Spill { file } => {
                file.write_all_at(data, off).at(spill_dir)?;
                self.size = self.size.max(off + data.len() as u64);
            }
            Body::Done => unreachable!("write after finish"),
        }
        Ok(())
    }

    /// Read through a writing handle (O_RDWR): served from the spill file.
    pub fn read(
        &mut self,
        store: &Store,
        spill_dir: &Path,
        off: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        self.spill(store, spill_dir)?;
        let Body::Spill { file } = &self.body else {
            unreachable!("spill leaves a spill file")
        };
        let end = self.size.min(off.saturating_add(size as u64));
        let mut buf = vec![0u8; end.saturating_sub(off) as usize];
        file.read_exact_at(&mut buf, off).at(spill_dir)?;
        Ok(buf)
    }

    pub fn truncate(&mut self, store: &Store, spill_dir: &Path, n: u64) -> Result<()> {
        if n == self.size {
            return Ok(());
        }
        self.change_at(store, spill_dir, n)?;
        match &mut self.body {
            Body::Stream { .. } => {
                // Bytes past a shrink read back as zeros if the file grows again.
                self.base_limit = self.base_limit.min(n);
                self.size = n;
            }
            Body::Spill { file } => {
                file.set_len(n).at(spill_dir)?;
                self.size = n;
            }
            Body::Done => unreachable!("truncate after finish"),
        }
        Ok(())
    }

    /// Move the content to an (already unlinked) spill file.
    fn spill(&mut self, store: &Store, spill_dir: &Path) -> Result<()> {
        let Body::Stream { .. } = self.body else {
            return Ok(());
        };
        fs::create_dir_all(spill_dir).at(spill_dir)?;
        let path = spill_dir.join(format!(
            "spill-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut file = File::create_new(&path).at(&path)?;
        let _ = fs::remove_file(&path);
        let Body::Stream { w, pos } = std::mem::replace(&mut self.body, Body::Done) else {
            unreachable!()
        };
        let staged = w.finish(store, self.meta(0))?;
        store.copy_staged_to(&staged, &mut file)?;
        drop(staged);
        let mut out = std::io::BufWriter::with_capacity(BLOCK, &mut file);
        Self::fill(
            self.base.as_ref(),
            self.base_limit,
            pos,
            self.size,
            &mut |b| out.write_all(b).at(spill_dir),
        )?;
        out.flush().at(spill_dir)?;
        drop(out);
        self.body = Body::Spill { file };
        Ok(())
    }

    /// Drop what was written: the writer's uncommitted chunks are released
    /// (so the store can reclaim their pack space) and any spill file closed.
    pub fn abandon(&mut self) {
        self.body = Body::Done;
    }

    fn meta(&self, now_ns: i64) -> FileMeta {
        FileMeta {
            name: self.name.clone(),
            size: 0,
            mode: self.mode,
            mtime_ns: self.mtime_ns.unwrap_or(now_ns),
        }
    }

    /// Stream the rest of the content in and make it durable. Returns the
    /// staged file and the completeness verdict (`Err(reason)`: quarantine).
    pub fn finish(
        &mut self,
        store: &Store,
        spill_dir: &Path,
    ) -> Result<(StagedFile, Result<(), String>)> {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let meta = self.meta(now_ns);
        match std::mem::replace(&mut self.body, Body::Done) {
            Body::Stream { mut w, pos } => {
                let check = &mut self.check;
                Self::fill(
                    self.base.as_ref(),
                    self.base_limit,
                    pos,
                    self.size,
                    &mut |b| Self::feed(store, &mut w, check, b),
                )?;
                let staged = w.finish(store, meta)?;
                let check = std::mem::replace(&mut self.check, Check::None);
                Ok((staged, check.finish()))
            }
            Body::Spill { file } => {
                let mut w = store.file_writer()?;
                let mut check = Check::for_name(&self.name);
                let mut buf = vec![0u8; BLOCK];
                let mut pos = 0u64;
                while pos < self.size {
                    let n = ((self.size - pos) as usize).min(BLOCK);
                    file.read_exact_at(&mut buf[..n], pos).at(spill_dir)?;
                    Self::feed(store, &mut w, &mut check, &buf[..n])?;
                    pos += n as u64;
                }
                let staged = w.finish(store, meta)?;
                Ok((staged, check.finish()))
            }
            Body::Done => Err(Error::io(
                spill_dir,
                std::io::Error::other("file session finished twice"),
            )),
        }
    }
}
