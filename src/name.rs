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
}
