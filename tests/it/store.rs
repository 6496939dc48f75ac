//! The store through the CLI: round trips, dedupe, crash safety, corruption,
//! concurrency, and the error messages users see.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use deploycache::chunker::{AVG_SIZE, MAX_SIZE, MIN_SIZE};
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

use crate::common::*;

/// A temp dir and the path of a store `s` in it (not created yet).
fn temp_store() -> (TempDir, std::path::PathBuf) {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    (t, store)
}

fn put(store: &Path, name: &str, paths: &[&Path]) -> String {
    let mut c = dc(store);
    c.arg("put").arg(name);
    for p in paths {
        c.arg(p);
    }
    String::from_utf8(ok(&mut c)).unwrap()
}

fn cat(store: &Path, name: &str, file: &str) -> Vec<u8> {
    ok(dc(store).args(["cat", name, file]))
}

fn stats(store: &Path) -> serde_json::Value {
    json(&ok(dc(store).args(["stats", "--json"])))
}

fn verify_full_clean(store: &Path) {
    let out = ok(dc(store).args(["verify", "--full"]));
    assert!(
        String::from_utf8_lossy(&out).contains("0 problems"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn round_trips_edge_sizes_byte_for_byte() {
    let t = TempDir::new().unwrap();
    let (store, src) = (t.path().join("store"), t.path().join("src"));
    fs::create_dir(&src).unwrap();
    let sizes = [
        0,
        1,
        MIN_SIZE - 1,
        MIN_SIZE,
        MIN_SIZE + 1,
        AVG_SIZE,
        MAX_SIZE - 1,
        MAX_SIZE,
        MAX_SIZE + 1,
        3 * MAX_SIZE + 12345,
    ];
    let mut expected = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let data = if i % 2 == 0 {
            random_bytes(*len, i as u64)
        } else {
            text_bytes(*len, i as u64)
        };
        let name = format!("f{i:02}_{len}.bin");
        write(&src.join(&name), &data);
        expected.push((name, data));
    }
    put(&store, "0123456789abcdef0123456789abcdef01234567", &[&src]);
    for (name, data) in &expected {
        assert_eq!(
            &cat(&store, "0123456789abcdef0123456789abcdef01234567", name),
            data,
            "{name}"
        );
    }
    let files = json(&ok(dc(&store).args([
        "ls",
        "0123456789abcdef0123456789abcdef01234567",
        "--json",
    ])));
    assert_eq!(files.as_array().unwrap().len(), sizes.len());
    verify_full_clean(&store);
}

#[test]
fn export_restores_bytes_mode_and_mtime() {
    let t = TempDir::new().unwrap();
    let (store, src, dst) = (
        t.path().join("s"),
        t.path().join("src"),
        t.path().join("dst"),
    );
    fs::create_dir(&src).unwrap();
    let key = src.join("id_rsa");
    write(&key, b"-----BEGIN KEY-----\nsecret\n");
    let img = src.join("env_1_ubuntu_1404_amd64.img.gz");
    write(&img, &random_bytes(3 * MAX_SIZE, 9));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let when = std::time::UNIX_EPOCH + Duration::new(1_456_789_012, 345_678_900);
    fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_modified(when)
        .unwrap();
    put(&store, "a", &[&src]);
    ok(dc(&store).args(["export", "a"]).arg(&dst));
    for f in ["id_rsa", "env_1_ubuntu_1404_amd64.img.gz"] {
        let (a, b) = (
            fs::metadata(src.join(f)).unwrap(),
            fs::metadata(dst.join(f)).unwrap(),
        );
        assert_eq!(
            fs::read(src.join(f)).unwrap(),
            fs::read(dst.join(f)).unwrap(),
            "{f}"
        );
        assert_eq!(
            a.permissions().mode() & 0o7777,
            b.permissions().mode() & 0o7777,
            "{f} mode"
        );
        assert_eq!(a.modified().unwrap(), b.modified().unwrap(), "{f} mtime");
    }
    assert_eq!(
        fs::metadata(dst.join("id_rsa"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // No temporary files are left behind.
    assert_eq!(fs::read_dir(&dst).unwrap().count(), 2);
}

#[test]
fn dedupe_after_insert_near_start_reuses_most_bytes() {
    let (t, store) = temp_store();
    let v1 = random_bytes(48 << 20, 1);
    let mut v2 = v1.clone();
    v2.splice(
        5000..5000,
        b"a new package was inserted here".iter().copied(),
    );
    v2[30 << 20] ^= 0xff; // and one byte changed deep inside
    let (p1, p2) = (t.path().join("v1.tar"), t.path().join("v2.tar"));
    write(&p1, &v1);
    write(&p2, &v2);
    put(&store, "v1", &[&p1]);
    let unique_after_v1 = stats(&store)["unique_bytes"].as_u64().unwrap();
    put(&store, "v2", &[&p2]);
    let s = stats(&store);
    let added = s["unique_bytes"].as_u64().unwrap() - unique_after_v1;
    let reused = v2.len() as f64 - added as f64;
    assert!(
        reused / v2.len() as f64 >= 0.9,
        "only {reused} of {} bytes reused (added {added})",
        v2.len()
    );
    assert_eq!(
        s["logical_bytes"].as_u64().unwrap(),
        (v1.len() + v2.len()) as u64
    );
    assert!(s["dedupe_ratio"].as_f64().unwrap() > 1.8, "{s}");
    assert_eq!(cat(&store, "v2", "v2.tar"), v2);
    assert_eq!(cat(&store, "v1", "v1.tar"), v1);
}

#[test]
fn stats_and_ls_json_carry_the_documented_keys() {
    let (t, store) = temp_store();
    let f = t.path().join("opnfv-bootstraps-cache.tar");
    write(&f, &text_bytes(2 << 20, 3));
    put(&store, "one", &[&f]);
    put(&store, "two", &[&f]);
    let s = stats(&store);
    for k in [
        "artifacts",
        "files",
        "chunks",
        "logical_bytes",
        "unique_bytes",
        "stored_bytes",
        "dedupe_ratio",
        "total_ratio",
    ] {
        assert!(s.get(k).is_some(), "stats --json lacks {k}: {s}");
    }
    assert_eq!(s["artifacts"], 2);
    assert_eq!(s["files"], 2);
    assert_eq!(s["logical_bytes"], 4 << 20);
    assert_eq!(s["unique_bytes"], 2 << 20);
    assert!((s["dedupe_ratio"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    // Text compresses: the honest total ratio beats the dedupe ratio.
    assert!(s["stored_bytes"].as_u64().unwrap() < 2 << 20, "{s}");
    assert!(s["total_ratio"].as_f64().unwrap() > 2.0, "{s}");
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    let arr = ls.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    for a in arr {
        for k in [
            "name",
            "files",
            "logical_bytes",
            "unique_bytes",
            "last_access",
        ] {
            assert!(a.get(k).is_some(), "ls --json lacks {k}: {a}");
        }
        assert_eq!(a["logical_bytes"], 2 << 20);
        assert_eq!(
            a["missing"],
            serde_json::json!([]),
            "put artifacts are whole: {a}"
        );
        // Both share every chunk: nothing is unique to either.
        assert_eq!(a["unique_bytes"], 0);
        let ts = a["last_access"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
    }
    ok(dc(&store).args(["rm", "two"]));
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(ls[0]["name"], "one");
    assert_eq!(ls[0]["unique_bytes"], 2 << 20);
    let human = String::from_utf8(ok(dc(&store).arg("stats"))).unwrap();
    assert!(
        human.contains("2.00 MiB") && human.contains("dedupe ratio"),
        "{human}"
    );
}

#[test]
fn put_replaces_an_artifact_atomically() {
    let (t, store) = temp_store();
    let (d1, d2) = (t.path().join("d1"), t.path().join("d2"));
    fs::create_dir(&d1).unwrap();
    fs::create_dir(&d2).unwrap();
    write(&d1.join("a"), b"first a");
    write(&d1.join("b"), b"first b");
    write(&d2.join("a"), b"second a");
    put(&store, "x", &[&d1]);
    put(&store, "x", &[&d2]);
    assert_eq!(cat(&store, "x", "a"), b"second a");
    let o = fails(dc(&store).args(["cat", "x", "b"]));
    assert!(stderr(&o).contains("has no file \"b\""), "{}", stderr(&o));
    verify_full_clean(&store);
}

#[test]
fn bad_input_gets_one_clear_line_and_nonzero_exit() {
    let (t, store) = temp_store();
    let f = t.path().join("f");
    write(&f, b"data");
    for bad in ["a/b", "..", ".", ""] {
        let o = fails(dc(&store).args(["put", bad]).arg(&f));
        let e = stderr(&o);
        assert!(
            e.starts_with("deploycache: invalid artifact name"),
            "{bad:?}: {e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    let o = fails(dc(&store).args(["put", "x", "/nonexistent/file.tar"]));
    assert!(
        stderr(&o).contains("/nonexistent/file.tar") && stderr(&o).contains("No such file"),
        "{}",
        stderr(&o)
    );
    // A failed put leaves no artifact behind.
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(ls.as_array().unwrap().len(), 0);

    let o = fails(dc(&t.path().join("nope")).arg("ls"));
    assert!(
        stderr(&o).contains("no store at") && stderr(&o).contains("nope"),
        "{}",
        stderr(&o)
    );

    let foreign = t.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    write(&foreign.join("something.txt"), b"not ours");
    let o = fails(dc(&foreign).args(["put", "x"]).arg(&f));
    assert!(
        stderr(&o).contains("is not a deploycache store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_dir(&foreign).unwrap().count(),
        1,
        "a foreign directory must not be written to"
    );

    let o = fails(dc(&store).args(["cat", "missing", "f"]));
    assert!(
        stderr(&o).contains("no artifact \"missing\""),
        "{}",
        stderr(&o)
    );
    let o = fails(dc(&store).args(["rm", "missing"]));
    assert!(
        stderr(&o).contains("no artifact \"missing\""),
        "{}",
        stderr(&o)
    );
    // Exporting where a file stands: the path, and what is wrong with it.
    ok(dc(&store).args(["put", "e"]).arg(&f));
    let blocked = t.path().join("blocked");
    fs::create_dir_all(blocked.join("f")).unwrap();
    for (dest, hint) in [
        (f.clone(), "in the way"),
        (f.join("sub"), "not a directory"),
        (blocked.clone(), "a directory is in the way"),
    ] {
        let o = fails(dc(&store).args(["export", "e"]).arg(&dest));
        let e = stderr(&o);
        assert!(
            e.starts_with(&format!("deploycache: {}", dest.display())) && e.contains(hint),
            "{e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    assert_eq!(fs::read(&f).unwrap(), b"data");
    ok(dc(&store).args(["rm", "e"]));
    // A directory given to put holds files only: a subdirectory or a FIFO
    // in it is named, and nothing is stored.
    let fifo_dir = t.path().join("with-fifo");
    fs::create_dir(&fifo_dir).unwrap();
    write(&fifo_dir.join("a"), b"a");
    assert!(std::process::Command::new("mkfifo")
        .arg(fifo_dir.join("pipe"))
        .status()
        .unwrap()
        .success());
    for (path, why) in [
        (
            t.path().to_owned(),
            "is a directory inside a directory given to put",
        ),
        (fifo_dir.clone(), "is not a regular file"),
        (PathBuf::from("/dev/null"), "is not a regular file"),
    ] {
        let o = fails(dc(&store).args(["put", "x"]).arg(&path));
        let e = stderr(&o);
        assert!(e.contains(why) && !e.contains("panicked"), "{path:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert!(!names(&ls).contains(&"x".to_string()), "{ls}");
}

#[test]
fn a_damaged_chunk_is_reported_never_served() {
    let (t, store) = temp_store();
    let f = t.path().join("env_1.img.gz");
    let data = random_bytes(4 << 20, 77);
    write(&f, &data);
    put(&store, "art", &[&f]);
    damage_only_pack(&store, 0x40);

    let o = fails(dc(&store).args(["cat", "art", "env_1.img.gz"]));
    let e = stderr(&o);
    assert!(
        e.contains("corrupt chunk")
            && e.contains("\"art\"")
            && e.contains("env_1.img.gz")
            && e.contains("offset"),
        "{e}"
    );
    // Whatever cat wrote before the damaged chunk is a strict prefix: no wrong bytes.
    assert!(o.stdout.len() < data.len() && data.starts_with(&o.stdout));

    let dst = t.path().join("out");
    let o = fails(dc(&store).args(["export", "art"]).arg(&dst));
    assert!(stderr(&o).contains("corrupt chunk"), "{}", stderr(&o));
    assert!(
        !dst.join("env_1.img.gz").exists(),
        "export must not leave a damaged file under its final name"
    );

    let o = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .args(["verify", "--full"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("corrupt chunk") && out.contains("art/env_1.img.gz at offset"),
        "{out}"
    );
    // The quick verify does not read chunk bytes, so it cannot see this.
    ok(dc(&store).arg("verify"));
}

#[test]
fn kill_9_during_put_leaves_a_clean_store_and_no_partial_artifact() {
    let (t, store) = temp_store();
    let (old, new) = (t.path().join("old"), t.path().join("new"));
    fs::create_dir(&old).unwrap();
    fs::create_dir(&new).unwrap();
    let old_a = random_bytes(2 << 20, 100);
    write(&old.join("a.tar"), &old_a);
    put(&store, "key", &[&old]);
    let new_a = random_bytes(40 << 20, 101);
    let new_b = text_bytes(24 << 20, 102);
    write(&new.join("a.tar"), &new_a);
    write(&new.join("b.img"), &new_b);

    let mut rng = rand::rngs::StdRng::seed_from_u64(0xdead);
    let mut outcomes = (0, 0);
    for round in 0..8 {
        let mut child = dc(&store)
            .args(["put", "key"])
            .arg(&new)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill moments spread over the put (start-up, chunking, the pack
        // fsyncs, the commit), jittered: the early ones always land before
        // the commit, so the old-version branch below is always exercised.
        std::thread::sleep(Duration::from_millis(round * 45 + rng.random_range(0..30)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        verify_full_clean(&store);
        // "key" is entirely the old version or entirely the new one.
        let files = names(&json(&ok(dc(&store).args(["ls", "key", "--json"]))));
        if files == ["a.tar"] {
            assert_eq!(cat(&store, "key", "a.tar"), old_a);
            outcomes.0 += 1;
        } else {
            assert_eq!(files, ["a.tar", "b.img"]);
            assert_eq!(cat(&store, "key", "a.tar"), new_a);
            assert_eq!(cat(&store, "key", "b.img"), new_b);
            outcomes.1 += 1;
            // Start over from the old version for the next round.
            put(&store, "key", &[&old]);
        }
    }
    assert!(
        outcomes.0 > 0,
        "no kill landed mid-put; the test proved nothing: {outcomes:?}"
    );
}

#[test]
fn concurrent_puts_sharing_chunks() {
    let (t, store) = temp_store();
    ok(dc(&store).arg("init"));
    let base = random_bytes(6 << 20, 5);
    let mut inputs = Vec::new();
    for i in 0..4u64 {
        let dir = t.path().join(format!("in{i}"));
        fs::create_dir(&dir).unwrap();
        let mut data = base.clone();
        data.extend_from_slice(&random_bytes(1 << 20, 50 + i));
        data.extend_from_slice(&base[..2 << 20]);
        write(&dir.join("opnfv-bootstraps-cache.tar"), &data);
        inputs.push((dir, data));
    }
    let children: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, (dir, _))| {
            dc(&store)
                .args(["put", &format!("art{i}")])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for (i, (_, data)) in inputs.iter().enumerate() {
        assert_eq!(
            &cat(&store, &format!("art{i}"), "opnfv-bootstraps-cache.tar"),
            data
        );
    }
    verify_full_clean(&store);
    let s = stats(&store);
    // Each 1 MiB tail is unique; the 6 MiB base is stored about once (two
    // racing writers may both store a chunk; never more than 4 times).
    let unique = s["unique_bytes"].as_u64().unwrap();
    assert!(unique < (6 + 4 + 2) << 20, "{s}");
}

/// A put stages two files at once, each on a pack lane of its own: files
/// sharing chunks race to store them, and every chunk must still be
/// indexed once and read back from wherever it landed.
#[test]
fn files_of_one_put_sharing_chunks_are_stored_once() {
    let (t, store) = temp_store();
    ok(dc(&store).arg("init"));
    let dir = t.path().join("in");
    fs::create_dir(&dir).unwrap();
    let a = random_bytes(6 << 20, 71);
    let mut b = random_bytes(1 << 20, 72);
    b.extend_from_slice(&a);
    let c = random_bytes(3 << 20, 73);
    write(&dir.join("a.img"), &a);
    write(&dir.join("b.img"), &b);
    write(&dir.join("c.img"), &a);
    write(&dir.join("d.img"), &c);
    put(&store, "x", &[&dir]);
    for (name, data) in [("a.img", &a), ("b.img", &b), ("c.img", &a), ("d.img", &c)] {
        assert!(cat(&store, "x", name) == *data, "{name} read back wrong");
    }
    verify_full_clean(&store);
    let s = stats(&store);
    // `a` is stored once although three files hold it, racing on two lanes.
    let unique = s["unique_bytes"].as_u64().unwrap();
    // `b`'s chunking meets `a`'s again within a chunk or two of the seam.
    let distinct: u64 = (6 + 1 + 3) << 20;
    assert!(unique >= distinct, "{s}");
    assert!(unique <= distinct + 2 * MAX_SIZE as u64, "{s}");
}

/// `--compression` picks how new chunks are stored; the bytes read back
/// are the same whatever wrote them, and one store can mix them.
#[test]
fn compression_settings_trade_size_and_read_back_the_same_bytes() {
    let t = TempDir::new().unwrap();
    let data = text_bytes(4 << 20, 81);
    let file = t.path().join("root.img");
    write(&file, &data);
    let stored = |setting: &str| {
        let store = t.path().join(setting);
        ok(dc(&store)
            .args(["--compression", setting, "put", "a"])
            .arg(&file));
        assert!(
            cat(&store, "a", "root.img") == data,
            "{setting}: bytes differ"
        );
        verify_full_clean(&store);
        stats(&store)["stored_bytes"].as_u64().unwrap()
    };
    let (zstd, fast, none) = (stored("zstd"), stored("fast"), stored("none"));
    assert!(
        zstd < fast && fast < none,
        "zstd {zstd}, fast {fast}, none {none}"
    );
    assert!(none >= data.len() as u64, "none stored {none} bytes");

    // A store written under `none`, then `zstd`: both artifacts read back.
    let mixed = t.path().join("none");
    let mut other = data.clone();
    other.reverse();
    write(&file, &other);
    ok(dc(&mixed)
        .args(["--compression", "zstd", "put", "b"])
        .arg(&file));
    assert!(cat(&mixed, "a", "root.img") == data);
    assert!(cat(&mixed, "b", "root.img") == other);
    verify_full_clean(&mixed);

    let o = dc(&mixed)
        .args(["--compression", "lz4", "stats"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("zstd (default), fast or none"),
        "{}",
        stderr(&o)
    );
}

/// `cat NAME FILE...` writes the files one after another, like cat(1);
/// a missing name fails before any byte is written.
#[test]
fn cat_of_several_files_concatenates_them_or_writes_nothing() {
    let (t, store) = temp_store();
    let dir = t.path().join("in");
    fs::create_dir(&dir).unwrap();
    let (a, b) = (random_bytes(300_000, 91), text_bytes(200_000, 92));
    write(&dir.join("a.img"), &a);
    write(&dir.join("b.yaml"), &b);
    put(&store, "x", &[&dir]);
    let both = ok(dc(&store).args(["cat", "x", "b.yaml", "a.img", "b.yaml"]));
    assert!(both == [&b[..], &a[..], &b[..]].concat());
    let o = fails(dc(&store).args(["cat", "x", "a.img", "nosuch"]));
    assert!(o.stdout.is_empty(), "{} bytes written", o.stdout.len());
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
}

#[test]
fn import_adopts_a_plain_cache_idempotently() {
    let t = TempDir::new().unwrap();
    let (store, cache) = (t.path().join("s"), t.path().join("deploy-cache"));
    let shas = [
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
    ];
    // A real tar (the check reads it), the same in both.
    let member = t.path().join("root.squashfs");
    write(&member, &random_bytes(3 << 20, 7));
    let tar = t.path().join("bootstraps.tar");
    let st = std::process::Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(t.path())
        .arg("root.squashfs")
        .status()
        .unwrap();
    assert!(st.success());
    let tar_bytes = fs::read(&tar).unwrap();
    for (i, sha) in shas.iter().enumerate() {
        let d = cache.join(sha);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("opnfv-bootstraps-cache.tar"), &tar_bytes);
        write(&d.join("id_rsa.pub"), format!("ssh-rsa AAAA{i}").as_bytes());
    }
    fs::create_dir_all(cache.join("3333333333333333333333333333333333333333")).unwrap(); // an empty miss
    write(&cache.join("stray.txt"), b"x");
    // The legacy cache's own failure: a killed scp left half a tar beside
    // whole keys. It must not come in looking cached.
    let cut = "4444444444444444444444444444444444444444";
    fs::create_dir_all(cache.join(cut)).unwrap();
    write(&cache.join(cut).join("id_rsa.pub"), b"ssh-rsa CCCC");
    write(
        &cache.join(cut).join("opnfv-bootstraps-cache.tar"),
        &tar_bytes[..tar_bytes.len() / 2],
    );
    // Not an artifact: a directory inside. Skipped, naming what is in the way.
    let nested = "5555555555555555555555555555555555555555";
    fs::create_dir_all(cache.join(nested).join("sub")).unwrap();
    write(&cache.join(nested).join("id_rsa"), b"k");
    let o = dc(&store).arg("import").arg(&cache).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(out.contains("imported 3 artifacts"), "{out}");
    assert!(out.contains("3 skipped"), "{out}");
    let e = stderr(&o);
    for (what, why) in [
        (nested.to_string(), "holds \"sub\", a directory"),
        ("3333333333333333333333333333333333333333".into(), "empty"),
        ("stray.txt".into(), "not a directory"),
    ] {
        let line = format!("skipped {}: {why}", cache.join(what).display());
        assert!(e.contains(&line), "{line:?} in {e}");
    }
    assert!(
        e.contains(&format!("{cut}/opnfv-bootstraps-cache.tar is cut short")),
        "{e}"
    );
    let out = String::from_utf8(ok(dc(&store).arg("import").arg(&cache))).unwrap();
    assert!(
        out.contains("imported 0 artifacts") && out.contains("3 already present"),
        "{out}"
    );
    for (i, sha) in shas.iter().enumerate() {
        assert_eq!(
            cat(&store, sha, "id_rsa.pub"),
            format!("ssh-rsa AAAA{i}").as_bytes()
        );
        assert_eq!(cat(&store, sha, "opnfv-bootstraps-cache.tar"), tar_bytes);
    }
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    let missing: Vec<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}:{}", a["name"].as_str().unwrap(), a["missing"]))
        .collect();
    assert_eq!(
        missing,
        [
            format!("{}:[]", shas[0]),
            format!("{}:[]", shas[1]),
            format!("{cut}:[\"opnfv-bootstraps-cache.tar\"]"),
        ]
    );
    assert_eq!(cat(&store, cut, "id_rsa.pub"), b"ssh-rsa CCCC");
    // Exporting it gives its whole files and says what it misses.
    let dest = t.path().join("out");
    let o = dc(&store)
        .arg("export")
        .arg(cut)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("incomplete: opnfv-bootstraps-cache.tar cut short"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(dest.join("id_rsa.pub")).unwrap(), b"ssh-rsa CCCC");
    assert!(!dest.join("opnfv-bootstraps-cache.tar").exists());
    let s = stats(&store);
    assert_eq!(s["artifacts"], 3);
    assert_eq!(s["quarantined_files"], 1);
    // The tar once, plus at most the one chunk where the cut tar ends.
    assert!(
        s["unique_bytes"].as_u64().unwrap() < tar_bytes.len() as u64 + (256 << 10),
        "the tar is stored once: {s}"
    );
}

/// `kill -9` of an import part-way: the artifacts it committed are whole,
/// the store verifies, and the next import picks up where it stopped
/// (it redoes none of the committed ones and finishes the rest).
#[test]
fn an_interrupted_import_resumes_where_it_stopped() {
    let t = TempDir::new().unwrap();
    let (store, cache) = (t.path().join("s"), t.path().join("deploy-cache"));
    let shas: Vec<String> = (0..10u64).map(|i| format!("{i:040x}")).collect();
    // A raw image: no completeness check applies (a `.tar` name would get
    // the tar check, which random bytes fail).
    let content = |i: u64| random_bytes(12 << 20, 300 + i);
    for (i, sha) in shas.iter().enumerate() {
        let d = cache.join(sha);
        fs::create_dir_all(&d).unwrap();
        write(&d.join("env_1_ubuntu_1404_amd64.img"), &content(i as u64));
        write(&d.join("id_rsa.pub"), format!("key {i}").as_bytes());
    }
    ok(dc(&store).arg("init"));
    let mut child = dc(&store)
        .arg("import")
        .arg(&cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the first artifact is committed.
    let listed = |store: &Path| names(&json(&ok(dc(store).args(["ls", "--json"]))));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while listed(&store).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    verify_full_clean(&store);
    let done = listed(&store);
    assert!(
        !done.is_empty() && done.len() < shas.len(),
        "the kill did not land mid-import; the test proved nothing: {done:?}"
    );
    let whole = |i: usize| {
        assert_eq!(
            cat(&store, &shas[i], "env_1_ubuntu_1404_amd64.img"),
            content(i as u64)
        );
        assert_eq!(
            cat(&store, &shas[i], "id_rsa.pub"),
            format!("key {i}").as_bytes()
        );
    };
    for name in &done {
        whole(shas.iter().position(|s| s == name).unwrap());
    }
    let out = String::from_utf8(ok(dc(&store).arg("import").arg(&cache))).unwrap();
    assert!(
        out.contains(&format!("imported {} artifacts", shas.len() - done.len()))
            && out.contains(&format!("{} already present", done.len())),
        "{out}"
    );
    (0..shas.len()).for_each(whole);
    verify_full_clean(&store);
}

#[test]
fn a_store_held_by_another_host_is_refused_by_name() {
    let (_t, store) = temp_store();
    ok(dc(&store).arg("init"));
    write(&store.join("owner"), b"jumphost-b.example\n");
    // The other host's process holds its shared lock (flock(1) from util-linux).
    let mut holder = Command::new("flock")
        .args(["-s", "-o"])
        .arg(store.join("lock"))
        .args(["sleep", "30"])
        .spawn()
        .expect("flock(1)");
    std::thread::sleep(Duration::from_millis(200));
    let o = fails(dc(&store).arg("ls"));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        stderr(&o).contains("in use by host \"jumphost-b.example\""),
        "{}",
        stderr(&o)
    );
    // Once that host is gone, this host takes the store over.
    ok(dc(&store).arg("ls"));
    assert_eq!(
        fs::read_to_string(store.join("owner")).unwrap().trim(),
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
}

/// A 4 GiB file (sparse, with data islands) goes in and out with memory
/// bounded well under 100 MiB.
#[test]
fn four_gib_sparse_file_round_trips_in_bounded_memory() {
    let (t, store) = temp_store();
    let f = t.path().join("big.img");
    {
        use std::os::unix::fs::FileExt;
        let file = fs::File::create(&f).unwrap();
        file.set_len(4 << 30).unwrap();
        for (i, at) in [0u64, 1 << 30, 3 << 30, (4 << 30) - 777].iter().enumerate() {
            file.write_all_at(&random_bytes(777, i as u64), *at)
                .unwrap();
        }
    }
    let rss = |args: &[&str]| -> (u64, Vec<u8>) {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/time (apt-get install time)");
        let o = out.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let kib: u64 = stderr(&o).trim().lines().last().unwrap().parse().unwrap();
        (kib, o.stdout)
    };
    let (put_kib, _) = rss(&["put", "big", f.to_str().unwrap()]);
    assert!(put_kib < 100 * 1024, "put peak RSS {put_kib} KiB");
    // Hash the output as it streams: never hold 4 GiB in the test either.
    let mut child = dc(&store)
        .args(["cat", "big", "big.img"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut hasher, mut buf, mut total) = (blake3::Hasher::new(), vec![0u8; 1 << 20], 0u64);
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(total, 4 << 30);
    let mut expect = blake3::Hasher::new();
    expect.update_reader(fs::File::open(&f).unwrap()).unwrap();
    assert_eq!(hasher.finalize(), expect.finalize());
    let (cat_kib, _) = rss(&["cat", "big", "big.img"]);
    assert!(cat_kib < 100 * 1024, "cat peak RSS {cat_kib} KiB");
}

/// The files cache must never serve stale content: a file rewritten in place
/// with the same size and its old mtime restored has a new ctime.
#[test]
fn files_cache_sees_a_rewrite_that_keeps_size_and_mtime() {
    let (t, store) = temp_store();
    let dir = t.path().join("d");
    fs::create_dir(&dir).unwrap();
    let f = dir.join("env_1.img.gz");
    let old_mtime = std::time::SystemTime::now() - Duration::from_secs(3600);
    write(&f, &random_bytes(1 << 20, 1));
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    // The cache only trusts files whose ctime is a few seconds old.
    std::thread::sleep(Duration::from_millis(2100));
    put(&store, "a", &[&dir]);
    put(&store, "b", &[&dir]); // served from the files cache
    assert_eq!(cat(&store, "b", "env_1.img.gz"), random_bytes(1 << 20, 1));
    let new = random_bytes(1 << 20, 2);
    write(&f, &new);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    put(&store, "c", &[&dir]);
    assert_eq!(cat(&store, "c", "env_1.img.gz"), new);
    verify_full_clean(&store);
}

/// A full disk is an error naming the path, and leaves no partial artifact.
/// Needs root (a small tmpfs is the full disk), as the tests run in CI.
#[test]
fn a_full_disk_fails_cleanly() {
    let t = TempDir::new().unwrap();
    let small = t.path().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&small);
    let store = small.join("store");
    let f = t.path().join("opnfv-bootstraps-cache.tar");
    write(&f, &random_bytes(4 << 20, 1));
    put(&store, "fits", &[&f]);
    let big = t.path().join("env_1.img.gz");
    write(&big, &random_bytes(32 << 20, 2));
    let o = fails(dc(&store).args(["put", "too-big"]).arg(&big));
    let e = stderr(&o);
    assert!(
        e.contains("No space left on device") && e.contains(small.to_str().unwrap()),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(
        cat(&store, "fits", "opnfv-bootstraps-cache.tar"),
        random_bytes(4 << 20, 1)
    );
    verify_full_clean(&store);
}

/// Long work shows a progress bar on a terminal, and nothing at all when
/// its output goes to a pipe or a CI log.
#[test]
fn progress_shows_on_a_terminal_only() {
    let t = TempDir::new().unwrap();
    let dir = t.path().join("in");
    fs::create_dir(&dir).unwrap();
    write(&dir.join("env_1.img"), &random_bytes(64 << 20, 77));
    let (piped, tty) = (t.path().join("s1"), t.path().join("s2"));
    let o = dc(&piped).args(["put", "a"]).arg(&dir).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("a: 1 file,") && !out.contains("eta"),
        "{out}"
    );
    // script(1) runs the command on a pseudo-terminal and copies what it
    // printed there to its own stdout.
    let cmd = format!(
        "{} --store {} put a {}",
        bin().display(),
        tty.display(),
        dir.display()
    );
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env_remove("DEPLOYCACHE_STORE")
        .output()
        .expect("script(1) from bsdutils");
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("eta") && out.contains("MiB"), "{out}");
}
