//! Names of artifacts and files. Both become directory entries in the FUSE
//! view and path components in `export`, so both must be valid single file
//! names: non-empty, at most 255 bytes, no `/`, no NUL, not `.` or `..`.
//! They are also UTF-8, because the index stores them as text.

use crate::error::{Error, Result};

pub const MAX_NAME_BYTES: usize = 255;

fn check(kind: &'static str, name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "a name must not be empty"
    } else if name == "." || name == ".." {
        "`.` and `..` are not names"
    } else if name.contains('/') {
        "a name must not contain `/`"
    } else if name.contains('\0') {
        "a name must not contain NUL"
    } else if name.len() > MAX_NAME_BYTES {
        "a name must be at most 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind,
        name: name.to_owned(),
        why,
    })
}

/// Validate an artifact name (normally a 40-hex fingerprint, but any valid file name).
pub fn check_artifact(name: &str) -> Result<()> {
    check("artifact name", name)
}

/// Validate the name of a file inside an artifact.
pub fn check_file(name: &str) -> Result<()> {
    check("file name", name)
}

/// Validate a namespace: like an artifact name, or empty for the default namespace.
pub fn check_namespace(ns: &str) -> Result<()> {
    if ns.is_empty() {
        Ok(())
    } else {
        check("namespace", ns)
    }
}

/// A file name from the OS as UTF-8, or a clear error.
pub fn from_os(kind: &'static str, name: &std::ffi::OsStr) -> Result<String> {
    match name.to_str() {
        Some(s) => {
            check(kind, s)?;
            Ok(s.to_owned())
        }
        None => Err(Error::InvalidName {
            kind,
            name: name.to_string_lossy().into_owned(),
            why: "names must be UTF-8; rename the file",
        }),
    }
}

/// The name a file was meant to end up with: rsync writes `NAME` as
/// `.NAME.XXXXXX` (mkstemp's six characters) and renames it once complete,
/// so a cut-short `.NAME.XXXXXX` stands for a missing `NAME`.
pub fn intended(name: &str) -> &str {
    let b = name.as_bytes();
    let n = b.len();
    let rsync_temp = n > 8
        && b[0] == b'.'
        && b[n - 7] == b'.'
        && b[n - 6..].iter().all(u8::is_ascii_alphanumeric);
    if rsync_temp {
        &name[1..n - 7]
    } else {
        name
    }
}

/// Names a cut-short (quarantined) file was meant to have and that no
/// visible file of the artifact has: while there is one, the artifact is
/// incomplete.
pub fn missing<'a>(quarantined: &'a [String], visible: &[&str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = quarantined
        .iter()
        .map(|q| intended(q))
        .filter(|n| !visible.contains(n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_cannot_be_a_directory_entry() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b", &"x".repeat(256)] {
            assert!(check_artifact(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "0123456789abcdef0123456789abcdef01234567",
            "env_1.img.gz",
            "..a",
            "a..",
            &"x".repeat(255),
        ] {
            assert!(check_artifact(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn rsync_temp_names_stand_for_their_target() {
        assert_eq!(intended(".env_1.img.gz.Ab3xZ9"), "env_1.img.gz");
        assert_eq!(intended("env_1.img.gz"), "env_1.img.gz");
        // Not mkstemp's pattern: kept as is.
        assert_eq!(intended(".hidden"), ".hidden");
        assert_eq!(intended(".a.b_c-d9"), ".a.b_c-d9");
        assert_eq!(intended("x.Ab3xZ9"), "x.Ab3xZ9");
    }

    #[test]
    fn an_artifact_misses_what_was_cut_short_and_not_written_since() {
        let q = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let quarantined = q(&["c.tar", ".e.img.gz.Ab12Cd", "c.tar", "d.img.gz"]);
        assert_eq!(
            missing(&quarantined, &["id_rsa", "d.img.gz"]),
            ["c.tar", "e.img.gz"]
        );
        assert!(missing(&quarantined, &["c.tar", "e.img.gz", "d.img.gz"]).is_empty());
        assert!(missing(&[], &["id_rsa"]).is_empty());
    }
}
