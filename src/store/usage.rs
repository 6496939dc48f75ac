//! Where the store's bytes go, in figures that add up: per namespace and
//! for the store, logical bytes, the chunk bytes its artifacts hold (each
//! chunk once), split into bytes only one artifact holds and bytes two or
//! more hold, compression and dedupe apart, quarantined and reclaimable
//! bytes.
//!
//! The identities (tests/it/gc.rs checks them on a store of known content):
//! - per artifact: `unique + shared` = the distinct chunk bytes it holds;
//! - per namespace and store: `unique` is the sum of its artifacts' unique
//!   bytes, `shared` the bytes of chunks it holds that two or more
//!   artifacts hold, each counted once, and `unique + shared = held`;
//! - for the store, `held_stored` = the live chunk bytes in packs, and
//!   `pack_bytes` = `live_pack_bytes` + `reclaimable`, where live counts
//!   live chunks with their record headers, manifest packs and pack headers.

use std::collections::HashMap;

use super::gc::{self, GcPlan, Policy, Snapshot};
use super::{Stats, Store};
use crate::error::Result;

/// The figures of a namespace, or of the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpaceUse {
    /// The namespace; None for the whole store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub artifacts: u64,
    /// Visible files and their sizes.
    pub files: u64,
    pub logical_bytes: u64,
    /// Distinct chunks its artifacts hold (quarantined files' included),
    /// uncompressed and as stored (payloads, without record headers).
    pub held_bytes: u64,
    pub held_stored_bytes: u64,
    /// Of those, chunks only one artifact holds (the sum over its artifacts
    /// of what removing each alone frees). Named `artifact_unique_*` in
    /// JSON: `stats`' `unique_bytes` has long meant the held bytes.
    #[serde(rename = "artifact_unique_bytes")]
    pub unique_bytes: u64,
    #[serde(rename = "artifact_unique_stored_bytes")]
    pub unique_stored_bytes: u64,
    /// And chunks two or more artifacts hold (anywhere in the store).
    pub shared_bytes: u64,
    pub shared_stored_bytes: u64,
    /// Files kept aside (cut short, lost in flight) and their sizes.
    pub quarantined_files: u64,
    pub quarantined_bytes: u64,
}

impl SpaceUse {
    /// logical / held: what dedupe alone saves.
    pub fn dedupe_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.held_bytes)
    }

    /// held / held stored: what compression alone saves.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.held_bytes, self.held_stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// `stats`' figures beyond the index totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpaceReport {
    pub store: SpaceUse,
    /// One per namespace, by name (when asked for).
    pub namespaces: Vec<SpaceUse>,
    /// Bytes of the pack files on disk, and the index's.
    pub pack_bytes: u64,
    pub index_bytes: u64,
    /// Pack bytes something live needs (`Snapshot::live_pack_bytes`), and
    /// of those, the manifest packs'.
    pub live_pack_bytes: u64,
    pub manifest_bytes: u64,
    /// Pack bytes nothing live needs (`Snapshot::reclaimable_bytes`):
    /// returned to the filesystem by gc (packs at least half dead).
    pub reclaimable_bytes: u64,
}

impl SpaceReport {
    /// The report of `snap`; with `by_namespace`, one entry per namespace too.
    pub fn of(snap: &Snapshot, by_namespace: bool) -> SpaceReport {
        let mut store = SpaceUse::default();
        let mut per_ns: HashMap<&str, SpaceUse> = HashMap::new();
        let ns_of: HashMap<i64, &str> = snap
            .artifacts
            .iter()
            .map(|a| (a.id, a.namespace.as_str()))
            .collect();
        for a in &snap.artifacts {
            for u in [&mut store, per_ns.entry(a.namespace.as_str()).or_default()] {
                u.artifacts += 1;
                u.files += a.files;
                u.logical_bytes += a.logical_bytes;
                u.quarantined_files += a.quarantined_files;
                u.quarantined_bytes += a.quarantined_bytes;
            }
        }
        let h = &snap.holders;
        let (mut arts, mut spaces) = (Vec::new(), Vec::new());
        for (i, c) in h.chunks.iter().enumerate() {
            arts.clear();
            arts.extend(h.holders_of(i).iter().map(|u| u.artifact));
            arts.dedup();
            spaces.clear();
            spaces.extend(arts.iter().filter_map(|a| ns_of.get(a).copied()));
            spaces.sort_unstable();
            spaces.dedup();
            let shared = arts.len() > 1;
            let (raw, stored) = (c.raw_len as u64, c.stored_len as u64);
            for ns in &spaces {
                add(per_ns.entry(ns).or_default(), shared, raw, stored);
            }
            add(&mut store, shared, raw, stored);
        }
        let mut namespaces = Vec::new();
        if by_namespace {
            namespaces = per_ns
                .into_iter()
                .map(|(ns, mut u)| {
                    u.namespace = Some(ns.to_owned());
                    u
                })
                .collect();
            namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        }
        SpaceReport {
            store,
            namespaces,
            pack_bytes: snap.pack_bytes,
            index_bytes: snap.index_bytes,
            live_pack_bytes: snap.live_pack_bytes(),
            manifest_bytes: snap.manifest_bytes,
            reclaimable_bytes: snap.reclaimable_bytes(),
        }
    }
}

fn add(u: &mut SpaceUse, shared: bool, raw: u64, stored: u64) {
    u.held_bytes += raw;
    u.held_stored_bytes += stored;
    if shared {
        u.shared_bytes += raw;
        u.shared_stored_bytes += stored;
    } else {
        u.unique_bytes += raw;
        u.unique_stored_bytes += stored;
    }
}

impl Store {
    /// Where the store's bytes go (see the module doc), with the sizes on
    /// disk from `st`; with a `policy`, the gc plan for it from the same
    /// snapshot.
    pub fn space_report(
        &self,
        st: &Stats,
        by_namespace: bool,
        policy: Option<&Policy>,
    ) -> Result<(SpaceReport, Option<GcPlan>)> {
        let snap = self.gc_snapshot_with(st)?;
        let plan = policy.map(|p| gc::plan::plan(&snap, p, super::uses::now_secs()));
        Ok((SpaceReport::of(&snap, by_namespace), plan))
    }
}
