//! gc's checkpoint of the manifest records, and the reclaiming of the
//! records it makes dead (store-layout.md, "gc and manifest records").
//!
//! Every committed change leaves a manifest record, so without this the
//! manifest log only grows: 36 bytes per chunk per put, whatever gc evicts.
//! A checkpoint restates every artifact of the index in one record each
//! (`index::checkpoint`); from its commit on, records with a lower seq are
//! dead, and packs of manifest records are planned like packs of chunks:
//! unlinked when nothing in them is live, rewritten (live records copied
//! verbatim) when at least half of them is dead.
//!
//! **When.** A checkpoint writes the live manifest (`L`: every artifact's
//! `PutArtifact`) to free the records since the last one (`S`). gc writes
//! one when `S - L >= L` (the log holds at least as many dead bytes as
//! live ones: as for a pack, one byte written per byte freed at most, and
//! no checkpoint again and again for a few new records) and `S - L >=`
//! [`CHECKPOINT_MIN_DEAD`] (below a pack's worth, the space is not worth a
//! writer's wait). While the store is over `--max-size`, the minimum is
//! dropped: dead history that is at least half the log goes before any
//! live artifact is evicted. And when the evictions cannot meet it (what
//! stays is held), a checkpoint that frees what is still missing is
//! written whatever its cost. Never for less: a store kept over its limit
//! by held artifacts would otherwise rewrite its live manifest at every
//! run for the few records since the last.
//!
//! **Crash rules.** The checkpoint is one index transaction, marked by
//! `gc.batch` (as a batch of evictions) with the seqs it may take: a crash
//! before its commit leaves records whose seqs later commits take again,
//! and the next gc voids the rest before it could write a checkpoint that
//! makes the crashed checkpoint record dead; until then a replay leaves its
//! puts out by the rule of `index::checkpoint`.

use std::time::Instant;

use super::compact::pause;
use super::reclaim::{new_packs, PackPlan};
use crate::error::Result;
use crate::index::{CheckpointInputs, Checkpointed, PackRow};
use crate::lock::GcGuard;
use crate::pack::{self, Codec, PackName, PackSink, RecordHead, RecordKind, PACK_MAGIC};
use crate::store::Store;

/// The least dead manifest bytes a checkpoint is written for (without
/// `--max-size` pressure): one pack's worth.
pub const CHECKPOINT_MIN_DEAD: u64 = pack::PACK_TARGET_SIZE;

/// Seqs marked in `gc.batch` beyond the artifacts counted at the plan, for
/// artifacts put since.
const MARK_SLACK: u64 = 64;

/// A pack of manifest records (no chunk row) as the snapshot found it.
#[derive(Clone, Debug)]
pub struct ManifestPack {
    pub id: i64,
    pub name: PackName,
    pub size: u64,
    /// Each manifest record's seq (`u64::MAX` when it cannot be read
    /// cheaply: it then counts as live) and bytes (header included).
    pub records: Vec<(u64, u64)>,
}

/// The manifest log as the snapshot found it.
#[derive(Clone, Debug, Default)]
pub struct ManifestState {
    pub inputs: CheckpointInputs,
    pub packs: Vec<ManifestPack>,
}

impl ManifestState {
    /// Bytes of the records with seq `>= seq`.
    fn bytes_from(&self, seq: u64) -> u64 {
        self.packs
            .iter()
            .flat_map(|p| &p.records)
            .filter(|r| r.0 >= seq)
            .map(|r| r.1)
            .sum()
    }
}

/// Why gc writes a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointReason {
    /// The records since the last checkpoint are at least half dead, and
    /// at least [`CHECKPOINT_MIN_DEAD`] of them.
    DeadRecords,
    /// The store is over `--max-size`.
    MaxSize,
}

/// What gc does to the manifest records: the checkpoint, and the packs of
/// records rewritten and unlinked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointPlan {
    /// Why a checkpoint is written (None: none is).
    pub write: Option<CheckpointReason>,
    /// The artifacts it records and the bytes it writes.
    pub artifacts: u64,
    pub bytes: u64,
    /// Bytes of manifest records on disk now, and of them those since the
    /// newest checkpoint (all dead once a new one is written).
    pub manifest_bytes: u64,
    pub since_checkpoint_bytes: u64,
    /// Packs of manifest records whose live records are copied, then
    /// unlinked; packs with none live, unlinked.
    pub rewrite: Vec<PackPlan>,
    pub unlink: Vec<PackPlan>,
    pub copy_bytes: u64,
    /// What the filesystem gets back: the packs unlinked, less the copies
    /// and the checkpoint written.
    pub freed_bytes: u64,
}

/// The manifest work for `m`; `over_by`: how far the store is over
/// `--max-size` (None: not over, or none given); `last_resort`: the
/// evictions cannot meet it, so any dead record counts (the caller keeps
/// this plan only if it meets the limit).
pub fn plan(m: &ManifestState, over_by: Option<u64>, last_resort: bool) -> CheckpointPlan {
    let i = &m.inputs;
    let since = m.bytes_from(i.checkpoint_seq);
    let live = i.bytes;
    let dead = since.saturating_sub(live);
    let write = if dead >= live && dead >= CHECKPOINT_MIN_DEAD {
        Some(CheckpointReason::DeadRecords)
    } else if over_by.is_some() && dead > 0 && (dead >= live || last_resort) {
        Some(CheckpointReason::MaxSize)
    } else {
        None
    };
    // Records below this are dead once the checkpoint (if any) is written:
    // it takes a seq after every one committed now.
    let dead_before = match write {
        Some(_) => i.journal_seq + 1,
        None => i.checkpoint_seq,
    };
    let header = PACK_MAGIC.len() as u64;
    let mut out = CheckpointPlan {
        write,
        artifacts: i.artifacts,
        bytes: i.bytes,
        manifest_bytes: m.packs.iter().map(|p| p.size).sum(),
        since_checkpoint_bytes: since,
        ..Default::default()
    };
    if dead_before > 0 {
        for p in &m.packs {
            let live_bytes: u64 = p
                .records
                .iter()
                .filter(|r| r.0 >= dead_before)
                .map(|r| r.1)
                .sum();
            let plan = PackPlan {
                name: p.name.to_string(),
                pack: p.name,
                id: p.id,
                size: p.size,
                live_bytes,
            };
            let body = p.size.saturating_sub(header);
            let dead = body.saturating_sub(live_bytes);
            if live_bytes == 0 {
                out.unlink.push(plan);
            } else if dead * 2 >= body || (over_by.is_some() && dead > 0) {
                out.rewrite.push(plan);
            }
        }
    }
    out.copy_bytes = out.rewrite.iter().map(|p| p.live_bytes).sum();
    let gone: u64 = out.rewrite.iter().chain(&out.unlink).map(|p| p.size).sum();
    let written = out.copy_bytes
        + new_packs(out.copy_bytes) * header
        + if write.is_some() { i.bytes } else { 0 };
    out.freed_bytes = gone.saturating_sub(written);
    out
}

/// What the manifest work of a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckpointDone {
    /// The checkpoint written (None: none was planned).
    pub written: Option<Checkpointed>,
    /// How long its transaction took (seconds): the longest a writer
    /// waited for it.
    pub seconds: f64,
    pub packs_rewritten: u64,
    pub packs_unlinked: u64,
    pub records_copied: u64,
    pub bytes_copied: u64,
    /// Pack bytes unlinked, less the copies.
    pub freed_bytes: u64,
    /// Packs left alone, and why.
    pub skipped: Vec<String>,
}

/// The seq of a manifest record from the start of its payload as stored
/// (None: not a payload this reads without decoding it).
fn record_seq(codec: Codec, payload: &[u8]) -> Option<u64> {
    if codec != Codec::Raw || payload.first() != Some(&1) {
        return None;
    }
    Some(u64::from_le_bytes(payload.get(1..9)?.try_into().ok()?))
}

/// Whether a manifest record whose stored payload starts with `payload`
/// is dead: its seq is below `dead_before` (the index's checkpoint seq).
pub(super) fn is_dead(codec: Codec, payload: &[u8], dead_before: u64) -> bool {
    record_seq(codec, payload).is_some_and(|s| s < dead_before)
}

impl Store {
    /// The manifest log: the index's `inputs`, and the records of each
    /// pack of `rows` with no chunk row (their headers and seqs read).
    pub(super) fn manifest_state(
        &self,
        inputs: CheckpointInputs,
        rows: &[PackRow],
    ) -> Result<ManifestState> {
        let packs = &self.core.packs;
        let mut out = ManifestState {
            inputs,
            packs: Vec::new(),
        };
        for r in rows.iter().filter(|r| r.chunk_rows == 0) {
            // A pack gone meanwhile (an orphan sweep) holds nothing.
            let Ok(size) = packs.size(r.name) else {
                continue;
            };
            let (records, _torn) = pack::scan(&**packs, r.name, size)?;
            let mut seqs = Vec::with_capacity(records.len());
            for rec in records.iter().filter(|x| x.kind == RecordKind::Manifest) {
                let mut head = [0u8; 9];
                let n = head.len().min(rec.loc.stored_len as usize);
                let seq = match packs.read_at(r.name, rec.loc.offset, &mut head[..n]) {
                    Ok(()) => record_seq(rec.loc.codec, &head[..n]),
                    Err(_) => None,
                };
                let bytes = pack::RECORD_HEADER_LEN as u64 + rec.loc.stored_len as u64;
                seqs.push((seq.unwrap_or(u64::MAX), bytes));
            }
            out.packs.push(ManifestPack {
                id: r.id,
                name: r.name,
                size,
                records: seqs,
            });
        }
        Ok(out)
    }

    /// Carry out the manifest work of `plan`: the checkpoint, then the
    /// packs of records it (or an earlier one) made dead: live records
    /// (seq at or after the index's `checkpoint_seq` now, whatever the
    /// plan assumed) copied verbatim to new packs, the new packs named and
    /// the old ones' rows dropped in one transaction, the old files
    /// unlinked. A crash before that transaction leaves the copies as
    /// orphans; after it, the old packs (records alike at one seq are one
    /// record to a replay).
    pub(super) fn gc_checkpoint(&self, plan: &CheckpointPlan) -> Result<CheckpointDone> {
        let mut out = CheckpointDone::default();
        if plan.write.is_some() {
            let mut seqs = plan.artifacts + 1 + MARK_SLACK;
            let started = Instant::now();
            loop {
                let mark = self.mark_batch(seqs as usize)?;
                match self.index().write_checkpoint(seqs, &pause)? {
                    Ok(done) => {
                        let _ = std::fs::remove_file(&mark);
                        out.written = Some(done);
                        break;
                    }
                    // More artifacts than marked (put since the plan).
                    Err(need) => seqs = need + MARK_SLACK,
                }
            }
            out.seconds = started.elapsed().as_secs_f64();
            pause();
        }
        let dead_before = self.index().checkpoint_seq()?;
        if dead_before == 0 {
            return Ok(out);
        }
        let packs = &self.core.packs;
        let mut sinks: Vec<Box<dyn PackSink>> = Vec::new();
        let mut drop: Vec<(i64, PackName)> = Vec::new();
        let mut sizes = std::collections::HashMap::new();
        for p in plan.rewrite.iter().chain(&plan.unlink) {
            if packs.writer_holds(p.pack)? {
                out.skipped
                    .push(format!("pack {}: a writer may still append to it", p.name));
                continue;
            }
            let size = match packs.size(p.pack) {
                Ok(s) => s,
                Err(e) => {
                    out.skipped.push(format!("pack {}: gone ({e})", p.name));
                    continue;
                }
            };
            let (records, _torn) = pack::scan(&**packs, p.pack, size)?;
            for rec in records.iter().filter(|r| r.kind == RecordKind::Manifest) {
                let payload = packs.read_payload(&rec.loc)?;
                if is_dead(rec.loc.codec, &payload, dead_before) {
                    continue;
                }
                if sinks
                    .last()
                    .is_none_or(|s| s.len() >= pack::PACK_TARGET_SIZE)
                {
                    // Created under gc.lock shared, as a writer's: no sweep
                    // runs between its creation and its flock.
                    let _shared = GcGuard::writer(&self.core.root)?;
                    sinks.push(packs.create()?);
                }
                let head = RecordHead {
                    kind: RecordKind::Manifest,
                    id: rec.id,
                    raw_len: rec.loc.raw_len,
                    codec: rec.loc.codec,
                };
                sinks
                    .last_mut()
                    .expect("made above")
                    .append(&head, &payload)?;
                out.records_copied += 1;
                out.bytes_copied += pack::RECORD_HEADER_LEN as u64 + payload.len() as u64;
            }
            drop.push((p.id, p.pack));
            sizes.insert(p.pack, size);
            pause();
        }
        for s in &mut sinks {
            s.sync()?;
        }
        let names: Vec<PackName> = sinks.iter().map(|s| s.name()).collect();
        let dropped = self.index().swap_manifest_packs(&names, &drop)?;
        pause();
        let mut new_bytes = 0;
        for s in sinks {
            new_bytes += s.len();
            s.seal()?;
        }
        let rewritten: std::collections::HashSet<PackName> =
            plan.rewrite.iter().map(|p| p.pack).collect();
        let mut unlinked = 0;
        for p in &dropped {
            packs.delete(*p)?;
            unlinked += sizes.get(p).copied().unwrap_or(0);
            if rewritten.contains(p) {
                out.packs_rewritten += 1;
            } else {
                out.packs_unlinked += 1;
            }
            pause();
        }
        for (_, p) in drop.iter().filter(|(_, p)| !dropped.contains(p)) {
            out.skipped
                .push(format!("pack {p}: chunk rows point into it (kept whole)"));
        }
        out.freed_bytes = unlinked.saturating_sub(new_bytes);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A log of one pack per record: `records` (seq, bytes); the index
    /// at `journal_seq`, with a checkpoint at `checkpoint_seq`, whose
    /// checkpoint would write `live` bytes.
    fn log(records: &[(u64, u64)], checkpoint_seq: u64, live: u64) -> ManifestState {
        let packs = records
            .iter()
            .enumerate()
            .map(|(i, r)| ManifestPack {
                id: i as i64 + 1,
                name: PackName::parse(&format!("{:032x}", i + 1)).unwrap(),
                size: 8 + r.1,
                records: vec![*r],
            })
            .collect();
        ManifestState {
            inputs: CheckpointInputs {
                journal_seq: records.iter().map(|r| r.0).max().unwrap_or(0),
                checkpoint_seq,
                artifacts: 10,
                bytes: live,
            },
            packs,
        }
    }

    #[test]
    fn a_checkpoint_is_due_when_half_the_log_and_64_mib_are_dead() {
        // 100 MiB of records, 30 MiB live: 70 MiB dead.
        let m = log(&[(1, 60 * MIB), (2, 40 * MIB)], 0, 30 * MIB);
        let p = plan(&m, None, false);
        assert_eq!(p.write, Some(CheckpointReason::DeadRecords));
        assert_eq!(p.unlink.len(), 2, "every record now is dead after it");
        assert_eq!(p.freed_bytes, 100 * MIB + 16 - 30 * MIB);
        // Under 64 MiB dead, or less dead than live: none, and nothing is
        // dead without one.
        for (m, live) in [(50, 10), (100, 51)] {
            let p = plan(&log(&[(1, m * MIB)], 0, live * MIB), None, false);
            assert_eq!(p.write, None, "{m} MiB, {live} live");
            assert!(p.unlink.is_empty() && p.rewrite.is_empty());
        }
    }

    #[test]
    fn over_max_size_half_dead_is_enough_and_the_last_resort_anything() {
        let m = log(&[(1, 3 * MIB), (2, MIB)], 0, 2 * MIB);
        assert_eq!(
            plan(&m, Some(1), false).write,
            Some(CheckpointReason::MaxSize)
        );
        let m = log(&[(1, 3 * MIB)], 0, 2 * MIB);
        assert_eq!(plan(&m, Some(1), false).write, None, "a third dead");
        assert_eq!(
            plan(&m, Some(1), true).write,
            Some(CheckpointReason::MaxSize)
        );
        assert_eq!(plan(&m, None, true).write, None, "not over: never");
    }

    /// After a checkpoint, records below it are dead whether or not a new
    /// one is written: a pack of them is unlinked, one half dead
    /// rewritten, one mostly live kept.
    #[test]
    fn records_below_the_checkpoint_are_dead() {
        let mut m = log(&[(1, 1000), (5, 1000)], 5, 1000);
        m.packs.push(ManifestPack {
            id: 9,
            name: PackName::parse(&format!("{:032x}", 9)).unwrap(),
            size: 8 + 3000,
            records: vec![(2, 1000), (6, 1000), (7, 1000)],
        });
        m.packs.push(ManifestPack {
            id: 10,
            name: PackName::parse(&format!("{:032x}", 10)).unwrap(),
            size: 8 + 2000,
            records: vec![(3, 1000), (8, 1000)],
        });
        let p = plan(&m, None, false);
        assert_eq!(p.write, None);
        let names = |v: &[PackPlan]| v.iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(names(&p.unlink), [1]);
        assert_eq!(names(&p.rewrite), [10]);
        assert_eq!(p.copy_bytes, 1000);
        assert_eq!(p.freed_bytes, 1008 + 2008 - 1000 - 8);
    }
}
