//! `import`: adopt a plain cache directory. Each `DIR/<name>/` holding
//! regular files becomes artifact `<name>`. Idempotent and resumable: each
//! artifact commits on its own, and an artifact already stored with the
//! same file names, sizes and mtimes is skipped. Each file gets the
//! completeness check of the mount (`check`) as it is read: one cut short
//! (the legacy cache's own failure: a killed `scp` leaves a truncated file
//! that the next run takes for a hit) is kept aside, leaving its artifact
//! incomplete, so the next run fills it again. Symbolic links are never
//! followed: an artifact directory that is a link, or that holds one, is
//! skipped and named.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::name;
use crate::progress::Progress;
use crate::store::Store;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportReport {
    pub imported: Vec<String>,
    pub already_present: Vec<String>,
    /// (entry, why) for entries that are not artifacts: empty directories,
    /// plain files at the top level, names that cannot be artifact names.
    pub skipped: Vec<(String, String)>,
    /// (artifact, file, why) for files found cut short (a truncated `.gz`
    /// or `.tar`, as a killed `scp` leaves): kept aside (quarantined), which
    /// leaves their artifact incomplete, so it does not look cached.
    pub cut_short: Vec<(String, String, String)>,
    pub logical_bytes: u64,
}

/// What [`adopt`] did with a plain cache under a mountpoint.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AdoptReport {
    pub import: ImportReport,
    /// Empty artifact directories (cache misses in progress) now stored as
    /// empty artifacts.
    pub empty_artifacts: Vec<String>,
    /// (entry, why) for entries neither imported nor kept as empty
    /// artifacts: they stay in the directory underneath the mount.
    pub not_adopted: Vec<(String, String)>,
}

struct Candidate {
    name: String,
    dir: PathBuf,
    files: Vec<(String, u64, i64)>,
}

fn scan(dir: &Path, report: &mut ImportReport) -> Result<Vec<Candidate>> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .at(dir)?
        .collect::<std::io::Result<_>>()
        .at(dir)?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for e in entries {
        let path = e.path();
        let shown = e.file_name().to_string_lossy().into_owned();
        // Links are skipped, never followed (here and inside artifacts): a
        // user who can write into a plain cache that root imports could
        // otherwise have any file root can read copied into the store.
        let md = fs::symlink_metadata(&path).at(&path)?;
        if md.is_symlink() {
            report.skipped.push((
                shown,
                "a symbolic link (not followed: links are never imported)".into(),
            ));
            continue;
        }
        if !md.is_dir() {
            report.skipped.push((shown, "not a directory".into()));
            continue;
        }
        let name = match name::from_os("artifact name", &e.file_name()) {
            Ok(n) => n,
            Err(err) => {
                report.skipped.push((shown, err.to_string()));
                continue;
            }
        };
        let mut files = Vec::new();
        let mut other = None;
        for f in fs::read_dir(&path).at(&path)? {
            let f = f.at(&path)?;
            let fmd = fs::symlink_metadata(f.path()).at(f.path())?;
            if fmd.is_file() {
                files.push((
                    f.file_name().to_string_lossy().into_owned(),
                    fmd.len(),
                    fmd.mtime() * 1_000_000_000 + fmd.mtime_nsec(),
                ));
            } else if other.is_none() {
                let kind = if fmd.is_dir() {
                    "a directory"
                } else if fmd.is_symlink() {
                    "a symbolic link (links are never followed)"
                } else {
                    "not a regular file"
                };
                other = Some((f.file_name().to_string_lossy().into_owned(), kind));
            }
        }
        if let Some((entry, kind)) = other {
            report.skipped.push((
                shown,
                format!(
                    "holds {entry:?}, {kind}: an artifact is a directory of regular files \
                     (move it out, then import again)"
                ),
            ));
        } else if files.is_empty() {
            report
                .skipped
                .push((shown, "empty (a cache miss, nothing to import)".into()));
        } else {
            files.sort();
            out.push(Candidate {
                name,
                dir: path,
                files,
            });
        }
    }
    Ok(out)
}

/// Whether artifact `c` is stored with the same files (names, sizes,
/// mtimes), counting those kept aside as cut short.
fn already_stored(
    store: &Store,
    c: &Candidate,
    kept: &[crate::index::QuarantineEntry],
) -> Result<bool> {
    let stored = match store.list_files(&c.name) {
        Ok(f) => f,
        Err(crate::Error::NoArtifact(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let kept = kept
        .iter()
        .filter(|q| q.artifact == c.name)
        .map(|q| &q.file);
    let mut have: Vec<(String, u64, i64)> = stored
        .iter()
        .chain(kept)
        .map(|f| (f.meta.name.clone(), f.meta.size, f.meta.mtime_ns))
        .collect();
    have.sort();
    Ok(have == c.files)
}

pub fn import(store: &Store, dir: &Path, show_progress: bool) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut todo = Vec::new();
    let kept = store.list_quarantine()?;
    for c in scan(dir, &mut report)? {
        if already_stored(store, &c, &kept)? {
            report.already_present.push(c.name);
        } else {
            todo.push(c);
        }
    }
    let total: u64 = todo.iter().flat_map(|c| c.files.iter().map(|f| f.1)).sum();
    let progress = if show_progress {
        Progress::bytes(total, "import")
    } else {
        Progress::hidden()
    };
    for c in todo {
        progress.set_message(c.name.clone());
        let inputs: Vec<(PathBuf, String, u64)> = c
            .files
            .iter()
            .map(|(f, size, _)| (c.dir.join(f), f.clone(), *size))
            .collect();
        let (mut whole, mut cut) = (Vec::new(), Vec::new());
        for (staged, verdict) in store.stage_all_checked(&inputs, &progress)? {
            match verdict {
                Ok(()) => whole.push(staged),
                Err(why) => {
                    let file = staged.meta.name.clone();
                    report.cut_short.push((c.name.clone(), file, why.clone()));
                    cut.push((staged, why));
                }
            }
        }
        report.logical_bytes += whole.iter().map(|s| s.meta.size).sum::<u64>();
        store.commit_artifact_with(&c.name, whole, cut, true)?;
        report.imported.push(c.name);
    }
    progress.finish();
    Ok(report)
}

/// `mount --adopt`: [`import`] the plain cache in `dir`, and keep its empty
/// artifact directories (cache misses in progress) as empty artifacts, so
/// that the mount over `dir` still shows them.
pub fn adopt(store: &Store, dir: &Path, show_progress: bool) -> Result<AdoptReport> {
    let import = import(store, dir, show_progress)?;
    let mut report = AdoptReport::default();
    for (entry, why) in &import.skipped {
        let p = dir.join(entry);
        if p.is_dir() && fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none()) {
            match store.create_empty_artifact(entry) {
                Ok(()) => {
                    report.empty_artifacts.push(entry.clone());
                    continue;
                }
                Err(crate::Error::ArtifactExists(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        report.not_adopted.push((entry.clone(), why.clone()));
    }
    report.import = import;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpenOptions;

    /// `mount --adopt` imports the artifacts, keeps an empty artifact
    /// directory (a cache miss being filled) as an empty artifact, and
    /// names what stays underneath; adopting again changes nothing.
    #[test]
    fn adopt_keeps_empty_artifact_dirs_and_names_what_it_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        fs::create_dir_all(cache.join("aaa")).unwrap();
        fs::write(cache.join("aaa/x.yaml"), b"x: 1\n").unwrap();
        fs::create_dir_all(cache.join("bbb")).unwrap();
        fs::write(cache.join("stray.txt"), b"").unwrap();
        let store = Store::open(
            &tmp.path().join("store"),
            OpenOptions {
                create: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let stray = ("stray.txt".to_owned(), "not a directory".to_owned());

        let r = adopt(&store, &cache, false).unwrap();
        assert_eq!(r.import.imported, ["aaa"]);
        assert_eq!(r.empty_artifacts, ["bbb"]);
        assert_eq!(r.not_adopted, std::slice::from_ref(&stray));
        let names: Vec<String> = store.list().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["aaa", "bbb"]);
        assert!(store.list_files("bbb").unwrap().is_empty());

        let r = adopt(&store, &cache, false).unwrap();
        assert_eq!(r.import.already_present, ["aaa"]);
        assert!(r.import.imported.is_empty() && r.empty_artifacts.is_empty());
        assert_eq!(r.not_adopted, [stray]);
    }
}
