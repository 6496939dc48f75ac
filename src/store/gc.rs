//! gc: evict whole artifacts by policy, least recently used first, expire
//! quarantined files, and return the space to the filesystem; plan, then
//! execute.
//!
//! - `policy`: the limits (`--max-size`, `--older-than`, `--keep-last`,
//!   the namespaces) and parsing them;
//! - `plan`: the plan, a pure function of one snapshot of the index;
//! - `reclaim`: which packs the plan rewrites and unlinks (the threshold);
//! - `compact`: carrying that out: copy, switch, delete;
//! - `checkpoint`: the checkpoint of the manifest records, and the packs
//!   of records it makes dead.
//!
//! Evictions are the same recorded change as `rm` (and each expiry as
//! `rm --quarantine NAME`), made only if, inside their transaction, the
//! artifact is still the one planned for, not used since, and has no file
//! being written through a mount; they go in batches of up to
//! `EVICT_BATCH` per transaction, a batch ending after `TX_BUDGET`
//! (`index::evict`). Then the packs: see `compact`.
//!
//! Safe while mounted: a reader with a file open keeps reading it where
//! its chunks were moved (looked up again); of an evicted artifact, for as
//! long as its process keeps the packs open (`pack::open_packs`); a
//! writer waits for gc at most one of its transactions (a batch of
//! evictions, for the index's write lock, or a part of the switch, for
//! `gc.lock`): about `TX_BUDGET` and that transaction's commit.
//!
//! `DEPLOYCACHE_GC_TRACE=1` logs how long each phase took (`trace`).

pub mod checkpoint;
mod compact;
pub mod hot;
pub mod plan;
pub mod policy;
pub mod reclaim;
pub(crate) mod trace;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::index::Evict;

use super::{Stats, Store};
pub use checkpoint::{CheckpointDone, CheckpointPlan, CheckpointReason};
pub use compact::Compacted;
pub use hot::{HotDrop, HotReason, HOT_FOR};
pub use plan::{Eviction, Expiry, GcPlan, Held, HeldBy, Reason, Reclaim, Snapshot};
pub use policy::{parse_duration, parse_size, show_duration, Policy, Scope, QUARANTINE_TTL};
pub use reclaim::{PackPlan, PackWork};

/// What a real run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcOutcome {
    /// Quarantined files dropped (`whole_artifact`: with their artifact).
    pub expired: Vec<Expiry>,
    /// Hot copies of gzip-form files dropped, in the order of the plan.
    pub hot_dropped: Vec<HotDrop>,
    /// Artifacts evicted, in the order of the plan.
    pub evicted: Vec<Eviction>,
    /// Planned work not done, and why (used or written since the plan).
    pub skipped: Vec<Skipped>,
    /// Pack bytes nothing live needs after the run (as `stats` reports them).
    pub reclaimable_bytes: u64,
    /// The store's bytes on disk (packs and index) after the run, and what
    /// the filesystem got back (phase 1 frees references, not pack bytes:
    /// this is 0, or less when the index grew).
    pub store_bytes: u64,
    pub freed_on_disk: i64,
    /// The store's size once what is reclaimable is reclaimed.
    pub size_after_reclaim: u64,
    /// How long the evictions took (seconds), and what the pack work did.
    pub evict_seconds: f64,
    pub packs: Compacted,
    /// The checkpoint written, and the packs of manifest records reclaimed.
    pub checkpoint: CheckpointDone,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub name: String,
    pub why: String,
}

/// Artifacts evicted per index transaction at most: a few fsyncs for
/// hundreds of evictions, and a writer waits for the index at most one
/// batch.
const EVICT_BATCH: usize = 64;

/// Each index transaction of gc a writer can wait for (a batch of
/// evictions, a part of the switch) ends once it has run this long, so
/// that a writer waits for gc about this long plus that transaction's
/// commit, however many files the artifacts hold and rows the packs have.
pub(crate) const TX_BUDGET: Duration = Duration::from_millis(200);

/// What gc waits between two of those transactions: longer than a writer
/// waiting for the index sleeps between two tries (the busy handler's 10
/// ms), so that the writer finds the index (or `gc.lock`) free at its next
/// try instead of behind gc's next transaction (without it, a writer
/// waited behind several in a row: BENCHMARKS.md, "gc at scale").
const YIELD: Duration = Duration::from_millis(12);

/// The index's page cache while gc runs (KiB): all the pages a batch of
/// evictions or a switch changes, for an index of a few hundred thousand
/// chunks (see `Index::bulk_settings`).
const GC_CACHE_KIB: u64 = 64 * 1024;

/// Marks an eviction batch in progress; see `index::evict`.
const BATCH_MARK: &str = "gc.batch";

/// Why a planned eviction or expiry was not made.
const CHANGED: &str = "used, replaced or written since the plan (or a file of it is being written)";

impl Store {
    /// Mark a batch of up to `n` evictions as begun (durably): a crash
    /// before its commit leaves its records' seqs to be voided.
    fn mark_batch(&self, n: usize) -> Result<PathBuf> {
        let path = self.core.root.join(BATCH_MARK);
        let mut f = crate::perms::create_file(&path)?;
        writeln!(f, "{n}").and_then(|_| f.sync_all()).at(&path)?;
        crate::pack::sync_dir(&self.core.root)?;
        Ok(path)
    }

    /// A batch marked and not finished (gc was killed): void the seqs it
    /// may have written, so that a rebuild never replays its records
    /// after later changes. Harmless when the batch did commit.
    pub fn settle_batch(&self) -> Result<()> {
        let path = self.core.root.join(BATCH_MARK);
        let n = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(EVICT_BATCH as u64),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(crate::Error::io(path, e)),
        };
        self.index().void_next(n)?;
        let _ = fs::remove_file(&path);
        Ok(())
    }

    /// One consistent view of what gc decides on: the artifacts and who
    /// holds each chunk (one read transaction), and the size on disk.
    pub fn gc_snapshot(&self) -> Result<Snapshot> {
        self.snapshot_at(self.index_bytes(), &Default::default())
    }

    /// [`Store::gc_snapshot`], with the size on disk from `st`.
    pub fn gc_snapshot_with(&self, st: &Stats) -> Result<Snapshot> {
        self.snapshot_at(st.index_bytes, &Default::default())
    }

    /// A snapshot with the index's size `index_bytes`, as if the hot copies
    /// of files `no_hot` were dropped.
    fn snapshot_at(
        &self,
        index_bytes: u64,
        no_hot: &std::collections::HashSet<i64>,
    ) -> Result<Snapshot> {
        // Listed before the read: a pack committed in between is in both,
        // one created after is not listed (and is no orphan of this plan).
        let pack_list = self.core.packs.list()?;
        let (artifacts, holders, manifests, pack_rows, inputs) = {
            let ix = self.index();
            ix.begin_read()?;
            let res = (|| {
                Ok((
                    trace::time("snapshot: artifacts", || ix.gc_artifacts())?,
                    trace::time("snapshot: chunk holders", || {
                        ix.chunk_holders_except(no_hot)
                    })?,
                    ix.manifest_packs()?,
                    ix.pack_rows()?,
                    ix.checkpoint_inputs()?,
                ))
            })();
            let end = ix.end_read();
            let res = res?;
            end?;
            res
        };
        let (manifest_packs, manifest_bytes) = self.sizes_of(manifests);
        let manifest = self.manifest_state(inputs, &pack_rows)?;
        Ok(Snapshot {
            artifacts,
            holders,
            pack_files: pack_list.len() as u64,
            pack_bytes: pack_list.iter().map(|p| p.size).sum(),
            index_bytes,
            manifest_packs,
            manifest_bytes,
            pack_rows,
            pack_list,
            manifest,
        })
    }

    /// How many of `packs` are there, and their bytes (a pack gone
    /// meanwhile, to an orphan sweep, holds nothing).
    fn sizes_of(&self, packs: Vec<crate::pack::PackName>) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for p in packs {
            if let Ok(size) = self.core.packs.size(p) {
                n += 1;
                bytes += size;
            }
        }
        (n, bytes)
    }

    /// The figures of a run's outcome, as a snapshot would give them
    /// (`Snapshot::reclaimable_bytes`, `size_after_reclaim`) but from the
    /// chunk rows alone: who holds each chunk is not needed any more, and
    /// gathering it again is the costliest read of the plan.
    fn sizes_after(&self, out: &mut GcOutcome) -> Result<()> {
        let pack_list = self.core.packs.list()?;
        let (live, manifests) = {
            let ix = self.index();
            ix.begin_read()?;
            let res = (|| Ok((ix.live_chunk_bytes()?, ix.manifest_packs()?)))();
            let end = ix.end_read();
            let res = res?;
            end?;
            res
        };
        let (manifest_packs, manifest_bytes) = self.sizes_of(manifests);
        let pack_bytes: u64 = pack_list.iter().map(|p| p.size).sum();
        let chunk_packs = (pack_list.len() as u64).saturating_sub(manifest_packs);
        let header = crate::pack::PACK_MAGIC.len() as u64;
        let live_pack_bytes = live + manifest_bytes + chunk_packs * header;
        let index_bytes = self.index_bytes();
        out.reclaimable_bytes = pack_bytes.saturating_sub(live_pack_bytes);
        out.store_bytes = pack_bytes + index_bytes;
        out.size_after_reclaim = live + manifest_bytes + index_bytes;
        Ok(())
    }

    /// The plan for `policy` now (changes nothing), hot copies kept for
    /// [`HOT_FOR`].
    pub fn gc_plan(&self, policy: &Policy) -> Result<GcPlan> {
        self.gc_plan_hot(policy, HOT_FOR)
    }

    /// The plan for `policy` now, hot copies of gzip-form files kept for
    /// `hot_for` after their artifact's last use (changes nothing).
    pub fn gc_plan_hot(&self, policy: &Policy, hot_for: std::time::Duration) -> Result<GcPlan> {
        // The index's WAL counts towards the store's size: fold it into
        // the database first, so that a long-grown WAL neither makes the
        // store look bigger than it is nor evicts artifacts for it.
        trace::time("checkpoint before", || self.index().checkpoint());
        let index_bytes = self.index_bytes();
        let mut snap = trace::time("snapshot", || {
            self.snapshot_at(index_bytes, &Default::default())
        })?;
        let now = super::uses::now_secs();
        let copies = self.index().hot_copies()?;
        let drops = hot::plan_hot(
            &copies,
            policy,
            hot_for.as_secs(),
            now,
            snap.size_after_reclaim(),
        );
        if !drops.is_empty() {
            // Evictions are planned on the store as the drops leave it.
            snap = trace::time("snapshot without hot copies", || {
                self.snapshot_at(index_bytes, &hot::dropped_files(&drops))
            })?;
        }
        let mut plan = trace::time("plan", || plan::plan(&snap, policy, now));
        plan.hot = drops;
        Ok(plan)
    }

    /// Carry out `plan`: its expiries, then its evictions, each one index
    /// transaction, in order.
    pub fn gc_run(&self, plan: &GcPlan) -> Result<GcOutcome> {
        let old = self.index().bulk_settings(GC_CACHE_KIB)?;
        let res = self.gc_run_with(plan);
        self.index().restore_cache(old);
        res
    }

    fn gc_run_with(&self, plan: &GcPlan) -> Result<GcOutcome> {
        let before = plan.store_bytes;
        let mut out = GcOutcome::default();
        for e in &plan.expire {
            let done = self.with_reserve(|| {
                self.index()
                    .expire_quarantined(&e.namespace, &e.artifact, e.id, e.newest)
            })?;
            match done {
                Some(d) => out.expired.push(Expiry {
                    whole_artifact: !d.incomplete.is_empty(),
                    ..e.clone()
                }),
                None => out.skipped.push(Skipped {
                    namespace: e.namespace.clone(),
                    name: e.artifact.clone(),
                    why: format!("quarantined files not expired: {CHANGED}"),
                }),
            }
        }
        for h in &plan.hot {
            if self.index().drop_hot(h.file_id, h.last_access)? {
                out.hot_dropped.push(h.clone());
            } else {
                out.skipped.push(Skipped {
                    namespace: h.namespace.clone(),
                    name: h.artifact.clone(),
                    why: format!(
                        "hot copy of {:?} kept: used since the plan, or gone",
                        h.file
                    ),
                });
            }
        }
        self.settle_batch()?;
        let evicting = std::time::Instant::now();
        let mut left = &plan.evict[..];
        while !left.is_empty() {
            let batch = &left[..left.len().min(EVICT_BATCH)];
            let rows: Vec<Evict> = batch
                .iter()
                .map(|v| Evict {
                    ns: v.namespace.clone(),
                    name: v.name.clone(),
                    id: v.id,
                    last_access: v.last_access,
                })
                .collect();
            let mark = self.mark_batch(rows.len())?;
            let done = trace::time("evict batch", || {
                self.with_reserve(|| self.index().evict_batch(&rows, TX_BUDGET))
            })?;
            let _ = fs::remove_file(&mark);
            for (v, done) in batch.iter().zip(&done) {
                if *done {
                    out.evicted.push(v.clone());
                } else {
                    out.skipped.push(Skipped {
                        namespace: v.namespace.clone(),
                        name: v.name.clone(),
                        why: format!("not evicted: {CHANGED}"),
                    });
                }
            }
            left = &left[done.len().max(1)..];
            if !left.is_empty() {
                std::thread::sleep(YIELD);
            }
        }
        out.evict_seconds = evicting.elapsed().as_secs_f64();
        out.packs = trace::time("packs", || self.gc_compact(&plan.reclaim.packs))?;
        out.checkpoint = trace::time("checkpoint", || self.gc_checkpoint(&plan.checkpoint))?;
        // Conversion verdicts of contents that are gone (best effort: a
        // leftover verdict only costs its row).
        let _ = trace::time("tried verdicts", || self.index().forget_gone_tried());
        // The WAL grew by the evictions' and the switch's pages: give that
        // back too (`freed_on_disk` counts it).
        trace::time("checkpoint after", || self.index().checkpoint());
        trace::time("sizes after", || self.sizes_after(&mut out))?;
        out.freed_on_disk = before as i64 - out.store_bytes as i64;
        Ok(out)
    }
}
