//! Issue 13's stress test with real `scp` through a private sshd, the way
//! the deploy scripts use a mounted cache: uploads into new `<sha>/`
//! directories (the cache-miss flow: `mkdir -p`, then `scp` from the
//! master into it), some of them killed (`kill -9` of the scp client)
//! halfway through a `.gz`, and downloads of committed artifacts out of the
//! mount (the replay flow: `scp C/<sha>/* master:…`) compared byte for byte,
//! while `deploycache gc --max-size <tight>` runs in a loop from another
//! process and the mount's own gc runs beside it.
//!
//! Afterwards: every artifact still listed reads back whole, with exactly
//! its files; every evicted one is gone entirely; a killed upload never
//! became a hit; `verify --full` passes; after a last gc the store is within
//! the limit and `du` agrees with `stats` within 1 %. The test also counts
//! what it exercised (evictions, downloads that overlapped a gc run, killed
//! uploads kept aside), so it cannot pass by testing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::gc_reclaim::du;
use crate::gc_stress::mount_with_gc_every_second;
use crate::mount::{hit, quarantine, start_sshd, verify_full, wait_until, Sshd};

/// Artifacts stored with `put` before the mount: the first downloads.
const SEEDED: u64 = 6;
const UPLOADERS: u64 = 3;
/// Whole uploads per uploader; each uploader also has one killed.
const PER_UPLOADER: u64 = 4;
const DOWNLOADERS: usize = 2;
/// The head every image shares, so evictions leave chunks that other
/// artifacts still hold: gc must keep exactly those.
const HEAD: usize = 768 << 10;
/// Under what the test stores (about 55 MiB), so gc evicts all along; the
/// index and its WAL count in the store's size too (see gc_stress.rs).
const TIGHT: &str = "24M";
const TIGHT_BYTES: u64 = 24 << 20;
/// The image's name: a `.gz`, so that a cut-short one is recognised (its
/// trailer is missing) and kept aside rather than committed.
const IMAGE: &str = "image.img.gz";
const KEY: &str = "id_rsa.pub";

fn name(id: u64) -> String {
    format!("{id:040x}")
}

/// Artifact `id`'s files, as the master holds them: a key, and a gzip'd
/// image of the shared head and 1 to 2.5 MiB of its own. Stored deflate
/// blocks (level 0): the same head gives the same leading bytes in every
/// image, as a real image built from the same packages shares its start.
fn files(id: u64) -> BTreeMap<&'static str, Vec<u8>> {
    let mut raw = random_bytes(HEAD, 7);
    raw.extend(random_bytes(
        (1 << 20) + (id as usize % 4) * (512 << 10) + 12_345,
        id,
    ));
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::none());
    gz.write_all(&raw).unwrap();
    BTreeMap::from([
        (
            KEY,
            format!("ssh-ed25519 AAAA{id} root@master\n").into_bytes(),
        ),
        (IMAGE, gz.finish().unwrap()),
    ])
}

/// Lay out artifact `id`'s files under `dir/<name>/`.
fn lay_out(dir: &Path, id: u64) -> PathBuf {
    let d = dir.join(name(id));
    fs::create_dir_all(&d).unwrap();
    for (f, bytes) in files(id) {
        write(&d.join(f), &bytes);
    }
    d
}

/// What happened, gathered from every thread.
#[derive(Default)]
struct Tally {
    /// Wrong bytes, failed uploads, unexplained scp errors: must stay empty.
    problems: Mutex<Vec<String>>,
    /// Downloads that brought every file of an artifact back whole.
    downloads: AtomicUsize,
    /// When each whole download ran, to count those that overlapped gc.
    download_spans: Mutex<Vec<(Instant, Instant)>>,
    /// Downloads that found their artifact evicted (a miss, as for a deploy).
    misses: AtomicUsize,
    /// When each `deploycache gc` ran, and what it evicted.
    gc_spans: Mutex<Vec<(Instant, Instant)>>,
    gc_evicted: AtomicUsize,
    /// Killed uploads whose image was seen kept aside.
    kept_aside: AtomicUsize,
}

impl Tally {
    fn problem(&self, what: String) {
        self.problems.lock().unwrap().push(what);
    }
}

/// Replay `id` out of the mount into a fresh `dest` on the master, as the
/// deploy scripts do (`scp C/<sha>/* master:dest/`, the glob expanded by
/// the shell), and compare every byte.
fn download(ssh: &Sshd, mp: &Path, id: u64, dest: &Path, tally: &Tally) {
    fs::create_dir_all(dest).unwrap();
    let started = Instant::now();
    let out = ssh
        .scp(&format!(
            "{}/* root@127.0.0.1:{}/",
            mp.join(name(id)).display(),
            dest.display()
        ))
        .output()
        .unwrap();
    let ended = Instant::now();
    let err = String::from_utf8_lossy(&out.stderr);
    // Evicted between the listing and the glob or an open: a miss. Any
    // other failure (an I/O error reading a file already open) is not.
    let missed = !out.status.success();
    if missed
        && err
            .lines()
            .any(|l| !l.contains("No such file or directory"))
    {
        tally.problem(format!("scp of {} out of the mount: {err}", name(id)));
    }
    let want = files(id);
    let mut got = BTreeSet::new();
    for e in fs::read_dir(dest).unwrap().flatten() {
        let f = e.file_name().into_string().unwrap();
        let bytes = fs::read(e.path()).unwrap();
        match want.get(f.as_str()) {
            Some(w) if *w == bytes => {}
            Some(w) => tally.problem(format!(
                "{}/{f} came out of the mount as {} bytes, {} expected, first difference at {:?}",
                name(id),
                bytes.len(),
                w.len(),
                bytes.iter().zip(w).position(|(a, b)| a != b)
            )),
            None => tally.problem(format!("{}/{f}: no such file was stored", name(id))),
        }
        got.insert(f);
    }
    if missed {
        tally.misses.fetch_add(1, Ordering::Relaxed);
    } else if got.len() == want.len() {
        tally.downloads.fetch_add(1, Ordering::Relaxed);
        tally.download_spans.lock().unwrap().push((started, ended));
    } else {
        tally.problem(format!(
            "scp of {} succeeded with {got:?} of {:?}",
            name(id),
            want.keys()
        ));
    }
    fs::remove_dir_all(dest).unwrap();
}

/// The cache-miss flow for `id`: `mkdir -p C/<sha>`, then one `scp` of the
/// master's files into it.
fn upload(ssh: &Sshd, master: &Path, mp: &Path, id: u64, tally: &Tally) -> bool {
    let dir = mp.join(name(id));
    if let Err(e) = fs::create_dir_all(&dir) {
        tally.problem(format!("mkdir -p {}: {e}", dir.display()));
        return false;
    }
    let out = ssh
        .scp(&format!(
            "'root@127.0.0.1:{}/*' {}/",
            master.join(name(id)).display(),
            dir.display()
        ))
        .output()
        .unwrap();
    if !out.status.success() {
        tally.problem(format!(
            "scp into {}: {}",
            name(id),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out.status.success()
}

/// The key whole, then the image through a slow scp killed with `kill -9`
/// once part of it is in: the image must be kept aside, and the artifact
/// must not be a hit.
fn upload_killed(ssh: &Sshd, master: &Path, store: &Path, mp: &Path, id: u64, tally: &Tally) {
    let dir = mp.join(name(id));
    fs::create_dir_all(&dir).unwrap();
    let src = master.join(name(id));
    ssh.scp_ok(&format!(
        "root@127.0.0.1:{}/{KEY} {}/",
        src.display(),
        dir.display()
    ));
    let total = fs::metadata(src.join(IMAGE)).unwrap().len();
    // 16 Mbit/s: the image takes over a second, and is cut a quarter in.
    let mut scp = ssh
        .scp(&format!(
            "-l 16000 root@127.0.0.1:{}/{IMAGE} {}/",
            src.display(),
            dir.display()
        ))
        .spawn()
        .unwrap();
    wait_until(30, "the slow scp to be a quarter in", || {
        fs::metadata(dir.join(IMAGE)).is_ok_and(|m| m.len() > total / 4)
    });
    scp.kill().unwrap(); // SIGKILL: kill -9 of the scp client
    scp.wait().unwrap();
    // Kept aside; unless gc evicted the artifact meanwhile, which drops
    // what it kept aside with it (it is fresh, so that is rare).
    let mut kept = false;
    wait_until(30, "the cut-short image to be kept aside", || {
        kept = quarantine(store)
            .iter()
            .any(|q| q["artifact"] == name(id).as_str() && q["file"] == IMAGE);
        kept || !dir.exists()
    });
    if kept {
        tally.kept_aside.fetch_add(1, Ordering::Relaxed);
    }
    if hit(&dir) {
        tally.problem(format!("{}: a killed upload is a hit", name(id)));
    }
    if dir.join(IMAGE).exists() {
        tally.problem(format!("{}: the cut-short image is visible", name(id)));
    }
}

/// The apparent sizes of the directories under (and of) `dir`.
fn dirs_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn ls(store: &Path) -> Vec<serde_json::Value> {
    json(&ok(dc(store).args(["ls", "--json"])))
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn scp_uploads_downloads_and_kills_stay_correct_while_gc_runs() {
    let started = Instant::now();
    let t = tempfile::tempdir().unwrap();
    let (store, master, mp) = (
        t.path().join("s"),
        t.path().join("master"),
        t.path().join("C"),
    );
    let ssh_dir = t.path().join("ssh");
    fs::create_dir(&ssh_dir).unwrap();
    let ssh = start_sshd(&ssh_dir);
    for id in 0..SEEDED {
        let d = lay_out(&master, id);
        ok(dc(&store).arg("put").arg(name(id)).arg(&d));
    }
    // Uploader u uploads ids 100u+1.. whole, and has 100u+99 killed.
    let uploads: Vec<(Vec<u64>, u64)> = (1..=UPLOADERS)
        .map(|u| {
            (
                (1..=PER_UPLOADER).map(|k| 100 * u + k).collect(),
                100 * u + 99,
            )
        })
        .collect();
    for (whole, killed) in &uploads {
        for id in whole.iter().chain([killed]) {
            lay_out(&master, *id);
        }
    }
    let killed: BTreeSet<u64> = uploads.iter().map(|(_, k)| *k).collect();
    let all: BTreeMap<String, u64> = (0..SEEDED)
        .chain(
            uploads
                .iter()
                .flat_map(|(w, k)| w.iter().copied().chain([*k])),
        )
        .map(|id| (name(id), id))
        .collect();
    // Downloaders replay only what was committed whole.
    let committed: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new((0..SEEDED).collect()));

    let log = t.path().join("mount.log");
    // gc runs every second here (CLI) and at 1 s (the mount's, which lets
    // go of the mount's idle packs itself before each run), so the mount's
    // lanes also let go of their packs after 0.3 s idle rather than 30 s,
    // as a mount with a gc interval of minutes has it: else the packs the
    // mount writes stay held from `deploycache gc`, which, within the
    // limit on paper once their dead bytes go, can neither reclaim them
    // nor needs to evict.
    let m = mount_with_gc_every_second(
        &store,
        &mp,
        &log,
        TIGHT,
        &[("DEPLOYCACHE_IDLE_RETIRE_MS", "300")],
    );
    let (ssh, tally, stop) = (
        Arc::new(ssh),
        Arc::new(Tally::default()),
        Arc::new(AtomicBool::new(false)),
    );

    let gc_loop = {
        let (store, tally, stop) = (store.clone(), tally.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let out = json(&ok(dc(&store).args(["gc", "--max-size", TIGHT, "--json"])));
                tally.gc_spans.lock().unwrap().push((t0, Instant::now()));
                let n = out["result"]["evicted"].as_array().map_or(0, Vec::len);
                tally.gc_evicted.fetch_add(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let downloaders: Vec<_> = (0..DOWNLOADERS)
        .map(|d| {
            let (ssh, mp, tally, stop, committed) = (
                ssh.clone(),
                mp.clone(),
                tally.clone(),
                stop.clone(),
                committed.clone(),
            );
            let dest = t.path().join(format!("replay{d}"));
            std::thread::spawn(move || {
                let mut k = d;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<u64> = committed.lock().unwrap().iter().copied().collect();
                    // Newest and oldest alike, in turn: some still there,
                    // some evicted a moment ago.
                    let id = ids[k % ids.len()];
                    k += 1;
                    download(&ssh, &mp, id, &dest, &tally);
                }
            })
        })
        .collect();
    let uploaders: Vec<_> = uploads
        .iter()
        .cloned()
        .map(|(whole, kill)| {
            let (ssh, master, store, mp, tally, committed) = (
                ssh.clone(),
                master.clone(),
                store.clone(),
                mp.clone(),
                tally.clone(),
                committed.clone(),
            );
            std::thread::spawn(move || {
                for (i, id) in whole.into_iter().enumerate() {
                    if i == 1 {
                        upload_killed(&ssh, &master, &store, &mp, kill, &tally);
                    }
                    if upload(&ssh, &master, &mp, id, &tally) {
                        committed.lock().unwrap().insert(id);
                    }
                }
            })
        })
        .collect();
    for u in uploaders {
        u.join().unwrap();
    }
    // Replays and gc go on a little past the last upload.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for d in downloaders {
        d.join().unwrap();
    }
    gc_loop.join().unwrap();
    m.unmount();

    let overlapping = {
        let gcs = tally.gc_spans.lock().unwrap();
        let downloads = tally.download_spans.lock().unwrap();
        downloads
            .iter()
            .filter(|(a, b)| gcs.iter().any(|(c, d)| a < d && c < b))
            .count()
    };
    let log = fs::read_to_string(&log).unwrap();
    // The mount's log, whole, where a failure below can be read beside it
    // (a panic message keeps only its head in CI's excerpt).
    eprintln!("the mount's log:\n{log}");
    let mount_runs = log.lines().filter(|l| l.contains("gc: evicted")).count();
    // "gc: evicted N artifacts (…": what the mount's own gc evicted, in all.
    let mount_evicted: usize = log
        .lines()
        .filter_map(|l| {
            l.split("gc: evicted ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    let cli_evicted = tally.gc_evicted.load(Ordering::Relaxed);
    eprintln!(
        "gc over scp: {} whole downloads ({overlapping} overlapping a `deploycache gc`), {} misses, \
         {} `deploycache gc` runs evicting {cli_evicted}, {mount_runs} runs of the mount's gc \
         evicting {mount_evicted}, {:?} of load",
        tally.downloads.load(Ordering::Relaxed),
        tally.misses.load(Ordering::Relaxed),
        tally.gc_spans.lock().unwrap().len(),
        started.elapsed()
    );
    let problems = tally.problems.lock().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        !log.contains("gc: failed"),
        "the mount's gc failed (its log is above)"
    );
    assert!(
        mount_runs >= 2,
        "the mount's own gc ran {mount_runs} times (its log is above)"
    );

    // Not vacuous: gc evicted (the mount's own gc, triggered by commits
    // past the limit, usually gets there first), and replays ran while
    // `deploycache gc` did.
    assert!(
        cli_evicted + mount_evicted >= 2,
        "gc hardly evicted anything: {cli_evicted} artifacts by `deploycache gc`, \
         {mount_evicted} by the mount's"
    );
    assert!(
        tally.kept_aside.load(Ordering::Relaxed) >= 1,
        "no killed upload was seen kept aside"
    );
    assert!(
        overlapping >= 5,
        "only {overlapping} whole downloads overlapped a `deploycache gc` run"
    );

    // Every artifact listed is whole, with exactly its files, except a
    // killed upload's, which lacks its image; every other one is gone.
    let listed: BTreeMap<String, serde_json::Value> = ls(&store)
        .into_iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a))
        .collect();
    assert!(
        !listed.is_empty() && listed.len() < all.len(),
        "{} of {} artifacts left",
        listed.len(),
        all.len()
    );
    for (n, &id) in &all {
        let cat = |f: &str| dc(&store).args(["cat", n, f]).output().unwrap();
        match listed.get(n) {
            Some(a) if killed.contains(&id) => {
                assert_eq!(a["missing"], serde_json::json!([IMAGE]), "{a}");
                assert!(
                    !cat(IMAGE).status.success(),
                    "{n}: the cut-short image reads"
                );
            }
            Some(a) => {
                assert_eq!(a["missing"], serde_json::json!([]), "{a}");
                let in_store = json(&ok(dc(&store).args(["ls", n, "--json"])));
                assert_eq!(
                    names(&in_store),
                    files(id).keys().copied().collect::<Vec<_>>(),
                    "{n}"
                );
                for (f, want) in files(id) {
                    let out = cat(f);
                    assert!(
                        out.status.success() && out.stdout == want,
                        "{n}/{f} listed but does not read back whole ({} of {} bytes): {}",
                        out.stdout.len(),
                        want.len(),
                        stderr(&out)
                    );
                }
            }
            None => {
                for f in files(id).keys() {
                    let out = cat(f);
                    assert!(
                        !out.status.success() && out.stdout.is_empty(),
                        "{n} was evicted but {f} still reads ({} bytes)",
                        out.stdout.len()
                    );
                }
            }
        }
    }
    verify_full(&store);

    // A last gc: the store is within the limit, and the filesystem agrees
    // with stats. The daemon may still be closing its store after the
    // unmount (its lanes' packs flocked, their tails being cut): gc leaves
    // such packs for a rerun, so it runs again until it can finish (on a
    // loaded machine, a second or two).
    let mut last = String::new();
    for _ in 0..40 {
        ok(dc(&store).args(["gc", "--max-size", TIGHT]));
        let st = json(&ok(dc(&store).args(["stats", "--json"])));
        let said = st["stored_bytes"].as_u64().unwrap() + st["index_bytes"].as_u64().unwrap();
        // du -sb, less its directories' own sizes: this store is small
        // (24 MiB), and the up to 256 `packs/<2 hex>/` directories' 4 KiB
        // each are over 1 % of it (nothing of a store of real size).
        let on_disk = du(&store) - dirs_bytes(&store);
        if on_disk.abs_diff(said) * 100 <= said && said <= TIGHT_BYTES {
            last.clear();
            break;
        }
        last = format!("du {on_disk} vs stats {said} (limit {TIGHT}): {st}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(last.is_empty(), "after 40 gc runs: {last}");
    verify_full(&store);
}
