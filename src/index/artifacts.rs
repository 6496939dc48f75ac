//! Changes to artifacts and files (commit, remove, rename, quarantine), the
//! pending rows of files being written, and which files an artifact misses.

use rusqlite::{params, Connection, OptionalExtension};

use super::changes::Applied;
use super::{need_artifact, now, Dropped, Index, NewFile, Sql};
use crate::error::Result;
use crate::manifest::{Change, FileManifest, PendingRow};

impl Index {
    /// Commit a whole artifact: all its files appear at once. With `replace`,
    /// an existing artifact of that name is dropped in the same transaction.
    pub(crate) fn commit_artifact(
        &mut self,
        ns: &str,
        name: &str,
        files: &[NewFile],
        quarantined: &[(NewFile, &str)],
        replace: bool,
    ) -> Result<()> {
        let t = now();
        let mut manifests: Vec<FileManifest> = files.iter().map(|f| f.manifest(None, t)).collect();
        manifests.extend(quarantined.iter().map(|(f, why)| f.manifest(Some(why), t)));
        let new_chunks = files
            .iter()
            .chain(quarantined.iter().map(|(f, _)| f))
            .flat_map(|f| f.new_chunks.iter());
        self.change(
            Change::PutArtifact {
                ns: ns.to_owned(),
                name: name.to_owned(),
                created: t,
                last_access: t,
                replace,
                files: manifests,
            },
            new_chunks,
            None,
        )
        .map(drop)
    }

    /// Create an empty artifact (the FUSE view's mkdir). Fails if it exists.
    pub(crate) fn create_artifact(&mut self, ns: &str, name: &str) -> Result<()> {
        self.commit_artifact(ns, name, &[], &[], false)
    }

    /// Add or replace one file of an existing artifact (the FUSE view's
    /// close). `pending` (from [`Index::begin_pending`]) goes in the same
    /// transaction.
    pub(crate) fn commit_file(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &NewFile,
        pending: Option<i64>,
    ) -> Result<()> {
        let row = self.pending_row(pending)?;
        let change = Change::PutFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.manifest(None, now()),
            pending: row.clone(),
        };
        let id = row.and(pending);
        self.change(change, &file.new_chunks, id).map(drop)
    }

    /// Drop an artifact and release its chunk references.
    pub(crate) fn remove_artifact(&mut self, ns: &str, name: &str) -> Result<()> {
        let change = Change::RemoveArtifact {
            ns: ns.to_owned(),
            name: name.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Drop one file of an artifact.
    pub(crate) fn remove_file(&mut self, ns: &str, artifact: &str, file: &str) -> Result<()> {
        let change = Change::RemoveFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Rename a file, possibly into another artifact, replacing any file of the target name.
    pub(crate) fn rename_file(
        &mut self,
        ns: &str,
        from: (&str, &str),
        to: (&str, &str),
    ) -> Result<()> {
        let change = Change::RenameFile {
            ns: ns.to_owned(),
            from: (from.0.to_owned(), from.1.to_owned()),
            to: (to.0.to_owned(), to.1.to_owned()),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Rename an artifact. Fails if the target exists and is not empty.
    pub(crate) fn rename_artifact(&mut self, ns: &str, from: &str, to: &str) -> Result<()> {
        let change = Change::RenameArtifact {
            ns: ns.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    pub(crate) fn update_file_meta(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &str,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    ) -> Result<()> {
        let change = Change::SetFileMeta {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.to_owned(),
            mode,
            mtime_ns,
        };
        self.change(change, &[], None).map(drop)
    }

    /// Keep a file aside (not visible) with the reason, its chunks referenced.
    /// `pending` (from [`Index::begin_pending`]) is replaced in the same
    /// transaction.
    pub(crate) fn quarantine_file(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &NewFile,
        reason: &str,
        pending: Option<i64>,
    ) -> Result<()> {
        let row = self.pending_row(pending)?;
        let change = Change::PutFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.manifest(Some(reason), now()),
            pending: row.clone(),
        };
        let id = row.and(pending);
        self.change(change, &file.new_chunks, id).map(drop)
    }

    /// Durably record that file `name` of `artifact` is being written (a
    /// quarantined row with no chunks and `reason`), so that the artifact
    /// lists as incomplete until the file commits whole, to every reader and
    /// after a crash. Returns the row's id for `Index::commit_file`,
    /// `Index::quarantine_file`, `Index::move_pending` and
    /// `Index::end_pending`.
    pub fn begin_pending(
        &mut self,
        ns: &str,
        artifact: &str,
        name: &str,
        reason: &str,
    ) -> Result<i64> {
        let change = Change::BeginPending {
            row: PendingRow {
                ns: ns.to_owned(),
                artifact: artifact.to_owned(),
                name: name.to_owned(),
                reason: reason.to_owned(),
                committed: now(),
            },
        };
        match self.change(change, &[], None)? {
            Applied::Row(id) => Ok(id),
            _ => unreachable!("a pending row's change returns its id"),
        }
    }

    /// A file being written was renamed: its pending row follows it.
    pub(crate) fn move_pending(
        &mut self,
        id: i64,
        ns: &str,
        artifact: &str,
        name: &str,
    ) -> Result<()> {
        let Some(row) = self.pending_row(Some(id))? else {
            return Ok(()); // gone already (rm --quarantine): nothing to move
        };
        debug_assert_eq!(row.ns, ns, "a pending row stays in its namespace");
        let change = Change::MovePending {
            row,
            to_artifact: artifact.to_owned(),
            to_name: name.to_owned(),
        };
        self.change(change, &[], Some(id)).map(drop)
    }

    /// Drop a pending row (the file was unlinked while being written), or
    /// with `reason`, keep it and say why the file was lost.
    pub(crate) fn end_pending(&mut self, id: i64, reason: Option<&str>) -> Result<()> {
        let Some(row) = self.pending_row(Some(id))? else {
            return Ok(()); // gone already (rm --quarantine)
        };
        let change = Change::EndPending {
            row,
            lost: reason.map(str::to_owned),
        };
        self.change(change, &[], Some(id)).map(drop)
    }

    /// What pending row `id` holds, as a manifest record names it (None: no
    /// such pending row any more).
    fn pending_row(&self, id: Option<i64>) -> Result<Option<PendingRow>> {
        let Some(id) = id else { return Ok(None) };
        self.conn
            .query_row(
                "SELECT a.namespace, a.name, f.name, f.quarantine, f.committed
                 FROM files f JOIN artifacts a ON a.id = f.artifact
                 WHERE f.id = ?1 AND f.quarantine IS NOT NULL",
                [id],
                |r| {
                    Ok(PendingRow {
                        ns: r.get(0)?,
                        artifact: r.get(1)?,
                        name: r.get(2)?,
                        reason: r.get(3)?,
                        committed: r.get(4)?,
                    })
                },
            )
            .optional()
            .sql(&self.path)
    }

    /// Pending rows of namespace `ns` whose reason starts with `prefix`:
    /// (row id, artifact, reason). The mount relabels those its dead
    /// predecessors left.
    pub(crate) fn pending_rows(
        &self,
        ns: &str,
        prefix: &str,
    ) -> Result<Vec<(i64, String, String)>> {
        self.rows(
            "SELECT f.id, a.name, f.quarantine FROM files f JOIN artifacts a ON a.id = f.artifact
             WHERE a.namespace = ?1 AND substr(f.quarantine, 1, length(?2)) = ?2",
            params![ns, prefix],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// Drop the quarantined files of `artifact`, or of every artifact of
    /// `ns` when `None`. An artifact that is incomplete without them (a file
    /// was cut short and never written whole since) is dropped whole:
    /// listing its other files would make it look cached. Chunks lose those
    /// references (space returns at gc).
    pub fn remove_quarantined(&mut self, ns: &str, artifact: Option<&str>) -> Result<Dropped> {
        let change = Change::RemoveQuarantined {
            ns: ns.to_owned(),
            artifact: artifact.map(str::to_owned),
        };
        match self.change(change, &[], None)? {
            Applied::Dropped(d) => Ok(d),
            _ => unreachable!("removing quarantined files reports what it dropped"),
        }
    }

    /// Files of an artifact that were cut short and not written whole
    /// since: the names its quarantined files were meant to have
    /// ([`name::intended`](crate::name::intended)) that no visible file of it
    /// has. Non-empty means the artifact is incomplete: the mount lists it
    /// as empty, and `rm --quarantine` drops it whole.
    pub fn missing_files(&self, ns: &str, artifact: &str) -> Result<Vec<String>> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        missing_files(&self.conn, aid).sql(&self.path)
    }
}

/// The start of the quarantine reason of a pending row: a file being
/// written through a mount ([`Index::begin_pending`]).
pub const PENDING: &str = "being written through the mount";

/// The start of the reason of a pending row whose writer is gone (a crash,
/// a failed write): the file was lost in flight.
pub const LOST: &str = "lost in flight";

/// Whether a quarantine reason marks a pending or lost row: those are
/// satisfied only by a visible file committed after them.
pub(crate) fn is_pending_reason(reason: &str) -> bool {
    reason.starts_with(PENDING) || reason.starts_with(LOST)
}

/// [`Index::missing_files`] by artifact id, inside any transaction.
///
/// A cut-short file is missing while no visible file has the name it was
/// meant to have. A pending or lost one (a write in flight, or one a crash
/// or a full disk ended) is missing until a visible file of that name was
/// committed after it: the content it was replacing does not count, since
/// the writer was replacing it (an empty file a failed command left, an
/// older fill). Row ids grow while the row exists, so "after" is a larger id.
pub(crate) fn missing_files(conn: &Connection, aid: i64) -> rusqlite::Result<Vec<String>> {
    let quarantined: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, name, quarantine FROM files WHERE artifact = ?1 AND quarantine IS NOT NULL",
        )?
        .query_map([aid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if quarantined.is_empty() {
        return Ok(Vec::new());
    }
    let visible: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, name FROM files WHERE artifact = ?1 AND quarantine IS NULL")?
        .query_map([aid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let (pending, cut): (Vec<_>, Vec<_>) = quarantined
        .into_iter()
        .partition(|(_, _, reason)| is_pending_reason(reason));
    let cut: Vec<String> = cut.into_iter().map(|(_, name, _)| name).collect();
    let names: Vec<&str> = visible.iter().map(|(_, n)| n.as_str()).collect();
    let mut out: Vec<String> = crate::name::missing(&cut, &names)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (id, name, _) in &pending {
        let want = crate::name::intended(name);
        if !visible.iter().any(|(vid, v)| v == want && vid > id) {
            out.push(want.to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
