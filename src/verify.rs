//! `verify`: check the index's invariants, that every pack the index points
//! into is there and long enough, and (`full`) that every chunk decodes to
//! bytes with its BLAKE3. Problems are collected, one line each, naming the
//! chunk and the artifacts and files that use it.

use std::collections::HashSet;

use crate::error::Result;
use crate::pack::{self, PackName};
use crate::progress::Progress;
use crate::store::{par_map, Store};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Each problem as one line. Empty means the store is sound.
    pub problems: Vec<String>,
    pub packs: u64,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
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
