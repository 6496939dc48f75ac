#!/usr/bin/env bash
# The gzip form's benchmark (issue 14, "Done when"), on the five-version
# corpus that scripts/bench/corpus.sh --versions 5 builds (BENCHMARKS-gzip.md;
# reused, never rebuilt here):
#   1. bytes on disk (`du -sb` of packs + index) of store R (the raw images),
#      store G (the gz images: put, `convert --all`, `gc --hot-for 0s`) and a
#      casync store of the same gz images, measured in the same run; G with
#      the newest version's hot copy kept too;
#   2. every gz read back from G cold (`cat`, a rebuild) and `cmp`'d with
#      the original;
#   3. through the mount of G: the newest version's gz (hot) against the
#      plain file (caches dropped before each, alternating, median), cold
#      reads of old versions (MB/s, the daemon's CPU seconds, a perf
#      profile) and the time to a cold read's first byte;
#   4. `convert --all`'s speed and peak RSS (/usr/bin/time -v);
#   5. the write path with the mount's background converter on and off
#      (`cp` of one version into the mount, then of the next while the
#      converter works on the first, then `put` of a third; alternating).
#
#   scripts/bench/gzip.sh BIN [CORPUS_DIR]
#
# CORPUS_DIR defaults to /work/benchdata/gz/corpus (v1..v5 and v1-raw..v5-raw).
# Scratch under $BENCH_DIR/gzform (default /work/benchdata/gzform). Each
# step leaves a marker and its figures in $DIR/results/*.txt (key=value), so
# a rerun skips what is done (rm -rf $DIR to start over). REPEAT (3) sets the
# cold first-byte reads and the write-path alternations, HOT_REPEAT (7) the
# hot-read pairs. MB = 10^6 bytes. Run as root (FUSE,
# drop_caches, perf).
set -euo pipefail
BIN=$(readlink -f "${1:?usage: gzip.sh BIN [CORPUS_DIR]}")
CORPUS=$(readlink -f "${2:-/work/benchdata/gz/corpus}")
DIR=${BENCH_DIR:-/work/benchdata}/gzform
REPEAT=${REPEAT:-3}
VERSIONS="1 2 3 4 5"
MAIN=env_1_ubuntu_1404_amd64.img.gz
BOOT=env_1_ubuntu_1404_amd64-boot.img.gz
RES=$DIR/results
mkdir -p "$RES"
log() { printf '[gzip bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# rec FILE KEY VALUE: one figure, appended to results/FILE.txt.
rec() { echo "$2=$3" >>"$RES/$1.txt"; }
# done_step NAME / step_done NAME: markers that make a rerun skip a step.
done_step() { touch "$DIR/$1.done"; }
step_done() { [ -f "$DIR/$1.done" ]; }
now() { date +%s%N; }
# secs T0 T1: seconds between two `now`s.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# store_du STORE: bytes of its packs and index (what the store holds).
store_du() { du -sb "$1/packs" "$1"/index.sqlite* | awk '{ s += $1 } END { print s }'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# unmount MNT: unmount it and wait (up to 5 min) for its daemon to exit, so
# that nothing writes into the store afterwards.
unmount() {
    fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null || true
    local i
    for i in $(seq 300); do
        pgrep -f -- " mount $1 --threads" >/dev/null || return 0
        sleep 1
    done
    log "the daemon of $1 is still running after 5 min"
}
dc() { "$BIN" --store "$@"; }

R=$DIR/R
G=$DIR/G
CA=$DIR/casync
MNT=$DIR/mnt
rec machine "start_$(date +%H%M%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. stores R, G and casync -------------------------------------------
if ! step_done put; then
    log "store R: the five raw images, then the boot images' content"
    rm -rf "$R" "$G" "$CA" "$DIR/rawboot" "$RES/size.txt"
    dc "$R" init >/dev/null
    for v in $VERSIONS; do dc "$R" put "r$v" "$CORPUS/v$v-raw/" >/dev/null; done
    rec size R_main "$(store_du "$R")"
    # The same images as G holds, stored raw: the boot images inflated too.
    for v in $VERSIONS; do
        mkdir -p "$DIR/rawboot/v$v"
        gzip -dc "$CORPUS/v$v/$BOOT" >"$DIR/rawboot/v$v/${BOOT%.gz}"
        dc "$R" put "b$v" "$DIR/rawboot/v$v/" >/dev/null
    done
    rec size R_all "$(store_du "$R")"
    rm -rf "$DIR/rawboot"
    log "store G: the five versions' gz images"
    dc "$G" init >/dev/null
    for v in $VERSIONS; do
        dc "$G" put "g$v" "$CORPUS/v$v/$MAIN" "$CORPUS/v$v/$BOOT" >/dev/null
        rec size "G_put_v$v" "$(store_du "$G")"
    done
    rec size G_put "$(store_du "$G")"
    log "casync: the same gz images, one store"
    mkdir -p "$CA"
    for v in $VERSIONS; do
        for f in $MAIN $BOOT; do
            casync make --store="$CA/default.castr" "$CA/v$v-$f.caibx" "$CORPUS/v$v/$f" >/dev/null
        done
    done
    rec size casync "$(du -sb "$CA" | cut -f1)"
    done_step put
fi

if ! step_done convert; then
    log "convert --all (time -v)"
    gz_bytes=0
    for v in $VERSIONS; do
        for f in $MAIN $BOOT; do gz_bytes=$((gz_bytes + $(stat -c %s "$CORPUS/v$v/$f"))); done
    done
    rec convert gz_bytes "$gz_bytes"
    /usr/bin/time -v -o "$RES/convert.time" "$BIN" --store "$G" convert --all --json >"$RES/convert.json"
    awk -F': ' '/User time/ { print "user_s=" $2 } /System time/ { print "sys_s=" $2 }
        /Elapsed \(wall/ { print "wall=" $2 } /Maximum resident/ { print "max_rss_kb=" $2 }' \
        "$RES/convert.time" >>"$RES/convert.txt"
    rec size G_converted_all_hot "$(store_du "$G")"
    dc "$G" ls g5 >"$RES/ls-g5-after-convert.txt"
    dc "$G" gc --hot-for 0s >"$RES/gc-hot0.txt"
    rec size G_cold "$(store_du "$G")"
    dc "$G" stats --json >"$RES/stats-G-cold.json"
    dc "$R" stats --json >"$RES/stats-R.json"
    dc "$G" ls g5 >"$RES/ls-g5-cold.txt"
    done_step convert
fi

# --- 2. every byte back, cold ---------------------------------------------
if ! step_done cmp; then
    rm -f "$RES/cmp.txt"
    for v in $VERSIONS; do
        for f in $MAIN $BOOT; do
            log "cmp v$v/$f (cold cat)"
            t0=$(now)
            if cmp <(dc "$G" cat "g$v" "$f") "$CORPUS/v$v/$f"; then ok=identical; else ok=DIFFERENT; fi
            t1=$(now)
            rec cmp "v$v/$f" "$ok $(stat -c %s "$CORPUS/v$v/$f") $(secs "$t0" "$t1")"
        done
    done
    done_step cmp
fi

# The cats promoted every file: drop them all, then keep only the newest
# version hot (read whole once more: promoted).
if ! step_done hot5; then
    log "gc --hot-for 0s, then promote v5"
    dc "$G" gc --hot-for 0s >/dev/null
    rec size G_cold_again "$(store_du "$G")"
    dc "$G" cat g5 "$MAIN" "$BOOT" >/dev/null
    rec size G_newest_hot "$(store_du "$G")"
    dc "$G" ls g5 >"$RES/ls-g5-hot.txt"
    dc "$G" ls g1 >"$RES/ls-g1-cold.txt"
    dc "$G" stats --json >"$RES/stats-G-newest-hot.json"
    done_step hot5
fi

# --- 3. reads through the mount -------------------------------------------
# daemon_pid MNT: its mount daemon's pid (argv `... mount MNT --threads N ...`).
daemon_pid() { pgrep -f -- " mount $1 --threads" | head -1; }
# daemon_cpu MNT: user+sys seconds of its mount daemon so far.
daemon_cpu() {
    local pid
    pid=$(daemon_pid "$1")
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}
# The newest version (hot) against the plain file: HOT_REPEAT (7) pairs.
if ! step_done mounthot; then
    rm -f "$RES/mounthot.txt"
    unmount "$MNT"
    mkdir -p "$MNT"
    dc "$G" mount --daemon --no-convert "$MNT" >/dev/null
    hot=$MNT/g5/$MAIN
    plain=$CORPUS/v5/$MAIN
    for rep in $(seq "${HOT_REPEAT:-7}"); do
        for which in plain mount; do
            src=$plain
            [ $which = mount ] && src=$hot
            drop_caches
            t0=$(now)
            dd if="$src" of=/dev/null bs=1M status=none
            t1=$(now)
            rec mounthot "hot_${which}_s" "$(secs "$t0" "$t1")"
        done
    done
    unmount "$MNT"
    done_step mounthot
fi

# Old versions (cold): first byte, then whole reads with the daemon's CPU.
if ! step_done mount; then
    rm -f "$RES/mount.txt"
    unmount "$MNT"
    mkdir -p "$MNT"
    dc "$G" mount --daemon --no-convert "$MNT" >/dev/null
    log "cold: time to first byte (v4), then whole reads of v1, v2, v3"
    for rep in $(seq "$REPEAT"); do
        drop_caches
        t0=$(now)
        head -c 1 "$MNT/g4/$MAIN" >/dev/null
        t1=$(now)
        rec mount ttfb_cold_s "$(secs "$t0" "$t1")"
    done
    for v in 1 2 3; do
        drop_caches
        c0=$(daemon_cpu "$MNT")
        t0=$(now)
        if [ "$v" = 3 ]; then
            pid=$(daemon_pid "$MNT")
            perf record -F 199 -g -p "$pid" -o "$DIR/perf.data" 2>/dev/null &
            perf_pid=$!
        fi
        dd if="$MNT/g$v/$MAIN" of=/dev/null bs=1M status=none
        t1=$(now)
        if [ "$v" = 3 ]; then
            kill -INT "$perf_pid"
            wait "$perf_pid" || true
        fi
        c1=$(daemon_cpu "$MNT")
        rec mount "cold_v${v}" "$(stat -c %s "$CORPUS/v$v/$MAIN") $(secs "$t0" "$t1") $(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')"
    done
    unmount "$MNT"
    perf report -i "$DIR/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null |
        grep -v '^$' | head -60 >"$RES/perf-cold.txt" || true
    perf report -i "$DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -15 >"$RES/perf-cold-dso.txt" || true
    done_step mount
fi

# --- 5. write path: the background converter on vs off ---------------------
if ! step_done write; then
    rm -f "$RES/write.txt"
    W=$DIR/w
    for rep in $(seq "$REPEAT"); do
        for mode in convert noconvert; do
            log "write path rep $rep: $mode"
            unmount "$W/m"
            if mountpoint -q "$W/m"; then
                log "$W/m is still mounted: not removing the store under it"
                exit 1
            fi
            rm -rf "$W" && mkdir -p "$W/m"
            dc "$W/s" init >/dev/null
            opt=()
            [ $mode = noconvert ] && opt=(--no-convert)
            dc "$W/s" mount --daemon "${opt[@]}" "$W/m" >/dev/null
            # scp-like: one version copied in; then the next, while the
            # converter (if on) works on the first one's images; then a put.
            for step in 1 2; do
                t0=$(now)
                cp -r "$CORPUS/v$step" "$W/m/c$step"
                sync
                t1=$(now)
                rec write "${mode}_cp_v${step}_s" "$(secs "$t0" "$t1")"
            done
            t0=$(now)
            dc "$W/s" put p3 "$CORPUS/v3/" >/dev/null
            t1=$(now)
            rec write "${mode}_put_v3_s" "$(secs "$t0" "$t1")"
            # The daemon's CPU seconds: the converter's work shows here.
            rec write "${mode}_daemon_cpu_s" "$(daemon_cpu "$W/m")"
            dc "$W/s" ls c1 >"$RES/write-ls-c1-$mode.txt"
            unmount "$W/m"
        done
    done
    mountpoint -q "$W/m" || rm -rf "$W"
    done_step write
fi

rec machine "end_$(date +%H%M%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"

# --- summary ----------------------------------------------------------------
val() { grep "^$2=" "$RES/$1.txt" | tail -1 | cut -d= -f2; }
vals() { grep "^$2=" "$RES/$1.txt" | cut -d= -f2 | tr '\n' ' '; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo "## sizes (du -sb of packs + index)"
for k in R_main R_all G_put G_converted_all_hot G_cold G_newest_hot casync; do
    echo "$k: $(mb "$(val size $k)")"
done
echo "G_cold / R_all = $(ratio "$(val size G_cold)" "$(val size R_all)")"
echo "G_cold / R_main = $(ratio "$(val size G_cold)" "$(val size R_main)")"
echo "G_cold / casync = $(ratio "$(val size G_cold)" "$(val size casync)")"
echo "G_newest_hot / R_all = $(ratio "$(val size G_newest_hot)" "$(val size R_all)")"
echo "G_newest_hot / casync = $(ratio "$(val size G_newest_hot)" "$(val size casync)")"
echo "## cmp"
cat "$RES/cmp.txt"
echo "## convert"
cat "$RES/convert.txt"
echo "## mount"
p=$(vals mounthot hot_plain_s | median)
m=$(vals mounthot hot_mount_s | median)
echo "hot: plain median ${p}s, mount median ${m}s, mount/plain speed = $(ratio "$p" "$m")"
echo "ttfb cold: $(vals mount ttfb_cold_s)"
grep '^cold_v' "$RES/mount.txt" | awk -F'[= ]' '{ printf "%s: %.1f MB/s wall, %.1f MB/s of daemon CPU (%s s)\n", $1, $2 / $3 / 1e6, $2 / $4 / 1e6, $4 }'
echo "## write"
for k in convert_cp_v1_s noconvert_cp_v1_s convert_cp_v2_s noconvert_cp_v2_s convert_put_v3_s noconvert_put_v3_s convert_daemon_cpu_s noconvert_daemon_cpu_s; do
    echo "$k: $(vals write $k) median $(vals write $k | median)"
done
cat "$RES/machine.txt"
