//! gc's checkpoint of the manifest records (store-layout.md, "The
//! checkpoint"): one `Checkpoint` record, then one `PutArtifact` record per
//! artifact of the index, all in one transaction; from its commit on,
//! records with a lower seq are dead, and a replay starts at the newest
//! complete checkpoint ([`live_history`]).
//!
//! Invariants:
//! - The checkpoint record is fsynced before any of its puts is written,
//!   so no put of a checkpoint is ever on disk without the record that
//!   names it (by seq and nonce): a replay knows the puts of a checkpoint
//!   that did not commit, and skips them, whenever a crash left them.
//! - A committed checkpoint is complete: its seqs are never taken again
//!   (they are at most `journal_seq`), so at each of them its own record
//!   is the one a replay applies.
//! - The checkpoint changes no row: it restates the index, it does not
//!   alter it. Pending rows (files being written through a mount) are
//!   recorded as the quarantined rows they are, and the mount's later
//!   commit of the file replaces them on replay as it did live.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::changes::{journal_seq, set_journal_seq, void_seqs};
use super::migrate::{artifact_rows, record_count, write_puts};
use super::{Index, Sql};
use crate::error::Result;
use crate::manifest::{Change, Journal, Record};
use crate::pack::{PackName, RECORD_HEADER_LEN};

/// What a checkpoint written now would be: its records and their bytes
/// on disk (headers included), and where the log stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointInputs {
    /// `meta.journal_seq`, and `meta.checkpoint_seq` (0: none yet): the
    /// seq of the newest checkpoint, below which records are dead.
    pub journal_seq: u64,
    pub checkpoint_seq: u64,
    pub artifacts: u64,
    pub bytes: u64,
}

/// A checkpoint written.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checkpointed {
    /// Its first seq (that of the checkpoint record): records below it are
    /// dead from now on.
    pub seq: u64,
    /// Artifacts recorded, and the bytes written (records and headers).
    pub artifacts: u64,
    pub bytes: u64,
}

/// Fixed bytes of a `PutArtifact` record beyond its names: header, version,
/// seq, time, nonce, kind, two string lengths, created, last_access,
/// replace, file count (codec.rs).
const PUT_FIXED: u64 = RECORD_HEADER_LEN as u64 + 1 + 8 + 8 + 8 + 1 + 4 + 4 + 8 + 8 + 1 + 4;
/// Fixed bytes of a file in a record beyond its name: name length, size,
/// mode, mtime, committed, digest, quarantine flag, chunk count.
const FILE_FIXED: u64 = 4 + 8 + 4 + 8 + 8 + 32 + 1 + 4;
/// Fixed bytes of a `ConvertFile` record beyond its names: header,
/// version, seq, time, nonce, kind, three string lengths, digest, two
/// chunk counts (codec.rs).
const CONVERT_FIXED: u64 = RECORD_HEADER_LEN as u64 + 1 + 8 + 8 + 8 + 1 + 3 * 4 + 32 + 2 * 4;
/// A chunk in a file's list: id and length.
const CHUNK_BYTES: u64 = 32 + 4;
/// The checkpoint record without its nonces: header, version, seq, time,
/// nonce, kind, count.
const HEAD_FIXED: u64 = RECORD_HEADER_LEN as u64 + 1 + 8 + 8 + 8 + 1 + 4;

impl Index {
    /// The seq of the newest checkpoint (0: none).
    pub fn checkpoint_seq(&self) -> Result<u64> {
        checkpoint_seq(&self.conn).sql(&self.path)
    }

    /// Where the log stands and what a checkpoint would write now (exact:
    /// the records' encodings are summed field by field in SQL).
    pub fn checkpoint_inputs(&self) -> Result<CheckpointInputs> {
        let p = &self.path;
        let (artifacts, names): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(CAST(namespace AS BLOB)) + length(CAST(name AS BLOB))), 0)
                 FROM artifacts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .sql(p)?;
        let (files, file_names): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(CAST(name AS BLOB))
                   + CASE WHEN quarantine IS NULL THEN 0 ELSE 4 + length(CAST(quarantine AS BLOB)) END), 0)
                 FROM files",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .sql(p)?;
        // A put names a gzip-form file by its gz chunks (`gzip_chunks`,
        // whether or not a hot copy holds them in `file_chunks`).
        let chunks: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM file_chunks fc JOIN files f ON f.id = fc.file
                         WHERE f.form = 0)
                      + (SELECT count(*) FROM gzip_chunks)",
                [],
                |r| r.get(0),
            )
            .sql(p)?;
        // One ConvertFile record per gzip-form file: its names, digest and
        // its content and side data chunk lists.
        let (converts, convert_names, stream_chunks): (i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*),
                        coalesce(sum(length(CAST(a.namespace AS BLOB)) + length(CAST(a.name AS BLOB))
                                     + length(CAST(f.name AS BLOB))), 0),
                        (SELECT count(*) FROM file_streams)
                 FROM files f JOIN artifacts a ON a.id = f.artifact WHERE f.form = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .sql(p)?;
        let (artifacts, files, converts) = (artifacts as u64, files as u64, converts as u64);
        Ok(CheckpointInputs {
            journal_seq: journal_seq(&self.conn).sql(p)?,
            checkpoint_seq: checkpoint_seq(&self.conn).sql(p)?,
            artifacts,
            bytes: HEAD_FIXED
                + 8 * (artifacts + converts)
                + CONVERT_FIXED * converts
                + convert_names as u64
                + CHUNK_BYTES * stream_chunks as u64
                + PUT_FIXED * artifacts
                + names as u64
                + FILE_FIXED * files
                + file_names as u64
                + CHUNK_BYTES * chunks as u64,
        })
    }

    /// Write a checkpoint: in one `BEGIN IMMEDIATE` transaction, the
    /// checkpoint record (fsynced), then one `PutArtifact` per artifact
    /// (fsynced), then `journal_seq` and `checkpoint_seq`, and commit.
    /// `between` runs after each fsync (a test's pause). `Err(n)` inside:
    /// the checkpoint would take `n` seqs, more than `max_seqs` (what the
    /// caller marked in `gc.batch`); nothing was written.
    pub fn write_checkpoint(
        &mut self,
        max_seqs: u64,
        between: &dyn Fn(),
    ) -> Result<std::result::Result<Checkpointed, u64>> {
        self.with_journal("record changes", |conn, path, journal| {
            checkpoint(conn, path, journal, max_seqs, between)
        })
    }

    /// gc rewrote manifest packs: in one transaction, the packs the live
    /// records were copied to get their rows and each pack of `old` left
    /// with no chunk row loses its own. Returns the packs whose rows went
    /// (their files may be unlinked). Needs no `gc.lock`: no writer looks
    /// up a manifest record, and the copies stay flocked (safe from the
    /// orphan sweep) until their rows are committed.
    pub fn swap_manifest_packs(
        &mut self,
        new: &[PackName],
        old: &[(i64, PackName)],
    ) -> Result<Vec<PackName>> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        let mut dropped = Vec::new();
        {
            let mut add = tx
                .prepare_cached("INSERT OR IGNORE INTO packs(name) VALUES(?1)")
                .sql(&p)?;
            for n in new {
                add.execute([n.to_string()]).sql(&p)?;
            }
            let mut gone = tx
                .prepare_cached(
                    "DELETE FROM packs WHERE id = ?1
                       AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = packs.id)",
                )
                .sql(&p)?;
            for (id, name) in old {
                if gone.execute([id]).sql(&p)? == 1 {
                    dropped.push(*name);
                }
            }
        }
        tx.commit().sql(&p)?;
        Ok(dropped)
    }
}

/// `meta.checkpoint_seq`, 0 when absent.
fn checkpoint_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'checkpoint_seq'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match v {
        None => Ok(0),
        Some(v) => v.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("checkpoint_seq {v:?}: {e}").into(),
            )
        }),
    }
}

/// Record `seq` as the newest checkpoint's.
pub(super) fn set_checkpoint_seq(conn: &Connection, seq: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('checkpoint_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![seq.to_string()],
    )
    .map(drop)
}

/// [`Index::write_checkpoint`]'s transaction, with the journal held.
fn checkpoint(
    conn: &mut Connection,
    path: &Path,
    journal: &mut dyn Journal,
    max_seqs: u64,
    between: &dyn Fn(),
) -> Result<std::result::Result<Checkpointed, u64>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql(path)?;
    let artifacts = artifact_rows(&tx).sql(path)?;
    let n = record_count(&tx, &artifacts, true).sql(path)?;
    if n + 1 > max_seqs {
        return Ok(Err(n + 1));
    }
    let first = journal_seq(&tx).sql(path)? + 1;
    let nonces: Vec<u64> = (0..n).map(|_| rand::random()).collect();
    let head = Record::new(
        first,
        Change::Checkpoint {
            puts: nonces.clone(),
        },
    )
    .encode();
    let mut packs = vec![journal.write(&head)?];
    // Durable before any put is written: see the module doc.
    journal.sync()?;
    between();
    let (more, bytes) = write_puts(&tx, path, journal, &artifacts, first + 1, &nonces, true)?;
    journal.sync()?;
    between();
    packs.extend(more);
    let last = first + n;
    for p in packs {
        set_journal_seq(&tx, last, p).sql(path)?;
    }
    set_checkpoint_seq(&tx, first).sql(path)?;
    if let Err(e) = tx.commit() {
        void_seqs(journal, first..=last);
        return Err(e).sql(path);
    }
    Ok(Ok(Checkpointed {
        seq: first,
        artifacts: artifacts.len() as u64,
        bytes: bytes + (RECORD_HEADER_LEN + head.len()) as u64,
    }))
}

/// The records a replay applies, from all those found.
pub(crate) struct History {
    /// From the newest complete checkpoint on, less those of checkpoints
    /// that did not commit; in no particular order.
    pub records: Vec<(Record, PackName)>,
    /// The newest complete checkpoint's seq (0: none).
    pub checkpoint_seq: u64,
    /// Records left out: older than that checkpoint, or of a checkpoint
    /// that did not commit.
    pub dead: u64,
}

/// Where a replay starts, and what it leaves out. A checkpoint is
/// complete when, at its seq and at each of the next `puts.len()`, the
/// record a replay would apply (the last written of that seq) is its own:
/// the checkpoint record itself, then puts with its nonces in order. A
/// committed checkpoint always is. One that is not did not commit (a later
/// commit or a void took one of its seqs, or a crash lost a put before its
/// fsync); its puts restate the index as it was before it, and replayed
/// after changes that committed later they would undo them, so they are
/// left out wherever they are. Records below the newest complete
/// checkpoint are dead: gc may have dropped any of them, and replaying
/// what is left of them would resurrect what they removed.
pub(crate) fn live_history(records: Vec<(Record, PackName)>) -> History {
    // The (time, nonce) of the record applied at each seq.
    let mut winner: HashMap<u64, (i64, u64)> = HashMap::new();
    for (r, _) in &records {
        let e = winner.entry(r.seq).or_insert((r.time_ns, r.nonce));
        if (r.time_ns, r.nonce) > *e {
            *e = (r.time_ns, r.nonce);
        }
    }
    let puts_at: HashSet<(u64, u64)> = records
        .iter()
        .filter(|(r, _)| {
            matches!(
                r.change,
                Change::PutArtifact { .. } | Change::ConvertFile { .. }
            )
        })
        .map(|(r, _)| (r.seq, r.nonce))
        .collect();
    let mut start = 0;
    let mut unfinished: HashSet<(u64, u64)> = HashSet::new();
    for (r, _) in &records {
        let Change::Checkpoint { puts } = &r.change else {
            continue;
        };
        let own = |seq: u64, nonce: u64| {
            winner.get(&seq).is_some_and(|w| w.1 == nonce) && puts_at.contains(&(seq, nonce))
        };
        let complete = winner.get(&r.seq) == Some(&(r.time_ns, r.nonce))
            && puts
                .iter()
                .enumerate()
                .all(|(i, n)| own(r.seq + 1 + i as u64, *n));
        if complete {
            start = start.max(r.seq);
        } else {
            unfinished.insert((r.seq, r.nonce));
            unfinished.extend(
                puts.iter()
                    .enumerate()
                    .map(|(i, n)| (r.seq + 1 + i as u64, *n)),
            );
        }
    }
    let before = records.len();
    let records: Vec<_> = records
        .into_iter()
        .filter(|(r, _)| r.seq >= start && !unfinished.contains(&(r.seq, r.nonce)))
        .collect();
    History {
        dead: (before - records.len()) as u64,
        records,
        checkpoint_seq: start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Change;

    fn put(seq: u64, name: &str) -> Record {
        Record::new(
            seq,
            Change::PutArtifact {
                ns: String::new(),
                name: name.into(),
                created: 1,
                last_access: 1,
                replace: true,
                files: vec![],
            },
        )
    }

    fn rm(seq: u64, name: &str) -> Record {
        Record::new(
            seq,
            Change::RemoveArtifact {
                ns: String::new(),
                name: name.into(),
            },
        )
    }

    /// A checkpoint at `first` of the artifacts `names`.
    fn checkpoint(first: u64, names: &[&str]) -> Vec<Record> {
        let mut puts: Vec<Record> = names
            .iter()
            .enumerate()
            .map(|(i, n)| put(first + 1 + i as u64, n))
            .collect();
        let head = Record::new(
            first,
            Change::Checkpoint {
                puts: puts.iter().map(|r| r.nonce).collect(),
            },
        );
        puts.insert(0, head);
        puts
    }

    fn seqs(h: &History) -> Vec<(u64, String)> {
        let mut out: Vec<_> = h
            .records
            .iter()
            .map(|(r, _)| {
                let what = match &r.change {
                    Change::PutArtifact { name, .. } => format!("put {name}"),
                    Change::RemoveArtifact { name, .. } => format!("rm {name}"),
                    Change::Checkpoint { .. } => "checkpoint".into(),
                    c => format!("{c:?}"),
                };
                (r.seq, what)
            })
            .collect();
        out.sort();
        out
    }

    fn pack() -> PackName {
        PackName::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn with_pack(rs: Vec<Record>) -> Vec<(Record, PackName)> {
        rs.into_iter().map(|r| (r, pack())).collect()
    }

    /// A complete checkpoint starts the replay: what is left of older
    /// records (gc killed while dropping them) is not replayed, so an
    /// artifact removed before it does not come back.
    #[test]
    fn a_complete_checkpoint_starts_the_replay() {
        let mut rs = vec![put(1, "a"), put(2, "b"), rm(3, "b")];
        rs.extend(checkpoint(4, &["a"]));
        rs.push(put(6, "c"));
        // gc dropped seq 3's pack, not seq 2's: b's put alone survives.
        rs.retain(|r| r.seq != 3);
        let h = live_history(with_pack(rs));
        assert_eq!(h.checkpoint_seq, 4);
        assert_eq!(h.dead, 2);
        assert_eq!(
            seqs(&h),
            [
                (4, "checkpoint".into()),
                (5, "put a".into()),
                (6, "put c".into())
            ]
        );
    }

    /// A checkpoint that did not commit: a later commit took its first
    /// seq, a void (gc.batch) or nothing took the others. Its puts are
    /// left out wherever they are, the history before it is replayed.
    #[test]
    fn the_puts_of_a_checkpoint_that_did_not_commit_are_left_out() {
        let mut rs = vec![put(1, "a"), put(2, "b")];
        let crashed = checkpoint(3, &["a", "b", "x"]);
        rs.extend(crashed);
        // After the crash: rm b took seq 3 again (written later).
        std::thread::sleep(std::time::Duration::from_millis(2));
        rs.push(rm(3, "b"));
        let h = live_history(with_pack(rs));
        assert_eq!(h.checkpoint_seq, 0);
        assert_eq!(
            seqs(&h),
            [(1, "put a".into()), (2, "put b".into()), (3, "rm b".into())],
            "the crashed puts at 4..6 would have put b back"
        );
        assert_eq!(h.dead, 4);
    }

    /// A put lost before its fsync: the checkpoint is incomplete, the
    /// puts that survived are left out, and an older complete checkpoint
    /// is where the replay starts.
    #[test]
    fn a_checkpoint_missing_a_put_is_not_used() {
        let mut rs = checkpoint(1, &["a"]);
        rs.push(rm(3, "a"));
        let mut crashed = checkpoint(4, &["p", "q"]);
        crashed.remove(1); // p's put never reached the disk
        rs.extend(crashed);
        let h = live_history(with_pack(rs));
        assert_eq!(h.checkpoint_seq, 1);
        assert_eq!(
            seqs(&h),
            [
                (1, "checkpoint".into()),
                (2, "put a".into()),
                (3, "rm a".into())
            ]
        );
    }
}
