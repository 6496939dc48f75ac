//! Content addresses. The store computes them; callers never pass one in.

use std::fmt;
use std::str::FromStr;

/// BLAKE3 of a chunk's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub(crate) [u8; 32]);

/// BLAKE3 of a whole file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHash(pub(crate) [u8; 32]);

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
