//! Content addresses. The store computes them; callers never pass one in.

use std::fmt;
use std::str::FromStr;

/// BLAKE3 of a chunk's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub(crate) [u8; 32]);

/// A file's digest: BLAKE3 (in derive-key mode, so it can never collide
/// with a chunk id) over its chunk list, `raw_len: u32le || chunk id` per
/// chunk. Chunk ids are BLAKE3 of the chunk bytes, so this commits to every
/// byte of the file like a content hash would, and costs 36 bytes of
/// hashing per chunk instead of a second pass over the data.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHash(pub(crate) [u8; 32]);

/// The BLAKE3 derive-key context of [`FileHash`]: part of the store format.
const FILE_DIGEST_CONTEXT: &str = "deploycache 2026-11-25 file digest v1";

impl ChunkId {
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub(crate) fn from_slice(b: &[u8]) -> Option<Self> {
        Some(ChunkId(b.try_into().ok()?))
    }
}

impl FileHash {
    pub fn of_chunks(
        chunks: impl IntoIterator<Item = impl std::borrow::Borrow<(ChunkId, u32)>>,
    ) -> Self {
        let mut h = blake3::Hasher::new_derive_key(FILE_DIGEST_CONTEXT);
        for c in chunks {
            let (id, len) = c.borrow();
            h.update(&len.to_le_bytes());
            h.update(id.as_bytes());
        }
        FileHash(*h.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub(crate) fn from_slice(b: &[u8]) -> Option<Self> {
        Some(FileHash(b.try_into().ok()?))
    }
}

macro_rules! hex_id {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self)
            }
        }
        impl FromStr for $t {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut b = [0u8; 32];
                hex::decode_to_slice(s, &mut b)?;
                Ok($t(b))
            }
        }
    };
}
hex_id!(ChunkId);
hex_id!(FileHash);
