//! Issue 11 (hardening), the store's side: a private store, no symlinks
//! followed, waits that say for whom, parallel creation, orphan packs of
//! killed writers, `rm` on a full disk, `ls` that cannot drive the
//! terminal, and an `export` that leaves nothing half-written.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::*;

/// A watchdog for waits on another process, not a timing assertion: a wait
/// that takes this long has hung.
const HUNG: Duration = Duration::from_secs(120);

/// A temp dir others may traverse (tempfile makes them 0700, which alone
/// would keep every other user out, and the tests below would prove nothing).
fn open_temp() -> TempDir {
    let t = TempDir::new().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// `dc` run under `umask 000`: what the store creates must not depend on it.
fn dc_umask0(store: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .arg("--store")
        .arg(store)
        .env_remove("DEPLOYCACHE_STORE")
        .env_remove("DEPLOYCACHE_NAMESPACE");
    c
}

fn packs(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// The pack files that hold chunks (not only manifest records).
fn chunk_packs(store: &Path) -> Vec<PathBuf> {
    packs(store)
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|b| b.get(8..12) == Some(b"DCCH")))
        .collect()
}

/// Run `cmd` as user nobody.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("spawn setpriv")
}

#[test]
fn store_is_private_whatever_the_umask() {
    let t = open_temp();
    let store = t.path().join("s");
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret material\n".repeat(50);
    write(&src.join("id_rsa"), &key);
    fs::set_permissions(src.join("id_rsa"), fs::Permissions::from_mode(0o600)).unwrap();
    ok(dc_umask0(&store).args(["put", "a"]).arg(&src));
    // A second process while the first holds the index open: -wal and -shm exist.
    ok(dc_umask0(&store).args(["ls"]));
    let mut seen = Vec::new();
    for e in walkdir::WalkDir::new(&store) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().mode() & 0o7777;
        let want = if e.file_type().is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:04o}", e.path().display());
        seen.push(e.file_name().to_string_lossy().into_owned());
    }
    for name in [
        "packs",
        "index.sqlite",
        "lock",
        "gc.lock",
        "owner",
        "FORMAT",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} not in {seen:?}");
    }
    // Another local user can neither read a pack or the index nor take the locks.
    let pack = packs(&store).pop().expect("a pack");
    for p in [&pack, &store.join("index.sqlite")] {
        let out = as_nobody(&["cat", p.to_str().unwrap()]);
        assert!(!out.status.success(), "nobody read {}", p.display());
        assert!(out.stdout.is_empty());
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    for l in ["lock", "gc.lock"] {
        let p = store.join(l);
        let out = as_nobody(&["flock", "-n", p.to_str().unwrap(), "true"]);
        assert!(!out.status.success(), "nobody took {l}");
    }
    assert_eq!(ok(dc(&store).args(["cat", "a", "id_rsa"])), key);
}

#[test]
fn loose_store_is_tightened_on_open_and_verify_warns() {
    let t = open_temp();
    let store = t.path().join("s");
    let f = t.path().join("x.yaml");
    write(&f, b"dea: 1\n");
    ok(dc(&store).args(["put", "a"]).arg(&f));
    // As a store made by an older deploycache (or chmod'ed) looks.
    let st = Command::new("chmod")
        .args(["-R", "go+rX"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success());
    let out = dc(&store).args(["verify"]).output().unwrap();
    assert!(out.status.success(), "a warning is not a problem: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("warning:") && err.contains("other users") && err.contains("owner-only"),
        "{err}"
    );
    for e in walkdir::WalkDir::new(&store) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
    }
    // Once tight, verify says nothing.
    let out = dc(&store).args(["verify"]).output().unwrap();
    assert!(out.status.success());
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(ok(dc(&store).args(["cat", "a", "x.yaml"])), b"dea: 1\n");
}

#[test]
fn import_and_put_never_follow_symlinks() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let secret = t.path().join("shadow");
    write(&secret, b"root:$6$secret-hash:19000:0:99999:7:::\n");
    let cache = t.path().join("cache");
    let (a, b, c) = (cache.join("a"), cache.join("b"), cache.join("c"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&c).unwrap();
    write(&a.join("x.yaml"), b"dea: 1\n");
    std::os::unix::fs::symlink(&secret, a.join("id_rsa")).unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::copy(&secret, elsewhere.join("passwd")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &b).unwrap();
    write(&c.join("x.yaml"), b"dea: 2\n");

    let out = dc(&store).arg("import").arg(&cache).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for entry in [&a, &b] {
        let line = err
            .lines()
            .find(|l| l.contains(&*entry.to_string_lossy()))
            .unwrap_or_else(|| panic!("{} not named in: {err}", entry.display()));
        assert!(line.contains("symbolic link"), "{line}");
    }
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), ["c"]);

    // put: a link in a directory, or named itself, is refused and named.
    let out = fails(dc(&store).args(["put", "p"]).arg(&a));
    let err = stderr(&out);
    assert!(
        err.contains(&*a.join("id_rsa").to_string_lossy()) && err.contains("symbolic link"),
        "{err}"
    );
    let out = fails(dc(&store).args(["put", "p"]).arg(a.join("id_rsa")));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), ["c"]);
    // Nothing of the secret reached the store.
    let raw: Vec<u8> = packs(&store)
        .iter()
        .flat_map(|p| fs::read(p).unwrap())
        .collect();
    assert!(!raw.windows(12).any(|w| w == b"secret-hash:"));
}

/// Holds an flock on `path` (exclusive or shared) until dropped.
struct Holder(Child);

impl Holder {
    fn new(path: &Path, mode: &str) -> Holder {
        let mut child = Command::new("flock")
            .arg(mode)
            .arg(path)
            .args(["sh", "-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n");
        Holder(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Start `cmd` with stderr piped; its lines arrive on the receiver.
fn spawn_with_stderr(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match rx.recv_timeout(HUNG) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} ({e})"),
        }
    }
}

#[test]
fn a_wait_on_a_lock_says_what_and_for_whom() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let f = t.path().join("x.yaml");
    write(&f, b"dea: 1\n");
    ok(dc(&store).arg("init"));
    for (lock, what, cmd) in [
        ("gc.lock", "gc lock", vec!["put", "a", f.to_str().unwrap()]),
        ("lock", "host lock", vec!["ls"]),
    ] {
        let holder = Holder::new(&store.join(lock), "-x");
        let (child, rx) = spawn_with_stderr(dc(&store).args(&cmd).stdout(Stdio::piped()));
        let line = wait_for_line(&rx, "waiting for");
        assert!(line.contains(what), "{line}");
        assert!(
            line.contains(&*store.join(lock).to_string_lossy()),
            "{line}"
        );
        assert!(
            line.contains(&format!("pid {} (flock)", holder.pid())),
            "{line}"
        );
        drop(holder);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        let rest: Vec<String> = rx.iter().collect();
        assert!(
            !rest.iter().any(|l| l.contains("waiting for")),
            "said more than once: {rest:?}"
        );
    }
    assert_eq!(ok(dc(&store).args(["cat", "a", "x.yaml"])), b"dea: 1\n");
}

#[test]
fn parallel_first_puts_create_one_store() {
    let t = TempDir::new().unwrap();
    let f = t.path().join("x.yaml");
    write(&f, b"dea: 1\n");
    for round in 0..8 {
        let store = t.path().join(format!("deep/s{round}"));
        let children: Vec<Child> = (0..4)
            .map(|i| {
                dc(&store)
                    .args(["put", &format!("a{i}")])
                    .arg(&f)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
        }
        assert_eq!(
            names(&json(&ok(dc(&store).args(["ls", "--json"])))),
            ["a0", "a1", "a2", "a3"]
        );
    }
}

#[test]
fn orphan_packs_of_killed_writers_are_swept() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let kept = t.path().join("kept.bin");
    write(&kept, &random_bytes(300_000, 1));
    ok(dc(&store).args(["put", "kept"]).arg(&kept));
    let kept_packs = packs(&store);

    // A put killed between writing its chunks and its commit: it blocks on
    // the index, which sqlite3 holds for writing, until it is killed.
    let big = t.path().join("big.bin");
    let data = random_bytes(3_000_000, 2);
    write(&big, &data);
    let mut sql = Command::new("sqlite3")
        .arg(store.join("index.sqlite"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql_in = sql.stdin.take().unwrap();
    writeln!(sql_in, "BEGIN IMMEDIATE; SELECT 'held';").unwrap();
    let mut line = String::new();
    BufReader::new(sql.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let mut put = dc(&store)
        .args(["put", "killed"])
        .arg(&big)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let orphan = loop {
        let written: Vec<PathBuf> = packs(&store)
            .into_iter()
            .filter(|p| !kept_packs.contains(p))
            .filter(|p| fs::metadata(p).unwrap().len() >= data.len() as u64)
            .collect();
        if let [p] = &written[..] {
            break p.clone();
        }
        assert!(start.elapsed() < HUNG, "the put wrote no pack");
        std::thread::sleep(Duration::from_millis(20));
    };
    put.kill().unwrap();
    put.wait().unwrap();
    drop(sql_in);
    sql.wait().unwrap();
    assert!(orphan.exists());

    // An unindexed pack that a live writer holds (flock) is not swept.
    let live = orphan.with_file_name(format!("{}.pack", "ab".repeat(16)));
    fs::copy(&orphan, &live).unwrap();
    let holder = Holder::new(&live, "-x");
    let small = t.path().join("small.yaml");
    write(&small, b"dea: 2\n");
    let out = dc(&store)
        .args(["put", "next"])
        .arg(&small)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted 1 unindexed pack file"),
        "{}",
        stderr(&out)
    );
    assert!(!orphan.exists(), "the killed put's pack is still there");
    assert!(live.exists(), "a pack held by a writer was deleted");
    drop(holder);

    // Nor while a writer is between its first chunk and its commit
    // (gc.lock shared).
    let writer = Holder::new(&store.join("gc.lock"), "-s");
    ok(dc(&store).args(["put", "next"]).arg(&small));
    assert!(live.exists(), "swept while a writer held gc.lock");
    drop(writer);
    ok(dc(&store).args(["put", "next"]).arg(&small));
    assert!(!live.exists());

    assert_eq!(
        chunk_packs(&store).len(),
        kept_packs
            .iter()
            .filter(|p| chunk_packs(&store).contains(p))
            .count()
            + 1
    );
    assert_eq!(
        ok(dc(&store).args(["cat", "kept", "kept.bin"])),
        fs::read(&kept).unwrap()
    );
    assert_eq!(
        ok(dc(&store).args(["cat", "next", "small.yaml"])),
        b"dea: 2\n"
    );
    let v = ok(dc(&store).args(["verify", "--full"]));
    assert!(String::from_utf8_lossy(&v).contains("0 problems"));
}

/// A tmpfs of `size`, unmounted when dropped.
struct SmallFs(TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let t = TempDir::new().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(t.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(t)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Regression: on a full disk every chunk a writer tried created a pack
/// file whose header could not be written, and left it behind empty (23
/// of them for one `put`; the same through the mount) until a gc swept them.
#[test]
fn a_put_on_a_full_disk_leaves_no_empty_pack_files() {
    let fs_ = SmallFs::new("16m");
    let store = fs_.0.path().join("s");
    let t = TempDir::new().unwrap();
    let kept = random_bytes(1_000_000, 5);
    write(&t.path().join("kept.bin"), &kept);
    ok(dc(&store)
        .args(["put", "kept"])
        .arg(t.path().join("kept.bin")));
    let big = t.path().join("big.bin");
    write(&big, &random_bytes(24 << 20, 6));
    let out = fails(dc(&store).args(["put", "big"]).arg(&big));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let packs: Vec<(PathBuf, u64)> = walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| (e.path().to_owned(), e.metadata().unwrap().len()))
        .collect();
    let headerless: Vec<_> = packs.iter().filter(|(_, len)| *len < 8).collect();
    assert!(headerless.is_empty(), "{headerless:?} of {packs:?}");
    assert_eq!(ok(dc(&store).args(["cat", "kept", "kept.bin"])), kept);
    ok(dc(&store).args(["verify", "--full"]));
}

#[test]
fn rm_works_on_a_full_disk() {
    let fs_ = SmallFs::new("24m");
    let store = fs_.0.path().join("s");
    let t = TempDir::new().unwrap();
    let mut expected = Vec::new();
    for i in 0..3 {
        let f = t.path().join(format!("f{i}.bin"));
        let data = random_bytes(1_500_000, 10 + i);
        write(&f, &data);
        ok(dc(&store).args(["put", &format!("a{i}")]).arg(&f));
        expected.push(data);
    }
    // Fill the disk to the last byte.
    let fill = fs_.0.path().join("fill");
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", fill.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "dd did not fill the disk");
    let more = Command::new("sh")
        .arg("-c")
        .arg(format!("cat /dev/zero >> {}", fill.display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&more.stderr).contains("No space left"));

    let out = ok(dc(&store).args(["rm", "a0"]));
    assert!(String::from_utf8_lossy(&out).starts_with("removed a0"));
    ok(dc(&store).args(["rm", "a1"]));
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), ["a2"]);
    assert_eq!(ok(dc(&store).args(["cat", "a2", "f2.bin"])), expected[2]);
    fs::remove_file(&fill).unwrap();
    let v = ok(dc(&store).args(["verify", "--full"]));
    assert!(String::from_utf8_lossy(&v).contains("0 problems"));
}

#[test]
fn ls_escapes_control_characters_and_pads_by_display_width() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let dir = t.path().join("src");
    fs::create_dir(&dir).unwrap();
    let evil = "x\u{1b}]0;pwned\u{7}\u{1b}[31mred\nline";
    write(&dir.join(evil), b"1");
    write(&dir.join("ключ-日本語"), b"22");
    ok(dc(&store).args(["put", evil]).arg(&dir));
    ok(dc(&store).args(["put", "日本語の成果物"]).arg(&dir));
    ok(dc(&store).args(["put", "plain"]).arg(&dir));

    let listing = String::from_utf8(ok(dc(&store).arg("ls"))).unwrap();
    let files = String::from_utf8(ok(dc(&store).args(["ls", "plain"]))).unwrap();
    for out in [&listing, &files] {
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(
            out.contains(r"x\u{1b}]0;pwned\u{7}\u{1b}[31mred\nline"),
            "{out}"
        );
    }
    assert_eq!(
        listing.lines().count(),
        4,
        "a newline in a name split a row: {listing}"
    );
    // The FILES column starts at the same terminal column on every row.
    let col = |l: &str| {
        let end = l
            .find(" 2 ")
            .map(|i| i + 2)
            .or_else(|| l.find("FILES").map(|i| i + 5));
        unicode_width::UnicodeWidthStr::width(&l[..end.unwrap()])
    };
    let cols: Vec<usize> = listing.lines().map(col).collect();
    assert!(cols.iter().all(|c| *c == cols[0]), "{cols:?}\n{listing}");
    let size_col = |l: &str| unicode_width::UnicodeWidthStr::width(&l[..l.rfind("  ").unwrap()]);
    let cols: Vec<usize> = files.lines().map(size_col).collect();
    assert!(cols.iter().all(|c| *c == cols[0]), "{cols:?}\n{files}");

    let out = String::from_utf8(ok(dc(&store).args(["rm", evil]))).unwrap();
    assert!(!out.contains('\u{1b}'), "{out:?}");
}

#[test]
fn export_that_fails_midway_leaves_no_partial_dest() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    write(&src.join("a.bin"), &random_bytes(200_000, 3));
    ok(dc(&store).args(["put", "first"]).arg(src.join("a.bin")));
    let first = packs(&store);
    // b.bin's chunks are the only ones in the second pack: damage that.
    write(&src.join("b.bin"), &random_bytes(200_000, 4));
    ok(dc(&store).args(["put", "art"]).arg(&src));
    let second: Vec<PathBuf> = chunk_packs(&store)
        .into_iter()
        .filter(|p| !first.contains(p))
        .collect();
    let [damaged] = &second[..] else {
        panic!("{second:?}")
    };
    let mut bytes = fs::read(damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(damaged, &bytes).unwrap();

    // A new DEST: gone again.
    let dest = t.path().join("out");
    let out = fails(dc(&store).args(["export", "art"]).arg(&dest));
    assert!(stderr(&out).contains("corrupt chunk"), "{}", stderr(&out));
    assert!(
        !dest.exists(),
        "{:?}",
        fs::read_dir(&dest).map(|d| d.count())
    );
    // An existing DEST: as it was.
    fs::create_dir(&dest).unwrap();
    write(&dest.join("a.bin"), b"mine");
    fails(dc(&store).args(["export", "art"]).arg(&dest));
    let left: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["a.bin"]);
    assert_eq!(fs::read(dest.join("a.bin")).unwrap(), b"mine");
}

#[test]
fn a_wait_on_the_index_says_for_whom() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let f = t.path().join("x.yaml");
    write(&f, b"dea: 1\n");
    ok(dc(&store).args(["put", "a"]).arg(&f));
    ok(dc(&store).args(["put", "b"]).arg(&f));
    // sqlite3 holds the index's write lock until its stdin closes.
    let mut sql = Command::new("sqlite3")
        .arg(store.join("index.sqlite"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql_in = sql.stdin.take().unwrap();
    writeln!(sql_in, "BEGIN IMMEDIATE; SELECT 'held';").unwrap();
    let mut line = String::new();
    BufReader::new(sql.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let (child, rx) = spawn_with_stderr(dc(&store).args(["rm", "a"]).stdout(Stdio::piped()));
    let line = wait_for_line(&rx, "waiting for");
    assert!(line.contains("store index"), "{line}");
    assert!(
        line.contains(&format!("pid {} (sqlite3)", sql.id())),
        "{line}"
    );
    drop(sql_in);
    sql.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let rest: Vec<String> = rx.iter().collect();
    assert!(!rest.iter().any(|l| l.contains("waiting for")), "{rest:?}");
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), ["b"]);
}
