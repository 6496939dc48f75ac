#!/usr/bin/env bash
# Warm sequential read of a plain file against the same file through the
# mount: `cat FILE >/dev/null` (and `dd bs=1M`), after one warm-up read of
# each, alternating plain and mount, median of REPEAT (default 9) runs.
# Each run is timed with bash's EPOCHREALTIME around the command alone (no
# /usr/bin/time, no extra bash: at 15 GB/s a 278 MB read takes 18 ms, so a
# few ms of wrapper would halve the figure). The cost of starting `cat` on
# an empty file is printed too.
#
#   scripts/bench/warm-read.sh BIN [SIZE_MB...]      (default sizes: 278 1074)
#
# Scratch data lives under $BENCH_DIR/warm (default /work/benchdata/warm).
# Run as root (FUSE).
set -euo pipefail
BIN=$(realpath "$1")
shift
SIZES=("${@:-278 1074}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
REPEAT=${REPEAT:-9}
DIR=${BENCH_DIR:-/work/benchdata}/warm
mkdir -p "$DIR"
cd "$DIR"

store=$DIR/store
mp=$DIR/mnt
fusermount3 -u "$mp" 2>/dev/null || true
rm -rf "$store" "$mp"
mkdir -p "$mp" plain
for mb in "${SIZES[@]}"; do
    f=plain/f$mb.bin
    # Half random, half repetitive text: the store compresses part of it.
    if [ ! -f "$f" ]; then
        head -c $((mb * 500000)) /dev/urandom >"$f.tmp"
        python3 -c "import sys; sys.stdout.buffer.write((b'package version amd64 Depends: libc6\\n' * ($mb * 500000 // 37 + 1))[:$mb * 500000])" >>"$f.tmp"
        mv "$f.tmp" "$f"
    fi
done
"$BIN" --store "$store" put a plain >/dev/null
"$BIN" --store "$store" mount "$mp" --daemon >/dev/null
for _ in $(seq 100); do mountpoint -q "$mp" && break; sleep 0.1; done
trap 'fusermount3 -u "$mp" 2>/dev/null || true' EXIT

# secs CMD...: wall seconds of CMD, stdout to /dev/null.
secs() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    local t1=$EPOCHREALTIME
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: >empty
start=$(for _ in $(seq "$REPEAT"); do secs cat empty; done | median)
printf 'starting cat on an empty file: %.2f ms (median of %d)\n' "$(echo "$start * 1000" | bc -l)" "$REPEAT"
printf '%-8s %-10s %12s %12s %8s\n' size reader plain mount ratio
for mb in "${SIZES[@]}"; do
    p=plain/f$mb.bin
    m=$mp/a/f$mb.bin
    bytes=$(stat -c %s "$p")
    cmp "$p" "$m"
    for how in cat dd; do
        : >"$DIR/p.t"
        : >"$DIR/m.t"
        run() {
            if [ "$how" = cat ]; then secs cat "$1"; else secs dd if="$1" of=/dev/null bs=1M status=none; fi
        }
        run "$p" >/dev/null
        run "$m" >/dev/null
        for _ in $(seq "$REPEAT"); do
            run "$p" >>"$DIR/p.t"
            run "$m" >>"$DIR/m.t"
        done
        tp=$(median <"$DIR/p.t")
        tm=$(median <"$DIR/m.t")
        printf '%-8s %-10s %9.0f MB/s %9.0f MB/s %7.2fx\n' "${mb}MB" "$how" \
            "$(echo "$bytes / $tp / 1000000" | bc -l)" "$(echo "$bytes / $tm / 1000000" | bc -l)" \
            "$(echo "$tp / $tm" | bc -l)"
    done
done
