//! gc's checkpoint of the manifest records (store-layout.md, "gc and
//! manifest records"): the manifest log shrinks instead of growing with
//! every change forever, a rebuild from what is left gives back the same
//! store, a checkpoint killed at any step leaves a store that verifies,
//! rebuilds and finishes on a rerun, records older than a checkpoint that
//! survive a killed drop resurrect nothing, and a format-2 store is
//! migrated with every byte kept.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::*;
use crate::gc_reclaim::without_time;
use crate::mount::{hit, wait_until, Mounted, SHA};
use crate::rebuild::{rebuild, verify_full_clean};

/// The gc that writes a checkpoint on a small store: over `--max-size`
/// (so the 64 MiB minimum of dead records does not apply), nothing
/// evicted (`--keep-last` holds everything).
const CHECKPOINT: [&str; 5] = ["gc", "--max-size", "1", "--keep-last", "100000"];

/// What a rebuild must give back: the listing (but last use: reads are
/// not changes), every artifact's files (their digests commit to every
/// byte), and the quarantined files.
fn state(store: &Path) -> serde_json::Value {
    let mut ls = json(&ok(dc(store).args(["ls", "--json"])));
    for a in ls.as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("last_access");
    }
    let mut files = serde_json::Map::new();
    for name in names(&ls) {
        let list = json(&ok(dc(store).args(["ls", &name, "--json"])));
        files.insert(name, list);
    }
    let q = json(&ok(dc(store).args(["ls", "--quarantine", "--json"])));
    serde_json::json!({ "ls": ls, "files": files, "quarantine": q })
}

/// Every live file's bytes, read back.
fn assert_bytes(store: &Path, live: &BTreeMap<String, Vec<u8>>) {
    let ls = json(&ok(dc(store).args(["ls", "--json"])));
    assert_eq!(
        names(&ls),
        live.keys().cloned().collect::<Vec<_>>(),
        "artifacts"
    );
    for (name, data) in live {
        assert!(
            ok(dc(store).args(["cat", name, "f"])) == *data,
            "{name}/f differs"
        );
    }
}

/// Bytes of the packs of manifest records, as `stats` counts them.
fn manifest_bytes(store: &Path) -> u64 {
    json(&ok(dc(store).args(["stats", "--json"])))["manifest_bytes"]
        .as_u64()
        .unwrap()
}

fn put(store: &Path, t: &Path, name: &str, data: &[u8]) {
    let dir = t.join("src").join(name);
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("f"), data);
    // A file every artifact shares: its chunks are deduplicated.
    write(&dir.join("shared"), &random_bytes(40_000, 7));
    ok(dc(store)
        .arg("put")
        .arg(name)
        .arg(dir.join("f"))
        .arg(dir.join("shared")));
}

/// `n` artifacts put and removed again (history that a checkpoint makes
/// dead), then `keep` new ones that stay, added to `live`.
fn churn(
    store: &Path,
    t: &Path,
    round: u64,
    n: u64,
    keep: u64,
    live: &mut BTreeMap<String, Vec<u8>>,
) {
    for i in 0..n {
        let name = format!("gone{round}-{i}");
        put(store, t, &name, &random_bytes(30_000, round * 1000 + i));
        ok(dc(store).args(["rm", &name]));
    }
    for i in 0..keep {
        let name = format!("keep{round}-{i}");
        let data = random_bytes(30_000, round * 1000 + 500 + i);
        put(store, t, &name, &data);
        live.insert(name, data);
    }
}

fn pack_files(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_checkpoint_shrinks_the_manifest_log_and_a_rebuild_gives_the_same_store() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mut live = BTreeMap::new();
    churn(&store, t.path(), 0, 30, 5, &mut live);
    // Replaced: its first version must not come back.
    let v2 = random_bytes(25_000, 99);
    put(&store, t.path(), "keep0-0", &v2);
    live.insert("keep0-0".into(), v2);
    let before = state(&store);
    let m0 = manifest_bytes(&store);

    let dry = json(&ok(dc(&store)
        .args(CHECKPOINT)
        .args(["--dry-run", "--json"])));
    let real = json(&ok(dc(&store).args(CHECKPOINT).arg("--json")));
    assert_eq!(without_time(&dry["plan"]), without_time(&real["plan"]));
    let plan = &real["plan"]["checkpoint"];
    assert_eq!(plan["write"], "max_size", "{plan}");
    assert_eq!(plan["artifacts"], 5);
    let done = &real["result"]["checkpoint"];
    assert_eq!(done["written"]["artifacts"], 5, "{done}");
    assert_eq!(
        done["written"]["bytes"], plan["bytes"],
        "the plan's estimate of the checkpoint is exact"
    );
    // Every record before the checkpoint was dead: the manifest pack of
    // each of the 66 commands before it unlinked.
    assert_eq!(
        done["packs_unlinked"],
        plan["unlink"].as_array().unwrap().len()
    );
    assert_eq!(done["packs_unlinked"], 66, "{done}");
    let m1 = manifest_bytes(&store);
    let written = done["written"]["bytes"].as_u64().unwrap();
    assert!(m1 < m0 / 4, "manifest bytes {m0} -> {m1}");
    assert_eq!(m1, 8 + written, "one pack: the checkpoint's");

    verify_full_clean(&store);
    assert_eq!(state(&store), before);
    let out = rebuild(&store);
    assert!(out.contains("replayed from the checkpoint"), "{out}");
    assert_eq!(state(&store), before);
    assert_bytes(&store, &live);

    // Records since the checkpoint stay live; a second checkpoint makes
    // the first one dead in its turn.
    churn(&store, t.path(), 1, 10, 1, &mut live);
    let real = json(&ok(dc(&store).args(CHECKPOINT).arg("--json")));
    assert_eq!(real["result"]["checkpoint"]["written"]["artifacts"], 6);
    let before = state(&store);
    verify_full_clean(&store);
    rebuild(&store);
    assert_eq!(state(&store), before);
    assert_bytes(&store, &live);
}

/// The checkpoint marks `gc.batch`, then (with `DEPLOYCACHE_GC_PAUSE`)
/// pauses after its record's fsync, after its puts' fsync, after its
/// commit, and between the steps of the packs' rewrite. Killed in each,
/// with or without a commit after the crash (which takes the seq the
/// checkpoint began at): `verify --full` passes, a rebuild gives back the
/// live store (an artifact removed after the crash stays removed), and a
/// rerun finishes.
#[test]
fn a_checkpoint_killed_at_each_step_verifies_rebuilds_and_finishes() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mut live = BTreeMap::new();
    const PAUSE: u64 = 300;
    // (ms after gc.batch appears, a commit after the crash)
    let kills = [
        (PAUSE / 2, true),
        (PAUSE * 3 / 2, true),
        (PAUSE * 3 / 2, false),
        (PAUSE * 5 / 2, true),
        (PAUSE * 7 / 2, false),
        (PAUSE * 9 / 2, true),
    ];
    for (round, (after, commit)) in kills.into_iter().enumerate() {
        let round = round as u64;
        churn(&store, t.path(), round, 16, 2, &mut live);
        // The chunk packs of the churn go first, without pauses (and
        // without a checkpoint: far fewer than 64 MiB of records are dead).
        let plain = json(&ok(dc(&store).args(["gc", "--json"])));
        assert!(plain["plan"]["checkpoint"]["write"].is_null(), "{plain}");
        assert!(!store.join("gc.batch").exists());
        let mut gc = dc(&store)
            .args(CHECKPOINT)
            .env("DEPLOYCACHE_GC_PAUSE", PAUSE.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Nothing is evicted: the only mark is the checkpoint's.
        wait_until(60, "the checkpoint's gc.batch", || {
            store.join("gc.batch").exists()
        });
        std::thread::sleep(Duration::from_millis(after));
        gc.kill().unwrap();
        assert!(!gc.wait().unwrap().success(), "round {round}: gc finished");
        if commit {
            // The crashed checkpoint restated this artifact: replayed
            // after this rm, it would come back.
            let victim = live.keys().next().unwrap().clone();
            ok(dc(&store).args(["rm", &victim]));
            live.remove(&victim);
        }
        verify_full_clean(&store);
        let before = state(&store);
        rebuild(&store);
        assert_eq!(state(&store), before, "round {round}");
        assert_bytes(&store, &live);
        ok(dc(&store).args(CHECKPOINT));
        assert!(!store.join("gc.batch").exists());
        verify_full_clean(&store);
        assert_eq!(state(&store), before, "round {round}, rerun");
        rebuild(&store);
        assert_eq!(
            state(&store),
            before,
            "round {round}, rebuilt after the rerun"
        );
    }
    assert_bytes(&store, &live);
}

/// gc killed while it unlinks the packs a checkpoint made dead leaves some
/// of them: here, the packs of an artifact's put survive and those of its
/// removal do not. Replayed, the put would bring the artifact back; the
/// rebuild starts at the checkpoint instead.
#[test]
fn records_older_than_a_checkpoint_that_survive_its_drop_resurrect_nothing() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mut live = BTreeMap::new();
    churn(&store, t.path(), 0, 4, 2, &mut live);
    let had = pack_files(&store);
    put(&store, t.path(), "victim", &random_bytes(50_000, 5));
    let victim: Vec<(PathBuf, Vec<u8>)> = pack_files(&store)
        .into_iter()
        .filter(|p| !had.contains(p))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(
        victim.iter().any(|(_, b)| &b[8..12] == b"DCMF"),
        "the put wrote a manifest pack of its own"
    );
    ok(dc(&store).args(["rm", "victim"]));
    churn(&store, t.path(), 1, 4, 1, &mut live);
    let before = state(&store);
    let real = json(&ok(dc(&store).args(CHECKPOINT).arg("--json")));
    assert!(!real["result"]["checkpoint"]["written"].is_null(), "{real}");
    for (p, bytes) in &victim {
        assert!(!p.exists(), "{} was dead and is unlinked", p.display());
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    verify_full_clean(&store);
    assert_eq!(state(&store), before);
    let out = rebuild(&store);
    assert!(out.contains("replayed from the checkpoint"), "{out}");
    assert_eq!(state(&store), before, "victim is not resurrected");
    assert_bytes(&store, &live);
}

/// A checkpoint while a file is being written through the mount records
/// its pending row (the artifact stays incomplete); the file commits after
/// it, and a rebuild from the checkpoint on gives back the committed file.
#[test]
fn a_checkpoint_while_a_file_is_written_through_the_mount_keeps_its_pending_row() {
    use std::io::Write;
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mp = t.path().join("mnt");
    let mut live = BTreeMap::new();
    churn(&store, t.path(), 0, 4, 1, &mut live);
    ok(dc(&store).args(CHECKPOINT));
    // History and no chunk garbage: gc must not wait for `gc.lock`, which
    // the mount's writer holds shared until its file commits.
    for i in 0..10 {
        let dir = t.path().join("src/keep0-0");
        ok(dc(&store)
            .arg("put")
            .arg(format!("dup{i}"))
            .arg(dir.join("shared")));
        ok(dc(&store).args(["rm", &format!("dup{i}")]));
    }
    let m = Mounted::foreground(&store, &mp, &[]);
    let c = m.path(SHA);
    fs::create_dir(&c).unwrap();
    fs::write(c.join("x.yaml"), b"a: 1\n").unwrap();
    let image = random_bytes(3 << 20, 11);
    let mut w = fs::File::create(c.join("big.img")).unwrap();
    w.write_all(&image[..image.len() / 2]).unwrap();
    w.flush().unwrap();
    let writing = json(&ok(dc(&store).args(["ls", "--quarantine", "--json"])));
    assert_eq!(writing.as_array().unwrap().len(), 1, "{writing}");
    let real = json(&ok(dc(&store).args(CHECKPOINT).arg("--json")));
    let done = &real["result"]["checkpoint"];
    assert_eq!(done["written"]["artifacts"], 2, "{real}");
    assert_eq!(
        json(&ok(dc(&store).args(["ls", "--quarantine", "--json"]))),
        writing,
        "the pending row is still there"
    );
    assert!(!hit(&c));
    w.write_all(&image[image.len() / 2..]).unwrap();
    drop(w);
    assert!(hit(&c));
    assert!(fs::read(c.join("big.img")).unwrap() == image);
    m.unmount();
    let before = state(&store);
    assert_eq!(before["quarantine"], serde_json::json!([]));
    verify_full_clean(&store);
    let out = rebuild(&store);
    assert!(out.contains("replayed from the checkpoint"), "{out}");
    assert_eq!(state(&store), before);
    assert!(ok(dc(&store).args(["cat", SHA, "big.img"])) == image);
    assert_bytes_of(&store, SHA, "x.yaml", b"a: 1\n");
}

/// A mount that has written nothing for a while lets go of its manifest
/// pack, as of its chunk packs: a checkpoint then drops the mount's dead
/// records like any. (Before, the mount kept appending to its manifest pack
/// until 64 MiB, and gc left it: "a writer may still append to it".)
#[test]
fn an_idle_mount_lets_a_checkpoint_drop_its_dead_records() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    ok(dc(&store).arg("init"));
    let m = Mounted::foreground_env(
        &store,
        &t.path().join("mnt"),
        &[],
        &[("DEPLOYCACHE_IDLE_RETIRE_MS", "300")],
    );
    // History made through the mount: artifacts created and removed.
    for i in 0..8 {
        let d = m.path(&format!("tmp{i}"));
        fs::create_dir(&d).unwrap();
        write(&d.join("f"), &random_bytes(5_000, i));
        assert_eq!(fs::read(d.join("f")).unwrap(), random_bytes(5_000, i));
        fs::remove_file(d.join("f")).unwrap();
        fs::remove_dir(&d).unwrap();
    }
    let keep = m.path("keep");
    fs::create_dir(&keep).unwrap();
    write(&keep.join("f"), b"kept");
    wait_until(10, "keep/f", || {
        fs::read(keep.join("f")).ok().as_deref() == Some(&b"kept"[..])
    });
    std::thread::sleep(Duration::from_millis(1200));
    let real = json(&ok(dc(&store).args(CHECKPOINT).arg("--json")));
    let done = &real["result"]["checkpoint"];
    assert_eq!(done["written"]["artifacts"], 1, "{real}");
    assert_eq!(done["skipped"], serde_json::json!([]), "{real}");
    assert!(done["packs_unlinked"].as_u64().unwrap() >= 1, "{real}");
    // The mount records on, into a new pack.
    write(&keep.join("g"), b"more");
    wait_until(10, "keep/g", || {
        fs::read(keep.join("g")).ok().as_deref() == Some(&b"more"[..])
    });
    m.unmount();
    let before = state(&store);
    verify_full_clean(&store);
    rebuild(&store);
    assert_eq!(state(&store), before);
    assert_bytes_of(&store, "keep", "f", b"kept");
    assert_bytes_of(&store, "keep", "g", b"more");
}

fn assert_bytes_of(store: &Path, artifact: &str, file: &str, data: &[u8]) {
    assert!(
        ok(dc(store).args(["cat", artifact, file])) == data,
        "{artifact}/{file}"
    );
}

/// Sets what a format-2 deploycache wrote: FORMAT and the index's
/// `format_version` (format 3 changed nothing else on disk).
fn make_format_2(store: &Path) {
    fs::write(store.join("FORMAT"), "deploycache-store 2\n").unwrap();
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute(
        "UPDATE meta SET value = '2' WHERE key = 'format_version'",
        [],
    )
    .unwrap();
}

fn format_version(store: &Path) -> String {
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.query_row(
        "SELECT value FROM meta WHERE key = 'format_version'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_format_2_store_is_migrated_by_the_first_open_and_keeps_every_byte() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mut live = BTreeMap::new();
    churn(&store, t.path(), 0, 3, 3, &mut live);
    let before = state(&store);
    make_format_2(&store);
    let packs: Vec<(PathBuf, Vec<u8>)> = pack_files(&store)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert_eq!(state(&store), before);
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).unwrap(),
        "deploycache-store 4\n"
    );
    assert_eq!(format_version(&store), "4");
    for (p, b) in &packs {
        assert!(fs::read(p).unwrap() == *b, "{} changed", p.display());
    }
    assert_eq!(
        pack_files(&store).len(),
        packs.len(),
        "no record was written"
    );
    assert_bytes(&store, &live);
    verify_full_clean(&store);
    // Its records replay as they are; a checkpoint then works as on any.
    rebuild(&store);
    assert_eq!(state(&store), before);
    churn(&store, t.path(), 1, 6, 0, &mut live);
    ok(dc(&store).args(CHECKPOINT));
    rebuild(&store);
    assert_bytes(&store, &live);

    // A format-2 store whose index is lost is rebuilt too (its records
    // are format 3's), and the next open sets FORMAT.
    make_format_2(&store);
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(store.join(f));
    }
    rebuild(&store);
    assert_bytes(&store, &live);
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).unwrap(),
        "deploycache-store 4\n"
    );
}

/// A store of a newer format (here 5) is refused, naming both versions,
/// and nothing is written: what a format-3 deploycache does with a
/// format-4 store.
#[test]
fn a_store_of_a_newer_format_is_refused_naming_both_versions() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let mut live = BTreeMap::new();
    churn(&store, t.path(), 0, 1, 1, &mut live);
    fs::write(store.join("FORMAT"), "deploycache-store 5\n").unwrap();
    let index = fs::read(store.join("index.sqlite")).unwrap();
    for args in [
        &["ls"][..],
        &["put", "x", "/etc/hostname"],
        &["gc"],
        &["verify"],
    ] {
        let e = stderr(&fails(dc(&store).args(args)));
        assert!(
            e.contains("\"deploycache-store 5\"") && e.contains("reads format 4"),
            "{args:?}: {e}"
        );
    }
    let e = stderr(&fails(dc(&store).args(["verify", "--rebuild-index"])));
    assert!(e.contains("reads format 4"), "{e}");
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).unwrap(),
        "deploycache-store 5\n"
    );
    assert!(fs::read(store.join("index.sqlite")).unwrap() == index);
    // FORMAT says 4 and the index 5 (a newer deploycache migrated it and
    // stopped short of FORMAT): refused too.
    fs::write(store.join("FORMAT"), "deploycache-store 4\n").unwrap();
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute(
        "UPDATE meta SET value = '5' WHERE key = 'format_version'",
        [],
    )
    .unwrap();
    drop(db);
    let e = stderr(&fails(dc(&store).args(["ls"])));
    assert!(e.contains("\"5\"") && e.contains("reads format 4"), "{e}");
}
