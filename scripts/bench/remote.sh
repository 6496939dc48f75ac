#!/usr/bin/env bash
# The remote (issue 17) against radosgw on loopback, side by side in one run:
#   - a cold read through the mount of a host with an empty cache (every
#     chunk from the bucket) of the corpus's largest file, against reading
#     the same bytes stored as one plain object with curl (ranged GETs of
#     4 MiB, one after another, and one whole-object GET);
#   - the bytes uploaded for v2 after v1 (the bucket's pack objects before
#     and after, listed by curl), against v2's new chunks as `put` counts them;
#   - the time until a second host sees a new artifact: through its mount
#     (which pulls every 10 s), and with `ls` right after the put.
#
#   scripts/bench/remote.sh BIN [OUT]
#
# Corpus: $CORPUS/v1 and v2 (default /work/benchdata/gz/corpus, made by
# scripts/bench/corpus.sh --versions 2). Scratch under $BENCH_DIR/remote.
# Starts its own radosgw (scripts/radosgw.sh, port 7580) and stops it.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$(readlink -f "${1:?usage: remote.sh BIN [OUT]}")
OUT=${2:-/dev/stdout}
CORPUS=${CORPUS:-/work/benchdata/gz/corpus}
DIR=${BENCH_DIR:-/work/benchdata}/remote
PORT=${PORT:-7580}
log() { printf '[remote bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
mbps() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", n / 1e6 / ((b - a) / 1e9) }'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

for v in v1 v2; do [ -d "$CORPUS/$v" ] || { echo "remote.sh: no $CORPUS/$v (scripts/bench/corpus.sh --versions 2)" >&2; exit 1; }; done
umount_all() { for m in "$DIR"/mnt-*; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; }
cleanup() { umount_all; "$REPO/scripts/radosgw.sh" stop "$DIR/rgw" || true; }
trap cleanup EXIT
umount_all
rm -rf "$DIR"/host-* "$DIR"/plain "$DIR"/mnt-*
mkdir -p "$DIR"
log "starting radosgw on 127.0.0.1:$PORT"
eval "$("$REPO/scripts/radosgw.sh" start "$DIR/rgw" "$PORT")"
export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
BUCKET=${DEPLOYCACHE_TEST_S3#s3://}
PREFIX=bench-$(date +%s)
REMOTE=s3://$BUCKET/$PREFIX
# curl 7.88 signs the payload hash header only when it is given.
SIGV4=(--aws-sigv4 "aws:amz:${AWS_REGION}:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

# pack_bytes: bytes of the objects under PREFIX/packs/ (ListObjectsV2, paged).
pack_bytes() {
    local token="" total=0 page sizes
    while :; do
        # SigV4 signs the query as sent: its parameters in order, `/` encoded.
        page=$(curl -fsS "${SIGV4[@]}" "$AWS_ENDPOINT_URL/$BUCKET?${token:+continuation-token=$token&}list-type=2&max-keys=1000&prefix=$PREFIX%2Fpacks%2F")
        sizes=$(grep -o '<Size>[0-9]*</Size>' <<<"$page" | tr -dc '0-9\n' || true)
        total=$((total + $(awk '{ s += $1 } END { print s + 0 }' <<<"$sizes")))
        token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | sed 's/.*>//' || true)
        [ -n "$token" ] || break
        token=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$token")
    done
    echo "$total"
}
host() { # host ID ARGS...: the binary as host ID, with its own store
    local id=$1; shift
    DEPLOYCACHE_HOST_ID=$id "$BIN" --store "$DIR/host-$id" --remote "$REMOTE" "$@"
}
SHA1=1111111111111111111111111111111111111111
SHA2=2222222222222222222222222222222222222222
SHA3=3333333333333333333333333333333333333333

log "host a: put v1"
t0=$(now); host a put "$SHA1" "$CORPUS/v1" >/dev/null 2>"$DIR/put1.err"; t1=$(now)
v1_bytes=$(du -sb "$CORPUS/v1" | cut -f1)
put1_s=$(secs "$t0" "$t1")
after1=$(pack_bytes)

log "host b: put v2 (after pulling v1)"
host b put "$SHA2" "$CORPUS/v2" >"$DIR/put2.out" 2>"$DIR/put2.err"
after2=$(pack_bytes)
uploaded2=$((after2 - after1))
new2=$(sed -n 's/.*stored, \(.*\) new$/\1/p' "$DIR/put2.out")
v2_bytes=$(du -sb "$CORPUS/v2" | cut -f1)

# The largest file of v1, read cold by a third host through its mount.
big=$(ls -S "$CORPUS/v1" | head -1)
size=$(stat -c %s "$CORPUS/v1/$big")
log "host c: cold read of $big ($size bytes) through its mount"
host c ls >/dev/null
mkdir -p "$DIR/mnt-c"
DEPLOYCACHE_HOST_ID=c "$BIN" --store "$DIR/host-c" mount --daemon --no-convert "$DIR/mnt-c" >/dev/null
drop_caches
t0=$(now); cat "$DIR/mnt-c/$SHA1/$big" >/dev/null; t1=$(now)
mount_cold=$(mbps "$size" "$t0" "$t1")
drop_caches
t0=$(now); cat "$DIR/mnt-c/$SHA1/$big" >/dev/null; t1=$(now)
mount_warm=$(mbps "$size" "$t0" "$t1")
cmp <(cat "$DIR/mnt-c/$SHA1/$big") "$CORPUS/v1/$big" || { echo "remote.sh: the mount's bytes differ" >&2; exit 1; }

log "plain object: PUT $big, then ranged GETs and one GET with curl"
curl -fsS "${SIGV4[@]}" -T "$CORPUS/v1/$big" "$AWS_ENDPOINT_URL/$BUCKET/$PREFIX-plain/$big" >/dev/null
t0=$(now)
off=0
while [ "$off" -lt "$size" ]; do
    end=$((off + 4194304 - 1)); [ "$end" -lt "$size" ] || end=$((size - 1))
    curl -fsS "${SIGV4[@]}" -r "$off-$end" "$AWS_ENDPOINT_URL/$BUCKET/$PREFIX-plain/$big" >/dev/null
    off=$((end + 1))
done
t1=$(now)
curl_ranged=$(mbps "$size" "$t0" "$t1")
t0=$(now); curl -fsS "${SIGV4[@]}" "$AWS_ENDPOINT_URL/$BUCKET/$PREFIX-plain/$big" >/dev/null; t1=$(now)
curl_whole=$(mbps "$size" "$t0" "$t1")

log "time until another host sees a new artifact"
mkdir -p "$DIR/v3" && cp "$CORPUS/v1/id_rsa.pub" "$DIR/v3/"
host a put "$SHA3" "$DIR/v3" >/dev/null 2>&1
t_put=$(now)
t0=$(now); host d ls "$SHA3" >/dev/null; t1=$(now)
ls_s=$(secs "$t0" "$t1")
# Through c's mount: it pulls every 10 s.
SHA4=4444444444444444444444444444444444444444
host a put "$SHA4" "$DIR/v3" >/dev/null 2>&1
t_put=$(now)
while [ ! -e "$DIR/mnt-c/$SHA4/id_rsa.pub" ]; do sleep 0.05; done
t_seen=$(now)
mount_seen=$(secs "$t_put" "$t_seen")
fusermount3 -u "$DIR/mnt-c"

log "many commits: a new host's start-up, and gc"
N=${COMMITS:-300}
rm -rf "$DIR/many"
for i in $(seq 1 "$N"); do
    d="$DIR/many/$(printf '%040x' "$i")"; mkdir -p "$d"
    head -c 20000 /dev/urandom >"$d/img"
done
host w import "$DIR/many" >/dev/null 2>&1
t0=$(now); host n ls >/dev/null; t1=$(now)
startup_s=$(secs "$t0" "$t1")
host w remote gc-owner --take --grace 1s >/dev/null
sleep 2
t0=$(now); host w gc --dry-run >/dev/null; t1=$(now)
gc_dry_s=$(secs "$t0" "$t1")
t0=$(now); host w gc --max-size $((N / 2 * 20000)) >/dev/null; t1=$(now)
gc_evict_s=$(secs "$t0" "$t1")
sleep 2
t0=$(now); host w gc >/dev/null; t1=$(now)
gc_sweep_s=$(secs "$t0" "$t1")

{
    echo "## The remote: one cache for many jumphosts (issue 17)"
    echo
    echo "radosgw (Ceph, Debian's packages; one mon, one memstore OSD) on 127.0.0.1, the"
    echo "machine of BENCHMARKS.md; run $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Corpus: $CORPUS v1 and v2 (a package update apart)."
    echo
    echo "| measurement | value |"
    echo "|---|---|"
    echo "| host a: put v1 ($v1_bytes bytes) and publish | $put1_s s; $after1 bytes of packs in the bucket |"
    echo "| host b: put v2 ($v2_bytes bytes) after v1: uploaded | **$uploaded2 bytes** of packs |"
    echo "| v2's new chunks, as \`put\` counts them | $new2 |"
    echo "| cold read of $big ($size bytes) through host c's mount, empty cache | **$mount_cold MB/s** |"
    echo "| the same, again (blocks in c's cache, page cache dropped) | $mount_warm MB/s |"
    echo "| the same bytes as one plain object: curl, 4 MiB ranged GETs one after another | **$curl_ranged MB/s** |"
    echo "| the same: curl, one whole-object GET | $curl_whole MB/s |"
    echo "| another host's \`ls\` right after a put: sees it, in | $ls_s s (its pull included) |"
    echo "| another host's mount (pulls every 10 s): sees it after | $mount_seen s |"
    echo "| a new host's first \`ls\` with $N commits in the remote (its pull: GETs 8 at a time) | $startup_s s |"
    echo "| the remote's gc with $N live artifacts: \`--dry-run\` (reads every commit) | $gc_dry_s s |"
    echo "| the same: \`--max-size\` evicting half (removal commits, one PUT each), marking | $gc_evict_s s |"
    echo "| the same: the sweep a grace period later | $gc_sweep_s s |"
} >"$OUT"
log "done"
