//! Every change to the artifacts: [`Index::change`] records it as a manifest
//! record and applies it ([`apply_change`]) in one transaction; the rows a
//! change writes and deletes. The format-1 migration is `migrate.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::artifacts::missing_files;
use super::{
    artifact_id, file_id, need_artifact, need_file, sql_error, Dropped, Index, NewFile, Sql,
};
use crate::error::{Error, Result};
use crate::id::{ChunkId, FileHash};
use crate::manifest::{Change, FileManifest, Journal, PendingRow, Record};
use crate::pack::{Location, PackName};

impl Index {
    /// The `seq` of the last committed change (manifest.rs).
    pub(crate) fn journal_seq(&self) -> Result<u64> {
        journal_seq(&self.conn).sql(&self.path)
    }

    /// Record changes in `journal` from now on.
    pub(crate) fn set_journal(&mut self, journal: Box<dyn Journal>) {
        self.journal = Some(journal);
    }

    /// The journal lets go of the pack it appends to ([`Journal::let_go`]):
    /// the process has been idle. No transaction is under way while the
    /// caller holds this index.
    pub(crate) fn journal_let_go(&mut self) {
        if let Some(j) = self.journal.as_mut() {
            j.let_go();
        }
    }

    /// Every change to the artifacts goes through here: in one `BEGIN
    /// IMMEDIATE` transaction, index the chunks the change's writer stored,
    /// apply the change (which checks it), then append its manifest record
    /// with the next `journal_seq` and fsync it, and only then commit
    /// (manifest.rs has why in this order).
    pub(super) fn change<'a>(
        &mut self,
        change: Change,
        new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
        pending_id: Option<i64>,
    ) -> Result<Applied> {
        let always = |_: &Connection| Ok(true);
        let applied = self.change_if(change, new_chunks, pending_id, &always)?;
        Ok(applied.unwrap_or(Applied::Nothing))
    }

    /// [`Index::change`], made only if `check` holds inside its transaction,
    /// before anything is written (gc: the artifact is still the one it
    /// planned to evict). `None`: it did not hold; nothing was recorded.
    pub(super) fn change_if<'a>(
        &mut self,
        change: Change,
        new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
        pending_id: Option<i64>,
        check: &dyn Fn(&Connection) -> rusqlite::Result<bool>,
    ) -> Result<Option<Applied>> {
        let res = self.with_journal("record changes", |conn, path, journal| {
            commit_change(conn, path, journal, change, new_chunks, pending_id, check)
        });
        if matches!(res, Ok(Some(_))) {
            COMMITS.fetch_add(1, Ordering::Release);
        }
        res
    }
}

impl Index {
    /// Run `f` (a transaction that writes manifest records) with the
    /// manifest log held: [`Journal::hold`] before the write lock (gc takes
    /// `gc.lock` first, then writes), [`Journal::release`] after, whatever
    /// `f` returns. Without a log, an error saying the index cannot `what`.
    pub(super) fn with_journal<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Connection, &Path, &mut dyn Journal) -> Result<T>,
    ) -> Result<T> {
        let Some(journal) = self.journal.as_mut() else {
            return Err(Error::Index {
                path: self.path.clone(),
                message: format!("opened without its manifest log, so it cannot {what}"),
            });
        };
        journal.hold()?;
        let res = f(&mut self.conn, &self.path, journal.as_mut());
        journal.release();
        res
    }
}

/// After a failed commit: void the seqs `seqs` whose records it wrote, so
/// that a rebuild does not apply them. Best effort: a crash here is what
/// `Record::time_ns`, `gc.batch` and the checkpoint's replay rule are for.
pub(super) fn void_seqs(journal: &mut dyn Journal, seqs: std::ops::RangeInclusive<u64>) {
    for s in seqs {
        if journal
            .write(&Record::new(s, Change::Void).encode())
            .is_err()
        {
            break;
        }
    }
    // The voids written so far, durable (a failed write left the rest).
    let _ = journal.sync();
}

/// Changes this process committed, through any of its index connections:
/// a reader holding a snapshot older than the last of them may miss rows
/// it must see (a chunk a just-committed file stored), and starts a new one.
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// How many changes this process has committed so far (see [`COMMITS`]).
pub(crate) fn commits() -> u64 {
    COMMITS.load(Ordering::Acquire)
}

fn insert_file(tx: &Transaction<'_>, path: &Path, artifact: i64, f: &FileManifest) -> Result<()> {
    tx.execute(
        "INSERT INTO files(artifact, name, size, mode, mtime_ns, hash, committed, quarantine)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            artifact,
            f.name,
            f.size as i64,
            f.mode,
            f.mtime_ns,
            &f.hash.as_bytes()[..],
            f.committed,
            f.quarantine
        ],
    )
    .sql(path)?;
    let fid = tx.last_insert_rowid();
    let mut ins = tx
        .prepare_cached("INSERT INTO file_chunks(file, seq, chunk, offset) VALUES(?1, ?2, ?3, ?4)")
        .sql(path)?;
    let mut inc = tx
        .prepare_cached("UPDATE chunks SET refs = refs + 1 WHERE id = ?1")
        .sql(path)?;
    let mut offset = 0u64;
    for (seq, (id, len)) in f.chunks.iter().enumerate() {
        if inc.execute([&id.as_bytes()[..]]).sql(path)? != 1 {
            // The chunk row vanished (or never existed; in a rebuild: no
            // pack holds it): refuse rather than commit a file that points
            // at nothing.
            return Err(Error::Index {
                path: path.to_owned(),
                message: format!("file {:?}: chunk {id} is not in the index", f.name),
            });
        }
        ins.execute(params![fid, seq as i64, &id.as_bytes()[..], offset as i64])
            .sql(path)?;
        offset += *len as u64;
    }
    Ok(())
}

/// Delete a pending row: quarantined, so never a visible file, and it
/// holds no chunk references.
fn delete_pending(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM files WHERE id = ?1 AND quarantine IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM file_chunks WHERE file = ?1)",
        [id],
    )?;
    Ok(())
}

fn delete_file(tx: &Transaction<'_>, fid: i64) -> rusqlite::Result<()> {
    super::gzip::delete_gzip_rows(tx, fid)?;
    tx.prepare_cached(
        "UPDATE chunks SET refs = refs - (SELECT count(*) FROM file_chunks fc WHERE fc.file = ?1 AND fc.chunk = chunks.id)
         WHERE id IN (SELECT chunk FROM file_chunks WHERE file = ?1)",
    )?
    .execute([fid])?;
    tx.prepare_cached("DELETE FROM file_chunks WHERE file = ?1")?
        .execute([fid])?;
    tx.prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute([fid])?;
    Ok(())
}

/// Delete an artifact and its files, as [`delete_file`] on each file does,
/// in four statements whatever its number of files: gc evicts artifacts of
/// hundreds of files, and three statements per file cost most of an
/// eviction (BENCHMARKS.md, "gc at scale").
fn delete_artifact(tx: &Transaction<'_>, aid: i64) -> rusqlite::Result<()> {
    super::gzip::delete_artifact_gzip_rows(tx, aid)?;
    delete_artifact_refs(tx, "file_chunks", aid)?;
    tx.prepare_cached("DELETE FROM files WHERE artifact = ?1")?
        .execute([aid])?;
    tx.prepare_cached("DELETE FROM artifacts WHERE id = ?1")?
        .execute([aid])?;
    Ok(())
}

/// Delete the rows of `table` (`file_chunks`, `file_streams`: a file's
/// chunks, each holding a reference) of every file of artifact `aid`, and
/// the references they held, in two statements.
pub(super) fn delete_artifact_refs(
    tx: &Transaction<'_>,
    table: &str,
    aid: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "UPDATE chunks SET refs = refs - d.n
         FROM (SELECT t.chunk AS chunk, count(*) AS n
               FROM files f JOIN {table} t ON t.file = f.id
               WHERE f.artifact = ?1 GROUP BY t.chunk) AS d
         WHERE chunks.id = d.chunk"
    ))?
    .execute([aid])?;
    tx.prepare_cached(&format!(
        "DELETE FROM {table} WHERE file IN (SELECT id FROM files WHERE artifact = ?1)"
    ))?
    .execute([aid])?;
    Ok(())
}

/// [`Index::change`]'s transaction, with the journal held.
fn commit_change<'a>(
    conn: &mut Connection,
    path: &Path,
    journal: &mut dyn Journal,
    change: Change,
    new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
    pending_id: Option<i64>,
    check: &dyn Fn(&Connection) -> rusqlite::Result<bool>,
) -> Result<Option<Applied>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql(path)?;
    if !check(&tx).sql(path)? {
        return Ok(None); // rolled back: nothing was written
    }
    insert_chunk_rows(&tx, new_chunks).sql(path)?;
    let out = apply_change(&tx, path, &change, pending_id)?;
    let seq = journal_seq(&tx).sql(path)? + 1;
    let record = Record::new(seq, change);
    let pack = journal.write(&record.encode())?;
    journal.sync()?;
    set_journal_seq(&tx, seq, pack).sql(path)?;
    if let Err(e) = tx.commit() {
        // The record is durable but its change is not.
        void_seqs(journal, seq..=seq);
        return Err(sql_error(path, e));
    }
    Ok(Some(out))
}

/// Apply one change inside a transaction: the one place that gives each
/// [`Change`] its meaning, for live commits and for a rebuild's replay
/// alike. Fails, changing nothing the caller keeps, when the change does
/// not apply to the current state (no such artifact, the name is taken).
pub(crate) fn apply_change(
    tx: &Transaction<'_>,
    path: &Path,
    change: &Change,
    pending_id: Option<i64>,
) -> Result<Applied> {
    // The pending row a change names: the row the live caller holds, or
    // on replay the first row alike (rows alike are interchangeable).
    let pending = |row: &PendingRow| -> Result<Option<i64>> {
        match pending_id {
            Some(id) => Ok(Some(id)),
            None => find_pending(tx, row).sql(path),
        }
    };
    match change {
        Change::PutArtifact {
            ns,
            name,
            created,
            last_access,
            replace,
            files,
        } => {
            if let Some(old) = artifact_id(tx, ns, name).sql(path)? {
                if !replace {
                    return Err(Error::ArtifactExists(name.to_owned()));
                }
                delete_artifact(tx, old).sql(path)?;
            }
            tx.execute(
                "INSERT INTO artifacts(namespace, name, created, last_access) VALUES(?1, ?2, ?3, ?4)",
                params![ns, name, created, last_access],
            )
            .sql(path)?;
            let aid = tx.last_insert_rowid();
            for f in files {
                insert_file(tx, path, aid, f)?;
            }
        }
        Change::PutFile {
            ns,
            artifact,
            file,
            pending: row,
        } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            if file.quarantine.is_none() {
                if let Some(fid) = file_id(tx, aid, &file.name).sql(path)? {
                    delete_file(tx, fid).sql(path)?;
                }
            }
            insert_file(tx, path, aid, file)?;
            if let Some(row) = row {
                if let Some(id) = pending(row)? {
                    delete_pending(tx, id).sql(path)?;
                }
            }
        }
        Change::BeginPending { row } => {
            let aid = need_artifact(tx, path, &row.ns, &row.artifact)?;
            let empty: [(ChunkId, u32); 0] = [];
            tx.execute(
                "INSERT INTO files(artifact, name, size, mode, mtime_ns, hash, committed, quarantine)
                 VALUES(?1, ?2, 0, 0, 0, ?3, ?4, ?5)",
                params![
                    aid,
                    row.name,
                    &FileHash::of_chunks(empty).as_bytes()[..],
                    row.committed,
                    row.reason
                ],
            )
            .sql(path)?;
            return Ok(Applied::Row(tx.last_insert_rowid()));
        }
        Change::MovePending {
            row,
            to_artifact,
            to_name,
        } => {
            let aid = need_artifact(tx, path, &row.ns, to_artifact)?;
            if let Some(id) = pending(row)? {
                tx.execute(
                    "UPDATE files SET artifact = ?1, name = ?2 WHERE id = ?3 AND quarantine IS NOT NULL",
                    params![aid, to_name, id],
                )
                .sql(path)?;
            }
        }
        Change::EndPending { row, lost } => {
            if let Some(id) = pending(row)? {
                match lost {
                    Some(r) => {
                        tx.execute(
                            "UPDATE files SET quarantine = ?1 WHERE id = ?2 AND quarantine IS NOT NULL",
                            params![r, id],
                        )
                        .sql(path)?;
                    }
                    None => delete_pending(tx, id).sql(path)?,
                }
            }
        }
        Change::RemoveArtifact { ns, name } => {
            let aid = need_artifact(tx, path, ns, name)?;
            delete_artifact(tx, aid).sql(path)?;
        }
        Change::RemoveFile { ns, artifact, file } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            let fid = need_file(tx, path, aid, artifact, file)?;
            delete_file(tx, fid).sql(path)?;
        }
        Change::RenameFile { ns, from, to } => {
            let from_a = need_artifact(tx, path, ns, &from.0)?;
            let to_a = need_artifact(tx, path, ns, &to.0)?;
            let fid = need_file(tx, path, from_a, &from.0, &from.1)?;
            if let Some(existing) = file_id(tx, to_a, &to.1).sql(path)? {
                if existing == fid {
                    return Ok(Applied::Nothing);
                }
                delete_file(tx, existing).sql(path)?;
            }
            tx.execute(
                "UPDATE files SET artifact = ?1, name = ?2 WHERE id = ?3",
                params![to_a, to.1, fid],
            )
            .sql(path)?;
        }
        Change::RenameArtifact { ns, from, to } => {
            let aid = need_artifact(tx, path, ns, from)?;
            if let Some(existing) = artifact_id(tx, ns, to).sql(path)? {
                if existing == aid {
                    return Ok(Applied::Nothing);
                }
                let n: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM files WHERE artifact = ?1 AND quarantine IS NULL",
                        [existing],
                        |r| r.get(0),
                    )
                    .sql(path)?;
                if n > 0 {
                    return Err(Error::ArtifactExists(to.to_owned()));
                }
                delete_artifact(tx, existing).sql(path)?;
            }
            tx.execute(
                "UPDATE artifacts SET name = ?1 WHERE id = ?2",
                params![to, aid],
            )
            .sql(path)?;
        }
        Change::SetFileMeta {
            ns,
            artifact,
            file,
            mode,
            mtime_ns,
        } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            let fid = need_file(tx, path, aid, artifact, file)?;
            if let Some(m) = mode {
                tx.execute("UPDATE files SET mode = ?1 WHERE id = ?2", params![m, fid])
                    .sql(path)?;
            }
            if let Some(t) = mtime_ns {
                tx.execute(
                    "UPDATE files SET mtime_ns = ?1 WHERE id = ?2",
                    params![t, fid],
                )
                .sql(path)?;
            }
        }
        Change::RemoveQuarantined { ns, artifact } => {
            if let Some(name) = artifact {
                need_artifact(tx, path, ns, name)?;
            }
            let rows: Vec<(i64, u64, i64, String)> = tx
                .prepare_cached(
                    "SELECT f.id, f.size, a.id, a.name FROM files f JOIN artifacts a ON a.id = f.artifact
                     WHERE a.namespace = ?1 AND (?2 IS NULL OR a.name = ?2)
                       AND f.quarantine IS NOT NULL ORDER BY a.name",
                )
                .sql(path)?
                .query_map(params![ns, artifact], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .sql(path)?
                .collect::<rusqlite::Result<_>>()
                .sql(path)?;
            let mut dropped = Dropped {
                files: rows.len() as u64,
                bytes: rows.iter().map(|r| r.1).sum(),
                incomplete: Vec::new(),
            };
            for group in rows.chunk_by(|a, b| a.2 == b.2) {
                let aid = group[0].2;
                if missing_files(tx, aid).sql(path)?.is_empty() {
                    for r in group {
                        delete_file(tx, r.0).sql(path)?;
                    }
                } else {
                    delete_artifact(tx, aid).sql(path)?;
                    dropped.incomplete.push(group[0].3.clone());
                }
            }
            return Ok(Applied::Dropped(dropped));
        }
        Change::ConvertFile { .. } => super::gzip::apply_convert(tx, path, change)?,
        Change::Void | Change::Checkpoint { .. } => {}
    }
    Ok(Applied::Nothing)
}

/// What applying a change gives back.
pub(crate) enum Applied {
    Nothing,
    /// `rm --quarantine`: what it dropped.
    Dropped(Dropped),
    /// A new pending row: its id.
    Row(i64),
}

/// The first pending row (quarantined, no chunks) alike `row` in all it
/// holds.
fn find_pending(conn: &Connection, row: &PendingRow) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT f.id FROM files f JOIN artifacts a ON a.id = f.artifact
         WHERE a.namespace = ?1 AND a.name = ?2 AND f.name = ?3 AND f.quarantine = ?4
           AND f.committed = ?5 AND NOT EXISTS (SELECT 1 FROM file_chunks WHERE file = f.id)
         ORDER BY f.id LIMIT 1",
        params![row.ns, row.artifact, row.name, row.reason, row.committed],
        |r| r.get(0),
    )
    .optional()
}

/// The `seq` of the last committed change (0 before the first). A value
/// that is not a number is an error: taking it for 0 would number the next
/// change like one already recorded.
pub(super) fn journal_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'journal_seq'",
        [],
        |r| {
            let v: String = r.get(0)?;
            v.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("journal_seq {v:?}: {e}").into(),
                )
            })
        },
    )
    .optional()
    .map(|v| v.unwrap_or(0))
}

/// Record `seq` as committed, and `pack` as a pack that holds committed
/// records (so that nothing takes it for a crashed writer's leftovers).
pub(super) fn set_journal_seq(
    tx: &Transaction<'_>,
    seq: u64,
    pack: PackName,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('journal_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [seq.to_string()],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO packs(name) VALUES(?1)",
        [pack.to_string()],
    )?;
    Ok(())
}

/// Index rows for chunks a writer stored (rows that exist stay as they are).
pub(super) fn insert_chunk_rows<'a>(
    tx: &Transaction<'_>,
    chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
) -> rusqlite::Result<()> {
    let mut pack = tx.prepare_cached("INSERT OR IGNORE INTO packs(name) VALUES(?1)")?;
    let mut chunk = tx.prepare_cached(
        "INSERT OR IGNORE INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
         VALUES(?1, (SELECT id FROM packs WHERE name = ?2), ?3, ?4, ?5, ?6, 0)",
    )?;
    for (id, loc) in chunks {
        let pname = loc.pack.to_string();
        pack.execute([&pname])?;
        chunk.execute(params![
            &id.as_bytes()[..],
            pname,
            loc.offset as i64,
            loc.stored_len,
            loc.raw_len,
            loc.codec as u8
        ])?;
    }
    Ok(())
}

impl NewFile {
    /// The file as a manifest record names it.
    pub(super) fn manifest(&self, quarantine: Option<&str>, committed: i64) -> FileManifest {
        FileManifest {
            name: self.meta.name.clone(),
            size: self.meta.size,
            mode: self.meta.mode,
            mtime_ns: self.meta.mtime_ns,
            committed,
            hash: self.hash,
            quarantine: quarantine.map(str::to_owned),
            chunks: self.chunks.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
