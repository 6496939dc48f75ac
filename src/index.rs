//! The SQLite index: artifacts, their files, each file's ordered chunk list,
//! chunk locations and reference counts. rusqlite lives only in this module.
//!
//! Invariants (checked by `verify`):
//! - `chunks.refs` equals the number of `file_chunks` rows naming the chunk.
//! - A file's `file_chunks` rows are numbered 0.. without gaps, their
//!   `offset`s are the running sum of chunk lengths, and the sum is `files.size`.
//! - Every `chunks` row points into a pack whose bytes were fsynced before the
//!   row was committed.
//! - Every change is one `BEGIN IMMEDIATE` transaction: readers see an
//!   artifact or file entirely or not at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::id::{ChunkId, FileHash};
use crate::manifest::{Change, FileManifest, Journal, PendingRow, Record};
use crate::pack::{Codec, Location, PackName};

mod rebuild;
pub use rebuild::{replay_differences, RebuildReport, ScannedPacks};

/// The on-disk format version this code reads and writes (store-layout.md).
pub const FORMAT_VERSION: u32 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS chunks(
    id BLOB PRIMARY KEY,
    pack INTEGER NOT NULL REFERENCES packs(id),
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_pack ON chunks(pack);
CREATE TABLE IF NOT EXISTS artifacts(
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_access INTEGER NOT NULL,
    UNIQUE(namespace, name)
);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    artifact INTEGER NOT NULL REFERENCES artifacts(id),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL,
    committed INTEGER NOT NULL,
    -- NULL: visible. Otherwise why the file was kept aside (a cut-short
    -- transfer); quarantined files keep their chunks referenced.
    quarantine TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS files_visible ON files(artifact, name) WHERE quarantine IS NULL;
CREATE INDEX IF NOT EXISTS files_artifact ON files(artifact);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
-- put/import's files cache (as borg's and restic's): a source file whose
-- path, device, inode, size, mtime and ctime are unchanged has this hash,
-- so its chunk list can be taken from a stored file with that hash.
CREATE TABLE IF NOT EXISTS source_files(
    path BLOB PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS file_chunks(
    file INTEGER NOT NULL REFERENCES files(id),
    seq INTEGER NOT NULL,
    chunk BLOB NOT NULL REFERENCES chunks(id),
    offset INTEGER NOT NULL,
    PRIMARY KEY(file, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_chunks_chunk ON file_chunks(chunk);
";

#[derive(Clone, Debug)]
pub struct ArtifactSummary {
    pub name: String,
    pub files: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub created: i64,
    pub last_access: i64,
    /// Names of files that were cut short and not written whole since
    /// (see [`Index::missing_files`]): non-empty means the artifact is incomplete.
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
pub struct NewFile {
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
pub struct SourceKey {
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

/// Attach the index path to a rusqlite error.
trait Sql<T> {
    fn sql(self, path: &Path) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self, path: &Path) -> Result<T> {
        self.map_err(|e| sql_error(path, e))
    }
}

/// SQLite errors by kind: a full disk is ENOSPC and a busy database EBUSY
/// (so the view replies with those, and the message says what to do);
/// anything else is an index error.
fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let errno = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Some(libc::ENOSPC),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => Some(libc::EBUSY),
        _ => None,
    };
    match errno {
        Some(n) => Error::io(path, std::io::Error::from_raw_os_error(n)),
        None => Error::Index {
            path: path.to_owned(),
            message: e.to_string(),
        },
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
pub enum IndexState {
    /// Format [`FORMAT_VERSION`].
    Current,
    /// No `format_version`: a new index, or one emptied (every row deleted,
    /// the file truncated). [`Index::init_format`] makes it a new one.
    Empty,
    /// Format 1, whose changes have no manifest records yet:
    /// [`Index::migrate_v1`] writes them.
    Legacy,
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
    pub fn open(path: &Path) -> Result<Index> {
        let conn = Connection::open(path).map_err(|e| Error::Index {
            path: path.into(),
            message: e.to_string(),
        })?;
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

    /// The `seq` of the last committed change (manifest.rs).
    pub fn journal_seq(&self) -> Result<u64> {
        journal_seq(&self.conn).sql(&self.path)
    }

    pub fn state(&self) -> IndexState {
        self.state
    }

    /// Record changes in `journal` from now on.
    pub fn set_journal(&mut self, journal: Box<dyn Journal>) {
        self.journal = Some(journal);
    }

    /// Make an empty index a new one of the current format.
    pub fn init_format(&mut self) -> Result<()> {
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

    /// Migrate a format-1 index: in one exclusive transaction, write one
    /// manifest record per artifact (its files, quarantined ones included,
    /// with their times), then set the format to 2. Returns how many
    /// artifacts it recorded (0 when another process migrated first).
    pub fn migrate_v1(&mut self) -> Result<u64> {
        let Some(journal) = self.journal.as_mut() else {
            return Err(Error::Index {
                path: self.path.clone(),
                message: "opened without its manifest log, so it cannot be migrated".into(),
            });
        };
        journal.hold()?;
        let res = migrate(&mut self.conn, &self.path, journal.as_mut());
        journal.release();
        if res.is_ok() {
            self.state = IndexState::Current;
        }
        res
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
    pub fn open_reader(path: &Path) -> Result<Index> {
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
    pub fn begin_read(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN").sql(&self.path)
    }

    pub fn end_read(&self) -> Result<()> {
        self.conn.execute_batch("COMMIT").sql(&self.path)
    }

    /// The end of pack `p`'s last indexed record (`None`: no index row
    /// points into it).
    pub fn pack_end(&self, p: PackName) -> Result<Option<u64>> {
        let end: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT max(c.offset + c.stored_len) FROM chunks c JOIN packs p ON p.id = c.pack
                 WHERE p.name = ?1",
            )
            .sql(&self.path)?
            .query_row([p.to_string()], |r| r.get(0))
            .sql(&self.path)?;
        Ok(end.map(|e| e as u64))
    }

    /// Where a chunk is stored, if the index knows it.
    pub fn chunk_location(&self, id: &ChunkId) -> Result<Option<Location>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?1",
            )
            .sql(&self.path)?;
        st.query_row([&id.as_bytes()[..]], row_location)
            .optional()
            .sql(&self.path)
    }

    /// Commit a whole artifact: all its files appear at once. With `replace`,
    /// an existing artifact of that name is dropped in the same transaction.
    pub fn commit_artifact(
        &mut self,
        ns: &str,
        name: &str,
        files: &[NewFile],
        quarantined: &[(NewFile, &str)],
        replace: bool,
    ) -> Result<()> {
        let t = now();
        let mut manifests: Vec<FileManifest> = files.iter().map(|f| f.manifest(None, t)).collect();
        manifests.extend(quarantined.iter().map(|(f, why)| f.manifest(Some(why), t)));
        let new_chunks = files
            .iter()
            .chain(quarantined.iter().map(|(f, _)| f))
            .flat_map(|f| f.new_chunks.iter());
        self.change(
            Change::PutArtifact {
                ns: ns.to_owned(),
                name: name.to_owned(),
                created: t,
                last_access: t,
                replace,
                files: manifests,
            },
            new_chunks,
            None,
        )
        .map(drop)
    }

    /// Create an empty artifact (the FUSE view's mkdir). Fails if it exists.
    pub fn create_artifact(&mut self, ns: &str, name: &str) -> Result<()> {
        self.commit_artifact(ns, name, &[], &[], false)
    }

    /// Add or replace one file of an existing artifact (the FUSE view's
    /// close). `pending` (from [`Index::begin_pending`]) goes in the same
    /// transaction.
    pub fn commit_file(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &NewFile,
        pending: Option<i64>,
    ) -> Result<()> {
        let row = self.pending_row(pending)?;
        let change = Change::PutFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.manifest(None, now()),
            pending: row.clone(),
        };
        let id = row.and(pending);
        self.change(change, &file.new_chunks, id).map(drop)
    }

    /// Drop an artifact and release its chunk references.
    pub fn remove_artifact(&mut self, ns: &str, name: &str) -> Result<()> {
        let change = Change::RemoveArtifact {
            ns: ns.to_owned(),
            name: name.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Drop one file of an artifact.
    pub fn remove_file(&mut self, ns: &str, artifact: &str, file: &str) -> Result<()> {
        let change = Change::RemoveFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Rename a file, possibly into another artifact, replacing any file of the target name.
    pub fn rename_file(&mut self, ns: &str, from: (&str, &str), to: (&str, &str)) -> Result<()> {
        let change = Change::RenameFile {
            ns: ns.to_owned(),
            from: (from.0.to_owned(), from.1.to_owned()),
            to: (to.0.to_owned(), to.1.to_owned()),
        };
        self.change(change, &[], None).map(drop)
    }

    /// Rename an artifact. Fails if the target exists and is not empty.
    pub fn rename_artifact(&mut self, ns: &str, from: &str, to: &str) -> Result<()> {
        let change = Change::RenameArtifact {
            ns: ns.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.change(change, &[], None).map(drop)
    }

    pub fn update_file_meta(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &str,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    ) -> Result<()> {
        let change = Change::SetFileMeta {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.to_owned(),
            mode,
            mtime_ns,
        };
        self.change(change, &[], None).map(drop)
    }

    /// Keep a file aside (not visible) with the reason, its chunks referenced.
    /// `pending` (from [`Index::begin_pending`]) is replaced in the same
    /// transaction.
    pub fn quarantine_file(
        &mut self,
        ns: &str,
        artifact: &str,
        file: &NewFile,
        reason: &str,
        pending: Option<i64>,
    ) -> Result<()> {
        let row = self.pending_row(pending)?;
        let change = Change::PutFile {
            ns: ns.to_owned(),
            artifact: artifact.to_owned(),
            file: file.manifest(Some(reason), now()),
            pending: row.clone(),
        };
        let id = row.and(pending);
        self.change(change, &file.new_chunks, id).map(drop)
    }

    /// Durably record that file `name` of `artifact` is being written (a
    /// quarantined row with no chunks and `reason`), so that the artifact
    /// lists as incomplete until the file commits whole, to every reader and
    /// after a crash. Returns the row's id for [`Index::commit_file`],
    /// [`Index::quarantine_file`], [`Index::move_pending`] and
    /// [`Index::end_pending`].
    pub fn begin_pending(
        &mut self,
        ns: &str,
        artifact: &str,
        name: &str,
        reason: &str,
    ) -> Result<i64> {
        let change = Change::BeginPending {
            row: PendingRow {
                ns: ns.to_owned(),
                artifact: artifact.to_owned(),
                name: name.to_owned(),
                reason: reason.to_owned(),
                committed: now(),
            },
        };
        match self.change(change, &[], None)? {
            Applied::Row(id) => Ok(id),
            _ => unreachable!("a pending row's change returns its id"),
        }
    }

    /// A file being written was renamed: its pending row follows it.
    pub fn move_pending(&mut self, id: i64, ns: &str, artifact: &str, name: &str) -> Result<()> {
        let Some(row) = self.pending_row(Some(id))? else {
            return Ok(()); // gone already (rm --quarantine): nothing to move
        };
        debug_assert_eq!(row.ns, ns, "a pending row stays in its namespace");
        let change = Change::MovePending {
            row,
            to_artifact: artifact.to_owned(),
            to_name: name.to_owned(),
        };
        self.change(change, &[], Some(id)).map(drop)
    }

    /// Drop a pending row (the file was unlinked while being written), or
    /// with `reason`, keep it and say why the file was lost.
    pub fn end_pending(&mut self, id: i64, reason: Option<&str>) -> Result<()> {
        let Some(row) = self.pending_row(Some(id))? else {
            return Ok(()); // gone already (rm --quarantine)
        };
        let change = Change::EndPending {
            row,
            lost: reason.map(str::to_owned),
        };
        self.change(change, &[], Some(id)).map(drop)
    }

    /// What pending row `id` holds, as a manifest record names it (None: no
    /// such pending row any more).
    fn pending_row(&self, id: Option<i64>) -> Result<Option<PendingRow>> {
        let Some(id) = id else { return Ok(None) };
        self.conn
            .query_row(
                "SELECT a.namespace, a.name, f.name, f.quarantine, f.committed
                 FROM files f JOIN artifacts a ON a.id = f.artifact
                 WHERE f.id = ?1 AND f.quarantine IS NOT NULL",
                [id],
                |r| {
                    Ok(PendingRow {
                        ns: r.get(0)?,
                        artifact: r.get(1)?,
                        name: r.get(2)?,
                        reason: r.get(3)?,
                        committed: r.get(4)?,
                    })
                },
            )
            .optional()
            .sql(&self.path)
    }

    /// Pending rows of namespace `ns` whose reason starts with `prefix`:
    /// (row id, artifact, reason). The mount relabels those its dead
    /// predecessors left.
    pub fn pending_rows(&self, ns: &str, prefix: &str) -> Result<Vec<(i64, String, String)>> {
        self.rows(
            "SELECT f.id, a.name, f.quarantine FROM files f JOIN artifacts a ON a.id = f.artifact
             WHERE a.namespace = ?1 AND substr(f.quarantine, 1, length(?2)) = ?2",
            params![ns, prefix],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// Drop the quarantined files of `artifact`, or of every artifact of
    /// `ns` when `None`. An artifact that is incomplete without them (a file
    /// was cut short and never written whole since) is dropped whole:
    /// listing its other files would make it look cached. Chunks lose those
    /// references (space returns at gc).
    pub fn remove_quarantined(&mut self, ns: &str, artifact: Option<&str>) -> Result<Dropped> {
        let change = Change::RemoveQuarantined {
            ns: ns.to_owned(),
            artifact: artifact.map(str::to_owned),
        };
        match self.change(change, &[], None)? {
            Applied::Dropped(d) => Ok(d),
            _ => unreachable!("removing quarantined files reports what it dropped"),
        }
    }

    /// Every change to the artifacts goes through here: in one `BEGIN
    /// IMMEDIATE` transaction, index the chunks the change's writer stored,
    /// apply the change (which checks it), then append its manifest record
    /// with the next `journal_seq` and fsync it, and only then commit
    /// (manifest.rs has why in this order).
    fn change<'a>(
        &mut self,
        change: Change,
        new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
        pending_id: Option<i64>,
    ) -> Result<Applied> {
        let Some(journal) = self.journal.as_mut() else {
            return Err(Error::Index {
                path: self.path.clone(),
                message: "opened without its manifest log, so it cannot record changes".into(),
            });
        };
        // Before the write lock: gc takes gc.lock first, then writes.
        journal.hold()?;
        let res = commit_change(
            &mut self.conn,
            &self.path,
            journal.as_mut(),
            change,
            new_chunks,
            pending_id,
        );
        journal.release();
        res
    }

    /// Files of an artifact that were cut short and not written whole
    /// since: the names its quarantined files were meant to have
    /// ([`name::intended`](crate::name::intended)) that no visible file of it
    /// has. Non-empty means the artifact is incomplete: the mount lists it
    /// as empty, and `rm --quarantine` drops it whole.
    pub fn missing_files(&self, ns: &str, artifact: &str) -> Result<Vec<String>> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        missing_files(&self.conn, aid).sql(&self.path)
    }

    /// Quarantined files of a namespace, newest first.
    pub fn list_quarantine(&self, ns: &str) -> Result<Vec<QuarantineEntry>> {
        let rows = self.rows("SELECT f.id, f.name, f.size, f.mode, f.mtime_ns, f.hash, a.name, f.quarantine, f.committed
                 FROM files f JOIN artifacts a ON a.id = f.artifact
                 WHERE a.namespace = ?1 AND f.quarantine IS NOT NULL ORDER BY f.committed DESC, f.id DESC", [ns], |r| {
                Ok(QuarantineEntry {
                    file: row_file(r)?,
                    artifact: r.get(6)?,
                    reason: r.get(7)?,
                    at: r.get(8)?,
                })
            })?;
        Ok(rows)
    }

    /// A file's chunk list by file id (visible or quarantined).
    pub fn file_by_id(&self, file_id: i64) -> Result<Option<FileRow>> {
        self.conn
            .query_row(
                "SELECT id, name, size, mode, mtime_ns, hash FROM files WHERE id = ?1",
                [file_id],
                row_file,
            )
            .optional()
            .sql(&self.path)
    }

    /// The files cache: the hash recorded for a source file with exactly this stat.
    pub fn cached_source_hash(&self, key: &SourceKey) -> Result<Option<FileHash>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT hash FROM source_files
                 WHERE path = ?1 AND dev = ?2 AND ino = ?3 AND size = ?4 AND mtime_ns = ?5 AND ctime_ns = ?6",
            )
            .sql(&self.path)?;
        let h: Option<Vec<u8>> = st
            .query_row(
                params![
                    key.path,
                    key.dev as i64,
                    key.ino as i64,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns
                ],
                |r| r.get(0),
            )
            .optional()
            .sql(&self.path)?;
        Ok(h.and_then(|h| FileHash::from_slice(&h)))
    }

    pub fn remember_source(&self, key: &SourceKey, hash: &FileHash) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO source_files(path, dev, ino, size, mtime_ns, ctime_ns, hash)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    key.path,
                    key.dev as i64,
                    key.ino as i64,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns,
                    &hash.as_bytes()[..]
                ])
            })
            .sql(&self.path)?;
        Ok(())
    }

    /// The chunk list of any stored file with this content hash and size.
    pub fn chunks_of_content(
        &self,
        hash: &FileHash,
        size: u64,
    ) -> Result<Option<Vec<(ChunkId, u32)>>> {
        let fid: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM files WHERE hash = ?1 AND size = ?2 LIMIT 1",
                params![&hash.as_bytes()[..], size as i64],
                |r| r.get(0),
            )
            .optional()
            .sql(&self.path)?;
        let Some(fid) = fid else { return Ok(None) };
        let spans = self.file_chunks(fid)?;
        Ok(Some(spans.iter().map(|s| (s.id, s.loc.raw_len)).collect()))
    }

    pub fn artifact_exists(&self, ns: &str, name: &str) -> Result<bool> {
        Ok(artifact_id(&self.conn, ns, name).sql(&self.path)?.is_some())
    }

    /// Record a read of the artifact (for `ls` and eviction).
    pub fn touch(&self, ns: &str, name: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE artifacts SET last_access = ?3 WHERE namespace = ?1 AND name = ?2 AND last_access < ?3",
                params![ns, name, now()],
            )
            .sql(&self.path)?;
        Ok(())
    }

    pub fn list_artifacts(&self, ns: &str) -> Result<Vec<ArtifactSummary>> {
        let rows = self.rows("SELECT a.id, a.name, a.created, a.last_access,
                        (SELECT count(*) FROM files f WHERE f.artifact = a.id AND f.quarantine IS NULL),
                        (SELECT coalesce(sum(size), 0) FROM files f WHERE f.artifact = a.id AND f.quarantine IS NULL),
                        EXISTS (SELECT 1 FROM files f WHERE f.artifact = a.id AND f.quarantine IS NOT NULL)
                 FROM artifacts a WHERE a.namespace = ?1 ORDER BY a.name", [ns], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(6)?,
                    ArtifactSummary {
                        name: r.get(1)?,
                        created: r.get(2)?,
                        last_access: r.get(3)?,
                        files: r.get::<_, i64>(4)? as u64,
                        logical_bytes: r.get::<_, i64>(5)? as u64,
                        unique_bytes: 0,
                        missing: Vec::new(),
                    },
                ))
            })?;
        // A chunk is unique to an artifact when all of its references come
        // from that artifact's files. One pass over the chunk references in
        // chunk order (their index), for every artifact at once: `ls` of a
        // store of 166 artifacts (1.1 million references) took 0.31 s, where
        // a grouped query per artifact took 0.97 s.
        let unique: std::collections::HashMap<i64, u64> = self
            .rows(
                "SELECT g.a, sum(c.raw_len) FROM (
                    SELECT fc.chunk AS chunk, min(f.artifact) AS a, max(f.artifact) AS b,
                           count(*) AS n
                    FROM file_chunks fc JOIN files f ON f.id = fc.file GROUP BY fc.chunk) g
                 JOIN chunks c ON c.id = g.chunk
                 WHERE g.a = g.b AND c.refs = g.n GROUP BY g.a",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)),
            )?
            .into_iter()
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for (aid, quarantined, mut s) in rows {
            s.unique_bytes = unique.get(&aid).copied().unwrap_or(0);
            if quarantined {
                s.missing = missing_files(&self.conn, aid).sql(&self.path)?;
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Artifact names of a namespace, sorted (the FUSE view's root listing).
    pub fn artifact_names(&self, ns: &str) -> Result<Vec<String>> {
        self.rows(
            "SELECT name FROM artifacts WHERE namespace = ?1 ORDER BY name",
            [ns],
            |r| r.get(0),
        )
    }

    pub fn list_files(&self, ns: &str, artifact: &str) -> Result<Vec<FileRow>> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        let rows = self.rows("SELECT id, name, size, mode, mtime_ns, hash FROM files WHERE artifact = ?1 AND quarantine IS NULL ORDER BY name", [aid], row_file)?;
        Ok(rows)
    }

    pub fn file(&self, ns: &str, artifact: &str, file: &str) -> Result<FileRow> {
        let aid = need_artifact(&self.conn, &self.path, ns, artifact)?;
        self.conn
            .query_row(
                "SELECT id, name, size, mode, mtime_ns, hash FROM files WHERE artifact = ?1 AND name = ?2 AND quarantine IS NULL",
                params![aid, file],
                row_file,
            )
            .optional()
            .sql(&self.path)?
            .ok_or_else(|| Error::NoFile { artifact: artifact.to_owned(), file: file.to_owned() })
    }

    /// A file's chunk list in order, with locations.
    pub fn file_chunks(&self, file_id: i64) -> Result<Vec<ChunkSpan>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT fc.chunk, fc.offset, p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk JOIN packs p ON p.id = c.pack
                 WHERE fc.file = ?1 ORDER BY fc.seq",
            )
            .sql(&self.path)?;
        let rows = st
            .query_map([file_id], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok(ChunkSpan {
                    id: ChunkId::from_slice(&id).unwrap_or(ChunkId([0; 32])),
                    offset: r.get::<_, i64>(1)? as u64,
                    loc: location_from(r, 2)?,
                })
            })
            .sql(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .sql(&self.path)?;
        Ok(rows)
    }

    pub fn totals(&self) -> Result<Totals> {
        let q = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .sql(&self.path)
        };
        Ok(Totals {
            artifacts: q("SELECT count(*) FROM artifacts")?,
            files: q("SELECT count(*) FROM files WHERE quarantine IS NULL")?,
            chunks: q("SELECT count(*) FROM chunks WHERE refs > 0")?,
            logical_bytes: q("SELECT coalesce(sum(size), 0) FROM files WHERE quarantine IS NULL")?,
            quarantined_files: q("SELECT count(*) FROM files WHERE quarantine IS NOT NULL")?,
            quarantined_bytes: q(
                "SELECT coalesce(sum(size), 0) FROM files WHERE quarantine IS NOT NULL",
            )?,
            unique_bytes: q("SELECT coalesce(sum(raw_len), 0) FROM chunks WHERE refs > 0")?,
            compressed_bytes: q("SELECT coalesce(sum(stored_len), 0) FROM chunks WHERE refs > 0")?,
            unreferenced_chunks: q("SELECT count(*) FROM chunks WHERE refs <= 0")?,
            unreferenced_bytes: q(
                "SELECT coalesce(sum(stored_len), 0) FROM chunks WHERE refs <= 0",
            )?,
        })
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> Result<Vec<PackName>> {
        let names = self.rows("SELECT name FROM packs ORDER BY name", [], |r| {
            r.get::<_, String>(0)
        })?;
        Ok(names.iter().filter_map(|n| PackName::parse(n)).collect())
    }

    /// Every chunk of one pack, in pack order.
    pub fn chunks_in_pack(&self, pack: PackName) -> Result<Vec<(ChunkId, Location)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, p.name, c.offset, c.stored_len, c.raw_len, c.codec
                 FROM chunks c JOIN packs p ON p.id = c.pack WHERE p.name = ?1 ORDER BY c.offset",
            )
            .sql(&self.path)?;
        let rows = st
            .query_map([pack.to_string()], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok((
                    ChunkId::from_slice(&id).unwrap_or(ChunkId([0; 32])),
                    location_from(r, 1)?,
                ))
            })
            .sql(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .sql(&self.path)?;
        Ok(rows)
    }

    /// Who references a chunk: (artifact, file, offset) triples, for error reports.
    pub fn chunk_users(&self, id: &ChunkId) -> Result<Vec<(String, String, u64)>> {
        let rows = self.rows("SELECT CASE a.namespace WHEN '' THEN a.name ELSE a.namespace || ':' || a.name END, f.name, fc.offset
                 FROM file_chunks fc JOIN files f ON f.id = fc.file JOIN artifacts a ON a.id = f.artifact
                 WHERE fc.chunk = ?1 ORDER BY a.name, f.name, fc.offset", [&id.as_bytes()[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?;
        Ok(rows)
    }

    /// Structural checks of the invariants in the module doc. Each problem is one line.
    pub fn check_consistency(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let integrity: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .sql(&self.path)?;
        if integrity != "ok" {
            problems.push(format!("SQLite quick_check: {integrity}"));
        }
        let mut fk = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .sql(&self.path)?;
        let n = fk.query_map([], |_| Ok(())).sql(&self.path)?.count();
        if n > 0 {
            problems.push(format!(
                "{n} rows point at missing rows (foreign_key_check)"
            ));
        }
        let bad = self.rows(
            "SELECT c.id, c.refs, (SELECT count(*) FROM file_chunks fc WHERE fc.chunk = c.id) AS n
                 FROM chunks c WHERE c.refs != n",
            [],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        for (id, stored, actual) in bad {
            let id = ChunkId::from_slice(&id)
                .map(|c| c.to_string())
                .unwrap_or_else(|| hex::encode(&id));
            problems.push(format!(
                "chunk {id}: reference count {stored}, but {actual} file positions use it"
            ));
        }
        let rows = self.rows("SELECT a.name, f.name, f.size,
                        (SELECT coalesce(sum(c.raw_len), 0) FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.file = f.id),
                        (SELECT count(*) FROM file_chunks fc WHERE fc.file = f.id),
                        (SELECT coalesce(max(seq), -1) FROM file_chunks fc WHERE fc.file = f.id),
                        (SELECT count(*) FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.file = f.id
                           AND fc.offset + c.raw_len != coalesce((SELECT fc2.offset FROM file_chunks fc2 WHERE fc2.file = f.id AND fc2.seq = fc.seq + 1), f.size))
                 FROM files f JOIN artifacts a ON a.id = f.artifact", [], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
        for (a, f, size, sum, count, max_seq, gaps) in rows {
            if sum != size {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: size {size}, but its chunks hold {sum} bytes"
                ));
            }
            if max_seq + 1 != count {
                problems.push(format!("artifact {a:?} file {f:?}: chunk list has gaps"));
            }
            if gaps != 0 {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: {gaps} chunk offsets do not follow each other"
                ));
            }
        }
        // Each file's digest commits to its chunk list (id.rs).
        let files = self.rows("SELECT f.id, a.name, f.name, f.hash FROM files f JOIN artifacts a ON a.id = f.artifact", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
        for (fid, a, f, hash) in files {
            let spans = self.file_chunks(fid)?;
            let digest = FileHash::of_chunks(spans.iter().map(|s| (s.id, s.loc.raw_len)));
            if FileHash::from_slice(&hash) != Some(digest) {
                problems.push(format!(
                    "artifact {a:?} file {f:?}: chunk list does not match the file digest"
                ));
            }
        }
        Ok(problems)
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

fn row_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    let hash: Vec<u8> = r.get(5)?;
    Ok(FileRow {
        id: r.get(0)?,
        meta: FileMeta {
            name: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            mode: r.get::<_, i64>(3)? as u32,
            mtime_ns: r.get(4)?,
        },
        hash: FileHash::from_slice(&hash).unwrap_or(FileHash([0; 32])),
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

fn insert_file(tx: &Transaction<'_>, path: &Path, artifact: i64, f: &FileManifest) -> Result<()> {
    tx.execute(
        "INSERT INTO files(artifact, name, size, mode, mtime_ns, hash, committed, quarantine)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            artifact,
            f.name,
            f.size as i64,
            f.mode,
            f.mtime_ns,
            &f.hash.as_bytes()[..],
            f.committed,
            f.quarantine
        ],
    )
    .sql(path)?;
    let fid = tx.last_insert_rowid();
    let mut ins = tx
        .prepare_cached("INSERT INTO file_chunks(file, seq, chunk, offset) VALUES(?1, ?2, ?3, ?4)")
        .sql(path)?;
    let mut inc = tx
        .prepare_cached("UPDATE chunks SET refs = refs + 1 WHERE id = ?1")
        .sql(path)?;
    let mut offset = 0u64;
    for (seq, (id, len)) in f.chunks.iter().enumerate() {
        if inc.execute([&id.as_bytes()[..]]).sql(path)? != 1 {
            // The chunk row vanished (or never existed; in a rebuild: no
            // pack holds it): refuse rather than commit a file that points
            // at nothing.
            return Err(Error::Index {
                path: path.to_owned(),
                message: format!("file {:?}: chunk {id} is not in the index", f.name),
            });
        }
        ins.execute(params![fid, seq as i64, &id.as_bytes()[..], offset as i64])
            .sql(path)?;
        offset += *len as u64;
    }
    Ok(())
}

/// Delete a pending row: quarantined, so never a visible file, and it
/// holds no chunk references.
fn delete_pending(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM files WHERE id = ?1 AND quarantine IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM file_chunks WHERE file = ?1)",
        [id],
    )?;
    Ok(())
}

fn delete_file(tx: &Transaction<'_>, fid: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE chunks SET refs = refs - (SELECT count(*) FROM file_chunks fc WHERE fc.file = ?1 AND fc.chunk = chunks.id)
         WHERE id IN (SELECT chunk FROM file_chunks WHERE file = ?1)",
        [fid],
    )?;
    tx.execute("DELETE FROM file_chunks WHERE file = ?1", [fid])?;
    tx.execute("DELETE FROM files WHERE id = ?1", [fid])?;
    Ok(())
}

/// The start of the quarantine reason of a pending row: a file being
/// written through a mount ([`Index::begin_pending`]).
pub const PENDING: &str = "being written through the mount";
/// The start of the reason of a pending row whose writer is gone (a crash,
/// a failed write): the file was lost in flight.
pub const LOST: &str = "lost in flight";

/// Whether a quarantine reason marks a pending or lost row: those are
/// satisfied only by a visible file committed after them.
pub fn is_pending_reason(reason: &str) -> bool {
    reason.starts_with(PENDING) || reason.starts_with(LOST)
}

/// [`Index::missing_files`] by artifact id, inside any transaction.
///
/// A cut-short file is missing while no visible file has the name it was
/// meant to have. A pending or lost one (a write in flight, or one a crash
/// or a full disk ended) is missing until a visible file of that name was
/// committed after it: the content it was replacing does not count, since
/// the writer was replacing it (an empty file a failed command left, an
/// older fill). Row ids grow while the row exists, so "after" is a larger id.
pub(crate) fn missing_files(conn: &Connection, aid: i64) -> rusqlite::Result<Vec<String>> {
    let quarantined: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, name, quarantine FROM files WHERE artifact = ?1 AND quarantine IS NOT NULL",
        )?
        .query_map([aid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if quarantined.is_empty() {
        return Ok(Vec::new());
    }
    let visible: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, name FROM files WHERE artifact = ?1 AND quarantine IS NULL")?
        .query_map([aid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let (pending, cut): (Vec<_>, Vec<_>) = quarantined
        .into_iter()
        .partition(|(_, _, reason)| is_pending_reason(reason));
    let cut: Vec<String> = cut.into_iter().map(|(_, name, _)| name).collect();
    let names: Vec<&str> = visible.iter().map(|(_, n)| n.as_str()).collect();
    let mut out: Vec<String> = crate::name::missing(&cut, &names)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (id, name, _) in &pending {
        let want = crate::name::intended(name);
        if !visible.iter().any(|(vid, v)| v == want && vid > id) {
            out.push(want.to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn delete_artifact(tx: &Transaction<'_>, aid: i64) -> rusqlite::Result<()> {
    let fids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM files WHERE artifact = ?1")?
        .query_map([aid], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for fid in fids {
        delete_file(tx, fid)?;
    }
    tx.execute("DELETE FROM artifacts WHERE id = ?1", [aid])?;
    Ok(())
}

/// [`Index::change`]'s transaction, with the journal held.
fn commit_change<'a>(
    conn: &mut Connection,
    path: &Path,
    journal: &mut dyn Journal,
    change: Change,
    new_chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
    pending_id: Option<i64>,
) -> Result<Applied> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql(path)?;
    insert_chunk_rows(&tx, new_chunks).sql(path)?;
    let out = apply_change(&tx, path, &change, pending_id)?;
    let seq = journal_seq(&tx).sql(path)? + 1;
    let record = Record::new(seq, change);
    let pack = journal.write(&record.encode())?;
    journal.sync()?;
    set_journal_seq(&tx, seq, pack).sql(path)?;
    if let Err(e) = tx.commit() {
        // The record is durable but its change is not: void its seq, so
        // that a rebuild does not apply it (best effort; see
        // `Record::time_ns` for a crash right here).
        let void = Record::new(seq, Change::Void).encode();
        if journal.write(&void).is_ok() {
            let _ = journal.sync();
        }
        return Err(sql_error(path, e));
    }
    Ok(out)
}

/// [`Index::migrate_v1`]'s transaction, with the journal held.
fn migrate(conn: &mut Connection, path: &Path, journal: &mut dyn Journal) -> Result<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .sql(path)?;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key='format_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .sql(path)?;
    if version.as_deref() != Some("1") {
        return Ok(0);
    }
    let artifacts: Vec<(i64, String, String, i64, i64)> = tx
        .prepare("SELECT id, namespace, name, created, last_access FROM artifacts ORDER BY id")
        .sql(path)?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .sql(path)?
        .collect::<rusqlite::Result<_>>()
        .sql(path)?;
    let mut seq = journal_seq(&tx).sql(path)?;
    let mut packs = Vec::new();
    for (aid, ns, name, created, last_access) in &artifacts {
        let files = artifact_manifests(&tx, *aid).sql(path)?;
        seq += 1;
        let change = Change::PutArtifact {
            ns: ns.clone(),
            name: name.clone(),
            created: *created,
            last_access: *last_access,
            replace: true,
            files,
        };
        packs.push(journal.write(&Record::new(seq, change).encode())?);
    }
    journal.sync()?;
    for p in packs {
        set_journal_seq(&tx, seq, p).sql(path)?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
        [FORMAT_VERSION.to_string()],
    )
    .sql(path)?;
    tx.commit().sql(path)?;
    Ok(artifacts.len() as u64)
}

/// Apply one change inside a transaction: the one place that gives each
/// [`Change`] its meaning, for live commits and for a rebuild's replay
/// alike. Fails, changing nothing the caller keeps, when the change does
/// not apply to the current state (no such artifact, the name is taken).
pub(crate) fn apply_change(
    tx: &Transaction<'_>,
    path: &Path,
    change: &Change,
    pending_id: Option<i64>,
) -> Result<Applied> {
    // The pending row a change names: the row the live caller holds, or
    // on replay the first row alike (rows alike are interchangeable).
    let pending = |row: &PendingRow| -> Result<Option<i64>> {
        match pending_id {
            Some(id) => Ok(Some(id)),
            None => find_pending(tx, row).sql(path),
        }
    };
    match change {
        Change::PutArtifact {
            ns,
            name,
            created,
            last_access,
            replace,
            files,
        } => {
            if let Some(old) = artifact_id(tx, ns, name).sql(path)? {
                if !replace {
                    return Err(Error::ArtifactExists(name.to_owned()));
                }
                delete_artifact(tx, old).sql(path)?;
            }
            tx.execute(
                "INSERT INTO artifacts(namespace, name, created, last_access) VALUES(?1, ?2, ?3, ?4)",
                params![ns, name, created, last_access],
            )
            .sql(path)?;
            let aid = tx.last_insert_rowid();
            for f in files {
                insert_file(tx, path, aid, f)?;
            }
        }
        Change::PutFile {
            ns,
            artifact,
            file,
            pending: row,
        } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            if file.quarantine.is_none() {
                if let Some(fid) = file_id(tx, aid, &file.name).sql(path)? {
                    delete_file(tx, fid).sql(path)?;
                }
            }
            insert_file(tx, path, aid, file)?;
            if let Some(row) = row {
                if let Some(id) = pending(row)? {
                    delete_pending(tx, id).sql(path)?;
                }
            }
        }
        Change::BeginPending { row } => {
            let aid = need_artifact(tx, path, &row.ns, &row.artifact)?;
            let empty: [(ChunkId, u32); 0] = [];
            tx.execute(
                "INSERT INTO files(artifact, name, size, mode, mtime_ns, hash, committed, quarantine)
                 VALUES(?1, ?2, 0, 0, 0, ?3, ?4, ?5)",
                params![
                    aid,
                    row.name,
                    &FileHash::of_chunks(empty).as_bytes()[..],
                    row.committed,
                    row.reason
                ],
            )
            .sql(path)?;
            return Ok(Applied::Row(tx.last_insert_rowid()));
        }
        Change::MovePending {
            row,
            to_artifact,
            to_name,
        } => {
            let aid = need_artifact(tx, path, &row.ns, to_artifact)?;
            if let Some(id) = pending(row)? {
                tx.execute(
                    "UPDATE files SET artifact = ?1, name = ?2 WHERE id = ?3 AND quarantine IS NOT NULL",
                    params![aid, to_name, id],
                )
                .sql(path)?;
            }
        }
        Change::EndPending { row, lost } => {
            if let Some(id) = pending(row)? {
                match lost {
                    Some(r) => {
                        tx.execute(
                            "UPDATE files SET quarantine = ?1 WHERE id = ?2 AND quarantine IS NOT NULL",
                            params![r, id],
                        )
                        .sql(path)?;
                    }
                    None => delete_pending(tx, id).sql(path)?,
                }
            }
        }
        Change::RemoveArtifact { ns, name } => {
            let aid = need_artifact(tx, path, ns, name)?;
            delete_artifact(tx, aid).sql(path)?;
        }
        Change::RemoveFile { ns, artifact, file } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            let fid = need_file(tx, path, aid, artifact, file)?;
            delete_file(tx, fid).sql(path)?;
        }
        Change::RenameFile { ns, from, to } => {
            let from_a = need_artifact(tx, path, ns, &from.0)?;
            let to_a = need_artifact(tx, path, ns, &to.0)?;
            let fid = need_file(tx, path, from_a, &from.0, &from.1)?;
            if let Some(existing) = file_id(tx, to_a, &to.1).sql(path)? {
                if existing == fid {
                    return Ok(Applied::Nothing);
                }
                delete_file(tx, existing).sql(path)?;
            }
            tx.execute(
                "UPDATE files SET artifact = ?1, name = ?2 WHERE id = ?3",
                params![to_a, to.1, fid],
            )
            .sql(path)?;
        }
        Change::RenameArtifact { ns, from, to } => {
            let aid = need_artifact(tx, path, ns, from)?;
            if let Some(existing) = artifact_id(tx, ns, to).sql(path)? {
                if existing == aid {
                    return Ok(Applied::Nothing);
                }
                let n: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM files WHERE artifact = ?1 AND quarantine IS NULL",
                        [existing],
                        |r| r.get(0),
                    )
                    .sql(path)?;
                if n > 0 {
                    return Err(Error::ArtifactExists(to.to_owned()));
                }
                delete_artifact(tx, existing).sql(path)?;
            }
            tx.execute(
                "UPDATE artifacts SET name = ?1 WHERE id = ?2",
                params![to, aid],
            )
            .sql(path)?;
        }
        Change::SetFileMeta {
            ns,
            artifact,
            file,
            mode,
            mtime_ns,
        } => {
            let aid = need_artifact(tx, path, ns, artifact)?;
            let fid = need_file(tx, path, aid, artifact, file)?;
            if let Some(m) = mode {
                tx.execute("UPDATE files SET mode = ?1 WHERE id = ?2", params![m, fid])
                    .sql(path)?;
            }
            if let Some(t) = mtime_ns {
                tx.execute(
                    "UPDATE files SET mtime_ns = ?1 WHERE id = ?2",
                    params![t, fid],
                )
                .sql(path)?;
            }
        }
        Change::RemoveQuarantined { ns, artifact } => {
            if let Some(name) = artifact {
                need_artifact(tx, path, ns, name)?;
            }
            let rows: Vec<(i64, u64, i64, String)> = tx
                .prepare_cached(
                    "SELECT f.id, f.size, a.id, a.name FROM files f JOIN artifacts a ON a.id = f.artifact
                     WHERE a.namespace = ?1 AND (?2 IS NULL OR a.name = ?2)
                       AND f.quarantine IS NOT NULL ORDER BY a.name",
                )
                .sql(path)?
                .query_map(params![ns, artifact], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .sql(path)?
                .collect::<rusqlite::Result<_>>()
                .sql(path)?;
            let mut dropped = Dropped {
                files: rows.len() as u64,
                bytes: rows.iter().map(|r| r.1).sum(),
                incomplete: Vec::new(),
            };
            for group in rows.chunk_by(|a, b| a.2 == b.2) {
                let aid = group[0].2;
                if missing_files(tx, aid).sql(path)?.is_empty() {
                    for r in group {
                        delete_file(tx, r.0).sql(path)?;
                    }
                } else {
                    delete_artifact(tx, aid).sql(path)?;
                    dropped.incomplete.push(group[0].3.clone());
                }
            }
            return Ok(Applied::Dropped(dropped));
        }
        Change::Void => {}
    }
    Ok(Applied::Nothing)
}

/// What applying a change gives back.
pub(crate) enum Applied {
    Nothing,
    /// `rm --quarantine`: what it dropped.
    Dropped(Dropped),
    /// A new pending row: its id.
    Row(i64),
}

/// The first pending row (quarantined, no chunks) alike `row` in all it
/// holds.
fn find_pending(conn: &Connection, row: &PendingRow) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT f.id FROM files f JOIN artifacts a ON a.id = f.artifact
         WHERE a.namespace = ?1 AND a.name = ?2 AND f.name = ?3 AND f.quarantine = ?4
           AND f.committed = ?5 AND NOT EXISTS (SELECT 1 FROM file_chunks WHERE file = f.id)
         ORDER BY f.id LIMIT 1",
        params![row.ns, row.artifact, row.name, row.reason, row.committed],
        |r| r.get(0),
    )
    .optional()
}

/// The `seq` of the last committed change (0 before the first).
fn journal_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'journal_seq'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Record `seq` as committed, and `pack` as a pack that holds committed
/// records (so that nothing takes it for a crashed writer's leftovers).
fn set_journal_seq(tx: &Transaction<'_>, seq: u64, pack: PackName) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('journal_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [seq.to_string()],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO packs(name) VALUES(?1)",
        [pack.to_string()],
    )?;
    Ok(())
}

/// Index rows for chunks a writer stored (rows that exist stay as they are).
fn insert_chunk_rows<'a>(
    tx: &Transaction<'_>,
    chunks: impl IntoIterator<Item = &'a (ChunkId, Location)>,
) -> rusqlite::Result<()> {
    let mut pack = tx.prepare_cached("INSERT OR IGNORE INTO packs(name) VALUES(?1)")?;
    let mut chunk = tx.prepare_cached(
        "INSERT OR IGNORE INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
         VALUES(?1, (SELECT id FROM packs WHERE name = ?2), ?3, ?4, ?5, ?6, 0)",
    )?;
    for (id, loc) in chunks {
        let pname = loc.pack.to_string();
        pack.execute([&pname])?;
        chunk.execute(params![
            &id.as_bytes()[..],
            pname,
            loc.offset as i64,
            loc.stored_len,
            loc.raw_len,
            loc.codec as u8
        ])?;
    }
    Ok(())
}

impl NewFile {
    /// The file as a manifest record names it.
    fn manifest(&self, quarantine: Option<&str>, committed: i64) -> FileManifest {
        FileManifest {
            name: self.meta.name.clone(),
            size: self.meta.size,
            mode: self.meta.mode,
            mtime_ns: self.meta.mtime_ns,
            committed,
            hash: self.hash,
            quarantine: quarantine.map(str::to_owned),
            chunks: self.chunks.clone(),
        }
    }
}

/// The files of an artifact as manifest records name them, quarantined
/// ones included, in row order.
fn artifact_manifests(conn: &Connection, aid: i64) -> rusqlite::Result<Vec<FileManifest>> {
    let files: Vec<(i64, FileManifest)> = conn
        .prepare_cached(
            "SELECT id, name, size, mode, mtime_ns, committed, hash, quarantine
             FROM files WHERE artifact = ?1 ORDER BY id",
        )?
        .query_map([aid], |r| {
            let hash: Vec<u8> = r.get(6)?;
            Ok((
                r.get(0)?,
                FileManifest {
                    name: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    mode: r.get::<_, i64>(3)? as u32,
                    mtime_ns: r.get(4)?,
                    committed: r.get(5)?,
                    hash: FileHash::from_slice(&hash).unwrap_or(FileHash([0; 32])),
                    quarantine: r.get(7)?,
                    chunks: Vec::new(),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(
        "SELECT fc.chunk, c.raw_len FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk
         WHERE fc.file = ?1 ORDER BY fc.seq",
    )?;
    let mut out = Vec::with_capacity(files.len());
    for (fid, mut f) in files {
        f.chunks = st
            .query_map([fid], |r| {
                let id: Vec<u8> = r.get(0)?;
                Ok((
                    ChunkId::from_slice(&id).unwrap_or(ChunkId([0; 32])),
                    r.get::<_, i64>(1)? as u32,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.push(f);
    }
    Ok(out)
}
