//! Chunks: where each is stored, a file's chunk list, the packs and what
//! each holds, who uses a chunk, the store's totals, and the files cache.

use rusqlite::{params, OptionalExtension};

use super::{
    chunk_id_at, file_hash_at, location_from, row_location, ChunkSpan, Index, SourceKey, Sql,
    Totals,
};
use crate::error::Result;
use crate::id::{ChunkId, FileHash};
use crate::pack::{Location, PackName};

impl Index {
    /// The end of pack `p`'s last indexed record (`None`: no index row
    /// points into it).
    pub(crate) fn pack_end(&self, p: PackName) -> Result<Option<u64>> {
        let end: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT max(c.offset + c.stored_len) FROM chunks c JOIN packs p ON p.id = c.pack
                 WHERE p.name = ?1",
            )
            .sql(&self.path)?
            .query_row([p.to_string()], |r| r.get(0))
            .sql(&self.path)?;
        Ok(end.map(|e| e as u64))
    }

    /// Where a chunk is stored, if the index knows it.
    pub(crate) fn chunk_location(&self, id: &ChunkId) -> Result<Option<Location>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?1",
            )
            .sql(&self.path)?;
        st.query_row([&id.as_bytes()[..]], row_location)
            .optional()
            .sql(&self.path)
    }

    /// A file's chunk list in order, with locations.
    pub(crate) fn file_chunks(&self, file_id: i64) -> Result<Vec<ChunkSpan>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT fc.chunk, fc.offset, p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk JOIN packs p ON p.id = c.pack
                 WHERE fc.file = ?1 ORDER BY fc.seq",
            )
            .sql(&self.path)?;
        let rows = st
            .query_map([file_id], |r| {
                Ok(ChunkSpan {
                    id: chunk_id_at(r, 0)?,
                    offset: r.get::<_, i64>(1)? as u64,
                    loc: location_from(r, 2)?,
                })
            })
            .sql(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .sql(&self.path)?;
        Ok(rows)
    }

    /// The chunk list of any stored file with this content hash and size.
    pub(crate) fn chunks_of_content(
        &self,
        hash: &FileHash,
        size: u64,
    ) -> Result<Option<Vec<(ChunkId, u32)>>> {
        let fid: Option<i64> = self
            .conn
            .query_row(
                // A gzip-form file without its hot copy has no chunk list
                // of its bytes.
                "SELECT id FROM files f WHERE hash = ?1 AND size = ?2
                   AND (form = 0 OR EXISTS (SELECT 1 FROM file_chunks h WHERE h.file = f.id)) LIMIT 1",
                params![&hash.as_bytes()[..], size as i64],
                |r| r.get(0),
            )
            .optional()
            .sql(&self.path)?;
        let Some(fid) = fid else { return Ok(None) };
        let spans = self.file_chunks(fid)?;
        Ok(Some(spans.iter().map(|s| (s.id, s.loc.raw_len)).collect()))
    }

    pub(crate) fn totals(&self) -> Result<Totals> {
        let q = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .sql(&self.path)
        };
        Ok(Totals {
            artifacts: q("SELECT count(*) FROM artifacts")?,
            files: q("SELECT count(*) FROM files WHERE quarantine IS NULL")?,
            chunks: q("SELECT count(*) FROM chunks WHERE refs > 0")?,
            logical_bytes: q("SELECT coalesce(sum(size), 0) FROM files WHERE quarantine IS NULL")?,
            quarantined_files: q("SELECT count(*) FROM files WHERE quarantine IS NOT NULL")?,
            quarantined_bytes: q(
                "SELECT coalesce(sum(size), 0) FROM files WHERE quarantine IS NOT NULL",
            )?,
            unique_bytes: q("SELECT coalesce(sum(raw_len), 0) FROM chunks WHERE refs > 0")?,
            compressed_bytes: q("SELECT coalesce(sum(stored_len), 0) FROM chunks WHERE refs > 0")?,
            unreferenced_chunks: q("SELECT count(*) FROM chunks WHERE refs <= 0")?,
            unreferenced_bytes: q(
                "SELECT coalesce(sum(stored_len), 0) FROM chunks WHERE refs <= 0",
            )?,
        })
    }

    /// Every pack the index knows.
    pub(crate) fn packs(&self) -> Result<Vec<PackName>> {
        let names = self.rows("SELECT name FROM packs ORDER BY name", [], |r| {
            r.get::<_, String>(0)
        })?;
        Ok(names.iter().filter_map(|n| PackName::parse(n)).collect())
    }

    /// Every chunk of one pack, in pack order.
    pub(crate) fn chunks_in_pack(&self, pack: PackName) -> Result<Vec<(ChunkId, Location)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM chunks c JOIN packs p ON p.id = c.pack WHERE p.name = ?1 ORDER BY c.offset",
            )
            .sql(&self.path)?;
        let rows = st
            .query_map([pack.to_string()], |r| {
                Ok((chunk_id_at(r, 0)?, location_from(r, 1)?))
            })
            .sql(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .sql(&self.path)?;
        Ok(rows)
    }

    /// Who references a chunk: (artifact, file, offset) triples, for error reports.
    pub(crate) fn chunk_users(&self, id: &ChunkId) -> Result<Vec<(String, String, u64)>> {
        // The streams of gzip-form files count as users too (their offset
        // is in the stream, not the file).
        let rows = self.rows("SELECT CASE a.namespace WHEN '' THEN a.name ELSE a.namespace || ':' || a.name END, f.name, fc.offset
                 FROM (SELECT file, chunk, offset FROM file_chunks WHERE chunk = ?1
                       UNION ALL SELECT file, chunk, offset FROM file_streams WHERE chunk = ?1) fc
                 JOIN files f ON f.id = fc.file JOIN artifacts a ON a.id = f.artifact
                 ORDER BY a.name, f.name, fc.offset", [&id.as_bytes()[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?;
        Ok(rows)
    }

    /// The files cache: the hash recorded for a source file with exactly this stat.
    pub(crate) fn cached_source_hash(&self, key: &SourceKey) -> Result<Option<FileHash>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT hash FROM source_files
                 WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4 AND mtime_ns = ?5 AND ctime_ns = ?6",
            )
            .sql(&self.path)?;
        let h: Option<FileHash> = st
            .query_row(
                params![
                    key.path,
                    key.dev as i64,
                    key.ino as i64,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns
                ],
                |r| file_hash_at(r, 0),
            )
            .optional()
            .sql(&self.path)?;
        Ok(h)
    }

    pub(crate) fn remember_source(&self, key: &SourceKey, hash: &FileHash) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO source_files(path, dev, ino, size, mtime_ns, ctime_ns, hash)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    key.path,
                    key.dev as i64,
                    key.ino as i64,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns,
                    &hash.as_bytes()[..]
                ])
            })
            .sql(&self.path)?;
        Ok(())
    }
}
