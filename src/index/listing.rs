//! Listings and lookups of artifacts and files, quarantined ones included,
//! and recording a read of an artifact.

use rusqlite::{params, OptionalExtension};

use super::artifacts::missing_files;
use super::{
    artifact_id, need_artifact, now, row_file, ArtifactSummary, FileRow, Index, QuarantineEntry,
    Sql, FILE_COLS,
};
use crate::error::{Error, Result};

impl Index {
    pub(crate) fn artifact_exists(&self, ns: &str, name: &str) -> Result<bool> {
        Ok(artifact_id(&self.conn, ns, name).sql(&self.path)?.is_some())
    }

    /// Record a read of the artifact (for `ls` and eviction).
    pub(crate) fn touch(&self, ns: &str, name: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE artifacts SET last_access = ?3 WHERE namespace = ?1 AND name = ?2 AND last_access < ?3",
                params![ns, name, now()],
            )
            .sql(&self.path)?;
        Ok(())
    }

    pub(crate) fn list_artifacts(&self, ns: &str) -> Result<Vec<ArtifactSummary>> {
        let rows = self.rows("SELECT a.id, a.name, a.created, a.last_access,
                        (SELECT count(*) FROM files f WHERE f.artifact = a.id AND f.quarantine IS NULL),
                        (SELECT coalesce(sum(size), 0) FROM files f WHERE f.artifact = a.id AND f.quarantine IS NULL),
                        EXISTS (SELECT 1 FROM files f WHERE f.artifact = a.id AND f.quarantine IS NOT NULL)
                 FROM artifacts a WHERE a.namespace = ?1 ORDER BY a.name", [ns], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(6)?,
                    ArtifactSummary {
                        name: r.get(1)?,
                        created: r.get(2)?,
                        last_access: r.get(3)?,
                        files: r.get::<_, i64>(4)? as u64,
                        logical_bytes: r.get::<_, i64>(5)? as u64,
                        unique_bytes: 0,
                        shared_bytes: 0,
                        unique_stored_bytes: 0,
                        shared_stored_bytes: 0,
                        missing: Vec::new(),
                    },
                ))
            })?;
        // One pass over the chunk references in chunk order, for every
        // artifact at once (usage.rs).
        let bytes = self.chunk_holders()?.per_artifact();
        let mut out = Vec::with_capacity(rows.len());
        for (aid, quarantined, mut s) in rows {
            let b = bytes.get(&aid).copied().unwrap_or_default();
            (s.unique_bytes, s.shared_bytes) = (b.unique_bytes, b.shared_bytes);
            (s.unique_stored_bytes, s.shared_stored_bytes) =
                (b.unique_stored_bytes, b.shared_stored_bytes);
            if quarantined {
                s.missing = missing_files(&self.conn, aid).sql(&self.path)?;
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Artifact names of a namespace, sorted (the FUSE view's root listing).
    pub(crate) fn artifact_names(&self, ns: &str) -> Result<Vec<String>> {
        self.rows(
            "SELECT name FROM artifacts WHERE namespace = ?1 ORDER BY name",
            [ns],
            |r| r.get(0),
        )
    }

    pub(crate) fn list_files(&self, ns: &str, artifact: &str) -> Result<Vec<FileRow>> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        let sql = format!("SELECT {FILE_COLS} FROM files f WHERE f.artifact = ?1 AND f.quarantine IS NULL ORDER BY f.name");
        let rows = self.rows(&sql, [aid], row_file)?;
        Ok(rows)
    }

    pub(crate) fn file(&self, ns: &str, artifact: &str, file: &str) -> Result<FileRow> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        self.conn
            .query_row(
                &format!("SELECT {FILE_COLS} FROM files f WHERE f.artifact = ?1 AND f.name = ?2 AND f.quarantine IS NULL"),
                params![aid, file],
                row_file,
            )
            .optional()
            .sql(&self.path)?
            .ok_or_else(|| Error::NoFile { artifact: artifact.to_owned(), file: file.to_owned() })
    }

    /// A file's chunk list by file id (visible or quarantined).
    pub(crate) fn file_by_id(&self, file_id: i64) -> Result<Option<FileRow>> {
        self.conn
            .query_row(
                &format!("SELECT {FILE_COLS} FROM files f WHERE f.id = ?1"),
                [file_id],
                row_file,
            )
            .optional()
            .sql(&self.path)
    }

    /// Quarantined files of a namespace, newest first.
    pub(crate) fn list_quarantine(&self, ns: &str) -> Result<Vec<QuarantineEntry>> {
        let sql = format!("SELECT {FILE_COLS}, a.name, f.quarantine, f.committed
                 FROM files f JOIN artifacts a ON a.id = f.artifact
                 WHERE a.namespace = ?1 AND f.quarantine IS NOT NULL ORDER BY f.committed DESC, f.id DESC");
        let rows = self.rows(&sql, [ns], |r| {
            Ok(QuarantineEntry {
                file: row_file(r)?,
                artifact: r.get(7)?,
                reason: r.get(8)?,
                at: r.get(9)?,
            })
        })?;
        Ok(rows)
    }
}
