//! `verify`: check the index's invariants, that every pack the index points
//! into is there and long enough, and (`full`) every record of every pack:
//! its header (record magic, codec, lengths within the pack) and that its
//! payload decodes to bytes with its id's BLAKE3, indexed or not. Problems
//! are collected, one line each, naming the chunk and the artifacts and
//! files that use it.
//!
//! What is only the residue of an interrupted write is a note, not a
//! problem: packs no index row names, and a torn or unreadable tail after
//! the last record the index relies on (its chunks, and the manifest
//! records of committed changes).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::Result;
use crate::manifest::Record;
use crate::pack::{self, Location, PackName, RecordKind};
use crate::progress::Progress;
use crate::store::{par_map, Store};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Each problem as one line. Empty means the store is sound.
    pub problems: Vec<String>,
    /// Harmless findings, one line each (torn tails of interrupted writes).
    pub notes: Vec<String>,
    pub packs: u64,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    /// Manifest records found valid (`full` only).
    pub manifest_records: u64,
    /// Pack files no index row points into (left by interrupted writes;
    /// harmless, reclaimed by gc).
    pub unindexed_packs: u64,
    pub unindexed_pack_bytes: u64,
}

pub fn verify(store: &Store, full: bool, show_progress: bool) -> Result<Report> {
    let mut report = Report {
        problems: store.index().check_consistency()?,
        ..Report::default()
    };
    let packs = store.index().packs()?;
    report.packs = packs.len() as u64;
    let mut work = Vec::new();
    let mut total = 0u64;
    for p in &packs {
        let chunks = store.index().chunks_in_pack(*p)?;
        let path = store.pack_path(*p);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) => {
                // A pack named for its manifest records alone is not
                // reported here (a pack of chunks all stored elsewhere too
                // has a row like it): the replay in `check_records` finds
                // any change whose record went with it.
                if !chunks.is_empty() {
                    report.problems.push(format!(
                        "pack {} is missing ({e}); it holds {} chunks{}",
                        path.display(),
                        chunks.len(),
                        users(store, &chunks[0].0)
                    ));
                }
                continue;
            }
        };
        if let Some((id, loc)) = chunks
            .iter()
            .find(|(_, l)| l.offset + l.stored_len as u64 > size)
        {
            report.problems.push(format!(
                "pack {} is {size} bytes, but chunk {id} ends at {}{}",
                path.display(),
                loc.offset + loc.stored_len as u64,
                users(store, id)
            ));
        }
        total += chunks.iter().map(|(_, l)| l.stored_len as u64).sum::<u64>();
        work.push((*p, path, chunks));
    }
    if full {
        let progress = if show_progress {
            Progress::bytes(total, "verify")
        } else {
            Progress::hidden()
        };
        for (_, path, chunks) in &work {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    report
                        .problems
                        .push(format!("pack {}: {e}", path.display()));
                    continue;
                }
            };
            for part in chunks.chunks(32) {
                let results = par_map(part, 2, |(id, loc)| {
                    pack::read_payload(&file, path, loc)
                        .map_err(|e| e.to_string())
                        .and_then(|payload| pack::decode(id, loc, payload).map(|_| ()))
                });
                for ((id, loc), res) in part.iter().zip(results) {
                    report.chunks_checked += 1;
                    report.bytes_checked += loc.raw_len as u64;
                    progress.inc(loc.stored_len as u64);
                    if let Err(why) = res {
                        report.problems.push(format!(
                            "corrupt chunk {id} in pack {} at offset {}: {why}{}",
                            path.display(),
                            loc.offset,
                            users(store, id)
                        ));
                    }
                }
            }
        }
        progress.finish();
        let indexed: HashMap<PackName, Vec<Location>> = work
            .iter()
            .map(|(p, _, chunks)| (*p, chunks.iter().map(|(_, l)| *l).collect()))
            .collect();
        check_records(store, &indexed, &mut report)?;
    }
    let known: HashSet<PackName> = packs.into_iter().collect();
    for entry in walkdir::WalkDir::new(store.root().join("packs"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy();
        let Some(stem) = name.strip_suffix(".pack") else {
            continue;
        };
        if PackName::parse(stem).is_some_and(|p| !known.contains(&p)) {
            report.unindexed_packs += 1;
            report.unindexed_pack_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok(report)
}

/// A record that failed its check: where it starts, and why.
struct Bad {
    start: u64,
    why: String,
}

/// Scan every pack file on disk record by record (the index's chunks were
/// read above: they are skipped here). A failure before the end of the last
/// record the index relies on is a problem; after it, a torn tail.
fn check_records(
    store: &Store,
    indexed: &HashMap<PackName, Vec<Location>>,
    report: &mut Report,
) -> Result<()> {
    let journal_seq = store.index().journal_seq()?;
    let mut newest_found = false;
    let mut manifests = Vec::new();
    let mut packs: Vec<(PackName, std::path::PathBuf)> =
        walkdir::WalkDir::new(store.root().join("packs"))
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let stem = e.file_name().to_str()?.strip_suffix(".pack")?;
                Some((PackName::parse(stem)?, e.into_path()))
            })
            .collect();
    packs.sort();
    for (name, path) in packs {
        let none = Vec::new();
        let locs = indexed.get(&name).unwrap_or(&none);
        let at_indexed: HashSet<u64> = locs.iter().map(|l| l.offset).collect();
        // The end of the last record the index relies on.
        let mut relied_end = locs
            .iter()
            .map(|l| l.offset + l.stored_len as u64)
            .max()
            .unwrap_or(0);
        let (records, stop) = pack::scan(&path, name)?;
        let file = std::fs::File::open(&path).map_err(|e| crate::Error::io(&path, e))?;
        let todo: Vec<_> = records
            .iter()
            .filter(|r| r.kind == RecordKind::Manifest || !at_indexed.contains(&r.loc.offset))
            .collect();
        let mut bad = Vec::new();
        for part in todo.chunks(32) {
            let results = par_map(part, 2, |r| pack::check_record(&file, &path, r));
            for (rec, res) in part.iter().zip(results) {
                let start = rec.loc.offset - pack::RECORD_HEADER_LEN as u64;
                let res = res.and_then(|bytes| match rec.kind {
                    RecordKind::Chunk => Ok(None),
                    RecordKind::Manifest => Record::decode(&bytes).map(Some),
                });
                match res {
                    Ok(manifest) => {
                        report.chunks_checked += (rec.kind == RecordKind::Chunk) as u64;
                        if let Some(m) = manifest {
                            report.manifest_records += 1;
                            newest_found |= m.seq == journal_seq;
                            if m.seq <= journal_seq {
                                relied_end =
                                    relied_end.max(rec.loc.offset + rec.loc.stored_len as u64);
                            }
                            manifests.push((m, name));
                        }
                    }
                    Err(why) => {
                        let kind = match rec.kind {
                            RecordKind::Chunk => "chunk",
                            RecordKind::Manifest => "manifest",
                        };
                        bad.push(Bad {
                            start,
                            why: format!("{kind} record {} at offset {start}: {why}", rec.id),
                        });
                    }
                }
            }
        }
        if let Some(stop) = stop {
            bad.push(Bad {
                start: stop.at,
                why: stop.why,
            });
        }
        for b in bad {
            classify(&path, relied_end, b, report);
        }
    }
    if journal_seq > 0 && !newest_found {
        report.problems.push(format!(
            "the last committed change (#{journal_seq}) has no valid manifest record in any pack: a rebuild of the index would not recover it"
        ));
    }
    // What a rebuild would give back must be this index's artifacts.
    let differences = crate::index::replay_differences(&store.index(), manifests)?;
    let n = differences.len();
    for d in differences.into_iter().take(10) {
        report
            .problems
            .push(format!("a rebuild of the index would differ: {d}"));
    }
    if n > 10 {
        report.problems.push(format!(
            "a rebuild of the index would differ in {} more ways",
            n - 10
        ));
    }
    Ok(())
}

fn classify(path: &Path, relied_end: u64, b: Bad, report: &mut Report) {
    if b.start >= relied_end {
        report.notes.push(format!(
            "pack {}: torn tail from offset {} (past every record the index relies on; left by an interrupted write, harmless, reclaimed by gc): {}",
            path.display(),
            b.start,
            b.why
        ));
    } else {
        report.problems.push(format!(
            "pack {}: {} (records the index relies on follow it, up to offset {relied_end})",
            path.display(),
            b.why
        ));
    }
}

fn users(store: &Store, id: &crate::id::ChunkId) -> String {
    match store.index().chunk_users(id) {
        Ok(u) if u.is_empty() => "; no file uses it".into(),
        Ok(u) => {
            let list: Vec<String> = u
                .iter()
                .take(5)
                .map(|(a, f, o)| format!("{a}/{f} at offset {o}"))
                .collect();
            let more = if u.len() > 5 {
                format!(" and {} more", u.len() - 5)
            } else {
                String::new()
            };
            format!("; used by {}{more}", list.join(", "))
        }
        Err(e) => format!("; (could not list users: {e})"),
    }
}
