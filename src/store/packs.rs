//! The store's side of its [`PackStore`]: reading a chunk where the index
//! says it is, where the index says it is now when its pack went away, and
//! again from the remote when a cached copy of it is damaged.

use super::StoreCore;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::pack::{self, Location};

impl StoreCore {
    /// Read, decode and check chunk `id`, stored at `loc` when its location
    /// was looked up. A pack that is gone (gc moved the chunk on) is looked
    /// up in the index again, once; failing that, or on any other failure,
    /// the error is `corrupt(why)`. `payload_at` reads a record's stored
    /// payload (through the reader's held pack handles).
    pub(super) fn read_checked(
        &self,
        id: &ChunkId,
        loc: Location,
        payload_at: impl Fn(&Location) -> Result<Vec<u8>>,
        corrupt: impl Fn(String) -> Error,
    ) -> Result<Vec<u8>> {
        let unreadable = |e: Error| corrupt(format!("pack unreadable: {e}"));
        let (loc, payload) = match payload_at(&loc) {
            Ok(p) => (loc, p),
            Err(e) if e.errno() == libc::ENOENT => {
                let moved = self
                    .index()
                    .chunk_location(id)?
                    .filter(|l| l.pack != loc.pack && l.raw_len == loc.raw_len);
                let Some(moved) = moved else {
                    return Err(unreadable(e));
                };
                (moved, payload_at(&moved).map_err(unreadable)?)
            }
            Err(e) => return Err(unreadable(e)),
        };
        match pack::decode(id, &loc, payload) {
            Ok(bytes) => Ok(bytes),
            // A cached copy of a remote pack went bad (a crash mid-write,
            // the disk): fetched again, once, and checked again.
            Err(why)
                if self
                    .packs
                    .forget_cached(loc.pack, loc.offset, loc.stored_len as u64) =>
            {
                let payload = payload_at(&loc).map_err(unreadable)?;
                pack::decode(id, &loc, payload).map_err(|again| {
                    corrupt(format!("{why}; fetched again from the remote: {again}"))
                })
            }
            Err(why) => Err(corrupt(why)),
        }
    }
}
