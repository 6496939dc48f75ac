//! A remote in an S3-compatible bucket (`s3://BUCKET[/PREFIX]`): AWS S3,
//! Ceph's RADOS gateway, MinIO. Each object is `PREFIX/<key>` in the bucket.
//!
//! `object_store` (async) does the HTTP, the signing and the retries; an
//! [`S3Bucket`] owns a small tokio runtime and blocks on it, so callers (the
//! FUSE callbacks among them) stay synchronous. Calls from many threads run
//! at once: each blocks only its own thread.
//!
//! A PUT is atomic on every S3 server: a reader sees the whole object or
//! none. A large file goes up in parts; a failed upload is aborted (its
//! parts dropped), and one cut short by a crash is never visible as an
//! object either (the bucket may keep its parts until a lifecycle rule
//! `AbortIncompleteMultipartUpload` drops them).
//!
//! A 404 means "no such object" only once the bucket is known to exist (a
//! HEAD's 404 carries no body to tell the two apart): the first 404 lists
//! the bucket once to find out.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

use super::{valid_key, Bucket, ObjectInfo};
use crate::error::{Error, IoContext, Result};

mod config;
mod message;

pub use config::S3Config;
use message::chain;

/// Files larger than this go up in parts: one PUT of a pack (they seal past
/// 64 MiB) would be resent whole after any failure, and parts go in parallel.
const MULTIPART_OVER: u64 = 16 << 20;
/// The size of each part (S3 takes 5 MiB to 5 GiB, at most 10,000 parts).
const PART_BYTES: usize = 8 << 20;
/// Parts sent at once: bounds the memory an upload holds to this many parts.
const PARTS_IN_FLIGHT: usize = 4;
/// How long aborting a failed upload may take. The abort only tidies (the
/// upload failed either way, and a lifecycle rule drops parts left
/// behind), so it must not add a request timeout (60 s) to the failure
/// when the server has stopped answering: measured with radosgw frozen
/// (SIGSTOP) mid-upload, a put failed after 90 s, 60 of them the abort.
const ABORT_WITHIN: Duration = Duration::from_secs(5);

pub struct S3Bucket {
    store: AmazonS3,
    rt: tokio::runtime::Runtime,
    bucket: String,
    /// The URL's prefix with a `/` after it, or empty.
    prefix: String,
    /// Where requests go, for messages: the endpoint and what set it.
    endpoint: String,
    /// Set once a listing succeeded: the bucket exists, a 404 is a missing object.
    bucket_seen: OnceLock<()>,
}

impl S3Bucket {
    /// The remote at `s3://bucket/prefix`, configured by the usual variables
    /// ([`S3Config::from_env`]).
    /// The other `AWS_*` variables object_store knows (web identity and
    /// container roles, encryption) apply too.
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3Bucket> {
        let base = AmazonS3Builder::from_env();
        S3Bucket::build(bucket, prefix, S3Config::from_env(), base)
    }

    /// The remote at `s3://bucket/prefix` on the server `config` names.
    /// With an endpoint, requests are path-style (`ENDPOINT/BUCKET/KEY`),
    /// as radosgw and MinIO expect, and an `http://` endpoint is allowed.
    /// Nothing is sent until the first call.
    pub fn new(bucket: &str, prefix: &str, config: S3Config) -> Result<S3Bucket> {
        S3Bucket::build(bucket, prefix, config, AmazonS3Builder::new())
    }

    fn build(
        bucket: &str,
        prefix: &str,
        config: S3Config,
        builder: AmazonS3Builder,
    ) -> Result<S3Bucket> {
        let url = format!("s3://{bucket}/{prefix}");
        let (store, endpoint) = config::client(bucket, &url, config, builder)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("deploycache-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Remote {
                url,
                message: format!("cannot start the S3 client's threads: {e}"),
                errno: libc::EIO,
            })?;
        let prefix = prefix.trim_matches('/');
        Ok(S3Bucket {
            store,
            rt,
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint,
            bucket_seen: OnceLock::new(),
        })
    }

    /// Upload what `from` yields as `key`, in parts of 8 MiB, several at
    /// once; whole or not at all: any failure (of `from` too) aborts the
    /// upload. Returns the bytes sent.
    pub fn put_reader(&self, key: &str, from: &mut dyn Read) -> Result<u64> {
        self.put_parts(key, from, |e| Error::Remote {
            url: self.url(key),
            message: format!("upload aborted: reading the data to send failed: {e}"),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
    }

    /// [`Self::put_reader`], with `read_failed` saying what a failure of `from` is.
    fn put_parts(
        &self,
        key: &str,
        from: &mut dyn Read,
        read_failed: impl Fn(io::Error) -> Error,
    ) -> Result<u64> {
        let path = self.path(key)?;
        let failed = |e| self.error(key, "multipart PUT", e);
        self.rt.block_on(async {
            let upload = self.store.put_multipart(&path).await.map_err(failed)?;
            let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut buf = vec![0u8; PART_BYTES];
            let mut sent = 0u64;
            loop {
                // Blocking reads are fine here: block_on runs this on the
                // caller's thread, the parts go up on the runtime's.
                let n = match read_full(from, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        abort(upload).await;
                        return Err(read_failed(e));
                    }
                };
                if let Err(e) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    abort(upload).await;
                    return Err(failed(e));
                }
                upload.write(&buf[..n]);
                sent += n as u64;
            }
            // The parts sent so far, each whole, before finish: finish
            // aborts by itself (without a bound) when one failed.
            if let Err(e) = upload.wait_for_capacity(0).await {
                abort(upload).await;
                return Err(failed(e));
            }
            // finish sends the last part (shorter than PART_BYTES) and completes
            // the upload; it aborts it itself when either fails.
            upload.finish().await.map_err(failed)?;
            Ok(sent)
        })
    }

    /// The bucket's path of `key`.
    fn path(&self, key: &str) -> Result<Path> {
        if !valid_key(key) {
            return Err(Error::Usage(format!(
                "{}: not a key a remote holds",
                self.url(key)
            )));
        }
        Ok(Path::from(format!("{}{key}", self.prefix)))
    }

    fn info(&self, meta: ObjectMeta) -> ObjectInfo {
        let full = meta.location.as_ref();
        ObjectInfo {
            key: full.strip_prefix(&self.prefix).unwrap_or(full).to_owned(),
            size: meta.size,
            modified_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(0),
        }
    }

    /// One page of the objects whose full key starts with `prefix`.
    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> object_store::Result<object_store::list::PaginatedListResult> {
        let opts = PaginatedListOptions {
            page_token,
            max_keys,
            ..Default::default()
        };
        let prefix = Some(prefix).filter(|p| !p.is_empty());
        self.store.list_paginated(prefix, opts).await
    }

    /// After a 404: None when the bucket exists (the object is missing),
    /// else what listing the bucket says (no such bucket, no access).
    fn bucket_error(&self) -> Option<Error> {
        if self.bucket_seen.get().is_none() {
            let listed = self
                .rt
                .block_on(self.list_page(&self.prefix, None, Some(1)));
            match listed {
                Ok(_) => _ = self.bucket_seen.set(()),
                Err(e) => return Some(self.error("", "LIST", e)),
            }
        }
        None
    }

    /// A 404 for `key` on a GET or HEAD: ENOENT, unless the bucket is missing.
    fn missing(&self, key: &str) -> Error {
        self.bucket_error().unwrap_or_else(|| Error::Remote {
            url: self.url(key),
            message: "no such object".into(),
            errno: libc::ENOENT,
        })
    }
}

/// Abort a failed upload, giving up after [`ABORT_WITHIN`]: its error is
/// not the one to report.
async fn abort(upload: WriteMultipart) {
    let _ = tokio::time::timeout(ABORT_WITHIN, upload.abort()).await;
}

/// Read until `buf` is full or the end; the bytes read.
fn read_full(from: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A 404.
fn is_404(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Bucket for S3Bucket {
    fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let payload = PutPayload::from(body.to_vec());
        match self.rt.block_on(self.store.put(&path, payload)) {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Err(self.bucket_error().unwrap_or(self.error(key, "PUT", e))),
            Err(e) => Err(self.error(key, "PUT", e)),
        }
    }

    fn put_file(&self, key: &str, src: &std::path::Path) -> Result<u64> {
        let mut file = File::open(src).at(src)?;
        if file.metadata().at(src)?.len() > MULTIPART_OVER {
            return self.put_parts(key, &mut file, |e| Error::io(src, e));
        }
        let mut body = Vec::new();
        file.read_to_end(&mut body).at(src)?;
        self.put(key, &body)?;
        Ok(body.len() as u64)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        match (self.rt).block_on(async { self.store.get(&path).await?.bytes().await }) {
            Ok(b) => Ok(Vec::from(b)),
            Err(e) if is_404(&e) => Err(self.missing(key)),
            Err(e) => Err(self.error(key, "GET", e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let past_end = || Error::Remote {
            url: self.url(key),
            message: format!("bytes {range:?} asked for, past the object's end"),
            errno: libc::EIO,
        };
        if range.is_empty() {
            // S3 has no empty range; the object must still be there.
            return match self.head(key)? {
                Some(o) if o.size >= range.start && range.start == range.end => Ok(Vec::new()),
                Some(_) => Err(past_end()),
                None => Err(self.missing(key)),
            };
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let got =
            (self.rt).block_on(async { self.store.get_opts(&path, options).await?.bytes().await });
        match got {
            // The server sends what there is of a range that ends past the object.
            Ok(b) if b.len() as u64 == range.end - range.start => Ok(Vec::from(b)),
            Ok(_) => Err(past_end()),
            Err(e) if is_404(&e) => Err(self.missing(key)),
            // 416: a range that starts past the object's end.
            Err(e) if chain(&e).contains("416") => Err(past_end()),
            Err(e) => Err(self.error(key, "GET", e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = (self.rt)
                .block_on(self.list_page(&full, token, None))
                .map_err(|e| self.error(prefix, "LIST", e))?;
            out.extend(page.result.objects.into_iter().map(|m| self.info(m)));
            token = page.page_token;
            if token.is_none() {
                break;
            }
        }
        // S3 lists in key order; not every server is S3.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key)?;
        match self.rt.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                ..self.info(meta)
            })),
            Err(e) if is_404(&e) => self.bucket_error().map_or(Ok(None), Err),
            Err(e) => Err(self.error(key, "HEAD", e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if is_404(&e) => self.bucket_error().map_or(Ok(()), Err),
            Err(e) => Err(self.error(key, "DELETE", e)),
        }
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }
}
