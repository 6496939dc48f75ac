//! Migrations (store-layout.md, "Migrations"): format 1 → 2 writes one
//! manifest record per artifact, fsynced in the transaction that sets the
//! format to 2; format 2 or 3 → 4 adds the gzip form's column and tables
//! (format 3 added only the checkpoint, a change kind: nothing to do).
//! The writer of the per-artifact records, [`write_puts`], is also gc's
//! checkpoint's (`checkpoint.rs`).

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
        let res = self.with_journal("be migrated", migrate);
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
    /// Format 3 only added the checkpoint (a change kind a format-2
    /// deploycache cannot replay), so this step is the same from either.
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
    let artifacts = artifact_rows(&tx).sql(path)?;
    let seq = journal_seq(&tx).sql(path)?;
    let nonces: Vec<u64> = artifacts.iter().map(|_| rand::random()).collect();
    // Format 1 has no gzip form (nor its column).
    let (packs, _) = write_puts(&tx, path, journal, &artifacts, seq + 1, &nonces, false)?;
    journal.sync()?;
    let last = seq + artifacts.len() as u64;
    for p in packs {
        set_journal_seq(&tx, last, p).sql(path)?;
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
/// included, in row order, with their times), each followed, when `gzip`
/// (the index has format 4's rows), by one `ConvertFile` record per file
/// of it in the gzip form (the put names such a file's gz chunks, the
/// convert its content and side data, as when it was converted): the
/// records take seqs `first`, `first + 1`, … and the nonces of `nonces`
/// in order, which must be exactly as many ([`record_count`]). One
/// artifact's records are in memory at a time. Not synced; returns the
/// packs written to and the bytes written (record headers included).
pub(super) fn write_puts(
    tx: &Transaction<'_>,
    path: &Path,
    journal: &mut dyn Journal,
    artifacts: &[ArtifactRow],
    first: u64,
    nonces: &[u64],
    gzip: bool,
) -> Result<(Vec<PackName>, u64)> {
    let (mut packs, mut bytes) = (Vec::new(), 0);
    let mut nonces = nonces.iter().copied();
    let mut seq = first;
    let mut write = |change: Change, bytes: &mut u64| -> Result<()> {
        let Some(nonce) = nonces.next() else {
            return Err(Error::Index {
                path: path.to_owned(),
                message: format!("more records to write than the {} counted", seq - first),
            });
        };
        let mut record = Record::new(seq, change);
        record.nonce = nonce;
        seq += 1;
        let payload = record.encode();
        *bytes += (crate::pack::RECORD_HEADER_LEN + payload.len()) as u64;
        let p = journal.write(&payload)?;
        if !packs.contains(&p) {
            packs.push(p);
        }
        Ok(())
    };
    for (aid, ns, name, created, last_access) in artifacts {
        let files = artifact_manifests(tx, *aid, gzip).sql(path)?;
        let converts = if gzip {
            super::gzip::artifact_converts(tx, ns, name, *aid).sql(path)?
        } else {
            Vec::new()
        };
        write(
            Change::PutArtifact {
                ns: ns.clone(),
                name: name.clone(),
                created: *created,
                last_access: *last_access,
                replace: true,
                files,
            },
            &mut bytes,
        )?;
        for c in converts {
            write(c, &mut bytes)?;
        }
    }
    Ok((packs, bytes))
}

/// How many records [`write_puts`] writes for `artifacts`.
pub(super) fn record_count(
    conn: &Connection,
    artifacts: &[ArtifactRow],
    gzip: bool,
) -> rusqlite::Result<u64> {
    let converted: i64 = if gzip {
        conn.query_row("SELECT count(*) FROM files WHERE form = 1", [], |r| {
            r.get(0)
        })?
    } else {
        0
    };
    Ok(artifacts.len() as u64 + converted as u64)
}

/// The files of an artifact as manifest records name them, quarantined
/// ones included, in row order.
pub(super) fn artifact_manifests(
    conn: &Connection,
    aid: i64,
    gzip: bool,
) -> rusqlite::Result<Vec<FileManifest>> {
    // A file in the gzip form is named by its gz chunks, which it may not
    // hold (no hot copy): `gzip_chunks`, not `file_chunks`.
    let form = if gzip { "form" } else { "0" };
    let files: Vec<((i64, i64), FileManifest)> = conn
        .prepare_cached(&format!(
            "SELECT id, name, size, mode, mtime_ns, committed, hash, quarantine, {form}
             FROM files WHERE artifact = ?1 ORDER BY id"
        ))?
        .query_map([aid], |r| {
            Ok((
                (r.get(0)?, r.get(8)?),
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
    let mut as_is = conn.prepare_cached(
        "SELECT fc.chunk, c.raw_len FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk
         WHERE fc.file = ?1 ORDER BY fc.seq",
    )?;
    let mut out = Vec::with_capacity(files.len());
    for ((fid, form), mut f) in files {
        let mut gz;
        let st = if form == 0 {
            &mut as_is
        } else {
            gz = conn.prepare_cached(
                "SELECT chunk, raw_len FROM gzip_chunks WHERE file = ?1 ORDER BY seq",
            )?;
            &mut gz
        };
        f.chunks = st
            .query_map([fid], |r| {
                Ok((chunk_id_at(r, 0)?, r.get::<_, i64>(1)? as u32))
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.push(f);
    }
    Ok(out)
}
