#!/usr/bin/env bash
# A/B of two deploycache binaries on the paths the mount's hardening touched:
# a large file copied into the mount, many small files extracted into it
# (each created file costs a durable pending row), `put` of a large file, and
# a warm sequential read through the mount. The two binaries alternate in
# every repetition, so a change in the shared machine's load hits both.
#
#   scripts/bench/ab-mount.sh OLD_BIN NEW_BIN [REPEAT]
#
# Prints one line per measurement: the median seconds of each binary and
# NEW/OLD (below 1 is faster). Scratch data lives under $BENCH_DIR/ab
# (default /work/benchdata/ab). Run as root (FUSE, drop_caches).
set -euo pipefail
OLD=$1
NEW=$2
REPEAT=${3:-5}
DIR=${BENCH_DIR:-/work/benchdata}/ab
mkdir -p "$DIR"
cd "$DIR"

if [ ! -f big.tar ]; then
    mkdir -p src/tree
    head -c 200000000 /dev/urandom >src/rand.bin
    python3 - <<'EOF'
import random
random.seed(7)
words = [b"package ", b"version ", b"amd64\n", b"Depends: ", b"libc6 ", b"(>= 2.19) "]
with open("src/text.bin", "wb") as f:
    n = 0
    while n < 100_000_000:
        w = random.choice(words)
        f.write(w)
        n += len(w)
for i in range(2000):
    size = random.randint(4096, 65536)
    with open(f"src/tree/f{i:04}", "wb") as f:
        f.write(random.randbytes(size))
EOF
    tar cf big.tar -C src rand.bin text.bin
    tar cf small.tar -C src/tree .
fi

# time_of CMD...: seconds, after a sync so writes are counted to the disk.
time_of() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    sync
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

mount_store() { # BIN STORE MNT
    mkdir -p "$3"
    "$1" --store "$2" mount --daemon "$3" >/dev/null
}

unmount() {
    fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1"
}

declare -A results
for rep in $(seq "$REPEAT"); do
    for which in old new; do
        bin=$OLD
        [ "$which" = new ] && bin=$NEW
        rm -rf run && mkdir run
        "$bin" --store run/s init >/dev/null
        mount_store "$bin" run/s run/m
        mkdir run/m/A run/m/B
        results[$which.cp_big]+="$(time_of cp big.tar run/m/A/) "
        results[$which.tar_small]+="$(time_of tar xf small.tar -C run/m/B) "
        cat run/m/A/big.tar >/dev/null
        results[$which.cat_warm]+="$(time_of cat run/m/A/big.tar) "
        unmount run/m
        rm -rf run && mkdir run
        results[$which.put_big]+="$(time_of "$bin" --store run/s put X big.tar) "
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-10s %10s %10s %8s\n' measure old_s new_s new/old
for m in cp_big tar_small cat_warm put_big; do
    o=$(echo "${results[old.$m]}" | median)
    n=$(echo "${results[new.$m]}" | median)
    printf '%-10s %10.3f %10.3f %8.2f\n' "$m" "$o" "$n" "$(echo "$n / $o" | bc -l)"
done
rm -rf run
