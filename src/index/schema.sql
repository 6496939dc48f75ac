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
    quarantine TEXT,
    form INTEGER NOT NULL DEFAULT 0
);
-- files.form: how the file is stored (format 4): 0 as-is (its file_chunks),
-- 1 the gzip form (file_streams + gzip_chunks; file_chunks only while its
-- hot copy is kept). A format-2/3 index gets the column by migration.
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
-- Format 4: the gzip form (store-layout.md, "Gzip files (format 4)").
-- A form-1 file's streams: 1 = the inflated content, 2 = the side data
-- that deflates it back bit for bit. These rows hold refs, as file_chunks'.
CREATE TABLE IF NOT EXISTS file_streams(
    file INTEGER NOT NULL REFERENCES files(id),
    stream INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    chunk BLOB NOT NULL REFERENCES chunks(id),
    offset INTEGER NOT NULL,
    PRIMARY KEY(file, stream, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_streams_chunk ON file_streams(chunk);
-- The ids and lengths of a form-1 file's gzip bytes' chunks (what its
-- digest commits to), for checking a rebuild and for promotion. No refs:
-- these chunks need not exist.
CREATE TABLE IF NOT EXISTS gzip_chunks(
    file INTEGER NOT NULL REFERENCES files(id),
    seq INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    raw_len INTEGER NOT NULL,
    PRIMARY KEY(file, seq)
) WITHOUT ROWID;
-- File digests conversion was tried on and did not convert, with why: not
-- tried again. A cache (no manifest record), like last_access.
CREATE TABLE IF NOT EXISTS gzip_tried(
    hash BLOB PRIMARY KEY,
    result TEXT NOT NULL
) WITHOUT ROWID;
-- A remote (store-layout.md, "Remote"): rows only in a store attached to
-- one; cache state of the remote, rebuilt from it.
-- Packs this host knows to be in the remote (uploaded, or named by a commit).
CREATE TABLE IF NOT EXISTS remote_packs(
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
-- Commit objects applied (or found older than the version they would
-- replace), by key.
CREATE TABLE IF NOT EXISTS remote_commits(
    key TEXT PRIMARY KEY
) WITHOUT ROWID;
-- Packs the remote's gc marked for deletion, or that a publish found gone
-- (store-layout.md, "gc of a remote"): chunks in them are not deduplicated
-- against, and a commit's location for a chunk wins over a row here.
CREATE TABLE IF NOT EXISTS remote_marked(
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
-- Each artifact's version in the remote: the key of its newest commit, and
-- the state of its rows then (a digest of its files' ids, names, digests,
-- quarantine and form): rows that differ from it are this host's changes,
-- not yet published. A row with a NULL state: removed in the remote.
CREATE TABLE IF NOT EXISTS remote_published(
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    state BLOB,
    PRIMARY KEY(namespace, name)
) WITHOUT ROWID;
