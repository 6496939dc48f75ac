#!/usr/bin/env python3
"""Markdown tables from gzprobe's output (BENCHMARKS-gzip.md).

  table.py producers RESULTS.jsonl   one row per producer
  table.py versions VERSIONS.json    the N-version store estimate
  table.py full PROBE.json...          one row per whole-image probe
"""
import json
import sys


def mb(b):
    return "%.1f MB" % (b / 1e6) if b >= 1e5 else "%d B" % b


def producers(path):
    print("| producer | gz | members | bit-exact rebuild | side data | side / gz | "
          "analysis (CPU) | rebuild (CPU) | analysis (wall) | rebuild (wall) | "
          "peak RSS analysis / rebuild | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for line in open(path):
        d = json.loads(line)
        ms = d["members"]
        note = []
        if d["failure"]:
            f = d["failure"]
            note.append(("preflate panicked: " if f["panicked"] else "") + f["error"])
        if any(not m["crc_ok"] for m in ms):
            note.append("CRC32/ISIZE mismatch (bit-exact deflate, damaged content)")
        if d["trailing_bytes"]:
            note.append("%d trailing bytes%s kept verbatim" % (
                d["trailing_bytes"], " (zeros)" if d["trailing_all_zero"] else ""))
        ok = "yes" if d["rebuildable"] else "**no**"
        print("| %s | %s | %d | %s | %s | %.4f %% | %.1f MB/s | %.1f MB/s | %.1f MB/s | "
              "%.1f MB/s | %d / %d MiB | %s |" % (
                  d["producer"], mb(d["bytes"]), len(ms), ok,
                  mb(d["side_data_bytes"]) if ms else "-",
                  d["side_data_bytes"] * 100 / d["bytes"] if d["bytes"] else 0,
                  d["analysis_cpu_mb_s_gz"], d["rebuild_cpu_mb_s_gz"],
                  d["analysis_mb_s_gz"], d["rebuild_mb_s_gz"],
                  d["peak_rss_analysis_kib"] // 1024, d["peak_rss_rebuild_kib"] // 1024,
                  "; ".join(note)))


def versions(path):
    rows = json.load(open(path))
    print("| after | gz images | side data (this version) | raw in deploycache (du) | "
          "content + side data | gz in deploycache (du) | casync of gz (du) | "
          "(content+side) / raw | (content+side) / casync |")
    print("|---|---|---|---|---|---|---|---|---|")
    side = 0
    gz = 0
    for r in rows:
        side += r["side_data_bytes"]
        gz += r["gz_bytes"]
        est = r["raw_store_du"] + side
        print("| v1..v%d | %s | %s | %s | %s | %s | %s | %.3f× | %.3f× |" % (
            r["version"], mb(gz), mb(r["side_data_bytes"]), mb(r["raw_store_du"]), mb(est),
            mb(r["gz_store_du"]), mb(r["casync_store_du"]), est / r["raw_store_du"],
            est / r["casync_store_du"]))


def full(paths):
    print("| image | gz | content | chunks | bit-exact rebuild | side data | side / gz | "
          "analysis (CPU) | rebuild (CPU) | peak RSS analysis / rebuild |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        d = json.load(open(p))
        print("| %s | %s | %s | %d | %s | %s | %.4f %% | %.1f MB/s (%.0f s) | %.1f MB/s (%.0f s) | "
              "%d / %d MiB |" % (
                  "/".join(d["file"].split("/")[-2:]), mb(d["bytes"]), mb(d["plain_bytes"]),
                  sum(m["chunks"] for m in d["members"]), "yes" if d["rebuildable"] else "**no**",
                  mb(d["side_data_bytes"]), d["side_data_bytes"] * 100 / d["bytes"],
                  d["analysis_cpu_mb_s_gz"], d["analysis_cpu_s"], d["rebuild_cpu_mb_s_gz"],
                  d["rebuild_cpu_s"], d["peak_rss_analysis_kib"] // 1024,
                  d["peak_rss_rebuild_kib"] // 1024))


if __name__ == "__main__":
    if sys.argv[1] == "full":
        full(sys.argv[2:])
    else:
        {"producers": producers, "versions": versions}[sys.argv[1]](sys.argv[2])
