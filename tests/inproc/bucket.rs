//! The conformance suite of [`Bucket`]: what the remote relies on from
//! wherever its objects live. Every implementation runs all of it (as
//! `pack_store` does for pack stores): add one `#[test]` calling
//! [`bucket_conformance`] with a maker for the new implementation.
//!
//! The S3 tests run against a real server: `scripts/test.sh` starts radosgw
//! and sets `DEPLOYCACHE_TEST_S3` (`s3://BUCKET[/PREFIX]`) and the `AWS_*`
//! variables; without them they fail, saying so. Each check works under a
//! fresh random prefix, deleted afterwards.

use std::any::Any;
use std::io::{self, Read};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deploycache::remote::{Bucket, ObjectInfo, RemoteUrl, S3Bucket, S3Config};

use crate::common::random_bytes;

/// A bucket at `sub` (a `/`-separated prefix; "" for the area itself)
/// under a subject's area: what a remote URL with that prefix opens.
pub type Opener = Box<dyn Fn(&str) -> Arc<dyn Bucket>>;

/// A fresh, empty area to test in, and buckets on it.
pub struct Subject {
    pub open: Opener,
    /// Whatever must live as long as the area (its directory, a cleaner).
    pub _keep: Box<dyn Any>,
}

/// One conformance check, run on a fresh, empty area.
type Check = fn(&Subject);

/// Run every conformance check, each on a fresh area from `make`.
pub fn bucket_conformance(make: impl Fn() -> Subject) {
    let checks: [(&str, Check); 8] = [
        ("objects read back as written", round_trips),
        (
            "a large file goes up whole (multipart)",
            large_file_round_trips,
        ),
        ("ranges are exact, past the end an error", ranges_are_exact),
        (
            "a missing object is ENOENT, None, deletable",
            missing_objects,
        ),
        ("list: key order, sizes, prefix mid-name", list_by_prefix),
        ("an overwrite replaces the object", overwrite_replaces),
        (
            "prefixes in the URL keep remotes apart",
            prefixes_keep_apart,
        ),
        ("8 threads put and get at once", concurrent_puts_and_gets),
    ];
    for (what, check) in checks {
        let subject = make();
        eprintln!("bucket conformance: {what}");
        check(&subject);
    }
}

#[test]
fn dir_bucket_conforms() {
    bucket_conformance(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        Subject {
            // Through the URL, as --remote opens it.
            open: Box::new(move |sub| {
                let url = format!("file://{}", root.join(sub).display());
                RemoteUrl::parse(&url).unwrap().open().unwrap()
            }),
            _keep: Box::new(dir),
        }
    });
}

#[test]
fn s3_bucket_conforms() {
    bucket_conformance(s3_subject);
}

/// `DEPLOYCACHE_TEST_S3`'s bucket and prefix; fails (never skips) when it
/// is not set.
fn test_s3() -> (String, String) {
    let url = std::env::var("DEPLOYCACHE_TEST_S3").unwrap_or_default();
    if url.is_empty() {
        panic!(
            "DEPLOYCACHE_TEST_S3 is not set: run scripts/test.sh (it starts radosgw on 127.0.0.1 \
             and sets it), or set DEPLOYCACHE_TEST_S3=s3://BUCKET[/PREFIX] and AWS_ENDPOINT_URL, \
             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for a bucket that exists"
        );
    }
    match RemoteUrl::parse(&url).unwrap() {
        RemoteUrl::S3 { bucket, prefix } => (bucket, prefix),
        other => panic!("DEPLOYCACHE_TEST_S3={url}: not an s3:// URL ({other})"),
    }
}

/// A fresh random prefix under `DEPLOYCACHE_TEST_S3`, emptied when dropped.
struct S3Area {
    bucket: String,
    prefix: String,
}

impl S3Area {
    fn new() -> S3Area {
        let (bucket, base) = test_s3();
        let area = format!("conformance-{:016x}", rand::random::<u64>());
        let prefix = if base.is_empty() {
            area
        } else {
            format!("{base}/{area}")
        };
        S3Area { bucket, prefix }
    }

    /// `s3://BUCKET/PREFIX/AREA[/SUB]`.
    fn url(&self, sub: &str) -> String {
        let url = format!("s3://{}/{}", self.bucket, self.prefix);
        if sub.is_empty() {
            url
        } else {
            format!("{url}/{sub}")
        }
    }

    fn open(&self) -> S3Bucket {
        S3Bucket::from_env(&self.bucket, &self.prefix).unwrap()
    }
}

impl Drop for S3Area {
    fn drop(&mut self) {
        let b = self.open();
        if let Ok(objects) = b.list("") {
            for o in objects {
                let _ = b.delete(&o.key);
            }
        }
    }
}

fn s3_subject() -> Subject {
    let area = Arc::new(S3Area::new());
    let a = area.clone();
    Subject {
        // Through the URL, as --remote opens it.
        open: Box::new(move |sub| RemoteUrl::parse(&a.url(sub)).unwrap().open().unwrap()),
        _keep: Box::new(area),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `info` is `key` of `size` bytes, written within ten minutes of now (the
/// server runs on this host): catches a time in the wrong unit.
fn assert_info(info: &ObjectInfo, key: &str, size: u64) {
    assert_eq!((info.key.as_str(), info.size), (key, size));
    let skew = (info.modified_ns - now_ns()).abs();
    assert!(
        skew < 600_000_000_000,
        "{key}: modified_ns {} is {skew} ns from now",
        info.modified_ns
    );
}

fn round_trips(s: &Subject) {
    let b = (s.open)("");
    for (key, len) in [("empty", 0), ("one", 1), ("packs/five-mib.pack", 5 << 20)] {
        let data = random_bytes(len, len as u64);
        b.put(key, &data).unwrap();
        assert_eq!(b.get(key).unwrap(), data, "{key}");
        assert_info(&b.head(key).unwrap().unwrap(), key, len as u64);
    }
    // A small file goes up in one PUT.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let data = random_bytes(70_000, 7);
    std::fs::write(&small, &data).unwrap();
    assert_eq!(b.put_file("packs/small.pack", &small).unwrap(), 70_000);
    assert_eq!(b.get("packs/small.pack").unwrap(), data);
}

fn large_file_round_trips(s: &Subject) {
    let b = (s.open)("");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let data = random_bytes(40 << 20, 40);
    std::fs::write(&path, &data).unwrap();
    assert_eq!(b.put_file("packs/big.pack", &path).unwrap(), 40 << 20);
    assert_eq!(b.head("packs/big.pack").unwrap().unwrap().size, 40 << 20);
    let back = b.get("packs/big.pack").unwrap();
    assert!(back == data, "40 MiB read back differs");
    // Part boundaries (8 MiB) are where a multipart upload goes wrong.
    let at = 8 << 20;
    assert_eq!(
        b.get_range("packs/big.pack", at - 3..at + 3).unwrap(),
        &data[at as usize - 3..at as usize + 3]
    );
}

fn ranges_are_exact(s: &Subject) {
    let b = (s.open)("");
    let data = random_bytes(1 << 20, 3);
    let len = data.len() as u64;
    b.put("packs/r.pack", &data).unwrap();
    for r in [0..1, 1000..70_000, len - 1..len, 0..len, 12_345..12_346] {
        let got = b.get_range("packs/r.pack", r.clone()).unwrap();
        assert!(
            got == data[r.start as usize..r.end as usize],
            "bytes {r:?} differ"
        );
    }
    // An empty range at the end is still past it, as an S3 server says.
    for r in [
        len - 10..len + 1,
        len..len + 5,
        len + 100..len + 200,
        len + 1..len + 1,
    ] {
        let e = b.get_range("packs/r.pack", r.clone()).unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{r:?}: {e}");
        assert!(e.to_string().contains("past the object's end"), "{e}");
    }
}

fn missing_objects(s: &Subject) {
    let b = (s.open)("");
    let enoent = |e: deploycache::Error| {
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
        assert!(e.to_string().contains("packs/none.pack"), "{e}");
    };
    enoent(b.get("packs/none.pack").unwrap_err());
    enoent(b.get_range("packs/none.pack", 0..10).unwrap_err());
    assert_eq!(b.head("packs/none.pack").unwrap(), None);
    b.delete("packs/none.pack").unwrap();
    // And once deleted, gone.
    b.put("packs/none.pack", b"here").unwrap();
    b.delete("packs/none.pack").unwrap();
    enoent(b.get("packs/none.pack").unwrap_err());
    assert_eq!(b.head("packs/none.pack").unwrap(), None);
    assert_eq!(b.list("").unwrap(), vec![]);
}

fn list_by_prefix(s: &Subject) {
    let b = (s.open)("");
    let keys = [
        ("packs/00.pack", 3),
        ("commits/01a.commit", 1),
        ("commits/00b.commit", 20),
        ("commits0", 5),
        ("commits/00a.commit", 10),
    ];
    for (key, len) in keys {
        b.put(key, &random_bytes(len, len as u64)).unwrap();
    }
    let listed = |prefix: &str| {
        let got = b.list(prefix).unwrap();
        for o in &got {
            assert_info(
                o,
                &o.key,
                keys.iter().find(|k| k.0 == o.key).unwrap().1 as u64,
            );
        }
        got.into_iter().map(|o| o.key).collect::<Vec<_>>()
    };
    assert_eq!(
        listed("commits/00"),
        ["commits/00a.commit", "commits/00b.commit"]
    );
    assert_eq!(
        listed("commits/"),
        [
            "commits/00a.commit",
            "commits/00b.commit",
            "commits/01a.commit"
        ]
    );
    assert_eq!(
        listed("commits"),
        [
            "commits/00a.commit",
            "commits/00b.commit",
            "commits/01a.commit",
            "commits0"
        ]
    );
    let mut all: Vec<_> = keys.iter().map(|k| k.0).collect();
    all.sort();
    assert_eq!(listed(""), all);
    assert!(listed("commits/02").is_empty());
    assert!(listed("nothing/").is_empty());
}

fn overwrite_replaces(s: &Subject) {
    let b = (s.open)("");
    b.put("commits/x.commit", b"first version").unwrap();
    b.put("commits/x.commit", b"second").unwrap();
    assert_eq!(b.get("commits/x.commit").unwrap(), b"second");
    let listed = b.list("").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_info(&listed[0], "commits/x.commit", 6);
}

fn prefixes_keep_apart(s: &Subject) {
    // "t1" is a string prefix of "t10": a remote at t1 must still not see
    // t10's objects.
    let (t1, t10, root) = ((s.open)("t1"), (s.open)("t10"), (s.open)(""));
    t1.put("packs/a.pack", b"in t1").unwrap();
    t10.put("packs/a.pack", b"in t10, longer").unwrap();
    t10.put("packs/b.pack", b"only in t10").unwrap();
    assert_eq!(t1.get("packs/a.pack").unwrap(), b"in t1");
    assert_eq!(t10.get("packs/a.pack").unwrap(), b"in t10, longer");
    assert_eq!(t1.head("packs/b.pack").unwrap(), None);
    let keys = |b: &dyn Bucket| {
        b.list("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&*t1), ["packs/a.pack"]);
    assert_eq!(keys(&*t10), ["packs/a.pack", "packs/b.pack"]);
    assert_eq!(
        keys(&*root),
        ["t1/packs/a.pack", "t10/packs/a.pack", "t10/packs/b.pack"]
    );
    t1.delete("packs/a.pack").unwrap();
    assert_eq!(t10.get("packs/a.pack").unwrap(), b"in t10, longer");
    assert!(t1.url("packs/a.pack").ends_with("t1/packs/a.pack"));
}

fn concurrent_puts_and_gets(s: &Subject) {
    let b = (s.open)("");
    let b: &dyn Bucket = &*b;
    let data = |t: usize, i: usize| random_bytes(50_000 + 30_011 * (t * 8 + i), (t * 8 + i) as u64);
    let key = |t: usize, i: usize| format!("packs/t{t}-{i}.pack");
    let barrier = Barrier::new(8);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let barrier = &barrier;
            scope.spawn(move || {
                for i in 0..6 {
                    b.put(&key(t, i), &data(t, i)).unwrap();
                }
                barrier.wait();
                // Everyone's objects, the next thread's first.
                for u in (0..8).map(|u| (u + t + 1) % 8) {
                    for i in 0..6 {
                        let want = data(u, i);
                        assert!(b.get(&key(u, i)).unwrap() == want, "{}", key(u, i));
                        let r = 1000..want.len() as u64 - 1;
                        let got = b.get_range(&key(u, i), r.clone()).unwrap();
                        assert!(got == want[r.start as usize..r.end as usize]);
                    }
                }
            });
        }
    });
    assert_eq!(b.list("packs/").unwrap().len(), 48);
}

/// A reader that gives `good` bytes, then fails.
struct FailingReader {
    good: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(0x5a);
        self.good -= n;
        Ok(n)
    }
}

/// A multipart upload that fails after some parts went up leaves no
/// object (and is aborted, not left to complete with what it has).
#[test]
fn s3_failed_multipart_upload_leaves_no_object() {
    let area = S3Area::new();
    let b = area.open();
    let e = b
        .put_reader("packs/cut.pack", &mut FailingReader { good: 20 << 20 })
        .unwrap_err();
    assert!(e.to_string().contains("upload aborted"), "{e}");
    assert_eq!(b.head("packs/cut.pack").unwrap(), None);
    assert_eq!(b.list("").unwrap(), vec![]);
    let pending = pending_uploads(&area.bucket);
    assert!(
        !pending.contains(&format!("{}/packs/cut.pack", area.prefix)),
        "the failed upload was not aborted: {pending}"
    );
    // The same key then goes up whole.
    let n = b
        .put_reader("packs/cut.pack", &mut io::repeat(7).take(17 << 20))
        .unwrap();
    assert_eq!(n, 17 << 20);
    assert_eq!(b.get_range("packs/cut.pack", n - 2..n).unwrap(), [7, 7]);
}

/// The multipart uploads in progress in `bucket`, as the server lists them
/// (ListMultipartUploads, through curl: object_store has no call for it).
fn pending_uploads(bucket: &str) -> String {
    let env = S3Config::from_env();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
        ])
        .arg("--user")
        .arg(format!(
            "{}:{}",
            env.access_key_id.unwrap(),
            env.secret_access_key.unwrap()
        ))
        // curl 7.88 sends no payload hash of its own.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg(format!("{}/{bucket}?uploads=", env.endpoint.unwrap()))
        .output()
        .expect("curl (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("ListMultipartUploadsResult"),
        "listing multipart uploads failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// An endpoint nobody listens on fails every call with one error naming
/// it and AWS_ENDPOINT_URL, after a few bounded retries: not ENOENT, not
/// a hang of minutes (object_store's default retries take about a minute).
#[test]
fn s3_unreachable_endpoint_fails_soon_and_says_where() {
    let config = S3Config {
        endpoint: Some("http://127.0.0.1:1".into()),
        access_key_id: Some("x".into()),
        secret_access_key: Some("y".into()),
        ..S3Config::default()
    };
    let b = S3Bucket::new("deploycache-test", "p", config).unwrap();
    let start = Instant::now();
    let errors = [
        b.get("packs/a.pack").unwrap_err(),
        b.head("packs/a.pack").unwrap_err(),
        b.list("packs/").unwrap_err(),
        b.put("packs/a.pack", b"x").unwrap_err(),
    ];
    let took = start.elapsed();
    for e in errors {
        let msg = e.to_string();
        assert_eq!(e.errno(), libc::EIO, "{msg}");
        assert!(
            msg.contains("cannot connect to endpoint http://127.0.0.1:1"),
            "{msg}"
        );
        assert!(msg.contains("AWS_ENDPOINT_URL"), "{msg}");
    }
    // About 3 s of backoff per call; generous for a loaded machine.
    assert!(took < Duration::from_secs(60), "4 calls took {took:?}");
}

/// Wrong credentials and a missing bucket each say what to do.
#[test]
fn s3_wrong_key_and_missing_bucket_say_what_to_do() {
    let (bucket, _) = test_s3();
    let env = S3Config::from_env();
    let wrong = S3Config {
        secret_access_key: Some("not-the-secret".into()),
        ..env.clone()
    };
    let b = S3Bucket::new(&bucket, "p", wrong).unwrap();
    for e in [b.get("x").unwrap_err(), b.head("x").unwrap_err()] {
        let msg = e.to_string();
        assert!(
            msg.contains("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{msg}"
        );
    }
    let b = S3Bucket::new("deploycache-no-such-bucket", "p", env).unwrap();
    for e in [
        b.get("x").unwrap_err(),
        b.head("x").unwrap_err(),
        b.get_range("x", 0..1).unwrap_err(),
        b.list("").unwrap_err(),
        b.put("x", b"x").unwrap_err(),
    ] {
        let msg = e.to_string();
        assert_eq!(e.errno(), libc::EIO, "{msg}");
        assert!(
            msg.contains("no bucket \"deploycache-no-such-bucket\"") && msg.contains("create it"),
            "{msg}"
        );
    }
}
