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

use super::{par_map, Store};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::manifest::Record;
use crate::pack::{self, Location, PackName, RecordKind};
use crate::progress::Progress;

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

/// Records checked in parallel at a time, and on how many threads.
const BATCH: usize = 32;
const THREADS: usize = 2;

impl Store {
    /// Check the store; see the module doc. `full` reads every record.
    pub fn verify(&self, full: bool, show_progress: bool) -> Result<Report> {
        let mut report = Report {
            problems: self.index().check_consistency()?,
            ..Report::default()
        };
        let indexed_packs = self.index().packs()?;
        report.packs = indexed_packs.len() as u64;
        let mut work = Vec::new();
        let mut total = 0u64;
        for p in &indexed_packs {
            let chunks = self.index().chunks_in_pack(*p)?;
            let size = match self.core.packs.size(*p) {
                Ok(s) => s,
                Err(e) => {
                    // A pack named for its manifest records alone is not
                    // reported here (a pack of chunks all stored elsewhere
                    // too has a row like it): the replay in `check_records`
                    // finds any change whose record went with it.
                    if !chunks.is_empty() {
                        report.problems.push(format!(
                            "pack {} is missing ({}); it holds {} chunks{}",
                            self.core.packs.describe(*p),
                            cause(&e),
                            chunks.len(),
                            self.users(&chunks[0].0)
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
                    self.core.packs.describe(*p),
                    loc.offset + loc.stored_len as u64,
                    self.users(id)
                ));
            }
            total += chunks.iter().map(|(_, l)| l.stored_len as u64).sum::<u64>();
            work.push((*p, chunks));
        }
        let on_disk = self.core.packs.list()?;
        if full {
            let progress = if show_progress {
                Progress::bytes(total, "verify")
            } else {
                Progress::hidden()
            };
            for (p, chunks) in &work {
                self.check_chunks(*p, chunks, &progress, &mut report);
            }
            progress.finish();
            let indexed: HashMap<PackName, Vec<Location>> = work
                .iter()
                .map(|(p, chunks)| (*p, chunks.iter().map(|(_, l)| *l).collect()))
                .collect();
            self.check_records(&on_disk, &indexed, &mut report)?;
            self.check_cold_files(&mut report)?;
        }
        let known: HashSet<PackName> = indexed_packs.into_iter().collect();
        for p in on_disk.iter().filter(|p| !known.contains(&p.name)) {
            report.unindexed_packs += 1;
            report.unindexed_pack_bytes += p.size;
        }
        Ok(report)
    }

    /// Rebuild every gzip-form file that has no hot copy and check it
    /// against its gzip chunk ids, without promoting it (a hot file's
    /// chunks were checked with every other chunk).
    fn check_cold_files(&self, report: &mut Report) -> Result<()> {
        let cold = self.index().cold_files()?;
        for (artifact, row) in cold {
            let name = row.meta.name.clone();
            let res = self.reader_for(&artifact, row).and_then(|r| {
                let mut pieces = r.rebuild()?;
                while pieces.next_piece()?.is_some() {}
                Ok(pieces.offset())
            });
            match res {
                Ok(bytes) => report.bytes_checked += bytes,
                Err(e) => report.problems.push(format!(
                    "artifact {artifact:?} file {name:?}: its gzip form does not rebuild it: {e}"
                )),
            }
        }
        Ok(())
    }

    /// Read, decode and check the indexed chunks of pack `p`.
    fn check_chunks(
        &self,
        p: PackName,
        chunks: &[(ChunkId, Location)],
        progress: &Progress,
        report: &mut Report,
    ) {
        for part in chunks.chunks(BATCH) {
            let results = par_map(part, THREADS, |(id, loc)| {
                pack::check_record(&*self.core.packs, id, loc).map(drop)
            });
            for ((id, loc), res) in part.iter().zip(results) {
                report.chunks_checked += 1;
                report.bytes_checked += loc.raw_len as u64;
                progress.inc(loc.stored_len as u64);
                if let Err(why) = res {
                    report.problems.push(format!(
                        "corrupt chunk {id} in pack {} at offset {}: {why}{}",
                        self.core.packs.describe(p),
                        loc.offset,
                        self.users(id)
                    ));
                }
            }
        }
    }

    /// Scan every pack record by record (the index's chunks were read
    /// above: they are skipped here). A failure before the end of the last
    /// record the index relies on is a problem; after it, a torn tail.
    fn check_records(
        &self,
        on_disk: &[pack::PackInfo],
        indexed: &HashMap<PackName, Vec<Location>>,
        report: &mut Report,
    ) -> Result<()> {
        let journal_seq = self.index().journal_seq()?;
        let mut newest_found = false;
        let mut manifests = Vec::new();
        for info in on_disk {
            let name = info.name;
            let none = Vec::new();
            let locs = indexed.get(&name).unwrap_or(&none);
            let at_indexed: HashSet<u64> = locs.iter().map(|l| l.offset).collect();
            // The end of the last record the index relies on.
            let mut relied_end = locs
                .iter()
                .map(|l| l.offset + l.stored_len as u64)
                .max()
                .unwrap_or(0);
            let (records, stop) = pack::scan(&*self.core.packs, name, info.size)?;
            let todo: Vec<_> = records
                .iter()
                .filter(|r| r.kind == RecordKind::Manifest || !at_indexed.contains(&r.loc.offset))
                .collect();
            let mut bad = Vec::new();
            for part in todo.chunks(BATCH) {
                let results = par_map(part, THREADS, |r| {
                    pack::check_record(&*self.core.packs, &r.id, &r.loc)
                });
                for (rec, res) in part.iter().zip(results) {
                    let start = rec.loc.record_range().start;
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
                                    relied_end = relied_end.max(rec.loc.record_range().end);
                                }
                                manifests.push((m, name));
                            }
                        }
                        Err(why) => bad.push(Bad {
                            start,
                            why: format!(
                                "{} record {} at offset {start}: {why}",
                                rec.kind.as_str(),
                                rec.id
                            ),
                        }),
                    }
                }
            }
            if let Some(stop) = stop {
                bad.push(Bad {
                    start: stop.at,
                    why: stop.why,
                });
            }
            let place = self.core.packs.describe(name);
            for b in bad {
                classify(&place, relied_end, b, report);
            }
        }
        if journal_seq > 0 && !newest_found {
            report.problems.push(format!(
                "the last committed change (#{journal_seq}) has no valid manifest record in any pack: a rebuild of the index would not recover it"
            ));
        }
        // What a rebuild would give back must be this index's artifacts.
        let differences = crate::index::replay_differences(&self.index(), manifests)?;
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

    /// "; used by a/f at offset o, …" for a problem line about chunk `id`.
    fn users(&self, id: &ChunkId) -> String {
        match self.index().chunk_users(id) {
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
}

/// A record that failed its check: where it starts, and why.
struct Bad {
    start: u64,
    why: String,
}

fn classify(place: &str, relied_end: u64, b: Bad, report: &mut Report) {
    if b.start >= relied_end {
        report.notes.push(format!(
            "pack {place}: torn tail from offset {} (past every record the index relies on; left by an interrupted write, harmless, reclaimed by gc): {}",
            b.start,
            b.why
        ));
    } else {
        report.problems.push(format!(
            "pack {place}: {} (records the index relies on follow it, up to offset {relied_end})",
            b.why
        ));
    }
}

/// An error without the path a problem line names already.
fn cause(e: &Error) -> String {
    match e {
        Error::Io { error, .. } => error.to_string(),
        e => e.to_string(),
    }
}
