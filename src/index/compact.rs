//! gc's pack compaction in the index: the packs and what they hold, the
//! live chunks of a pack to copy, and the switch: one transaction that
//! points moved chunks at their copies and drops the rows of packs that
//! hold nothing live any more (store-layout.md, "How gc reclaims space").
//!
//! The switch is not a change of any artifact, so it writes no manifest
//! record: a rebuild finds each chunk where a scan of the packs finds it.

use std::time::{Duration, Instant};

use rusqlite::{params, TransactionBehavior};

use super::{chunk_id_at, location_from, Index, Sql};
use crate::error::Result;
use crate::id::ChunkId;
use crate::pack::{Location, PackName};

/// Dead chunk rows [`Index::drop_dead`] deletes between two looks at the
/// clock.
const DEAD_ROWS_PER_STEP: i64 = 512;

/// A `packs` row and how many chunk rows point into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackRow {
    pub id: i64,
    pub name: PackName,
    /// Chunk rows (referenced or not); 0 for a pack of manifest records.
    pub chunk_rows: u64,
}

/// A chunk gc copied: from where the index had it to its copy.
#[derive(Clone, Debug)]
pub struct Move {
    pub id: ChunkId,
    pub from_pack: i64,
    pub from_offset: u64,
    pub to: Location,
}

/// What the switch did.
#[derive(Clone, Debug, Default)]
pub struct Switched {
    /// Chunk rows now pointing at a copy.
    pub moved: u64,
    /// Unreferenced chunk rows deleted (those of the dropped packs).
    pub deleted_rows: u64,
    /// Packs whose rows are gone: their files may be unlinked.
    pub dropped: Vec<PackName>,
    /// Packs kept: a chunk in them was referenced since the copy.
    pub kept: Vec<PackName>,
    /// Copies the index points at (their `packs` rows were made); the
    /// others hold nothing anyone needs.
    pub used_copies: Vec<PackName>,
}

impl Index {
    /// Every `packs` row, with its count of chunk rows.
    pub fn pack_rows(&self) -> Result<Vec<PackRow>> {
        let rows = self.rows(
            "SELECT p.id, p.name, (SELECT count(*) FROM chunks c WHERE c.pack = p.id) FROM packs p",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name, n)| {
                Some(PackRow {
                    id,
                    name: PackName::parse(&name)?,
                    chunk_rows: n as u64,
                })
            })
            .collect())
    }

    /// The referenced chunks of pack row `pack`, in pack order: what
    /// compaction copies.
    pub fn live_chunks_in(&self, pack: i64) -> Result<Vec<(ChunkId, Location)>> {
        self.rows(
            "SELECT c.id, p.name, c.offset, c.stored_len, c.raw_len, c.codec
             FROM chunks c JOIN packs p ON p.id = c.pack
             WHERE c.pack = ?1 AND c.refs > 0 ORDER BY c.offset",
            [pack],
            |r| Ok((chunk_id_at(r, 0)?, location_from(r, 1)?)),
        )
    }

    /// Point moved chunks still where gc copied them from at their copies,
    /// from the front of `moves`, in one transaction that ends once it
    /// has run for `budget` (one move at least), so that a writer waits
    /// for the index about that long: returns how many moves it handled.
    /// Needs no `gc.lock`: a chunk is readable at both places until its
    /// old pack is unlinked, and a writer referencing it meanwhile
    /// references its id, not its place. A copy nothing points at after
    /// the transaction (another gc moved the chunk first) keeps no `packs`
    /// row; `used_copies` lists those that have one, and the caller
    /// deletes the others.
    pub fn repoint(&mut self, moves: &[Move], budget: Duration) -> Result<(usize, Switched)> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        let mut out = Switched::default();
        let started = Instant::now();
        let mut handled = 0;
        {
            let mut new_pack = tx
                .prepare_cached("INSERT OR IGNORE INTO packs(name) VALUES(?1)")
                .sql(&p)?;
            let mut pack_id = tx
                .prepare_cached("SELECT id FROM packs WHERE name = ?1")
                .sql(&p)?;
            let mut repoint = tx
                .prepare_cached(
                    "UPDATE chunks SET pack = ?1, offset = ?2
                     WHERE id = ?3 AND pack = ?4 AND offset = ?5",
                )
                .sql(&p)?;
            let mut ids: Vec<(PackName, i64)> = Vec::new();
            for m in moves {
                // Checked every 256 moves: a clock read per row would cost
                // more than the rows.
                if handled % 256 == 0 && handled > 0 && started.elapsed() >= budget {
                    break;
                }
                handled += 1;
                let to = match ids.iter().find(|(n, _)| *n == m.to.pack) {
                    Some((_, id)) => *id,
                    None => {
                        let name = m.to.pack.to_string();
                        new_pack.execute([&name]).sql(&p)?;
                        let id: i64 = pack_id.query_row([&name], |r| r.get(0)).sql(&p)?;
                        ids.push((m.to.pack, id));
                        out.used_copies.push(m.to.pack);
                        id
                    }
                };
                out.moved += repoint
                    .execute(params![
                        to,
                        m.to.offset as i64,
                        &m.id.as_bytes()[..],
                        m.from_pack,
                        m.from_offset as i64
                    ])
                    .sql(&p)? as u64;
            }
            let mut unused = tx
                .prepare_cached(
                    "DELETE FROM packs WHERE name = ?1
                       AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = packs.id)",
                )
                .sql(&p)?;
            let mut used = Vec::new();
            for c in &out.used_copies {
                if unused.execute([c.to_string()]).sql(&p)? == 0 {
                    used.push(*c);
                }
            }
            out.used_copies = used;
        }
        tx.commit().sql(&p)?;
        Ok((handled, out))
    }

    /// The switch proper, for the packs at the front of `drop`, in one
    /// transaction that ends once it has run for `budget`; the caller holds
    /// `gc.lock` exclusively, so no writer is between finding a chunk and
    /// committing a reference to it. For each pack, its unreferenced chunk
    /// rows are deleted and, when no chunk row is left in it, its `packs`
    /// row too; a pack with a chunk referenced since the copy (a writer
    /// found it meanwhile) keeps that chunk, its row and its file. Returns
    /// how many packs of `drop` it finished: the first of the others may
    /// have lost some of its dead rows, and the next call goes on with it.
    pub fn drop_dead(
        &mut self,
        drop: &[(i64, PackName)],
        budget: Duration,
    ) -> Result<(usize, Switched)> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        let mut out = Switched::default();
        let started = Instant::now();
        let mut finished = 0;
        {
            let mut dead = tx
                .prepare_cached(
                    "DELETE FROM chunks WHERE id IN
                       (SELECT id FROM chunks WHERE pack = ?1 AND refs <= 0 LIMIT ?2)",
                )
                .sql(&p)?;
            let mut left = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM chunks WHERE pack = ?1)")
                .sql(&p)?;
            let mut gone = tx
                .prepare_cached("DELETE FROM packs WHERE id = ?1")
                .sql(&p)?;
            'packs: for (id, name) in drop {
                loop {
                    if started.elapsed() >= budget && (finished > 0 || out.deleted_rows > 0) {
                        break 'packs;
                    }
                    let n = dead.execute(params![id, DEAD_ROWS_PER_STEP]).sql(&p)?;
                    out.deleted_rows += n as u64;
                    if (n as i64) < DEAD_ROWS_PER_STEP {
                        break;
                    }
                }
                if left.query_row([id], |r| r.get::<_, bool>(0)).sql(&p)? {
                    out.kept.push(*name);
                } else {
                    gone.execute([id]).sql(&p)?;
                    out.dropped.push(*name);
                }
                finished += 1;
            }
        }
        tx.commit().sql(&p)?;
        Ok((finished, out))
    }
}

#[cfg(test)]
mod tests;
