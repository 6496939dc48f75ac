//! The mounted view, for real: the binary mounts a store, real tools (cp,
//! cat, tar, gzip, sha256sum, rsync, scp through a private sshd) drive it,
//! and every byte is compared.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

pub(crate) const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
pub(crate) const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// Poll `cond` until it holds; panic naming `what` after `secs`.
pub(crate) fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A mount of a store; unmounted on drop even when the test fails.
pub(crate) struct Mounted {
    pub(crate) mp: PathBuf,
    pub(crate) child: Option<Child>,
}

impl Mounted {
    pub(crate) fn foreground(store: &Path, mp: &Path, extra: &[&str]) -> Mounted {
        Mounted::foreground_env(store, mp, extra, &[])
    }

    /// [`Mounted::foreground`] with variables set in the mount's environment.
    pub(crate) fn foreground_env(
        store: &Path,
        mp: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mounted {
        // Fails on a dead mount, which `mount` itself clears.
        let _ = fs::create_dir_all(mp);
        let child = dc(store)
            .arg("mount")
            .arg(mp)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn deploycache mount");
        let mut m = Mounted {
            mp: mp.to_owned(),
            child: Some(child),
        };
        let child = m.child.as_mut().unwrap();
        wait_until(30, "the mount to serve", || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("deploycache mount exited early: {st}");
            }
            deploycache::fuse::is_mounted(mp)
        });
        m
    }

    pub(crate) fn daemon(store: &Path, mp: &Path, extra: &[&str]) -> Mounted {
        Mounted::daemon_env(store, mp, extra, &[])
    }

    pub(crate) fn daemon_env(
        store: &Path,
        mp: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mounted {
        let _ = fs::create_dir_all(mp);
        ok(dc(store)
            .arg("mount")
            .arg("--daemon")
            .arg(mp)
            .args(extra)
            .envs(env.iter().copied()));
        assert!(
            deploycache::fuse::is_mounted(mp),
            "--daemon returned before mounting"
        );
        Mounted {
            mp: mp.to_owned(),
            child: None,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    pub(crate) fn unmount(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if deploycache::fuse::is_mounted(&self.mp) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mp)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mp)
                    .status();
            }
        }
        if let Some(mut c) = self.child.take() {
            let end = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.release();
    }
}

/// The names in a directory, sorted.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub(crate) fn sh(cmd: &str) -> Vec<u8> {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn sh_fails(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(!out.status.success(), "{cmd} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ ({} vs {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

/// A real tar (made by `tar cf`) of a few MB of mixed content.
pub(crate) fn make_tar(dir: &Path, out: &Path, mb: usize, seed: u64) {
    let src = dir.join(format!("tarsrc{seed}"));
    fs::create_dir_all(&src).unwrap();
    write(&src.join("root.squashfs"), &random_bytes(mb << 20, seed));
    write(&src.join("initrd"), &text_bytes(300_000, seed + 1));
    write(&src.join("config.yaml"), b"packages: [a, b]\n");
    sh(&format!("tar cf {} -C {} .", out.display(), src.display()));
}

/// A real gzip file of an image-like mix.
pub(crate) fn make_gz(out: &Path, mb: usize, seed: u64) {
    let mut data = text_bytes(mb << 19, seed);
    data.extend(random_bytes(mb << 19, seed + 1));
    let raw = out.with_extension("");
    write(&raw, &data);
    sh(&format!("gzip -f -1 {}", raw.display()));
}

pub(crate) fn quarantine(store: &Path) -> Vec<serde_json::Value> {
    json(&ok(dc(store).args(["ls", "--quarantine", "--json"])))
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) fn verify_full(store: &Path) {
    let out = ok(dc(store).args(["verify", "--full"]));
    assert!(
        String::from_utf8_lossy(&out).contains("\n0 problems")
            || String::from_utf8_lossy(&out).starts_with("0 problems"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// A temp dir with an initialised store `s`, a source dir `src` and a
/// mountpoint path `mnt`.
pub(crate) fn fresh() -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let t = TempDir::new().unwrap();
    let (store, src, mp) = (
        t.path().join("s"),
        t.path().join("src"),
        t.path().join("mnt"),
    );
    fs::create_dir(&src).unwrap();
    ok(dc(&store).arg("init"));
    (t, store, src, mp)
}

#[test]
fn read_only_view_serves_every_byte_and_refuses_changes() {
    let t = TempDir::new().unwrap();
    let (store, src, mp) = (
        t.path().join("s"),
        t.path().join("src"),
        t.path().join("mnt"),
    );
    fs::create_dir(&src).unwrap();
    make_tar(t.path(), &src.join("opnfv-bootstraps-cache.tar"), 3, 1);
    make_gz(&src.join("env_1_ubuntu_1404_amd64.img.gz"), 2, 3);
    write(&src.join("empty"), b"");
    write(&src.join("one"), b"x");
    write(&src.join("id_rsa"), b"-----BEGIN KEY-----\n");
    fs::set_permissions(src.join("id_rsa"), fs::Permissions::from_mode(0o600)).unwrap();
    ok(dc(&store).arg("put").arg(SHA).arg(&src));
    let m = Mounted::foreground(&store, &mp, &["--read-only"]);

    assert_eq!(entries(&mp), [SHA]);
    let dir = m.path(SHA);
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let (a, b) = (e.path(), dir.join(e.file_name()));
        same_bytes(&a, &b);
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(
            (ma.len(), ma.mode() & 0o7777, ma.mtime()),
            (mb.len(), mb.mode() & 0o7777, mb.mtime()),
            "{}",
            b.display()
        );
    }
    // Random offsets and sizes, including across chunk boundaries and past EOF.
    let tar = dir.join("opnfv-bootstraps-cache.tar");
    let want = fs::read(src.join("opnfv-bootstraps-cache.tar")).unwrap();
    let f = fs::File::open(&tar).unwrap();
    let mut rng = 12345u64;
    for _ in 0..200 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (rng >> 20) as usize % (want.len() + 10);
        let len = (rng >> 7) as usize % 700_000;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off as u64).unwrap();
        let end = (off + len).min(want.len());
        assert_eq!(
            &buf[..n],
            &want[off.min(want.len())..end],
            "read {len} at {off}"
        );
    }
    // Real tools behave as on a plain directory.
    sh(&format!("tar tf {} | grep -q root.squashfs", tar.display()));
    sh(&format!(
        "gzip -t {}/env_1_ubuntu_1404_amd64.img.gz",
        dir.display()
    ));
    assert_eq!(
        sh(&format!("cd {} && sha256sum *", src.display())),
        sh(&format!("cd {} && sha256sum *", dir.display()))
    );
    sh(&format!(
        "ls -la {} && du -s {} && df {} && find {} -type f | grep -q id_rsa",
        dir.display(),
        dir.display(),
        mp.display(),
        mp.display()
    ));
    let df = String::from_utf8(sh(&format!(
        "df --output=size -B1 {} | tail -1",
        mp.display()
    )))
    .unwrap();
    assert!(
        df.trim().parse::<u64>().unwrap() > 0,
        "statfs reports no capacity: {df}"
    );
    let copy = t.path().join("copy");
    sh(&format!("cp -a {} {}", dir.display(), copy.display()));
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        same_bytes(&e.path(), &copy.join(e.file_name()));
    }
    drop(f);
    // Read-only: every change refused.
    assert!(sh_fails(&format!("mkdir {}/new", mp.display())).contains("Read-only"));
    assert!(fs::write(dir.join("new"), b"x").is_err());
    assert!(fs::remove_file(dir.join("one")).is_err());
    m.unmount();
    assert!(!deploycache::fuse::is_mounted(&mp));
}

#[test]
fn writes_commit_on_close_and_behave_like_a_directory() {
    let (t, store, src, mp) = fresh();
    let m = Mounted::daemon(&store, &mp, &[]);
    let dir = m.path(SHA);
    fs::create_dir(&dir).unwrap();
    assert!(dir.is_dir() && fs::read_dir(&dir).unwrap().next().is_none());
    // Special files, nested dirs and links are refused.
    assert!(sh_fails(&format!("mkfifo {}/fifo", dir.display())).contains("not permitted"));
    assert!(fs::create_dir(dir.join("sub")).is_err());
    assert!(std::os::unix::fs::symlink("x", dir.join("l")).is_err());

    make_tar(t.path(), &src.join("b.tar"), 4, 7);
    make_gz(&src.join("img.gz"), 3, 9);
    write(&src.join("key"), b"secret\n");
    sh(&format!("cp {}/* {}/", src.display(), dir.display()));
    for f in ["b.tar", "img.gz", "key"] {
        same_bytes(&src.join(f), &dir.join(f));
        assert_eq!(
            cat_store(&store, SHA, f),
            fs::read(src.join(f)).unwrap(),
            "{f} via the CLI"
        );
    }
    // Overwrite with O_TRUNC, smaller content.
    fs::write(dir.join("key"), b"short").unwrap();
    assert_eq!(fs::read(dir.join("key")).unwrap(), b"short");
    // Non-sequential writes: dd into the middle, then past the end.
    sh(&format!(
        "printf 'ABCD' | dd of={}/key bs=1 seek=2 conv=notrunc status=none",
        dir.display()
    ));
    assert_eq!(fs::read(dir.join("key")).unwrap(), b"shABCD");
    sh(&format!(
        "printf 'Z' | dd of={}/key bs=1 seek=9 conv=notrunc status=none",
        dir.display()
    ));
    assert_eq!(fs::read(dir.join("key")).unwrap(), b"shABCD\0\0\0Z");
    // fallocate: growing extends with zeros, KEEP_SIZE changes nothing,
    // punching a hole is refused (the store keeps no preallocated space).
    sh(&format!("fallocate -l 3000 {}/pre", dir.display()));
    assert_eq!(fs::read(dir.join("pre")).unwrap(), vec![0u8; 3000]);
    sh(&format!("fallocate -n -l 9000 {}/key", dir.display()));
    assert_eq!(fs::read(dir.join("key")).unwrap(), b"shABCD\0\0\0Z");
    sh_fails(&format!("fallocate -p -o 0 -l 2 {}/key", dir.display()));
    assert_eq!(fs::read(dir.join("key")).unwrap(), b"shABCD\0\0\0Z");
    fs::remove_file(dir.join("pre")).unwrap();
    {
        // Backwards writes through one handle.
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("rand"))
            .unwrap();
        let data = random_bytes(3 << 20, 5);
        for (i, piece) in data.chunks(1 << 18).enumerate().rev() {
            f.write_all_at(piece, (i << 18) as u64).unwrap();
        }
        drop(f);
        assert_eq!(fs::read(dir.join("rand")).unwrap(), data);
    }
    // truncate, chmod, utimes.
    sh(&format!("truncate -s 3 {}/rand", dir.display()));
    assert_eq!(fs::read(dir.join("rand")).unwrap(), random_bytes(3, 5));
    sh(&format!(
        "chmod 600 {0}/key && touch -d '2016-03-01 12:00:00 UTC' {0}/key",
        dir.display()
    ));
    let md = fs::metadata(dir.join("key")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o600, 1456833600));
    // Renames of files and of artifact directories; unlink; rmdir.
    fs::rename(dir.join("key"), dir.join("id_rsa")).unwrap();
    assert!(!dir.join("key").exists());
    assert_eq!(fs::read(dir.join("id_rsa")).unwrap(), b"shABCD\0\0\0Z");
    fs::rename(&dir, m.path(SHA2)).unwrap();
    let dir2 = m.path(SHA2);
    same_bytes(&src.join("b.tar"), &dir2.join("b.tar"));
    fs::remove_file(dir2.join("rand")).unwrap();
    assert!(
        fs::remove_dir(&dir2).is_err(),
        "rmdir of a non-empty artifact"
    );
    let out = t.path().join("rsync-out");
    sh(&format!("rsync -a {}/ {}/", dir2.display(), out.display()));
    same_bytes(&src.join("img.gz"), &out.join("img.gz"));
    sh(&format!(
        "rsync -a {}/ {}/",
        src.display(),
        m.path("rsynced").display()
    ));
    same_bytes(&src.join("b.tar"), &m.path("rsynced").join("b.tar"));
    for f in fs::read_dir(&dir2).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    fs::remove_dir(&dir2).unwrap();
    assert!(!dir2.exists());
    m.unmount();
    verify_full(&store);
}

/// A damaged chunk reads as EIO through the mount, with a log line; every
/// byte that is served is the stored byte.
#[test]
fn a_damaged_chunk_reads_as_eio_never_wrong_bytes() {
    let (t, store, src, mp) = fresh();
    let data = random_bytes(6 << 20, 101);
    write(&src.join("env_1.img"), &data);
    ok(dc(&store).args(["put", SHA]).arg(&src));
    damage_only_pack(&store, 0x10);

    let log = t.path().join("mount.log");
    let m = Mounted::daemon(&store, &mp, &["--log", log.to_str().unwrap()]);
    let file = m.path(&format!("{SHA}/env_1.img"));
    // cat stops at the damaged chunk: what it wrote is a strict prefix.
    let o = Command::new("cat").arg(&file).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.len() < data.len() && data.starts_with(&o.stdout));
    // Reads anywhere: the right bytes or EIO, never other bytes.
    let f = fs::File::open(&file).unwrap();
    let mut failed = 0;
    for off in (0..data.len()).step_by(48 * 1024) {
        let mut buf = vec![0u8; 100_000];
        match f.read_at(&mut buf, off as u64) {
            Ok(n) => assert!(buf[..n] == data[off..off + n], "wrong bytes at {off}"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "at {off}: {e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "no read met the damaged chunk");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("corrupt chunk") && logged.contains("env_1.img"),
        "{logged}"
    );
    m.unmount();
}

fn cat_store(store: &Path, a: &str, f: &str) -> Vec<u8> {
    ok(dc(store).args(["cat", a, f]))
}

#[test]
fn cut_short_tar_and_gzip_are_quarantined_not_visible() {
    let (t, store, src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &[]);
    let dir = m.path(SHA);
    fs::create_dir(&dir).unwrap();
    make_tar(t.path(), &src.join("c.tar"), 3, 11);
    make_gz(&src.join("d.img.gz"), 2, 13);
    let tar_len = fs::metadata(src.join("c.tar")).unwrap().len();
    let gz_len = fs::metadata(src.join("d.img.gz")).unwrap().len();
    sh(&format!(
        "head -c {} {}/c.tar > {}/c.tar",
        tar_len / 2,
        src.display(),
        dir.display()
    ));
    sh(&format!(
        "head -c {} {}/c.tar > {}/c-noend.tar",
        tar_len - 10240,
        src.display(),
        dir.display()
    ));
    sh(&format!(
        "head -c {} {}/d.img.gz > {}/d.img.gz",
        gz_len - 4,
        src.display(),
        dir.display()
    ));
    // Under a temporary name, renamed into place once closed (rsync's
    // way): the content decides the check, so the cut-short one is kept
    // aside at close and the rename finds nothing to move.
    sh(&format!(
        "head -c {} {}/d.img.gz > {}/.e.img.gz.Ab12Cd; mv {2}/.e.img.gz.Ab12Cd {2}/e.img.gz || true",
        gz_len / 3,
        src.display(),
        dir.display()
    ));
    sh(&format!(
        "cp {0}/d.img.gz {1}/.f.img.gz.Ef34Gh && mv {1}/.f.img.gz.Ef34Gh {1}/f.img.gz",
        src.display(),
        dir.display()
    ));
    // Complete ones commit, a gzip with zero padding after its member too
    // (`dd conv=sync`, tape blocking): `gzip -d` ignores the padding.
    sh(&format!(
        "cp {0}/c.tar {1}/whole.tar && cp {0}/d.img.gz {1}/whole.img.gz && \
         (cat {0}/d.img.gz; head -c 4096 /dev/zero) > {0}/padded.img.gz && \
         gzip -t {0}/padded.img.gz && cp {0}/padded.img.gz {1}/",
        src.display(),
        dir.display()
    ));
    // Files were cut short and not written whole since: the artifact lists
    // as empty (a miss for the deploy scripts); its whole files still open.
    assert_eq!(entries(&dir), Vec::<String>::new());
    same_bytes(&src.join("d.img.gz"), &dir.join("f.img.gz"));
    same_bytes(&src.join("c.tar"), &dir.join("whole.tar"));
    same_bytes(&src.join("padded.img.gz"), &dir.join("padded.img.gz"));
    let q = quarantine(&store);
    let mut qn: Vec<&str> = q.iter().map(|e| e["file"].as_str().unwrap()).collect();
    qn.sort();
    assert_eq!(
        qn,
        vec![".e.img.gz.Ab12Cd", "c-noend.tar", "c.tar", "d.img.gz"],
        "{q:?}"
    );
    assert!(q
        .iter()
        .all(|e| e["artifact"] == SHA && !e["reason"].as_str().unwrap().is_empty()));
    // `ls` names what the artifact misses (rsync's temp name as its target).
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(
        ls[0]["missing"],
        serde_json::json!(["c-noend.tar", "c.tar", "d.img.gz", "e.img.gz"]),
        "{ls}"
    );
    let held: u64 = q.iter().map(|e| e["size"].as_u64().unwrap()).sum();
    let s = json(&ok(dc(&store).args(["stats", "--json"])));
    assert_eq!(
        (
            s["quarantined_files"].as_u64(),
            s["quarantined_bytes"].as_u64()
        ),
        (Some(4), Some(held)),
        "{s}"
    );
    // Dropping them: a wrong name is one clear line; the right one drops
    // the quarantined files and nothing else.
    let o = fails(dc(&store).args(["rm", "--quarantine", SHA2]));
    assert!(
        stderr(&o).contains(SHA2) && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
    // Without them it would list its whole files and look cached, so the
    // artifact goes too.
    let out = String::from_utf8(ok(dc(&store).args(["rm", "--quarantine", SHA]))).unwrap();
    assert!(out.starts_with("dropped 4 quarantined files"), "{out}");
    assert!(out.contains(&format!("removed {SHA}")), "{out}");
    assert!(quarantine(&store).is_empty());
    let s = json(&ok(dc(&store).args(["stats", "--json"])));
    assert_eq!(
        (s["quarantined_files"].as_u64(), s["artifacts"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // (after the kernel's 1 s cache of directory entries)
    wait_until(10, "the removed artifact to leave the view", || {
        !dir.exists()
    });
    m.unmount();
    verify_full(&store);
}

/// An artifact with a cut-short file lists as empty, so `rm -rf` of it
/// (which sees it empty) removes it whole, hidden files and all.
#[test]
fn rm_rf_removes_an_incomplete_artifact_whole() {
    let (t, store, src, mp) = fresh();
    let m = Mounted::foreground(&store, &mp, &[]);
    let dir = m.path(SHA);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("id_rsa.pub"), b"ssh-rsa AAAA test\n").unwrap();
    make_tar(t.path(), &src.join("b.tar"), 2, 81);
    let half = fs::metadata(src.join("b.tar")).unwrap().len() / 2;
    sh(&format!(
        "head -c {half} {}/b.tar > {}/b.tar",
        src.display(),
        dir.display()
    ));
    assert_eq!(entries(&dir), Vec::<String>::new());
    // A whole artifact beside it is not touched, and is not empty to rmdir.
    let other = m.path(SHA2);
    fs::create_dir(&other).unwrap();
    fs::write(other.join("id_rsa.pub"), b"ssh-rsa BBBB other\n").unwrap();
    let e = fs::remove_dir(&other).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    sh(&format!("rm -rf {}", dir.display()));
    wait_until(10, "the removed artifact to leave the view", || {
        !dir.exists()
    });
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), [SHA2]);
    assert!(quarantine(&store).is_empty());
    assert_eq!(
        fs::read(other.join("id_rsa.pub")).unwrap(),
        b"ssh-rsa BBBB other\n"
    );
    m.unmount();
    verify_full(&store);
}

#[test]
fn concurrent_readers_and_a_reader_kept_open_across_an_overwrite() {
    let t = TempDir::new().unwrap();
    let (store, src, mp) = (
        t.path().join("s"),
        t.path().join("src"),
        t.path().join("mnt"),
    );
    fs::create_dir(&src).unwrap();
    let old = random_bytes(6 << 20, 21);
    let new = random_bytes(5 << 20, 22);
    write(&src.join("big.bin"), &old);
    ok(dc(&store).arg("put").arg(SHA).arg(&src));
    let m = Mounted::foreground(&store, &mp, &[]);
    let f = m.path(&format!("{SHA}/big.bin"));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || fs::read(f).unwrap())
        })
        .collect();
    for r in readers {
        assert!(
            r.join().unwrap() == old,
            "a concurrent reader got wrong bytes"
        );
    }
    // A reader opens the old content and reads part of it...
    let mut r = fs::File::open(&f).unwrap();
    let mut head = vec![0u8; 1 << 20];
    r.read_exact(&mut head).unwrap();
    // ...the file is overwritten in place (O_TRUNC) and closed...
    write(&src.join("new.bin"), &new);
    sh(&format!("cp {}/new.bin {}", src.display(), f.display()));
    // ...a new open reads the new bytes, the old reader the old ones to the end.
    assert!(
        fs::read(&f).unwrap() == new,
        "a new open must read the new content"
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert!(
        head == old,
        "the reader opened before the overwrite must keep reading the old content"
    );
    m.unmount();
    verify_full(&store);
}

#[test]
fn kill_9_of_the_daemon_loses_only_the_file_being_written_and_its_artifact_misses() {
    let (_t, store, _src, mp) = fresh();
    let mut m = Mounted::foreground(&store, &mp, &[]);
    let dir = m.path(SHA);
    fs::create_dir(&dir).unwrap();
    let done = random_bytes(3 << 20, 31);
    fs::write(dir.join("done.bin"), &done).unwrap();
    // Start a large write and kill the daemon in the middle of it.
    let mut w = fs::File::create(dir.join("partial.bin")).unwrap();
    let block = random_bytes(1 << 20, 32);
    for _ in 0..5 {
        w.write_all(&block).unwrap();
    }
    let child = m.child.as_mut().unwrap();
    Command::new("kill")
        .arg("-9")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(
        w.write_all(&block).is_err(),
        "writes to a dead daemon must fail"
    );
    drop(w);
    m.child = None;
    // The dead mount stays in place, failing every access...
    let dead = fs::read_dir(&mp).map(|_| ()).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");
    verify_full(&store);
    // ...until the next mount clears it: no fusermount3 -u by hand. The
    // file lost in flight leaves its artifact incomplete (listed empty, a
    // miss), and the committed file still opens by name.
    let m = Mounted::daemon(&store, &mp, &[]);
    assert_eq!(entries(&m.path(SHA)), Vec::<String>::new());
    assert!(fs::read(m.path(&format!("{SHA}/done.bin"))).unwrap() == done);
    let q = quarantine(&store);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["file"], "partial.bin");
    m.unmount();
}

// ---- the deploy flow over scp, through a private sshd --------------------

pub(crate) struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_sshd(dir: &Path) -> Sshd {
    fs::create_dir_all("/run/sshd").unwrap();
    let host = dir.join("host_key");
    let key = dir.join("id_client");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        host.display()
    ));
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        key.display()
    ));
    fs::copy(key.with_extension("pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("sshd_config");
    write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin yes\nPubkeyAuthentication yes\nPasswordAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\nSubsystem sftp internal-sftp\n",
            host.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display()
        )
        .as_bytes(),
    );
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let mut s = Sshd { child, port, key };
    wait_until(20, "sshd to listen", || {
        if let Ok(Some(st)) = s.child.try_wait() {
            panic!("sshd exited: {st}");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    s.port = port;
    s
}

impl Sshd {
    pub(crate) fn scp(&self, args: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!(
            "exec scp -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -i {} -P {} {args}",
            self.key.display(),
            self.port
        ));
        c
    }

    pub(crate) fn scp_ok(&self, args: &str) {
        let out = self.scp(args).output().unwrap();
        assert!(
            out.status.success(),
            "scp {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The hit test of the deploy scripts: isdir and listdir non-empty.
pub(crate) fn hit(dir: &Path) -> bool {
    let code = format!(
        "import os,sys; d={:?}; sys.exit(0 if os.path.isdir(d) and os.listdir(d) else 1)",
        dir.to_str().unwrap()
    );
    Command::new("python3")
        .arg("-c")
        .arg(code)
        .status()
        .unwrap()
        .success()
}

#[test]
fn deploy_flow_over_scp_through_sshd() {
    let t = TempDir::new().unwrap();
    let (store, master, mp) = (
        t.path().join("s"),
        t.path().join("master"),
        t.path().join("C"),
    );
    let ssh = start_sshd(&t.path().join("ssh").tap_mkdir());
    fs::create_dir_all(master.join("targetimages")).unwrap();
    write(
        &master.join("id_rsa"),
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    write(&master.join("id_rsa.pub"), b"ssh-rsa AAAA root@master\n");
    make_tar(t.path(), &master.join("opnfv-bootstraps-cache.tar"), 8, 41);
    make_gz(
        &master.join("targetimages/env_1_ubuntu_1404_amd64.img.gz"),
        6,
        43,
    );
    make_gz(
        &master.join("targetimages/env_1_ubuntu_1404_amd64-boot.img.gz"),
        1,
        45,
    );
    write(&master.join("targetimages/env_1.yaml"), b"nodes: 3\n");
    ok(dc(&store).arg("init"));
    let m = Mounted::daemon(&store, &mp, &[]);
    let (c1, c2) = (mp.join(SHA), mp.join(SHA2));

    // Miss: mkdir -p, scp the keys and the bootstrap tar, then the images.
    assert!(!hit(&c1));
    sh(&format!("mkdir -p {} {}", c1.display(), c2.display()));
    assert!(!hit(&c1), "an empty artifact is a miss");
    let r = format!("root@127.0.0.1:{}", master.display());
    ssh.scp_ok(&format!("{r}/id_rsa {}/id_rsa", c1.display()));
    ssh.scp_ok(&format!("{r}/id_rsa.pub {}/id_rsa.pub", c1.display()));
    ssh.scp_ok(&format!(
        "{r}/opnfv-bootstraps-cache.tar {}/opnfv-bootstraps-cache.tar",
        c1.display()
    ));
    ssh.scp_ok(&format!("'{r}/targetimages/env_1_*' {}/", c2.display()));
    // Legacy protocol (scp -O: no O_TRUNC, ftruncate at the end), over an existing file.
    ssh.scp_ok(&format!(
        "-O -p {r}/targetimages/env_1.yaml {}/env_1.yaml",
        c2.display()
    ));
    assert!(hit(&c1) && hit(&c2));

    // Hit: every file back out over scp, byte for byte.
    let back = t.path().join("back");
    fs::create_dir(&back).unwrap();
    for f in ["id_rsa", "id_rsa.pub", "opnfv-bootstraps-cache.tar"] {
        ssh.scp_ok(&format!(
            "{}/{f} root@127.0.0.1:{}/",
            c1.display(),
            back.display()
        ));
        same_bytes(&master.join(f), &back.join(f));
    }
    for f in [
        "env_1_ubuntu_1404_amd64.img.gz",
        "env_1_ubuntu_1404_amd64-boot.img.gz",
        "env_1.yaml",
    ] {
        ssh.scp_ok(&format!(
            "{}/{f} root@127.0.0.1:{}/",
            c2.display(),
            back.display()
        ));
        same_bytes(&master.join("targetimages").join(f), &back.join(f));
    }
    sh(&format!(
        "gzip -t {}/*.gz && tar tf {}/opnfv-bootstraps-cache.tar >/dev/null",
        c2.display(),
        c1.display()
    ));

    // An scp killed in the middle of a large file never looks cached, even
    // when the files copied before it made it whole.
    let sha3 = "1111111111111111111111111111111111111111";
    let c3 = mp.join(sha3);
    fs::create_dir(&c3).unwrap();
    ssh.scp_ok(&format!("{r}/id_rsa.pub {}/id_rsa.pub", c3.display()));
    assert!(hit(&c3));
    make_gz(&master.join("huge.img.gz"), 48, 47);
    let total = fs::metadata(master.join("huge.img.gz")).unwrap().len();
    let mut scp = ssh
        .scp(&format!(
            "-l 40000 {r}/huge.img.gz {}/huge.img.gz",
            c3.display()
        ))
        .spawn()
        .unwrap();
    wait_until(60, "the scp to be halfway", || {
        fs::metadata(c3.join("huge.img.gz"))
            .map(|m| m.len() > total / 4)
            .unwrap_or(false)
    });
    assert!(fs::metadata(c3.join("huge.img.gz")).unwrap().len() < total);
    Command::new("kill")
        .arg("-9")
        .arg(scp.id().to_string())
        .status()
        .unwrap();
    scp.wait().unwrap();
    wait_until(30, "the cut-short file to be quarantined", || {
        quarantine(&store)
            .iter()
            .any(|q| q["file"] == "huge.img.gz")
    });
    assert!(!hit(&c3), "a cut-short transfer must not look cached");
    assert!(!c3.join("huge.img.gz").exists());
    assert_eq!(
        fs::read(c3.join("id_rsa.pub")).unwrap(),
        fs::read(master.join("id_rsa.pub")).unwrap(),
        "the whole files still open by name"
    );
    // The next run fills it again, over the file kept: now it is a hit.
    ssh.scp_ok(&format!("{r}/id_rsa.pub {}/id_rsa.pub", c3.display()));
    assert!(
        !hit(&c3),
        "still a miss while the cut-short file is missing"
    );
    ssh.scp_ok(&format!("{r}/huge.img.gz {}/huge.img.gz", c3.display()));
    assert!(hit(&c3));
    assert_eq!(entries(&c3), ["huge.img.gz", "id_rsa.pub"]);
    same_bytes(&master.join("huge.img.gz"), &c3.join("huge.img.gz"));
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    let a = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == sha3)
        .unwrap();
    assert_eq!(a["missing"], serde_json::json!([]), "{a}");
    // Complete again, it keeps its files when the quarantine is dropped.
    let out = String::from_utf8(ok(dc(&store).args(["rm", "--quarantine", sha3]))).unwrap();
    assert!(
        out.starts_with("dropped 1 quarantined files") && !out.contains("removed"),
        "{out}"
    );
    assert!(hit(&c3));
    same_bytes(&master.join("huge.img.gz"), &c3.join("huge.img.gz"));
    m.unmount();
    verify_full(&store);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn adopt_imports_the_plain_cache_then_serves_it() {
    let t = TempDir::new().unwrap();
    let (store, mp) = (t.path().join("s"), t.path().join("C"));
    fs::create_dir_all(mp.join(SHA)).unwrap();
    fs::create_dir_all(mp.join(SHA2)).unwrap();
    let data = random_bytes(2 << 20, 51);
    write(&mp.join(SHA).join("id_rsa"), &data);
    // Without --adopt the plain cache would only be hidden: a warning says so.
    let out = dc(&store)
        .arg("mount")
        .arg("--daemon")
        .arg(&mp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("hide the 2 entries") && warning.contains("--adopt"),
        "{warning}"
    );
    assert!(
        !mp.join(SHA).exists(),
        "the mount shows the store, not the plain cache"
    );
    deploycache::fuse::unmount(&mp).unwrap();
    let m = Mounted::daemon(&store, &mp, &["--adopt"]);
    assert_eq!(fs::read(m.path(&format!("{SHA}/id_rsa"))).unwrap(), data);
    assert!(
        m.path(SHA2).is_dir(),
        "an empty plain artifact dir survives the adoption"
    );
    m.unmount();
    assert_eq!(
        fs::read(mp.join(SHA).join("id_rsa")).unwrap(),
        data,
        "the plain files stay underneath"
    );
}

/// `umount` of a busy mount says why and what to do, and leaves it serving;
/// `--lazy` detaches it at once while an open file still reads to its end;
/// `umount` where nothing is mounted says so.
#[test]
fn umount_says_what_to_do_when_busy_and_lazy_detaches() {
    let (_t, store, _src, mp) = fresh();
    let m = Mounted::daemon(&store, &mp, &[]);
    fs::create_dir(m.path(SHA)).unwrap();
    let data = random_bytes(3 << 20, 71);
    fs::write(m.path(SHA).join("image.bin"), &data).unwrap();
    let mut open = fs::File::open(m.path(SHA).join("image.bin")).unwrap();
    let e = stderr(&fails(dc(&store).arg("umount").arg(&mp)));
    assert!(e.contains("busy") && e.contains("umount --lazy"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        deploycache::fuse::is_mounted(&mp),
        "a refused umount leaves the mount"
    );
    ok(dc(&store).arg("umount").arg("--lazy").arg(&mp));
    assert!(
        !deploycache::fuse::is_mounted(&mp),
        "--lazy detaches at once"
    );
    let mut got = Vec::new();
    open.read_to_end(&mut got).unwrap();
    assert!(
        got == data,
        "the open file reads to its end after the detach"
    );
    drop(open);
    let e = stderr(&fails(dc(&store).arg("umount").arg(&mp)));
    assert!(e.contains("nothing is mounted there"), "{e}");
    drop(m);
}

/// A mount point that is missing or not a directory gets one line saying
/// what to do, in the foreground and with --daemon, and nothing is mounted.
#[test]
fn a_bad_mountpoint_gets_one_clear_line() {
    let (t, store, _src, _mp) = fresh();
    let missing = t.path().join("missing");
    let file = t.path().join("file");
    write(&file, b"x");
    for (mp, want) in [(&missing, "mkdir -p"), (&file, "not a directory")] {
        for daemon in [false, true] {
            let mut cmd = dc(&store);
            cmd.arg("mount");
            if daemon {
                cmd.arg("--daemon");
            }
            let e = stderr(&fails(cmd.arg(mp)));
            assert!(
                e.contains(want) && e.contains(&*mp.to_string_lossy()),
                "{e}"
            );
            assert_eq!(e.trim_end().lines().count(), 1, "{e}");
            assert!(!deploycache::fuse::is_mounted(mp));
        }
    }
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

/// Regression: `mount --daemon` on a store that did not exist yet failed to
/// open its log file (inside the store directory) and never mounted.
#[test]
fn daemon_mount_creates_a_missing_store() {
    let t = TempDir::new().unwrap();
    let (store, mp) = (t.path().join("new-store"), t.path().join("mnt"));
    let m = Mounted::daemon(&store, &mp, &[]);
    fs::create_dir(m.path(SHA)).unwrap();
    fs::write(m.path(SHA).join("id_rsa.pub"), b"ssh-rsa AAAA test\n").unwrap();
    assert!(store.join("FORMAT").is_file() && store.join("mount.log").is_file());
    // Mounting again over a live mount would stack a second view on it.
    let o = fails(dc(&store).arg("mount").arg("--daemon").arg(&mp));
    let e = stderr(&o);
    assert!(
        e.contains("already serving") && e.contains(&*mp.to_string_lossy()),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert_eq!(
        fs::read(m.path(SHA).join("id_rsa.pub")).unwrap(),
        b"ssh-rsa AAAA test\n"
    );
    m.unmount();
    assert_eq!(
        ok(dc(&store).args(["cat", SHA, "id_rsa.pub"])),
        b"ssh-rsa AAAA test\n"
    );
}

/// Two branches mount one store, each under its namespace: each view holds
/// only its own artifacts, and the bytes both write are stored once.
#[test]
fn branches_mount_their_own_namespace_and_share_chunks() {
    let (t, store, src, _) = fresh();
    make_tar(t.path(), &src.join("opnfv-bootstraps-cache.tar"), 4, 61);
    let data = fs::read(src.join("opnfv-bootstraps-cache.tar")).unwrap();
    let master = Mounted::foreground(&store, &t.path().join("m1"), &["--namespace", "master"]);
    let stable = Mounted::foreground(&store, &t.path().join("m2"), &["--namespace", "stable"]);
    make_gz(&t.path().join("cut.img.gz"), 1, 62);
    for (m, sha) in [(&master, SHA), (&stable, SHA2)] {
        sh(&format!(
            "mkdir -p {0} && cp {1}/opnfv-bootstraps-cache.tar {0}/ && head -c 5000 {2} > {0}/cut.img.gz",
            m.path(sha).display(),
            src.display(),
            t.path().join("cut.img.gz").display()
        ));
    }
    assert_eq!(entries(&master.mp), [SHA]);
    assert_eq!(entries(&stable.mp), [SHA2]);
    same_bytes(
        &src.join("opnfv-bootstraps-cache.tar"),
        &stable.path(&format!("{SHA2}/opnfv-bootstraps-cache.tar")),
    );
    let listed = json(&ok(dc(&store).args([
        "--namespace",
        "master",
        "ls",
        "--json",
    ])));
    assert_eq!(names(&listed), [SHA]);
    let s = json(&ok(dc(&store).args(["stats", "--json"])));
    assert_eq!(s["artifacts"], 2, "{s}");
    assert_eq!(s["logical_bytes"], 2 * data.len() as u64, "{s}");
    assert!(
        s["unique_bytes"].as_u64().unwrap() <= data.len() as u64 + 5000,
        "both branches' copies share their chunks (plus the cut-short file): {s}"
    );
    // Each branch's cut-short file is its own: dropping the quarantine of
    // one namespace (and with it the artifact incomplete without it) leaves
    // the other's.
    let out = String::from_utf8(ok(dc(&store).args([
        "--namespace",
        "master",
        "rm",
        "--quarantine",
    ])))
    .unwrap();
    assert!(out.starts_with("dropped 1 quarantined files"), "{out}");
    assert!(out.contains(&format!("removed {SHA}")), "{out}");
    let left = json(&ok(dc(&store).args([
        "--namespace",
        "stable",
        "ls",
        "--quarantine",
        "--json",
    ])));
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["artifact"], SHA2);
    same_bytes(
        &src.join("opnfv-bootstraps-cache.tar"),
        &stable.path(&format!("{SHA2}/opnfv-bootstraps-cache.tar")),
    );
    master.unmount();
    stable.unmount();
    let s = json(&ok(dc(&store).args(["stats", "--json"])));
    assert_eq!(s["artifacts"], 1, "{s}");
    verify_full(&store);
}

/// Only the mounting user (root here) gets in unless `--allow-other`, and
/// then other users get what the modes allow (`default_permissions`).
/// SIGTERM unmounts a foreground mount cleanly, keeping what was written.
#[test]
fn only_the_owner_gets_in_and_sigterm_unmounts_cleanly() {
    let (t, store, src, mp) = fresh();
    // Other users must reach the mount point for the checks to mean anything.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write(&src.join("id_rsa.pub"), b"ssh-ed25519 AAAA test\n");
    let as_nobody = |cmd: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "bash",
                "-c",
                cmd,
            ])
            .output()
            .expect("setpriv (util-linux)")
    };
    let mut m = Mounted::foreground(&store, &mp, &[]);
    sh(&format!(
        "mkdir {0}/{SHA} && cp {1}/id_rsa.pub {0}/{SHA}/",
        mp.display(),
        src.display()
    ));
    let o = as_nobody(&format!("ls {}", mp.display()));
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "another user got in without --allow-other: {o:?}"
    );
    let child = m.child.as_mut().unwrap();
    sh(&format!("kill -TERM {}", child.id()));
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "SIGTERM did not end the mount");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "mount exited {status} on SIGTERM");
    assert!(!deploycache::fuse::is_mounted(&mp));
    drop(m);

    let m = Mounted::foreground(&store, &mp, &["--allow-other"]);
    let o = as_nobody(&format!("cat {}/{SHA}/id_rsa.pub", mp.display()));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stdout, b"ssh-ed25519 AAAA test\n");
    let o = as_nobody(&format!("touch {}/{SHA}/x", mp.display()));
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "default_permissions let another user write into root's 0755 directory: {o:?}"
    );
    m.unmount();
    verify_full(&store);
}

/// A mount serving reads and writes while `put`, `rm` and `stats` run
/// from other processes on the same store: every byte read is right, the
/// view shows what the others committed, and the store verifies after.
#[test]
fn the_mount_works_beside_put_rm_and_stats() {
    let (t, store, src, mp) = fresh();
    make_tar(t.path(), &src.join("opnfv-bootstraps-cache.tar"), 24, 81);
    ok(dc(&store).arg("put").arg(SHA).arg(&src));
    ok(dc(&store).arg("put").arg("doomed").arg(&src));
    let m = Mounted::daemon(&store, &mp, &[]);
    let want = fs::read(src.join("opnfv-bootstraps-cache.tar")).unwrap();
    let reader = {
        let f = m.path(&format!("{SHA}/opnfv-bootstraps-cache.tar"));
        std::thread::spawn(move || (0..3).map(|_| fs::read(&f).unwrap()).collect::<Vec<_>>())
    };
    let writer = {
        let (from, to) = (src.clone(), m.path(SHA2));
        std::thread::spawn(move || {
            fs::create_dir(&to).unwrap();
            fs::copy(from.join("opnfv-bootstraps-cache.tar"), to.join("c.tar")).unwrap();
        })
    };
    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    make_tar(t.path(), &other.join("opnfv-bootstraps-cache.tar"), 8, 82);
    for _ in 0..3 {
        ok(dc(&store).args(["stats", "--json"]));
    }
    ok(dc(&store).arg("put").arg("fresh").arg(&other));
    ok(dc(&store).arg("rm").arg("doomed"));
    for got in reader.join().unwrap() {
        assert!(got == want, "a read through the mount returned wrong bytes");
    }
    writer.join().unwrap();
    same_bytes(
        &src.join("opnfv-bootstraps-cache.tar"),
        &m.path(&format!("{SHA2}/c.tar")),
    );
    // The view lists what other processes committed (directory entries
    // live for one second).
    wait_until(10, "the view to show the put and drop the rm", || {
        entries(&m.mp) == [SHA, SHA2, "fresh"]
    });
    same_bytes(
        &other.join("opnfv-bootstraps-cache.tar"),
        &m.path("fresh/opnfv-bootstraps-cache.tar"),
    );
    m.unmount();
    verify_full(&store);
}
