//! Issue 17: several hosts, one remote. Each "host" is a store directory of
//! its own with a host id of its own (`DEPLOYCACHE_HOST_ID`), driven by the
//! real binary as separate processes, against one remote: a directory
//! (`file://`, as on an NFS export) and, with `$DEPLOYCACHE_TEST_S3` (set by
//! scripts/test.sh, which starts radosgw on 127.0.0.1), an S3 bucket.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;

/// One host of the test: its own store, its own id, the shared remote.
pub(crate) struct Host {
    pub store: PathBuf,
    pub id: &'static str,
    pub remote: String,
}

impl Host {
    pub(crate) fn new(t: &Path, id: &'static str, remote: &str) -> Host {
        Host {
            store: t.join(format!("store-{id}")),
            id,
            remote: remote.to_owned(),
        }
    }

    pub(crate) fn dc(&self) -> Command {
        let mut c = dc(&self.store);
        c.env("DEPLOYCACHE_HOST_ID", self.id)
            .arg("--remote")
            .arg(&self.remote);
        c
    }

    pub(crate) fn put(&self, name: &str, dir: &Path) {
        ok(self.dc().args(["put", name]).arg(dir));
    }

    pub(crate) fn cat(&self, name: &str, file: &str) -> Vec<u8> {
        ok(self.dc().args(["cat", name, file]))
    }

    /// Mount this host's store at `mp` (its remote recorded by an earlier
    /// command), pulling and publishing every 300 ms.
    pub(crate) fn mount(&self, mp: &Path) -> crate::mount::Mounted {
        crate::mount::Mounted::foreground_env(
            &self.store,
            mp,
            &[],
            &[
                ("DEPLOYCACHE_HOST_ID", self.id),
                ("DEPLOYCACHE_REMOTE_SYNC_MS", "300"),
            ],
        )
    }

    pub(crate) fn names(&self) -> Vec<String> {
        names(&json(&ok(self.dc().args(["ls", "--json"]))))
    }
}

/// The remotes every test runs against: a directory, and S3 (radosgw)
/// when the harness started one. Each gets a fresh, empty place.
pub(crate) fn remotes(t: &Path) -> Vec<String> {
    let mut out = vec![format!("file://{}", t.join("remote").display())];
    if let Ok(s3) = std::env::var("DEPLOYCACHE_TEST_S3") {
        out.push(format!(
            "{}/test-{:016x}",
            s3.trim_end_matches('/'),
            rand::random::<u64>()
        ));
    }
    out
}

/// The directory remote, and hosts "a" and "b" on it.
pub(crate) fn two_hosts(t: &Path) -> (String, Host, Host) {
    let remote = remotes(t).swap_remove(0);
    let (a, b) = hosts_on(t, &remote);
    (remote, a, b)
}

/// Hosts "a" and "b" on `remote`.
pub(crate) fn hosts_on(t: &Path, remote: &str) -> (Host, Host) {
    (Host::new(t, "a", remote), Host::new(t, "b", remote))
}

/// Where a `file://` remote keeps its commit objects.
pub(crate) fn commits_dir(remote: &str) -> PathBuf {
    Path::new(remote.strip_prefix("file://").unwrap()).join("commits")
}

/// An artifact's files on disk: an image and a key.
pub(crate) fn lay_out(dir: &Path, image: &[u8], key: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    write(&dir.join("image.img"), image);
    write(&dir.join("id_rsa.pub"), key.as_bytes());
    dir.to_owned()
}

/// Bytes of the objects under `packs/` of a `file://` remote.
pub(crate) fn pack_bytes(remote: &str) -> Option<BTreeMap<String, u64>> {
    let dir = Path::new(remote.strip_prefix("file://")?).join("packs");
    Some(
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            e.metadata().unwrap().len(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[test]
fn a_put_on_one_host_is_seen_and_exported_byte_identical_on_another() {
    let t = TempDir::new().unwrap();
    for remote in remotes(t.path()) {
        let (a, b) = hosts_on(t.path(), &remote);
        let image = random_bytes(3 << 20, 1);
        let src = lay_out(&t.path().join("v1"), &image, "ssh-ed25519 AAAA a@master\n");
        a.put("0123", &src);
        // B has no store yet: its first command makes one, filled from the remote.
        assert!(!b.store.exists());
        assert_eq!(b.names(), ["0123"], "{remote}");
        let out = t.path().join("out-b");
        ok(b.dc().args(["export", "0123"]).arg(&out));
        assert_eq!(fs::read(out.join("image.img")).unwrap(), image, "{remote}");
        assert_eq!(
            fs::read(out.join("id_rsa.pub")).unwrap(),
            b"ssh-ed25519 AAAA a@master\n"
        );
        // B read A's chunks from the remote: it holds no pack of its own.
        assert!(!b
            .store
            .join("packs")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()));
        assert_eq!(b.cat("0123", "image.img"), image);
        // What B keeps of the remote is as private as the rest of its store.
        let cache = b.store.join("remote-cache");
        assert!(cache.is_dir());
        for e in walkdir::WalkDir::new(&cache).into_iter().flatten().chain(
            walkdir::WalkDir::new(b.store.join("remote"))
                .into_iter()
                .flatten(),
        ) {
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&e.metadata().unwrap().permissions());
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
        }
        fs::remove_dir_all(&a.store).unwrap();
        fs::remove_dir_all(&b.store).unwrap();
        fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn the_next_version_uploads_only_its_new_chunks() {
    let t = TempDir::new().unwrap();
    let (remote, a, b) = two_hosts(t.path());
    let remote = &remote;
    let v1 = random_bytes(8 << 20, 2);
    let mut v2 = v1.clone();
    // A few packages changed: 3 spots of 10 KiB.
    for at in [1 << 20, 4 << 20, 7 << 20] {
        v2[at..at + 10_240].copy_from_slice(&random_bytes(10_240, at as u64));
    }
    a.put("v1", &lay_out(&t.path().join("v1"), &v1, "k1\n"));
    let before = pack_bytes(remote).unwrap();
    let out = ok(b
        .dc()
        .args(["put", "v2"])
        .arg(lay_out(&t.path().join("v2"), &v2, "k1\n")));
    let after = pack_bytes(remote).unwrap();
    let uploaded: u64 = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(_, n)| n)
        .sum();
    // The put's own figure of the new chunks' bytes ("…, N new").
    let out = String::from_utf8(out).unwrap();
    eprintln!("v2 after v1: {out} uploaded {uploaded} bytes in packs");
    // Up to a chunk (≤ 256 KiB) around each change is new, and the key's
    // chunk: far from v2's 8 MiB.
    assert!(
        uploaded > 30_000,
        "{uploaded}: v2's changes were not uploaded"
    );
    assert!(
        uploaded < 1_600_000,
        "{uploaded} bytes uploaded for v2: {out}"
    );
    // A sees v2 whole.
    assert_eq!(a.cat("v2", "image.img"), v2);
    assert_eq!(b.cat("v1", "image.img"), v1);
}

#[test]
fn two_hosts_putting_one_name_at_once_end_with_one_version_whole() {
    let t = TempDir::new().unwrap();
    for remote in remotes(t.path()) {
        let (a, b) = hosts_on(t.path(), &remote);
        let (ia, ib) = (random_bytes(2 << 20, 10), random_bytes(2 << 20, 11));
        let (da, db) = (
            lay_out(&t.path().join("na"), &ia, "a\n"),
            lay_out(&t.path().join("nb"), &ib, "b\n"),
        );
        for round in 0..3 {
            let name = format!("same{round}");
            std::thread::scope(|s| {
                s.spawn(|| a.put(&name, &da));
                s.spawn(|| b.put(&name, &db));
            });
            // Each host pulls; both end with the same version, whole.
            let got_a = (a.cat(&name, "image.img"), a.cat(&name, "id_rsa.pub"));
            let got_b = (b.cat(&name, "image.img"), b.cat(&name, "id_rsa.pub"));
            assert_eq!(got_a, got_b, "{remote} round {round}: the hosts disagree");
            assert!(
                got_a == (ia.clone(), b"a\n".to_vec()) || got_a == (ib.clone(), b"b\n".to_vec()),
                "{remote} round {round}: a mix of two versions"
            );
            // A third host, new, agrees too.
            let c = Host::new(t.path(), "c", &remote);
            assert_eq!(c.cat(&name, "image.img"), got_a.0);
            fs::remove_dir_all(&c.store).unwrap();
        }
        fs::remove_dir_all(&a.store).unwrap();
        fs::remove_dir_all(&b.store).unwrap();
    }
}

#[test]
fn a_removal_reaches_every_host() {
    let t = TempDir::new().unwrap();
    let (_, a, b) = two_hosts(t.path());
    a.put(
        "keep",
        &lay_out(&t.path().join("k"), &random_bytes(100_000, 3), "k\n"),
    );
    a.put(
        "gone",
        &lay_out(&t.path().join("g"), &random_bytes(100_000, 4), "g\n"),
    );
    assert_eq!(b.names(), ["gone", "keep"]);
    ok(b.dc().args(["rm", "gone"]));
    assert_eq!(a.names(), ["keep"]);
    let o = fails(a.dc().args(["cat", "gone", "id_rsa.pub"]));
    assert!(stderr(&o).contains("gone"), "{}", stderr(&o));
}

#[test]
fn a_damaged_commit_is_refused_never_applied() {
    let t = TempDir::new().unwrap();
    let (remote, a, b) = two_hosts(t.path());
    let remote = &remote;
    a.put(
        "x",
        &lay_out(&t.path().join("x"), &random_bytes(50_000, 5), "x\n"),
    );
    let commits = commits_dir(remote);
    let c = fs::read_dir(&commits)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&c).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&c, bytes).unwrap();
    let o = b.dc().args(["remote", "pull"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checksum does not match")
            && stderr(&o).contains(&*c.file_name().unwrap().to_string_lossy()),
        "{}",
        stderr(&o)
    );
    assert!(b.names().is_empty(), "a damaged commit was applied");
}

#[test]
fn a_host_whose_clock_is_far_off_is_refused() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    let src = lay_out(&t.path().join("x"), &random_bytes(50_000, 6), "x\n");
    // Ten minutes fast: its commits would order before everyone's.
    let o = fails(
        Command::new("faketime")
            .args(["-f", "+600s"])
            .arg(bin())
            .env("DEPLOYCACHE_HOST_ID", "a")
            .arg("--store")
            .arg(&a.store)
            .arg("--remote")
            .arg(remote)
            .args(["put", "x"])
            .arg(&src),
    );
    let e = stderr(&o);
    assert!(e.contains("clock") && e.contains("NTP"), "{e}");
    let commits = commits_dir(remote);
    assert!(!commits.exists() || fs::read_dir(&commits).unwrap().next().is_none());
    // Within the limit (5 s off): published.
    ok(Command::new("faketime")
        .args(["-f", "+5s"])
        .arg(bin())
        .env("DEPLOYCACHE_HOST_ID", "a")
        .arg("--store")
        .arg(&a.store)
        .args(["remote", "push"]));
    assert_eq!(fs::read_dir(&commits).unwrap().count(), 1);
}

#[test]
fn a_store_keeps_its_remote_and_refuses_another_and_gc_without_an_owner() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    a.put(
        "x",
        &lay_out(&t.path().join("x"), &random_bytes(50_000, 7), "x\n"),
    );
    // Remembered: no --remote needed from now on.
    let pulled = json(&ok(dc(&a.store).args(["remote", "pull", "--json"])));
    assert_eq!(pulled["commits_listed"], 1, "{pulled}");
    let other = format!("file://{}", t.path().join("other").display());
    let e = stderr(&fails(dc(&a.store).args(["--remote", &other, "ls"])));
    assert!(e.contains(remote.as_str()) && e.contains(&other), "{e}");
    // gc is the remote's, run by the one host that owns it.
    let e = stderr(&fails(dc(&a.store).args(["gc", "--max-size", "1M"])));
    assert!(
        e.contains("no host owns the gc") && e.contains("gc-owner --take"),
        "{e}"
    );
    let e = stderr(&fails(dc(&a.store).args(["gc", "--older-than", "1d"])));
    assert!(e.contains("--max-size only"), "{e}");
    // A bad URL is one clear line.
    let e = stderr(&fails(
        dc(&t.path().join("s2")).args(["--remote", "http://x", "ls"]),
    ));
    assert!(e.contains("http://x") && e.contains("s3://"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn a_small_cache_still_reads_every_byte_and_stays_bounded() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    let image = random_bytes(24 << 20, 8);
    a.put("big", &lay_out(&t.path().join("big"), &image, "k\n"));
    let b = Host::new(t.path(), "b", remote);
    let got = ok(b
        .dc()
        .args(["--cache-size", "9M", "cat", "big", "image.img"]));
    assert!(got == image, "the bytes read through a small cache differ");
    let cached = du_dir(&b.store.join("remote-cache"));
    // At most the limit, and a block fetched past it before the cut.
    assert!(
        cached <= (9 << 20) + (4 << 20),
        "{cached} bytes cached over 9M"
    );
    assert!(cached > 0);
}

#[test]
fn the_mount_serves_what_other_hosts_publish_and_publishes_what_is_written_to_it() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    let (sha1, sha2, sha3) = (
        "0123456789abcdef0123456789abcdef01234567",
        "89abcdef0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210fedcba98",
    );
    let image = random_bytes(5 << 20, 9);
    a.put(sha1, &lay_out(&t.path().join("m"), &image, "k\n"));
    let b = Host::new(t.path(), "b", remote);
    let mp = t.path().join("mnt");
    // The first command records the remote; the mount then uses it.
    assert_eq!(b.names().len(), 1);
    let m = b.mount(&mp);
    let file = mp.join(sha1).join("image.img");
    assert!(
        fs::read(&file).unwrap() == image,
        "the mount's bytes differ"
    );
    let out = Command::new("sha256sum").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&sha256_hex(&image)));
    // Published by A while B is mounted: B's mount shows it soon.
    let image2 = random_bytes(3 << 20, 12);
    a.put(sha2, &lay_out(&t.path().join("m2"), &image2, "k2\n"));
    crate::mount::wait_until(30, "B's mount to show A's new artifact", || {
        mp.join(sha2).join("image.img").exists()
    });
    assert!(fs::read(mp.join(sha2).join("image.img")).unwrap() == image2);
    // Written into B's mount with cp (a cache miss filled): A sees it.
    let image3 = random_bytes(2 << 20, 13);
    let src = lay_out(&t.path().join("m3"), &image3, "k3\n");
    fs::create_dir(mp.join(sha3)).unwrap();
    for f in ["image.img", "id_rsa.pub"] {
        let st = Command::new("cp")
            .arg(src.join(f))
            .arg(mp.join(sha3))
            .status()
            .unwrap();
        assert!(st.success());
    }
    crate::mount::wait_until(60, "A to see what was written into B's mount", || {
        a.names().contains(&sha3.to_owned())
    });
    assert!(a.cat(sha3, "image.img") == image3, "A reads other bytes");
    assert_eq!(a.cat(sha3, "id_rsa.pub"), b"k3\n");
    m.unmount();
}

fn du_dir(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), bytes).unwrap();
    let out = Command::new("sha256sum").arg(tmp.path()).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_lost_index_comes_back_from_the_packs_and_the_remote() {
    let t = TempDir::new().unwrap();
    let (_, a, b) = two_hosts(t.path());
    let v1 = random_bytes(3 << 20, 20);
    let mut v2 = v1.clone();
    v2[1 << 20..(1 << 20) + 5_000].copy_from_slice(&random_bytes(5_000, 21));
    a.put("v1", &lay_out(&t.path().join("v1"), &v1, "k\n"));
    // B's v2 names A's chunks (deduped) and its own few.
    b.put("v2", &lay_out(&t.path().join("v2"), &v2, "k\n"));
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(b.store.join(f));
    }
    // No --remote: the store remembers it.
    let out = dc(&b.store)
        .env("DEPLOYCACHE_HOST_ID", "b")
        .args(["ls", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("rebuilt it from"), "{}", stderr(&out));
    assert_eq!(names(&json(&out.stdout)), ["v1", "v2"]);
    assert!(
        b.cat("v2", "image.img") == v2,
        "v2 reads other bytes after the rebuild"
    );
    assert!(b.cat("v1", "image.img") == v1);
    ok(b.dc().args(["verify"]));
    // Nothing new to publish: B's v2 is the remote's.
    let p = json(&ok(b.dc().args(["remote", "push", "--json"])));
    assert_eq!(p["commits"], 0, "{p}");
}

#[test]
fn a_damaged_cached_block_is_fetched_again_and_a_damaged_remote_pack_is_an_error() {
    let t = TempDir::new().unwrap();
    let (remote, a, b) = two_hosts(t.path());
    let remote = &remote;
    let image = random_bytes(6 << 20, 30);
    a.put("x", &lay_out(&t.path().join("x"), &image, "k\n"));
    assert!(b.cat("x", "image.img") == image);
    // Every cached block of B damaged (one byte each, mid-block).
    let blocks: Vec<PathBuf> = walkdir::WalkDir::new(b.store.join("remote-cache"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    assert!(!blocks.is_empty());
    for p in &blocks {
        let mut bytes = fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(p, bytes).unwrap();
    }
    assert!(
        b.cat("x", "image.img") == image,
        "B served its damaged cache or failed"
    );
    // The remote's own copy damaged: an error, and no wrong byte before it.
    let packs = Path::new(remote.strip_prefix("file://").unwrap()).join("packs");
    let big = fs::read_dir(&packs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = fs::read(&big).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&big, bytes).unwrap();
    let c = Host::new(t.path(), "c", remote);
    let out = c.dc().args(["cat", "x", "image.img"]).output().unwrap();
    assert!(!out.status.success(), "a damaged remote pack read as whole");
    assert!(stderr(&out).contains("corrupt chunk"), "{}", stderr(&out));
    assert!(
        out.stdout.len() < image.len() && image.starts_with(&out.stdout),
        "{} bytes out, not a prefix of the file",
        out.stdout.len()
    );
}

#[test]
fn a_hosts_own_published_packs_count_toward_its_cache_size() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    let image = random_bytes(12 << 20, 40);
    let src = lay_out(&t.path().join("x"), &image, "k\n");
    ok(a.dc().args(["--cache-size", "2M", "put", "x"]).arg(&src));
    let own = du_dir(&a.store.join("packs"));
    assert!(
        own < 4 << 20,
        "{own} bytes of own packs kept past --cache-size 2M"
    );
    // Still every byte: from the remote now.
    assert!(a.cat("x", "image.img") == image);
    ok(a.dc().args(["verify", "--full"]));
}

/// `kill -9` of a publishing host after its packs are uploaded and before
/// its commit, then after its commit and before it recorded it: the other
/// host sees the artifact whole or not at all, and a rerun finishes.
#[test]
fn kill_9_while_publishing_leaves_the_artifact_whole_or_absent_and_a_rerun_finishes() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    for (i, step) in ["uploaded", "committed"].into_iter().enumerate() {
        let (a, b) = (
            Host::new(t.path(), "a", remote),
            Host::new(t.path(), "b", remote),
        );
        let name = format!("k{i}");
        let image = random_bytes(3 << 20, 50 + i as u64);
        let src = lay_out(&t.path().join(&name), &image, "k\n");
        let mut child = a
            .dc()
            .env("DEPLOYCACHE_PUBLISH_PAUSE", format!("{step}:60000"))
            .args(["put", &name])
            .arg(&src)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let commits = commits_dir(remote);
        let count = || fs::read_dir(&commits).map_or(0, |d| d.count());
        let before = count();
        // At the pause: the pack is up (and for "committed", the commit).
        crate::mount::wait_until(30, "the publish to reach its pause", || {
            pack_bytes(remote).is_some_and(|p| p.values().sum::<u64>() > 3 << 20)
                && (step == "uploaded" || count() > before)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = b.names().contains(&name);
        match step {
            "uploaded" => assert!(!seen, "an artifact without its commit was seen"),
            _ => {
                assert!(seen, "the commit was written but B does not see it");
                assert!(b.cat(&name, "image.img") == image);
            }
        }
        // A's store is sound, and a rerun publishes (once: the commit
        // already written is applied as A's own version).
        ok(a.dc().args(["verify"]));
        ok(a.dc().args(["remote", "push"]));
        assert_eq!(count(), before + 1, "{step}: one commit, not two");
        assert!(b.names().contains(&name));
        assert!(b.cat(&name, "image.img") == image, "{step}");
        fs::remove_dir_all(&a.store).unwrap();
        fs::remove_dir_all(&b.store).unwrap();
    }
}
