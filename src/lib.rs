//! deploycache: a content-addressed, deduplicating artifact store with a FUSE view.
//!
//! The path of a byte, from `scp` into the store and back out:
//! 1. `scp` writes into `<mount>/<sha>/file`; the FUSE view ([`fuse`]) hands the
//!    bytes to a [`store::FileWriter`] as they arrive (or `put` reads a file),
//!    and checks a tar or gzip stream (by name, else by its first bytes)
//!    for completeness as it streams.
//! 2. [`chunker`] cuts the stream at content-defined points (FastCDC, ~64 KiB).
//! 3. Each chunk is named by its BLAKE3 ([`id::ChunkId`]); chunks the index
//!    already holds are only referenced, new ones are zstd-compressed where
//!    that pays and appended to a pack file of this process ([`pack`]; one
//!    per file being written at the same time).
//! 4. When the file is closed, the pack is fsynced, then one SQLite
//!    transaction ([`index`]) records the file, its chunk list, its digest
//!    (BLAKE3 over the chunk list) and the chunk reference counts: the file
//!    appears whole or not at all (or, cut short, only in quarantine). Inside
//!    it, before it commits, the change is appended to a pack as a
//!    [`manifest`] record and fsynced: the packs alone can rebuild the index.
//! 5. A read looks the file's chunk list up once ([`store::Store::open_file`])
//!    and checks it against the digest, then reads each needed record from its
//!    pack, decompresses it and checks its BLAKE3 before a byte is returned; a
//!    mismatch is an error, never data.
//!
//! `store-layout.md` is the on-disk contract.

pub mod check;
pub mod chunker;
pub mod error;
pub mod fuse;
pub mod gzip;
pub mod id;
pub mod import;
pub mod index;
pub(crate) mod lock;
pub mod manifest;
pub mod name;
pub mod pack;
pub mod perms;
pub mod progress;
pub mod remote;
pub mod store;
pub mod verify;

/// The legacy deploy-cache fingerprints: a crate of their own
/// (`crates/fingerprint`), as they share nothing with the store.
pub use deploycache_fingerprint as fingerprint;
pub use error::{Error, Result};
pub use store::{OpenOptions, Store};
