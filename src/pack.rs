//! Pack files: append-only files of chunk records (format in store-layout.md).
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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"DCPACK01";
pub const RECORD_MAGIC: &[u8; 4] = b"DCCH";
/// A manifest record: one committed change to the index (`manifest.rs`).
pub const MANIFEST_MAGIC: &[u8; 4] = b"DCMF";
pub const RECORD_HEADER_LEN: usize = 4 + 32 + 4 + 4 + 1 + 3;
/// A pack is sealed once it grows past this; see store-layout.md for why.
pub const PACK_TARGET_SIZE: u64 = 64 * 1024 * 1024;

/// Writeback of a pack being appended to is started (not waited for) each
/// time this many bytes have been appended since the last start, so that the
/// disk writes while chunks are still being made, and the fsync a commit
/// needs finds little left to write. `put` of the benchmark's raw 537 MB ext4
/// image, final sync included: 1.05 s before, 0.97 s after (4 alternating
/// runs). RocksDB's `bytes_per_sync` does the same.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

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
    pub fn path(&self, packs_dir: &Path) -> PathBuf {
        let hex = self.to_string();
        packs_dir.join(&hex[..2]).join(format!("{hex}.pack"))
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
    /// kernels then cost a sample's zstd pass and no decode on read).
    fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let limit = data.len() - data.len() / 32;
        if limit == 0 {
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

/// Turn a record payload back into the chunk's bytes and check its BLAKE3.
pub fn decode(
    id: &ChunkId,
    loc: &Location,
    payload: Vec<u8>,
) -> std::result::Result<Vec<u8>, String> {
    let data = match loc.codec {
        Codec::Raw => payload,
        Codec::Zstd => zstd::bulk::decompress(&payload, loc.raw_len as usize)
            .map_err(|e| format!("zstd payload does not decode: {e}"))?,
    };
    if data.len() != loc.raw_len as usize {
        return Err(format!(
            "decoded to {} bytes, expected {}",
            data.len(),
            loc.raw_len
        ));
    }
    let actual = ChunkId::of(&data);
    if actual != *id {
        return Err(format!("BLAKE3 mismatch: content hashes to {actual}"));
    }
    Ok(data)
}

/// The pack a process is currently appending to.
pub struct PackWriter {
    pub name: PackName,
    path: PathBuf,
    file: File,
    len: u64,
    synced_len: u64,
    /// Writeback has been started for every byte below this.
    writeback_len: u64,
    dir_synced: bool,
}

impl PackWriter {
    pub fn create(packs_dir: &Path) -> Result<Self> {
        let name = PackName::random();
        let path = name.path(packs_dir);
        let dir = path.parent().expect("pack path has a parent");
        crate::perms::create_dir(packs_dir)?;
        crate::perms::create_dir(dir)?;
        let mut file =
            crate::perms::open_file(OpenOptions::new().write(true).create_new(true), &path)?;
        // Held while this process may still append: the orphan sweep
        // (`Store::sweep_orphan_packs`) and gc never delete a pack they
        // cannot lock (store-layout.md, "How gc reclaims space"). Nobody
        // can sweep between the create and this lock: a writer creates
        // packs only while it holds gc.lock shared, and a sweep needs it
        // exclusively.
        file.lock().at(&path)?;
        file.write_all(PACK_MAGIC).at(&path)?;
        Ok(PackWriter {
            name,
            path,
            file,
            len: PACK_MAGIC.len() as u64,
            synced_len: 0,
            writeback_len: 0,
            dir_synced: false,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= PACK_MAGIC.len() as u64
    }

    /// Append one chunk record (`raw` is the chunk's bytes); returns where its payload is.
    pub fn append(&mut self, chunk: &EncodedChunk, raw: &[u8]) -> Result<Location> {
        self.append_record(RECORD_MAGIC, chunk, raw)
    }

    /// Append one record of kind `magic` ([`RECORD_MAGIC`] or
    /// [`MANIFEST_MAGIC`]); returns where its payload is.
    pub fn append_record(
        &mut self,
        magic: &[u8; 4],
        chunk: &EncodedChunk,
        raw: &[u8],
    ) -> Result<Location> {
        let payload = chunk.compressed.as_deref().unwrap_or(raw);
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[..4].copy_from_slice(magic);
        header[4..36].copy_from_slice(chunk.id.as_bytes());
        header[36..40].copy_from_slice(&chunk.raw_len.to_le_bytes());
        header[40..44].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[44] = chunk.codec() as u8;
        let res = write_all_pair(&mut self.file, &header, payload);
        if let Err(e) = res {
            // A partial record may be on disk; nothing will point at it, but
            // later appends must not land after garbage of unknown length.
            let _ = self.file.set_len(self.len);
            return Err(Error::io(&self.path, e));
        }
        let offset = self.len + RECORD_HEADER_LEN as u64;
        self.len = offset + payload.len() as u64;
        if self.len - self.writeback_len >= WRITEBACK_STEP {
            start_writeback(
                &self.file,
                self.writeback_len,
                self.len - self.writeback_len,
            );
            self.writeback_len = self.len;
        }
        Ok(Location {
            pack: self.name,
            offset,
            stored_len: payload.len() as u32,
            raw_len: chunk.raw_len,
            codec: chunk.codec(),
        })
    }

    /// Make everything appended so far durable (file data and its directory entry).
    pub fn sync(&mut self) -> Result<()> {
        if self.synced_len == self.len {
            return Ok(());
        }
        self.file.sync_data().at(&self.path)?;
        if !self.dir_synced {
            let dir = self.path.parent().expect("pack path has a parent");
            sync_dir(dir)?;
            self.dir_synced = true;
        }
        self.synced_len = self.len;
        Ok(())
    }
}

/// Ask the kernel to start writing `len` bytes at `offset` to disk, without
/// waiting. Only a hint: durability still comes from `sync`, which reports
/// any error, so this one's result is ignored.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes no pointers; the descriptor is borrowed
    // from a `File` that outlives the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Write `a` then `b` with as few syscalls as the kernel allows (one writev).
fn write_all_pair(file: &mut File, a: &[u8], b: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let total = a.len() + b.len();
    while done < total {
        let n = if done < a.len() {
            file.write_vectored(&[io::IoSlice::new(&a[done..]), io::IoSlice::new(b)])
        } else {
            file.write(&b[done - a.len()..])
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Read a record payload at a known location.
pub fn read_payload(file: &File, path: &Path, loc: &Location) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; loc.stored_len as usize];
    file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "pack is shorter than the index says (record at {})",
                        loc.offset
                    ),
                ),
            )
        } else {
            Error::io(path, e)
        }
    })?;
    Ok(buf)
}

/// Read one record's payload, decode it and check it against its id;
/// returns the decoded bytes, or what is wrong.
pub fn check_record(
    file: &File,
    path: &Path,
    rec: &ScannedRecord,
) -> std::result::Result<Vec<u8>, String> {
    let payload = read_payload(file, path, &rec.loc).map_err(|e| e.to_string())?;
    decode(&rec.id, &rec.loc, payload)
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// "DCCH": a chunk.
    Chunk,
    /// "DCMF": a manifest record (`manifest.rs`).
    Manifest,
}

/// One record found by scanning a pack.
pub struct ScannedRecord {
    pub kind: RecordKind,
    pub id: ChunkId,
    pub loc: Location,
}

/// Where a scan of a pack stopped before its end, and why.
#[derive(Clone, Debug)]
pub struct ScanStop {
    /// Offset of the first byte not part of a well-formed record.
    pub at: u64,
    pub why: String,
}

/// Walk a pack's records in order (verify, index rebuild), checking each
/// header: record magic, codec, lengths within the pack. Stops at the first
/// torn or unrecognised record and says where; records after it cannot be
/// found without the index.
pub fn scan(path: &Path, name: PackName) -> Result<(Vec<ScannedRecord>, Option<ScanStop>)> {
    let file = File::open(path).at(path)?;
    let size = file.metadata().at(path)?.len();
    let mut magic = [0u8; 8];
    if file.read_exact_at(&mut magic, 0).is_err() || &magic != PACK_MAGIC {
        let why = "missing pack header (\"DCPACK01\")".to_owned();
        return Ok((Vec::new(), Some(ScanStop { at: 0, why })));
    }
    let mut pos = 8u64;
    let mut out = Vec::new();
    while pos < size {
        let mut h = [0u8; RECORD_HEADER_LEN];
        let stop = |why: String| Some(ScanStop { at: pos, why });
        if pos + RECORD_HEADER_LEN as u64 > size || file.read_exact_at(&mut h, pos).is_err() {
            return Ok((out, stop(format!("torn record header at {pos}"))));
        }
        let kind = match &h[..4] {
            m if m == RECORD_MAGIC => RecordKind::Chunk,
            m if m == MANIFEST_MAGIC => RecordKind::Manifest,
            _ => return Ok((out, stop(format!("bad record magic at {pos}")))),
        };
        let id = ChunkId::from_slice(&h[4..36]).expect("32 bytes");
        let raw_len = u32::from_le_bytes(h[36..40].try_into().expect("4 bytes"));
        let stored_len = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
        let Some(codec) = Codec::from_u8(h[44]) else {
            return Ok((out, stop(format!("unknown codec {} at {pos}", h[44]))));
        };
        let offset = pos + RECORD_HEADER_LEN as u64;
        if offset + stored_len as u64 > size {
            return Ok((out, stop(format!("torn record payload at {pos}"))));
        }
        out.push(ScannedRecord {
            kind,
            id,
            loc: Location {
                pack: name,
                offset,
                stored_len,
                raw_len,
                codec,
            },
        });
        pos = offset + stored_len as u64;
    }
    Ok((out, None))
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
}
