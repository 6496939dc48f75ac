//! Python 2.7's `os.walk(top)` (top-down, `followlinks=False`, no `onerror`).
//!
//! Invariants:
//! - A directory's entry is yielded before any of its subdirectories; each
//!   subdirectory is walked completely before the next one.
//! - Directory paths are built like `os.path.join`: the root exactly as given,
//!   then `/name` per level (no extra `/` after a root that already ends in one).
//! - An entry is a "directory" if `stat` (following symlinks) says so; symlinked
//!   directories are listed but not descended into. Everything else (including
//!   broken symlinks) is a file.
//! - A directory that cannot be listed is skipped silently, the root included.
//! - [`WalkOrder::Os`] keeps the order the OS lists entries in (what the
//!   original did); [`WalkOrder::Sorted`] orders siblings by raw name bytes.
//! - The walk uses an explicit stack: depth is bounded by memory, not the
//!   thread's stack.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// How siblings are ordered during the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkOrder {
    /// The order the filesystem lists entries in, as Python's `os.listdir`.
    Os,
    /// Raw byte order of the names: reproducible on any filesystem.
    Sorted,
}

/// One directory visited by the walk.
pub struct WalkEntry {
    /// The directory path as `os.walk` yields it (bytes).
    pub dirpath: Vec<u8>,
    /// Names of the non-directory entries, in walk order.
    pub files: Vec<OsString>,
}

/// `os.path.join(top, name)` on bytes.
pub fn join(top: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(top.len() + name.len() + 1);
    out.extend_from_slice(top);
    if !(top.is_empty() || top.ends_with(b"/")) {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Walk `root`, calling `visit` for every listable directory, in walk order.
/// Stops at the first error `visit` returns.
pub fn walk<E>(
    root: &Path,
    order: WalkOrder,
    mut visit: impl FnMut(&WalkEntry) -> Result<(), E>,
) -> Result<(), E> {
    let mut stack: Vec<Vec<u8>> = vec![root.as_os_str().as_bytes().to_vec()];
    while let Some(top) = stack.pop() {
        let Some(mut names) = list_dir(&top) else {
            continue;
        };
        if order == WalkOrder::Sorted {
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        }
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for name in names {
            let path = join(&top, name.as_bytes());
            let is_dir = std::fs::metadata(OsStr::from_bytes(&path)).is_ok_and(|m| m.is_dir());
            if is_dir {
                dirs.push(path);
            } else {
                files.push(name);
            }
        }
        visit(&WalkEntry {
            dirpath: top,
            files,
        })?;
        for path in dirs.into_iter().rev() {
            let is_link = std::fs::symlink_metadata(OsStr::from_bytes(&path))
                .is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// `os.listdir`, or `None` where it would raise.
fn list_dir(top: &[u8]) -> Option<Vec<OsString>> {
    let path: &Path = OsStr::from_bytes(top).as_ref();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).ok()? {
        names.push(entry.ok()?.file_name());
    }
    Some(names)
}

/// Convenience for tests and messages: an `OsString` from bytes.
pub fn os_string(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn collect(root: &Path, order: WalkOrder) -> Vec<String> {
        let mut out = Vec::new();
        walk::<()>(root, order, |e| {
            let dir = String::from_utf8_lossy(&e.dirpath).into_owned();
            out.push(format!("D {dir}"));
            for f in &e.files {
                out.push(format!("F {}", f.to_string_lossy()));
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn sorted_walk_is_files_then_subdirs_depth_first_by_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        for d in ["a/b", "a-b", "a.b", "B", "zeta", "\u{fc}"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("z-file"), "").unwrap();
        fs::write(r.join("a/Release"), "").unwrap();
        fs::write(r.join("a/b/Release"), "").unwrap();
        let root = r.to_string_lossy().into_owned();
        let got = collect(r, WalkOrder::Sorted);
        let want: Vec<String> = [
            format!("D {root}"),
            "F z-file".into(),
            format!("D {root}/B"),
            format!("D {root}/a"),
            "F Release".into(),
            format!("D {root}/a/b"),
            "F Release".into(),
            format!("D {root}/a-b"),
            format!("D {root}/a.b"),
            format!("D {root}/zeta"),
            format!("D {root}/\u{fc}"),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn symlinked_dirs_are_listed_not_followed_and_root_slash_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("real")).unwrap();
        fs::write(r.join("real/f"), "").unwrap();
        std::os::unix::fs::symlink(r.join("real"), r.join("link")).unwrap();
        std::os::unix::fs::symlink(r.join("missing"), r.join("dangling")).unwrap();
        let with_slash = format!("{}/", r.display());
        let got = collect(Path::new(&with_slash), WalkOrder::Sorted);
        assert_eq!(
            got,
            [
                format!("D {with_slash}"),
                "F dangling".into(),
                format!("D {with_slash}real"),
                "F f".into(),
            ]
        );
    }

    #[test]
    fn missing_root_yields_nothing() {
        assert!(collect(Path::new("/nonexistent/deploycache-walk"), WalkOrder::Os).is_empty());
    }

    #[test]
    fn os_order_visits_the_same_entries() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..20 {
            fs::create_dir_all(tmp.path().join(format!("d{i}/e"))).unwrap();
            fs::write(tmp.path().join(format!("d{i}/f{i}")), "").unwrap();
        }
        let mut a = collect(tmp.path(), WalkOrder::Os);
        let mut b = collect(tmp.path(), WalkOrder::Sorted);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
