//! Which packs gc rewrites and unlinks, given what stays live after the
//! plan's evictions: a pure function of the snapshot, like the rest of
//! the plan.
//!
//! **Threshold.** A pack is rewritten when at least half of it is dead
//! (chunks nobody references, records no row points at, torn tails):
//! copying its live bytes then costs at most one byte written per byte
//! freed, so the rewrite cost of a run is bounded by what it frees, and a
//! pack is never rewritten again and again for a few dead bytes. A pack
//! with nothing live is unlinked (no copy). When `--max-size` is given and
//! the store would still be over it after that, more packs are rewritten,
//! those with the most dead bytes first, until it is not: the limit wins
//! over the rewrite cost. Packs of manifest records (no chunk row) are
//! never rewritten or unlinked: every record in them counts as live
//! (store-layout.md, "gc and manifest records").

use std::collections::{HashMap, HashSet};

use super::plan::Snapshot;
use crate::pack::{PackName, PACK_MAGIC, PACK_TARGET_SIZE};

/// A pack gc rewrites or unlinks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackPlan {
    /// The pack's name (32 hex digits).
    pub name: String,
    #[serde(skip)]
    pub pack: PackName,
    /// Its `packs` row (0: a file with no row, left by a killed writer).
    #[serde(skip)]
    pub id: i64,
    /// Its bytes on disk, and those of them that stay live (copied).
    pub size: u64,
    pub live_bytes: u64,
}

/// What gc does to the packs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackWork {
    /// Packs whose live records are copied to new packs, then unlinked.
    pub rewrite: Vec<PackPlan>,
    /// Packs with nothing live: unlinked, no copy.
    pub unlink: Vec<PackPlan>,
    /// Pack files no index row names (left by killed writers): unlinked
    /// unless a writer still holds them.
    pub orphans: Vec<PackPlan>,
    /// Live bytes the rewrite copies (record headers included).
    pub copy_bytes: u64,
    /// Pack bytes the filesystem gets back: the packs unlinked, less the
    /// new packs the copies go to.
    pub freed_bytes: u64,
    /// The store's bytes on disk after the run (packs and index, the
    /// index as it is now).
    pub size_after: u64,
}

/// The pack work for `snap`, where `live[i]` says whether chunk `i` of
/// `snap.holders` is still referenced after the plan.
pub fn packs(snap: &Snapshot, live: impl Fn(usize) -> bool, max_size: Option<u64>) -> PackWork {
    let mut live_by_pack: HashMap<i64, u64> = HashMap::new();
    for (i, c) in snap.holders.chunks.iter().enumerate() {
        if live(i) {
            *live_by_pack.entry(c.pack).or_default() += c.on_disk();
        }
    }
    let indexed: HashSet<PackName> = snap.pack_rows.iter().map(|r| r.name).collect();
    let sizes: HashMap<PackName, u64> = snap.pack_list.iter().map(|p| (p.name, p.size)).collect();
    let header = PACK_MAGIC.len() as u64;
    let mut w = PackWork::default();
    // Candidates for a rewrite under --max-size: (dead bytes, plan).
    let mut more: Vec<(u64, PackPlan)> = Vec::new();
    for r in &snap.pack_rows {
        let Some(&size) = sizes.get(&r.name) else {
            continue; // gone meanwhile (verify reports a missing pack)
        };
        if r.chunk_rows == 0 {
            continue; // manifest records: live
        }
        let live_bytes = live_by_pack.get(&r.id).copied().unwrap_or(0);
        let p = PackPlan {
            name: r.name.to_string(),
            pack: r.name,
            id: r.id,
            size,
            live_bytes,
        };
        let dead = size.saturating_sub(header + live_bytes);
        if live_bytes == 0 {
            w.unlink.push(p);
        } else if dead * 2 >= size.saturating_sub(header) {
            w.rewrite.push(p);
        } else if dead > 0 {
            more.push((dead, p));
        }
    }
    for p in &snap.pack_list {
        if !indexed.contains(&p.name) {
            w.orphans.push(PackPlan {
                name: p.name.to_string(),
                pack: p.name,
                id: 0,
                size: p.size,
                live_bytes: 0,
            });
        }
    }
    let pack_bytes_after = |w: &PackWork| -> u64 {
        let gone: u64 = [&w.rewrite, &w.unlink, &w.orphans]
            .into_iter()
            .flatten()
            .map(|p| p.size)
            .sum();
        let copy: u64 = w.rewrite.iter().map(|p| p.live_bytes).sum();
        snap.pack_bytes.saturating_sub(gone) + copy + new_packs(copy) * header
    };
    if let Some(max) = max_size {
        more.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(&b.1.name)));
        for (_, p) in more {
            if pack_bytes_after(&w) + snap.index_bytes <= max {
                break;
            }
            w.rewrite.push(p);
        }
    }
    for l in [&mut w.rewrite, &mut w.unlink, &mut w.orphans] {
        l.sort_by(|a, b| a.name.cmp(&b.name));
    }
    w.copy_bytes = w.rewrite.iter().map(|p| p.live_bytes).sum();
    let after = pack_bytes_after(&w);
    w.freed_bytes = snap.pack_bytes.saturating_sub(after);
    w.size_after = after + snap.index_bytes;
    w
}

/// How many packs `bytes` of copied records fill.
pub fn new_packs(bytes: u64) -> u64 {
    bytes.div_ceil(PACK_TARGET_SIZE)
}
