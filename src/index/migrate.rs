//! Migrations (store-layout.md, "Migrations"): format 1 → 2 writes one
//! manifest record per artifact, fsynced in the transaction that sets the
//! format to 2; format 2 (or 3) → 4 adds the gzip form's column and tables.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::changes::{journal_seq, set_journal_seq};
use super::{chunk_id_at, file_hash_at, Index, IndexState, Sql, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::manifest::{Change, FileManifest, Journal, Record};

impl Index {
    /// Migrate a format-1 index: in one exclusive transaction, write one
    /// manifest record per artifact (its files, quarantined ones included,
    /// with their times), then set the format to 2. Returns how many
    /// artifacts it recorded (0 when another process migrated first).
    pub(crate) fn migrate_v1(&mut self) -> Result<u64> {
        let Some(journal) = self.journal.as_mut() else {
            return Err(Error::Index {
                path: self.path.clone(),
                message: "opened without its manifest log, so it cannot be migrated".into(),
            });
        };
        journal.hold()?;
        let res = migrate(&mut self.conn, &self.path, journal.as_mut());
        journal.release();
        if res.is_ok() {
            self.state = IndexState::Old;
        }
        res
    }

    /// Migrate a format-2 or -3 index to 4: in one exclusive transaction,
    /// add `files.form` (every existing file is stored as-is: 0) and the
    /// tables of the gzip form (created empty by the schema already), then
    /// set the format. No manifest record: no artifact changes. Returns
    /// whether it migrated (false when another process did first).
    ///
    /// Format 3 (gc checkpoints) is another branch's: a 2 → 3 step runs
    /// before this one once it lands; this step is the same from either.
    pub(crate) fn migrate_v4(&mut self) -> Result<bool> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .sql(&path)?;
        let version: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key='format_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .sql(&path)?;
        if !matches!(version.as_deref(), Some("2") | Some("3")) {
            return Ok(false);
        }
        let has_form: bool = tx
            .query_row(
                "SELECT count(*) FROM pragma_table_info('files') WHERE name = 'form'",
                [],
                |r| r.get(0),
            )
            .sql(&path)?;
        if !has_form {
            tx.execute_batch("ALTER TABLE files ADD COLUMN form INTEGER NOT NULL DEFAULT 0")
                .sql(&path)?;
        }
        tx.execute_batch(super::SCHEMA).sql(&path)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
            [FORMAT_VERSION.to_string()],
        )
        .sql(&path)?;
        tx.commit().sql(&path)?;
        self.state = IndexState::Current;
        Ok(true)
    }
}

/// [`Index::migrate_v1`]'s transaction, with the journal held.
fn migrate(conn: &mut Connection, path: &Path, journal: &mut dyn Journal) -> Result<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .sql(path)?;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key='format_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .sql(path)?;
    if version.as_deref() != Some("1") {
        return Ok(0);
    }
    let artifacts: Vec<(i64, String, String, i64, i64)> = tx
        .prepare("SELECT id, namespace, name, created, last_access FROM artifacts ORDER BY id")
        .sql(path)?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .sql(path)?
        .collect::<rusqlite::Result<_>>()
        .sql(path)?;
    let mut seq = journal_seq(&tx).sql(path)?;
    let mut packs = Vec::new();
    for (aid, ns, name, created, last_access) in &artifacts {
        let files = artifact_manifests(&tx, *aid).sql(path)?;
        seq += 1;
        let change = Change::PutArtifact {
            ns: ns.clone(),
            name: name.clone(),
            created: *created,
            last_access: *last_access,
            replace: true,
            files,
        };
        packs.push(journal.write(&Record::new(seq, change).encode())?);
    }
    journal.sync()?;
    for p in packs {
        set_journal_seq(&tx, seq, p).sql(path)?;
    }
    // Format 2: the later steps (migrate_v4) run after this one.
    tx.execute(
        "UPDATE meta SET value = '2' WHERE key = 'format_version'",
        [],
    )
    .sql(path)?;
    tx.commit().sql(path)?;
    Ok(artifacts.len() as u64)
}

/// The files of an artifact as manifest records name them, quarantined
/// ones included, in row order.
fn artifact_manifests(conn: &Connection, aid: i64) -> rusqlite::Result<Vec<FileManifest>> {
    let files: Vec<(i64, FileManifest)> = conn
        .prepare_cached(
            "SELECT id, name, size, mode, mtime_ns, committed, hash, quarantine
             FROM files WHERE artifact = ?1 ORDER BY id",
        )?
        .query_map([aid], |r| {
            Ok((
                r.get(0)?,
                FileManifest {
                    name: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    mode: r.get::<_, i64>(3)? as u32,
                    mtime_ns: r.get(4)?,
                    committed: r.get(5)?,
                    hash: file_hash_at(r, 6)?,
                    quarantine: r.get(7)?,
                    chunks: Vec::new(),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(
        "SELECT fc.chunk, c.raw_len FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk
         WHERE fc.file = ?1 ORDER BY fc.seq",
    )?;
    let mut out = Vec::with_capacity(files.len());
    for (fid, mut f) in files {
        f.chunks = st
            .query_map([fid], |r| {
                Ok((chunk_id_at(r, 0)?, r.get::<_, i64>(1)? as u32))
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.push(f);
    }
    Ok(out)
}
