//! The mount under attack: races that deadlocked it, a shell redirect that
//! emptied a file, files lost in flight that looked cached, a full disk,
//! a damaged index, and a daemon that never closed a pack. Each test names
//! what broke before its fix.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::*;
use crate::mount::*;

/// The pid of a foreground mount's daemon.
fn daemon_pid(m: &Mounted) -> u32 {
    m.child.as_ref().expect("a foreground mount").id()
}

fn kill_9(pid: u32) {
    Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Regression: `cp` into `MNT/a/` while a loop ran `mkdir MNT/b; rmdir
/// MNT/b` hung `cp`, `rmdir` and `ls` in uninterruptible sleep: rmdir held
/// the session table while locking each session, and a commit held its
/// session while taking the table. Every kind of operation runs at once
/// here, a bounded number of times; a watchdog kills the daemon (which
/// unsticks every waiter) and fails the test if they do not all finish.
#[test]
fn parallel_writers_readers_mkdir_rmdir_renames_and_listings_never_deadlock() {
    let (t, store, src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &["--threads", "4"]);
    let pid = daemon_pid(&m);
    let big = random_bytes(24 << 20, 41);
    write(&src.join("big.bin"), &big);
    let reference = random_bytes(6 << 20, 42);
    fs::create_dir(m.path("r")).unwrap();
    fs::write(m.path("r/ref.bin"), &reference).unwrap();
    fs::write(m.path("r/x1"), b"rename me").unwrap();
    fs::create_dir(m.path("a")).unwrap();

    let (done_tx, done_rx) = mpsc::channel::<(&'static str, Result<(), String>)>();
    let mut workers = Vec::new();
    let spawn = |name: &'static str, f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((name, f()));
        })
    };
    for w in 0..2 {
        let (mp, src) = (mp.clone(), src.clone());
        workers.push(spawn(
            "cp writer",
            Box::new(move || {
                for i in 0..4 {
                    let dst = mp.join(format!("a/w{w}-{i}.bin"));
                    let st = Command::new("cp")
                        .arg(src.join("big.bin"))
                        .arg(&dst)
                        .status()
                        .map_err(|e| e.to_string())?;
                    if !st.success() {
                        return Err(format!("cp to {} failed: {st}", dst.display()));
                    }
                }
                Ok(())
            }),
        ));
    }
    {
        let mp = mp.clone();
        workers.push(spawn(
            "mkdir/rmdir",
            Box::new(move || {
                for _ in 0..300 {
                    fs::create_dir(mp.join("b")).map_err(|e| format!("mkdir b: {e}"))?;
                    fs::remove_dir(mp.join("b")).map_err(|e| format!("rmdir b: {e}"))?;
                }
                Ok(())
            }),
        ));
    }
    {
        let (mp, reference) = (mp.clone(), reference.clone());
        workers.push(spawn(
            "reader",
            Box::new(move || {
                for _ in 0..30 {
                    let got = fs::read(mp.join("r/ref.bin")).map_err(|e| e.to_string())?;
                    if got != reference {
                        return Err("ref.bin read back different bytes".into());
                    }
                }
                Ok(())
            }),
        ));
    }
    {
        let mp = mp.clone();
        workers.push(spawn(
            "renamer",
            Box::new(move || {
                for i in 0..100 {
                    let (from, to) = if i % 2 == 0 {
                        ("x1", "x2")
                    } else {
                        ("x2", "x1")
                    };
                    fs::rename(mp.join("r").join(from), mp.join("r").join(to))
                        .map_err(|e| format!("rename {from} {to}: {e}"))?;
                }
                Ok(())
            }),
        ));
    }
    {
        let mp = mp.clone();
        workers.push(spawn(
            "readdir",
            Box::new(move || {
                for _ in 0..300 {
                    for d in [mp.clone(), mp.join("a"), mp.join("r")] {
                        fs::read_dir(&d)
                            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                            .map_err(|e| format!("readdir {}: {e}", d.display()))?;
                    }
                }
                Ok(())
            }),
        ));
    }
    drop(done_tx);
    let n = workers.len();
    let mut failures = Vec::new();
    for _ in 0..n {
        match done_rx.recv_timeout(Duration::from_secs(300)) {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(e))) => failures.push(format!("{name}: {e}")),
            Err(_) => {
                kill_9(pid);
                panic!("deadlock: workers still stuck after 300 s (daemon killed to free them)");
            }
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for w in 0..2 {
        for i in 0..4 {
            let got = fs::read(m.path(&format!("a/w{w}-{i}.bin"))).unwrap();
            assert!(got == big, "a/w{w}-{i}.bin differs");
        }
    }
    assert_eq!(entries(&m.path("r")), ["ref.bin", "x1"]);
    assert!(!m.path("b").exists());
    m.unmount();
    verify_full(&store);
    drop(t);
}

/// Regression: `cat new > MNT/A/x.yaml` over an existing file failed with
/// "write error: No such file or directory" and left a 0-byte x.yaml: the
/// shell's close of its first descriptor (after dup2) was a flush that
/// committed the just-truncated file and ended the write session.
#[test]
fn a_shell_redirect_over_an_existing_file_replaces_it_whole() {
    let (_t, store, src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &[]);
    let a = m.path(SHA);
    fs::create_dir(&a).unwrap();
    fs::write(a.join("x.yaml"), b"old: 1\n").unwrap();
    let new = text_bytes(200_000, 51);
    write(&src.join("new.yaml"), &new);
    sh(&format!(
        "cat {} > {}",
        src.join("new.yaml").display(),
        a.join("x.yaml").display()
    ));
    assert!(fs::read(a.join("x.yaml")).unwrap() == new);
    sh(&format!("echo hello > {}", a.join("x.yaml").display()));
    assert_eq!(fs::read(a.join("x.yaml")).unwrap(), b"hello\n");
    sh(&format!("echo more >> {}", a.join("x.yaml").display()));
    assert_eq!(fs::read(a.join("x.yaml")).unwrap(), b"hello\nmore\n");

    // A large tar overwritten the same way: no spurious quarantine entry.
    make_tar(&src, &src.join("one.tar"), 3, 52);
    make_tar(&src, &src.join("two.tar"), 4, 53);
    fs::copy(src.join("one.tar"), a.join("b.tar")).unwrap();
    sh(&format!(
        "cat {} > {}",
        src.join("two.tar").display(),
        a.join("b.tar").display()
    ));
    same_bytes(&src.join("two.tar"), &a.join("b.tar"));
    assert!(quarantine(&store).is_empty(), "{:?}", quarantine(&store));

    // A descriptor still open through a dup goes on writing after the
    // other copy's close committed what was written so far.
    let part1 = random_bytes(300_000, 54);
    let part2 = random_bytes(500_000, 55);
    let mut f = fs::File::create(a.join("d.bin")).unwrap();
    f.write_all(&part1).unwrap();
    let mut dup = f.try_clone().unwrap();
    drop(f);
    dup.write_all(&part2).unwrap();
    drop(dup);
    let mut want = part1.clone();
    want.extend_from_slice(&part2);
    assert!(fs::read(a.join("d.bin")).unwrap() == want);

    // An intended truncation still empties the file.
    sh(&format!(": > {}", a.join("x.yaml").display()));
    assert_eq!(fs::read(a.join("x.yaml")).unwrap(), b"");
    assert_eq!(entries(&a), ["b.tar", "d.bin", "x.yaml"]);
    m.unmount();
}

/// Regression: `mkdir C/sha; cp id_rsa x.yaml C/sha/`, then `kill -9` of
/// the daemon while a large image was being written: after the restart the
/// artifact listed `id_rsa x.yaml` and the hit test said True, the image
/// silently gone. Also: while a file was being written, the listing showed
/// it, so a second job took the hit and failed to open it.
#[test]
fn a_file_lost_in_flight_leaves_its_artifact_incomplete_until_written_whole() {
    let (_t, store, src, mp) = fresh();
    let mut m = Mounted::foreground(&store, &mp, &[]);
    let c = m.path(SHA);
    fs::create_dir(&c).unwrap();
    fs::write(c.join("id_rsa"), b"-----BEGIN KEY-----\n").unwrap();
    fs::write(c.join("x.yaml"), b"a: 1\n").unwrap();
    assert!(hit(&c), "a complete artifact is a hit");
    make_gz(&src.join("big.img.gz"), 6, 61);
    let image = fs::read(src.join("big.img.gz")).unwrap();
    let mut w = fs::File::create(c.join("big.img.gz")).unwrap();
    w.write_all(&image[..image.len() / 2]).unwrap();
    // Being written: incomplete to every reader, here and in another process.
    assert!(!hit(&c), "an artifact with a file being written must miss");
    assert_eq!(entries(&c), Vec::<String>::new());
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(ls[0]["missing"], serde_json::json!(["big.img.gz"]), "{ls}");
    kill_9(daemon_pid(&m));
    m.child.take().unwrap().wait().unwrap();
    drop(w);
    let m = Mounted::daemon(&store, &mp, &[]);
    assert!(
        !hit(&c),
        "a file lost in flight must leave its artifact a miss"
    );
    let q = quarantine(&store);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["file"], "big.img.gz");
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("lost in flight"),
        "{q:?}"
    );
    // The next fill writes it whole: a hit, every byte there.
    fs::copy(src.join("big.img.gz"), c.join("big.img.gz")).unwrap();
    assert!(hit(&c));
    assert_eq!(entries(&c), ["big.img.gz", "id_rsa", "x.yaml"]);
    assert!(fs::read(c.join("big.img.gz")).unwrap() == image);
    m.unmount();
    verify_full(&store);
}

/// `--complete-when`: the keys of a fill alone (copied by one scp, before
/// the bootstrap tar is even made on the master) must not pass the hit test.
#[test]
fn complete_when_lists_an_artifact_once_its_last_file_is_written() {
    let (_t, store, src, mp) = fresh();
    let m = Mounted::foreground(
        &store,
        &mp,
        &[
            "--complete-when",
            "opnfv-bootstraps-cache.tar",
            "--complete-when",
            "env_*.yaml",
        ],
    );
    let boot = m.path(SHA);
    fs::create_dir(&boot).unwrap();
    fs::write(boot.join("id_rsa"), b"key\n").unwrap();
    fs::write(boot.join("id_rsa.pub"), b"pub\n").unwrap();
    assert!(!hit(&boot), "the keys alone must not be a hit");
    make_tar(&src, &src.join("b.tar"), 2, 71);
    fs::copy(src.join("b.tar"), boot.join("opnfv-bootstraps-cache.tar")).unwrap();
    assert!(hit(&boot));
    assert_eq!(
        entries(&boot),
        ["id_rsa", "id_rsa.pub", "opnfv-bootstraps-cache.tar"]
    );
    let images = m.path(SHA2);
    fs::create_dir(&images).unwrap();
    make_gz(&src.join("i.img.gz"), 1, 72);
    fs::copy(
        src.join("i.img.gz"),
        images.join("env_1_ubuntu_1404_amd64.img.gz"),
    )
    .unwrap();
    assert!(
        !hit(&images),
        "the images without their yaml must not be a hit"
    );
    fs::write(images.join("env_1_ubuntu_1404_amd64.yaml"), b"images: []\n").unwrap();
    assert!(hit(&images));
    m.unmount();

    let out = fails(
        dc(&store)
            .args(["mount", "--complete-when", "env_[1.yaml"])
            .arg(&mp),
    );
    let err = stderr(&out);
    assert!(
        err.contains("env_[1.yaml") && err.lines().count() == 1,
        "{err}"
    );
}

/// A small filesystem for the store: tmpfs of `mib` MiB.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn new(dir: &Path, mib: u32) -> SmallFs {
        fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mib}m,mode=0700 tmpfs {}",
            dir.display()
        ));
        SmallFs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn pack_bytes(store: &Path) -> u64 {
    walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Regression: a write through the mount that hit ENOSPC left its pack
/// data behind (199 MiB after two tries), and at 100 % full the mount
/// returned EIO for mkdir instead of ENOSPC.
#[test]
fn a_full_disk_is_enospc_through_the_mount_and_leaves_no_pack_data() {
    let t = TempDir::new().unwrap();
    let small = SmallFs::new(&t.path().join("small"), 48);
    let store = small.dir.join("s");
    let mp = t.path().join("mnt");
    ok(dc(&store).arg("init"));
    let m = Mounted::foreground(&store, &mp, &[]);
    let a = m.path(SHA);
    fs::create_dir(&a).unwrap();
    let kept = random_bytes(2 << 20, 81);
    fs::write(a.join("kept.bin"), &kept).unwrap();
    let before = pack_bytes(&store);
    for attempt in 0..2 {
        let name = format!("big{attempt}.img.gz");
        let err = (|| -> std::io::Result<()> {
            let mut f = fs::File::create(a.join(&name))?;
            for i in 0..80 {
                f.write_all(&random_bytes(1 << 20, 100 * attempt + i))?;
            }
            f.sync_all()
        })()
        .expect_err("80 MiB cannot fit in 48 MiB");
        assert_eq!(errno_of(&err), libc::ENOSPC, "{err}");
        assert!(
            pack_bytes(&store) <= before + (1 << 20),
            "a failed write left pack data: {} bytes before, {} after",
            before,
            pack_bytes(&store)
        );
    }
    // What was committed is intact, and the artifact is incomplete.
    assert!(fs::read(a.join("kept.bin")).unwrap() == kept);
    assert!(!hit(&a));
    // At 100 % full, changes fail with ENOSPC, not EIO.
    let filler = small.dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=100"])
        .arg(format!("of={}", filler.display()))
        .status();
    let mut seen = None;
    for i in 0..200 {
        if let Err(e) = fs::create_dir(m.path(&format!("d{i}"))) {
            seen = Some(e);
            break;
        }
    }
    let e = seen.expect("mkdir on a full disk must fail at some point");
    assert_eq!(errno_of(&e), libc::ENOSPC, "{e}");
    fs::remove_file(&filler).unwrap();
    m.unmount();
    verify_full(&store);
}

/// Regression: the mount served a silently shortened file when the index's
/// `files.size` disagreed with the chunk list (`cat` served it whole).
#[test]
fn a_size_that_disagrees_with_the_chunk_list_is_refused_not_served_short() {
    let (_t, store, src, mp) = fresh();
    let data = random_bytes(400_000, 91);
    write(&src.join("f.bin"), &data);
    ok(dc(&store).args(["put", "art"]).arg(src.join("f.bin")));
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute("UPDATE files SET size = size - 1000", [])
        .unwrap();
    drop(db);
    let m = Mounted::foreground(&store, &mp, &[]);
    match fs::read(m.path("art/f.bin")) {
        Ok(got) => panic!(
            "a bad size must not be served: {} bytes came back",
            got.len()
        ),
        Err(err) => assert_eq!(errno_of(&err), libc::EIO, "{err}"),
    }
    m.unmount();
    let out = fails(dc(&store).args(["cat", "art", "f.bin"]));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("f.bin"), "{}", stderr(&out));
}

/// Pack files a process holds open (from /proc/PID/fd).
fn open_packs(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .count()
}

/// Regression: the reader kept every pack it ever read open, so a daemon
/// serving an ordinary cache of ~1,000 packs hit the limit of 1,024 open
/// files. Also: a chunk whose pack is gone (gc moved it) is found again.
#[test]
fn the_daemon_keeps_few_packs_open_and_finds_a_moved_chunk_again() {
    let (_t, store, src, mp) = fresh();
    // Each put writes a pack of its own.
    let n = 150;
    for i in 0..n {
        let f = src.join(format!("f{i}"));
        write(&f, &random_bytes(20_000, 1000 + i as u64));
        ok(dc(&store).args(["put", &format!("a{i}")]).arg(&f));
    }
    let packs = pack_bytes(&store);
    assert!(packs > 0);
    let m = Mounted::foreground(&store, &mp, &[]);
    let pid = daemon_pid(&m);
    for i in 0..n {
        let got = fs::read(m.path(&format!("a{i}/f{i}"))).unwrap();
        assert!(got == fs::read(src.join(format!("f{i}"))).unwrap());
    }
    let open = open_packs(pid);
    assert!(open <= 128, "{open} packs open after reading {n}");
    m.unmount();
    let m = Mounted::foreground(&store, &mp, &[]);

    // Open a file (its chunk list is loaded) before its pack moves, as gc
    // would move it: a copy under a new name, the index switched, the old
    // file deleted. The read must find the chunk at its new place.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .open(m.path("a0/f0"))
        .unwrap();
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    let old: String = db
        .query_row(
            "SELECT p.name FROM packs p JOIN chunks c ON c.pack = p.id
             JOIN file_chunks fc ON fc.chunk = c.id JOIN files fi ON fi.id = fc.file
             WHERE fi.name = 'f0'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let new = format!("{:032x}", 0xfeed_u128);
    let path = |name: &str| {
        store
            .join("packs")
            .join(&name[..2])
            .join(format!("{name}.pack"))
    };
    fs::create_dir_all(path(&new).parent().unwrap()).unwrap();
    fs::copy(path(&old), path(&new)).unwrap();
    db.execute("UPDATE packs SET name = ?1 WHERE name = ?2", [&new, &old])
        .unwrap();
    fs::remove_file(path(&old)).unwrap();
    drop(db);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut got).unwrap();
    assert!(got == fs::read(src.join("f0")).unwrap());
    drop(f);
    m.unmount();
    verify_full(&store);
}

/// Small edges of the mount: a name over 255 bytes is ENAMETOOLONG (it was
/// EINVAL), and a second writer of a file being written opens it without
/// EEXIST (it had not asked for O_EXCL).
#[test]
fn long_names_and_a_second_writer_get_the_errors_posix_gives() {
    let (_t, store, _src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &[]);
    let a = m.path(SHA);
    fs::create_dir(&a).unwrap();
    let long = "x".repeat(256);
    let e = fs::write(a.join(&long), b"x").unwrap_err();
    assert_eq!(errno_of(&e), libc::ENAMETOOLONG, "{e}");
    let e = fs::metadata(a.join(&long)).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENAMETOOLONG, "{e}");
    let e = fs::create_dir(m.path(&long)).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENAMETOOLONG, "{e}");

    let mut first = fs::File::create(a.join("f")).unwrap();
    first.write_all(b"first ").unwrap();
    let mut second = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(a.join("f"))
        .expect("a second writer without O_EXCL opens the file");
    let e = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(a.join("f"))
        .unwrap_err();
    assert_eq!(errno_of(&e), libc::EEXIST, "{e}");
    second.write_all(b"SECOND").unwrap();
    drop(second);
    drop(first);
    assert_eq!(fs::read(a.join("f")).unwrap(), b"SECOND");
    m.unmount();
}

/// Regression: `>>` onto a file kept aside as cut short silently started a
/// new file under its name. It now goes on from the bytes kept aside, as
/// in a plain directory: appending the rest makes the file whole.
#[test]
fn appending_to_a_cut_short_file_goes_on_from_its_bytes() {
    let (_t, store, src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &[]);
    let a = m.path(SHA);
    fs::create_dir(&a).unwrap();
    make_gz(&src.join("i.img.gz"), 2, 111);
    let whole = fs::read(src.join("i.img.gz")).unwrap();
    let cut = whole.len() / 3;
    write(&src.join("head"), &whole[..cut]);
    write(&src.join("tail"), &whole[cut..]);
    fs::copy(src.join("head"), a.join("i.img.gz")).unwrap();
    assert_eq!(quarantine(&store).len(), 1);
    assert!(!hit(&a));
    sh(&format!(
        "cat {} >> {}",
        src.join("tail").display(),
        a.join("i.img.gz").display()
    ));
    assert!(hit(&a));
    assert!(fs::read(a.join("i.img.gz")).unwrap() == whole);
    m.unmount();
    verify_full(&store);
}

/// Found by hand: a failed command left an empty `big.img` (a shell
/// redirect that ran nothing), the retry overwrote it, and the daemon was
/// killed mid-way. The overwrite was not recorded as pending, so the
/// artifact listed `big.img` (empty) and `id_rsa` during the write and
/// after the crash: a false hit on an empty image. An overwrite in flight,
/// or lost, leaves the artifact incomplete too, until the file is written
/// whole again; its committed content still reads by name meanwhile.
#[test]
fn an_overwrite_in_flight_or_lost_leaves_its_artifact_incomplete() {
    let (_t, store, src, mp) = fresh();
    let mut m = Mounted::foreground(&store, &mp, &[]);
    let c = m.path(SHA);
    fs::create_dir(&c).unwrap();
    fs::write(c.join("id_rsa"), b"key\n").unwrap();
    sh(&format!("true > {}", c.join("big.img").display()));
    assert!(hit(&c), "an empty file written whole is still a file");
    let image = random_bytes(8 << 20, 121);
    write(&src.join("big.img"), &image);
    let mut w = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(c.join("big.img"))
        .unwrap();
    w.write_all(&image[..3 << 20]).unwrap();
    assert!(
        !hit(&c),
        "an overwrite in flight must make the artifact miss"
    );
    assert_eq!(
        fs::read(c.join("big.img")).unwrap(),
        b"",
        "the committed content reads meanwhile"
    );
    kill_9(daemon_pid(&m));
    m.child.take().unwrap().wait().unwrap();
    drop(w);
    let m = Mounted::daemon(&store, &mp, &[]);
    assert!(
        !hit(&c),
        "an overwrite lost in flight must leave the artifact a miss"
    );
    let q = quarantine(&store);
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("lost in flight"),
        "{q:?}"
    );
    fs::copy(src.join("big.img"), c.join("big.img")).unwrap();
    assert!(hit(&c));
    assert!(fs::read(c.join("big.img")).unwrap() == image);
    m.unmount();
    verify_full(&store);
}
