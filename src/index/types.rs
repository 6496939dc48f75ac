//! The rows the index hands out and takes in.

use crate::id::{ChunkId, FileHash};
use crate::pack::Location;

#[derive(Clone, Debug)]
pub struct ArtifactSummary {
    pub name: String,
    pub files: u64,
    pub logical_bytes: u64,
    /// Distinct chunk bytes (uncompressed) only this artifact holds.
    pub unique_bytes: u64,
    /// Distinct chunk bytes (uncompressed) it holds that another artifact
    /// holds too (see [`ArtifactBytes`](super::ArtifactBytes)).
    pub shared_bytes: u64,
    /// The same as stored in packs (compressed, without record headers).
    pub unique_stored_bytes: u64,
    pub shared_stored_bytes: u64,
    pub created: i64,
    pub last_access: i64,
    /// Names of files that were cut short and not written whole since
    /// (see [`Index::missing_files`](super::Index::missing_files)):
    /// non-empty means the artifact is incomplete.
    pub missing: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
}

#[derive(Clone, Debug)]
pub struct FileRow {
    pub id: i64,
    pub meta: FileMeta,
    pub hash: FileHash,
    pub form: Form,
}

/// How a file is stored (store-layout.md, "Gzip files (format 4)").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Form {
    /// Its chunks are its bytes (form 0).
    #[serde(rename = "as-is")]
    AsIs,
    /// The gzip form (form 1): inflated content plus side data, rebuilt
    /// on read.
    #[serde(rename = "gzip")]
    Gzip,
    /// The gzip form with its hot copy kept: its gzip bytes' chunks too.
    #[serde(rename = "gzip+hot")]
    GzipHot,
}

impl Form {
    /// As `ls` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::AsIs => "as-is",
            Form::Gzip => "gzip",
            Form::GzipHot => "gzip+hot",
        }
    }
}

/// One entry of a file's chunk list, with where the chunk lives.
#[derive(Clone, Copy, Debug)]
pub struct ChunkSpan {
    pub id: ChunkId,
    /// Offset of the chunk's first byte in the file.
    pub offset: u64,
    pub loc: Location,
}

/// A file ready to be committed: its chunk list, plus locations of chunks
/// this writer stored (which may not have index rows yet).
pub(crate) struct NewFile {
    pub meta: FileMeta,
    pub hash: FileHash,
    pub chunks: Vec<(ChunkId, u32)>,
    pub new_chunks: Vec<(ChunkId, Location)>,
}

#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub artifacts: u64,
    pub files: u64,
    pub chunks: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub compressed_bytes: u64,
    pub unreferenced_chunks: u64,
    pub unreferenced_bytes: u64,
    pub quarantined_files: u64,
    pub quarantined_bytes: u64,
}

/// What `remove_quarantined` dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Quarantined files dropped, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Artifacts dropped whole, being incomplete without those files.
    pub incomplete: Vec<String>,
}

/// A file kept aside because its content was incomplete for its type.
#[derive(Clone, Debug)]
pub struct QuarantineEntry {
    pub artifact: String,
    pub file: FileRow,
    pub reason: String,
    pub at: i64,
}

/// What identifies an unchanged source file for the files cache.
#[derive(Clone, Debug)]
pub(crate) struct SourceKey {
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}
