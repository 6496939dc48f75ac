//! gc (phase 1: eviction by policy, quarantine expiry) and the stats that
//! add up. Most tests drive the library in-process (no root); the CLI ones
//! run the binary; the use-tracking one mounts for real.
//!
//! Expected figures come from the tests' own content: random data does not
//! compress (its chunks are stored raw) and chunks of different random
//! files never coincide, so what two artifacts share is exactly the files
//! they both hold.

use std::fs;
use std::path::{Path, PathBuf};

use deploycache::index::PENDING;
use deploycache::store::gc::{GcPlan, HeldBy, Policy, Reason, Scope};
use deploycache::store::{OpenOptions, Store};
use tempfile::TempDir;

use crate::common::*;

const MIB: u64 = 1 << 20;
const HEADER: u64 = deploycache::pack::RECORD_HEADER_LEN as u64;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn open(store: &Path, ns: &str) -> Store {
    Store::open(
        store,
        OpenOptions {
            create: true,
            namespace: ns.to_owned(),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Files named `name` with the given content, in a directory of their own.
pub(crate) fn files(t: &TempDir, dir: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let d = t.path().join("src").join(dir);
    fs::create_dir_all(&d).unwrap();
    for (name, data) in files {
        write(&d.join(name), data);
    }
    d
}

pub(crate) fn put(s: &Store, t: &TempDir, name: &str, content: &[(&str, &[u8])]) {
    let d = files(t, &format!("{}-{name}", s.namespace()), content);
    s.put(name, &[d], None, false).unwrap();
}

fn db(store: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(store.join("index.sqlite")).unwrap()
}

/// Set an artifact's last use, as if it had been used then.
pub(crate) fn set_last_access(store: &Path, ns: &str, name: &str, t: i64) {
    let n = db(store)
        .execute(
            "UPDATE artifacts SET last_access = ?3 WHERE namespace = ?1 AND name = ?2",
            rusqlite::params![ns, name, t],
        )
        .unwrap();
    assert_eq!(n, 1, "no artifact {ns}:{name}");
}

fn last_access(store: &Path, ns: &str, name: &str) -> i64 {
    db(store)
        .query_row(
            "SELECT last_access FROM artifacts WHERE namespace = ?1 AND name = ?2",
            rusqlite::params![ns, name],
            |r| r.get(0),
        )
        .unwrap()
}

fn names(s: &Store) -> Vec<String> {
    s.list().unwrap().into_iter().map(|a| a.name).collect()
}

fn evicted(p: &GcPlan) -> Vec<String> {
    p.evict.iter().map(|e| e.name.clone()).collect()
}

fn policy() -> Policy {
    Policy::none(Scope::Namespace(String::new()))
}

#[test]
fn stats_and_ls_reconcile_on_known_shared_content() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let (x, y, z) = (
        random_bytes(MIB as usize, 1),
        random_bytes(2 * MIB as usize, 2),
        random_bytes(3 * MIB as usize, 3),
    );
    {
        let s = open(&store, "");
        put(&s, &t, "a", &[("x", &x)]);
        put(&s, &t, "b", &[("x", &x), ("y", &y)]);
        put(&s, &t, "c", &[("y", &y), ("z", &z)]);
        put(&open(&store, "other"), &t, "d", &[("x", &x)]);
    }
    // Per artifact: a and b share x, b and c share y (and d, elsewhere, x).
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    let want = [("a", 0, MIB), ("b", 0, 3 * MIB), ("c", 3 * MIB, 2 * MIB)];
    for (a, (name, unique, shared)) in ls.as_array().unwrap().iter().zip(want) {
        assert_eq!(a["name"], name, "{ls}");
        assert_eq!(a["unique_bytes"], unique, "{a}");
        assert_eq!(a["shared_bytes"], shared, "{a}");
        // Random data is stored raw.
        assert_eq!(a["unique_stored_bytes"], unique, "{a}");
        assert_eq!(a["shared_stored_bytes"], shared, "{a}");
    }
    let human = String::from_utf8(ok(dc(&store).arg("ls"))).unwrap();
    let row_c = human.lines().find(|l| l.starts_with("c ")).unwrap();
    assert!(
        row_c.contains("3.00 MiB") && row_c.contains("2.00 MiB"),
        "{human}"
    );

    // The store: 6 MiB held; unique (c's z) + shared (x, y once each).
    let s = json(&ok(dc(&store).args([
        "stats",
        "--json",
        "--by",
        "namespace",
    ])));
    assert_eq!(s["held_bytes"], 6 * MIB, "{s}");
    assert_eq!(
        s["unique_bytes"],
        6 * MIB,
        "the old key keeps its meaning: {s}"
    );
    assert_eq!(s["artifact_unique_bytes"], 3 * MIB, "{s}");
    assert_eq!(s["shared_bytes"], 3 * MIB, "{s}");
    assert_eq!(s["held_stored_bytes"], 6 * MIB, "{s}");
    assert_eq!(s["compressed_bytes"], 6 * MIB, "{s}");
    assert_eq!(s["logical_bytes"], 10 * MIB, "a 1 + b 3 + c 5 + d 1: {s}");
    assert_eq!(s["reclaimable_bytes"], 0, "nothing dropped yet: {s}");
    let by = s["by_namespace"].as_array().unwrap();
    assert_eq!(by.len(), 2, "{s}");
    let (default, other) = (&by[0], &by[1]);
    assert_eq!(default["namespace"], "");
    assert_eq!(default["artifacts"], 3);
    assert_eq!(default["logical_bytes"], 9 * MIB);
    assert_eq!(default["held_bytes"], 6 * MIB);
    assert_eq!(default["artifact_unique_bytes"], 3 * MIB);
    assert_eq!(default["shared_bytes"], 3 * MIB);
    assert_eq!(other["namespace"], "other");
    assert_eq!(other["held_bytes"], MIB);
    assert_eq!(other["artifact_unique_bytes"], 0);
    assert_eq!(other["shared_bytes"], MIB);
    assert!(
        (default["dedupe_ratio"].as_f64().unwrap() - 1.5).abs() < 1e-9,
        "{s}"
    );

    let human = String::from_utf8(ok(dc(&store).args(["stats", "--by", "namespace"]))).unwrap();
    let line = |start: &str| {
        human
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line in {human}"))
            .to_owned()
    };
    assert!(line("held ").contains("6.00 MiB"), "{human}");
    assert!(line("only one holds").contains("3.00 MiB"), "{human}");
    assert!(line("shared").contains("3.00 MiB"), "{human}");
    assert!(line("namespace other:").contains("1 artifact,"), "{human}");

    // Dropping c makes z reclaimable (y is still b's): pack bytes stay.
    ok(dc(&store).args(["rm", "c"]));
    let after = json(&ok(dc(&store).args(["stats", "--json"])));
    assert_eq!(after["held_bytes"], 3 * MIB, "x and y: {after}");
    assert_eq!(
        after["artifact_unique_bytes"],
        2 * MIB,
        "b now holds y alone: {after}"
    );
    assert_eq!(after["shared_bytes"], MIB, "x only: {after}");
    let reclaimable = after["reclaimable_bytes"].as_u64().unwrap();
    let z_chunks = after["unreferenced_chunks"].as_u64().unwrap();
    assert_eq!(reclaimable, 3 * MIB + z_chunks * HEADER, "{after}");
}

#[test]
fn max_size_evicts_least_recently_used_first_and_dry_run_is_what_runs() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    {
        let s = open(&store, "");
        for (i, name) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
            put(
                &s,
                &t,
                name,
                &[("f", &random_bytes(MIB as usize, 10 + i as u64))],
            );
        }
    }
    let n = now();
    for (name, days) in [("a1", 1), ("a2", 4), ("a3", 2), ("a4", 3)] {
        set_last_access(&store, "", name, n - days * 86_400);
    }
    // Room for a little over two of them: a2 then a4 go.
    let st = json(&ok(dc(&store).args(["stats", "--json"])));
    let size = st["live_pack_bytes"].as_u64().unwrap() + st["index_bytes"].as_u64().unwrap();
    let max = (size - 3 * MIB / 2).to_string();
    let dry = json(&ok(dc(&store).args([
        "gc",
        "--max-size",
        &max,
        "--dry-run",
        "--json",
    ])));
    let plan = &dry["plan"];
    let planned: Vec<&str> = plan["evict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["a2", "a4"], "{dry}");
    assert!(dry["result"].is_null());
    assert_eq!(
        names(&open(&store, "")),
        ["a1", "a2", "a3", "a4"],
        "dry run changed nothing"
    );

    let real = json(&ok(dc(&store).args(["gc", "--max-size", &max, "--json"])));
    let without_time = |p: &serde_json::Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("now");
        p
    };
    assert_eq!(
        without_time(&real["plan"]),
        without_time(plan),
        "the run's plan is the dry run's"
    );
    assert_eq!(real["result"]["evicted"], plan["evict"]);
    assert_eq!(real["result"]["skipped"], serde_json::json!([]));
    assert_eq!(names(&open(&store, "")), ["a1", "a3"]);
    // What lost its last reference (a2's and a4's chunks, in packs of
    // their own) went back to the filesystem: the plan's figures are the
    // run's.
    let after = json(&ok(dc(&store).args(["stats", "--json"])));
    let unref = plan["reclaim"]["bytes"].as_u64().unwrap();
    assert!(
        (2 * MIB..2 * MIB + 100 * HEADER).contains(&unref),
        "{unref}"
    );
    assert_eq!(after["unreferenced_chunks"], 0, "{after}");
    assert_eq!(after["reclaimable_bytes"], 0, "{after}");
    let packs = &real["result"]["packs"];
    assert_eq!(packs["packs_unlinked"], 2, "{real}");
    assert_eq!(
        packs["freed_bytes"], plan["reclaim"]["packs"]["freed_bytes"],
        "{real}"
    );
    // The pack bytes gone are those freed, less the evictions' manifest
    // records.
    let v = |j: &serde_json::Value, k: &str| j[k].as_u64().unwrap();
    assert_eq!(
        v(&st, "stored_bytes") - v(&after, "stored_bytes")
            + (v(&after, "manifest_bytes") - v(&st, "manifest_bytes")),
        v(packs, "freed_bytes"),
        "{after}"
    );
    assert_eq!(plan["max_size_met"], true);
    assert!(real["result"]["size_after_reclaim"].as_u64().unwrap() <= max.parse::<u64>().unwrap());
    // refs stay exact: verify checks them.
    ok(dc(&store).arg("verify"));
    // Human form names each and why.
    let out =
        String::from_utf8(ok(dc(&store).args(["gc", "--max-size", "1", "--dry-run"]))).unwrap();
    assert!(
        out.contains("evict   a1:") && out.contains("store over --max-size"),
        "{out}"
    );
    let (a3, a1) = (
        out.find("evict   a3:").unwrap(),
        out.find("evict   a1:").unwrap(),
    );
    assert!(a3 < a1, "least recently used first: {out}");
}

#[test]
fn older_than_and_keep_last_per_namespace_combine() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let (s, other) = (open(&store, ""), open(&store, "other"));
    for (i, name) in ["a1", "a2", "a3"].iter().enumerate() {
        put(
            &s,
            &t,
            name,
            &[("f", &random_bytes(100_000, 20 + i as u64))],
        );
        put(
            &other,
            &t,
            name,
            &[("f", &random_bytes(100_000, 30 + i as u64))],
        );
    }
    let n = now();
    for (i, name) in ["a1", "a2", "a3"].iter().enumerate() {
        set_last_access(&store, "", name, n - 3600 * (i as i64 + 2));
        set_last_access(&store, "other", name, n - 3600 * (i as i64 + 2));
    }
    // Older than 150 min: a2 (3 h) and a3 (4 h) of both; keep-last 2 holds
    // a1 and a2 of each namespace.
    let p = Policy {
        older_than: Some(150 * 60),
        keep_last: Some(2),
        scope: Scope::AllNamespaces,
        ..policy()
    };
    let plan = s.gc_plan(&p).unwrap();
    let got: Vec<(String, String, Reason)> = plan
        .evict
        .iter()
        .map(|e| (e.namespace.clone(), e.name.clone(), e.reason))
        .collect();
    let want = [("", "a3"), ("other", "a3")];
    assert_eq!(got.len(), 2, "{got:?}");
    for (ns, name) in want {
        assert!(
            got.contains(&(ns.into(), name.into(), Reason::OlderThan)),
            "{got:?}"
        );
    }
    assert_eq!(plan.held.len(), 2);
    assert!(plan
        .held
        .iter()
        .all(|h| h.name == "a2" && h.why == HeldBy::KeepLast));
    let done = s.gc_run(&plan).unwrap();
    assert_eq!(done.evicted.len(), 2);
    assert_eq!(names(&s), ["a1", "a2"]);
    assert_eq!(names(&other), ["a1", "a2"]);

    // Without --all-namespaces, only the store's namespace is considered.
    let plan = other
        .gc_plan(&Policy {
            older_than: Some(0),
            ..policy()
        })
        .unwrap();
    assert!(
        plan.evict.iter().all(|e| e.namespace.is_empty()),
        "{plan:?}"
    );
    assert_eq!(evicted(&plan), ["a2", "a1"]);
}

#[test]
fn an_artifact_being_written_is_never_evicted_nor_its_pending_row_dropped() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    let s = open(&store, "");
    put(&s, &t, "old", &[("f", &random_bytes(100_000, 40))]);
    put(&s, &t, "older", &[("f", &random_bytes(100_000, 41))]);
    set_last_access(&store, "", "old", now() - 7200);
    set_last_access(&store, "", "older", now() - 9000);
    let reason = format!("{PENDING} (pid 1)");
    s.begin_pending("older", "image.gz", &reason).unwrap();
    let p = Policy {
        older_than: Some(3600),
        max_size: Some(0),
        ..policy()
    };
    let plan = s.gc_plan(&p).unwrap();
    assert_eq!(evicted(&plan), ["old"]);
    assert_eq!(plan.held[0].name, "older");
    assert_eq!(plan.held[0].why, HeldBy::BeingWritten);

    // A write that starts between the plan and its execution stops the
    // eviction inside its transaction.
    put(&s, &t, "racing", &[("f", &random_bytes(100_000, 42))]);
    set_last_access(&store, "", "racing", now() - 86_400);
    let plan = s.gc_plan(&p).unwrap();
    assert_eq!(evicted(&plan), ["racing", "old"]);
    s.begin_pending("racing", "image.gz", &reason).unwrap();
    let done = s.gc_run(&plan).unwrap();
    assert_eq!(done.evicted.len(), 1, "{done:?}");
    assert_eq!(done.skipped[0].name, "racing");
    assert_eq!(names(&s), ["older", "racing"]);
    assert!(s.has_pending("older", PENDING).unwrap());
    assert!(s.has_pending("racing", PENDING).unwrap());
    // Quarantine expiry leaves pending rows alone too, however old.
    db(&store)
        .execute(
            "UPDATE files SET committed = committed - 200000 WHERE quarantine IS NOT NULL",
            [],
        )
        .unwrap();
    let plan = s.gc_plan(&policy()).unwrap();
    assert!(plan.expire.is_empty(), "{plan:?}");

    // An artifact used since the plan is not evicted either.
    for (id, _, _) in s.pending_rows(PENDING).unwrap() {
        s.end_pending(id, None).unwrap();
    }
    let plan = s
        .gc_plan(&Policy {
            older_than: Some(0),
            ..policy()
        })
        .unwrap();
    assert_eq!(evicted(&plan), ["racing", "older"]);
    s.touch("older").unwrap();
    let done = s.gc_run(&plan).unwrap();
    let done: Vec<&str> = done.evicted.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(done, ["racing"]);
    assert_eq!(names(&s), ["older"]);
}

#[test]
fn quarantined_files_expire_after_a_day_with_the_artifact_they_leave_incomplete() {
    let t = TempDir::new().unwrap();
    let (store, cache) = (t.path().join("s"), t.path().join("cache"));
    let tar = t.path().join("b.tar");
    crate::mount::make_tar(t.path(), &tar, 1, 50);
    let tar_bytes = fs::read(&tar).unwrap();
    let cut = cache.join("cut");
    fs::create_dir_all(&cut).unwrap();
    write(&cut.join("id_rsa.pub"), b"ssh-rsa CCCC");
    write(
        &cut.join("opnfv-bootstraps-cache.tar"),
        &tar_bytes[..tar_bytes.len() / 2],
    );
    let whole = cache.join("whole");
    fs::create_dir_all(&whole).unwrap();
    write(&whole.join("opnfv-bootstraps-cache.tar"), &tar_bytes);
    ok(dc(&store).arg("import").arg(&cache));
    let q = json(&ok(dc(&store).args(["ls", "--quarantine", "--json"])));
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");

    // Kept aside just now: stays.
    let out = json(&ok(dc(&store).args(["gc", "--json"])));
    assert_eq!(out["plan"]["expire"], serde_json::json!([]), "{out}");
    // Kept aside two days ago: goes, and its artifact with it.
    db(&store)
        .execute(
            "UPDATE files SET committed = committed - 172800 WHERE quarantine IS NOT NULL",
            [],
        )
        .unwrap();
    let out = json(&ok(dc(&store).args(["gc", "--json"])));
    let done = &out["result"]["expired"];
    assert_eq!(done.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(done[0]["artifact"], "cut");
    assert_eq!(done[0]["whole_artifact"], true);
    assert_eq!(done[0]["bytes"], tar_bytes.len() / 2);
    let ls = json(&ok(dc(&store).args(["ls", "--json"])));
    assert_eq!(crate::common::names(&ls), ["whole"]);
    let q = json(&ok(dc(&store).args(["ls", "--quarantine", "--json"])));
    assert_eq!(q, serde_json::json!([]));
    ok(dc(&store).arg("verify"));
}

#[test]
fn policy_values_that_do_not_parse_are_usage_errors() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    ok(dc(&store).arg("init"));
    for args in [["--max-size", "lots"], ["--older-than", "7"]] {
        let o = fails(dc(&store).arg("gc").args(args));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(args[0]), "{}", stderr(&o));
    }
    // Units: 1.5TiB is far above an empty store: nothing goes.
    let out = String::from_utf8(ok(dc(&store).args([
        "gc",
        "--max-size",
        "1.5TiB",
        "--older-than",
        "7d",
    ])))
    .unwrap();
    assert!(
        out.contains("--max-size 1.50 TiB") && out.contains("--older-than 7days"),
        "{out}"
    );
    assert!(out.contains("nothing to evict"), "{out}");
}

#[test]
fn cat_export_and_noted_uses_move_last_access() {
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    {
        let s = open(&store, "");
        put(&s, &t, "a", &[("f", b"hello")]);
        put(&s, &t, "b", &[("f", b"world")]);
    }
    let long_ago = now() - 86_400;
    set_last_access(&store, "", "a", long_ago);
    assert_eq!(ok(dc(&store).args(["cat", "a", "f"])), b"hello");
    assert!(last_access(&store, "", "a") >= now() - 5);
    set_last_access(&store, "", "a", long_ago);
    ok(dc(&store).args(["export", "a"]).arg(t.path().join("out")));
    assert!(last_access(&store, "", "a") >= now() - 5);

    // note_use: the first use is written at once, a second within the
    // interval waits for the store's drop.
    set_last_access(&store, "", "a", long_ago);
    set_last_access(&store, "", "b", long_ago);
    let s = open(&store, "");
    s.note_use("a").unwrap();
    assert!(last_access(&store, "", "a") >= now() - 5);
    set_last_access(&store, "", "a", long_ago);
    s.note_use("a").unwrap();
    assert_eq!(last_access(&store, "", "a"), long_ago, "coalesced");
    drop(s);
    assert!(last_access(&store, "", "a") >= now() - 5, "written on drop");
    assert_eq!(last_access(&store, "", "b"), long_ago);
}

/// A use through the mount: a lookup of `<sha>/` (the hit test), a listing
/// of it, opening a file of it for reading. Needs the view to call
/// `Store::note_use` (the lead adds those lines with the merge).
#[test]
fn a_use_through_the_mount_moves_last_access() {
    use crate::mount::Mounted;
    let t = TempDir::new().unwrap();
    let store = t.path().join("s");
    {
        let s = open(&store, "");
        for name in ["looked", "listed", "opened"] {
            put(&s, &t, name, &[("f", name.as_bytes())]);
        }
    }
    let long_ago = now() - 86_400;
    for name in ["looked", "listed", "opened"] {
        set_last_access(&store, "", name, long_ago);
    }
    let m = Mounted::foreground(&store, &t.path().join("mnt"), &[]);
    // The hit test's lookup: written at once.
    assert!(m.path("looked").is_dir());
    assert!(last_access(&store, "", "looked") >= now() - 30);
    // A listing and an open, each after a lookup of its directory (a use
    // written at once, undone here), within the directory entry's life in
    // the kernel (1 s), so no second lookup comes: the use is the listing's
    // or the open's, noted within the interval and written when the mount
    // ends.
    assert!(m.path("listed").is_dir());
    assert!(m.path("opened").join("f").is_file());
    set_last_access(&store, "", "listed", long_ago);
    set_last_access(&store, "", "opened", long_ago);
    assert_eq!(fs::read_dir(m.path("listed")).unwrap().count(), 1);
    assert_eq!(fs::read(m.path("opened").join("f")).unwrap(), b"opened");
    m.unmount();
    for name in ["looked", "listed", "opened"] {
        assert!(
            last_access(&store, "", name) >= now() - 30,
            "{name} not moved"
        );
    }
}
