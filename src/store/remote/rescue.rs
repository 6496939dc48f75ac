//! What a publisher does about the remote's gc (store-layout.md, "gc of a
//! remote"): before a commit names a remote pack, it looks at the marks
//! and at which packs exist (a [`View`]); a chunk in a marked or vanished
//! pack is copied into a new pack of this host's (a rescue) so that the
//! commit never names a pack a sweep may delete. A commit is written
//! within half the grace period of the view it was checked against, or
//! checked again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::Move;
use crate::lock::GcGuard;
use crate::pack::{self, Location, PackName, PackSink, RecordHead, RecordKind, PACK_TARGET_SIZE};
use crate::remote::gc::{self as remote_gc, Mark};
use crate::remote::Bucket;
use crate::store::Store;

/// What the remote held when a publisher looked: the packs its marks name,
/// and the packs that exist.
pub(super) struct View {
    pub taken: Instant,
    pub marked: HashSet<PackName>,
    pub existing: HashSet<PackName>,
    pub grace: Duration,
}

impl View {
    /// Marks first, then packs: a pack missing from the listing that no
    /// mark named was swept by a mark that is gone.
    pub fn take(bucket: &dyn Bucket) -> Result<View> {
        let taken = Instant::now();
        let grace = remote_gc::grace(bucket)?;
        let marked = marked_packs(bucket)?;
        let existing = bucket
            .list("packs/")?
            .iter()
            .filter_map(|o| pack_of_key(&o.key))
            .collect();
        Ok(View {
            taken,
            marked,
            existing,
            grace,
        })
    }

    /// Whether a commit checked against this view may still be written:
    /// within half the grace period of it.
    pub fn fresh(&self) -> bool {
        self.taken.elapsed() < self.grace / 2
    }

    /// Whether a commit may name `p`, a pack the remote holds.
    pub fn safe(&self, p: PackName) -> bool {
        !self.marked.contains(&p) && self.existing.contains(&p)
    }
}

/// The pack a `packs/<name>.pack` key names.
pub(super) fn pack_of_key(key: &str) -> Option<PackName> {
    PackName::parse(key.strip_prefix("packs/")?.strip_suffix(".pack")?)
}

/// Every pack the remote's marks name. A mark that cannot be read is an
/// error: a publisher that cannot tell what gc will delete does not commit.
pub(super) fn marked_packs(bucket: &dyn Bucket) -> Result<HashSet<PackName>> {
    marks_read(bucket, &mut |e| Err(e))
}

/// [`marked_packs`], for a pull: a mark that cannot be read is one line of
/// `problems` (the pull only forgets rows by the marks; publishing and gc
/// refuse it).
pub(super) fn marked_packs_or_say(
    bucket: &dyn Bucket,
    problems: &mut Vec<String>,
) -> Result<HashSet<PackName>> {
    marks_read(bucket, &mut |e| {
        problems.push(format!("gc mark not read: {e}"));
        Ok(())
    })
}

fn marks_read(
    bucket: &dyn Bucket,
    unreadable: &mut dyn FnMut(Error) -> Result<()>,
) -> Result<HashSet<PackName>> {
    let mut out = HashSet::new();
    for o in bucket.list(remote_gc::MARKS_PREFIX)? {
        match remote_gc::read::<Mark>(bucket, &o.key) {
            Ok(Some(m)) => out.extend(m.packs.iter().filter_map(|p| PackName::parse(p))),
            // Swept and deleted since the listing: its packs are gone,
            // which the listing of packs shows.
            Ok(None) => {}
            Err(e @ Error::Usage(_)) => unreadable(e)?,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Store {
    /// Copy `chunks` (located in packs the remote's gc marked or deleted)
    /// into a new pack of this host's, repoint their rows, and return their
    /// new locations. A chunk whose bytes this host cannot read any more
    /// (the pack was swept, and this host kept no copy) is an error naming
    /// the artifact: its version cannot be published; remove it and put it
    /// again from its source.
    pub(super) fn rescue(
        &self,
        artifact: &str,
        chunks: &[(ChunkId, Location)],
    ) -> Result<HashMap<ChunkId, Location>> {
        let packs = &self.core.packs;
        let mut sinks: Vec<Box<dyn PackSink>> = Vec::new();
        let mut moves = Vec::with_capacity(chunks.len());
        let mut ids: HashMap<PackName, i64> = HashMap::new();
        for (id, loc) in chunks {
            let payload = packs
                .read_payload(loc)
                .and_then(|p| {
                    // Checked before it is copied: a rescue never spreads
                    // damaged bytes.
                    pack::decode(id, loc, p.clone())
                        .map(|_| p)
                        .map_err(|why| Error::CorruptPackRecord {
                            chunk: *id,
                            pack: packs.describe(loc.pack),
                            why,
                        })
                })
                .map_err(|e| {
                    Error::Usage(format!(
                        "{artifact}: its chunk {id} was in pack {}, which the remote's gc deleted while this host's write waited ({e}): remove the artifact (`deploycache rm {artifact}`) and put it again from its source",
                        loc.pack
                    ))
                })?;
            if sinks.last().is_none_or(|s| s.len() >= PACK_TARGET_SIZE) {
                let _shared = GcGuard::writer(&self.core.root)?;
                sinks.push(packs.create()?);
            }
            let sink = sinks.last_mut().expect("a sink was just made");
            let to = sink.append(
                &RecordHead {
                    kind: RecordKind::Chunk,
                    id: *id,
                    raw_len: loc.raw_len,
                    codec: loc.codec,
                },
                &payload,
            )?;
            let from_pack = match ids.get(&loc.pack) {
                Some(i) => *i,
                None => {
                    let Some(i) = self.index().pack_id(loc.pack)? else {
                        continue; // no row any more: nothing to repoint
                    };
                    ids.insert(loc.pack, i);
                    i
                }
            };
            moves.push(Move {
                id: *id,
                from_pack,
                from_offset: loc.offset,
                to,
            });
        }
        for s in sinks {
            s.seal()?;
        }
        let mut left = &moves[..];
        while !left.is_empty() {
            let (n, _) = self.index().repoint(left, crate::store::gc::TX_BUDGET)?;
            left = &left[n.max(1)..];
        }
        Ok(moves.into_iter().map(|m| (m.id, m.to)).collect())
    }
}
