//! The gzip form (store-layout.md, "Gzip files (format 4)"), for real:
//! gzip files from real producers stored, converted, read back hot and cold
//! through cat, export and a mount (at random offsets), with every byte
//! compared; conversion killed at each step; damaged side data and content;
//! gc evicting a version whose content another still needs; a rebuilt
//! index; a format-2 store migrated.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::common::*;
use crate::mount::{wait_until, Mounted};

/// `data` gzip'd by GNU gzip at `level` (no name, no time: reproducible).
fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg(format!("-{level}"))
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// `data` gzip'd by Python's gzip module.
fn python_gzip(dir: &Path, data: &[u8]) -> Vec<u8> {
    let src = dir.join("py-src");
    write(&src, data);
    let dst = dir.join("py.gz");
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import gzip,sys; open(sys.argv[2],'wb').write(gzip.compress(open(sys.argv[1],'rb').read(), 6, mtime=0))")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python3 gzip");
    fs::read(dst).unwrap()
}

/// A text of `lines` lines of words (a vocabulary of 3,000, as a package
/// list or a log has); `edit` changes a few of them (a new version).
fn text(lines: usize, seed: u64, edit: bool) -> Vec<u8> {
    let noise = random_bytes(lines * 24 + 30_000, seed);
    let mut at = 0;
    let mut next = || {
        at += 1;
        noise[at - 1] as usize
    };
    let words: Vec<Vec<u8>> = (0..3000)
        .map(|_| {
            let len = 3 + next() % 7;
            (0..len).map(|_| b'a' + (next() % 16) as u8).collect()
        })
        .collect();
    let mut v = Vec::new();
    for i in 0..lines {
        if edit && i % 20_000 == 13 {
            v.extend_from_slice(format!("edited line {i}\n").as_bytes());
        }
        for k in 0..12 {
            if k > 0 {
                v.push(b' ');
            }
            v.extend_from_slice(&words[(next() * 256 + next()) % 3000]);
        }
        v.push(b'\n');
    }
    v
}

/// Each file of `ls NAME --json` and how it is stored.
fn forms(store: &Path, artifact: &str) -> Vec<(String, String)> {
    let ls = json(&ok(dc(store).args(["ls", artifact, "--json"])));
    ls.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["stored"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn form(store: &Path, artifact: &str, file: &str) -> String {
    forms(store, artifact)
        .into_iter()
        .find(|(n, _)| n == file)
        .unwrap_or_else(|| panic!("no {artifact}/{file}"))
        .1
}

fn cat(store: &Path, artifact: &str, file: &str) -> Vec<u8> {
    ok(dc(store).args(["cat", artifact, file]))
}

/// Drop every hot copy (and reclaim what that frees).
fn drop_hot(store: &Path) {
    ok(dc(store).args(["gc", "--hot-for", "0s"]));
}

fn verify_full(store: &Path) {
    let out = String::from_utf8(ok(dc(store).args(["verify", "--full"]))).unwrap();
    assert!(out.contains("0 problems"), "{out}");
}

fn stats(store: &Path) -> serde_json::Value {
    json(&ok(dc(store).args(["stats", "--json"])))
}

/// Files of every kind conversion meets, by name.
fn corpus(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let t = text(30_000, 1, false);
    let mut multi = gzip(&t[..500_000], 6);
    multi.extend(gzip(&t[500_000..], 9));
    let mut trailing = gzip(&t, 6);
    trailing.extend_from_slice(&[0u8; 1000]);
    trailing.extend_from_slice(b"trailing garbage");
    let truncated = {
        let g = gzip(&t, 6);
        g[..g.len() / 2].to_vec()
    };
    vec![
        ("l1.gz", gzip(&t, 1)),
        ("l6.gz", gzip(&t, 6)),
        ("l9.gz", gzip(&t, 9)),
        ("python.gz", python_gzip(dir, &t)),
        ("multi.gz", multi),
        ("trailing.gz", trailing),
        ("empty.gz", gzip(b"", 6)),
        ("truncated.gz", truncated),
        ("plain.txt", t.clone()),
    ]
}

fn put_corpus(t: &Path, store: &Path, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    let files = corpus(t);
    let src = t.join(format!("src-{name}"));
    fs::create_dir_all(&src).unwrap();
    for (n, data) in &files {
        write(&src.join(n), data);
    }
    ok(dc(store).args(["put", name]).arg(&src));
    files
}

fn check_bytes(store: &Path, artifact: &str, files: &[(&str, Vec<u8>)]) {
    for (n, data) in files {
        assert!(cat(store, artifact, n) == *data, "{artifact}/{n} differs");
    }
}

#[test]
fn convert_round_trips_every_producer_and_keeps_what_does_not_rebuild() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let files = put_corpus(t.path(), &store, "a");
    let out = json(&ok(dc(&store).args(["convert", "--all", "--json"])));
    let result = |name: &str| -> String {
        out.as_array()
            .unwrap()
            .iter()
            .find(|f| f["file"] == name)
            .unwrap_or_else(|| panic!("{name} not tried: {out}"))["result"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for n in [
        "l1.gz",
        "l6.gz",
        "l9.gz",
        "python.gz",
        "multi.gz",
        "trailing.gz",
    ] {
        assert_eq!(result(n), "converted", "{n}: {out}");
        assert_eq!(form(&store, "a", n), "gzip+hot");
    }
    assert_eq!(result("truncated.gz"), "kept", "{out}");
    assert_eq!(result("plain.txt"), "not-gzip", "{out}");
    assert_eq!(form(&store, "a", "truncated.gz"), "as-is");
    assert_eq!(form(&store, "a", "plain.txt"), "as-is");
    // Tried once: a second run has nothing to do.
    let again = json(&ok(dc(&store).args(["convert", "--all", "--json"])));
    assert_eq!(again, serde_json::json!([]));
    // Hot, then cold (rebuilt; a whole read promotes it), then hot again.
    check_bytes(&store, "a", &files);
    drop_hot(&store);
    assert_eq!(form(&store, "a", "l6.gz"), "gzip");
    verify_full(&store);
    check_bytes(&store, "a", &files);
    assert_eq!(form(&store, "a", "l6.gz"), "gzip+hot", "cat promotes");
    drop_hot(&store);
    let dest = t.path().join("export");
    ok(dc(&store).args(["export", "a"]).arg(&dest));
    for (n, data) in &files {
        assert!(fs::read(dest.join(n)).unwrap() == *data, "export of {n}");
    }
    verify_full(&store);
}

#[test]
fn two_versions_of_an_image_share_their_content_once_converted() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let v1 = gzip(&text(40_000, 7, false), 6);
    let v2 = gzip(&text(40_000, 7, true), 6);
    for (name, data) in [("v1", &v1), ("v2", &v2)] {
        let dir = t.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("image.img.gz"), data);
        ok(dc(&store).args(["put", name]).arg(&dir));
    }
    let before = stats(&store)["compressed_bytes"].as_u64().unwrap();
    let conv = String::from_utf8(ok(dc(&store).args(["convert", "--all"]))).unwrap();
    assert_eq!(conv.matches(": converted").count(), 2, "{conv}");
    drop_hot(&store);
    let s = stats(&store);
    let after = s["compressed_bytes"].as_u64().unwrap();
    let saved = s["gzip"]["saved_bytes"].as_i64().unwrap();
    assert_eq!(s["gzip"]["files"], 2);
    assert_eq!(s["gzip"]["hot_files"], 0);
    // The second version's content mostly dedupes against the first's:
    // both cost little more than one gz file.
    assert!(
        (after as f64) < 0.75 * before as f64,
        "stored {after} after conversion, {before} before"
    );
    assert!(saved > (v2.len() / 2) as i64, "saved {saved}: {s}");
    assert!(cat(&store, "v1", "image.img.gz") == v1);
    assert!(cat(&store, "v2", "image.img.gz") == v2);
}

#[test]
fn the_mount_converts_in_the_background_and_reads_cold_files_at_any_offset() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let mp = t.path().join("mnt");
    let data = gzip(&text(100_000, 3, false), 6);
    let m = Mounted::foreground(&store, &mp, &[]);
    fs::create_dir(m.path("a")).unwrap();
    write(&m.path("a/image.gz"), &data);
    wait_until(60, "the background conversion", || {
        form(&store, "a", "image.gz") == "gzip+hot"
    });
    assert!(fs::read(m.path("a/image.gz")).unwrap() == data);
    m.unmount();
    drop_hot(&store);
    assert_eq!(form(&store, "a", "image.gz"), "gzip");
    // A new mount: no page cache holds the file; every read rebuilds.
    let m = Mounted::foreground(&store, &mp, &["--no-convert"]);
    let f = fs::File::open(m.path("a/image.gz")).unwrap();
    let g = fs::File::open(m.path("a/image.gz")).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    for i in 0..60 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let off = state % data.len() as u64;
        let len = 1 + (state >> 20) as usize % 300_000;
        let mut buf = vec![0u8; len];
        let file = if i % 2 == 0 { &f } else { &g };
        let n = file.read_at(&mut buf, off).unwrap();
        let end = (off as usize + len).min(data.len());
        assert_eq!(n, end - off as usize, "read at {off}");
        assert!(buf[..n] == data[off as usize..end], "bytes at {off}+{len}");
    }
    assert!(fs::read(m.path("a/image.gz")).unwrap() == data);
    drop((f, g));
    wait_until(30, "the promotion", || {
        form(&store, "a", "image.gz") == "gzip+hot"
    });
    m.unmount();
    verify_full(&store);
}

/// A conversion paused at `step` and killed there.
fn convert_killed_at(store: &Path, step: &str) {
    let mut child = dc(store)
        .args(["convert", "--all"])
        .env("DEPLOYCACHE_CONVERT_PAUSE", format!("{step}:60000"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Whether it got to `step` or not, what follows must hold.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_9_during_conversion_leaves_a_readable_file_and_a_sound_store() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let data = gzip(&text(60_000, 5, false), 6);
    let dir = t.path().join("src");
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("x.gz"), &data);
    ok(dc(&store).args(["put", "a"]).arg(&dir));
    for step in ["analysed", "stored", "checked", "committed"] {
        convert_killed_at(&store, step);
        assert!(cat(&store, "a", "x.gz") == data, "after a kill at {step}");
        let f = form(&store, "a", "x.gz");
        assert!(f == "as-is" || f == "gzip+hot", "{step}: {f}");
        verify_full(&store);
    }
    // A read while a conversion is paused mid-way sees the same bytes.
    let mut child = dc(&store)
        .args(["convert", "--all"])
        .env("DEPLOYCACHE_CONVERT_PAUSE", "stored:2000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(cat(&store, "a", "x.gz") == data);
    assert!(child.wait().unwrap().success());
    assert_eq!(form(&store, "a", "x.gz"), "gzip+hot");
    drop_hot(&store);
    assert!(cat(&store, "a", "x.gz") == data);
    verify_full(&store);
}

/// The pack file and payload offset of the first chunk of stream `stream`
/// (1 content, 2 side data) of the store's gzip-form file.
fn stream_chunk(store: &Path, stream: u32) -> (PathBuf, u64, u64) {
    let out = Command::new("sqlite3")
        .arg(store.join("index.sqlite"))
        .arg(format!(
            "SELECT p.name, c.offset, c.stored_len FROM file_streams fs
             JOIN chunks c ON c.id = fs.chunk JOIN packs p ON p.id = c.pack
             WHERE fs.stream = {stream} ORDER BY fs.seq LIMIT 1"
        ))
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    let name = parts[0];
    let pack = store
        .join("packs")
        .join(&name[..2])
        .join(format!("{name}.pack"));
    (pack, parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

fn flip(pack: &Path, at: u64) {
    let mut bytes = fs::read(pack).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(pack, bytes).unwrap();
}

#[test]
fn damaged_side_data_or_content_is_an_error_never_wrong_bytes() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let data = gzip(&random_bytes(300_000, 4).repeat(2), 6);
    let dir = t.path().join("src");
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("x.gz"), &data);
    ok(dc(&store).args(["put", "a"]).arg(&dir));
    ok(dc(&store).args(["convert", "a"]));
    drop_hot(&store);
    assert_eq!(form(&store, "a", "x.gz"), "gzip");
    let (pack, offset, len) = stream_chunk(&store, 2);
    flip(&pack, offset + len / 2);
    let out = fails(dc(&store).args(["cat", "a", "x.gz"]));
    assert!(
        out.stdout.is_empty(),
        "no byte before the side data is read"
    );
    assert!(stderr(&out).contains("corrupt chunk"), "{}", stderr(&out));
    flip(&pack, offset + len / 2);
    assert!(cat(&store, "a", "x.gz") == data);
    drop_hot(&store);
    // Content: what is served before the damage is the file's own bytes.
    let (pack, offset, len) = stream_chunk(&store, 1);
    flip(&pack, offset + len / 2);
    let out = fails(dc(&store).args(["cat", "a", "x.gz"]));
    assert!(
        data.starts_with(&out.stdout),
        "a prefix of the file, no more"
    );
    assert!(out.stdout.len() < data.len());
    let v = fails(dc(&store).args(["verify", "--full"]));
    assert!(String::from_utf8_lossy(&v.stdout).contains("x.gz"));
}

#[test]
fn gc_evicting_one_version_leaves_the_content_another_needs() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let v1 = gzip(&text(40_000, 9, false), 6);
    let v2 = gzip(&text(40_000, 9, true), 6);
    for (name, data) in [("v1", &v1), ("v2", &v2)] {
        let dir = t.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("img.gz"), data);
        ok(dc(&store).args(["put", name]).arg(&dir));
    }
    let conv = String::from_utf8(ok(dc(&store).args(["convert", "--all"]))).unwrap();
    assert_eq!(conv.matches(": converted").count(), 2, "{conv}");
    // Over --max-size, the hot copies go first, then v1 (the least
    // recently used: ties go by age); --keep-last 1 keeps v2.
    let out = String::from_utf8(ok(dc(&store).args([
        "gc",
        "--max-size",
        "1",
        "--keep-last",
        "1",
    ])))
    .unwrap();
    assert!(out.contains("dropped 2 hot copies"), "{out}");
    assert_eq!(form(&store, "v2", "img.gz"), "gzip");
    assert_eq!(names(&json(&ok(dc(&store).args(["ls", "--json"])))), ["v2"]);
    assert!(cat(&store, "v2", "img.gz") == v2);
    verify_full(&store);
}

#[test]
fn rebuild_index_after_conversion_gives_the_same_listing_and_bytes() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let files = put_corpus(t.path(), &store, "a");
    let v2 = gzip(&text(50_000, 2, true), 6);
    let dir = t.path().join("b");
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("img.gz"), &v2);
    ok(dc(&store).args(["put", "b"]).arg(&dir));
    ok(dc(&store).args(["convert", "--all"]));
    // a's files cold, their gz chunks reclaimed; b's hot.
    ok(dc(&store).args(["gc", "--hot-for", "0s"]));
    ok(dc(&store)
        .args(["cat", "b", "img.gz"])
        .stdout(Stdio::null()));
    let before_a = forms(&store, "a");
    let before_b = forms(&store, "b");
    assert!(before_a.iter().any(|(_, f)| f == "gzip"), "{before_a:?}");
    assert_eq!(before_b, [("img.gz".to_owned(), "gzip+hot".to_owned())]);
    // A hot copy is a cache a rebuild keeps iff its chunks are still in
    // the packs: one gc dropped whose pack it did not rewrite comes back
    // hot. Everything else is the same.
    let ls = |a: &str| {
        let mut v = json(&ok(dc(&store).args(["ls", a, "--json"])));
        for f in v.as_array_mut().unwrap() {
            if f["stored"] == "gzip+hot" {
                f["stored"] = "gzip".into();
            }
        }
        v
    };
    let (ls_a, ls_b) = (ls("a"), ls("b"));
    ok(dc(&store).args(["verify", "--rebuild-index"]));
    assert_eq!(ls("a"), ls_a);
    assert_eq!(ls("b"), ls_b);
    assert_eq!(forms(&store, "b"), before_b, "b's gz chunks are all there");
    check_bytes(&store, "a", &files);
    assert!(cat(&store, "b", "img.gz") == v2);
    verify_full(&store);
}

/// gc's checkpoint restates gzip-form files too: a put naming their gz
/// chunks (which a cold file no longer holds), then a `ConvertFile` with
/// their content and side data. Once the records before it are dropped, a
/// rebuild from the checkpoint gives back every file, cold ones included.
/// (Before: the checkpoint's put listed a cold file's `file_chunks`, none,
/// and the rebuild lost it.)
#[test]
fn a_checkpoint_keeps_gzip_form_files_through_a_rebuild() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let files = put_corpus(t.path(), &store, "a");
    // History the checkpoint makes dead, more than it writes.
    for i in 0..6 {
        let name = format!("tmp{i}");
        ok(dc(&store).args(["put", &name]).arg(t.path().join("src-a")));
        ok(dc(&store).args(["rm", &name]));
    }
    ok(dc(&store).args(["convert", "--all"]));
    drop_hot(&store);
    let before = forms(&store, "a");
    assert!(before.iter().any(|(_, f)| f == "gzip"), "{before:?}");
    // Over --max-size with nothing evictable: gc writes a checkpoint and
    // drops every record before it.
    let real = json(&ok(dc(&store).args([
        "gc",
        "--max-size",
        "1",
        "--keep-last",
        "100",
        "--hot-for",
        "100d",
        "--json",
    ])));
    let done = &real["result"]["checkpoint"];
    assert_eq!(done["written"]["artifacts"], 1, "{real}");
    assert_eq!(
        done["written"]["bytes"], real["plan"]["checkpoint"]["bytes"],
        "the plan's estimate counts the convert records"
    );
    assert!(done["packs_unlinked"].as_u64().unwrap() > 0, "{done}");
    let ls = json(&ok(dc(&store).args(["ls", "a", "--json"])));
    let out = String::from_utf8(ok(dc(&store).args(["verify", "--rebuild-index"]))).unwrap();
    assert!(out.contains("replayed from the checkpoint"), "{out}");
    assert_eq!(json(&ok(dc(&store).args(["ls", "a", "--json"]))), ls);
    assert_eq!(forms(&store, "a"), before);
    check_bytes(&store, "a", &files);
    verify_full(&store);
}

/// A binary of git main that writes format-2 stores, if there is one
/// (`DEPLOYCACHE_FORMAT2_BIN`, else main's debug build).
fn format2_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("DEPLOYCACHE_FORMAT2_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/main/target/debug/deploycache"));
    let out = Command::new(&bin).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .contains("store format 2)")
        .then_some(bin)
}

#[test]
fn a_format_2_store_is_migrated_with_every_byte() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let dir = t.path().join("src");
    fs::create_dir_all(&dir).unwrap();
    let data = gzip(&text(40_000, 8, false), 6);
    let plain = random_bytes(200_000, 8);
    write(&dir.join("x.gz"), &data);
    write(&dir.join("p.bin"), &plain);
    match format2_binary() {
        Some(old) => {
            let ok_old = Command::new(old)
                .arg("--store")
                .arg(&store)
                .args(["put", "a"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok_old);
        }
        None => {
            // No format-2 binary here: make this store format 2 by hand,
            // exactly as format 2 was (no form column, no gzip tables).
            ok(dc(&store).args(["put", "a"]).arg(&dir));
            let sql = "ALTER TABLE files DROP COLUMN form; DROP TABLE file_streams;
                       DROP TABLE gzip_chunks; DROP TABLE gzip_tried;
                       UPDATE meta SET value = '2' WHERE key = 'format_version';";
            let st = Command::new("sqlite3")
                .arg(store.join("index.sqlite"))
                .arg(sql)
                .status()
                .unwrap();
            assert!(st.success());
            write(&store.join("FORMAT"), b"deploycache-store 2\n");
        }
    }
    assert_eq!(
        fs::read(store.join("FORMAT")).unwrap(),
        b"deploycache-store 2\n"
    );
    assert_eq!(forms(&store, "a").len(), 2);
    assert_eq!(
        fs::read(store.join("FORMAT")).unwrap(),
        b"deploycache-store 4\n"
    );
    assert!(cat(&store, "a", "x.gz") == data);
    assert!(cat(&store, "a", "p.bin") == plain);
    verify_full(&store);
    ok(dc(&store).args(["convert", "a"]));
    assert_eq!(form(&store, "a", "x.gz"), "gzip+hot");
    drop_hot(&store);
    assert!(cat(&store, "a", "x.gz") == data);
    verify_full(&store);
}

/// gc forgets the conversion verdicts of contents no file holds any more:
/// `gzip_tried` does not grow with every file ever tried.
#[test]
fn gc_forgets_the_verdicts_of_files_that_are_gone() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("store");
    let _ = put_corpus(t.path(), &store, "a");
    ok(dc(&store).args(["convert", "--all"]));
    let tried = || -> i64 {
        let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
        db.query_row("SELECT count(*) FROM gzip_tried", [], |r| r.get(0))
            .unwrap()
    };
    // truncated.gz and plain.txt at least stay as they are.
    assert!(tried() >= 2, "{}", tried());
    ok(dc(&store).args(["gc"]));
    assert!(tried() >= 2, "a's files are still there: {}", tried());
    ok(dc(&store).args(["rm", "a"]));
    ok(dc(&store).args(["gc"]));
    assert_eq!(tried(), 0);
}
