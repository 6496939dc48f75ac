//! The SQLite index: artifacts, their files, each file's ordered chunk list,
//! chunk locations and reference counts. rusqlite lives only in this module.
//!
//! Invariants (checked by `verify`):
//! - `chunks.refs` equals the number of `file_chunks` and `file_streams`
//!   rows naming the chunk.
//! - A file's `file_chunks` rows are numbered 0.. without gaps, their
//!   `offset`s are the running sum of chunk lengths, and the sum is `files.size`.
//! - Every `chunks` row points into a pack whose bytes were fsynced before the
//!   row was committed.
//! - Every change is one `BEGIN IMMEDIATE` transaction: readers see an
//!   artifact or file entirely or not at all.
//!
//! Where things are:
//! - here: opening an index, its connection settings and shared row helpers;
//! - `changes`: every change, recorded as a manifest record and applied in
//!   one transaction (`Index::change`); `migrate`: the format-1 and -2
//!   migrations;
//! - `checkpoint`: gc's checkpoint of the manifest records (one record per
//!   artifact, after which older records are dead) and where a replay
//!   starts;
//! - `artifacts`: changes to artifacts and files, pending rows, missing files;
//! - `listing`: listings and lookups of artifacts and files;
//! - `chunks`: chunk locations, packs, totals and the files cache;
//! - `consistency`: the structural checks of the invariants above;
//! - `rebuild`: rebuilding the index from the packs;
//! - `gzip`: the gzip form's rows (format 4), its change and checks;
//! - `migrate`: migrations from older formats;
//! - `recipe`: a file's recipe (how its bytes are made from chunks) and
//!   the geometry of reading it;
//! - `types`: the rows the index hands out and takes in.

mod artifacts;
mod changes;
mod checkpoint;
mod chunks;
mod compact;
mod consistency;
mod evict;
mod gzip;
mod listing;
mod migrate;
mod rebuild;
mod recipe;
mod remote;
mod types;
mod usage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result, SqliteKind};
use crate::id::{ChunkId, FileHash};
use crate::manifest::Journal;
use crate::pack::{Codec, Location, PackName};

pub use artifacts::{LOST, PENDING};
pub(crate) use changes::commits;
pub(crate) use rebuild::{replay_differences, ScannedPacks};
pub(crate) use types::{NewFile, SourceKey};
// Rows the store's public API hands out.
pub use checkpoint::{CheckpointInputs, Checkpointed};
pub use compact::{Move, PackRow, Switched};
pub use evict::Evict;
pub(crate) use gzip::NOT_GZIP;
pub use gzip::{GzipSaving, HotChunk, HotCopy};
pub use rebuild::RebuildReport;
pub use recipe::{ChunkList, GzChunks, Recipe};
pub use remote::{Applied as RemoteApplied, Unpublished};
pub use types::{
    ArtifactSummary, ChunkSpan, Dropped, FileMeta, FileRow, Form, QuarantineEntry, Totals,
};
pub use usage::{ArtifactBytes, GcArtifact, HeldChunk, Holder, Holders};

/// The on-disk format version this code reads and writes (store-layout.md).
pub const FORMAT_VERSION: u32 = 4;

const SCHEMA: &str = include_str!("index/schema.sql");

/// Attach the index path to a rusqlite error.
trait Sql<T> {
    fn sql(self, path: &Path) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self, path: &Path) -> Result<T> {
        self.map_err(|e| sql_error(path, e))
    }
}

/// SQLite errors by kind ([`SqliteKind`]): a full disk is ENOSPC and a busy
/// database EBUSY (so the view replies with those, and the message says what
/// to do); anything else is a problem of the index. The SQLite error is
/// kept whole.
fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => SqliteKind::DiskFull,
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => SqliteKind::Busy,
        _ => SqliteKind::Other,
    };
    Error::Sqlite {
        path: path.to_owned(),
        kind,
        error: Box::new(e),
    }
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
    state: IndexState,
    /// Where changes are recorded (manifest.rs); without one, changes fail.
    journal: Option<Box<dyn Journal>>,
}

/// What an index held when it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// Format [`FORMAT_VERSION`].
    Current,
    /// No `format_version`: a new index, or one emptied (every row deleted,
    /// the file truncated). [`Index::init_format`] makes it a new one.
    Empty,
    /// Format 1, whose changes have no manifest records yet:
    /// [`Index::migrate_v1`] writes them (making it format 2).
    Legacy,
    /// Format 2 or 3, without the gzip form's tables and column:
    /// [`Index::migrate_v4`] adds them.
    Old,
}

/// How long a connection waits for a lock another connection holds
/// before it gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sleep between tries while busy.
const BUSY_STEP: Duration = Duration::from_millis(10);

/// SQLite's busy handler (`attempt` counts the tries of one wait): waits
/// like `busy_timeout(BUSY_TIMEOUT)`, and after [`crate::lock::WAIT_NOTICE`]
/// says once that it waits for the index, and for whom (a write lock on
/// the WAL index, `-shm`, held by another process).
fn busy(attempt: i32) -> bool {
    let waited = BUSY_STEP * attempt.max(0) as u32;
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    if waited == crate::lock::WAIT_NOTICE {
        crate::lock::notice_index_wait();
    }
    std::thread::sleep(BUSY_STEP);
    true
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index> {
        let conn = Connection::open(path).sql(path)?;
        let mut ix = Index {
            conn,
            path: path.to_owned(),
            state: IndexState::Empty,
            journal: None,
        };
        ix.conn.busy_handler(Some(busy)).sql(path)?;
        // An empty index is left as it is (not even its schema is written)
        // until the store decides it is a new one.
        ix.state = match ix.format_version()? {
            None => return Ok(ix),
            Some(v) if v == FORMAT_VERSION.to_string() => IndexState::Current,
            Some(v) if v == "1" => IndexState::Legacy,
            Some(v) if v == "2" || v == "3" => IndexState::Old,
            Some(v) => {
                return Err(Error::UnsupportedFormat {
                    path: path.into(),
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
        };
        ix.prepare()?;
        Ok(ix)
    }

    /// Connection settings, and the tables a newer deploycache may add.
    fn prepare(&self) -> Result<()> {
        // WAL: readers never block the writer. synchronous=FULL: a committed
        // artifact survives power loss, not only a process crash.
        // Switching a new database to WAL takes an exclusive lock and, when
        // another process opens it at the same moment (four `put`s into a
        // new store), fails with SQLITE_BUSY without asking the busy
        // handler: retry it the way the handler would.
        let mut attempt = 0;
        loop {
            match self.conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            ) {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && busy(attempt) =>
                {
                    attempt += 1
                }
                other => break other.sql(&self.path)?,
            }
        }
        self.conn.execute_batch(SCHEMA).sql(&self.path)?;
        crate::lock::watch_index(&self.path);
        Ok(())
    }

    /// The `format_version` row; None when there is none, or no `meta`
    /// table at all (a new or truncated file).
    fn format_version(&self) -> Result<Option<String>> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )
            .sql(&self.path)?;
        if !has_meta {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key='format_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .sql(&self.path)
    }

    pub(crate) fn state(&self) -> IndexState {
        self.state
    }

    /// Make an empty index a new one of the current format.
    pub(crate) fn init_format(&mut self) -> Result<()> {
        self.prepare()?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('format_version', ?1)",
                [FORMAT_VERSION.to_string()],
            )
            .sql(&self.path)?;
        self.state = IndexState::Current;
        Ok(())
    }

    /// All rows of a query, each mapped by `f`.
    fn rows<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut st = self.conn.prepare_cached(sql).sql(&self.path)?;
        let rows = st
            .query_map(params, f)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<T>>>());
        rows.sql(&self.path)
    }

    /// A second connection to an existing index, for lookups only (the
    /// chunk workers each have one, so lookups neither share a mutex nor
    /// wait for the writer).
    pub(crate) fn open_reader(path: &Path) -> Result<Index> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .sql(path)?;
        conn.busy_handler(Some(busy)).sql(path)?;
        Ok(Index {
            conn,
            path: path.to_owned(),
            state: IndexState::Current,
            journal: None,
        })
    }

    /// Start a read transaction: later lookups share one snapshot and one
    /// lock, instead of taking the WAL read lock each. A chunk committed by
    /// another process meanwhile is not seen: at worst it is stored twice.
    /// Copy what it can of the WAL into the database, without waiting for
    /// anyone (PASSIVE: a TRUNCATE checkpoint waits for every reader, and
    /// holds writers off meanwhile; a mount's chunk workers keep read
    /// snapshots, and gc in the mount hung on it). With
    /// `journal_size_limit`, a WAL fully copied is cut back when it is next
    /// reused.
    pub(crate) fn checkpoint(&self) {
        let _ = self
            .conn
            .execute_batch("PRAGMA journal_size_limit = 67108864");
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    pub(crate) fn begin_read(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN").sql(&self.path)
    }

    pub(crate) fn end_read(&self) -> Result<()> {
        self.conn.execute_batch("COMMIT").sql(&self.path)
    }
}

fn row_location(r: &rusqlite::Row<'_>) -> rusqlite::Result<Location> {
    location_from(r, 0)
}

fn location_from(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Location> {
    let pack: String = r.get(i)?;
    let codec: u8 = r.get(i + 4)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    Ok(Location {
        pack: PackName::parse(&pack).ok_or_else(|| bad("pack name is not 32 hex digits"))?,
        offset: r.get::<_, i64>(i + 1)? as u64,
        stored_len: r.get::<_, i64>(i + 2)? as u32,
        raw_len: r.get::<_, i64>(i + 3)? as u32,
        codec: Codec::from_u8(codec).ok_or_else(|| bad("unknown codec"))?,
    })
}

/// The chunk id in column `i`. Anything but 32 bytes makes the row
/// malformed: an error, never a zero id standing in for a chunk.
fn chunk_id_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<ChunkId> {
    r.get::<_, [u8; 32]>(i).map(ChunkId)
}

/// The file digest in column `i`; malformed as for [`chunk_id_at`].
fn file_hash_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<FileHash> {
    r.get::<_, [u8; 32]>(i).map(FileHash)
}

/// The columns [`row_file`] reads, of `files f`: id, name, size, mode,
/// mtime_ns, hash, and the form (0 as-is, 1 gzip, 2 gzip with its hot copy).
const FILE_COLS: &str = "f.id, f.name, f.size, f.mode, f.mtime_ns, f.hash,
    CASE WHEN f.form = 0 THEN 0
         WHEN EXISTS (SELECT 1 FROM file_chunks hc WHERE hc.file = f.id) THEN 2 ELSE 1 END";

fn row_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        form: match r.get::<_, i64>(6)? {
            0 => Form::AsIs,
            1 => Form::Gzip,
            _ => Form::GzipHot,
        },
        id: r.get(0)?,
        meta: FileMeta {
            name: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            mode: r.get::<_, i64>(3)? as u32,
            mtime_ns: r.get(4)?,
        },
        hash: file_hash_at(r, 5)?,
    })
}

fn artifact_id(conn: &Connection, ns: &str, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM artifacts WHERE namespace = ?1 AND name = ?2")?
        .query_row(params![ns, name], |r| r.get(0))
        .optional()
}

/// The id of an artifact that must exist.
fn need_artifact(conn: &Connection, path: &Path, ns: &str, name: &str) -> Result<i64> {
    artifact_id(conn, ns, name)
        .sql(path)?
        .ok_or_else(|| Error::NoArtifact(name.to_owned()))
}

/// The id of a visible file that must exist.
fn need_file(
    conn: &Connection,
    path: &Path,
    artifact_id: i64,
    artifact: &str,
    file: &str,
) -> Result<i64> {
    file_id(conn, artifact_id, file)
        .sql(path)?
        .ok_or_else(|| Error::NoFile {
            artifact: artifact.to_owned(),
            file: file.to_owned(),
        })
}

fn file_id(conn: &Connection, artifact: i64, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM files WHERE artifact = ?1 AND name = ?2 AND quarantine IS NULL",
    )?
    .query_row(params![artifact, name], |r| r.get(0))
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new index of the current format; tests write its rows by SQL.
    fn new_index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("index.sqlite")).unwrap();
        ix.init_format().unwrap();
        (dir, ix)
    }

    /// An SQLite error of the given primary result code, as rusqlite makes it.
    fn sqlite_failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_errors_are_mapped_by_kind_and_kept_whole() {
        let path = Path::new("/s/index.sqlite");
        let full = sql_error(path, sqlite_failure(rusqlite::ffi::SQLITE_FULL));
        assert!(matches!(
            full,
            Error::Sqlite {
                kind: SqliteKind::DiskFull,
                ..
            }
        ));
        assert_eq!(full.errno(), libc::ENOSPC);
        assert!(full.is_no_space() && !full.is_index_problem());
        // The text a full disk always gave (it was an Io error then).
        assert_eq!(
            full.to_string(),
            "/s/index.sqlite: No space left on device (os error 28) (free space on that filesystem)"
        );
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            let busy = sql_error(path, sqlite_failure(code));
            assert!(matches!(
                busy,
                Error::Sqlite {
                    kind: SqliteKind::Busy,
                    ..
                }
            ));
            assert_eq!(busy.errno(), libc::EBUSY);
            assert!(!busy.is_index_problem());
            assert_eq!(
                busy.to_string(),
                "/s/index.sqlite: Device or resource busy (os error 16)"
            );
        }
        let corrupt = sql_error(path, sqlite_failure(rusqlite::ffi::SQLITE_CORRUPT));
        assert_eq!(corrupt.errno(), libc::EIO);
        assert!(corrupt.is_index_problem());
        let Error::Sqlite { error, .. } = &corrupt else {
            panic!("{corrupt:?}")
        };
        let kept = error.downcast_ref::<rusqlite::Error>().unwrap();
        assert_eq!(
            kept.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt)
        );
        assert_eq!(
            corrupt.to_string(),
            format!("store index /s/index.sqlite: {kept}")
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_index_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = Index::open(&path)
            .err()
            .expect("garbage opened as an index");
        assert!(e.is_index_problem(), "{e:?}");
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(
            e.to_string(),
            format!("store index {}: file is not a database", path.display())
        );
    }

    /// A file whose digest is not 32 bytes used to read as the all-zero
    /// digest, and a chunk whose id is not 32 bytes as the all-zero id.
    #[test]
    fn a_malformed_row_is_an_error_not_a_zero_id() {
        let (_dir, ix) = new_index();
        let pack = "0123456789abcdef0123456789abcdef";
        ix.conn
            .execute_batch(&format!(
                "INSERT INTO artifacts(id, namespace, name, created, last_access)
                     VALUES(1, 'ns', 'a', 0, 0);
                 INSERT INTO files(id, artifact, name, size, mode, mtime_ns, hash, committed)
                     VALUES(1, 1, 'f', 3, 420, 0, X'0102', 0);
                 INSERT INTO packs(id, name) VALUES(1, '{pack}');
                 INSERT INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
                     VALUES(X'0a0b', 1, 0, 3, 3, 0, 1);
                 INSERT INTO file_chunks(file, seq, chunk, offset) VALUES(1, 0, X'0a0b', 0);"
            ))
            .unwrap();
        let malformed = |e: Error| {
            assert!(e.is_index_problem(), "{e:?}");
            assert_eq!(e.errno(), libc::EIO);
            let msg = e.to_string();
            assert!(msg.starts_with("store index "), "{msg}");
            assert!(msg.contains("32 byte value out of 2 byte blob"), "{msg}");
        };
        malformed(ix.file("ns", "a", "f").unwrap_err());
        malformed(ix.file_by_id(1).unwrap_err());
        malformed(ix.file_chunks(1).unwrap_err());
        malformed(
            ix.chunks_in_pack(PackName::parse(pack).unwrap())
                .unwrap_err(),
        );
        malformed(ix.all_chunks().unwrap_err());
    }

    #[test]
    fn a_journal_seq_that_is_not_a_number_is_an_error_not_zero() {
        let (_dir, ix) = new_index();
        assert_eq!(ix.journal_seq().unwrap(), 0, "absent: no change yet");
        ix.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES('journal_seq', '7x')",
                [],
            )
            .unwrap();
        let e = ix.journal_seq().unwrap_err();
        assert!(e.is_index_problem(), "{e:?}");
        assert!(e.to_string().contains("journal_seq \"7x\""), "{e}");
    }
}
