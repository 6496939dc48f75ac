//! How chunks are compressed before they are appended: a writer's choice,
//! not part of the format (each record names its codec).

use super::format::{Codec, RecordHead, RecordKind, MAX_ZSTD_RAW_LEN};
use crate::id::ChunkId;

/// How a writer compresses the chunks it stores. Each record names its
/// own codec, so this is a writer's choice, not part of the store format:
/// one store can hold chunks written under every setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd level 1 where it saves ≥ 1/32: ratio close to zstd's default
    /// level at several times its speed.
    #[default]
    Zstd,
    /// zstd's fast level -3: about 2.5x level 1's speed, about 40% more
    /// bytes on compressible data (measured on the benchmark's ext4 image).
    /// For hosts short of CPU.
    Fast,
    /// Store chunks as they are.
    None,
}

impl Compression {
    /// The settings by their names on the command line.
    const NAMES: [(&'static str, Compression); 3] = [
        ("zstd", Compression::Zstd),
        ("fast", Compression::Fast),
        ("none", Compression::None),
    ];

    fn zstd_level(self) -> Option<i32> {
        match self {
            Compression::Zstd => Some(1),
            Compression::Fast => Some(-3),
            Compression::None => None,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, _) = Self::NAMES
            .iter()
            .find(|(_, c)| c == self)
            .expect("every setting has a name");
        f.write_str(name)
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, c)| *c)
            .ok_or_else(|| format!("unknown compression {s:?}: use zstd (default), fast or none"))
    }
}

/// A chunk ready to be appended: id computed, compressed where that pays.
pub struct EncodedChunk {
    pub id: ChunkId,
    pub raw_len: u32,
    /// The zstd frame, or None to store the chunk's bytes as they are.
    pub compressed: Option<Vec<u8>>,
}

impl EncodedChunk {
    pub fn codec(&self) -> Codec {
        if self.compressed.is_some() {
            Codec::Zstd
        } else {
            Codec::Raw
        }
    }

    /// The header of this chunk's record of kind `kind`.
    pub fn head(&self, kind: RecordKind) -> RecordHead {
        RecordHead {
            kind,
            id: self.id,
            raw_len: self.raw_len,
            codec: self.codec(),
        }
    }

    /// The payload to store: the zstd frame, or `raw` (the chunk's bytes).
    pub fn payload<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        self.compressed.as_deref().unwrap_or(raw)
    }
}

/// Compress one chunk where that pays. Pure CPU; callers run it in parallel.
pub fn encode_with_id(
    id: ChunkId,
    data: &[u8],
    compressor: Option<&mut ChunkCompressor>,
) -> EncodedChunk {
    EncodedChunk {
        id,
        raw_len: data.len() as u32,
        compressed: compressor.and_then(|c| c.compress(data)),
    }
}

/// A worker's zstd context, and how its recent chunks compressed.
pub struct ChunkCompressor {
    zstd: zstd::bulk::Compressor<'static>,
    /// Chunks in a row that compressed: after [`TRUSTED_STREAK`] of them
    /// (a raw disk image), the sample pass is skipped until one does not.
    streak: u32,
}

/// See [`ChunkCompressor::streak`].
const TRUSTED_STREAK: u32 = 8;

impl ChunkCompressor {
    /// The compressed form when it saves at least 1/32 (squashfs, gzip and
    /// kernels then cost a sample's zstd pass and no decode on read). Never
    /// for more than [`MAX_ZSTD_RAW_LEN`] bytes, which readers would refuse
    /// as a damaged header (no chunk is that large).
    fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let limit = data.len() - data.len() / 32;
        if limit == 0 || data.len() > MAX_ZSTD_RAW_LEN {
            return None;
        }
        if self.streak < TRUSTED_STREAK && !looks_compressible(data, &mut self.zstd) {
            self.streak = 0;
            return None;
        }
        let mut out = Vec::with_capacity(limit);
        match self.zstd.compress_to_buffer(data, &mut out) {
            Ok(n) if n < limit => {
                self.streak = self.streak.saturating_add(1);
                Some(out)
            }
            _ => {
                self.streak = 0;
                None
            }
        }
    }
}

/// Compress a 4 KiB sample from the middle of a chunk first: already
/// compressed data (squashfs, gzip, kernels) then costs 1/16 of a zstd pass
/// at the average chunk size.
fn looks_compressible(data: &[u8], compressor: &mut zstd::bulk::Compressor<'static>) -> bool {
    const SAMPLE: usize = 4 * 1024;
    if data.len() < 4 * SAMPLE {
        return true;
    }
    let mid = data.len() / 2;
    let sample = &data[mid - SAMPLE / 2..mid + SAMPLE / 2];
    let mut out = Vec::with_capacity(SAMPLE);
    matches!(compressor.compress_to_buffer(sample, &mut out), Ok(n) if n < SAMPLE - SAMPLE / 32)
}

/// A compressor for `compression`, or None to store chunks as they are
/// (also when zstd cannot allocate its context).
pub fn new_compressor(compression: Compression) -> Option<ChunkCompressor> {
    Some(ChunkCompressor {
        zstd: zstd::bulk::Compressor::new(compression.zstd_level()?).ok()?,
        streak: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"abcdefgh packages\n"[i % 18]).collect()
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Whatever the streak, a chunk is kept compressed only when that
    /// saves space; a long streak of compressible chunks skips the sample,
    /// so a chunk whose middle alone is noise then compresses too.
    #[test]
    fn compression_pays_or_is_skipped_whatever_the_streak() {
        let mut c = new_compressor(Compression::Zstd).unwrap();
        let mut mixed = text(64 * 1024);
        mixed[30 * 1024..34 * 1024].copy_from_slice(&noise(4 * 1024, 5));
        assert!(c.compress(&mixed).is_none(), "the sample sees only noise");
        for _ in 0..TRUSTED_STREAK {
            assert!(c.compress(&text(64 * 1024)).is_some());
        }
        assert!(
            c.compress(&mixed).is_some(),
            "a trusted stream skips the sample"
        );
        assert!(c.compress(&noise(64 * 1024, 9)).is_none());
        assert!(c.compress(&mixed).is_none(), "noise resets the streak");
        assert!(new_compressor(Compression::None).is_none());
        let fast = new_compressor(Compression::Fast)
            .unwrap()
            .compress(&text(64 * 1024));
        let zstd = c.compress(&text(64 * 1024));
        assert!(fast.is_some() && zstd.is_some());
    }

    /// A writer compresses nothing a reader would refuse: the largest
    /// chunk compresses and decodes, one byte more is stored raw.
    #[test]
    fn nothing_over_the_largest_chunk_is_compressed() {
        use crate::pack::{decode, Location, PackName};
        let mut c = new_compressor(Compression::Zstd).unwrap();
        let max = text(MAX_ZSTD_RAW_LEN);
        let id = ChunkId::of(&max);
        let enc = encode_with_id(id, &max, Some(&mut c));
        let frame = enc.compressed.clone().expect("text compresses");
        let loc = Location {
            pack: PackName(1),
            offset: 48,
            stored_len: frame.len() as u32,
            raw_len: enc.raw_len,
            codec: enc.codec(),
        };
        assert_eq!(decode(&id, &loc, frame).unwrap(), max);
        let over = text(MAX_ZSTD_RAW_LEN + 1);
        let enc = encode_with_id(ChunkId::of(&over), &over, Some(&mut c));
        assert_eq!(enc.codec(), Codec::Raw);
    }
}
