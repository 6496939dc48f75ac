//! The plan: which artifacts and quarantined files go, why, and what each
//! frees given those that go before it. Computed from one snapshot of the
//! index, by a pure function, so that `--dry-run` prints exactly what a
//! real run then carries out.

use std::collections::HashMap;

use super::checkpoint::{self, CheckpointPlan, ManifestState};
use super::policy::Policy;
use super::reclaim::{self, PackWork};
use crate::index::{GcArtifact, Holder, Holders, PackRow};
use crate::pack::{PackInfo, PACK_MAGIC};

/// What the plan is computed from: one read transaction's view of the
/// index, and the store's size on disk.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub artifacts: Vec<GcArtifact>,
    pub holders: Holders,
    /// Pack files, their bytes, and the index's (with its WAL) on disk.
    pub pack_files: u64,
    pub pack_bytes: u64,
    pub index_bytes: u64,
    /// Packs of manifest records, and their bytes: live until pack
    /// compaction checkpoints them (store-layout.md, "gc and manifest records").
    pub manifest_packs: u64,
    pub manifest_bytes: u64,
    /// The `packs` rows, and the pack files found on disk.
    pub pack_rows: Vec<PackRow>,
    pub pack_list: Vec<PackInfo>,
    /// The manifest log: what a checkpoint would write, and the records of
    /// each manifest pack (`checkpoint`).
    pub manifest: ManifestState,
}

impl Snapshot {
    /// Bytes the referenced chunks take in packs (payloads and record
    /// headers).
    pub fn live_bytes(&self) -> u64 {
        self.holders.chunks.iter().map(|c| c.on_disk()).sum()
    }

    /// Pack bytes something live needs: referenced chunks, the manifest
    /// packs, and the header of each pack of chunks.
    pub fn live_pack_bytes(&self) -> u64 {
        let chunk_packs = self.pack_files.saturating_sub(self.manifest_packs);
        self.live_bytes() + self.manifest_bytes + chunk_packs * PACK_MAGIC.len() as u64
    }

    /// Pack bytes nothing live needs: chunks with no reference left, and
    /// records no chunk row points at (duplicates two writers stored at
    /// once, tails of failed writes, packs of killed writers).
    pub fn reclaimable_bytes(&self) -> u64 {
        self.pack_bytes.saturating_sub(self.live_pack_bytes())
    }

    /// The store's bytes on disk once what is reclaimable is reclaimed:
    /// live chunks, manifest records and the index.
    pub fn size_after_reclaim(&self) -> u64 {
        self.live_bytes() + self.manifest_bytes + self.index_bytes
    }
}

/// Why an artifact goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not used for longer than `--older-than`.
    OlderThan,
    /// The store is over `--max-size`, and it is the least recently used.
    MaxSize,
}

/// An artifact to evict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Eviction {
    pub namespace: String,
    pub name: String,
    /// Its row: gc evicts it only if the row is still this one, not used since.
    #[serde(skip)]
    pub id: i64,
    pub last_access: i64,
    pub reason: Reason,
    pub files: u64,
    pub logical_bytes: u64,
    /// Pack bytes (payloads and headers) its eviction makes reclaimable,
    /// given the evictions before it.
    pub frees_bytes: u64,
}

/// Quarantined files of an artifact to drop: kept aside longer than the
/// quarantine limit, none being written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Expiry {
    pub namespace: String,
    pub artifact: String,
    #[serde(skip)]
    pub id: i64,
    /// When the newest of them was kept aside: one kept aside later stops it.
    pub newest: i64,
    pub files: u64,
    pub bytes: u64,
    /// The artifact is incomplete without them, so it goes whole.
    pub whole_artifact: bool,
    pub frees_bytes: u64,
}

/// An artifact a limit would have taken, and what held it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    pub namespace: String,
    pub name: String,
    pub why: HeldBy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBy {
    KeepLast,
    BeingWritten,
}

/// What becomes reclaimable, and the pack work that returns it to the
/// filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reclaim {
    /// Chunks whose last reference the plan drops.
    pub chunks: u64,
    /// Their bytes in packs (payloads and headers).
    pub bytes: u64,
    /// The packs rewritten and unlinked (see `reclaim` for the threshold).
    pub packs: PackWork,
}

/// gc's plan: computed without changing anything, printed by `--dry-run`,
/// carried out in order by a real run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GcPlan {
    pub policy: Policy,
    /// The time the plan was made for (Unix seconds).
    pub now: i64,
    /// Quarantined files that go first.
    pub expire: Vec<Expiry>,
    /// Hot copies of gzip-form files that go first (`gc::hot`).
    pub hot: Vec<super::hot::HotDrop>,
    /// Artifacts that go, least recently used first.
    pub evict: Vec<Eviction>,
    /// Artifacts a limit would have taken that stay.
    pub held: Vec<Held>,
    pub reclaim: Reclaim,
    /// The checkpoint, and the packs of manifest records reclaimed.
    pub checkpoint: CheckpointPlan,
    /// The store's bytes on disk now: packs and index.
    pub store_bytes: u64,
    /// Of those, pack bytes no referenced chunk needs before this gc.
    pub reclaimable_before: u64,
    /// The store's bytes on disk once everything unreferenced after this
    /// plan is reclaimed: referenced chunks (payloads and headers),
    /// manifest records and the index: the size a run that reclaims
    /// everything comes down to (a run rewrites only packs at least half
    /// dead, see `reclaim.packs.size_after`, unless `--max-size` needs more).
    pub size_after_reclaim: u64,
    /// Whether `size_after_reclaim` is at or under `--max-size` (None:
    /// none given); false when keep-last, writes in progress or the scope
    /// hold too much.
    pub max_size_met: Option<bool>,
}

impl GcPlan {
    /// Bytes the whole plan makes reclaimable.
    pub fn frees_bytes(&self) -> u64 {
        self.reclaim.bytes
    }
}

/// Tracks which holders are gone and what that frees.
struct Freeing<'a> {
    holders: &'a Holders,
    by_unit: HashMap<Holder, Vec<u32>>,
    left: Vec<u32>,
    reclaim: Reclaim,
}

impl<'a> Freeing<'a> {
    fn new(holders: &'a Holders) -> Freeing<'a> {
        let mut by_unit: HashMap<Holder, Vec<u32>> = HashMap::new();
        let mut left = Vec::with_capacity(holders.chunks.len());
        for i in 0..holders.chunks.len() {
            let units = holders.holders_of(i);
            left.push(units.len() as u32);
            for u in units {
                by_unit.entry(*u).or_default().push(i as u32);
            }
        }
        Freeing {
            holders,
            by_unit,
            left,
            reclaim: Reclaim::default(),
        }
    }

    /// Drop holder `u`; returns the pack bytes that frees.
    fn drop_unit(&mut self, u: Holder) -> u64 {
        let Some(chunks) = self.by_unit.remove(&u) else {
            return 0;
        };
        let mut freed = 0;
        for i in chunks {
            let left = &mut self.left[i as usize];
            *left -= 1;
            if *left == 0 {
                freed += self.holders.chunks[i as usize].on_disk();
                self.reclaim.chunks += 1;
            }
        }
        self.reclaim.bytes += freed;
        freed
    }

    fn drop_artifact(&mut self, id: i64) -> u64 {
        [false, true]
            .into_iter()
            .map(|quarantined| {
                self.drop_unit(Holder {
                    artifact: id,
                    quarantined,
                })
            })
            .sum()
    }
}

/// The plan for `policy` at time `now` (Unix seconds).
pub fn plan(snap: &Snapshot, policy: &Policy, now: i64) -> GcPlan {
    let mut freeing = Freeing::new(&snap.holders);
    let store_bytes = snap.pack_bytes + snap.index_bytes;
    // Dead manifest records go before any live artifact does.
    let over_by = policy
        .max_size
        .and_then(|max| snap.size_after_reclaim().checked_sub(max))
        .filter(|o| *o > 0);
    let mut checkpoint = checkpoint::plan(&snap.manifest, over_by, false);
    let size_now = snap
        .size_after_reclaim()
        .saturating_sub(checkpoint.freed_bytes);

    // Least recently used first; ties by age, then row id, so that a plan
    // is the same however the rows came.
    let mut lru: Vec<&GcArtifact> = snap
        .artifacts
        .iter()
        .filter(|a| policy.scope.holds(&a.namespace))
        .collect();
    lru.sort_by_key(|a| (a.last_access, a.created, a.id));

    let ttl = policy.quarantine_ttl() as i64;
    let mut gone: std::collections::HashSet<i64> = Default::default();
    let mut expire = Vec::new();
    for a in &lru {
        let Some(newest) = a.newest_quarantined else {
            continue;
        };
        if a.pending || newest > now - ttl {
            continue;
        }
        let frees_bytes = if a.incomplete {
            gone.insert(a.id);
            freeing.drop_artifact(a.id)
        } else {
            freeing.drop_unit(Holder {
                artifact: a.id,
                quarantined: true,
            })
        };
        expire.push(Expiry {
            namespace: a.namespace.clone(),
            artifact: a.name.clone(),
            id: a.id,
            newest,
            files: a.quarantined_files,
            bytes: a.quarantined_bytes,
            whole_artifact: a.incomplete,
            frees_bytes,
        });
    }

    // The N most recently used of each namespace stay.
    let mut kept_last: std::collections::HashSet<i64> = Default::default();
    if let Some(n) = policy.keep_last {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for a in lru.iter().rev() {
            let k = seen.entry(a.namespace.as_str()).or_default();
            if *k < n {
                kept_last.insert(a.id);
            }
            *k += 1;
        }
    }

    let mut size = size_now.saturating_sub(freeing.reclaim.bytes);
    let mut evict = Vec::new();
    let mut held = Vec::new();
    for a in &lru {
        if gone.contains(&a.id) {
            continue;
        }
        let reason = if policy
            .older_than
            .is_some_and(|d| a.last_access < now - d as i64)
        {
            Reason::OlderThan
        } else if policy.max_size.is_some_and(|max| size > max) {
            Reason::MaxSize
        } else {
            continue;
        };
        let why = if a.pending {
            Some(HeldBy::BeingWritten)
        } else if kept_last.contains(&a.id) {
            Some(HeldBy::KeepLast)
        } else {
            None
        };
        if let Some(why) = why {
            held.push(Held {
                namespace: a.namespace.clone(),
                name: a.name.clone(),
                why,
            });
            continue;
        }
        let frees_bytes = freeing.drop_artifact(a.id);
        size -= frees_bytes;
        evict.push(Eviction {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            id: a.id,
            last_access: a.last_access,
            reason,
            files: a.files,
            logical_bytes: a.logical_bytes,
            frees_bytes,
        });
    }

    // Still over: a checkpoint that meets the limit is the last resort.
    if let Some(max) = policy
        .max_size
        .filter(|m| size > *m && checkpoint.write.is_none())
    {
        let last = checkpoint::plan(&snap.manifest, over_by, true);
        if size.saturating_sub(last.freed_bytes) <= max {
            size -= last.freed_bytes;
            checkpoint = last;
        }
    }
    let left = &freeing.left;
    freeing.reclaim.packs = reclaim::packs(snap, |i| left[i] > 0, policy.max_size);
    GcPlan {
        policy: policy.clone(),
        now,
        expire,
        hot: Vec::new(),
        evict,
        held,
        reclaim: freeing.reclaim,
        checkpoint,
        store_bytes,
        reclaimable_before: snap.reclaimable_bytes(),
        size_after_reclaim: size,
        max_size_met: policy.max_size.map(|max| size <= max),
    }
}

#[cfg(test)]
mod tests;
