//! Manifest records: every committed change to the artifacts, written into
//! packs ("DCMF" records) so that the index can be rebuilt from the packs
//! alone (store-layout.md, "Manifest records").
//!
//! Invariants:
//! - A change's record is appended and fsynced inside the index transaction
//!   that commits the change (after the change was applied to the
//!   transaction, so a change the index refuses never gets a record), and
//!   before that transaction commits: bytes before pointers, as for chunks.
//! - `seq` is allocated inside that `BEGIN IMMEDIATE` transaction from
//!   `meta.journal_seq`, so the order of `seq` is the order of commits, across
//!   every process of the host.
//! - Replaying the records in `seq` order through the same code that applied
//!   them (`index::apply_change`) yields the index's artifact state; the
//!   replay starts at the newest complete checkpoint (`Change::Checkpoint`,
//!   written by gc: `index/checkpoint.rs`), below which records are dead.

//!
//! This module holds what a record says (the types); `manifest/codec.rs`
//! how it is written as bytes, and `manifest/journal.rs` where it is
//! written (the pack a process appends its records to).

use crate::id::{ChunkId, FileHash};

mod codec;
mod journal;

pub use journal::Journal;

/// One file as a change records it: everything its `files` row and its
/// chunk list hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileManifest {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    /// Unix seconds of its commit (`files.committed`).
    pub committed: i64,
    pub hash: FileHash,
    /// None: visible. Otherwise why it was kept aside.
    pub quarantine: Option<String>,
    /// The chunk list in order: id and length.
    pub chunks: Vec<(ChunkId, u32)>,
}

/// A file being written through the mount, as the index records it: a
/// quarantined row with no chunks (its reason says so). Named by all it
/// holds, since its row id is not kept by a rebuild; rows alike in all of
/// it are interchangeable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRow {
    pub ns: String,
    pub artifact: String,
    pub name: String,
    pub reason: String,
    /// Unix seconds it was recorded (`files.committed`).
    pub committed: i64,
}

/// One committed change to the index's artifacts: the arguments of the
/// index method that made it. Applying it again to the state it was first
/// applied to gives the same state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// put/import/mkdir: an artifact with these files (quarantined ones
    /// included); with `replace`, an artifact of that name is dropped first,
    /// else its existence makes the change fail.
    PutArtifact {
        ns: String,
        name: String,
        created: i64,
        last_access: i64,
        replace: bool,
        files: Vec<FileManifest>,
    },
    /// A file added to an existing artifact; a visible one replaces the
    /// visible file of its name, a quarantined one is added beside it.
    PutFile {
        ns: String,
        artifact: String,
        file: FileManifest,
        /// The pending row the file replaces (it was written through the mount).
        pending: Option<PendingRow>,
    },
    /// A file began to be written through the mount: its pending row.
    BeginPending {
        row: PendingRow,
    },
    /// A file being written was renamed (within the row's namespace).
    MovePending {
        row: PendingRow,
        to_artifact: String,
        to_name: String,
    },
    /// A file being written will not be committed: its pending row is
    /// dropped, or with `lost`, kept with that reason.
    EndPending {
        row: PendingRow,
        lost: Option<String>,
    },
    RemoveArtifact {
        ns: String,
        name: String,
    },
    RemoveFile {
        ns: String,
        artifact: String,
        file: String,
    },
    RenameFile {
        ns: String,
        from: (String, String),
        to: (String, String),
    },
    RenameArtifact {
        ns: String,
        from: String,
        to: String,
    },
    SetFileMeta {
        ns: String,
        artifact: String,
        file: String,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    },
    /// `rm --quarantine [NAME]`.
    RemoveQuarantined {
        ns: String,
        artifact: Option<String>,
    },
    /// The change first written with this `seq` did not commit (its
    /// transaction failed after the record was written): it is void.
    Void,
    /// gc's checkpoint begins (format 3): the next `puts.len()` seqs each
    /// hold a `PutArtifact` of one artifact of the index, whose record has
    /// the nonce `puts[i]`; together they state every artifact, so a
    /// replay starts at the newest complete checkpoint and records with a
    /// lower seq are dead. Changes nothing when applied.
    Checkpoint {
        puts: Vec<u64>,
    },
    /// Format 4: visible file `file` of `artifact`, stored as-is with digest
    /// `hash`, is now stored in the gzip form: its inflated `content` and
    /// the `side` data that deflates it back bit for bit (store-layout.md,
    /// "Gzip files (format 4)"). Its digest and bytes are unchanged.
    ConvertFile {
        ns: String,
        artifact: String,
        file: String,
        hash: FileHash,
        content: Vec<(ChunkId, u32)>,
        side: Vec<(ChunkId, u32)>,
    },
}

/// A change with its place in the order of commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Commit order: `meta.journal_seq` of the transaction that committed it.
    pub seq: u64,
    /// Wall-clock time of writing, and a random tiebreak: of two records
    /// with one `seq` (only after a crash between a record's fsync and its
    /// commit, whose `seq` the next commit then takes again), the later one
    /// is the committed one.
    pub time_ns: i64,
    pub nonce: u64,
    pub change: Change,
}

impl Record {
    pub fn new(seq: u64, change: Change) -> Record {
        let time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Record {
            seq,
            time_ns,
            nonce: rand::random(),
            change,
        }
    }

    /// The order replay applies records in; of equal `seq`s the last wins.
    pub fn order_key(&self) -> (u64, i64, u64) {
        (self.seq, self.time_ns, self.nonce)
    }
}
