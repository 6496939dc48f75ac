//! Who holds which chunk, for gc and for stats that add up: one pass over
//! the chunk references in chunk order, the artifacts as gc sees them,
//! recording a use at a given time, and the removals gc makes, each
//! checked inside its own transaction.
//!
//! Cost: every query here reads the index once (chunk references through
//! their `file_chunks(chunk)` index, artifacts and files through theirs);
//! none reads a pack.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::artifacts::missing_files;
use super::changes::Applied;
use super::{Dropped, Index, Sql, PENDING};
use crate::error::Result;
use crate::manifest::Change;
use crate::pack::{PackName, RECORD_HEADER_LEN};

/// A holder of chunks: the visible files of an artifact, or its
/// quarantined ones (kept apart so that gc can drop the quarantined files
/// of an artifact and know what that alone frees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub artifact: i64,
    pub quarantined: bool,
}

/// One referenced chunk: its lengths, and (in [`Holders::units`]) who holds it.
#[derive(Clone, Copy, Debug)]
pub struct HeldChunk {
    pub raw_len: u32,
    pub stored_len: u32,
    /// The `packs` row of the pack it is in (0: not known).
    pub pack: i64,
    /// Where its holders start in [`Holders::units`].
    start: u32,
}

impl HeldChunk {
    /// What the chunk takes in a pack: its record header and payload.
    pub fn on_disk(&self) -> u64 {
        self.stored_len as u64 + RECORD_HEADER_LEN as u64
    }
}

/// Every chunk with references, and the distinct holders of each.
#[derive(Debug, Default)]
pub struct Holders {
    pub chunks: Vec<HeldChunk>,
    /// The holders of chunk `i`: `units[chunks[i].start..chunks[i+1].start]`,
    /// distinct and sorted.
    pub units: Vec<Holder>,
}

impl Holders {
    /// Add a chunk held by `units` (any order, repeats allowed).
    pub fn push(&mut self, raw_len: u32, stored_len: u32, units: &[Holder]) {
        self.push_in(0, raw_len, stored_len, units)
    }

    /// [`Holders::push`] for a chunk in pack row `pack`.
    pub fn push_in(&mut self, pack: i64, raw_len: u32, stored_len: u32, units: &[Holder]) {
        let start = self.units.len();
        self.chunks.push(HeldChunk {
            raw_len,
            stored_len,
            pack,
            start: start as u32,
        });
        self.units.extend_from_slice(units);
        dedup_from(&mut self.units, start);
    }

    pub fn holders_of(&self, i: usize) -> &[Holder] {
        let start = self.chunks[i].start as usize;
        let end = self
            .chunks
            .get(i + 1)
            .map_or(self.units.len(), |c| c.start as usize);
        &self.units[start..end]
    }

    /// Bytes of each artifact: what it alone holds, and what it holds that
    /// others hold too.
    pub fn per_artifact(&self) -> HashMap<i64, ArtifactBytes> {
        let mut out: HashMap<i64, ArtifactBytes> = HashMap::new();
        let mut arts = Vec::new();
        for (i, c) in self.chunks.iter().enumerate() {
            arts.clear();
            arts.extend(self.holders_of(i).iter().map(|h| h.artifact));
            arts.dedup(); // sorted by artifact, so a chunk's two holders of one artifact are adjacent
            let shared = arts.len() > 1;
            for a in &arts {
                let b = out.entry(*a).or_default();
                if shared {
                    b.shared_bytes += c.raw_len as u64;
                    b.shared_stored_bytes += c.stored_len as u64;
                } else {
                    b.unique_bytes += c.raw_len as u64;
                    b.unique_stored_bytes += c.stored_len as u64;
                }
            }
        }
        out
    }
}

/// An artifact's chunk bytes: distinct chunks only it holds, and distinct
/// chunks it holds that another artifact holds too; raw (uncompressed) and
/// stored (as in the packs). Summed over every artifact, the unique bytes
/// plus the bytes of chunks held by two or more artifacts (each counted
/// once) are the store's live chunk bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArtifactBytes {
    pub unique_bytes: u64,
    pub unique_stored_bytes: u64,
    pub shared_bytes: u64,
    pub shared_stored_bytes: u64,
}

/// An artifact as gc sees it.
#[derive(Clone, Debug)]
pub struct GcArtifact {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub created: i64,
    pub last_access: i64,
    /// Visible files and their bytes.
    pub files: u64,
    pub logical_bytes: u64,
    /// A file of it is being written through a mount (a pending row).
    pub pending: bool,
    /// Quarantined files (cut short or lost in flight; not pending ones),
    /// their bytes, and when the newest of them was kept aside.
    pub quarantined_files: u64,
    pub quarantined_bytes: u64,
    pub newest_quarantined: Option<i64>,
    /// It is incomplete (a file cut short and not written whole since):
    /// dropping its quarantined files drops it whole.
    pub incomplete: bool,
}

impl Index {
    /// Every chunk with references and its distinct holders, in one pass
    /// over the references in chunk order (the covering `file_chunks(chunk)`
    /// index, no join), merged with the chunk rows in the same order:
    /// looking each reference's file and chunk up instead took 3 times as
    /// long (BENCHMARKS.md, "gc").
    pub fn chunk_holders(&self) -> Result<Holders> {
        self.chunk_holders_except(&Default::default())
    }

    /// [`Index::chunk_holders`] as if the hot copies of the gzip-form files
    /// `no_hot` were dropped (gc plans dropping them before it evicts).
    pub fn chunk_holders_except(&self, no_hot: &std::collections::HashSet<i64>) -> Result<Holders> {
        let files: HashMap<i64, Holder> = self
            .rows(
                "SELECT id, artifact, quarantine IS NOT NULL FROM files",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        Holder {
                            artifact: r.get(1)?,
                            quarantined: r.get(2)?,
                        },
                    ))
                },
            )?
            .into_iter()
            .collect();
        let p = &self.path;
        let mut chunks = self
            .conn
            .prepare_cached("SELECT id, raw_len, stored_len, pack FROM chunks ORDER BY id")
            .sql(p)?;
        let mut chunk_rows = chunks.query([]).sql(p)?;
        let mut cur = next_chunk(&mut chunk_rows).sql(p)?;
        let mut refs = self
            .conn
            // A gzip-form file's streams hold references too (format 4).
            .prepare_cached(
                "SELECT chunk, file, 0 FROM file_chunks
                 UNION ALL SELECT chunk, file, 1 FROM file_streams ORDER BY 1",
            )
            .sql(p)?;
        let mut ref_rows = refs.query([]).sql(p)?;
        let mut h = Holders::default();
        // The chunk being gathered: its id, lengths and holders.
        let mut last: Vec<u8> = Vec::new();
        let mut lens = (0, 0, 0);
        let mut group: Vec<Holder> = Vec::new();
        while let Some(r) = ref_rows.next().sql(p)? {
            let id = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).sql(p)?;
            let file: i64 = r.get(1).sql(p)?;
            if !no_hot.is_empty() && r.get::<_, i64>(2).sql(p)? == 0 && no_hot.contains(&file) {
                continue;
            }
            let Some(unit) = files.get(&file).copied() else {
                continue; // no such file: verify reports it
            };
            if group.is_empty() || id != last.as_slice() {
                if !group.is_empty() {
                    h.push_in(lens.2, lens.0, lens.1, &group);
                    group.clear();
                }
                last.clear();
                last.extend_from_slice(id);
                // The chunk rows, in the same order: skip those with no
                // reference; a referenced chunk without a row (verify
                // reports it) counts no bytes.
                while cur.as_ref().is_some_and(|c| c.0.as_slice() < id) {
                    cur = next_chunk(&mut chunk_rows).sql(p)?;
                }
                lens = match &cur {
                    Some(c) if c.0.as_slice() == id => (c.1, c.2, c.3),
                    _ => (0, 0, 0),
                };
            }
            group.push(unit);
        }
        if !group.is_empty() {
            h.push_in(lens.2, lens.0, lens.1, &group);
        }
        Ok(h)
    }

    /// Bytes the referenced chunks take in packs (payloads and record
    /// headers): what `Snapshot::live_bytes` adds up, from the chunk rows
    /// alone (one pass over them, no reference read).
    pub fn live_chunk_bytes(&self) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(stored_len), 0) + ?1 * count(*) FROM chunks WHERE refs > 0",
                [RECORD_HEADER_LEN as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .sql(&self.path)
    }

    /// Packs the index names that hold no chunk: those of manifest records
    /// (a process writes its records to a pack of its own).
    pub fn manifest_packs(&self) -> Result<Vec<PackName>> {
        let names = self.rows(
            "SELECT p.name FROM packs p WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = p.id)",
            [],
            |r| r.get::<_, String>(0),
        )?;
        Ok(names.iter().filter_map(|n| PackName::parse(n)).collect())
    }

    /// Every artifact, as gc sees it, in no particular order.
    pub fn gc_artifacts(&self) -> Result<Vec<GcArtifact>> {
        let mut rows = self.rows(
            "SELECT a.id, a.namespace, a.name, a.created, a.last_access,
                    count(f.id) FILTER (WHERE f.quarantine IS NULL),
                    coalesce(sum(f.size) FILTER (WHERE f.quarantine IS NULL), 0),
                    count(f.id) FILTER (WHERE substr(f.quarantine, 1, length(?1)) = ?1),
                    count(f.id) FILTER (WHERE f.quarantine IS NOT NULL
                                          AND substr(f.quarantine, 1, length(?1)) <> ?1),
                    coalesce(sum(f.size) FILTER (WHERE f.quarantine IS NOT NULL
                                          AND substr(f.quarantine, 1, length(?1)) <> ?1), 0),
                    max(f.committed) FILTER (WHERE f.quarantine IS NOT NULL
                                          AND substr(f.quarantine, 1, length(?1)) <> ?1)
             FROM artifacts a LEFT JOIN files f ON f.artifact = a.id GROUP BY a.id",
            [PENDING],
            |r| {
                Ok(GcArtifact {
                    id: r.get(0)?,
                    namespace: r.get(1)?,
                    name: r.get(2)?,
                    created: r.get(3)?,
                    last_access: r.get(4)?,
                    files: r.get::<_, i64>(5)? as u64,
                    logical_bytes: r.get::<_, i64>(6)? as u64,
                    pending: r.get::<_, i64>(7)? > 0,
                    quarantined_files: r.get::<_, i64>(8)? as u64,
                    quarantined_bytes: r.get::<_, i64>(9)? as u64,
                    newest_quarantined: r.get(10)?,
                    incomplete: false,
                })
            },
        )?;
        for a in rows.iter_mut().filter(|a| a.quarantined_files > 0) {
            a.incomplete = !missing_files(&self.conn, a.id).sql(&self.path)?.is_empty();
        }
        Ok(rows)
    }

    /// Record a use of an artifact at `time` (Unix seconds); a later use
    /// already recorded stays. Not a change: reads leave no manifest record
    /// (store-layout.md: a rebuild cannot recover `last_access`).
    pub fn touch_at(&self, ns: &str, name: &str, time: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE artifacts SET last_access = ?3
                 WHERE namespace = ?1 AND name = ?2 AND last_access < ?3",
            )
            .and_then(|mut st| st.execute(params![ns, name, time]))
            .sql(&self.path)?;
        Ok(())
    }

    /// gc's eviction: drop artifact `name` (row `id`) like `rm` does, in
    /// one recorded change, unless, inside that change's transaction, it
    /// is no longer the artifact gc planned for: gone or replaced (another
    /// id), used since (`last_access` past `last_access`), or a file of it
    /// is being written (a pending row). Returns whether it was dropped.
    pub fn evict_artifact(
        &mut self,
        ns: &str,
        name: &str,
        id: i64,
        last_access: i64,
    ) -> Result<bool> {
        let change = Change::RemoveArtifact {
            ns: ns.to_owned(),
            name: name.to_owned(),
        };
        let check = |c: &Connection| unchanged(c, ns, name, id, Some(last_access));
        Ok(self.change_if(change, &[], None, &check)?.is_some())
    }

    /// gc's quarantine expiry: `rm --quarantine NAME` (which drops the
    /// artifact whole when it is incomplete without those files), unless,
    /// inside the change's transaction, artifact row `id` is gone or a file
    /// of it is being written (its pending row must stay), or a file was
    /// quarantined after `newest` (it has not expired). `None`: not done.
    pub fn expire_quarantined(
        &mut self,
        ns: &str,
        name: &str,
        id: i64,
        newest: i64,
    ) -> Result<Option<Dropped>> {
        let change = Change::RemoveQuarantined {
            ns: ns.to_owned(),
            artifact: Some(name.to_owned()),
        };
        let check = |c: &Connection| -> rusqlite::Result<bool> {
            if !unchanged(c, ns, name, id, None)? {
                return Ok(false);
            }
            let later: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM files WHERE artifact = ?1
                                  AND quarantine IS NOT NULL AND committed > ?2)",
                params![id, newest],
                |r| r.get(0),
            )?;
            Ok(!later)
        };
        match self.change_if(change, &[], None, &check)? {
            Some(Applied::Dropped(d)) => Ok(Some(d)),
            _ => Ok(None),
        }
    }
}

/// A chunk row as `chunk_holders` reads it: id, raw_len, stored_len, pack.
type ChunkRow = (Vec<u8>, u32, u32, i64);

/// The next chunk row of `SELECT id, raw_len, stored_len, pack`.
fn next_chunk(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<ChunkRow>> {
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let id = r.get_ref(0)?.as_blob()?.to_vec();
    Ok(Some((
        id,
        r.get::<_, i64>(1)? as u32,
        r.get::<_, i64>(2)? as u32,
        r.get(3)?,
    )))
}

/// Whether artifact `ns`/`name` still has row `id`, was not used after
/// `last_access` (when given), and has no file being written.
pub(super) fn unchanged(
    c: &Connection,
    ns: &str,
    name: &str,
    id: i64,
    last_access: Option<i64>,
) -> rusqlite::Result<bool> {
    let row: Option<(i64, i64)> = c
        .query_row(
            "SELECT id, last_access FROM artifacts WHERE namespace = ?1 AND name = ?2",
            params![ns, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((now_id, now_access)) = row else {
        return Ok(false);
    };
    if now_id != id || last_access.is_some_and(|t| now_access > t) {
        return Ok(false);
    }
    let pending: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM files WHERE artifact = ?1
                          AND substr(quarantine, 1, length(?2)) = ?2)",
        params![id, PENDING],
        |r| r.get(0),
    )?;
    Ok(!pending)
}

/// Sort `units[start..]` and drop its repeats.
fn dedup_from(units: &mut Vec<Holder>, start: usize) {
    let tail = &mut units[start..];
    tail.sort_unstable();
    let mut n = 0;
    for i in 0..tail.len() {
        if n == 0 || tail[i] != tail[n - 1] {
            tail[n] = tail[i];
            n += 1;
        }
    }
    units.truncate(start + n);
}
