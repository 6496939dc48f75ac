//! Issue 17: gc of a remote shared by several hosts. One host owns it;
//! deletion is in two phases on the storage's clock (mark, a grace period,
//! sweep); a writer never commits a pack a sweep may delete; eviction is
//! least recently used across hosts, and what a host has open is leased.
//! Grace periods of seconds stand in for the default day.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::*;
use crate::remote::{lay_out, remotes, two_hosts, Host};

/// The grace period of these tests.
const GRACE_S: u64 = 3;

fn grace() -> Duration {
    Duration::from_secs(GRACE_S) + Duration::from_millis(1200)
}

impl Host {
    /// `gc --json` with extra args, parsed.
    fn gc(&self, extra: &[&str]) -> serde_json::Value {
        json(&ok(self.dc().args(["gc", "--json"]).args(extra)))
    }

    fn take_gc(&self) {
        self.take_gc_with(GRACE_S);
    }

    fn take_gc_with(&self, grace_s: u64) {
        ok(self
            .dc()
            .args(["remote", "gc-owner", "--take", "--grace"])
            .arg(format!("{grace_s}s")));
    }
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// Pack objects of the remote, by listing it through the CLI's view of
/// it: `gc --dry-run --json` counts them.
fn remote_packs(h: &Host) -> u64 {
    n(&h.gc(&["--dry-run"]), "packs")
}

#[test]
fn gc_has_one_owner_and_deletes_only_what_a_mark_named_a_grace_period_ago() {
    let t = TempDir::new().unwrap();
    for (i, remote) in remotes(t.path()).iter().enumerate() {
        let t = t.path().join(format!("r{i}"));
        let (a, b) = (Host::new(&t, "a", remote), Host::new(&t, "b", remote));
        let x = random_bytes(3 << 20, 1);
        let y = random_bytes(3 << 20, 2);
        a.put("x", &lay_out(&t.join("x"), &x, "kx\n"));
        a.put("y", &lay_out(&t.join("y"), &y, "ky\n"));
        // An orphan: a publisher killed after its pack upload, before its
        // commit, whose host is gone for good (its store with it).
        let d = Host::new(&t, "d", remote);
        let mut child = d
            .dc()
            .env("DEPLOYCACHE_PUBLISH_PAUSE", "uploaded:60000")
            .args(["put", "orphan"])
            .arg(lay_out(&t.join("o"), &random_bytes(2 << 20, 3), "ko\n"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let before = remote_packs(&a);
        crate::mount::wait_until(30, "the orphan's pack upload", || remote_packs(&a) > before);
        child.kill().unwrap();
        child.wait().unwrap();
        fs::remove_dir_all(&d.store).unwrap();
        ok(a.dc().args(["rm", "y"]));

        // No owner: refused, saying how to make one.
        let e = stderr(&fails(a.dc().args(["gc"])));
        assert!(e.contains("gc-owner --take"), "{e}");
        b.take_gc();
        let e = stderr(&fails(a.dc().args(["gc"])));
        assert!(e.contains("owned by host \"b\""), "{e}");

        // Packs younger than the grace period are never marked (a
        // publisher's commit may be on its way).
        let r = b.gc(&[]);
        assert_eq!(n(&r, "packs_marked"), 0, "{r}");
        let all = n(&r, "packs");
        std::thread::sleep(grace());
        // y's packs and the orphan's are dead: marked, not deleted.
        let r = b.gc(&[]);
        let marked = n(&r, "packs_marked");
        assert!(marked >= 2, "{r}");
        assert_eq!(n(&r, "packs_deleted"), 0, "{r}");
        assert_eq!(n(&r, "artifacts"), 1, "{r}");
        // Within the grace period a rerun deletes nothing, and marks no
        // pack twice.
        let r = b.gc(&[]);
        assert_eq!(n(&r, "packs_deleted") + n(&r, "packs_marked"), 0, "{r}");
        assert_eq!(r["pending"].as_array().unwrap().len(), 1, "{r}");
        std::thread::sleep(grace());
        // A gc killed after deleting a mark's packs, before the mark: the
        // rerun finishes.
        let mut child = b
            .dc()
            .env("DEPLOYCACHE_REMOTE_GC_PAUSE", "swept:60000")
            .args(["gc"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        crate::mount::wait_until(30, "the sweep", || remote_packs(&a) == all - marked);
        child.kill().unwrap();
        child.wait().unwrap();
        let r = b.gc(&[]);
        assert_eq!(n(&r, "marks_swept"), 1, "{r}");
        assert_eq!(n(&r, "packs"), all - marked, "{r}");
        assert!(r["pending"].as_array().unwrap().is_empty(), "{r}");
        // Everything live is whole, on every host, a new one too.
        let c = Host::new(&t, "c", remote);
        // Of the commits, x's is all that is left: y's put went with its
        // removal's sweep, then the removal itself (older than the grace
        // period, the last of its artifact).
        let pulled = json(&ok(c.dc().args(["remote", "pull", "--json"])));
        assert_eq!(pulled["commits_listed"], 1, "{pulled}");
        assert_eq!(c.names(), ["x"]);
        assert!(c.cat("x", "image.img") == x);
        assert_eq!(a.names(), ["x"]);
        for h in [&a, &b, &c] {
            ok(h.dc().args(["verify", "--full"]));
        }
    }
}

/// A writer that deduplicated against chunks of an artifact that is
/// then removed, marked and swept while the writer waits: with the pack
/// still there it copies the chunks out before its commit (nothing
/// lost); past the sweep it refuses to commit, and a retry from the
/// source succeeds.
#[test]
fn a_paused_writer_never_commits_a_pack_the_sweep_deletes() {
    let t = TempDir::new().unwrap();
    for (i, remote) in remotes(t.path()).iter().enumerate() {
        let t = t.path().join(format!("r{i}"));
        for (j, pause_s, swept) in [(0, GRACE_S + 3, false), (1, 3 * GRACE_S + 4, true)] {
            let t = t.join(format!("case{j}"));
            let (a, b) = (Host::new(&t, "a", remote), Host::new(&t, "b", remote));
            a.take_gc();
            let x = random_bytes(4 << 20, 10 + j);
            let name_x = format!("x{j}");
            a.put(&name_x, &lay_out(&t.join("x"), &x, "kx\n"));
            // z: x's bytes and 1 MiB more; B knows x's chunks.
            let mut z = x.clone();
            z.extend(random_bytes(1 << 20, 20 + j));
            let zdir = lay_out(&t.join("z"), &z, "kz\n");
            let name_z = format!("z{j}");
            assert!(b.names().contains(&name_x));
            // E pulls x now and not again until after the sweep: it never
            // sees the mark.
            let e = Host::new(&t, "e", remote);
            assert!(e.names().contains(&name_x));
            std::thread::sleep(grace());
            let writer = b
                .dc()
                .env(
                    "DEPLOYCACHE_PUBLISH_PAUSE",
                    format!("viewing:{}", pause_s * 1000),
                )
                .args(["put", &name_z])
                .arg(&zdir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // While it waits: x goes, and gc marks (and, in case 1, sweeps)
            // its pack.
            std::thread::sleep(Duration::from_millis(500));
            ok(a.dc().args(["rm", &name_x]));
            let r = a.gc(&[]);
            let marked = n(&r, "packs_marked");
            assert!(marked >= 1, "{r}");
            if swept {
                std::thread::sleep(grace());
                let r = a.gc(&[]);
                assert_eq!(n(&r, "packs_deleted"), marked, "{r}");
            }
            let out = writer.wait_with_output().unwrap();
            let c = Host::new(&t, "c", remote);
            if !swept {
                assert!(out.status.success(), "{}", stderr(&out));
                std::thread::sleep(grace());
                let r = a.gc(&[]);
                assert_eq!(n(&r, "packs_deleted"), marked, "{r}");
            } else {
                let e = stderr(&out);
                assert!(!out.status.success(), "{e}");
                assert!(
                    e.contains("remote's gc deleted") && e.contains("from its source"),
                    "{e}"
                );
                assert!(!c.names().contains(&name_z));
                // The retry from the source, as the message says.
                ok(b.dc().args(["rm", &name_z]));
                b.put(&name_z, &zdir);
            }
            // Whole, on a host that never saw x, and on one that had x's
            // chunks where the sweep deleted them.
            assert!(c.cat(&name_z, "image.img") == z, "case {j}: z differs");
            assert!(e.cat(&name_z, "image.img") == z, "case {j}: z differs on e");
            for h in [&a, &b, &c, &e] {
                ok(h.dc().args(["verify", "--full"]));
            }
        }
    }
}

/// A reader of an old version through a mount keeps reading while a new
/// version is put and gc sweeps: the mount's lease keeps every version of
/// what it has open. Closed, the old version's packs go.
#[test]
fn a_reader_keeps_reading_across_a_sweep_and_its_lease_ends_with_it() {
    let t = TempDir::new().unwrap();
    let (_, a, b) = two_hosts(t.path());
    a.take_gc();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let v1 = random_bytes(40 << 20, 30);
    a.put(sha, &lay_out(&t.path().join("v1"), &v1, "k\n"));
    assert_eq!(b.names(), [sha]);
    let mp = t.path().join("mnt");
    let m = b.mount(&mp);
    let mut f = fs::File::open(mp.join(sha).join("image.img")).unwrap();
    let mut got = vec![0u8; 1 << 20];
    f.read_exact(&mut got).unwrap();
    // A new version replaces v1 everywhere; gc marks and sweeps.
    let v2 = random_bytes(2 << 20, 31);
    a.put(sha, &lay_out(&t.path().join("v2"), &v2, "k\n"));
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert_eq!(n(&r, "packs_marked"), 0, "the open v1 was marked: {r}");
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert_eq!(n(&r, "packs_deleted"), 0, "{r}");
    // The rest of v1, from the remote (the cache held at most 20 MiB).
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    got.extend(rest);
    assert!(got == v1, "the reader of v1 read other bytes");
    drop(f);
    // Closed: the lease goes with the mount's next round; v1's packs then.
    std::thread::sleep(Duration::from_secs(1));
    let r = a.gc(&[]);
    assert!(n(&r, "packs_marked") >= 1, "{r}");
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert!(n(&r, "packs_deleted") >= 1, "{r}");
    assert!(fs::read(mp.join(sha).join("image.img")).unwrap() == v2);
    m.unmount();
}

/// Eviction by least recent use across hosts: what only B read recently,
/// and what A has open through its mount (used longest ago), stay; the
/// least recently used other artifact goes, for every host.
#[test]
fn lru_eviction_keeps_what_another_host_reads_and_what_a_host_has_open() {
    let t = TempDir::new().unwrap();
    let (_, a, b) = two_hosts(t.path());
    a.take_gc();
    let (open, read_by_b, other) = (
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "3333333333333333333333333333333333333333",
    );
    let img = |i: u64| random_bytes(2 << 20, 40 + i);
    a.put(open, &lay_out(&t.path().join(open), &img(0), "k\n"));
    // A's mount opens it, and keeps it open: its last use is the oldest.
    let mp = t.path().join("mnt");
    let m = a.mount(&mp);
    let f = fs::File::open(mp.join(open).join("image.img")).unwrap();
    // Uses are seconds: the next ones are later.
    std::thread::sleep(Duration::from_millis(1100));
    a.put(
        read_by_b,
        &lay_out(&t.path().join(read_by_b), &img(1), "k\n"),
    );
    std::thread::sleep(Duration::from_millis(1100));
    a.put(other, &lay_out(&t.path().join(other), &img(2), "k\n"));
    std::thread::sleep(Duration::from_millis(1100));
    // Only B reads this one, after the last put.
    assert!(b.cat(read_by_b, "image.img") == img(1));
    crate::mount::wait_until(30, "A's lease", || {
        let r = a.gc(&["--dry-run", "--max-size", "5M"]);
        r["kept_leased"].as_array().is_some_and(|l| !l.is_empty())
    });
    // Three 2 MiB images over 5 MiB: one eviction is enough. By A's own
    // uses alone `read_by_b` would go; without the lease, `open`.
    let r = a.gc(&["--max-size", "5M"]);
    assert_eq!(r["evicted"], serde_json::json!([other]), "{r}");
    assert_eq!(r["kept_leased"], serde_json::json!([open]), "{r}");
    let mut left = b.names();
    left.sort();
    assert_eq!(left, [open, read_by_b]);
    assert!(b.cat(read_by_b, "image.img") == img(1));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut got).unwrap();
    assert!(got == img(0));
    drop(f);
    m.unmount();
}

/// One publish of many artifacts whose files share packs uploads each pack
/// once and copies nothing: a pack it uploaded itself is no pack a mark
/// may name (it was counted missing from the view taken before the upload,
/// and every artifact after the first "rescued" its chunks into a new pack).
#[test]
fn a_publish_of_many_artifacts_uploads_each_shared_pack_once() {
    let t = TempDir::new().unwrap();
    let remote = &remotes(t.path())[0];
    let a = Host::new(t.path(), "a", remote);
    let cache = t.path().join("cache");
    for i in 0..12u64 {
        let dir = cache.join(format!("{i:040x}"));
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("img"), &random_bytes(30_000, 60 + i));
    }
    ok(a.dc().arg("import").arg(&cache));
    let packs = crate::remote::pack_bytes(remote).unwrap();
    assert!(
        packs.len() <= 4,
        "{} packs for 12 small artifacts",
        packs.len()
    );
    let c = Host::new(t.path(), "c", remote);
    assert_eq!(c.names().len(), 12);
    assert!(c.cat(&format!("{:040x}", 11), "img") == random_bytes(30_000, 71));
}

/// `kill -9` of the remote's gc after it read every commit (nothing done
/// yet) and after it wrote its mark: every host stays sound, and the next
/// runs finish the job (what was dead goes, what is live stays).
#[test]
fn kill_9_of_the_remotes_gc_at_each_step_leaves_every_host_sound() {
    let t = TempDir::new().unwrap();
    let (remote, a, b) = two_hosts(t.path());
    let remote = &remote;
    a.take_gc();
    let x = random_bytes(2 << 20, 80);
    a.put("x", &lay_out(&t.path().join("x"), &x, "kx\n"));
    b.put(
        "y",
        &lay_out(&t.path().join("y"), &random_bytes(2 << 20, 81), "ky\n"),
    );
    ok(b.dc().args(["rm", "y"]));
    std::thread::sleep(grace());
    let all = remote_packs(&a);
    for step in ["listed", "marked"] {
        let mut child = a
            .dc()
            .env("DEPLOYCACHE_REMOTE_GC_PAUSE", format!("{step}:60000"))
            .args(["gc"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        child.kill().unwrap();
        child.wait().unwrap();
        for h in [&a, &b] {
            ok(h.dc().args(["verify", "--full"]));
            assert!(h.cat("x", "image.img") == x, "{step}");
        }
    }
    // The mark the killed run wrote is swept a grace period later.
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert!(n(&r, "packs_deleted") >= 1, "{r}");
    assert_eq!(n(&r, "packs_marked"), 0, "{r}");
    assert!(remote_packs(&a) < all);
    for h in [&a, &b, &Host::new(t.path(), "c", remote)] {
        assert!(!h.names().contains(&"y".to_owned()));
        ok(h.dc().args(["verify", "--full"]));
        assert!(h.cat("x", "image.img") == x);
    }
}

/// A damaged mark (or gc configuration): reads go on with one line naming
/// it; a publish and gc refuse (neither can tell what gc will delete)
/// naming it and what to do; deleted, everything works again.
#[test]
fn a_damaged_mark_is_named_and_blocks_only_publishing_and_gc() {
    let t = TempDir::new().unwrap();
    let (remote, a, _) = two_hosts(t.path());
    a.take_gc();
    let x = random_bytes(100_000, 90);
    let src = lay_out(&t.path().join("x"), &x, "kx\n");
    a.put("x", &src);
    let marks = Path::new(remote.strip_prefix("file://").unwrap()).join("gc/marks");
    fs::create_dir_all(&marks).unwrap();
    let bad = marks.join("00000000000000000001-z-0000000000000001.mark");
    write(&bad, b"not json");
    let name = bad.file_name().unwrap().to_string_lossy().into_owned();
    let o = a.dc().args(["cat", "x", "image.img"]).output().unwrap();
    assert!(o.status.success() && o.stdout == x, "{}", stderr(&o));
    assert!(stderr(&o).contains(&name), "{}", stderr(&o));
    for args in [&["put", "y"][..], &["gc"][..]] {
        let mut c = a.dc();
        c.args(args);
        if args[0] == "put" {
            c.arg(&src);
        }
        let e = stderr(&fails(&mut c));
        assert!(
            e.contains(&name) && e.contains("delete it"),
            "{args:?}: {e}"
        );
    }
    fs::remove_file(&bad).unwrap();
    ok(a.dc().args(["remote", "push"]));
    ok(a.dc().args(["gc"]));
    let c = Host::new(t.path(), "c", &remote);
    let mut names = c.names();
    names.sort();
    assert_eq!(names, ["x", "y"]);
}

/// Two hosts store the same new bytes at once (each in a pack of its
/// own), under one name: one version wins, and gc marks the loser's
/// packs. A third host that applied the loser first located the shared
/// chunks in the loser's packs: when it sees the mark, it takes their
/// location from the winner's commit, and reads on after the sweep.
#[test]
fn a_host_that_located_a_chunk_in_a_losers_pack_follows_the_winner_before_the_sweep() {
    let t = TempDir::new().unwrap();
    let (remote, a, b) = two_hosts(t.path());
    // A grace whose half is longer than A's pause below (a view older than
    // that is taken again, and the pause with it).
    let grace_s = 10;
    a.take_gc_with(grace_s);
    let grace = || Duration::from_millis(grace_s * 1000 + 1200);
    let image = random_bytes(3 << 20, 100);
    let src = lay_out(&t.path().join("n"), &image, "k\n");
    // A stores and uploads, then waits before its commit; B, seeing no
    // commit of A's, stores the same bytes in its own packs and commits.
    let a_put = a
        .dc()
        .env("DEPLOYCACHE_PUBLISH_PAUSE", "uploaded:4000")
        .args(["put", "n"])
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    b.put("n", &src);
    // C applies B's version first.
    let c = Host::new(t.path(), "c", &remote);
    assert_eq!(c.names(), ["n"]);
    assert!(a_put.wait_with_output().unwrap().status.success());
    // A's commit came later: it wins everywhere; B's packs are dead.
    assert!(c.cat("n", "image.img") == image);
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert!(n(&r, "packs_marked") >= 1, "{r}");
    // C pulls while the mark stands, then the sweep.
    assert_eq!(c.names(), ["n"]);
    std::thread::sleep(grace());
    let r = a.gc(&[]);
    assert!(n(&r, "packs_deleted") >= 1, "{r}");
    assert!(c.cat("n", "image.img") == image, "C lost the bytes");
    for h in [&a, &b, &c] {
        ok(h.dc().args(["verify", "--full"]));
    }
}
