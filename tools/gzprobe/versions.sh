#!/usr/bin/env bash
# Issue 14's "done when" ratio, estimated before anything is built: the
# corpus's N versions of env_1_ubuntu_1404_amd64.img.gz stored
#   raw  - the raw ext4 images (v*-raw/) through deploycache put, fresh store;
#   gz   - the gz images through deploycache put, fresh store;
#   casync - the gz images through casync make (.caibx), fresh store;
#   content+side - raw, plus every gz member's side data from gzprobe (the
#          raw image is the gz's content byte for byte: corpus.sh gzips it).
#
#   tools/gzprobe/versions.sh CORPUS_DIR WORK_DIR [N] > versions.json
#
# DC=path/to/deploycache (default /work/main/target/release/deploycache).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROBE=${GZPROBE:-$HERE/target/release/gzprobe}
DC=${DC:-/work/main/target/release/deploycache}
C=${1:?usage: versions.sh CORPUS_DIR WORK_DIR [N]}
W=${2:?usage: versions.sh CORPUS_DIR WORK_DIR [N]}
N=${3:-5}
IMG=env_1_ubuntu_1404_amd64.img
rm -rf "$W/raw" "$W/gz" "$W/casync" "$W/in"
mkdir -p "$W/casync" "$W/in"

log() { printf '[versions %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
du_b() { du -sb "$1" | cut -f1; }

# The stores first, version by version (their sizes after each one)...
declare -A raw_du gz_du cas_du raw_stats gz_stats
for ((v = 1; v <= N; v++)); do
    log "v$v: stores"
    # put stores a directory's files: one file per artifact, named as in the corpus.
    mkdir -p "$W/in/raw$v" "$W/in/gz$v"
    ln -f "$C/v$v-raw/$IMG" "$W/in/raw$v/$IMG"
    ln -f "$C/v$v/$IMG.gz" "$W/in/gz$v/$IMG.gz"
    "$DC" --store "$W/raw" put "raw-v$v" "$W/in/raw$v" >/dev/null
    "$DC" --store "$W/gz" put "gz-v$v" "$W/in/gz$v" >/dev/null
    casync make --store="$W/casync/default.castr" "$W/casync/v$v.caibx" "$C/v$v/$IMG.gz" >/dev/null
    sync
    raw_du[$v]=$(du_b "$W/raw")
    gz_du[$v]=$(du_b "$W/gz")
    cas_du[$v]=$(du_b "$W/casync")
    raw_stats[$v]=$("$DC" --store "$W/raw" stats --json | tr -d '\n')
    gz_stats[$v]=$("$DC" --store "$W/gz" stats --json | tr -d '\n')
done
# ...then the side data of each version's image (newest first; a probe run
# before is kept: delete $W/probe-vN.json to redo it).
for ((v = N; v >= 1; v--)); do
    log "v$v: probe"
    [[ -s $W/probe-v$v.json ]] || "$PROBE" analyze --scratch "$W" "$C/v$v/$IMG.gz" >"$W/probe-v$v.json"
done
rows=()
for ((v = 1; v <= N; v++)); do
    side=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["side_data_bytes"] if d["rebuildable"] else -1)' <"$W/probe-v$v.json")
    rows+=("{\"version\": $v, \"gz_bytes\": $(stat -c %s "$C/v$v/$IMG.gz"), \"raw_bytes\": $(stat -c %s "$C/v$v-raw/$IMG"), \"side_data_bytes\": $side, \"raw_store_du\": ${raw_du[$v]}, \"gz_store_du\": ${gz_du[$v]}, \"casync_store_du\": ${cas_du[$v]}, \"raw_stats\": ${raw_stats[$v]}, \"gz_stats\": ${gz_stats[$v]}}")
done
(IFS=,; echo "[${rows[*]}]")
