//! Changes to names through the [`View`]: mkdir and rmdir of artifact
//! directories, unlink and rename.

use std::ffi::OsStr;

use fuser::{FileAttr, RenameFlags};

use super::inodes::ROOT;
use super::{errno_err, lock, View};
use crate::error::{Error, Result};
use crate::name;

impl View {
    // ---- directories ---------------------------------------------------------

    pub fn make_dir(&self, parent: u64, name: &OsStr) -> Result<FileAttr> {
        self.writable()?;
        let name = name::from_os("artifact name", name)?;
        if parent != ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: artifacts hold files only, no subdirectories"),
            ));
        }
        self.store.create_empty_artifact(&name)?;
        let ino = lock(&self.inodes).dir(&name);
        Ok(self.dir_attr(ino))
    }

    pub fn remove_dir(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable()?;
        let name = name::from_os("artifact name", name)?;
        if parent != ROOT {
            return Err(errno_err(libc::ENOTDIR, name));
        }
        let files = self.store.list_files(&name)?;
        let dir = lock(&self.inodes).dir(&name);
        let writing = self.sessions_snapshot().iter().any(|(_, s)| {
            let s = lock(s);
            s.dir == dir && !s.unlinked
        });
        // An incomplete artifact lists as empty, so it removes as empty:
        // whole, with the files it hides (`rm -rf` of it must work).
        let incomplete = !files.is_empty() && !self.store.missing_files(&name)?.is_empty();
        if (!files.is_empty() && !incomplete) || writing {
            return Err(errno_err(libc::ENOTEMPTY, name));
        }
        self.store.remove(&name)?;
        lock(&self.inodes).forget_dir(&name);
        Ok(())
    }

    // ---- names ---------------------------------------------------------------

    pub fn unlink_file(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.writable()?;
        let name = name::from_os("file name", name)?;
        let artifact = self.artifact(parent)?;
        let mut found = false;
        if let Some((_, s)) = self.created_session(parent, &name) {
            lock(&s).unlinked = true;
            found = true;
        }
        match self.store.file(&artifact, &name) {
            Ok(row) => {
                let ino = lock(&self.inodes).of_row((row.id, row.hash));
                if let Some(ino) = ino {
                    if let Some(s) = self.session(ino) {
                        lock(&s).unlinked = true;
                    }
                }
            }
            Err(Error::NoFile { .. }) if found => return Ok(()),
            Err(e) => return Err(e),
        }
        self.store.remove_file(&artifact, &name)
    }

    pub fn rename_entry(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        let name = name::from_os("name", name)?;
        let newname = name::from_os("name", newname)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(errno_err(libc::EINVAL, name));
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        if parent == ROOT && newparent == ROOT {
            if noreplace && self.store.artifact_exists(&newname)? {
                return Err(errno_err(libc::EEXIST, newname));
            }
            match self.store.rename_artifact(&name, &newname) {
                Err(Error::ArtifactExists(n)) => return Err(errno_err(libc::ENOTEMPTY, n)),
                other => other?,
            }
            lock(&self.inodes).rename_dir(&name, &newname);
            return Ok(());
        }
        if parent == ROOT || newparent == ROOT {
            return Err(errno_err(
                libc::EPERM,
                format!("{name}: artifacts hold files only, and the root holds artifacts only"),
            ));
        }
        let (from_a, to_a) = (self.artifact(parent)?, self.artifact(newparent)?);
        let target_exists = self.created_session(newparent, &newname).is_some()
            || self.store.file(&to_a, &newname).is_ok();
        if noreplace && target_exists {
            return Err(errno_err(libc::EEXIST, newname));
        }
        if let Some((_, s)) = self.created_session(newparent, &newname) {
            lock(&s).unlinked = true;
        }
        if let Some((ino, s)) = self.created_session(parent, &name) {
            let mut s = lock(&s);
            if let Some(id) = s.pending {
                self.store.move_pending(id, &to_a, &newname)?;
            }
            s.dir = newparent;
            s.name = newname.clone();
            lock(&self.inodes).set_place(ino, newparent, &newname);
            return Ok(());
        }
        let row = self.store.file(&from_a, &name)?;
        self.store
            .rename_file((&from_a, &name), (&to_a, &newname))?;
        let ino = lock(&self.inodes).of_row((row.id, row.hash));
        if let Some(ino) = ino {
            if let Some(s) = self.session(ino) {
                let mut s = lock(&s);
                s.dir = newparent;
                s.name = newname.clone();
            }
            lock(&self.inodes).set_place(ino, newparent, &newname);
        }
        Ok(())
    }
}
