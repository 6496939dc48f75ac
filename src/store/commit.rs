//! Committing staged files to the index (as an artifact, one file, or in
//! quarantine), and the pending rows of files being written.

use super::write::StagedFile;
use super::{lock, Store};
use crate::error::Result;
use crate::index::{self, NewFile};
use crate::name;

impl Store {
    /// Commit files as artifact `name` in one transaction. With `replace`,
    /// an earlier artifact of that name is replaced atomically.
    pub fn commit_artifact(&self, name: &str, files: Vec<StagedFile>, replace: bool) -> Result<()> {
        self.commit_artifact_with(name, files, Vec::new(), replace)
    }

    /// Commit an artifact whose `cut` files were found cut short, in one
    /// transaction: those are kept aside (quarantined, with their reason),
    /// which leaves the artifact incomplete.
    pub fn commit_artifact_with(
        &self,
        name: &str,
        mut files: Vec<StagedFile>,
        cut: Vec<(StagedFile, String)>,
        replace: bool,
    ) -> Result<()> {
        name::check_artifact(name)?;
        let rows: Vec<NewFile> = files.iter().map(|f| f.row()).collect();
        let kept: Vec<(NewFile, &str)> =
            cut.iter().map(|(f, why)| (f.row(), why.as_str())).collect();
        let res = self
            .index()
            .commit_artifact(&self.ns, name, &rows, &kept, replace);
        files.extend(cut.into_iter().map(|(f, _)| f));
        self.after_commit(&files, res)
    }

    /// Add or replace one file of an existing artifact; `pending` (from
    /// [`Store::begin_pending`]) is cleared in the same transaction.
    pub fn commit_file(
        &self,
        artifact: &str,
        file: StagedFile,
        pending: Option<i64>,
    ) -> Result<()> {
        let res = self
            .index()
            .commit_file(&self.ns, artifact, &file.row(), pending);
        self.after_commit(std::slice::from_ref(&file), res)
    }

    /// Keep a file aside instead of committing it: not visible, listed by
    /// [`Store::list_quarantine`], its chunks kept. It replaces `pending`.
    pub fn quarantine_file(
        &self,
        artifact: &str,
        file: StagedFile,
        reason: &str,
        pending: Option<i64>,
    ) -> Result<()> {
        let res = self
            .index()
            .quarantine_file(&self.ns, artifact, &file.row(), reason, pending);
        self.after_commit(std::slice::from_ref(&file), res)
    }

    /// Durably mark file `name` of `artifact` as being written: until it
    /// commits (or after a crash, until it is written whole), the artifact
    /// is incomplete to every reader. See [`Index::begin_pending`](index::Index::begin_pending).
    pub fn begin_pending(&self, artifact: &str, name: &str, reason: &str) -> Result<i64> {
        self.index().begin_pending(&self.ns, artifact, name, reason)
    }

    /// The pending file was renamed.
    pub fn move_pending(&self, id: i64, artifact: &str, name: &str) -> Result<()> {
        self.index().move_pending(id, &self.ns, artifact, name)
    }

    /// The pending file will not be committed: dropped (`None`: it was
    /// unlinked) or kept as lost, with the reason.
    pub fn end_pending(&self, id: i64, lost: Option<&str>) -> Result<()> {
        self.index().end_pending(id, lost)
    }

    /// Whether `artifact` has a pending row whose reason starts with `prefix`.
    pub fn has_pending(&self, artifact: &str, prefix: &str) -> Result<bool> {
        Ok(self
            .index()
            .pending_rows(&self.ns, prefix)?
            .iter()
            .any(|(_, a, _)| a == artifact))
    }

    /// Pending rows of this namespace whose reason starts with `prefix`.
    pub fn pending_rows(&self, prefix: &str) -> Result<Vec<(i64, String, String)>> {
        self.index().pending_rows(&self.ns, prefix)
    }

    /// Files of `artifact` cut short and not written whole since; see
    /// [`Index::missing_files`](index::Index::missing_files).
    pub fn missing_files(&self, artifact: &str) -> Result<Vec<String>> {
        self.index().missing_files(&self.ns, artifact)
    }

    pub fn list_quarantine(&self) -> Result<Vec<index::QuarantineEntry>> {
        self.index().list_quarantine(&self.ns)
    }

    /// After a commit (or its failure): the committed chunks are found in
    /// the index from now on, and their packs are referenced.
    pub(super) fn after_commit<T>(&self, files: &[StagedFile], res: Result<T>) -> Result<T> {
        if res.is_ok() {
            let mut created = lock(&self.core.created_packs);
            for (_, loc) in files.iter().flat_map(|f| f.new_chunks.iter()) {
                if let Some(c) = created.get_mut(&loc.pack) {
                    *c = true;
                }
            }
        }
        self.forget_pending(files);
        res
    }

    fn forget_pending(&self, files: &[StagedFile]) {
        let mut pending = lock(&self.core.pending);
        for f in files {
            for (id, _) in f.new_chunks.iter() {
                pending.chunks.remove(id);
            }
        }
    }
}
