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

# cpu CMD...: user+sys CPU seconds of CMD alone (GNU time's figure: the
# wrapper's own start-up is not in it), stdout to /dev/null. On a shared
# machine CPU time moves far less with load than wall time does, and a
# warm read is all CPU: the copy out of the page cache, in the reader.
cpu() {
    /usr/bin/time -f '%U %S' -o "$DIR/cpu.t" "$@" >/dev/null
    awk '{ print $1 + $2 }' "$DIR/cpu.t"
}

# secs CMD...: wall seconds of CMD, stdout to /dev/null.
secs() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    local t1=$EPOCHREALTIME
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Start both page caches from the same state: dropped, then filled by one
# read each (the warm-up read below). A file just written would otherwise
# sit in the page cache as its writes left it, not as a read fills it.
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "cannot drop page caches (not root?)" >&2

: >empty
start=$(for _ in $(seq "$REPEAT"); do secs cat empty; done | median)
printf 'starting cat on an empty file: %.2f ms (median of %d)\n' "$(echo "$start * 1000" | bc -l)" "$REPEAT"
printf '%-8s %-10s %12s %12s %8s %14s %14s %8s\n' size reader plain mount ratio "plain CPU" "mount CPU" ratio
for mb in "${SIZES[@]}"; do
    p=plain/f$mb.bin
    m=$mp/a/f$mb.bin
    bytes=$(stat -c %s "$p")
    cmp "$p" "$m"
    for how in cat dd; do
        : >"$DIR/p.t"
        : >"$DIR/m.t"
        : >"$DIR/pc.t"
        : >"$DIR/mc.t"
        run() {
            if [ "$how" = cat ]; then secs cat "$1"; else secs dd if="$1" of=/dev/null bs=1M status=none; fi
        }
        # CPU: four reads of the file in one command (GNU time counts in
        # 10 ms ticks), divided by four.
        run_cpu() {
            local c
            if [ "$how" = cat ]; then
                c=$(cpu cat "$1" "$1" "$1" "$1")
            else
                c=$(cpu sh -c 'for i in 1 2 3 4; do dd if="$1" of=/dev/null bs=1M status=none; done' sh "$1")
            fi
            echo "$c / 4" | bc -l
        }
        run "$p" >/dev/null
        run "$m" >/dev/null
        for _ in $(seq "$REPEAT"); do
            run "$p" >>"$DIR/p.t"
            run "$m" >>"$DIR/m.t"
            run_cpu "$p" >>"$DIR/pc.t"
            run_cpu "$m" >>"$DIR/mc.t"
        done
        tp=$(median <"$DIR/p.t")
        tm=$(median <"$DIR/m.t")
        cp_=$(median <"$DIR/pc.t")
        cm=$(median <"$DIR/mc.t")
        printf '%-8s %-10s %9.0f MB/s %9.0f MB/s %7.2fx %9.3f s CPU %9.3f s CPU %7.2fx\n' "${mb}MB" "$how" \
            "$(echo "$bytes / $tp / 1000000" | bc -l)" "$(echo "$bytes / $tm / 1000000" | bc -l)" \
            "$(echo "$tp / $tm" | bc -l)" "$cp_" "$cm" "$(echo "$cp_ / $cm" | bc -l)"
    done
done
