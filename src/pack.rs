//! Packs: append-only files of chunk records (format in store-layout.md),
//! and the seam between the store and where packs live.
//!
//! ```text
//! pack   := "DCPACK01" record*
//! record := kind[4] id[32] raw_len:u32le stored_len:u32le codec:u8 pad[3] payload[stored_len]
//! kind   := "DCCH" (a chunk) | "DCMF" (a manifest record, see `manifest.rs`)
//! ```
//! `id` is the BLAKE3 of the decoded payload for both kinds.
//! Invariants:
//! - A pack is written by one process, only appended to, and never reopened
//!   for writing: a crashed writer leaves at worst a torn tail that no index
//!   row points at.
//! - The index points at a record only after the record's bytes were fsynced.
//! - Each record carries its chunk id, so a pack can be checked (and the index
//!   rebuilt) without the index.
//!
//! Where packs live is a [`PackStore`] (rustic's `ReadBackend` and
//! `WriteBackend`, tvix's `BlobService`): [`LocalPackStore`] keeps them as
//! files under `packs/`; a remote store (objects in a bucket) is another
//! implementation, and `tests/inproc` holds the conformance suite every
//! implementation runs. The store core reaches packs only through it.
//!
//! - `format`: names, record headers, decoding (pure; no I/O);
//! - `compress`: how a writer compresses chunks;
//! - `local`: [`LocalPackStore`] and its [`PackWriter`];
//! - `open_packs`: the local store's bounded cache of open pack files;
//! - `scan`: walking a pack's records without the index.

use std::sync::Arc;

use crate::error::Result;

mod compress;
mod format;
mod local;
mod open_packs;
mod scan;

pub use compress::{encode_with_id, new_compressor, ChunkCompressor, Compression, EncodedChunk};
pub use format::{
    check, decode, Codec, Decoder, Location, PackName, RecordHead, RecordKind, MANIFEST_MAGIC,
    PACK_MAGIC, PACK_TARGET_SIZE, RECORD_HEADER_LEN, RECORD_MAGIC,
};
pub use local::{sync_dir, LocalPackStore, PackWriter};
pub use scan::{check_record, scan, ScanStop, ScannedRecord};

/// A pack as [`PackStore::list`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackInfo {
    pub name: PackName,
    /// Bytes, header and any torn tail included.
    pub size: u64,
}

/// Where packs live.
///
/// The shape is what both a directory of files and an object store can do
/// well: packs are written by one [`PackSink`] each (appends, then a seal;
/// an object store uploads on `sync`/`seal`), read by byte ranges, listed
/// with their sizes, and deleted whole. Nothing here knows the index: the
/// store core decides which pack a chunk is in, and looks a location up
/// again when a read says its pack is gone.
///
/// Errors: a pack that is not there fails with [`crate::Error::errno`]
/// ENOENT (the caller then looks the chunk's location up again, once); a
/// read past a pack's end fails with another errno (EIO). Methods take
/// `&self` and may be called from many threads at once.
pub trait PackStore: Send + Sync {
    /// Start a new, empty pack (its header written) for this process to
    /// append records to. It is listed once it exists, but no other
    /// process deletes it while the sink lives ([`PackStore::delete_if_idle`]).
    fn create(&self) -> Result<Box<dyn PackSink>>;

    /// Fill `buf` with the bytes of `pack` at `offset`: all of them, or an
    /// error. Never waits on another reader.
    fn read_at(&self, pack: PackName, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Hint that `len` bytes of `pack` at `offset` will be read soon: start
    /// fetching them without waiting. Best effort, errors ignored.
    fn prefetch(&self, pack: PackName, offset: u64, len: u64);

    /// Open `pack` for reading. The handle reads it for as long as it is
    /// held, even after the pack is deleted (gc rewrote or dropped it), as
    /// an open file does on POSIX: a reader holding one never loses the
    /// bytes it started on. ENOENT when the pack is gone already.
    fn open(&self, pack: PackName) -> Result<Arc<dyn PackHandle>>;

    /// Every pack with its size, in name order. A store with no packs yet
    /// (no packs directory) lists none.
    fn list(&self) -> Result<Vec<PackInfo>>;

    /// The size of `pack` in bytes.
    fn size(&self, pack: PackName) -> Result<u64>;

    /// Delete `pack` (gc, a failed write's pack); one already gone is not an
    /// error. Later reads of it fail with ENOENT, once any read already
    /// under way is done.
    fn delete(&self, pack: PackName) -> Result<()>;

    /// Cut `pack` back to its first `len` bytes, durably, if it is longer:
    /// a retired pack's tail that no index row points at. An
    /// implementation that cannot cut an object may rewrite it or leave
    /// the tail for gc (return `Ok`).
    fn truncate(&self, pack: PackName, len: u64) -> Result<()>;

    /// Delete `pack` unless a writer (of any process) may still append to
    /// it: the sweep of packs a killed writer left behind. Returns the
    /// bytes freed, or None when it is busy or already gone.
    fn delete_if_idle(&self, pack: PackName) -> Result<Option<u64>>;

    /// Whether a writer (of any process) may still append to `pack`: gc
    /// leaves such a pack alone. An implementation that cannot tell says
    /// true (gc then never rewrites its packs).
    fn writer_holds(&self, _pack: PackName) -> Result<bool> {
        Ok(true)
    }

    /// Where `pack` is, for messages: a path, a URL.
    fn describe(&self, pack: PackName) -> String;

    /// Packs this store holds open (bounded), for tests and diagnostics.
    fn open_count(&self) -> usize {
        0
    }

    /// Drop what a cache holds of `len` bytes of `pack` at `offset` (a
    /// chunk read from it did not match its id): true when there was a
    /// cached copy, so that reading again fetches the bytes anew. Packs
    /// read from where they live have no copy to drop.
    fn forget_cached(&self, _pack: PackName, _offset: u64, _len: u64) -> bool {
        false
    }

    /// Delete this host's own copies of packs in `published` (the remote
    /// holds them: reads then fetch from it), least recently written
    /// first, while what the host keeps of packs is over its cache size;
    /// returns the bytes freed. A store without a remote keeps every pack.
    fn trim_published(&self, _published: &std::collections::HashSet<PackName>) -> Result<u64> {
        Ok(0)
    }

    /// The payload of the record at `loc`, as stored (not decoded).
    fn read_payload(&self, loc: &Location) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.stored_len as usize];
        self.read_at(loc.pack, loc.offset, &mut buf)?;
        Ok(buf)
    }
}

/// A pack open for reading ([`PackStore::open`]).
pub trait PackHandle: Send + Sync {
    /// Fill `buf` with the pack's bytes at `offset`: all of them, or an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Hint that `len` bytes at `offset` will be read soon. Best effort.
    fn prefetch(&self, offset: u64, len: u64);
}

/// A pack being written by this process: records appended in order, made
/// durable by `sync`, then sealed. Nothing may point at a record (an index
/// row) before a `sync` that returned after it was appended.
pub trait PackSink: Send {
    fn name(&self) -> PackName;

    /// Bytes in the pack so far, header included: the store seals a pack
    /// once this passes [`PACK_TARGET_SIZE`].
    fn len(&self) -> u64;

    /// Whether no record was appended yet.
    fn is_empty(&self) -> bool {
        self.len() <= PACK_MAGIC.len() as u64
    }

    /// Append one record (`head` and its stored `payload`, compressed or
    /// not, as `head.codec` says); returns where its payload is. gc copies
    /// a record verbatim by appending the head and payload it read. After
    /// an error the pack takes no more appends (the store retires it).
    fn append(&mut self, head: &RecordHead, payload: &[u8]) -> Result<Location>;

    /// Make every record appended so far durable.
    fn sync(&mut self) -> Result<()>;

    /// Make the pack durable and complete: no more appends, and other
    /// processes may now treat it as finished.
    fn seal(self: Box<Self>) -> Result<()>;
}
