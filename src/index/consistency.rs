//! The structural checks of the index's invariants (`verify`).

use super::{Index, Sql};
use crate::error::Result;
use crate::id::{ChunkId, FileHash};

impl Index {
    /// Structural checks of the invariants in the module doc. Each problem is one line.
    pub(crate) fn check_consistency(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let integrity: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .sql(&self.path)?;
        if integrity != "ok" {
            problems.push(format!("SQLite quick_check: {integrity}"));
        }
        let mut fk = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .sql(&self.path)?;
        let n = fk.query_map([], |_| Ok(())).sql(&self.path)?.count();
        if n > 0 {
            problems.push(format!(
                "{n} rows point at missing rows (foreign_key_check)"
            ));
        }
        let bad = self.rows(
            "SELECT c.id, c.refs, (SELECT count(*) FROM file_chunks fc WHERE fc.chunk = c.id)
                                  + (SELECT count(*) FROM file_streams fs WHERE fs.chunk = c.id) AS n
                 FROM chunks c WHERE c.refs != n",
            [],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        for (id, stored, actual) in bad {
            let id = ChunkId::from_slice(&id)
                .map(|c| c.to_string())
                .unwrap_or_else(|| hex::encode(&id));
            problems.push(format!(
                "chunk {id}: reference count {stored}, but {actual} file positions use it"
            ));
        }
        let rows = self.rows(&format!("SELECT a.name, f.name, f.size,
                        (SELECT coalesce(sum(c.raw_len), 0) FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.file = f.id),
                        (SELECT count(*) FROM file_chunks fc WHERE fc.file = f.id),
                        (SELECT coalesce(max(seq), -1) FROM file_chunks fc WHERE fc.file = f.id),
                        (SELECT count(*) FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.file = f.id
                           AND fc.offset + c.raw_len != coalesce((SELECT fc2.offset FROM file_chunks fc2 WHERE fc2.file = f.id AND fc2.seq = fc.seq + 1), f.size))
                 FROM files f JOIN artifacts a ON a.id = f.artifact WHERE {AS_CHUNKS}"), [], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
        for (a, f, size, sum, count, max_seq, gaps) in rows {
            if sum != size {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: size {size}, but its chunks hold {sum} bytes"
                ));
            }
            if max_seq + 1 != count {
                problems.push(format!("artifact {a:?} file {f:?}: chunk list has gaps"));
            }
            if gaps != 0 {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: {gaps} chunk offsets do not follow each other"
                ));
            }
        }
        // Each file's digest commits to its chunk list (id.rs).
        let files = self.rows(&format!("SELECT f.id, a.name, f.name, f.hash FROM files f JOIN artifacts a ON a.id = f.artifact WHERE {AS_CHUNKS}"), [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
        for (fid, a, f, hash) in files {
            let spans = self.file_chunks(fid)?;
            let digest = FileHash::of_chunks(spans.iter().map(|s| (s.id, s.loc.raw_len)));
            if FileHash::from_slice(&hash) != Some(digest) {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: chunk list does not match the file digest"
                ));
            }
        }
        problems.extend(self.check_gzip()?);
        Ok(problems)
    }
}

/// The files whose `file_chunks` are their bytes: as-is ones, and gzip-form
/// ones with their hot copy (a cold one has none; `check_gzip` checks it).
const AS_CHUNKS: &str = "(f.form = 0 OR EXISTS (SELECT 1 FROM file_chunks h WHERE h.file = f.id))";
