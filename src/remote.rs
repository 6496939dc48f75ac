//! The remote: a bucket of immutable objects that several hosts share
//! (issue 17). Each host keeps its own local store (index, packs it wrote
//! or read) as a cache of it.
//!
//! ```text
//! <remote>/FORMAT                        "deploycache-remote 1"
//! <remote>/packs/<32 hex>.pack           sealed packs, the local format
//! <remote>/commits/<key>.commit          one per committed artifact version
//! ```
//! (store-layout.md, "Remote", has the contract.)
//!
//! Where objects live is a [`Bucket`]: an S3-compatible object store
//! (`s3://BUCKET[/PREFIX]`, module `s3`) or a directory (`file:///PATH`,
//! module `dir`), e.g. on the NFS export the jumphosts already share. A bucket
//! only ever gets whole objects written once under a new key, read (whole or
//! by byte range), listed and deleted: what every S3 server does the same
//! way. Nothing relies on conditional writes, object locks or the order of
//! a listing beyond key order.
//!
//! - `dir`: [`DirBucket`], objects as files;
//! - `s3`: [`S3Bucket`], objects in an S3 bucket through `object_store`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};

pub mod commit;
mod dir;
pub mod gc;
pub mod packs;
mod s3;

pub use commit::Commit;
pub use dir::DirBucket;
pub use packs::RemotePacks;
pub use s3::{S3Bucket, S3Config};

/// An object as [`Bucket::list`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key, relative to the remote's prefix (`packs/….pack`).
    pub key: String,
    pub size: u64,
    /// When the storage last wrote it, by the storage's clock, in
    /// nanoseconds since the Unix epoch.
    pub modified_ns: i64,
}

/// Where a remote's objects live.
///
/// Keys are relative to the remote's prefix, `/`-separated, of the
/// characters `[0-9A-Za-z._/-]`. Errors: an object that is not there fails
/// with [`Error::errno`] ENOENT; anything else the server or the network
/// says is an [`Error::Remote`] naming the object. Methods take `&self`
/// and may be called from many threads at once; none blocks another.
pub trait Bucket: Send + Sync {
    /// Write `body` as `key`, whole: a reader sees all of it or no object.
    /// Overwriting an existing key is allowed (the same bytes, when a
    /// write is retried) but never relied on.
    fn put(&self, key: &str, body: &[u8]) -> Result<()>;

    /// Upload the file at `path` as `key` (in parts when it is large),
    /// whole or not at all; returns the bytes sent.
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<u64>;

    /// The whole of `key`.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// Bytes `range` of `key`: all of them, or an error (a range past the
    /// object's end is an error, not a short read).
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// `key`'s size and time, or None when there is no such object.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>>;

    /// Delete `key`; one already gone is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// The remote and `key` as a URL, for messages.
    fn url(&self, key: &str) -> String;
}

/// Where a remote is, as given to `--remote` or `$DEPLOYCACHE_REMOTE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// `s3://BUCKET[/PREFIX]`: endpoint, region and credentials from the
    /// usual `AWS_*` variables.
    S3 { bucket: String, prefix: String },
    /// `file:///PATH`: a directory, e.g. on an NFS export.
    Dir(std::path::PathBuf),
}

impl RemoteUrl {
    /// Parse `s3://BUCKET[/PREFIX]` or `file:///PATH`.
    pub fn parse(s: &str) -> Result<RemoteUrl> {
        let bad = |why: &str| Error::Usage(format!("--remote {s:?}: {why}"));
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad(
                    "no bucket name: give s3://BUCKET or s3://BUCKET/PREFIX",
                ));
            }
            let prefix = prefix.trim_matches('/').to_owned();
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(bad("`.` and `..` are not prefix parts"));
            }
            Ok(RemoteUrl::S3 {
                bucket: bucket.to_owned(),
                prefix,
            })
        } else if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file:// remote takes an absolute path: file:///iso_mount/…",
                ));
            }
            Ok(RemoteUrl::Dir(path.into()))
        } else {
            Err(bad(
                "a remote is s3://BUCKET[/PREFIX] or file:///PATH (an absolute directory)",
            ))
        }
    }

    /// The bucket this URL names.
    pub fn open(&self) -> Result<Arc<dyn Bucket>> {
        Ok(match self {
            RemoteUrl::S3 { bucket, prefix } => Arc::new(S3Bucket::from_env(bucket, prefix)?),
            RemoteUrl::Dir(path) => Arc::new(DirBucket::new(path)?),
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteUrl::Dir(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Objects [`get_each`] fetches at once, and on how many threads.
const GET_WINDOW: usize = 64;
const GET_THREADS: usize = 8;

/// Fetch the objects `keys`, several at once (many small GETs are bound by
/// the round trip, not the bandwidth: against radosgw on loopback one
/// commit object takes ~45 ms alone), and hand each to `f`, in order.
/// Memory holds one window of objects at a time.
pub fn get_each(
    bucket: &dyn Bucket,
    keys: &[String],
    mut f: impl FnMut(&str, Result<Vec<u8>>) -> Result<()>,
) -> Result<()> {
    for window in keys.chunks(GET_WINDOW) {
        let got = crate::store::par_map(window, GET_THREADS, |k| bucket.get(k));
        for (k, g) in window.iter().zip(got) {
            f(k, g)?;
        }
    }
    Ok(())
}

/// Whether `key` is one a [`Bucket`] takes: relative, `/`-separated parts
/// of `[0-9A-Za-z._-]`, none of them empty, `.` or `..`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        for (s, want) in [
            (
                "s3://ci-cache",
                RemoteUrl::S3 {
                    bucket: "ci-cache".into(),
                    prefix: "".into(),
                },
            ),
            (
                "s3://ci-cache/opnfv/master/",
                RemoteUrl::S3 {
                    bucket: "ci-cache".into(),
                    prefix: "opnfv/master".into(),
                },
            ),
            (
                "file:///iso_mount/opnfv_ci/deploycache",
                RemoteUrl::Dir("/iso_mount/opnfv_ci/deploycache".into()),
            ),
        ] {
            assert_eq!(RemoteUrl::parse(s).unwrap(), want, "{s}");
        }
        assert_eq!(
            RemoteUrl::parse("s3://b/p/").unwrap().to_string(),
            "s3://b/p"
        );
        for bad in [
            "s3://",
            "s3:///x",
            "file://rel/path",
            "http://x",
            "/abs",
            "s3://b/../x",
        ] {
            let e = RemoteUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_are_plain() {
        assert!(valid_key("packs/0a.pack"));
        assert!(valid_key("commits/x-1.commit"));
        assert!(valid_key("FORMAT"));
        for k in [
            "", "/a", "a/", "a//b", "../a", "a/./b", "a b", "a\\b", "a\u{e9}",
        ] {
            assert!(!valid_key(k), "{k:?}");
        }
    }
}
