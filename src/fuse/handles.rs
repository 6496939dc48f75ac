//! Opening, reading, writing and closing files through the [`View`], and
//! committing (or quarantining, or discarding) what was written.

use std::ffi::OsStr;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fuser::{FileAttr, FopenFlags, OpenAccMode, OpenFlags};

use super::inodes::{self, FileInfo, Node, ROOT};
use super::write::Session;
use super::{errno_err, lock, log_line, now_ns, View};
use crate::error::Result;
use crate::index::{LOST, PENDING};
use crate::name;
use crate::store::FileReader;

pub(super) enum Handle {
    /// Open for reading: committed content, read through the store; a
    /// gzip-form file without its hot copy through its shared rebuild.
    Read(Arc<FileReader>, Option<Arc<super::cold::ColdHandle>>),
    /// Open for writing (or reading and writing) on a session's inode.
    Write(u64),
}

impl View {
    // ---- opening, reading, writing -----------------------------------------

    fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, h);
        fh
    }

    /// Create a file in an artifact directory and open it for writing.
    pub fn create_file(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64)> {
        self.writable()?;
        let name = name::from_os("file name", name)?;
        if parent == ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: the root holds artifact directories only"),
            ));
        }
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return Err(errno_err(libc::EPERM, name));
        }
        let artifact = self.artifact(parent)?;
        let excl = flags & libc::O_EXCL != 0;
        // The kernel sends a create for a name it believed absent; a second
        // writer racing the first (or a stale negative entry) finds it here
        // and, without O_EXCL, opens it as open(2) would.
        if let Some((ino, _)) = self.created_session(parent, &name) {
            if excl {
                return Err(errno_err(libc::EEXIST, name));
            }
            return self.create_as_open(ino, flags);
        }
        if let Ok(row) = self.store.file(&artifact, &name) {
            if excl {
                return Err(errno_err(libc::EEXIST, name));
            }
            let info = FileInfo {
                size: row.meta.size,
                mode: row.meta.mode,
                mtime_ns: row.meta.mtime_ns,
            };
            let ino = lock(&self.inodes).file(parent, (row.id, row.hash), &name, info);
            return self.create_as_open(ino, flags);
        }
        let perm = mode & 0o7777;
        // `>>` onto a file kept aside as cut short goes on from its bytes,
        // as it would in a plain directory, instead of silently starting
        // an empty file under the same name.
        let resumed = if flags & libc::O_APPEND != 0 {
            self.quarantined_content(&artifact, &name)?
        } else {
            None
        };
        let mut s = Session::new(&self.store, parent, &name, resumed, perm, true)?;
        // Durable before the first byte is accepted: a crash or a failed
        // write from here on leaves the artifact incomplete, never a hit.
        let reason = format!("{PENDING} (pid {})", std::process::id());
        s.pending = Some(self.store.begin_pending(&artifact, &name, &reason)?);
        s.writers = 1;
        let ino = lock(&self.inodes).created(parent, &name, perm, now_ns());
        let info = Self::session_info(&s);
        // A created file replaces any earlier one of its name only at commit.
        lock(&self.sessions).insert(ino, Arc::new(Mutex::new(s)));
        let fh = self.new_fh(Handle::Write(ino));
        Ok((self.file_attr(ino, info), fh))
    }

    /// The newest content kept aside (quarantined) under `artifact/name`.
    fn quarantined_content(&self, artifact: &str, name: &str) -> Result<Option<FileReader>> {
        let newest =
            self.store.list_quarantine()?.into_iter().find(|q| {
                q.artifact == artifact && q.file.meta.name == name && q.file.meta.size > 0
            });
        match newest {
            Some(q) => {
                log_line(&format!(
                    "{artifact}/{name}: appending to the {} bytes kept aside ({})",
                    q.file.meta.size, q.reason
                ));
                self.store.open_file_id(artifact, q.file.id).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A create of a name that exists: open it for writing instead.
    fn create_as_open(&self, ino: u64, flags: i32) -> Result<(FileAttr, u64)> {
        let (fh, _) = self.open_file(ino, flags)?;
        match self.attr_of(ino) {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                let _ = self.release(fh);
                Err(e)
            }
        }
    }

    pub fn open_file(&self, ino: u64, flags: i32) -> Result<(u64, FopenFlags)> {
        let node = lock(&self.inodes).get(ino).cloned();
        let Some(Node::File { dir, name, row, .. }) = node else {
            return Err(errno_err(libc::EISDIR, format!("inode {ino}")));
        };
        let writing = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        if !writing {
            if let Some(s) = self.session(ino) {
                if lock(&s).created {
                    return Err(errno_err(
                        libc::ENOENT,
                        format!("{name} (still being written)"),
                    ));
                }
            }
            let Some(row) = row else {
                return Err(errno_err(
                    libc::ENOENT,
                    format!("{name} (still being written)"),
                ));
            };
            let artifact = self.artifact(dir).unwrap_or_default();
            let reader = self.open_version(&artifact, row)?;
            self.used(&artifact);
            let reader = Arc::new(reader);
            let cold = if reader.is_cold() {
                Some(Arc::new(self.cold.open(&self.store, reader.clone())?))
            } else {
                None
            };
            let fh = self.new_fh(Handle::Read(reader, cold));
            return Ok((fh, FopenFlags::FOPEN_KEEP_CACHE));
        }
        self.writable()?;
        let trunc = flags & libc::O_TRUNC != 0;
        let s = self.session_for(ino, trunc)?;
        {
            let mut s = lock(&s);
            s.writers += 1;
            if trunc {
                // O_TRUNC arrives here (FUSE_ATOMIC_O_TRUNC, asked for in
                // init). It empties the session, but does not count as the
                // writer's own change: a shell's `open; dup2; close` of a
                // redirection must not commit the empty file on that close
                // (flush), only the writes that follow or the last release.
                let touched = s.touched;
                s.truncate(&self.store, &self.spill_dir, 0)?;
                s.touched = touched;
                s.dirty = true;
            }
        }
        // Direct I/O: written bytes never enter the page cache of an inode
        // whose committed content other readers may hold.
        Ok((self.new_fh(Handle::Write(ino)), FopenFlags::FOPEN_DIRECT_IO))
    }

    /// The session writing `ino`, started (over its committed content) if none.
    pub(super) fn session_for(&self, ino: u64, trunc: bool) -> Result<Arc<Mutex<Session>>> {
        if let Some(s) = self.session(ino) {
            return Ok(s);
        }
        let node = lock(&self.inodes).get(ino).cloned();
        let Some(Node::File {
            dir,
            name,
            row,
            info,
        }) = node
        else {
            return Err(errno_err(libc::ENOENT, format!("inode {ino}")));
        };
        let artifact = self.artifact(dir)?;
        // The base is the name's current content: a session restarted after
        // a commit on flush (a descriptor still open through a dup) goes on
        // over what that flush committed, which has a newer row than this
        // inode's.
        let current = match row {
            Some(_) => self
                .store
                .file(&artifact, &name)
                .ok()
                .map(|r| (r.id, r.hash)),
            None => None,
        };
        let base = match (current.or(row), trunc) {
            (Some(r), false) => Some(self.writable_base(&artifact, r)?),
            _ => None,
        };
        let s = Session::new(
            &self.store,
            dir,
            &name,
            base,
            info.mode & 0o7777,
            row.is_none(),
        )?;
        let arc = Arc::new(Mutex::new(s));
        // Locked before it is in the table: whoever finds it there waits
        // until its pending row is recorded (session, then table: the
        // lock order of `View`).
        let mut s = lock(&arc);
        {
            let mut sessions = lock(&self.sessions);
            if let Some(other) = sessions.get(&ino) {
                // Another request started one meanwhile.
                return Ok(other.clone());
            }
            sessions.insert(ino, arc.clone());
        }
        // Pending before anything changes: an overwrite in flight (or lost)
        // leaves the artifact incomplete too, since what it replaces need
        // not be what the writer meant to be there.
        let reason = format!("{PENDING} (pid {})", std::process::id());
        match self.store.begin_pending(&artifact, &name, &reason) {
            Ok(id) => s.pending = Some(id),
            Err(e) => {
                s.done = true;
                lock(&self.sessions).remove(&ino);
                return Err(e);
            }
        }
        drop(s);
        Ok(arc)
    }

    /// The committed content a write session goes on over. A gzip-form file
    /// without its hot copy is promoted first (read whole once): the
    /// session reads its base at any offset, and each read of a cold file
    /// would rebuild it from the start. If the promotion fails, it is read
    /// cold (slow, still exact).
    fn writable_base(&self, artifact: &str, v: inodes::Version) -> Result<FileReader> {
        let r = self.open_version(artifact, v)?;
        if !r.is_cold() {
            return Ok(r);
        }
        let hidden = crate::progress::Progress::hidden();
        self.store.copy_to(&r, &mut io::sink(), &hidden)?;
        self.open_version(artifact, v)
    }

    /// Open one committed content; fails with ENOENT once it was replaced.
    fn open_version(&self, artifact: &str, v: inodes::Version) -> Result<FileReader> {
        let r = self.store.open_file_id(artifact, v.0)?;
        if r.row.hash != v.1 {
            return Err(errno_err(
                libc::ENOENT,
                format!("{artifact}/{}: replaced meanwhile", r.file),
            ));
        }
        Ok(r)
    }

    fn handle_ino(&self, fh: u64) -> Result<Option<u64>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::Write(ino)) => Ok(Some(*ino)),
            Some(Handle::Read(..)) => Ok(None),
            None => Err(errno_err(libc::EBADF, format!("file handle {fh}"))),
        }
    }

    /// Read into the front of `buf`; returns the byte count.
    pub fn read(&self, fh: u64, offset: u64, size: u32, buf: &mut Vec<u8>) -> Result<usize> {
        let h = match lock(&self.handles).get(&fh) {
            Some(Handle::Read(h, cold)) => Ok((h.clone(), cold.clone())),
            Some(Handle::Write(ino)) => Err(*ino),
            None => return Err(errno_err(libc::EBADF, format!("file handle {fh}"))),
        };
        match h {
            Ok((h, cold)) => {
                // One buffer per FUSE thread serves every request: grown
                // as needed, never shrunk.
                let want = h.size().saturating_sub(offset).min(u64::from(size)) as usize;
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                let res = match &cold {
                    Some(c) => c.read_at(offset, &mut buf[..want]),
                    None => h.read_at(offset, &mut buf[..want]),
                };
                res.inspect_err(|e| {
                    log_line(&format!(
                        "read of {}/{} at {offset} failed: {e}",
                        h.artifact, h.file
                    ))
                })
            }
            Err(ino) => {
                let s = self.session_for(ino, false)?;
                let mut s = lock(&s);
                let data = s.read(&self.store, &self.spill_dir, offset, size)?;
                if buf.len() < data.len() {
                    buf.resize(data.len(), 0);
                }
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8], owner: Option<u64>) -> Result<u32> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Err(errno_err(
                libc::EBADF,
                format!("file handle {fh} is read-only"),
            ));
        };
        let s = self.session_for(ino, false)?;
        let mut s = lock(&s);
        if let Some(e) = s.failed {
            return Err(errno_err(e, &s.name));
        }
        if owner.is_some() {
            s.owner = owner;
        }
        if s.writers == 0 {
            // The session was restarted after a commit on flush (a dup'd fd).
            s.writers = 1;
        }
        match s.write(&self.store, &self.spill_dir, offset, data) {
            Ok(()) => Ok(data.len() as u32),
            Err(e) => {
                log_line(&format!("writing {}: {e}", s.name));
                s.failed = Some(e.errno());
                Err(e)
            }
        }
    }

    /// close(): commit when this is the last handle writing the file and
    /// the closing process is the one that wrote, so the file is visible
    /// when close() returns and the closing program sees any error. Other
    /// sessions commit on their last release.
    pub fn flush(&self, fh: u64, owner: u64) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Ok(());
        };
        let Some(s) = self.session(ino) else {
            return Ok(());
        };
        let last = {
            let s = lock(&s);
            s.writers <= 1 && s.touched && s.owner.is_none_or(|o| o == owner)
        };
        if last {
            self.commit(ino)
        } else {
            match lock(&s).failed {
                Some(e) => Err(errno_err(e, format!("inode {ino}"))),
                None => Ok(()),
            }
        }
    }

    pub fn fsync(&self, fh: u64) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Ok(());
        };
        match self.session(ino).and_then(|s| lock(&s).failed) {
            Some(e) => Err(errno_err(e, format!("inode {ino}"))),
            None => Ok(()),
        }
    }

    /// fallocate(2). The store keeps no preallocated space, so only growing
    /// the file (mode 0) has an effect, as a truncate up would; KEEP_SIZE
    /// is accepted and changes nothing; punching holes and the other modes
    /// are refused with EOPNOTSUPP, as file systems without them do (glibc's
    /// posix_fallocate then writes zeros itself).
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        let Some(ino) = self.handle_ino(fh)? else {
            return Err(errno_err(
                libc::EBADF,
                format!("file handle {fh} is read-only"),
            ));
        };
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(errno_err(libc::EOPNOTSUPP, format!("inode {ino}")));
        }
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(length)
            .ok_or_else(|| errno_err(libc::EFBIG, format!("inode {ino}")))?;
        if end > self.attr_of(ino)?.size {
            self.set_attr(ino, None, Some(end), None)?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) -> Result<()> {
        let h = lock(&self.handles).remove(&fh);
        let Some(Handle::Write(ino)) = h else {
            return Ok(());
        };
        let Some(s) = self.session(ino) else {
            return Ok(());
        };
        let last = {
            let mut s = lock(&s);
            s.writers = s.writers.saturating_sub(1);
            s.writers == 0
        };
        if last {
            self.commit(ino)
        } else {
            Ok(())
        }
    }

    /// Finish the session of `ino`: commit, quarantine, or discard.
    pub(super) fn commit(&self, ino: u64) -> Result<()> {
        let Some(arc) = self.session(ino) else {
            return Ok(());
        };
        let mut s = lock(&arc);
        if s.done {
            return Ok(());
        }
        s.done = true;
        let res = self.finish_session(ino, &mut s);
        // Leave the map only now, still holding the session: whoever waited
        // on it sees `done` and finds the committed file.
        let mut map = lock(&self.sessions);
        if map.get(&ino).is_some_and(|x| Arc::ptr_eq(x, &arc)) {
            map.remove(&ino);
        }
        res
    }

    fn finish_session(&self, ino: u64, s: &mut Session) -> Result<()> {
        if s.unlinked || !s.dirty || s.failed.is_some() {
            if let Some(e) = s.failed {
                log_line(&format!("{}: discarded after a failed write", s.name));
                // Its chunks belong to no file: give their pack space back
                // (a full disk retires the packs being appended to, so what
                // the lost write put there can be cut away).
                s.abandon();
                if e == libc::ENOSPC || e == libc::EDQUOT {
                    self.store.abandon_writes();
                } else {
                    self.store.reclaim_retired();
                }
                let lost = format!(
                    "{LOST}: a write failed ({}); write it again",
                    io::Error::from_raw_os_error(e)
                );
                self.end_pending(s, (!s.unlinked).then_some(lost.as_str()));
                return Err(errno_err(e, &s.name));
            }
            self.end_pending(s, None);
            return Ok(());
        }
        let res = self.commit_session(ino, s);
        if let Err(e) = &res {
            log_line(&format!(
                "committing {}: {e}; nothing was committed",
                s.name
            ));
            let lost = format!("{LOST}: its commit failed ({e}); write it again");
            self.end_pending(s, Some(&lost));
        }
        res
    }

    /// Clear a session's pending row, or relabel it as lost (best effort:
    /// on a full disk it stays pending, which keeps its artifact incomplete
    /// all the same).
    fn end_pending(&self, s: &mut Session, lost: Option<&str>) {
        if let Some(id) = s.pending.take() {
            if let Err(e) = self.store.end_pending(id, lost) {
                log_line(&format!("{}: cannot update its pending row: {e}", s.name));
            }
        }
    }

    fn commit_session(&self, ino: u64, s: &mut Session) -> Result<()> {
        let artifact = self.artifact(s.dir)?;
        let (staged, verdict) = s.finish(&self.store, &self.spill_dir)?;
        let info = FileInfo {
            size: staged.meta.size,
            mode: staged.meta.mode,
            mtime_ns: staged.meta.mtime_ns,
        };
        match verdict {
            Ok(()) => {
                self.store.commit_file(&artifact, staged, s.pending)?;
                s.pending = None;
                if let Some(gc) = &self.gc {
                    gc.committed(info.size);
                }
                if let Some(c) = &self.convert {
                    c.committed();
                }
                let row = self.store.file(&artifact, &s.name)?;
                let mut inodes = lock(&self.inodes);
                if s.created {
                    inodes.committed(ino, (row.id, row.hash), s.dir, &s.name, info);
                } else {
                    inodes.file(s.dir, (row.id, row.hash), &s.name, info);
                }
                Ok(())
            }
            Err(reason) => {
                log_line(&format!(
                    "{artifact}/{}: incomplete, kept aside in quarantine (see `deploycache ls --quarantine`): {reason}; \
                     {artifact} lists no files until {} is written whole",
                    s.name,
                    name::intended(&s.name)
                ));
                self.store
                    .quarantine_file(&artifact, staged, &reason, s.pending)?;
                s.pending = None;
                Ok(())
            }
        }
    }
}
