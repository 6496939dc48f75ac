//! `verify --rebuild-index`: a new index from the packs alone, put in place
//! of the old one, which is kept beside it (store-layout.md, "Rebuilding
//! the index").

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::open::check_format;
use super::{FORMAT_FILE, INDEX_FILE};
use crate::error::{Error, IoContext, Result};
use crate::index::{Index, RebuildReport, ScannedPacks};
use crate::manifest::Record;
use crate::pack::{self, LocalPackStore, PackStore, RecordKind};
use crate::perms;

/// What `rebuild_index` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuilt {
    #[serde(flatten)]
    pub report: RebuildReport,
    /// Pack files read, and the records in them that were used.
    pub packs: u64,
    pub chunk_records: u64,
    pub manifest_records: u64,
    /// Records (or pack tails) that could not be used, one line each: a
    /// torn tail left by an interrupted write, or damage.
    pub unusable: Vec<String>,
    /// Where the index that was there before now is (None: there was none).
    pub old_index: Option<PathBuf>,
    /// A store with a remote: chunks located in the remote's packs.
    pub remote_chunks: u64,
}

/// Rebuild the index of the store at `root` from its packs. Needs the store
/// to itself (no mount or put may have it open); the old index files, if
/// any, are kept as `index.sqlite.before-rebuild-<unix time>` (and -wal,
/// -shm).
pub fn rebuild_index(root: &Path) -> Result<Rebuilt> {
    let format_path = root.join(FORMAT_FILE);
    let format = match fs::read_to_string(&format_path) {
        Ok(s) => check_format(root, &s)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NoStore(root.to_owned()))
        }
        Err(e) => return Err(Error::io(&format_path, e)),
    };
    if format == 1 {
        return Err(Error::Index {
            path: root.join(INDEX_FILE),
            message: "this is a format-1 store, whose packs hold no manifest records: its artifacts cannot be rebuilt from them. Restore index.sqlite from a backup; opening the store (any command) migrates it to format 2, after which a rebuild is possible".into(),
        });
    }
    let lock_path = root.join("lock");
    let lock = perms::open_file(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        &lock_path,
    )?;
    if lock.try_lock().is_err() {
        return Err(Error::StoreBusy(root.to_owned()));
    }
    let (mut scanned, mut rebuilt) = scan_packs(&LocalPackStore::new(root.join("packs")))?;
    // A store caching a remote: the chunks only the remote holds are
    // located by its commits (so that this host's own changes that name
    // them replay); its artifacts come back with the next pull.
    if let Some(link) = super::remote::resolve(root, None)? {
        rebuilt.remote_chunks = super::remote::locate_remote_chunks(
            &*link.bucket,
            &mut scanned,
            &mut rebuilt.unusable,
        )?;
    }

    let tmp = root.join(format!("{INDEX_FILE}.rebuild"));
    remove_index_files(&tmp)?;
    // Created owner-only first: SQLite gives its -wal and -shm the mode
    // of the database file.
    perms::open_file(fs::OpenOptions::new().write(true).create(true), &tmp)?;
    let mut ix = Index::open(&tmp)?;
    rebuilt.report = ix.rebuild_from(scanned)?;
    drop(ix); // checkpoints the WAL into the file and removes it

    let old = root.join(INDEX_FILE);
    if old.exists() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = root.join(format!("{INDEX_FILE}.before-rebuild-{secs}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", old.display()));
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&from, e)),
            }
        }
        rebuilt.old_index = Some(aside);
    } else {
        remove_index_files(&old)?;
    }
    fs::rename(&tmp, &old).at(&old)?;
    pack::sync_dir(root)?;
    drop(lock);
    Ok(rebuilt)
}

/// Remove an index file and its -wal and -shm.
fn remove_index_files(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(())
}

/// Read every record of every pack, checking each against its id.
fn scan_packs(packs: &dyn PackStore) -> Result<(ScannedPacks, Rebuilt)> {
    let names = packs.list()?;
    let mut scanned = ScannedPacks::default();
    let mut rebuilt = Rebuilt {
        report: RebuildReport::default(),
        packs: names.len() as u64,
        chunk_records: 0,
        manifest_records: 0,
        unusable: Vec::new(),
        old_index: None,
        remote_chunks: 0,
    };
    let mut seen = HashSet::new();
    for info in names {
        let name = info.name;
        let place = packs.describe(name);
        let (records, stop) = pack::scan(packs, name, info.size)?;
        for rec in records {
            let bad = |why: String| {
                format!(
                    "pack {place}: record at offset {}: {why}",
                    rec.loc.record_range().start
                )
            };
            let bytes = match pack::check_record(packs, &rec.id, &rec.loc) {
                Ok(b) => b,
                Err(why) => {
                    rebuilt.unusable.push(bad(why));
                    continue;
                }
            };
            match rec.kind {
                RecordKind::Chunk => {
                    rebuilt.chunk_records += 1;
                    if seen.insert(rec.id) {
                        scanned.chunks.push((rec.id, rec.loc));
                    }
                }
                RecordKind::Manifest => match Record::decode(&bytes) {
                    Ok(r) => {
                        rebuilt.manifest_records += 1;
                        scanned.records.push((r, name));
                    }
                    Err(why) => rebuilt.unusable.push(bad(why)),
                },
            }
        }
        if let Some(stop) = stop {
            rebuilt.unusable.push(format!("pack {place}: {}", stop.why));
        }
    }
    Ok((scanned, rebuilt))
}
