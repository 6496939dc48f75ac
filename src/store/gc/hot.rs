//! gc's hot tier (store-layout.md, "Gzip files (format 4)"): the hot
//! copies of gzip-form files (their gzip bytes' chunks, kept so that reads
//! need no rebuild) are a cache, and gc drops them before it evicts any
//! artifact: those of artifacts not used for `--hot-for` (default a day),
//! and, while the store is over `--max-size`, more, least recently used
//! first. A dropped copy frees the chunks nothing else holds; the file
//! stays, read by rebuilding it (and promoted again when read whole).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::policy::Policy;
use crate::id::ChunkId;
use crate::index::HotCopy;

/// How long a hot copy stays when its artifact is not used, when no
/// `--hot-for` is given. A fingerprint's images are deployed mostly in the
/// day after they are built (every deploy of the day reads them); after a
/// day unused the next read is rare and may pay for a rebuild, while the
/// copy costs its whole gzip size on disk.
pub const HOT_FOR: Duration = Duration::from_secs(24 * 3600);

/// Why a hot copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HotReason {
    /// Its artifact was not used for `--hot-for`.
    Unused,
    /// The store is over `--max-size`: hot copies go before artifacts.
    MaxSize,
}

/// A hot copy to drop.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HotDrop {
    pub namespace: String,
    pub artifact: String,
    pub file: String,
    #[serde(skip)]
    pub file_id: i64,
    /// Its artifact's last use when planned: a use since keeps the copy.
    pub last_access: i64,
    pub reason: HotReason,
    pub size: u64,
    /// Pack bytes its drop makes reclaimable, given the drops before it.
    pub frees_bytes: u64,
}

/// The hot copies to drop, in order, for `policy` and `hot_for` (seconds)
/// at `now`, given `size` (the store's size once reclaimed).
pub fn plan_hot(
    copies: &[HotCopy],
    policy: &Policy,
    hot_for: u64,
    now: i64,
    size: u64,
) -> Vec<HotDrop> {
    let mut lru: Vec<&HotCopy> = copies
        .iter()
        .filter(|c| policy.scope.holds(&c.namespace))
        .collect();
    lru.sort_by_key(|c| (c.last_access, c.file));
    let mut left: HashMap<ChunkId, i64> = HashMap::new();
    let mut size = size;
    let mut out = Vec::new();
    for c in lru {
        // At or before: `--hot-for 0s` drops every hot copy.
        let reason = if c.last_access <= now - hot_for as i64 {
            HotReason::Unused
        } else if policy.max_size.is_some_and(|max| size > max) {
            HotReason::MaxSize
        } else {
            continue;
        };
        let mut frees = 0;
        for ch in &c.chunks {
            let l = left.entry(ch.id).or_insert(ch.refs);
            *l -= ch.own;
            if *l == 0 {
                frees += ch.on_disk;
            }
        }
        size = size.saturating_sub(frees);
        out.push(HotDrop {
            namespace: c.namespace.clone(),
            artifact: c.artifact.clone(),
            file: c.file_name.clone(),
            file_id: c.file,
            last_access: c.last_access,
            reason,
            size: c.size,
            frees_bytes: frees,
        });
    }
    out
}

/// The files whose hot copies `drops` drop.
pub fn dropped_files(drops: &[HotDrop]) -> HashSet<i64> {
    drops.iter().map(|d| d.file_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::HotChunk;
    use crate::store::gc::Scope;

    fn copy(file: i64, ns: &str, last_access: i64, chunks: &[(u8, i64, i64)]) -> HotCopy {
        HotCopy {
            file,
            namespace: ns.into(),
            artifact: format!("a{file}"),
            file_name: "img.gz".into(),
            last_access,
            size: 100,
            chunks: chunks
                .iter()
                .map(|&(id, refs, own)| HotChunk {
                    id: ChunkId([id; 32]),
                    on_disk: 1000,
                    refs,
                    own,
                })
                .collect(),
        }
    }

    #[test]
    fn unused_copies_go_then_the_least_recently_used_while_over_max_size() {
        // Chunk 1 is held by both copies; chunk 2 also by an as-is file.
        let copies = [
            copy(1, "", 500, &[(1, 2, 1), (3, 1, 1)]),
            copy(2, "", 100, &[(1, 2, 1), (2, 2, 1)]),
            copy(3, "", 900, &[(4, 1, 1)]),
            copy(4, "other", 0, &[(5, 1, 1)]),
        ];
        let mut policy = Policy::none(Scope::Namespace(String::new()));
        // --hot-for 600 s at 1000: only copy 2 is unused; nothing over a size.
        let drops = plan_hot(&copies, &policy, 600, 1000, 10_000);
        assert_eq!(drops.len(), 1);
        assert_eq!((drops[0].file_id, drops[0].reason), (2, HotReason::Unused));
        assert_eq!(drops[0].frees_bytes, 0, "its chunks are held elsewhere too");
        // Over --max-size: least recently used first until under it; the
        // shared chunk is freed by the second of its holders.
        policy.max_size = Some(7_500);
        let drops = plan_hot(&copies, &policy, 600, 1000, 10_000);
        let got: Vec<(i64, u64)> = drops.iter().map(|d| (d.file_id, d.frees_bytes)).collect();
        assert_eq!(got, [(2, 0), (1, 2000), (3, 1000)]);
        assert_eq!(drops[1].reason, HotReason::MaxSize);
        // Another namespace's copy is out of scope.
        assert!(drops.iter().all(|d| d.namespace.is_empty()));
    }
}
