//! A lost or emptied index: refused, then rebuilt from the packs' manifest
//! records (store-layout.md, "Manifest records"); a format-1 store
//! migrated; `verify --full` checking every pack record's header and hash.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;

const NAMESPACES: [&str; 2] = ["", "stable"];

/// Every file of every artifact of every namespace, as `export` writes it:
/// (namespace, artifact) → file name → (bytes, mode, mtime).
type Snapshot = BTreeMap<(String, String), BTreeMap<String, (Vec<u8>, u32, i64)>>;

fn dc_ns(store: &Path, ns: &str) -> Command {
    let mut c = dc(store);
    c.args(["--namespace", ns]);
    c
}

fn snapshot(store: &Path, scratch: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    for ns in NAMESPACES {
        for name in names(&json(&ok(dc_ns(store, ns).args(["ls", "--json"])))) {
            let dest = scratch.join(format!("export-{ns}-{name}-{}", out.len()));
            ok(dc_ns(store, ns).arg("export").arg(&name).arg(&dest));
            let mut files = BTreeMap::new();
            for e in fs::read_dir(&dest).unwrap() {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                files.insert(
                    e.file_name().into_string().unwrap(),
                    (
                        fs::read(e.path()).unwrap(),
                        md.permissions().mode() & 0o7777,
                        md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    ),
                );
            }
            fs::remove_dir_all(&dest).unwrap();
            out.insert((ns.to_owned(), name), files);
        }
    }
    out
}

/// The quarantined files of every namespace: (namespace, artifact, file, size, reason).
fn quarantined(store: &Path) -> Vec<(String, String, String, u64, String)> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        let list = json(&ok(dc_ns(store, ns).args(["ls", "--quarantine", "--json"])));
        for q in list.as_array().unwrap() {
            out.push((
                ns.to_owned(),
                q["artifact"].as_str().unwrap().to_owned(),
                q["file"].as_str().unwrap().to_owned(),
                q["size"].as_u64().unwrap(),
                q["reason"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out.sort();
    out
}

pub(crate) fn verify_full_clean(store: &Path) -> String {
    let out = String::from_utf8(ok(dc(store).args(["verify", "--full"]))).unwrap();
    assert!(out.contains("0 problems"), "{out}");
    out
}

fn remove_index(store: &Path) {
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(store.join(f));
    }
}

/// Every command refuses a store without its index with one line naming
/// the rebuild, and writes nothing; `verify` counts it as a problem (3).
fn refused(store: &Path) {
    // Everything but the lock files and the disk-full reserve, which any
    // open makes (store-layout.md).
    let listing = || -> Vec<(PathBuf, u64)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(store)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| {
                !["lock", "owner", "gc.lock", "init.lock", "reserve"]
                    .contains(&e.file_name().to_str().unwrap())
            })
            .map(|e| (e.path().to_owned(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let before = listing();
    for args in [
        &["ls"][..],
        &["stats"],
        &["put", "x", "/etc/hostname"],
        &["rm", "a"],
    ] {
        let o = fails(dc(store).args(args));
        let e = stderr(&o);
        assert!(
            e.contains("verify --rebuild-index") && e.contains("index.sqlite"),
            "{args:?}: {e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    let o = fails(dc(store).arg("verify"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("problem:") && out.contains("--rebuild-index"),
        "{out}"
    );
    assert_eq!(listing(), before, "nothing is written");
}

pub(crate) fn rebuild(store: &Path) -> String {
    let out =
        String::from_utf8(ok(dc(store).args(["verify", "--full", "--rebuild-index"]))).unwrap();
    assert!(
        out.contains("rebuilt the index") && out.contains("0 problems"),
        "{out}"
    );
    out
}

/// A mount through the binary's daemon, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(store: &Path, mp: &Path) -> Mount {
        fs::create_dir_all(mp).unwrap();
        ok(dc(store).arg("mount").arg("--daemon").arg(mp));
        Mount(mp.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = dc(Path::new("/nonexistent"))
            .arg("umount")
            .arg(&self.0)
            .output();
        if deploycache::fuse::is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

fn sh(cmd: &str) {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store of several artifacts in two namespaces, committed by put,
/// import and writes through the mount, with replaced and removed
/// artifacts, renamed, removed and chmod'ed files, and a quarantined file.
fn busy_store(t: &Path) -> PathBuf {
    let store = t.join("s");
    let src = t.join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    write(&src.join("a/env_1.yaml"), b"fuel: 1\n");
    write(&src.join("a/id_rsa"), &random_bytes(3000, 1));
    fs::set_permissions(src.join("a/id_rsa"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&src.join("a/image.img"), &text_bytes(700_000, 2));
    ok(dc(&store).arg("put").arg("art1").arg(src.join("a")));
    // Replaced: the first version must not come back.
    write(&src.join("v2.yaml"), b"fuel: 2\n");
    ok(dc(&store)
        .arg("put")
        .arg("art2")
        .arg(src.join("a/env_1.yaml")));
    ok(dc(&store).arg("put").arg("art2").arg(src.join("v2.yaml")));
    // Removed: must stay removed.
    ok(dc(&store).arg("put").arg("gone").arg(src.join("v2.yaml")));
    ok(dc(&store).args(["rm", "gone"]));
    // A plain cache imported into the second namespace, one image cut short.
    let plain = src.join("plain");
    fs::create_dir_all(plain.join("keys")).unwrap();
    fs::create_dir_all(plain.join("img")).unwrap();
    write(&plain.join("keys/id_rsa.pub"), b"ssh-ed25519 AAAA test\n");
    let gz = src.join("full.img.gz");
    write(&src.join("full.img"), &random_bytes(200_000, 3));
    sh(&format!(
        "gzip -1 -k -c {} > {}",
        src.join("full.img").display(),
        gz.display()
    ));
    let whole = fs::read(&gz).unwrap();
    write(&plain.join("img/good.img.gz"), &whole);
    write(&plain.join("img/cut.img.gz"), &whole[..whole.len() / 2]);
    let _ = dc_ns(&store, "stable").arg("import").arg(&plain).output();
    // Writes through the mount: a new artifact, a rename, an unlink, a
    // chmod, a rename of an artifact, an overwrite, an artifact removed.
    let mp = t.join("mnt");
    {
        let _m = Mount::new(&store, &mp);
        sh(&format!(
            "set -e; cd {mp}; mkdir m1 m2 tmpdir; cp {a}/env_1.yaml {a}/image.img m1/; \
             cp {a}/id_rsa m1/key.tmp; mv m1/key.tmp m1/id_rsa; chmod 640 m1/id_rsa; \
             echo scratch > m1/scratch; rm m1/scratch; cp {a}/env_1.yaml m2/x.yaml; \
             cp {v2} m2/x.yaml; mv m2 m3; rmdir tmpdir; \
             touch -d '2001-02-03 04:05:06' m1/env_1.yaml",
            mp = mp.display(),
            a = src.join("a").display(),
            v2 = src.join("v2.yaml").display()
        ));
    }
    store
}

#[test]
fn a_lost_index_is_refused_then_rebuilt_from_the_packs() {
    let t = TempDir::new().unwrap();
    let store = busy_store(t.path());
    let before = snapshot(&store, t.path());
    let q_before = quarantined(&store);
    let keys: Vec<_> = before.keys().cloned().collect();
    let want = |ns: &str, a: &str| (ns.to_owned(), a.to_owned());
    assert_eq!(
        keys,
        [
            want("", "art1"),
            want("", "art2"),
            want("", "m1"),
            want("", "m3"),
            want("stable", "img"),
            want("stable", "keys"),
        ]
    );
    assert_eq!(q_before.len(), 1, "{q_before:?}");
    verify_full_clean(&store);

    remove_index(&store);
    refused(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), before);
    assert_eq!(quarantined(&store), q_before);
    // The cut-short image still leaves its artifact incomplete.
    let ls = json(&ok(dc_ns(&store, "stable").args(["ls", "--json"])));
    let img = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "img")
        .unwrap();
    assert_eq!(img["files"], 1, "{img}");
    // The rebuilt store takes new changes, and a second rebuild sees them.
    ok(dc(&store).args(["rm", "art2"]));
    ok(dc(&store).arg("put").arg("art4").arg("/etc/hostname"));
    let before = snapshot(&store, t.path());
    remove_index(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), before);
    verify_full_clean(&store);
}

#[test]
fn an_emptied_index_is_refused_then_rebuilt() {
    let t = TempDir::new().unwrap();
    let store = busy_store(t.path());
    let before = snapshot(&store, t.path());
    let q_before = quarantined(&store);

    // Every row deleted, as `sqlite3 index.sqlite 'DELETE FROM …'` would.
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute_batch(
        "DELETE FROM file_chunks; DELETE FROM files; DELETE FROM artifacts; \
         DELETE FROM chunks; DELETE FROM packs; DELETE FROM source_files; DELETE FROM meta;",
    )
    .unwrap();
    drop(db);
    refused(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), before);
    assert_eq!(quarantined(&store), q_before);

    // The file truncated to nothing.
    fs::write(store.join("index.sqlite"), b"").unwrap();
    let _ = fs::remove_file(store.join("index.sqlite-wal"));
    let _ = fs::remove_file(store.join("index.sqlite-shm"));
    refused(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), before);
    verify_full_clean(&store);
}

/// `tests/fixtures/v1-store` was written by the format-1 deploycache
/// (827e232): `put art1 env_1.yaml id_rsa`, `put gone b.yaml; rm gone`,
/// `--namespace stable import` of keys1/id_rsa.pub and img1/{full,cut}.img.gz
/// (cut.img.gz cut short). Its sources are in `v1-store.src`.
#[test]
fn a_format_1_store_is_migrated_and_can_then_be_rebuilt() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    sh(&format!(
        "cp -a {} {}",
        fixtures.join("v1-store").display(),
        store.display()
    ));
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).unwrap(),
        "deploycache-store 1\n"
    );
    let src = fixtures.join("v1-store.src");
    let snap = snapshot(&store, t.path());
    // Migrated to the current format (4 since the gzip form).
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).unwrap(),
        "deploycache-store 4\n"
    );
    let file = |ns: &str, a: &str, f: &str| snap[&(ns.to_owned(), a.to_owned())][f].clone();
    assert_eq!(
        file("", "art1", "env_1.yaml").0,
        fs::read(src.join("env_1.yaml")).unwrap()
    );
    assert_eq!(
        file("", "art1", "id_rsa").0,
        fs::read(src.join("id_rsa")).unwrap()
    );
    assert_eq!(file("", "art1", "id_rsa").1, 0o600);
    assert_eq!(
        file("stable", "keys1", "id_rsa.pub").0,
        fs::read(src.join("id_rsa.pub")).unwrap()
    );
    assert_eq!(snap.len(), 3, "{:?}", snap.keys());
    let q = quarantined(&store);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].2.as_str(), q[0].3), ("cut.img.gz", 5000));
    verify_full_clean(&store);

    remove_index(&store);
    refused(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), snap);
    assert_eq!(quarantined(&store), q);
    let cut = fixtures.join("v1-store.src/cut.img.gz");
    assert_eq!(fs::metadata(cut).unwrap().len(), 5000);
}

#[test]
fn a_format_1_store_without_its_index_cannot_be_rebuilt_and_says_so() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    sh(&format!(
        "cp -a {} {}",
        fixtures.join("v1-store").display(),
        store.display()
    ));
    remove_index(&store);
    refused(&store);
    let o = fails(dc(&store).args(["verify", "--rebuild-index"]));
    let e = stderr(&o);
    assert!(e.contains("format-1") && e.contains("backup"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

#[test]
fn verify_exits_3_on_a_malformed_index() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    write(&t.path().join("f"), b"data\n");
    ok(dc(&store).arg("put").arg("a").arg(t.path().join("f")));
    remove_index(&store);
    write(&store.join("index.sqlite"), &random_bytes(8192, 5));
    let o = fails(dc(&store).arg("verify"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("problem: ") && out.contains("index.sqlite"),
        "{out}"
    );
}

/// The offsets of every record of a pack: (start, kind).
fn records(pack: &Path) -> Vec<(usize, [u8; 4])> {
    let bytes = fs::read(pack).unwrap();
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 48 <= bytes.len() {
        let stored = u32::from_le_bytes(bytes[pos + 40..pos + 44].try_into().unwrap()) as usize;
        out.push((pos, bytes[pos..pos + 4].try_into().unwrap()));
        pos += 48 + stored;
    }
    out
}

fn packs(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    v.sort();
    v
}

fn verify_full_problems(store: &Path) -> String {
    let o = fails(dc(store).args(["verify", "--full"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn verify_full_checks_every_record_header_and_tells_a_torn_tail_from_damage() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    // Two files of several chunks each: one pack with many records.
    write(&t.path().join("a"), &random_bytes(400_000, 8));
    ok(dc(&store).arg("put").arg("a").arg(t.path().join("a")));
    let all = packs(&store);
    let chunk_pack = all
        .iter()
        .find(|p| records(p).iter().all(|(_, k)| k == b"DCCH"))
        .unwrap()
        .clone();
    let clean = fs::read(&chunk_pack).unwrap();
    assert!(records(&chunk_pack).len() >= 3);

    // A torn tail past the last indexed record: a note, not a problem.
    let mut torn = clean.clone();
    torn.extend_from_slice(b"DCCH");
    torn.extend_from_slice(&[0u8; 20]);
    fs::write(&chunk_pack, &torn).unwrap();
    let out = verify_full_clean(&store);
    assert!(
        out.contains("note: pack") && out.contains("torn tail"),
        "{out}"
    );

    // The record magic of the first record (whose payload is intact):
    // records the index relies on follow it, so it is damage.
    let mut bad = clean.clone();
    bad[8] = b'X';
    fs::write(&chunk_pack, &bad).unwrap();
    let out = verify_full_problems(&store);
    assert!(out.contains("bad record magic at 8"), "{out}");

    // An unknown codec in the second record's header.
    let second = records(&chunk_pack)[1].0;
    let mut bad = clean.clone();
    bad[second + 44] = 9;
    fs::write(&chunk_pack, &bad).unwrap();
    let out = verify_full_problems(&store);
    assert!(
        out.contains(&format!("unknown codec 9 at {second}")),
        "{out}"
    );

    // A record whose length runs past the end of the pack.
    let mut bad = clean.clone();
    bad[second + 40..second + 44].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&chunk_pack, &bad).unwrap();
    let out = verify_full_problems(&store);
    assert!(
        out.contains(&format!("torn record payload at {second}")),
        "{out}"
    );
    fs::write(&chunk_pack, &clean).unwrap();
    verify_full_clean(&store);
}

#[test]
fn verify_full_checks_manifest_records() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    write(&t.path().join("a"), &random_bytes(100_000, 9));
    ok(dc(&store).arg("put").arg("a").arg(t.path().join("a")));
    let manifest_pack = packs(&store)
        .into_iter()
        .find(|p| records(p).iter().any(|(_, k)| k == b"DCMF"))
        .expect("a pack of manifest records");
    // A manifest record whose payload no longer hashes to its id: the
    // committed change it records could not be rebuilt.
    let good = fs::read(&manifest_pack).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(&manifest_pack, &bad).unwrap();
    let out = verify_full_problems(&store);
    assert!(
        out.contains("manifest record") && out.contains("BLAKE3 mismatch"),
        "{out}"
    );
    assert!(
        out.contains("a rebuild of the index would not recover it"),
        "{out}"
    );
    fs::write(&manifest_pack, &good).unwrap();
    verify_full_clean(&store);
}

/// A change that reached the index without its manifest record (a new
/// index operation that forgot to record itself, a hand edit) is found by
/// `verify --full`: a rebuild would not give it back.
#[test]
fn verify_full_finds_an_index_change_without_its_manifest_record() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    write(&t.path().join("f"), b"data\n");
    ok(dc(&store).arg("put").arg("a").arg(t.path().join("f")));
    ok(dc(&store).arg("put").arg("b").arg(t.path().join("f")));
    verify_full_clean(&store);
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute_batch("UPDATE files SET mode = 511 WHERE name = 'f' AND artifact = (SELECT id FROM artifacts WHERE name = 'b')")
        .unwrap();
    drop(db);
    // The quick verify's invariants all still hold.
    ok(dc(&store).arg("verify"));
    let out = verify_full_problems(&store);
    assert!(
        out.contains("a rebuild of the index would differ")
            && out.contains("\"b\"/\"f\"")
            && out.contains("mode 777"),
        "{out}"
    );
}

/// The mount records a file being written as a pending row (a quarantined
/// row), and a file a killed daemon lost as lost in flight: a rebuild must
/// keep both, or an artifact whose image was lost would become a hit.
#[test]
fn files_being_written_or_lost_in_flight_stay_so_after_a_rebuild() {
    use crate::mount::{entries, fresh, hit, make_gz, Mounted, SHA};
    use std::io::Write;
    let (t, store, src, mp) = fresh();
    let mut m = Mounted::foreground(&store, &mp, &[]);
    let c = m.path(SHA);
    fs::create_dir(&c).unwrap();
    fs::write(c.join("id_rsa"), b"-----BEGIN KEY-----\n").unwrap();
    fs::write(c.join("x.yaml"), b"a: 1\n").unwrap();
    make_gz(&src.join("big.img.gz"), 2, 71);
    let image = fs::read(src.join("big.img.gz")).unwrap();
    let mut w = fs::File::create(c.join(".big.img.gz.tmp")).unwrap();
    w.write_all(&image[..image.len() / 2]).unwrap();
    // Renamed while being written (its pending row follows it).
    fs::rename(c.join(".big.img.gz.tmp"), c.join("big.img.gz")).unwrap();
    assert!(!hit(&c));
    let q_writing = quarantined(&store);
    assert_eq!(q_writing.len(), 1, "{q_writing:?}");
    assert_eq!(q_writing[0].2, "big.img.gz");
    let pid = m.child.as_ref().unwrap().id();
    Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    m.child.take().unwrap().wait().unwrap();
    drop(w);

    // Rebuilt while the row still says the file is being written.
    remove_index(&store);
    rebuild(&store);
    assert_eq!(quarantined(&store), q_writing);
    // The next mount finds it lost in flight; rebuilt again, still lost.
    let m = Mounted::daemon(&store, &mp, &[]);
    assert!(!hit(&c), "a file lost in flight leaves its artifact a miss");
    m.unmount();
    let q_lost = quarantined(&store);
    assert!(q_lost[0].4.starts_with("lost in flight"), "{q_lost:?}");
    remove_index(&store);
    rebuild(&store);
    assert_eq!(quarantined(&store), q_lost);
    let m = Mounted::daemon(&store, &mp, &[]);
    assert!(!hit(&c), "still a miss after the rebuild");
    // Written whole: a hit, and a rebuild keeps it one.
    fs::copy(src.join("big.img.gz"), c.join("big.img.gz")).unwrap();
    assert!(hit(&c));
    m.unmount();
    let before = snapshot(&store, t.path());
    remove_index(&store);
    rebuild(&store);
    assert_eq!(snapshot(&store, t.path()), before);
    let m = Mounted::daemon(&store, &mp, &[]);
    assert!(hit(&c));
    assert_eq!(entries(&c), ["big.img.gz", "id_rsa", "x.yaml"]);
    assert!(fs::read(c.join("big.img.gz")).unwrap() == image);
    m.unmount();
    verify_full_clean(&store);
}
