//! The gzip form's rows (format 4; store-layout.md, "Gzip files (format
//! 4)"): a conversion (change 14), applied live and on replay through
//! [`apply_convert`]; a file's recipe in either form; the hot copy kept
//! (promotion) and dropped, which are cache states like `last_access`, not
//! changes; the conversion candidates and the digests already tried; and
//! the checks `verify` makes of these rows.
//!
//! Invariants (besides the index's):
//! - `chunks.refs` counts `file_streams` rows as it counts `file_chunks`.
//! - A form-0 file has no `file_streams` or `gzip_chunks` rows. A form-1
//!   file has both streams (content may be empty, for an empty member) and
//!   its `gzip_chunks` (the chunk list its digest commits to); its
//!   `file_chunks` rows exist iff its hot copy is kept, and then equal its
//!   `gzip_chunks`.

use std::path::Path;

use rusqlite::{params, Connection, Transaction};

use super::{
    chunk_id_at, location_from, need_artifact, need_file, ChunkSpan, FileRow, Index, Recipe, Sql,
};
use crate::error::{Error, Result};
use crate::id::{ChunkId, FileHash};
use crate::manifest::Change;
use crate::pack::Location;

/// `gzip_tried.result` of a file that is not gzip (whatever the codec).
pub(crate) const NOT_GZIP: &str = "not gzip";

/// `file_streams.stream` of the inflated content, and of the side data.
pub(crate) const CONTENT: i64 = 1;
pub(crate) const SIDE: i64 = 2;

/// What the gzip form saves, for `stats`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GzipSaving {
    /// Files stored in the gzip form, and how many keep a hot copy.
    pub files: u64,
    pub hot_files: u64,
    /// Distinct bytes of their gzip chunks: what they would take stored
    /// as-is (after dedupe among themselves, before compression, which
    /// gzip'd bytes do not get).
    pub gzip_bytes: u64,
    /// Stored bytes of the chunks only their content and side data hold
    /// (no as-is file or hot copy holds them): what the gzip form adds.
    pub added_bytes: u64,
    /// Stored bytes of chunks only hot copies hold: what dropping every hot
    /// copy would free.
    pub hot_bytes: u64,
}

impl GzipSaving {
    /// Bytes the gzip form saves against storing those files as-is
    /// (negative: it costs more).
    pub fn saved_bytes(&self) -> i64 {
        self.gzip_bytes as i64 - self.added_bytes as i64
    }
}

/// A gzip-form file's hot copy, as gc sees it.
#[derive(Clone, Debug)]
pub struct HotCopy {
    pub file: i64,
    pub namespace: String,
    pub artifact: String,
    pub file_name: String,
    /// Its artifact's last use.
    pub last_access: i64,
    pub size: u64,
    pub chunks: Vec<HotChunk>,
}

/// A chunk of a hot copy: its bytes in a pack, its references, and how
/// many of them are the hot copy's own.
#[derive(Clone, Copy, Debug)]
pub struct HotChunk {
    pub id: ChunkId,
    pub on_disk: u64,
    pub refs: i64,
    pub own: i64,
}

/// Apply [`Change::ConvertFile`]: visible file `file` of `artifact`, as-is
/// with digest `hash`, takes the gzip form: its chunk list is kept as its
/// `gzip_chunks` (its `file_chunks` stay: the hot copy), the streams get
/// their rows and references. Fails, changing nothing the caller keeps,
/// when the file is not that file as-is any more.
pub(super) fn apply_convert(tx: &Transaction<'_>, path: &Path, change: &Change) -> Result<()> {
    let Change::ConvertFile {
        ns,
        artifact,
        file,
        hash,
        content,
        side,
    } = change
    else {
        unreachable!("apply_convert applies ConvertFile only")
    };
    let aid = need_artifact(tx, path, ns, artifact)?;
    let fid = need_file(tx, path, aid, artifact, file)?;
    let (now_hash, form): (Vec<u8>, i64) = tx
        .query_row("SELECT hash, form FROM files WHERE id = ?1", [fid], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .sql(path)?;
    let refuse = |why: &str| Error::Index {
        path: path.to_owned(),
        message: format!("artifact {artifact:?} file {file:?}: not converted: {why}"),
    };
    if FileHash::from_slice(&now_hash) != Some(*hash) {
        return Err(refuse("its content changed since"));
    }
    if form != 0 {
        return Err(refuse("it is in the gzip form already"));
    }
    tx.execute(
        "INSERT INTO gzip_chunks(file, seq, chunk, raw_len)
         SELECT fc.file, fc.seq, fc.chunk, c.raw_len
         FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.file = ?1",
        [fid],
    )
    .sql(path)?;
    insert_stream(tx, path, fid, CONTENT, content)?;
    insert_stream(tx, path, fid, SIDE, side)?;
    tx.execute("UPDATE files SET form = 1 WHERE id = ?1", [fid])
        .sql(path)?;
    Ok(())
}

/// A stream's rows, each with its reference.
fn insert_stream(
    tx: &Transaction<'_>,
    path: &Path,
    fid: i64,
    stream: i64,
    chunks: &[(ChunkId, u32)],
) -> Result<()> {
    let mut ins = tx
        .prepare_cached(
            "INSERT INTO file_streams(file, stream, seq, chunk, offset) VALUES(?1, ?2, ?3, ?4, ?5)",
        )
        .sql(path)?;
    let mut inc = tx
        .prepare_cached("UPDATE chunks SET refs = refs + 1 WHERE id = ?1")
        .sql(path)?;
    let mut offset = 0u64;
    for (seq, (id, len)) in chunks.iter().enumerate() {
        if inc.execute([&id.as_bytes()[..]]).sql(path)? != 1 {
            return Err(Error::Index {
                path: path.to_owned(),
                message: format!(
                    "gzip stream {stream} of file {fid}: chunk {id} is not in the index"
                ),
            });
        }
        ins.execute(params![
            fid,
            stream,
            seq as i64,
            &id.as_bytes()[..],
            offset as i64
        ])
        .sql(path)?;
        offset += u64::from(*len);
    }
    Ok(())
}

/// Drop a file's gzip-form rows and the references its streams hold (the
/// file is being deleted; its `file_chunks` go with the caller).
pub(super) fn delete_gzip_rows(tx: &Transaction<'_>, fid: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE chunks SET refs = refs - (SELECT count(*) FROM file_streams fs WHERE fs.file = ?1 AND fs.chunk = chunks.id)
         WHERE id IN (SELECT chunk FROM file_streams WHERE file = ?1)",
        [fid],
    )?;
    tx.execute("DELETE FROM file_streams WHERE file = ?1", [fid])?;
    tx.execute("DELETE FROM gzip_chunks WHERE file = ?1", [fid])?;
    Ok(())
}

/// The `ConvertFile` records that restate the gzip-form files of artifact
/// `aid` (`ns`/`name`), in row order: what gc's checkpoint writes after the
/// artifact's `PutArtifact` (checkpoint.rs).
pub(super) fn artifact_converts(
    conn: &Connection,
    ns: &str,
    name: &str,
    aid: i64,
) -> rusqlite::Result<Vec<Change>> {
    let files: Vec<(i64, String, FileHash)> = conn
        .prepare_cached(
            "SELECT id, name, hash FROM files WHERE artifact = ?1 AND form = 1 ORDER BY id",
        )?
        .query_map([aid], |r| {
            Ok((r.get(0)?, r.get(1)?, super::file_hash_at(r, 2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(
        "SELECT fs.chunk, c.raw_len FROM file_streams fs JOIN chunks c ON c.id = fs.chunk
         WHERE fs.file = ?1 AND fs.stream = ?2 ORDER BY fs.seq",
    )?;
    let mut stream = |fid: i64, which: i64| -> rusqlite::Result<Vec<(ChunkId, u32)>> {
        st.query_map(params![fid, which], |r| {
            Ok((super::chunk_id_at(r, 0)?, r.get::<_, i64>(1)? as u32))
        })?
        .collect()
    };
    let mut out = Vec::with_capacity(files.len());
    for (fid, file, hash) in files {
        out.push(Change::ConvertFile {
            ns: ns.to_owned(),
            artifact: name.to_owned(),
            file,
            hash,
            content: stream(fid, CONTENT)?,
            side: stream(fid, SIDE)?,
        });
    }
    Ok(out)
}

/// [`delete_gzip_rows`] for every file of artifact `aid` at once (gc's
/// evictions remove whole artifacts set by set, not file by file).
pub(super) fn delete_artifact_gzip_rows(tx: &Transaction<'_>, aid: i64) -> rusqlite::Result<()> {
    super::changes::delete_artifact_refs(tx, "file_streams", aid)?;
    tx.prepare_cached(
        "DELETE FROM gzip_chunks WHERE file IN (SELECT id FROM files WHERE artifact = ?1)",
    )?
    .execute([aid])?;
    Ok(())
}

/// Drop the hot copies of form-1 files whose `file_chunks` name a chunk
/// matching `chunk_filter` (a rebuild: one no pack holds), so that the file
/// stays, readable from its streams. Returns how many it dropped.
pub(super) fn drop_hot_where(tx: &Transaction<'_>, chunk_filter: &str) -> rusqlite::Result<usize> {
    let fids: Vec<i64> = tx
        .prepare(&format!(
            "SELECT DISTINCT f.id FROM files f JOIN file_chunks fc ON fc.file = f.id
             WHERE f.form = 1 AND fc.chunk IN (SELECT id FROM chunks WHERE {chunk_filter})"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for fid in &fids {
        drop_hot_rows(tx, *fid)?;
    }
    Ok(fids.len())
}

fn drop_hot_rows(c: &Connection, fid: i64) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE chunks SET refs = refs - (SELECT count(*) FROM file_chunks fc WHERE fc.file = ?1 AND fc.chunk = chunks.id)
         WHERE id IN (SELECT chunk FROM file_chunks WHERE file = ?1)",
        [fid],
    )?;
    c.execute("DELETE FROM file_chunks WHERE file = ?1", [fid])
}

impl Index {
    /// A file's recipe from its rows, in its form; `Ok(Err(what is
    /// wrong))` when they are inconsistent.
    pub(crate) fn file_recipe(&self, row: &FileRow) -> Result<std::result::Result<Recipe, String>> {
        let hot = self.file_chunks(row.id)?;
        if row.form == super::Form::AsIs {
            return Ok(Recipe::from_spans(hot));
        }
        let content = self.stream_spans(row.id, CONTENT)?;
        let side = self.stream_spans(row.id, SIDE)?;
        let gz = self.gzip_list(row.id)?;
        Ok(Recipe::gzip(content, side, gz, hot))
    }

    /// Stream `stream` of file `fid`, in order, with locations.
    fn stream_spans(&self, fid: i64, stream: i64) -> Result<Vec<ChunkSpan>> {
        self.rows(
            "SELECT fs.chunk, fs.offset, p.name, c.offset, c.stored_len, c.raw_len, c.codec
             FROM file_streams fs JOIN chunks c ON c.id = fs.chunk JOIN packs p ON p.id = c.pack
             WHERE fs.file = ?1 AND fs.stream = ?2 ORDER BY fs.seq",
            params![fid, stream],
            |r| {
                Ok(ChunkSpan {
                    id: chunk_id_at(r, 0)?,
                    offset: r.get::<_, i64>(1)? as u64,
                    loc: location_from(r, 2)?,
                })
            },
        )
    }

    /// The gzip chunk list of file `fid` (empty for a form-0 file).
    pub(crate) fn gzip_list(&self, fid: i64) -> Result<Vec<(ChunkId, u32)>> {
        self.rows(
            "SELECT chunk, raw_len FROM gzip_chunks WHERE file = ?1 ORDER BY seq",
            [fid],
            |r| Ok((chunk_id_at(r, 0)?, r.get::<_, i64>(1)? as u32)),
        )
    }

    /// Convert file row `row` of `artifact` (as-is, visible) to the gzip
    /// form, as one recorded change ([`Change::ConvertFile`]), indexing the
    /// chunks the conversion stored. Made only if, inside its transaction,
    /// the row is still that file: same id, digest and name, visible, as-is.
    /// Returns whether it was made.
    pub(crate) fn convert_file<'a>(
        &mut self,
        ns: &str,
        artifact: &str,
        row: &FileRow,
        content: Vec<(ChunkId, u32)>,
        side: Vec<(ChunkId, u32)>,
        new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
    ) -> Result<bool> {
        let change = Change::ConvertFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: row.meta.name.clone(),
            hash: row.hash,
            content,
            side,
        };
        let check = |c: &Connection| -> rusqlite::Result<bool> {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM files f JOIN artifacts a ON a.id = f.artifact
                   WHERE f.id = ?1 AND f.hash = ?2 AND f.name = ?3 AND f.form = 0
                     AND f.quarantine IS NULL AND a.namespace = ?4 AND a.name = ?5)",
                params![
                    row.id,
                    &row.hash.as_bytes()[..],
                    row.meta.name,
                    ns,
                    artifact
                ],
                |r| r.get(0),
            )
        };
        Ok(self.change_if(change, new_chunks, None, &check)?.is_some())
    }

    /// Keep the hot copy of gzip-form file `fid` (digest `hash`): its
    /// `file_chunks` from its `gzip_chunks`, each chunk referenced, the
    /// chunks a promotion stored indexed. Made only if the file is still
    /// that form-1 file without a hot copy. Not a change (no record): the
    /// hot copy is a cache, and a rebuild keeps it iff its chunks exist.
    /// The caller holds `gc.lock` shared (its writer's).
    pub(crate) fn promote<'a>(
        &mut self,
        fid: i64,
        hash: &FileHash,
        new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
    ) -> Result<bool> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .sql(&path)?;
        let cold: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1 AND hash = ?2 AND form = 1)
                   AND NOT EXISTS (SELECT 1 FROM file_chunks WHERE file = ?1)",
                params![fid, &hash.as_bytes()[..]],
                |r| r.get(0),
            )
            .sql(&path)?;
        if !cold {
            return Ok(false);
        }
        super::changes::insert_chunk_rows(&tx, new_chunks).sql(&path)?;
        let missing: i64 = tx
            .query_row(
                "SELECT count(*) FROM gzip_chunks g WHERE g.file = ?1
                   AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = g.chunk)",
                [fid],
                |r| r.get(0),
            )
            .sql(&path)?;
        if missing > 0 {
            return Ok(false); // a chunk of it has no row: no hot copy
        }
        tx.execute(
            "INSERT INTO file_chunks(file, seq, chunk, offset)
                 SELECT file, seq, chunk, coalesce(sum(raw_len) OVER (ORDER BY seq
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                 FROM gzip_chunks WHERE file = ?1",
            [fid],
        )
        .sql(&path)?;
        tx.execute(
                "UPDATE chunks SET refs = refs + (SELECT count(*) FROM file_chunks fc WHERE fc.file = ?1 AND fc.chunk = chunks.id)
                 WHERE id IN (SELECT chunk FROM file_chunks WHERE file = ?1)",
                [fid],
            )
            .sql(&path)?;
        tx.commit().sql(&path)?;
        Ok(true)
    }

    /// Drop the hot copy of gzip-form file `fid` (its `file_chunks` and
    /// their references; gc reclaims what no one else holds), unless its
    /// artifact was used after `last_access`. Returns whether it did.
    pub(crate) fn drop_hot(&mut self, fid: i64, last_access: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .sql(&path)?;
        let ok: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM files f JOIN artifacts a ON a.id = f.artifact
                   WHERE f.id = ?1 AND f.form = 1 AND a.last_access <= ?2)",
                params![fid, last_access],
                |r| r.get(0),
            )
            .sql(&path)?;
        if !ok {
            return Ok(false);
        }
        let n = drop_hot_rows(&tx, fid).sql(&path)?;
        tx.commit().sql(&path)?;
        Ok(n > 0)
    }

    /// Visible as-is files of namespace `ns` whose digest conversion has
    /// not tried yet, smallest row id first: (artifact, file row). `names`
    /// narrows them to these artifacts. A digest tried by another `codec`
    /// (a `gzip_tried.result` not starting with it) is tried again: a newer
    /// codec may rebuild what an older one could not. Not gzip stays so.
    pub(crate) fn gzip_candidates(
        &self,
        ns: &str,
        names: Option<&[String]>,
        codec: &str,
    ) -> Result<Vec<(String, FileRow)>> {
        let sql = format!(
            "SELECT {}, a.name FROM files f JOIN artifacts a ON a.id = f.artifact
             WHERE a.namespace = ?1 AND f.form = 0 AND f.quarantine IS NULL AND f.size > 0
               AND NOT EXISTS (SELECT 1 FROM gzip_tried t WHERE t.hash = f.hash
                                 AND (t.result = '{NOT_GZIP}'
                                      OR substr(t.result, 1, length(?2)) = ?2))
             ORDER BY f.id",
            super::FILE_COLS
        );
        let rows = self.rows(&sql, params![ns, codec], |r| {
            Ok((r.get::<_, String>(7)?, super::row_file(r)?))
        })?;
        Ok(rows
            .into_iter()
            .filter(|(a, _)| names.is_none_or(|n| n.contains(a)))
            .collect())
    }

    /// Remember that conversion of content `hash` was tried and did not
    /// convert it (`result` says why), so it is not tried again.
    pub(crate) fn mark_tried(&self, hash: &FileHash, result: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO gzip_tried(hash, result) VALUES(?1, ?2)",
                params![&hash.as_bytes()[..], result],
            )
            .sql(&self.path)?;
        Ok(())
    }

    /// Forget the verdicts of contents no file holds any more (gc runs
    /// this: without it the table would grow with every file ever tried).
    /// A file of that content put again later is tried again. Returns how
    /// many were forgotten.
    pub(crate) fn forget_gone_tried(&self) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM gzip_tried WHERE hash NOT IN (SELECT hash FROM files)",
                [],
            )
            .sql(&self.path)
    }

    /// Gzip-form files of every namespace without their hot copy:
    /// (artifact, file row); `verify --full` rebuilds each.
    pub(crate) fn cold_files(&self) -> Result<Vec<(String, FileRow)>> {
        let sql = format!(
            "SELECT {}, CASE a.namespace WHEN '' THEN a.name ELSE a.namespace || ':' || a.name END
             FROM files f JOIN artifacts a ON a.id = f.artifact
             WHERE f.form = 1 AND NOT EXISTS (SELECT 1 FROM file_chunks h WHERE h.file = f.id)
             ORDER BY f.id",
            super::FILE_COLS
        );
        self.rows(&sql, [], |r| {
            Ok((r.get::<_, String>(7)?, super::row_file(r)?))
        })
    }

    /// Every hot copy of a gzip-form file, with its chunks: what gc may
    /// drop, and what that frees.
    pub fn hot_copies(&self) -> Result<Vec<HotCopy>> {
        let mut out = self.rows(
            "SELECT f.id, a.namespace, a.name, f.name, a.last_access, f.size
             FROM files f JOIN artifacts a ON a.id = f.artifact
             WHERE f.form = 1 AND EXISTS (SELECT 1 FROM file_chunks h WHERE h.file = f.id)
             ORDER BY f.id",
            [],
            |r| {
                Ok(HotCopy {
                    file: r.get(0)?,
                    namespace: r.get(1)?,
                    artifact: r.get(2)?,
                    file_name: r.get(3)?,
                    last_access: r.get(4)?,
                    size: r.get::<_, i64>(5)? as u64,
                    chunks: Vec::new(),
                })
            },
        )?;
        for h in &mut out {
            h.chunks = self.rows(
                "SELECT fc.chunk, c.stored_len, c.refs, count(*) FROM file_chunks fc
                 JOIN chunks c ON c.id = fc.chunk WHERE fc.file = ?1 GROUP BY fc.chunk",
                [h.file],
                |r| {
                    Ok(HotChunk {
                        id: chunk_id_at(r, 0)?,
                        on_disk: r.get::<_, i64>(1)? as u64 + crate::pack::RECORD_HEADER_LEN as u64,
                        refs: r.get(2)?,
                        own: r.get(3)?,
                    })
                },
            )?;
        }
        Ok(out)
    }

    /// What the gzip form saves (see [`GzipSaving`]).
    pub(crate) fn gzip_saving(&self) -> Result<GzipSaving> {
        let q = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .sql(&self.path)
        };
        Ok(GzipSaving {
            files: q("SELECT count(*) FROM files WHERE form = 1")?,
            hot_files: q("SELECT count(*) FROM files f WHERE form = 1
                            AND EXISTS (SELECT 1 FROM file_chunks fc WHERE fc.file = f.id)")?,
            gzip_bytes: q("SELECT coalesce(sum(raw_len), 0) FROM
                             (SELECT DISTINCT chunk, raw_len FROM gzip_chunks)")?,
            added_bytes: q("SELECT coalesce(sum(c.stored_len), 0) FROM chunks c
                              WHERE c.id IN (SELECT chunk FROM file_streams)
                                AND c.id NOT IN (SELECT chunk FROM file_chunks)")?,
            hot_bytes: q("SELECT coalesce(sum(c.stored_len), 0) FROM chunks c
                            WHERE c.id IN (SELECT fc.chunk FROM file_chunks fc JOIN files f ON f.id = fc.file WHERE f.form = 1)
                              AND c.id NOT IN (SELECT fc.chunk FROM file_chunks fc JOIN files f ON f.id = fc.file WHERE f.form = 0)
                              AND c.id NOT IN (SELECT chunk FROM file_streams)")?,
        })
    }

    /// `verify`'s checks of the gzip form's rows (see the module doc), one
    /// line per problem.
    pub(crate) fn check_gzip(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let stray = self.rows(
            "SELECT a.name, f.name FROM files f JOIN artifacts a ON a.id = f.artifact WHERE f.form = 0
               AND (EXISTS (SELECT 1 FROM file_streams s WHERE s.file = f.id)
                    OR EXISTS (SELECT 1 FROM gzip_chunks g WHERE g.file = f.id))",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        for (a, f) in stray {
            problems.push(format!(
                "artifact {a:?} file {f:?}: stored as-is, but it has gzip-form rows"
            ));
        }
        let gz = self.rows(
            "SELECT f.id, a.name, f.name, f.size, f.hash, f.form FROM files f
             JOIN artifacts a ON a.id = f.artifact WHERE f.form != 0",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )?;
        for (fid, a, f, size, hash, form) in gz {
            let what = |w: String| format!("artifact {a:?} file {f:?}: {w}");
            if form != 1 {
                problems.push(what(format!("unknown form {form}")));
                continue;
            }
            let list = self.gzip_list(fid)?;
            if FileHash::from_slice(&hash) != Some(FileHash::of_chunks(list.iter().copied())) {
                problems.push(what(
                    "its gzip chunk list does not match the file digest".into(),
                ));
            }
            let sum: u64 = list.iter().map(|(_, l)| u64::from(*l)).sum();
            if sum != size {
                problems.push(what(format!(
                    "size {size}, but its gzip chunks hold {sum} bytes"
                )));
            }
            for (stream, name) in [(CONTENT, "content stream"), (SIDE, "side data")] {
                let rows = self.rows(
                    "SELECT fs.seq, fs.offset, c.raw_len FROM file_streams fs
                     LEFT JOIN chunks c ON c.id = fs.chunk
                     WHERE fs.file = ?1 AND fs.stream = ?2 ORDER BY fs.seq",
                    params![fid, stream],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)? as u64,
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    },
                )?;
                let mut at = 0u64;
                for (i, (seq, offset, len)) in rows.iter().enumerate() {
                    if *seq != i as i64 || *offset != at {
                        problems.push(what(format!(
                            "{name}: chunk {i} is at offset {offset}, the chunks before it hold {at} bytes"
                        )));
                        break;
                    }
                    at += len.unwrap_or(0) as u64;
                }
                if stream == SIDE && rows.is_empty() {
                    problems.push(what("gzip form without side data".into()));
                }
            }
            let hot: Vec<(ChunkId, u32)> = self
                .file_chunks(fid)?
                .iter()
                .map(|s| (s.id, s.loc.raw_len))
                .collect();
            if !hot.is_empty() && hot != list {
                problems.push(what("its hot copy is not its gzip chunk list".into()));
            }
        }
        Ok(problems)
    }
}
