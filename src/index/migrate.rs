//! The migrations: format 1 gets one manifest record per artifact, written
//! and fsynced in the transaction that sets the format; format 2 only gets
//! its version set (store-layout.md, "Migrations"). The writer of those
//! records, [`write_puts`], is also gc's checkpoint's (`checkpoint.rs`).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::changes::{journal_seq, set_journal_seq};
use super::{chunk_id_at, file_hash_at, Index, IndexState, Sql, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::manifest::{Change, FileManifest, Journal, Record};
use crate::pack::PackName;

impl Index {
    /// Migrate a format-1 index: in one exclusive transaction, write one
    /// manifest record per artifact (its files, quarantined ones included,
    /// with their times), then set the format to the current one. Returns
    /// how many artifacts it recorded (0 when another process migrated
    /// first).
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
            self.state = IndexState::Current;
        }
        res
    }

    /// Migrate a format-2 index: its rows and records are those of format
    /// 3, which only adds the checkpoint (a change kind a format-2
    /// deploycache cannot replay), so only the version changes. Another
    /// process may have migrated it first.
    pub(crate) fn migrate_v2(&mut self) -> Result<()> {
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'format_version' AND value = '2'",
                [FORMAT_VERSION.to_string()],
            )
            .sql(&self.path)?;
        self.state = IndexState::Current;
        Ok(())
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
    let artifacts = artifact_rows(&tx).sql(path)?;
    let seq = journal_seq(&tx).sql(path)?;
    let nonces: Vec<u64> = artifacts.iter().map(|_| rand::random()).collect();
    let (packs, _) = write_puts(&tx, path, journal, &artifacts, seq + 1, &nonces)?;
    journal.sync()?;
    let last = seq + artifacts.len() as u64;
    for p in packs {
        set_journal_seq(&tx, last, p).sql(path)?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
        [FORMAT_VERSION.to_string()],
    )
    .sql(path)?;
    tx.commit().sql(path)?;
    Ok(artifacts.len() as u64)
}

/// An artifact's row: id, namespace, name, created, last_access.
pub(super) type ArtifactRow = (i64, String, String, i64, i64);

/// Every artifact of the index, in row order.
pub(super) fn artifact_rows(conn: &Connection) -> rusqlite::Result<Vec<ArtifactRow>> {
    conn.prepare("SELECT id, namespace, name, created, last_access FROM artifacts ORDER BY id")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect()
}

/// Write one `PutArtifact` record (`replace`) per artifact of `artifacts`,
/// stating it whole (its files, quarantined ones and pending rows
/// included, in row order, with their times): the `i`-th with seq
/// `first + i` and nonce `nonces[i]`. One artifact's record is in memory
/// at a time. Not synced; returns the packs written to and the bytes
/// written (record headers included).
pub(super) fn write_puts(
    tx: &Transaction<'_>,
    path: &Path,
    journal: &mut dyn Journal,
    artifacts: &[ArtifactRow],
    first: u64,
    nonces: &[u64],
) -> Result<(Vec<PackName>, u64)> {
    let (mut packs, mut bytes) = (Vec::new(), 0);
    for (i, ((aid, ns, name, created, last_access), nonce)) in
        artifacts.iter().zip(nonces).enumerate()
    {
        let files = artifact_manifests(tx, *aid).sql(path)?;
        let change = Change::PutArtifact {
            ns: ns.clone(),
            name: name.clone(),
            created: *created,
            last_access: *last_access,
            replace: true,
            files,
        };
        let mut record = Record::new(first + i as u64, change);
        record.nonce = *nonce;
        let payload = record.encode();
        bytes += (crate::pack::RECORD_HEADER_LEN + payload.len()) as u64;
        let p = journal.write(&payload)?;
        if !packs.contains(&p) {
            packs.push(p);
        }
    }
    Ok((packs, bytes))
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
