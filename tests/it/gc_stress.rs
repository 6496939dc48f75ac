//! gc under load: on a mounted store, readers compare every byte they read
//! and scp-like writers store new artifacts, while `deploycache gc
//! --max-size <tight>` runs again and again from another process and the
//! mount's own gc (`--gc-max-size`, `--gc-interval 1s`) runs beside it.
//! Afterwards every artifact that survived reads back whole, `verify
//! --full` passes, no writer failed and no reader saw a wrong byte.
//!
//! Every file is a shared 256 KiB head and a tail of its own, so evictions
//! leave chunks other artifacts still hold: gc must keep exactly those.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::mount::Mounted;

const WRITERS: u64 = 3;
const READERS: usize = 3;
/// Artifacts each writer stores.
const PER_WRITER: u64 = 20;
/// Artifacts stored with `put` before the mount.
const SEEDED: u64 = 8;
const HEAD: usize = 256 << 10;
/// Well under what the test stores (~100 MiB): gc has to evict most of it.
/// Not tighter: the index, WAL included, counts in the store's size, and
/// under this load its WAL grows to about 14 MB before a checkpoint
/// (measured); a limit under that would leave no artifact standing.
const TIGHT: &str = "32M";

/// The name of artifact `id` (a fingerprint, as the deploy scripts name them).
fn name(id: u64) -> String {
    format!("{id:040x}")
}

/// The content of artifact `id`'s one file: the shared head, then its own
/// 0.5 to 2.5 MiB (not a multiple of any block size).
fn content(id: u64) -> Vec<u8> {
    let mut v = random_bytes(HEAD, 7);
    v.extend(random_bytes(
        (512 << 10) + (id as usize % 5) * (400 << 10) + 12_345,
        id,
    ));
    v
}

/// Store `data` as `path` as scp does: create, sequential writes, ftruncate
/// to the full size, close (whose errors a commit reports).
fn scp_like(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    for block in data.chunks(64 << 10) {
        f.write_all(block)?;
    }
    f.set_len(data.len() as u64)?;
    f.sync_all()?;
    drop(f);
    Ok(())
}

/// What the readers saw.
#[derive(Default)]
struct Seen {
    /// Files read to the end with every byte right.
    whole: AtomicUsize,
    /// Wrong bytes or read errors after a successful open: must stay empty.
    wrong: Mutex<Vec<String>>,
}

/// Read every artifact listed at `mp`, compare it with its content.
fn read_all(mp: &Path, seen: &Seen, ids: &BTreeMap<String, u64>) {
    let Ok(dir) = fs::read_dir(mp) else { return };
    for e in dir.flatten() {
        let n = e.file_name().into_string().unwrap();
        let Some(&id) = ids.get(&n) else { continue };
        // Evicted between the listing and the open: a miss, as for a deploy.
        let Ok(mut f) = fs::File::open(mp.join(&n).join("file")) else {
            continue;
        };
        let want = content(id);
        let mut got = Vec::new();
        // Slow enough that gc evicts some artifacts while they are open.
        let mut buf = vec![0; 256 << 10];
        let res = loop {
            match f.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(k) => {
                    got.extend_from_slice(&buf[..k]);
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => break Err(e),
            }
        };
        match res {
            Ok(()) if got == want => {
                seen.whole.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => seen.wrong.lock().unwrap().push(format!(
                "{n}: read {} bytes, {} expected, first difference at {:?}",
                got.len(),
                want.len(),
                got.iter().zip(&want).position(|(a, b)| a != b)
            )),
            Err(e) => seen
                .wrong
                .lock()
                .unwrap()
                .push(format!("{n}: read failed after open: {e}")),
        }
    }
}

/// `store` mounted at `mp` as a daemon logging to `log`, its own gc
/// keeping it within `max_size`, checked every second (the stress tests'
/// mount; `env` for the daemon).
pub(crate) fn mount_with_gc_every_second(
    store: &Path,
    mp: &Path,
    log: &Path,
    max_size: &str,
    env: &[(&str, &str)],
) -> Mounted {
    Mounted::daemon_env(
        store,
        mp,
        &[
            "--log",
            log.to_str().unwrap(),
            "--gc-max-size",
            max_size,
            "--gc-interval",
            "1s",
        ],
        env,
    )
}

fn ls(store: &Path) -> Vec<String> {
    names(&json(&ok(dc(store).args(["ls", "--json"]))))
}

#[test]
fn readers_and_writers_stay_correct_while_gc_runs_again_and_again() {
    let started = Instant::now();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let mut ids = BTreeMap::new();
    for id in 0..SEEDED {
        let d = t.path().join("src").join(name(id));
        fs::create_dir_all(&d).unwrap();
        write(&d.join("file"), &content(id));
        ok(dc(&store).arg("put").arg(name(id)).arg(&d));
        ids.insert(name(id), id);
    }
    let writer_ids: Vec<Vec<u64>> = (0..WRITERS)
        .map(|w| (0..PER_WRITER).map(|k| 1000 * (w + 1) + k).collect())
        .collect();
    for id in writer_ids.iter().flatten() {
        ids.insert(name(*id), *id);
    }
    let ids = Arc::new(ids);

    let mp = t.path().join("mnt");
    let log = t.path().join("mount.log");
    let m = mount_with_gc_every_second(&store, &mp, &log, TIGHT, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (mp, seen, ids, stop) = (mp.clone(), seen.clone(), ids.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    read_all(&mp, &seen, &ids);
                }
            })
        })
        .collect();
    let gc_runs = Arc::new(AtomicUsize::new(0));
    let gc_loop = {
        let (store, stop, runs) = (store.clone(), stop.clone(), gc_runs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                ok(dc(&store).args(["gc", "--max-size", TIGHT]));
                runs.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let writers: Vec<_> = writer_ids
        .iter()
        .cloned()
        .map(|mine| {
            let mp: PathBuf = mp.clone();
            std::thread::spawn(move || -> Result<(), String> {
                for id in mine {
                    let dir = mp.join(name(id));
                    fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", name(id)))?;
                    scp_like(&dir.join("file"), &content(id))
                        .map_err(|e| format!("writing {}: {e}", name(id)))?;
                }
                Ok(())
            })
        })
        .collect();
    let failed: Vec<String> = writers
        .into_iter()
        .filter_map(|w| w.join().unwrap().err())
        .collect();
    // Let gc and the readers go on a little past the last write.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    gc_loop.join().unwrap();
    m.unmount();
    eprintln!(
        "gc stress: {} files read whole, {} `deploycache gc` runs, {:?} of load",
        seen.whole.load(Ordering::Relaxed),
        gc_runs.load(Ordering::Relaxed),
        started.elapsed()
    );

    assert!(failed.is_empty(), "writers failed: {failed:?}");
    let wrong = seen.wrong.lock().unwrap();
    assert!(
        wrong.is_empty(),
        "readers saw wrong bytes or errors: {wrong:?}"
    );
    assert!(
        seen.whole.load(Ordering::Relaxed) > 0,
        "the readers read nothing whole: the test tested nothing"
    );
    assert!(
        gc_runs.load(Ordering::Relaxed) >= 3,
        "`deploycache gc` ran only {} times",
        gc_runs.load(Ordering::Relaxed)
    );
    let log = fs::read_to_string(&log).unwrap();
    let mount_runs = log.lines().filter(|l| l.contains("gc: evicted")).count();
    assert!(
        mount_runs >= 2,
        "the mount's own gc ran {mount_runs} times:\n{log}"
    );
    assert!(!log.contains("gc: failed"), "{log}");

    // gc kept the store within the limit: most of what was stored is gone,
    // what survived reads back whole, and the store checks out.
    let left = ls(&store);
    assert!(
        !left.is_empty() && left.len() < ids.len() / 2,
        "{} of {} artifacts left: gc did not keep the store tight\n{}",
        left.len(),
        ids.len(),
        String::from_utf8_lossy(&ok(dc(&store).args(["stats"])))
    );
    for n in &left {
        let id = ids[n];
        assert_eq!(
            ok(dc(&store).args(["cat", n, "file"])),
            content(id),
            "{n} survived gc but does not read back whole"
        );
    }
    ok(dc(&store).args(["verify", "--full"]));
    // A last gc after the load: nothing is left over the limit to evict
    // (the store fits), and it still verifies.
    ok(dc(&store).args(["gc", "--max-size", TIGHT]));
    ok(dc(&store).args(["verify", "--full"]));
}

/// The mount's gc options fail as usage errors (exit 2, naming the option)
/// before anything is mounted, and `--gc-interval` alone is refused rather
/// than silently running no gc.
#[test]
fn bad_mount_gc_options_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let mp = t.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    for (args, says) in [
        (
            &["--gc-max-size", "lots"][..],
            "--gc-max-size: \"lots\" is not a size",
        ),
        (
            &["--gc-older-than", "7"],
            "--gc-older-than: \"7\" is not a duration",
        ),
        (
            &["--gc-max-size", "1G", "--gc-interval", "0s"],
            "--gc-interval: give a duration above zero",
        ),
        (
            &["--gc-interval", "5m"],
            "--gc-interval: the mount runs gc only with a limit",
        ),
    ] {
        let o = fails(dc(&store).arg("mount").arg(&mp).args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(!deploycache::fuse::is_mounted(&mp));
    }
}
