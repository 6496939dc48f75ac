//! Rebuilding the index from the packs alone: every valid chunk record
//! becomes a `chunks` row, and the manifest records are replayed, in commit
//! order, from the newest complete checkpoint on (`checkpoint.rs`), through
//! [`apply_change`], the code that applied them in the first place
//! (store-layout.md, "Rebuilding the index").

use rusqlite::TransactionBehavior;

use super::changes::{apply_change, insert_chunk_rows, set_journal_seq};
use super::checkpoint::{live_history, set_checkpoint_seq};
use super::{Index, IndexState, Sql};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::manifest::{Change, Record};
use crate::pack::{Location, PackName};

/// What a scan of every pack found that a rebuild can use: records whose
/// header is well formed and whose payload hashes to their id.
#[derive(Default)]
pub(crate) struct ScannedPacks {
    /// Chunk records, one location per chunk id (the first valid copy).
    pub chunks: Vec<(ChunkId, Location)>,
    /// Manifest records, in no particular order, with the pack holding each.
    pub records: Vec<(Record, PackName)>,
}

/// What a rebuild recovered.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RebuildReport {
    /// Artifacts in the rebuilt index, and the namespaces they are in.
    pub artifacts: u64,
    pub namespaces: u64,
    /// Distinct chunks indexed (referenced or not).
    pub chunks: u64,
    /// Manifest records replayed, and those that were not: superseded ones
    /// (their seq taken again after a crash before their commit) and void
    /// ones (their commit failed).
    pub changes_replayed: u64,
    pub changes_superseded: u64,
    /// The newest complete checkpoint, where the replay started (0: none),
    /// and the records left out: older than it, or of a checkpoint that
    /// did not commit.
    pub checkpoint_seq: u64,
    pub changes_dead: u64,
    /// Changes that could not be applied, one line each (a chunk no pack
    /// holds any more, say): what they changed is not recovered.
    pub problems: Vec<String>,
    /// The newest seq replayed: the rebuilt index continues from it.
    pub journal_seq: u64,
}

/// The records a replay applies, in commit order: of several with one seq,
/// the last written.
pub(crate) fn in_commit_order(
    mut records: Vec<(Record, PackName)>,
) -> (Vec<(Record, PackName)>, u64) {
    records.sort_by_key(|(r, _)| r.order_key());
    let before = records.len();
    let mut out: Vec<(Record, PackName)> = Vec::with_capacity(before);
    for r in records {
        if out.last().is_some_and(|(last, _)| last.seq == r.0.seq) {
            out.pop();
        }
        out.push(r);
    }
    let superseded = (before - out.len()) as u64;
    (out, superseded)
}

impl Index {
    /// Fill an empty index from what a scan of the packs found, in one
    /// transaction. A change that does not apply is reported and skipped,
    /// as its first commit would have failed in the same way.
    pub(crate) fn rebuild_from(&mut self, mut scanned: ScannedPacks) -> Result<RebuildReport> {
        if self.state != IndexState::Empty {
            return Err(Error::Index {
                path: self.path.clone(),
                message: "a rebuild fills only an empty index".into(),
            });
        }
        self.prepare()?;
        let path = self.path.clone();
        let mut report = RebuildReport {
            chunks: scanned.chunks.len() as u64,
            ..RebuildReport::default()
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .sql(&path)?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES('format_version', ?1)",
            [super::FORMAT_VERSION.to_string()],
        )
        .sql(&path)?;
        let history = live_history(std::mem::take(&mut scanned.records));
        scanned.records = history.records;
        report.checkpoint_seq = history.checkpoint_seq;
        report.changes_dead = history.dead;
        if history.checkpoint_seq > 0 {
            set_checkpoint_seq(&tx, history.checkpoint_seq).sql(&path)?;
        }
        insert_chunk_rows(&tx, &scanned.chunks).sql(&path)?;
        let gone = gone_chunks(&scanned);
        insert_gone(&tx, &gone).sql(&path)?;
        let (records, superseded) = in_commit_order(scanned.records);
        report.changes_superseded = superseded;
        for (record, pack) in &records {
            set_journal_seq(&tx, record.seq, *pack).sql(&path)?;
            report.journal_seq = record.seq;
            if record.change == Change::Void {
                report.changes_superseded += 1;
                continue;
            }
            // Each change in a savepoint: one that fails leaves no trace.
            tx.execute_batch("SAVEPOINT change").sql(&path)?;
            match apply_change(&tx, &path, &record.change, None) {
                Ok(_) => {
                    tx.execute_batch("RELEASE change").sql(&path)?;
                    report.changes_replayed += 1;
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO change; RELEASE change")
                        .sql(&path)?;
                    report.problems.push(format!(
                        "change #{} ({}) not recovered: {e}",
                        record.seq,
                        describe(&record.change)
                    ));
                }
            }
        }
        report.problems.extend(drop_gone(&tx, &path)?);
        let (artifacts, namespaces): (i64, i64) = tx
            .query_row(
                "SELECT count(*), count(DISTINCT namespace) FROM artifacts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .sql(&path)?;
        tx.commit().sql(&path)?;
        self.state = IndexState::Current;
        report.artifacts = artifacts as u64;
        report.namespaces = namespaces as u64;
        Ok(report)
    }
}

/// The name of the `packs` row that holds, during a replay, the chunks no
/// pack holds any more. Not a pack name (those are 32 hex digits).
const GONE: &str = "(in no pack)";

/// Chunks the records name that no pack holds: gc deleted them once no
/// artifact held them (or they were lost). A replay applies the changes
/// that name them (an artifact put, then evicted, replays as put, then
/// removed); whatever still holds one at the end is not recovered.
fn gone_chunks(scanned: &ScannedPacks) -> Vec<(ChunkId, u32)> {
    let known: std::collections::HashSet<&ChunkId> =
        scanned.chunks.iter().map(|(id, _)| id).collect();
    let mut gone = std::collections::HashMap::new();
    for (r, _) in &scanned.records {
        let lists: Vec<&[(ChunkId, u32)]> = match &r.change {
            Change::PutArtifact { files, .. } => files.iter().map(|f| &f.chunks[..]).collect(),
            Change::PutFile { file, .. } => vec![&file.chunks],
            Change::ConvertFile { content, side, .. } => vec![content, side],
            _ => continue,
        };
        for (id, len) in lists.into_iter().flatten() {
            if !known.contains(id) {
                gone.insert(*id, *len);
            }
        }
    }
    gone.into_iter().collect()
}

pub(super) fn insert_gone(
    tx: &rusqlite::Transaction<'_>,
    gone: &[(ChunkId, u32)],
) -> rusqlite::Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    tx.execute("INSERT INTO packs(name) VALUES(?1)", [GONE])?;
    let pack = tx.last_insert_rowid();
    let mut ins = tx.prepare_cached(
        "INSERT INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
         VALUES(?1, ?2, 0, 0, ?3, 0, 0)",
    )?;
    for (id, len) in gone {
        ins.execute(rusqlite::params![&id.as_bytes()[..], pack, len])?;
    }
    Ok(())
}

/// Remove every artifact the replay left holding a chunk no pack holds,
/// then those chunks' rows; one problem line per artifact removed. A
/// gzip-form file whose hot copy names such a chunk (gc dropped the copy,
/// then its chunks) only loses the copy: its streams still make it.
pub(super) fn drop_gone(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
) -> Result<Vec<String>> {
    super::gzip::drop_hot_where(
        tx,
        &format!("pack IN (SELECT id FROM packs WHERE name = '{GONE}')"),
    )
    .sql(path)?;
    let held: Vec<(String, String)> = tx
        .prepare(
            "SELECT DISTINCT a.namespace, a.name FROM artifacts a
               JOIN files f ON f.artifact = a.id
               JOIN file_chunks fc ON fc.file = f.id
               JOIN chunks c ON c.id = fc.chunk
               JOIN packs p ON p.id = c.pack
             WHERE p.name = ?1",
        )
        .and_then(|mut st| {
            st.query_map([GONE], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .sql(path)?;
    let mut problems = Vec::new();
    for (ns, name) in held {
        let change = Change::RemoveArtifact { ns, name };
        problems.push(format!(
            "{} not recovered: a chunk of it is in no pack",
            describe(&change).replacen("remove artifact", "artifact", 1)
        ));
        apply_change(tx, path, &change, None)?;
    }
    tx.execute(
        "DELETE FROM chunks WHERE pack IN (SELECT id FROM packs WHERE name = ?1)",
        [GONE],
    )
    .sql(path)?;
    tx.execute("DELETE FROM packs WHERE name = ?1", [GONE])
        .sql(path)?;
    Ok(problems)
}

/// A change in a few words, for reports.
fn describe(c: &Change) -> String {
    let art = |ns: &str, name: &str| {
        if ns.is_empty() {
            format!("{name:?}")
        } else {
            format!("{ns}:{name:?}")
        }
    };
    match c {
        Change::PutArtifact { ns, name, .. } => format!("store artifact {}", art(ns, name)),
        Change::PutFile {
            ns, artifact, file, ..
        } => format!("store {}/{:?}", art(ns, artifact), file.name),
        Change::BeginPending { row } => {
            format!(
                "begin writing {}/{:?}",
                art(&row.ns, &row.artifact),
                row.name
            )
        }
        Change::MovePending {
            row,
            to_artifact,
            to_name,
        } => format!(
            "move {}/{:?} being written to {}/{to_name:?}",
            art(&row.ns, &row.artifact),
            row.name,
            art(&row.ns, to_artifact)
        ),
        Change::EndPending { row, .. } => {
            format!("end writing {}/{:?}", art(&row.ns, &row.artifact), row.name)
        }
        Change::RemoveArtifact { ns, name } => format!("remove artifact {}", art(ns, name)),
        Change::RemoveFile { ns, artifact, file } => {
            format!("remove {}/{file:?}", art(ns, artifact))
        }
        Change::RenameFile { ns, from, to } => format!(
            "rename {}/{:?} to {}/{:?}",
            art(ns, &from.0),
            from.1,
            art(ns, &to.0),
            to.1
        ),
        Change::RenameArtifact { ns, from, to } => {
            format!("rename artifact {} to {to:?}", art(ns, from))
        }
        Change::SetFileMeta {
            ns, artifact, file, ..
        } => format!("set mode/mtime of {}/{file:?}", art(ns, artifact)),
        Change::RemoveQuarantined { ns, artifact } => match artifact {
            Some(a) => format!("drop quarantined files of {}", art(ns, a)),
            None => format!("drop quarantined files of namespace {ns:?}"),
        },
        Change::ConvertFile {
            ns, artifact, file, ..
        } => format!("convert {}/{file:?} to the gzip form", art(ns, artifact)),
        Change::Void => "nothing (void)".into(),
        Change::Checkpoint { puts } => format!("checkpoint of {} artifacts", puts.len()),
    }
}

impl Index {
    /// Every chunk row with its location (for a replay beside this index).
    pub(crate) fn all_chunks(&self) -> Result<Vec<(ChunkId, Location)>> {
        self.rows(
            "SELECT c.id, p.name, c.offset, c.stored_len, c.raw_len, c.codec
             FROM chunks c JOIN packs p ON p.id = c.pack",
            [],
            |r| Ok((super::chunk_id_at(r, 0)?, super::location_from(r, 1)?)),
        )
    }

    /// The artifact state a replay must reproduce, one line per artifact
    /// and per file, sorted: everything but `last_access` (reads are not
    /// changes), row ids and whether a gzip-form file keeps its hot copy
    /// (a cache).
    pub(crate) fn artifact_state(&self) -> Result<Vec<String>> {
        let mut lines = self.rows("SELECT namespace, name, created FROM artifacts", [], |r| {
            Ok(format!(
                "artifact {:?}:{:?} created {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?
            ))
        })?;
        lines.extend(self.rows(
            "SELECT a.namespace, a.name, f.name, f.size, f.mode, f.mtime_ns, f.hash, f.committed, f.quarantine, f.form
             FROM files f JOIN artifacts a ON a.id = f.artifact",
            [],
            |r| {
                Ok(format!(
                    "file {:?}:{:?}/{:?} size {} mode {:o} mtime {} digest {} committed {} quarantine {:?} form {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    hex::encode(r.get::<_, Vec<u8>>(6)?),
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, i64>(9)?
                ))
            },
        )?);
        lines.sort();
        Ok(lines)
    }
}

/// Replay `records` (those of committed changes) beside `live` and say where
/// the result differs from it: what a rebuild would get wrong. Empty when
/// a rebuild would give back exactly this index's artifacts.
pub(crate) fn replay_differences(
    live: &Index,
    records: Vec<(Record, PackName)>,
) -> Result<Vec<String>> {
    let seq = live.journal_seq()?;
    let records = records.into_iter().filter(|(r, _)| r.seq <= seq).collect();
    let scanned = ScannedPacks {
        chunks: live.all_chunks()?,
        records,
    };
    let mut replay = Index::open(std::path::Path::new(":memory:"))?;
    let report = replay.rebuild_from(scanned)?;
    let (mut want, mut got) = (live.artifact_state()?, replay.artifact_state()?);
    // Artifacts a remote holds are stated by its commits (checked by their
    // BLAKE3 when applied), not by this host's records.
    let remote: Vec<(String, String)> =
        live.rows("SELECT namespace, name FROM remote_published", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if !remote.is_empty() {
        let prefixes: Vec<String> = remote
            .iter()
            .flat_map(|(ns, name)| {
                [
                    format!("artifact {ns:?}:{name:?} "),
                    format!("file {ns:?}:{name:?}/"),
                ]
            })
            .collect();
        let mine = |l: &String| !prefixes.iter().any(|p| l.starts_with(p));
        want.retain(mine);
        got.retain(mine);
    }
    let mut out = report.problems;
    let missing = want.iter().filter(|l| got.binary_search(l).is_err());
    let extra = got.iter().filter(|l| want.binary_search(l).is_err());
    out.extend(missing.map(|l| format!("the index has {l}, its manifest records do not")));
    out.extend(extra.map(|l| format!("the manifest records have {l}, the index does not")));
    Ok(out)
}
