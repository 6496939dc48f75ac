#!/usr/bin/env bash
# deploycache benchmark: one run, side by side on one disk, against cp+sync,
# casync, borg and restic. Results go to BENCHMARKS.md as Markdown tables.
#
#   scripts/bench.sh [--scale S] [--out FILE] [--quick] [--repeat N] [--chunk-sweep] [--keep]
#
#   --scale S   corpus size multiplier (default 1: tar ~300 MB, ext4 512 MiB)
#   --out FILE  report path (default BENCHMARKS.md at the repository root;
#               with --quick, $BENCH_DIR/BENCHMARKS-quick.md)
#   --quick     tiny corpus (scale 0.02): tests this script in ~2 minutes
#   --repeat N  time every measurement N times and report the median (default 1;
#               the machine is shared, so BENCHMARKS.md is made with --repeat 5)
#   --chunk-sweep  also store both versions with casync at average chunk sizes
#               16 KiB..1 MiB to show dedupe versus chunk size (~8 min at scale 1)
#   --keep      keep the stores and copies under $BENCH_DIR/run afterwards
#
# Scratch data lives under $BENCH_DIR (default /work/benchdata); DEPLOYCACHE_BIN
# benchmarks that binary instead of building target/release/deploycache. The corpus is
# rebuilt only when its scripts or the scale changed. Run as root on Debian: it
# installs its tools with apt-get and drops the page cache before cold runs
# (when /proc/sys/vm/drop_caches is not writable, it says so and the "cold"
# numbers are really warm-ish).
#
# Parts that need a deploycache subcommand not built yet (put, cat, stats,
# mount) print "n/a" or "skipped: ..." so the script works at every stage of
# the project.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/scripts/bench
BENCH_DIR=${BENCH_DIR:-/work/benchdata}
SCALE=1
OUT=
QUICK=0
REPEAT=1
SWEEP=0
KEEP=0
# Fixed and printed nowhere but here: the benchmark repositories hold only
# synthetic data, the password exists because restic demands one.
export RESTIC_PASSWORD=deploycache-bench-not-a-secret
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_EXIT_CODES=legacy

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '4,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

parse_args() {
    while (($#)); do
        case $1 in
        --scale) SCALE=${2:?--scale needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a path}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --repeat) REPEAT=${2:?--repeat needs a count}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --chunk-sweep) SWEEP=1; shift ;;
        -h | --help) usage ;;
        *) usage ;;
        esac
    done
    if ((QUICK)); then
        SCALE=0.02
        OUT=${OUT:-$BENCH_DIR/BENCHMARKS-quick.md}
    fi
    OUT=${OUT:-$REPO/BENCHMARKS.md}
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat needs a positive count, not $REPEAT"
}

# --- set-up -------------------------------------------------------------------

# Install every tool the run uses, only when missing (Debian package names).
ensure_tools() {
    local -A need=(
        [casync]=casync [borg]=borgbackup [restic]=restic [mksquashfs]=squashfs-tools
        [fusermount3]=fuse3 [sshd]=openssh-server [scp]=openssh-client
        [ssh-keygen]=openssh-client [python3]=python3 [debugfs]=e2fsprogs
        [lscpu]=util-linux [b3sum]=b3sum
    )
    local missing=() cmd
    for cmd in "${!need[@]}"; do
        command -v "$cmd" >/dev/null || [[ -x /usr/sbin/$cmd ]] || missing+=("${need[$cmd]}")
    done
    [[ -x /usr/bin/time ]] || missing+=(time)
    # borg mount needs a FUSE binding for Python; Debian's borgbackup only suggests it.
    /usr/bin/python3 -c 'import pyfuse3' 2>/dev/null ||
        /usr/bin/python3 -c 'import llfuse' 2>/dev/null || missing+=(python3-pyfuse3)
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build_deploycache() {
    if [[ -n ${DEPLOYCACHE_BIN:-} ]]; then
        # Benchmark a given binary (another build, or a stand-in to test this script).
        DC=$DEPLOYCACHE_BIN
        [[ -x $DC ]] || die "DEPLOYCACHE_BIN=$DC is not executable"
        return
    fi
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    DC=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/deploycache
    [[ -x $DC ]] || die "no binary at $DC after cargo build"
}

# has_sub CMD: does this deploycache build have subcommand CMD?
has_sub() { "$DC" "$1" --help >/dev/null 2>&1; }

# Build the corpus unless one from the same scripts and scale is already there.
ensure_corpus() {
    CORPUS=$BENCH_DIR/corpus
    ((QUICK)) && CORPUS=$BENCH_DIR/corpus-quick
    local stamp
    stamp=$(cat "$BENCH/corpus.sh" "$BENCH/rootfs.py" <(echo "$SCALE") | sha256sum | cut -c1-16)
    if [[ -f $CORPUS/STAMP && $(cat "$CORPUS/STAMP") == "$stamp" ]]; then
        log "corpus up to date in $CORPUS"
    else
        log "building corpus (scale $SCALE) in $CORPUS"
        rm -rf "$CORPUS"
        "$BENCH/corpus.sh" "$CORPUS" --scale "$SCALE"
        echo "$stamp" >"$CORPUS/STAMP"
    fi
}

# --- measuring ------------------------------------------------------------------

DROP_OK=1
drop_caches() {
    sync
    if ((DROP_OK)); then
        if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
            DROP_OK=0
            log "cannot drop page caches (not root?): cold numbers will be warm"
            record note "Page caches could not be dropped (no permission): every 'cold' number below is really warm."
        fi
    fi
}

# record FIELD...: one tab-separated line of results for report.py.
record() { (IFS=$'\t'; echo "$*") >>"$RESULTS"; }

bytes_of() { du -sb --apparent-size "$@" | awk '{ s += $1 } END { print s + 0 }'; }
disk_bytes() { if [[ -e $1 ]]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# measure SECTION TOOL OP BYTES CMD...: time CMD (stdout discarded), its peak
# RSS and its CPU time (user+sys: on a shared machine the CPU a tool burns is
# steadier than its wall time). The wall clock is taken around /usr/bin/time
# for nanosecond resolution; %M is the largest RSS in the process tree.
measure() {
    local section=$1 tool=$2 op=$3 bytes=$4 t0 t1 rc=0 secs rss cpu
    shift 4
    t0=$(date +%s%N)
    # CMD is usually one of this script's functions (exported below), so it
    # runs in a child bash; that bash's few MiB never exceed the tools' own.
    /usr/bin/time -f '%e %M %U %S' -o "$RUN/time.out" bash -c '"$@"' bench "$@" >/dev/null 2>"$RUN/cmd.err" || rc=$?
    t1=$(date +%s%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    rss=$(awk 'END { print $2 }' "$RUN/time.out")
    cpu=$(awk 'END { printf "%.2f", $3 + $4 }' "$RUN/time.out")
    if ((rc)); then
        log "FAILED ($rc): $tool $op: $*"
        tail -5 "$RUN/cmd.err" >&2
        record time "$section" "$tool" "$op" "$bytes" "$secs" "${rss:-0}" "failed (exit $rc)" 0
        return 0
    fi
    log "$section $tool $op: ${secs}s, $((bytes / 1000000)) MB, peak RSS ${rss} KiB, CPU ${cpu}s"
    record time "$section" "$tool" "$op" "$bytes" "$secs" "$rss" ok "$cpu"
}

# reps COLD CMD...: run CMD (a measure call) REPEAT times; with COLD=1 the page
# cache is dropped before each. report.py takes the median.
reps() {
    local cold=$1 i
    shift
    for ((i = 0; i < REPEAT; i++)); do
        ((cold)) && drop_caches
        "$@"
    done
}

# na SECTION TOOL OP WHY: a row that cannot be measured with this build.
na() { record time "$1" "$2" "$3" 0 0 0 "n/a: $4"; }

# --- the tools, one ingest function each: ingest_TOOL STORE NAME DIR -------------
# Every ingest ends with sync inside the timed command: tools that fsync pay
# nothing more, tools that don't are charged for making their bytes durable,
# as cp is ("cp+sync" in the issue).

ingest_deploycache() { "$DC" --store "$1" put "$2" "$3" && sync; }
# The setting for hosts short of CPU (raw images only: the artifact
# directories hold gzip and squashfs, which no setting compresses).
ingest_deploycache-fast() { "$DC" --store "$1" --compression fast put "$2" "$3" && sync; }
ingest_cp() { mkdir -p "$1" && cp -r "$3" "$1/$2" && sync; }
ingest_casync() {
    mkdir -p "$1" && casync make --store="$1/default.castr" "$1/$2.caidx" "$3" && sync
}
ingest_borg() {
    # Paths in the archive are relative to the artifact directory, as a restore wants them.
    (cd "$3" && borg create --compression lz4 "$1::$2" .) && sync
}
ingest_restic() { (cd "$3" && restic --repo "$1" backup --quiet --tag "$2" .) && sync; }

init_store() {
    local tool=$1 store=$2
    rm -rf "$store"
    case $tool in
    borg) borg init --encryption none "$store" >/dev/null 2>&1 ;;
    restic) restic --repo "$store" init >/dev/null 2>&1 ;;
    *) : ;; # deploycache creates its store on first put; cp and casync need nothing
    esac
}

TOOLS=(deploycache cp casync borg restic)

# name_of LABEL: the fake 40-hex fingerprint an artifact is stored under.
name_of() { printf '%s' "$1" | sha1sum | cut -c1-40; }

# run_ingest SECTION DIR_V1 DIR_V2: for every tool, a fresh store; ingest v1,
# v2, then v1 again under a new name; record sizes after v1 and after v1+v2.
run_ingest() {
    local section=$1 v1=$2 v2=$3 tool store b1 b2 rep op tools=() t
    b1=$(bytes_of "$v1")
    b2=$(bytes_of "$v2")
    t=("${TOOLS[@]}")
    [[ $section == raw ]] && t=(deploycache deploycache-fast "${TOOLS[@]:1}")
    for tool in "${t[@]}"; do
        if [[ $tool == deploycache* ]] && ! has_sub put; then
            for op in v1 v2 v1-again; do na "$section" "$tool" "$op" "no put yet"; done
            continue
        fi
        tools+=("$tool")
    done
    # Repetitions go round the tools (every tool once, then again), so that
    # a change in the shared machine's load hits every tool alike. The
    # sequence is stateful (v2 lands on v1): each repetition starts from an
    # empty store.
    for ((rep = 0; rep < REPEAT; rep++)); do
        for tool in "${tools[@]}"; do
            store=$RUN/$section-$tool
            init_store "$tool" "$store"
            drop_caches
            measure "$section" "$tool" v1 "$b1" "ingest_$tool" "$store" "$(name_of "$section-v1")" "$v1"
            record size "$section" "$tool" v1 "$(disk_bytes "$store")"
            drop_caches
            measure "$section" "$tool" v2 "$b2" "ingest_$tool" "$store" "$(name_of "$section-v2")" "$v2"
            record size "$section" "$tool" v1+v2 "$(disk_bytes "$store")"
            drop_caches
            measure "$section" "$tool" v1-again "$b1" "ingest_$tool" "$store" "$(name_of "$section-v1-again")" "$v1"
        done
    done
    [[ " ${tools[*]} " == *" deploycache "* ]] || return 0
    store=$RUN/$section-deploycache
    if has_sub verify; then
        "$DC" --store "$store" verify >"$RUN/verify.out" 2>&1 ||
            record note "deploycache verify failed on the $section store: $(tail -1 "$RUN/verify.out")"
    fi
    if has_sub stats; then
        "$DC" --store "$store" stats --json >"$RUN/stats.json" 2>/dev/null &&
            record json "$section-deploycache-stats" "$(tr -d '\n' <"$RUN/stats.json")"
    fi
}

# Dedupe versus average chunk size on this corpus, with casync's chunker as the
# probe (it takes --chunk-size; deploycache's sizes are compile-time constants).
# Untimed: sizes only. Helps choose min/avg/max (issue 2 asks for it).
run_chunk_sweep() {
    local avg store dir v
    for avg in 16384 65536 262144 1048576; do
        for dir in ingest raw; do
            store=$RUN/sweep-$dir-$avg
            rm -rf "$store" && mkdir -p "$store"
            for v in v1 v2; do
                local src=$CORPUS/$v
                [[ $dir == raw ]] && src=$CORPUS/$v-raw
                casync make --chunk-size="$((avg / 4)):$avg:$((avg * 4))" \
                    --store="$store/default.castr" "$store/$v.caidx" "$src" >/dev/null 2>&1 ||
                    { record note "chunk sweep: casync make failed at avg $avg"; return 0; }
                record sweep "$dir" "$avg" "$v" "$(disk_bytes "$store")"
            done
            rm -rf "$store"
        done
    done
}

# --- read-back ----------------------------------------------------------------------

# All files in one process, as cat_plain reads them.
cat_deploycache() {
    local store=$1 name=$2
    shift 2
    "$DC" --store "$store" cat "$name" "$@"
}
cat_plain() { cat "$@"; }
extract_casync() { rm -rf "$3" && casync extract --store="$1/default.castr" "$1/$2.caidx" "$3" && sync; }
extract_borg() { borg extract --stdout "$1::$2"; }
extract_restic() { restic --repo "$1" dump --tag "$2" latest / ; }

# Untimed: every byte cat returns must be the original's, or the speed means nothing.
check_deploycache_cat() {
    local store=$1 name=$2 dir=$3 f want got
    for f in "$dir"/*; do
        want=$(sha256sum <"$f" | cut -d' ' -f1)
        got=$("$DC" --store "$store" cat "$name" "$(basename "$f")" | sha256sum | cut -d' ' -f1)
        if [[ $want != "$got" ]]; then
            log "MISMATCH: deploycache cat $name $(basename "$f")"
            record note "deploycache cat returned different bytes for $(basename "$f")"
            return 0
        fi
    done
    record note "deploycache cat returned every byte of v2 intact (sha256 compared)."
}

# Read back v2 (all its files) from each store, cold then warm.
run_readback() {
    local v2=$CORPUS/v2 name bytes files=() f
    name=$(name_of ingest-v2)
    bytes=$(bytes_of "$v2")
    for f in "$v2"/*; do files+=("$(basename "$f")"); done
    local plain=$RUN/ingest-cp/$name dc=0 rep
    local store=$RUN/ingest-deploycache
    if has_sub cat && has_sub put; then
        dc=1
        check_deploycache_cat "$store" "$name" "$v2"
    else
        na read deploycache "cat cold" "no put/cat yet"
        na read deploycache "cat warm" "no put/cat yet"
    fi
    # plain and deploycache in alternation, as in run_mount_vs_plain.
    for ((rep = 0; rep < REPEAT; rep++)); do
        drop_caches
        measure read plain "cat cold" "$bytes" cat_plain "${files[@]/#/$plain/}"
        if ((dc)); then
            drop_caches
            measure read deploycache "cat cold" "$bytes" cat_deploycache "$store" "$name" "${files[@]}"
        fi
    done
    cat_plain "${files[@]/#/$plain/}" >/dev/null
    ((dc)) && cat_deploycache "$store" "$name" "${files[@]}" >/dev/null
    for ((rep = 0; rep < REPEAT; rep++)); do
        measure read plain "cat warm" "$bytes" cat_plain "${files[@]/#/$plain/}"
        ((dc)) && measure read deploycache "cat warm" "$bytes" cat_deploycache "$store" "$name" "${files[@]}"
        # The floor of a checked read: BLAKE3 alone over the same bytes.
        measure read b3sum "warm" "$bytes" b3sum --num-threads "$(nproc)" "${files[@]/#/$plain/}"
    done
    reps 1 measure read casync "extract cold" "$bytes" extract_casync "$RUN/ingest-casync" "$name" "$RUN/casync-extract"
    rm -rf "$RUN/casync-extract"
    reps 1 measure read borg "extract --stdout cold" "$bytes" extract_borg "$RUN/ingest-borg" "$name"
    reps 1 measure read restic "dump cold" "$bytes" extract_restic "$RUN/ingest-restic" "$name"
}

# --- mounts (issue 3) ---------------------------------------------------------------

# wait_mounted DIR SECONDS: poll until DIR is a mount point (a daemon's mount
# becomes visible asynchronously), or fail.
wait_mounted() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        mountpoint -q "$1" && return 0
        sleep 0.1
    done
    return 1
}

# pid_of_mount MP: the pid of the deploycache process serving MP (its command
# line names the mount point).
pid_of_mount() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        [[ $cmd == *deploycache*" mount $1"* ]] && { basename "$p"; return 0; }
    done
    return 1
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

seq_read() { cat "$1"; }

# record_latency TOOL FILE: random 4 KiB reads of FILE with a cold page cache.
record_latency() {
    local p50 p99 n
    drop_caches
    read -r p50 p99 n < <(python3 "$BENCH/randread.py" "$2" 1000) || {
        record note "random-read probe of $1 failed"
        return 0
    }
    record lat "$1" "$p50" "$p99" "$n"
}
parallel_read() { local f=$1; cat "$f" & cat "$f" & cat "$f" & cat "$f" & wait; }

# SSH server on 127.0.0.1 for the scp flows: own host key, own client key, own
# config, a free port. Nothing outside $RUN/sshd is touched but /run/sshd,
# which sshd needs for privilege separation.
SSHD_PID=
start_sshd() {
    local d=$RUN/sshd
    mkdir -p "$d" /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
    cp "$d/client_key.pub" "$d/authorized_keys"
    SSH_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$d/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
    /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
    local i
    for ((i = 0; i < 50; i++)); do [[ -s $d/sshd.pid ]] && break; sleep 0.1; done
    SSHD_PID=$(cat "$d/sshd.pid")
    export SSH_PORT SSH_DIR=$d
}
scp_cmd() {
    scp -q -B -i "$SSH_DIR/client_key" -P "$SSH_PORT" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"
}
stop_sshd() { [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null; SSHD_PID=; }

scp_out() { scp_cmd "root@127.0.0.1:$1/*" "$2/" && sync; }
# The cache-miss flow: mkdir -p C/<sha>, then scp the files in.
scp_in() { mkdir -p "$2" && scp_cmd "$1"/* "root@127.0.0.1:$2/" && sync; }

# One repetition of scp of the whole v2 artifact out of and into DIR (plain
# or mounted); INTO_PARENT gets a new artifact directory each time, as each
# cache miss makes one.
scp_once() {
    local tool=$1 src_dir=$2 into_parent=$3 rep=$4 bytes
    bytes=$(bytes_of "$CORPUS/v2")
    rm -rf "$RUN/scp-dst" && mkdir -p "$RUN/scp-dst"
    drop_caches
    measure scp "$tool" "scp out (cold)" "$bytes" scp_out "$src_dir" "$RUN/scp-dst"
    rm -rf "$RUN/scp-dst"
    drop_caches
    measure scp "$tool" "scp in" "$bytes" scp_in "$CORPUS/v2" "$into_parent/$(name_of "scp-in-v2-$tool-$rep")"
}

# The file every mount benchmark reads: the largest of v2.
bench_file() { find "$CORPUS/v2" -type f -printf '%s %f\n' | sort -n | tail -1 | cut -d' ' -f2; }

# The plain directory and the deploycache mount, measured in alternation
# (plain, then mount, in every repetition) so that a change in the shared
# machine's load hits both alike.
run_mount_vs_plain() {
    local f name mp=$RUN/mnt-deploycache store=$RUN/ingest-deploycache plain plain_dir pid
    local size rep mounted=1
    f=$(bench_file)
    name=$(name_of ingest-v2)
    plain_dir=$RUN/ingest-cp/$name
    plain=$plain_dir/$f
    size=$(stat -c %s "$plain")
    mkdir -p "$mp" "$RUN/scp-plain"
    if ! has_sub mount || ! has_sub put; then
        log "skipped: deploycache mount not available"
        record skip mount "skipped: deploycache mount not available"
        mounted=0
    elif ! "$DC" --store "$store" mount "$mp" --daemon >"$RUN/mount.log" 2>&1 || ! wait_mounted "$mp" 10; then
        log "deploycache mount failed: $(tail -3 "$RUN/mount.log")"
        record skip mount "skipped: deploycache mount failed to start ($(tail -1 "$RUN/mount.log"))"
        mounted=0
    fi
    for ((rep = 0; rep < REPEAT; rep++)); do
        drop_caches
        measure mount plain "seq read cold" "$size" seq_read "$plain"
        if ((mounted)); then
            drop_caches
            measure mount deploycache "seq read cold" "$size" seq_read "$mp/$name/$f"
        fi
    done
    # Warm: each file was just read once (above), so its pages are cached.
    seq_read "$plain" >/dev/null
    ((mounted)) && seq_read "$mp/$name/$f" >/dev/null
    for ((rep = 0; rep < REPEAT; rep++)); do
        measure mount plain "seq read warm" "$size" seq_read "$plain"
        ((mounted)) && measure mount deploycache "seq read warm" "$size" seq_read "$mp/$name/$f"
    done
    record_latency plain "$plain"
    ((mounted)) && record_latency deploycache "$mp/$name/$f"
    for ((rep = 0; rep < REPEAT; rep++)); do
        scp_once plain "$plain_dir" "$RUN/scp-plain" "$rep"
        ((mounted)) && scp_once deploycache "$mp/$name" "$mp" "$rep"
    done
    ((mounted)) || return 0
    drop_caches
    measure mount deploycache "4 parallel seq reads cold (for daemon RSS)" "$((4 * size))" parallel_read "$mp/$name/$f"
    if pid=$(pid_of_mount "$mp"); then
        record rss deploycache "daemon VmHWM" "$(vm_hwm_kib "$pid")"
    else
        record note "Could not find the deploycache mount daemon's pid: its peak RSS is not reported."
    fi
    "$DC" umount "$mp" 2>/dev/null || fusermount3 -u "$mp"
}

run_borg_mount() {
    local f mp=$RUN/mnt-borg size
    f=$(bench_file)
    size=$(stat -c %s "$CORPUS/v2/$f")
    mkdir -p "$mp"
    if ! borg mount "$RUN/ingest-borg::$(name_of ingest-v2)" "$mp" 2>"$RUN/borg-mount.err" || ! wait_mounted "$mp" 20; then
        record skip borg-mount "skipped: borg mount failed ($(tail -1 "$RUN/borg-mount.err"))"
        return
    fi
    reps 1 measure mount borg "seq read cold" "$size" seq_read "$mp/$f"
    borg umount "$mp"
}

CASYNC_PID=
run_casync_mount() {
    local f mp=$RUN/mnt-casync size
    f=$(bench_file)
    size=$(stat -c %s "$CORPUS/v2/$f")
    mkdir -p "$mp"
    # casync mount stays in the foreground: run it in the background and wait.
    casync mount --store="$RUN/ingest-casync/default.castr" \
        "$RUN/ingest-casync/$(name_of ingest-v2).caidx" "$mp" 2>"$RUN/casync-mount.err" &
    CASYNC_PID=$!
    if ! wait_mounted "$mp" 20; then
        record skip casync-mount "skipped: casync mount failed ($(tail -1 "$RUN/casync-mount.err"))"
        kill "$CASYNC_PID" 2>/dev/null || true
        return
    fi
    reps 1 measure mount casync "seq read cold" "$size" seq_read "$mp/$f"
    fusermount -u "$mp" 2>/dev/null || fusermount3 -u "$mp" || true
    wait "$CASYNC_PID" 2>/dev/null || true
    CASYNC_PID=
}

# --- describing the run -----------------------------------------------------------

describe_machine() {
    record info date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    record info cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    record info nproc "$(nproc)"
    record info memory "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
    record info disk "$(df -T "$BENCH_DIR" | awk 'NR == 2 { print $1 " (" $2 "), " int($3 / 1048576) " GiB, " $6 }')"
    record info kernel "$(uname -sr)"
    # shellcheck source=/dev/null
    record info os "$(. /etc/os-release && echo "$PRETTY_NAME")"
    record info load "$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average at start; the machine is shared)"
    record info deploycache "$("$DC" --version 2>/dev/null || echo unknown) (git $(git -C "$REPO" rev-parse --short HEAD))"
    record info casync "$(casync --version 2>&1 | head -1)"
    record info borg "$(borg --version 2>&1 | head -1)"
    record info restic "$(restic version 2>&1 | head -1 | cut -d' ' -f1-2)"
    record info ssh "$(ssh -V 2>&1 | head -1)"
    record info squashfs "$(mksquashfs -version 2>&1 | head -1)"
    record info e2fsprogs "$(mke2fs -V 2>&1 | head -1)"
    record info scale "$SCALE"
    record info repeat "$REPEAT"
    record info drop_caches "$( ((DROP_OK)) && echo yes || echo no)"
    record info corpus "$CORPUS"
}

cleanup() {
    stop_sshd || true
    local mp
    for mp in "$RUN"/mnt-*; do
        [[ -d $mp ]] && mountpoint -q "$mp" && { fusermount3 -u "$mp" 2>/dev/null || fusermount -u "$mp" 2>/dev/null || true; }
    done
    [[ -n $CASYNC_PID ]] && kill "$CASYNC_PID" 2>/dev/null
    if ((KEEP == 0)) && [[ -n ${RUN:-} ]]; then
        # Keep the results, drop the stores and copies (gigabytes at scale 1).
        find "$RUN" -mindepth 1 -maxdepth 1 ! -name results.tsv -exec rm -rf {} +
    fi
}

# measure runs its command in a child bash: give it the functions and the binary.
export_for_measure() {
    export DC
    export -f ingest_deploycache ingest_deploycache-fast ingest_cp ingest_casync ingest_borg ingest_restic \
        cat_deploycache cat_plain extract_casync extract_borg extract_restic \
        seq_read parallel_read scp_cmd scp_out scp_in
}

main() {
    parse_args "$@"
    ensure_tools
    build_deploycache
    mkdir -p "$BENCH_DIR"
    ensure_corpus
    RUN=$BENCH_DIR/run
    ((QUICK)) && RUN=$BENCH_DIR/run-quick
    rm -rf "$RUN"
    mkdir -p "$RUN"
    RESULTS=$RUN/results.tsv
    # borg's and restic's caches go with the run, not into ~/.cache and ~/.config.
    export BORG_BASE_DIR=$RUN/borg-base RESTIC_CACHE_DIR=$RUN/restic-cache
    export_for_measure
    trap cleanup EXIT
    drop_caches
    describe_machine
    record json corpus-v1 "$(cat "$CORPUS/v1.summary.json")"
    record json corpus-v2 "$(cat "$CORPUS/v2.summary.json")"
    local f
    for f in "$CORPUS"/v1/* "$CORPUS"/v2/* "$CORPUS"/v1-raw/* "$CORPUS"/v2-raw/*; do
        record file "${f#"$CORPUS"/}" "$(stat -c %s "$f")"
    done

    log "ingest: artifact directories"
    run_ingest ingest "$CORPUS/v1" "$CORPUS/v2"
    log "ingest: raw ext4 images"
    run_ingest raw "$CORPUS/v1-raw" "$CORPUS/v2-raw"
    if ((SWEEP)); then
        log "chunk-size sweep (casync as the probe)"
        run_chunk_sweep
    fi
    log "read-back"
    run_readback
    log "mounts and scp"
    start_sshd
    run_mount_vs_plain
    run_borg_mount
    run_casync_mount
    stop_sshd
    if has_sub gc; then
        log "gc at scale (scripts/bench/gc.sh)"
        local small=()
        ((QUICK)) && small=(ARTIFACTS=50 FILES=20)
        env "${small[@]}" "$BENCH/gc.sh" "$DC" "$(dirname "$OUT")/BENCHMARKS-gc.md" ||
            log "FAILED: scripts/bench/gc.sh"
    fi
    if has_sub remote; then
        # The remote against radosgw on loopback (issue 17), on this run's
        # corpus (v1 and v2).
        log "the remote (scripts/bench/remote.sh)"
        CORPUS=$CORPUS "$BENCH/remote.sh" "$DC" "$(dirname "$OUT")/BENCHMARKS-remote.md" ||
            log "FAILED: scripts/bench/remote.sh"
    fi

    record info load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$BENCH/report.py" "$RESULTS" "$OUT"
    log "report written to $OUT"
}

main "$@"
