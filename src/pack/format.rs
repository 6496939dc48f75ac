//! The bytes of a pack (store-layout.md): names, record headers, and the
//! one function that turns a record payload back into checked chunk bytes.
//! Pure: no I/O here, so the parsers can be fuzzed and every pack store
//! shares them.

use std::path::{Path, PathBuf};

use crate::id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"DCPACK01";
pub const RECORD_MAGIC: &[u8; 4] = b"DCCH";
/// A manifest record: one committed change to the index (`manifest.rs`).
pub const MANIFEST_MAGIC: &[u8; 4] = b"DCMF";
pub const RECORD_HEADER_LEN: usize = 4 + 32 + 4 + 4 + 1 + 3;
/// A pack is sealed once it grows past this; see store-layout.md for why.
pub const PACK_TARGET_SIZE: u64 = 64 * 1024 * 1024;
/// The most a zstd record decodes to: the largest chunk. Only chunks are
/// ever compressed (manifest records are stored raw), and no chunk is
/// larger than the chunker's maximum, so a zstd record whose header claims
/// more (`raw_len` can say up to 4 GiB) is damaged or forged: decoding
/// refuses it before allocating anything for it, and writers never
/// compress more than this in one record ([`super::compress`]).
pub const MAX_ZSTD_RAW_LEN: usize = crate::chunker::MAX_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Where a chunk's record payload lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackName,
    /// Offset of the payload (not the record header) in the pack.
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

impl Location {
    /// The bytes the record occupies in its pack, header included.
    pub fn record_range(&self) -> std::ops::Range<u64> {
        self.offset - RECORD_HEADER_LEN as u64..self.offset + self.stored_len as u64
    }
}

/// A pack's name: 128 random bits, hex. Packs live at `packs/<2 hex>/<32 hex>.pack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackName(pub u128);

impl std::fmt::Display for PackName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl PackName {
    pub fn random() -> Self {
        PackName(rand::random())
    }
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(PackName)
    }
    /// The pack's file under a local `packs` directory.
    pub fn path(&self, packs_dir: &Path) -> PathBuf {
        let hex = self.to_string();
        packs_dir.join(&hex[..2]).join(format!("{hex}.pack"))
    }
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// "DCCH": a chunk.
    Chunk,
    /// "DCMF": a manifest record (`manifest.rs`).
    Manifest,
}

impl RecordKind {
    pub fn magic(self) -> &'static [u8; 4] {
        match self {
            RecordKind::Chunk => RECORD_MAGIC,
            RecordKind::Manifest => MANIFEST_MAGIC,
        }
    }

    pub fn from_magic(m: &[u8]) -> Option<RecordKind> {
        match m {
            m if m == RECORD_MAGIC => Some(RecordKind::Chunk),
            m if m == MANIFEST_MAGIC => Some(RecordKind::Manifest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Chunk => "chunk",
            RecordKind::Manifest => "manifest",
        }
    }
}

/// A record's header, but for the payload's length, which is the length
/// of the payload appended with it. What gc copies from pack to pack
/// verbatim, together with the stored payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub kind: RecordKind,
    /// The BLAKE3 of the decoded payload.
    pub id: ChunkId,
    pub raw_len: u32,
    pub codec: Codec,
}

impl RecordHead {
    /// The header bytes of this record with a payload of `stored_len` bytes.
    pub fn encode(&self, stored_len: u32) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[..4].copy_from_slice(self.kind.magic());
        h[4..36].copy_from_slice(self.id.as_bytes());
        h[36..40].copy_from_slice(&self.raw_len.to_le_bytes());
        h[40..44].copy_from_slice(&stored_len.to_le_bytes());
        h[44] = self.codec as u8;
        h
    }

    /// A header read from a pack, and the length of the payload that
    /// follows it; or why these bytes are no record header.
    pub fn parse(h: &[u8; RECORD_HEADER_LEN]) -> Result<(RecordHead, u32), String> {
        let Some(kind) = RecordKind::from_magic(&h[..4]) else {
            return Err("bad record magic".into());
        };
        let id = ChunkId::from_slice(&h[4..36]).expect("32 bytes");
        let raw_len = u32::from_le_bytes(h[36..40].try_into().expect("4 bytes"));
        let stored_len = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
        let Some(codec) = Codec::from_u8(h[44]) else {
            return Err(format!("unknown codec {}", h[44]));
        };
        let head = RecordHead {
            kind,
            id,
            raw_len,
            codec,
        };
        Ok((head, stored_len))
    }
}

/// Decodes record payloads, keeping its zstd context from one to the next
/// (a sequential read decodes thousands of chunks with one).
#[derive(Default)]
pub struct Decoder {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoder {
    /// Decode `payload`, stored under `codec`, into `dst`, which must come
    /// out exactly full. Not checked against an id: see [`check`].
    pub fn decode_into(
        &mut self,
        codec: Codec,
        payload: &[u8],
        dst: &mut [u8],
    ) -> Result<(), String> {
        let want = dst.len();
        if codec == Codec::Zstd {
            zstd_len_allowed(want)?;
        }
        let got = match codec {
            Codec::Raw if payload.len() == want => {
                dst.copy_from_slice(payload);
                want
            }
            Codec::Raw => payload.len(),
            Codec::Zstd => self.unzstd(payload, dst)?,
        };
        decoded_len(got, want)
    }

    /// Decode a zstd payload into `dst` (a slice, or a `Vec`'s spare
    /// capacity, which is then not zeroed first); returns its length.
    fn unzstd<C: zstd::zstd_safe::WriteBuf + ?Sized>(
        &mut self,
        payload: &[u8],
        dst: &mut C,
    ) -> Result<usize, String> {
        let zstd = match &mut self.zstd {
            Some(z) => z,
            None => self
                .zstd
                .insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd context: {e}"))?),
        };
        zstd.decompress_to_buffer(payload, dst)
            .map_err(|e| format!("zstd payload does not decode: {e}"))
    }
}

/// Whether a zstd record may decode to `raw_len` bytes (see
/// [`MAX_ZSTD_RAW_LEN`]).
fn zstd_len_allowed(raw_len: usize) -> Result<(), String> {
    if raw_len > MAX_ZSTD_RAW_LEN {
        return Err(format!(
            "the record header says it decodes to {raw_len} bytes, more than the largest \
             chunk ({MAX_ZSTD_RAW_LEN} bytes): the header is damaged"
        ));
    }
    Ok(())
}

fn decoded_len(got: usize, want: usize) -> Result<(), String> {
    if got != want {
        return Err(format!("decoded to {got} bytes, expected {want}"));
    }
    Ok(())
}

/// Whether `data` is the chunk `id` names.
pub fn check(id: &ChunkId, data: &[u8]) -> Result<(), String> {
    let actual = ChunkId::of(data);
    if actual != *id {
        return Err(format!("BLAKE3 mismatch: content hashes to {actual}"));
    }
    Ok(())
}

/// Turn a record payload back into the chunk's bytes and check its BLAKE3.
pub fn decode(id: &ChunkId, loc: &Location, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let want = loc.raw_len as usize;
    let data = match loc.codec {
        // Served as read: no copy.
        Codec::Raw => {
            decoded_len(payload.len(), want)?;
            payload
        }
        Codec::Zstd => {
            // Before the allocation `want` asks for.
            zstd_len_allowed(want)?;
            let mut data = Vec::with_capacity(want);
            Decoder::default().unzstd(&payload, &mut data)?;
            decoded_len(data.len(), want)?;
            data
        }
    };
    check(id, &data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd_frame(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 1).unwrap()
    }

    fn zstd_loc(stored_len: usize, raw_len: u32) -> Location {
        Location {
            pack: PackName(1),
            offset: RECORD_HEADER_LEN as u64 + 8,
            stored_len: stored_len as u32,
            raw_len,
            codec: Codec::Zstd,
        }
    }

    /// A forged or damaged header claiming a zstd record decodes to more
    /// than the largest chunk is reported as damaged, before anything is
    /// allocated for it: even when the frame really decodes to that much
    /// and the id matches (a zstd bomb of zeros would otherwise fill up to
    /// 4 GiB of memory on every read of it).
    #[test]
    fn a_zstd_record_larger_than_the_largest_chunk_is_corrupt() {
        let big = vec![0u8; MAX_ZSTD_RAW_LEN + 1];
        let (id, frame) = (ChunkId::of(&big), zstd_frame(&big));
        let loc = zstd_loc(frame.len(), big.len() as u32);
        let err = decode(&id, &loc, frame.clone()).unwrap_err();
        assert!(err.contains("more than the largest chunk"), "{err}");
        let mut dst = vec![0u8; big.len()];
        let err = Decoder::default()
            .decode_into(Codec::Zstd, &frame, &mut dst)
            .unwrap_err();
        assert!(err.contains("more than the largest chunk"), "{err}");

        // The header's raw_len at its largest, over a small frame.
        let small = b"a chunk".repeat(100);
        let frame = zstd_frame(&small);
        let loc = zstd_loc(frame.len(), u32::MAX);
        let err = decode(&ChunkId::of(&small), &loc, frame).unwrap_err();
        assert!(
            err.contains(&format!("decodes to {} bytes", u32::MAX)),
            "{err}"
        );

        // At the limit, a record decodes.
        let max = vec![0u8; MAX_ZSTD_RAW_LEN];
        let (id, frame) = (ChunkId::of(&max), zstd_frame(&max));
        let loc = zstd_loc(frame.len(), max.len() as u32);
        assert_eq!(decode(&id, &loc, frame).unwrap(), max);
    }

    /// A raw record is not limited: manifest records are raw and may be
    /// larger than any chunk, and their payload is already in memory.
    #[test]
    fn a_raw_record_may_be_larger_than_a_chunk() {
        let big = vec![3u8; MAX_ZSTD_RAW_LEN * 2];
        let loc = Location {
            codec: Codec::Raw,
            ..zstd_loc(big.len(), big.len() as u32)
        };
        assert_eq!(decode(&ChunkId::of(&big), &loc, big.clone()).unwrap(), big);
    }
}
