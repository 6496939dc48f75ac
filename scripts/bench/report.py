#!/usr/bin/env python3
"""Turn scripts/bench.sh's results.tsv into BENCHMARKS.md: report.py RESULTS OUT.

results.tsv holds tab-separated records (see `record` calls in bench.sh):
  info KEY VALUE | file PATH BYTES | json KEY JSON | note TEXT | skip SECTION TEXT
  time SECTION TOOL OP BYTES SECONDS RSS_KIB STATUS [CPU_SECONDS]
  size SECTION TOOL STAGE BYTES | lat TOOL P50_US P99_US COUNT | rss TOOL WHAT KIB
MB means 10^6 bytes; MiB 2^20.
"""
import datetime
import json
import os
import sys

TOOLS = ["deploycache", "deploycache-fast", "cp", "casync", "borg", "restic"]
TOOL_LABEL = {
    "deploycache": "deploycache put",
    "deploycache-fast": "deploycache put --compression fast",
    "cp": "cp -r + sync",
    "casync": "casync make (default zstd)",
    "borg": "borg create (lz4, --encryption none)",
    "restic": "restic backup (repo v1, no compression)",
}


def load(path):
    r = {"info": {}, "file": {}, "json": {}, "note": [], "skip": [], "time": {},
         "size": {}, "lat": {}, "rss": {}, "sweep": {}}
    with open(path) as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            kind = f[0]
            if kind == "info":
                r["info"][f[1]] = f[2] if len(f) > 2 else ""
            elif kind == "file":
                r["file"][f[1]] = int(f[2])
            elif kind == "json":
                try:
                    r["json"][f[1]] = json.loads(f[2])
                except (ValueError, IndexError):
                    r["note"].append("unparsable JSON for %s" % f[1])
            elif kind == "note":
                r["note"].append(f[1])
            elif kind == "skip":
                r["skip"].append((f[1], f[2]))
            elif kind == "time":
                r["time"].setdefault((f[1], f[2], f[3]), []).append({
                    "bytes": int(f[4]), "secs": float(f[5]), "rss": int(f[6] or 0),
                    "status": f[7], "cpu": float(f[8]) if len(f) > 8 and f[8] else None})
            elif kind == "size":
                r["size"][(f[1], f[2], f[3])] = int(f[4])
            elif kind == "lat":
                r["lat"][f[1]] = (float(f[2]), float(f[3]), int(f[4]))
            elif kind == "sweep":
                r["sweep"][(f[1], int(f[2]), f[3])] = int(f[4])
            elif kind == "rss":
                r["rss"][(f[1], f[2])] = int(f[3])
    r["time"] = {k: summarize(v) for k, v in r["time"].items()}
    return r


def summarize(runs):
    """Repeats of one measurement: the median time and the largest RSS of the
    runs that succeeded; a failure shows only when every run failed."""
    ok = [x for x in runs if x["status"] == "ok"]
    if not ok:
        return runs[0]
    secs = sorted(x["secs"] for x in ok)
    mid = len(secs) // 2
    median = secs[mid] if len(secs) % 2 else (secs[mid - 1] + secs[mid]) / 2
    cpus = sorted(x["cpu"] for x in ok if x.get("cpu") is not None)
    return {"bytes": ok[0]["bytes"], "secs": median, "rss": max(x["rss"] for x in ok),
            "status": "ok", "runs": len(ok), "cpu": cpus[len(cpus) // 2] if cpus else None}


def fmt_cpu(t):
    """CPU seconds (user+sys) per GB processed."""
    if not t or t["status"] != "ok" or t.get("cpu") is None or not t["bytes"]:
        return "–"
    return "%.1f s/GB" % (t["cpu"] / (t["bytes"] / 1e9))


def mbs(t):
    """MB/s of a timing row, or None when it did not run or failed."""
    if not t or t["status"] != "ok" or t["secs"] <= 0:
        return None
    return t["bytes"] / 1e6 / t["secs"]


def fmt_rate(t):
    if not t:
        return "–"
    if t["status"] != "ok":
        return t["status"]
    return "%.0f MB/s" % mbs(t) if mbs(t) >= 10 else "%.1f MB/s" % mbs(t)


def fmt_secs(t):
    return "%.2f s" % t["secs"] if t and t["status"] == "ok" else "–"


def fmt_rss(t):
    return "%.0f MiB" % (t["rss"] / 1024) if t and t["status"] == "ok" else "–"


def fmt_bytes(n):
    if n is None:
        return "–"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return "%.1f %s" % (n / div, unit) if n < 100 * div else "%.0f %s" % (n / div, unit)
    return "%d B" % n


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(x):
    return "n/a" if x is None else "%.2f×" % x


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def ingest_section(r, section, title, what):
    t = r["time"]
    rows = []
    for tool in TOOLS:
        row_t = [t.get((section, tool, op)) for op in ("v1", "v2", "v1-again")]
        if not any(row_t):
            continue
        rss = [x["rss"] for x in row_t if x and x["status"] == "ok"]
        s1 = r["size"].get((section, tool, "v1"))
        s12 = r["size"].get((section, tool, "v1+v2"))
        logical = sum(x["bytes"] for x in row_t[:2] if x) or None
        rows.append([TOOL_LABEL[tool]] + [fmt_rate(x) for x in row_t] +
                    [fmt_cpu(row_t[0]),
                     "%.0f MiB" % (max(rss) / 1024) if rss else "–",
                     fmt_bytes(s1), fmt_bytes(s12),
                     fmt_ratio(ratio(logical, s12))])
    out = "## %s\n\n%s\n\n" % (title, what)
    out += table(["tool", "v1 (new)", "v2 (update)", "v1 again (stored)", "CPU for v1",
                  "peak RSS",
                  "store after v1", "after v1+v2", "v1+v2 logical / store"], rows)
    return out


def stats_section(r):
    out = ""
    for key, title in (("ingest-deploycache-stats", "artifact directories"),
                       ("raw-deploycache-stats", "raw ext4 images")):
        s = r["json"].get(key)
        if not s:
            continue
        out += "`deploycache stats --json` after v1, v2, v1 again (%s):\n\n" % title
        keys = ["artifacts", "files", "chunks", "logical_bytes", "unique_bytes",
                "stored_bytes", "dedupe_ratio", "total_ratio"]
        out += table(keys, [[s.get(k, "–") if not isinstance(s.get(k), float)
                             else "%.2f" % s[k] for k in keys]]) + "\n"
    return ("## deploycache's own accounting\n\n" + out) if out else ""


def verdicts(r):
    """The "Done when" targets of issues 2 and 3, measured side by side."""
    t, size = r["time"], r["size"]
    g = lambda *k: mbs(t.get(k))  # noqa: E731
    rows = []

    def add(issue, target, measured, need, higher_is_better=True, detail=""):
        if measured is None:
            verdict = "n/a"
        else:
            ok = measured >= need if higher_is_better else measured <= need
            verdict = "pass" if ok else "**MISS**"
        rows.append([issue, target, (fmt_ratio(measured) if measured is not None else "n/a")
                     + (" " + detail if detail and measured is not None else ""), verdict])

    add("2", "ingest of new data (v1) ≥ 0.8× cp+sync",
        ratio(g("ingest", "deploycache", "v1"), g("ingest", "cp", "v1")), 0.8)
    add("2", "ingest of the update (v2) ≥ 0.8× cp+sync",
        ratio(g("ingest", "deploycache", "v2"), g("ingest", "cp", "v2")), 0.8)
    add("2", "raw ext4 image, new data (v1) ≥ 0.8× cp+sync",
        ratio(g("raw", "deploycache", "v1"), g("raw", "cp", "v1")), 0.8)
    add("2", "raw ext4 image, new data (v1), `--compression fast` ≥ 0.8× cp+sync",
        ratio(g("raw", "deploycache-fast", "v1"), g("raw", "cp", "v1")), 0.8)
    add("2", "raw ext4 image, update (v2) ≥ 0.8× cp+sync",
        ratio(g("raw", "deploycache", "v2"), g("raw", "cp", "v2")), 0.8)
    add("2", "re-ingest of a stored version ≥ 2× cp+sync",
        ratio(g("ingest", "deploycache", "v1-again"), g("ingest", "cp", "v1-again")), 2)
    add("2", "ingest ≥ 2× borg create",
        ratio(g("ingest", "deploycache", "v1"), g("ingest", "borg", "v1")), 2)
    add("2", "ingest ≥ 4× casync make",
        ratio(g("ingest", "deploycache", "v1"), g("ingest", "casync", "v1")), 4)
    dc = size.get(("ingest", "deploycache", "v1+v2"))
    for other in ("casync", "borg"):
        add("2", "store after v1+v2 ≤ %s's (size ratio ≤ 1)" % other,
            ratio(dc, size.get(("ingest", other, "v1+v2"))), 1, False)
    dcr = size.get(("raw", "deploycache", "v1+v2"))
    for other in ("casync", "borg"):
        add("2", "raw ext4 images: store after v1+v2 ≤ %s's" % other,
            ratio(dcr, size.get(("raw", other, "v1+v2"))), 1, False)
    add("2", "`cat` read-back ≥ 0.8× plain file, cold",
        ratio(g("read", "deploycache", "cat cold"), g("read", "plain", "cat cold")), 0.8)
    add("2", "`cat` read-back ≥ 0.8× plain file, warm",
        ratio(g("read", "deploycache", "cat warm"), g("read", "plain", "cat warm")), 0.8)
    rss = [x["rss"] for (sec, tool, _), x in t.items()
           if tool == "deploycache" and sec in ("ingest", "raw", "read") and x["status"] == "ok"]
    rows.append(["2", "peak RSS < 100 MiB throughout (put, cat)",
                 "%.0f MiB" % (max(rss) / 1024) if rss else "n/a",
                 "n/a" if not rss else ("pass" if max(rss) < 100 * 1024 else "**MISS**")])
    add("3", "mount: cold sequential read ≥ 0.7× plain",
        ratio(g("mount", "deploycache", "seq read cold"), g("mount", "plain", "seq read cold")), 0.7)
    add("3", "mount: warm sequential read ≥ 0.9× plain",
        ratio(g("mount", "deploycache", "seq read warm"), g("mount", "plain", "seq read warm")), 0.9)
    add("3", "mount: cold read ≥ 2× borg mount",
        ratio(g("mount", "deploycache", "seq read cold"), g("mount", "borg", "seq read cold")), 2)
    add("3", "mount: cold read ≥ 5× casync mount",
        ratio(g("mount", "deploycache", "seq read cold"), g("mount", "casync", "seq read cold")), 5)
    add("3", "scp out of the mount ≥ 0.9× plain dir",
        ratio(g("scp", "deploycache", "scp out (cold)"), g("scp", "plain", "scp out (cold)")), 0.9)
    add("3", "scp into the mount ≥ 0.8× plain dir",
        ratio(g("scp", "deploycache", "scp in"), g("scp", "plain", "scp in")), 0.8)
    lat = r["lat"].get("deploycache")
    rows.append(["3", "random 4 KiB read, cold, p99 < 2 ms",
                 "%.2f ms" % (lat[1] / 1000) if lat else "n/a",
                 "n/a" if not lat else ("pass" if lat[1] < 2000 else "**MISS**")])
    hwm = r["rss"].get(("deploycache", "daemon VmHWM"))
    rows.append(["3", "daemon RSS < 200 MiB serving 4 parallel reads",
                 "%.0f MiB" % (hwm / 1024) if hwm else "n/a",
                 "n/a" if not hwm else ("pass" if hwm < 200 * 1024 else "**MISS**")])
    return ("## Targets from the issues' \"Done when\"\n\n"
            "Ratios are deploycache's speed (or size) over the other's, from the rows below.\n\n"
            + table(["issue", "target", "measured", "verdict"], rows))


def corpus_section(r):
    files = r["file"]
    names = sorted({p.split("/", 1)[1] for p in files})
    rows = []
    for n in names:
        v1 = files.get("v1/" + n) or files.get("v1-raw/" + n)
        v2 = files.get("v2/" + n) or files.get("v2-raw/" + n)
        where = "v1-raw/, v2-raw/" if ("v1-raw/" + n) in files else "v1/, v2/"
        rows.append([n, where, fmt_bytes(v1), fmt_bytes(v2)])
    c1, c2 = r["json"].get("corpus-v1", {}), r["json"].get("corpus-v2", {})
    out = "## Corpus\n\n"
    out += ("Built by `scripts/bench/corpus.sh` (scale %s), deterministically: the same bytes on "
            "every run with Debian 12's mksquashfs, e2fsprogs, gzip and tar (`MANIFEST` in the "
            "corpus directory lists every sha256).\n\n" % r["info"].get("scale", "?"))
    out += table(["file", "in", "v1", "v2"], rows) + "\n"
    if c1 and c2:
        out += ("Synthetic root file system (`scripts/bench/rootfs.py`): v1 has %d packages, %d "
                "files, %s; v2 changes %d packages (%d files, %.1f%% of the files), adds %d and "
                "removes %d, as a package update would.\n\n"
                % (c1["packages"], c1["files"], fmt_bytes(c1["bytes"]), c2["changed_packages"],
                   c2["changed_files"], 100.0 * c2["changed_files"] / max(1, c2["files"]),
                   c2["added_packages"], c2["removed_packages"]))
    out += CORPUS_MODEL
    return out


CORPUS_MODEL = """What the stand-in models (instead of debootstrap, whose output changes with the mirror
and the day; the generator is integer-only Mersenne Twister, so platform-independent):

- **Packages** of 3–15 files laid out like .debs: ELF-like executables and shared libraries
  (x86-64-like byte statistics, repeated code snippets, a string table, zero padding: gzip
  takes them to ~50%, zstd ~45%), text (scripts, python, docs, copyright: gzip ~25%) and
  already-compressed data (man pages, images: incompressible). By bytes roughly 55% ELF,
  30% text, 15% compressed. Kernel modules under `lib/modules`, `var/lib/dpkg/status`.
- **The update (v2)**: ~3% of packages bumped: their text files get lines inserted, half of
  their ELF files are spliced at 1–4 places (a small patch), the other half and their
  compressed files are rebuilt entirely; ~1% new packages (sorted in between, so squashfs and
  ext4 layouts shift), one removed, `dpkg/status` rewritten. Same kernel; the initrd is
  regenerated because it carries files of an updated package.
- **Artifacts** built from the root as CI builds them: `opnfv-bootstraps-cache.tar` =
  `<uuid>/{root.squashfs (gzip), vmlinuz, initrd.img (gzip'd newc cpio), metadata.yaml}`;
  `env_1_ubuntu_1404_amd64.img.gz` = gzip'd ext4 image of the root (Ubuntu 14.04's ext4
  feature set, populated in sorted order with debugfs); `…-boot.img.gz` = gzip'd small ext4
  image with kernel, initrd and grub; the yaml; a fake (unusable) key pair.
  The raw ext4 images (`v1-raw/`, `v2-raw/`) are benchmarked separately: a gzip stream
  changes entirely after its first changed byte, so only the raw image shows what
  content-defined chunking can share between versions of a disk image.
"""


def machine_section(r):
    i = r["info"]
    keys = [("cpu", "CPU"), ("nproc", "cores"), ("memory", "memory"), ("disk", "disk (df -T)"),
            ("kernel", "kernel"), ("os", "OS"), ("load", "load"), ("load_end", "load at the end"), ("drop_caches", "page cache dropped before cold runs"),
            ("deploycache", "deploycache"), ("casync", "casync"), ("borg", "borg"),
            ("restic", "restic"), ("ssh", "OpenSSH"), ("squashfs", "mksquashfs"),
            ("e2fsprogs", "e2fsprogs")]
    return "## Machine\n\n" + table(["", ""], [[label, i.get(k, "?")] for k, label in keys if k in i])


def sweep_section(r):
    sw = r["sweep"]
    if not sw:
        return ""
    rows = []
    for avg in sorted({k[1] for k in sw}):
        row = ["%d KiB (min %d, max %d KiB)" % (avg // 1024, avg // 4096, avg * 4 // 1024)]
        for d in ("ingest", "raw"):
            a, b = sw.get((d, avg, "v1")), sw.get((d, avg, "v2"))
            row += [fmt_bytes(b), fmt_bytes(b - a) if a is not None and b is not None else "–"]
        rows.append(row)
    return ("## Chunk size versus dedupe on this corpus\n\n"
            "casync's chunker as the probe (`casync make --chunk-size=AVG/4:AVG:AVG*4`, its "
            "default zstd), fresh store per row; \"v2 adds\" is what storing v2 after v1 costs. "
            "deploycache's chunk sizes are constants in `src/chunker.rs`, so this is the "
            "evidence for choosing them.\n\n"
            + table(["average chunk", "artifact dirs: store after v1+v2", "v2 adds",
                     "raw ext4: store after v1+v2", "v2 adds"], rows) + "\n")


def read_section(r):
    t = r["time"]
    rows = []
    for tool, op, label in (("plain", "cat cold", "`cat` of the plain files (cp copy), cold"),
                            ("plain", "cat warm", "`cat` of the plain files, warm"),
                            ("deploycache", "cat cold", "`deploycache cat`, cold"),
                            ("deploycache", "cat warm", "`deploycache cat`, warm"),
                            ("b3sum", "warm", "`b3sum` of the plain files (BLAKE3 alone, all cores), warm"),
                            ("casync", "extract cold", "`casync extract` to a directory (+sync), cold"),
                            ("borg", "extract --stdout cold", "`borg extract --stdout`, cold"),
                            ("restic", "dump cold", "`restic dump` (tar of the snapshot), cold")):
        x = t.get(("read", tool, op))
        if x:
            rows.append([label, fmt_rate(x), fmt_secs(x), fmt_cpu(x), fmt_rss(x)])
    return ("## Read-back\n\nAll files of v2 (%s), to /dev/null unless noted.\n\n"
            % fmt_bytes(next((x["bytes"] for k, x in t.items() if k[0] == "read" and x["bytes"]), None))
            + table(["what", "speed", "time", "CPU (user+sys)", "peak RSS"], rows))


def mount_section(r):
    t = r["time"]
    out = "## The mounted view (issue 3)\n\n"
    for sec, text in r["skip"]:
        out += "- %s\n" % text
    if r["skip"]:
        out += "\n"
    rows = []
    for (sec, tool, op), x in t.items():
        if sec == "mount":
            rows.append(["%s: %s" % (tool, op), fmt_bytes(x["bytes"]), fmt_rate(x), fmt_rss(x)])
    out += "Sequential reads of the largest v2 file (`cat FILE > /dev/null`):\n\n"
    out += table(["what", "bytes", "speed", "peak RSS of the reader"], rows) + "\n"
    rows = [["%s: %s" % (tool, op), fmt_rate(x), fmt_secs(x)]
            for (sec, tool, op), x in t.items() if sec == "scp"]
    out += ("`scp` of the whole v2 artifact over an sshd on 127.0.0.1 (`scp out` = from the "
            "directory to a plain directory; `scp in` = from the corpus into a new directory "
            "there, like the cache-miss flow), each followed by `sync`:\n\n")
    out += table(["what", "speed", "time"], rows) + "\n"
    rows = [[tool, "%.0f µs" % p50, "%.0f µs" % p99, n] for tool, (p50, p99, n) in r["lat"].items()]
    out += "Random 4 KiB `pread` latency, page cache dropped first (`scripts/bench/randread.py`):\n\n"
    out += table(["file", "p50", "p99", "reads"], rows) + "\n"
    for (tool, what), kib in r["rss"].items():
        out += "- %s %s: %.0f MiB\n" % (tool, what, kib / 1024)
    return out


def limits_section(r):
    """What stands between the misses and their targets, from the diagnostic rows."""
    t = r["time"]
    if not t.get(("read", "b3sum", "warm")):
        return ""
    return """## What limits the remaining misses

Measured with `perf` and side-by-side runs on the machine above (2 cores); each item names
the commit it was measured at. How far the shared machine moves a ratio: three full runs
at git 0b35fce, 928459a and 008d7c6 (the same read and write paths) measured scp in at
0.73×, 0.67× and 0.76×, scp out at 0.82×, 0.80× and 0.90×, and a cold read through the
mount at 2.08×, 0.73× and 0.78×; an A/B of the first two builds mounted side by side took
3.10 s each for scp in (plain 2.08 s).

- **`cat` warm.** Every chunk is BLAKE3-checked before a byte of it is served (issue 2: never
  wrong bytes). For the 557 MB of v2 (git 0b35fce), `deploycache cat` spends 0.25 CPU seconds:
  39% hashing, 34% copying pack bytes out of the page cache with `pread`, 8% in the page-cache
  lookups; plain `cat` spends 0.08 on its one copy. Split perfectly over both cores, the whole
  0.25 CPU seconds cannot take less than 0.125 s, 0.66× plain `cat`; the reader threads reach
  1.6 of the 2 cores, hence 0.13 s. The `b3sum` row hashes the same bytes with no copy because it memory-maps the
  files. deploycache does not: a mapped pack turns a disk error into SIGBUS, a crash, where
  `pread` gives an error that names the pack, and the bytes served would no longer be the
  bytes hashed if the page changed in between. Reads of 256 KiB runs that stay in the core's
  L2 cache between the copy and the hash took warm `cat` from 0.158 to 0.134 s (git 8b6455b).
  Mapping was still tried (git c692b36, on the 278 MB tar: plain `cat` 42 ms): packs mapped in
  4 MiB windows, each run faulted in with `MADV_POPULATE_READ` (which reports a read error
  instead of raising SIGBUS), hashed and served in place. It saved the copy but not the time:
  hashing from memory instead of from L2 is slower (88 against 61 ms of CPU), and mapping
  costs TLB shootdowns. 68 ms, as with `pread`; 61 ms (0.69×) with 1 MiB runs. Not worth
  the SIGBUS exposure. The floor is BLAKE3 itself: 65 ms of CPU for those 278 MB at this
  machine's 4.3 GB/s per core, 33 ms split perfectly over both cores, nearly 80% of plain
  `cat`'s 42 ms before a byte is read or handed over.
- **`scp` into the mount.** Every gzip or tar stream written through the mount is checked as
  it streams in (issue 3: a cut-short transfer must never look cached, and the check is not a
  second pass): a `.gz` is inflated to check its CRC32 and length. A `perf` timeline of one
  scp in of v2 (git 0b35fce) shows where the time goes. While the 248 MB image streams in, the
  thread inflating it is the slowest stage: it holds about 85% of one core and ssh waits on
  it. The tar that follows goes in at the plain directory's pace. Over the whole copy, ssh,
  sshd and scp take 2.55 CPU seconds, the inflate 1.18, and the daemon's chunking, hashing
  and FUSE traffic 0.84: 4.6 of the 5.0 CPU seconds that 0.8× of the plain directory's
  2.0 s allows on 2 cores, while the ssh pipeline leaves cores idle even into a plain
  directory. The inflate is zlib-rs's AVX2 code, unused until git 50b039e because flate2
  builds zlib-rs without its run-time CPU detection: enabling it took the check of the image
  from 1.15 to 1.04 s, and scp in from 3.11 to 2.97 s (plain 2.10 s) in a 6-repetition A/B.
  ISA-L's `igzip`, the fastest inflater on Debian, takes 0.88 s on the image; that would leave
  scp in near 0.75×. A higher priority for the check thread (nice −10) changed nothing
  (3.07 s against 3.06 s). Measured at git 35054b4, the same bytes under names the check
  ignores went in at 0.91× a plain directory: the ceiling without the check. The bench writes
  bytes the store already holds; a miss that brings new bytes (v2 into a store holding only
  v1) measured the same. Each file alone (git c692b36, 3 alternations): the tar goes in at
  the plain directory's pace (1.31–1.34 s against 1.18–1.39 s), the 248 MB image takes
  1.82–1.96 s against 1.05–1.24 s. Over the image's transfer (`perf record -a`), the inflate
  took 1.3 CPU seconds (1.04 alone: it shares the cores), ssh, sshd and scp 1.37, the daemon
  0.54 (its FUSE threads 0.41, its chunk workers 0.12; FastCDC's gear hash 0.15 and BLAKE3
  0.07 of it): 3.2 CPU seconds, which two cores cannot run in less than 1.6 s, against the
  plain copy's 1.1–1.2 s. With `igzip`'s 0.83 s for the inflate it would still be about
  1.4 s. The cores sat idle 12% of that time; a check queue of 32 MiB instead of 4 MiB did
  not change the time.
- **`scp` out of the mount.** Warm (page cache), both take 1.6 s. Cold, deploycache's time
  stays within 1.8–2.2 s, while the plain directory's swings between 1.45 and 2.45 s from one
  repetition to the next, so the ratio lands anywhere from 0.77× to 1.07× (side-by-side runs
  of 4 to 8 repetitions measured 1.00×, 1.03× and 1.07×; the full reports, 0.77× to 0.82×).
  In a `perf` timeline (git 0b35fce) the cores are saturated: ssh, sshd and scp use 1.5 of
  them and the daemon 0.3 (0.45 CPU seconds for v2: BLAKE3 0.12, the copies in and out of it,
  FUSE's request queue). A larger kernel read-ahead (16 MiB) and FUSE's writeback cache were
  tried and changed nothing.
- **Raw ext4 ingest.** zstd level 1 on compressible data is the largest CPU cost of `put`,
  and `cp`+`sync` is bound by the disk, so this ratio moves with the disk: between 0.75× and
  1.06× over the last three rounds. Since git 3c9082c, `put` has the kernel start writing each
  8 MiB of pack as it is appended (`sync_file_range`) instead of leaving it all to the fsync
  before the commit: 1.05 s to 0.97 s for the 537 MB image, final sync included (4 alternating
  runs). On a slower disk, such as the NFS that `/iso_mount` usually is, writing half the bytes
  (257 MB after zstd) wins. `--compression fast` trades about 40% more stored bytes on such
  images for speed (its row above).

"""


def load_warning(i):
    """Say so when others' work competed for the CPUs during the run."""
    try:
        start = float(i.get("load", "0").split()[0])
        end = float(i.get("load_end", "0").split()[0])
        cores = int(i.get("nproc", "0"))
    except ValueError:
        return ""
    if cores and max(start, end) > cores:
        return ("**Note:** the load average was %.1f at the start and %.1f at the end on %d "
                "cores: other work shared the machine, which slows the CPU-bound tools "
                "(deploycache, casync, borg, restic) more than `cp` and `cat`. The CPU columns "
                "(seconds per GB) are less sensitive to that than the speeds.\n\n"
                % (start, end, cores))
    return ""


def run_date(i, path):
    """When the run was made: recorded by bench.sh, else the results file's time."""
    if i.get("date"):
        return i["date"]
    t = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def main():
    r = load(sys.argv[1])
    i = r["info"]
    parts = [
        "# Benchmarks\n\n",
        "Generated by `scripts/bench.sh` (%s, scale %s, --repeat %s) on %s. Reproduce on a fresh Debian 12 "
        "machine with the Rust toolchain, as root: `scripts/bench.sh --repeat %s` (it installs casync, "
        "borgbackup, restic, squashfs-tools, fuse3, openssh-server and time when missing). "
        "Every tool works side by side on the same disk; every ingest is timed up to a finished "
        "`sync`; \"cold\" means the page cache was dropped just before. Every time is the "
        "median of %s run(s); peak RSS the largest of them; CPU is user+sys seconds per GB "
        "processed (steadier than wall time on this shared machine). MB = 10^6 bytes.\n\n"
        % (i.get("deploycache", "?"), i.get("scale", "?"), i.get("repeat", "1"),
           run_date(i, sys.argv[1]),
           i.get("repeat", "1"), i.get("repeat", "1")),
        load_warning(i),
        verdicts(r) + "\n",
        machine_section(r) + "\n",
        corpus_section(r) + "\n",
        ingest_section(r, "ingest", "Ingest: artifact directories",
                       "Each tool gets an empty store, then v1 (all new data), v2 (the update) and "
                       "v1 again under a new name (everything already stored). Store sizes are "
                       "`du -sb` of the store directory (borg's and restic's local caches are "
                       "outside it and not counted). deploycache, borg and restic keep a files "
                       "cache (path, inode, size, mtime) and skip reading a file they have "
                       "stored before, which is why their \"v1 again\" can beat the disk.") + "\n",
        ingest_section(r, "raw", "Ingest: raw ext4 images",
                       "The same sequence with `v1-raw/` and `v2-raw/` (one uncompressed ext4 "
                       "image each), fresh stores.") + "\n",
        stats_section(r),
        sweep_section(r),
        read_section(r) + "\n",
        mount_section(r),
        limits_section(r),
    ]
    if r["note"]:
        parts.append("\n## Notes\n\n" + "".join("- %s\n" % n for n in r["note"]))
    # The fingerprint timing is measured by scripts/bench-fingerprint.sh,
    # which writes its own section; carry it into the report.
    # So is the mount hardening's A/B (scripts/bench/ab-mount.sh), the refactor's A/B and warm read
    # (BENCHMARKS-architecture.md), gc at scale (scripts/bench/gc.sh, which
    # bench.sh runs, and the gc engineers' profile, BENCHMARKS-gc2.md), and
    # the gzip form (tools/gzprobe's preflate measurements, BENCHMARKS-gzip.md;
    # scripts/bench/gzip.sh, BENCHMARKS-gzip-form.md), and the remote
    # (scripts/bench/remote.sh and the S3 client's measurements, BENCHMARKS-remote.md).
    for name in ("BENCHMARKS-fingerprint.md", "BENCHMARKS-hardening.md", "BENCHMARKS-architecture.md",
                 "BENCHMARKS-gc.md", "BENCHMARKS-gc2.md", "BENCHMARKS-gzip.md", "BENCHMARKS-gzip-form.md",
                 "BENCHMARKS-remote.md"):
        fp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", name)
        if os.path.exists(fp):
            with open(fp) as fh:
                parts.append("\n" + fh.read())
    with open(sys.argv[2], "w") as fh:
        fh.write("".join(parts))


if __name__ == "__main__":
    main()
