//! gc: evict whole artifacts by policy, least recently used first, expire
//! quarantined files, and return the space to the filesystem; plan, then
//! execute.
//!
//! - `policy`: the limits (`--max-size`, `--older-than`, `--keep-last`,
//!   the namespaces) and parsing them;
//! - `plan`: the plan, a pure function of one snapshot of the index;
//! - `reclaim`: which packs the plan rewrites and unlinks (the threshold);
//! - `compact`: carrying that out: copy, switch, delete.
//!
//! Evictions are the same recorded change as `rm` (and each expiry as
//! `rm --quarantine NAME`), made only if, inside their transaction, the
//! artifact is still the one planned for, not used since, and has no file
//! being written through a mount; they go in batches of `EVICT_BATCH`
//! per transaction (`index::evict`). Then the packs: see `compact`.
//!
//! Safe while mounted: a reader with a file open keeps reading it where
//! its chunks were moved (looked up again); of an evicted artifact, for as
//! long as its process keeps the packs open (`pack::open_packs`); a
//! writer waits for gc at most one batch of evictions (the index's write
//! lock) or the switch (`gc.lock`), each one index transaction.

mod compact;
pub mod hot;
pub mod plan;
pub mod policy;
pub mod reclaim;

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{IoContext, Result};
use crate::index::Evict;

use super::{Stats, Store};
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
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub name: String,
    pub why: String,
}

/// Artifacts evicted per index transaction: a few fsyncs for hundreds of
/// evictions, and a writer waits for the index at most one batch.
const EVICT_BATCH: usize = 64;

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
        self.gc_snapshot_with(&self.stats()?)
    }

    /// [`Store::gc_snapshot`], with the size on disk from `st`.
    pub fn gc_snapshot_with(&self, st: &Stats) -> Result<Snapshot> {
        self.gc_snapshot_except(st, &Default::default())
    }

    /// [`Store::gc_snapshot_with`], as if the hot copies of files `no_hot`
    /// were dropped.
    fn gc_snapshot_except(
        &self,
        st: &Stats,
        no_hot: &std::collections::HashSet<i64>,
    ) -> Result<Snapshot> {
        // Listed before the read: a pack committed in between is in both,
        // one created after is not listed (and is no orphan of this plan).
        let pack_list = self.core.packs.list()?;
        let (artifacts, holders, manifests, pack_rows) = {
            let ix = self.index();
            ix.begin_read()?;
            let res = (|| {
                Ok((
                    ix.gc_artifacts()?,
                    ix.chunk_holders_except(no_hot)?,
                    ix.manifest_packs()?,
                    ix.pack_rows()?,
                ))
            })();
            let end = ix.end_read();
            let res = res?;
            end?;
            res
        };
        let (mut manifest_packs, mut manifest_bytes) = (0, 0);
        for p in manifests {
            // A pack gone meanwhile (an orphan sweep) holds nothing.
            if let Ok(size) = self.core.packs.size(p) {
                manifest_packs += 1;
                manifest_bytes += size;
            }
        }
        Ok(Snapshot {
            artifacts,
            holders,
            pack_files: pack_list.len() as u64,
            pack_bytes: pack_list.iter().map(|p| p.size).sum(),
            index_bytes: st.index_bytes,
            manifest_packs,
            manifest_bytes,
            pack_rows,
            pack_list,
        })
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
        self.index().checkpoint();
        let st = self.stats()?;
        let mut snap = self.gc_snapshot_with(&st)?;
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
            snap = self.gc_snapshot_except(&st, &hot::dropped_files(&drops))?;
        }
        let mut plan = plan::plan(&snap, policy, now);
        plan.hot = drops;
        Ok(plan)
    }

    /// Carry out `plan`: its expiries, then its evictions, each one index
    /// transaction, in order.
    pub fn gc_run(&self, plan: &GcPlan) -> Result<GcOutcome> {
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
        for batch in plan.evict.chunks(EVICT_BATCH) {
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
            let done = self.with_reserve(|| self.index().evict_batch(&rows))?;
            let _ = fs::remove_file(&mark);
            for (v, done) in batch.iter().zip(done) {
                if done {
                    out.evicted.push(v.clone());
                } else {
                    out.skipped.push(Skipped {
                        namespace: v.namespace.clone(),
                        name: v.name.clone(),
                        why: format!("not evicted: {CHANGED}"),
                    });
                }
            }
        }
        out.evict_seconds = evicting.elapsed().as_secs_f64();
        out.packs = self.gc_compact(&plan.reclaim.packs)?;
        // The WAL grew by the evictions' and the switch's pages: give that
        // back too (`freed_on_disk` counts it).
        self.index().checkpoint();
        let after = self.gc_snapshot()?;
        out.reclaimable_bytes = after.reclaimable_bytes();
        out.store_bytes = after.pack_bytes + after.index_bytes;
        out.freed_on_disk = before as i64 - out.store_bytes as i64;
        out.size_after_reclaim = after.size_after_reclaim();
        Ok(out)
    }
}
