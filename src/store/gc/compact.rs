//! Carrying out the pack work of a plan, safe while the store is read and
//! written (store-layout.md, "How gc reclaims space"): copy, switch,
//! delete.
//!
//! 1. *Copy*, with no lock: the chunks of the planned packs that are
//!    referenced now are appended verbatim (header and stored payload, no
//!    re-compression) to new packs, which are synced but not sealed: their
//!    flock keeps the orphan sweep off them until the switch names them.
//! 2. *Switch*: each chunk still where it was copied from is pointed at
//!    its copy ([`crate::index::Index::repoint`]), then, with `gc.lock`
//!    exclusive, the rows of the packs left with nothing referenced are
//!    dropped ([`crate::index::Index::drop_dead`]). A chunk a writer
//!    referenced since the copy keeps its pack (and its row). Both go in
//!    transactions of about `TX_BUDGET`: the longest any writer waits for
//!    gc.
//! 3. *Delete*: the dropped packs are unlinked. A reader that resolved a
//!    location before the switch has the pack open, or gets ENOENT and
//!    looks the chunk up again (`StoreCore::read_checked`).
//!
//! A `kill -9` anywhere leaves a valid store: before the switch the new
//! packs have no row (orphans, swept by the next gc or writer); after it
//! the old ones have none (swept the same way).

use std::time::{Duration, Instant};

use super::checkpoint::is_dead;
use super::reclaim::{PackPlan, PackWork};
use crate::error::Result;
use crate::index::Move;
use crate::lock::GcGuard;
use crate::pack::{self, PackName, PackSink, RecordHead, RecordKind, PACK_TARGET_SIZE};
use crate::store::Store;

/// What the pack work of a run did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Compacted {
    /// Packs rewritten (live chunks copied) and unlinked, and packs with
    /// nothing live unlinked.
    pub packs_rewritten: u64,
    pub packs_unlinked: u64,
    /// Pack files of killed writers swept.
    pub orphans_unlinked: u64,
    /// Chunks copied and their bytes (headers included).
    pub chunks_copied: u64,
    pub bytes_copied: u64,
    /// New packs the copies went to.
    pub new_packs: u64,
    /// Unreferenced chunk rows deleted.
    pub chunk_rows_deleted: u64,
    /// Pack bytes unlinked, less the new packs: what the filesystem got back.
    pub freed_bytes: u64,
    /// Packs left alone, and why.
    pub skipped: Vec<String>,
    /// How long the copy took, and the longest gc held `gc.lock`
    /// exclusively (the longest a writer waited for it), in seconds.
    pub copy_seconds: f64,
    pub lock_seconds: f64,
}

/// A test hook: `DEPLOYCACHE_GC_PAUSE=MS` sleeps that long between the
/// steps of the pack work, so that a test can kill gc in each of them.
pub(super) fn pause() {
    if let Some(ms) = std::env::var("DEPLOYCACHE_GC_PAUSE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Whether the pack in `bytes` holds a manifest record that is not dead
/// (seq `dead_before` or later; its records walked up to the first torn
/// or unknown one).
fn holds_manifest(bytes: &[u8], dead_before: u64) -> bool {
    let mut pos = pack::PACK_MAGIC.len();
    while let Some(h) = bytes.get(pos..pos + pack::RECORD_HEADER_LEN) {
        let h: &[u8; pack::RECORD_HEADER_LEN] = h.try_into().expect("header length");
        match RecordHead::parse(h) {
            Ok((head, _))
                if head.kind == RecordKind::Manifest
                    && !is_dead(head.codec, &bytes[pos + h.len()..], dead_before) =>
            {
                return true
            }
            Ok((_, stored_len)) => pos += pack::RECORD_HEADER_LEN + stored_len as usize,
            Err(_) => return false,
        }
    }
    false
}

impl Store {
    /// Rewrite and unlink the packs of `work` (see the module doc).
    pub(super) fn gc_compact(&self, work: &PackWork) -> Result<Compacted> {
        let packs = &self.core.packs;
        let mut out = Compacted::default();
        let started = Instant::now();
        let mut sinks: Vec<Box<dyn PackSink>> = Vec::new();
        let mut moves: Vec<Move> = Vec::new();
        let mut drop: Vec<(i64, PackName)> = Vec::new();
        let mut sizes = std::collections::HashMap::new();
        let targets = work.rewrite.iter().chain(&work.unlink);
        for p in targets {
            match self.copy_pack(p, &mut sinks, &mut moves)? {
                Ok(()) => {
                    drop.push((p.id, p.pack));
                    sizes.insert(p.pack, p.size);
                }
                Err(why) => out.skipped.push(format!("pack {}: {why}", p.name)),
            }
            pause();
        }
        for s in &mut sinks {
            s.sync()?;
        }
        out.copy_seconds = started.elapsed().as_secs_f64();
        out.chunks_copied = moves.len() as u64;
        out.bytes_copied = moves
            .iter()
            .map(|m| m.to.stored_len as u64 + pack::RECORD_HEADER_LEN as u64)
            .sum();
        pause();

        let switched = self.switch(&moves, &drop, &mut out)?;
        pause();

        // The copies are named by the index (or hold nothing needed):
        // sealed, which lets go of their flock.
        let mut new_bytes = 0;
        for s in sinks {
            let (name, len) = (s.name(), s.len());
            s.seal()?;
            if switched.used_copies.contains(&name) {
                out.new_packs += 1;
                new_bytes += len;
            } else {
                packs.delete(name)?;
            }
        }
        let mut unlinked = 0;
        for p in &switched.dropped {
            packs.delete(*p)?;
            unlinked += sizes.get(p).copied().unwrap_or(0);
            pause();
        }
        for p in &switched.kept {
            out.skipped.push(format!(
                "pack {p}: a chunk in it was referenced since the copy"
            ));
        }
        let rewritten: std::collections::HashSet<PackName> =
            work.rewrite.iter().map(|p| p.pack).collect();
        for p in &switched.dropped {
            if rewritten.contains(p) {
                out.packs_rewritten += 1;
            } else {
                out.packs_unlinked += 1;
            }
        }
        out.chunk_rows_deleted = switched.deleted_rows;
        if !work.orphans.is_empty() {
            if let Some(swept) = self.sweep_orphan_packs()? {
                out.orphans_unlinked = swept.packs;
                unlinked += swept.bytes;
            }
        }
        out.freed_bytes = unlinked.saturating_sub(new_bytes);
        Ok(out)
    }

    /// Copy the referenced chunks of pack `p` to `sinks`; the inner error
    /// says why the pack is left alone.
    fn copy_pack(
        &self,
        p: &PackPlan,
        sinks: &mut Vec<Box<dyn PackSink>>,
        moves: &mut Vec<Move>,
    ) -> Result<std::result::Result<(), String>> {
        let packs = &self.core.packs;
        if packs.writer_holds(p.pack)? {
            return Ok(Err("a writer may still append to it".into()));
        }
        // Chunk packs hold no manifest record (a process writes those to
        // a pack of its own); a pack that does is kept whole.
        let size = match packs.size(p.pack) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("gone ({e})"))),
        };
        // Read whole (at most a little over 64 MiB): one read instead of
        // one per record header and one per live payload.
        let mut bytes = vec![0u8; size as usize];
        if let Err(e) = packs.read_at(p.pack, 0, &mut bytes) {
            return Ok(Err(format!("unreadable ({e})")));
        }
        if holds_manifest(&bytes, self.index().checkpoint_seq()?) {
            return Ok(Err("it holds manifest records".into()));
        }
        let live = self.index().live_chunks_in(p.id)?;
        let mut mine = Vec::with_capacity(live.len());
        for (id, loc) in live {
            let (start, end) = (
                loc.offset as usize,
                (loc.offset + loc.stored_len as u64) as usize,
            );
            let Some(payload) = bytes.get(start..end) else {
                return Ok(Err(format!(
                    "shorter than the index says (record at {start})"
                )));
            };
            if sinks.last().is_none_or(|s| s.len() >= PACK_TARGET_SIZE) {
                // Created under gc.lock shared, as a writer does: no sweep
                // runs between the pack's creation and its flock.
                let _shared = GcGuard::writer(&self.core.root)?;
                sinks.push(packs.create()?);
            }
            let sink = sinks.last_mut().expect("a sink was just made");
            let head = RecordHead {
                kind: RecordKind::Chunk,
                id,
                raw_len: loc.raw_len,
                codec: loc.codec,
            };
            let to = sink.append(&head, payload)?;
            mine.push(Move {
                id,
                from_pack: p.id,
                from_offset: loc.offset,
                to,
            });
        }
        moves.append(&mut mine);
        Ok(Ok(()))
    }

    /// The switch: moved chunks repointed (no `gc.lock`), then, under
    /// `gc.lock` exclusive, the dead rows dropped; each in transactions of
    /// about [`super::TX_BUDGET`], so that a writer waits for one of them
    /// at most. The lock is taken while this process's index is free, so
    /// that none of its own writers waits for the index while holding
    /// `gc.lock` shared (each would wait for the other); until both are
    /// free at once, gc lets go and tries again.
    fn switch(
        &self,
        moves: &[Move],
        drop: &[(i64, PackName)],
        out: &mut Compacted,
    ) -> Result<crate::index::Switched> {
        let mut all = crate::index::Switched::default();
        let mut left = moves;
        while !left.is_empty() {
            let (n, part) = super::trace::time("packs: repoint part", || {
                self.index().repoint(left, super::TX_BUDGET)
            })?;
            all.moved += part.moved;
            for c in part.used_copies {
                if !all.used_copies.contains(&c) {
                    all.used_copies.push(c);
                }
            }
            left = &left[n.max(1)..];
            if !left.is_empty() {
                std::thread::sleep(super::YIELD);
            }
        }
        pause();
        let dropped = self.drop_dead_rows(drop, &mut out.lock_seconds, true)?;
        all.deleted_rows += dropped.deleted_rows;
        all.dropped.extend(dropped.dropped);
        all.kept.extend(dropped.kept);
        Ok(all)
    }

    /// Drop the unreferenced chunk rows of packs `drop` (a pack's row too
    /// once none is left), under `gc.lock` exclusive, in transactions of
    /// about [`super::TX_BUDGET`]; `lock_seconds` becomes the longest hold
    /// if longer. A writer holds `gc.lock` shared from its lookups to its
    /// commit, so no row it deduplicated against goes before it commits.
    /// Unless `wait`, it gives up (with what it did) when a writer holds
    /// the lock.
    pub(in crate::store) fn drop_dead_rows(
        &self,
        drop: &[(i64, PackName)],
        lock_seconds: &mut f64,
        wait: bool,
    ) -> Result<crate::index::Switched> {
        let mut all = crate::index::Switched::default();
        let mut left = drop;
        while !left.is_empty() {
            let mut ix = self.index();
            let Some(guard) = GcGuard::try_collector(&self.core.root)? else {
                std::mem::drop(ix);
                if !wait {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let t = Instant::now();
            let res = super::trace::time("packs: drop dead rows part", || {
                ix.drop_dead(left, super::TX_BUDGET)
            });
            std::mem::drop(guard);
            *lock_seconds = lock_seconds.max(t.elapsed().as_secs_f64());
            let (n, part) = res?;
            all.deleted_rows += part.deleted_rows;
            all.dropped.extend(part.dropped);
            all.kept.extend(part.kept);
            left = &left[n..];
            if !left.is_empty() {
                std::thread::sleep(super::YIELD);
            }
        }
        Ok(all)
    }
}
