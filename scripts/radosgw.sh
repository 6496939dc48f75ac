#!/usr/bin/env bash
# Start a throwaway one-mon, one-OSD (memstore) Ceph cluster with radosgw on
# 127.0.0.1, for deploycache's remote-store tests and benchmarks.
#
#   scripts/radosgw.sh start DIR [PORT]   prints AWS_ENDPOINT_URL=, AWS_ACCESS_KEY_ID=,
#                                         AWS_SECRET_ACCESS_KEY=, AWS_REGION= and
#                                         DEPLOYCACHE_TEST_S3=s3://deploycache-test lines
#                                         (eval-able; that bucket is created empty);
#                                         exits non-zero if it did not come up
#   scripts/radosgw.sh stop DIR           stops the daemons it started, by their PIDs
#   scripts/radosgw.sh kill-rgw DIR       SIGKILLs only radosgw (by its PID file) and waits
#                                         until it is gone: the server dying mid-request,
#                                         while the mon and the OSD (which holds the
#                                         objects, in memory) keep running
#   scripts/radosgw.sh start-rgw DIR      starts radosgw again, on its port, and waits
#                                         until it answers (exits non-zero if it does not)
#
# The monitor listens on PORT - 691 (6789 for the default 7480), so that
# clusters on different ports can run at once; $RADOSGW_MON_PORT overrides.
# Installs Debian's radosgw, ceph-mon, ceph-osd (and curl) when missing. Auth is `none`
# (loopback only, nothing persists: memstore), so every `ms … mode` must be
# `crc`: with the default (secure) radosgw fails "get_initial_auth_request
# returned -13" and exits only after 300 s.
set -euo pipefail
# No step fails silently (several send their errors to the daemons' logs).
trap 'echo "radosgw.sh: line $LINENO failed: $BASH_COMMAND" >&2; tail -n 5 "${DIR:-/nonexistent}"/log/*.log >&2 2>/dev/null || true' ERR
usage="usage: $0 start|stop|kill-rgw|start-rgw DIR [PORT]"
cmd=${1:?$usage}
DIR=${2:?$usage}
PORT=${3:-7480}
MON_PORT=${RADOSGW_MON_PORT:-$((PORT - 691))}
BUCKET=deploycache-test
KEY=DEPLOYCACHETEST
SECRET=deploycache-test-secret

stop() {
    local f pid pids=()
    for f in "$DIR"/run/*.pid; do
        pid=$(cat "$f" 2>/dev/null) || continue
        pids+=("$pid")
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$DIR"/run/*.pid
}

# Wait until radosgw answers on $PORT (60 s); false if it does not.
wait_rgw() {
    for _ in $(seq 120); do
        curl -fs -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "radosgw did not answer on 127.0.0.1:$PORT within 60 s; logs in $DIR/log" >&2
    tail -5 "$DIR"/log/*.log >&2 || true
    return 1
}

RGW_PID=$DIR/run/client.rgw.a.pid
case $cmd in
stop) stop; exit 0 ;;
kill-rgw)
    pid=$(cat "$RGW_PID" 2>/dev/null) || { echo "radosgw.sh: no radosgw running in $DIR ($RGW_PID)" >&2; exit 1; }
    kill -9 "$pid" 2>/dev/null || true
    # Gone, its port closed: what a client of a dead server meets.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then echo "radosgw.sh: radosgw $pid survived SIGKILL" >&2; exit 1; fi
    # Not left for `stop` to kill: the PID may be another process's by then.
    rm -f "$RGW_PID"
    exit 0 ;;
start-rgw)
    [ -f "$DIR/ceph.conf" ] || { echo "radosgw.sh: no cluster in $DIR (start it first)" >&2; exit 1; }
    if [ -f "$RGW_PID" ] && kill -0 "$(cat "$RGW_PID")" 2>/dev/null; then
        echo "radosgw.sh: radosgw already runs in $DIR (pid $(cat "$RGW_PID"))" >&2
        exit 1
    fi
    # The port radosgw was given when the cluster started.
    PORT=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\)$/\1/p' "$DIR/ceph.conf")
    radosgw --conf "$DIR/ceph.conf" -n client.rgw.a
    wait_rgw || exit 1
    exit 0 ;;
start) ;;
*) echo "$usage" >&2; exit 2 ;;
esac

if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v ceph-mon >/dev/null \
    || ! command -v curl >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # A fresh machine (or container) has no package lists yet.
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        radosgw ceph-mon ceph-osd curl >/dev/null
fi

stop
# Another server on these ports would answer the checks below in its place.
for p in "$PORT" "$MON_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "radosgw.sh: something already listens on 127.0.0.1:$p: stop it, or give another PORT" >&2
        exit 1
    fi
done
rm -rf "$DIR"
mkdir -p "$DIR"/{mon,osd,run,log,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = 127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms bind ipv4 = true
ms bind ipv6 = false
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 4294967296
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
[mon.a]
mon data = $DIR/mon
public addr = 127.0.0.1:$MON_PORT
[osd.0]
osd data = $DIR/osd
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
# A deleted object's data is freed by radosgw's gc, after 2 h by default:
# memstore (RAM) would fill up with what benchmarks and tests deleted.
rgw gc obj min wait = 60
rgw gc processor period = 30
CONF
C=(--conf "$CONF")
monmaptool --create --clobber --fsid "$FSID" --add a 127.0.0.1:$MON_PORT "$DIR/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap"
ceph-mon "${C[@]}" -i a
OSD_ID=$(ceph "${C[@]}" osd create)
ceph-osd "${C[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$(cat /proc/sys/kernel/random/uuid)" 2>/dev/null
ceph-osd "${C[@]}" -i "$OSD_ID" 2>/dev/null
ceph "${C[@]}" osd crush add "osd.$OSD_ID" 1.0 host=localhost root=default >/dev/null 2>&1 || true
radosgw "${C[@]}" -n client.rgw.a
wait_rgw || { stop; exit 1; }
radosgw-admin "${C[@]}" user create --uid=deploycache --display-name=deploycache \
    --access-key=$KEY --secret=$SECRET >/dev/null
# curl 7.88 signs no payload hash of its own: S3 wants the header.
if ! out=$(curl -sS --fail-with-body --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "http://127.0.0.1:$PORT/$BUCKET" 2>&1); then
    echo "radosgw.sh: creating bucket $BUCKET failed: $out" >&2
    stop
    exit 1
fi
echo "AWS_ENDPOINT_URL=http://127.0.0.1:$PORT"
echo "AWS_ACCESS_KEY_ID=$KEY"
echo "AWS_SECRET_ACCESS_KEY=$SECRET"
echo "AWS_REGION=us-east-1"
echo "DEPLOYCACHE_TEST_S3=s3://$BUCKET"
