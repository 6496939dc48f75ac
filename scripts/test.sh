#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every test.
# The tests mount real FUSE filesystems, start sshd on 127.0.0.1 and drive
# the binary with real tools, so they need: fuse3 (fusermount3, /dev/fuse),
# openssh-server + openssh-client (sshd, scp, ssh-keygen), GNU time
# (/usr/bin/time, for peak-RSS checks), util-linux (flock), tar, gzip, rsync.
# The package tests (tests/it/package.rs) need the .deb that `cargo deb`
# builds (cargo-deb, installed here when missing; dpkg-dev for its library
# dependencies), man-db (man -l renders each page), systemd (systemd-analyze verify
# checks the unit) and git (--version). The remote's tests (tests/inproc/bucket.rs)
# run against radosgw on 127.0.0.1 (scripts/radosgw.sh installs and starts it;
# $DEPLOYCACHE_RGW_PORT, default 7480): without it they fail. The two-host tests
# (tests/it/remote.rs) skew one host's clock with faketime.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v scp >/dev/null || need+=(openssh-client)
[ -x /usr/bin/time ] || need+=(time)
command -v flock >/dev/null || need+=(util-linux)
command -v rsync >/dev/null || need+=(rsync)
command -v tar >/dev/null || need+=(tar)
command -v gzip >/dev/null || need+=(gzip)
command -v man >/dev/null || need+=(man-db)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v git >/dev/null || need+=(git)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
command -v faketime >/dev/null || need+=(faketime)
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # --no-install-recommends: Ceph recommends a long tail the tests never use.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# FUSE needs the device node; containers sometimes lack it until modprobe.
[ -e /dev/fuse ] || { modprobe fuse 2>/dev/null || true; }

# The package under test, built as an admin builds it. Costs a release build
# (and, on a machine without cargo-deb, its install: about 2 min on two cores).
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
deb=$(cargo deb | tail -n 1)
[ -f "$deb" ] || { echo "test.sh: cargo deb did not name its package (got: $deb)" >&2; exit 1; }
export DEPLOYCACHE_DEB="$deb"

# The fuzz targets (fuzz/, a workspace of its own) must keep building
# against the library: type-checked here without libFuzzer's C++ (about
# 15 s); scripts/fuzz.sh builds and runs them.
cargo check --manifest-path fuzz/Cargo.toml --no-default-features --bins --target-dir target

# The S3 server the remote's tests use: a one-OSD Ceph with radosgw, in
# memory, in a directory of its own; stopped by its PIDs however this exits.
rgw=$(mktemp -d)
log=$(mktemp)
trap 'scripts/radosgw.sh stop "$rgw/ceph" || true; rm -rf "$rgw" "$log"' EXIT
# A second try: once in a few hundred starts on a loaded machine a daemon
# fails to come up (CI saw it once); radosgw.sh says which step failed.
if ! env=$(scripts/radosgw.sh start "$rgw/ceph" "${DEPLOYCACHE_RGW_PORT:-7480}"); then
    echo "test.sh: radosgw did not start; trying once more in 5 s" >&2
    scripts/radosgw.sh stop "$rgw/ceph" || true
    sleep 5
    if ! env=$(scripts/radosgw.sh start "$rgw/ceph" "${DEPLOYCACHE_RGW_PORT:-7480}"); then
        echo "test.sh: radosgw did not start (see above; DEPLOYCACHE_RGW_PORT=PORT picks another port); the remote's tests need it" >&2
        exit 1
    fi
fi
while IFS='=' read -r name value; do
    case $name in
        AWS_*|DEPLOYCACHE_TEST_S3) export "$name=$value" ;;
    esac
done <<<"$env"
[ -n "${DEPLOYCACHE_TEST_S3:-}" ] || { echo "test.sh: radosgw.sh printed no DEPLOYCACHE_TEST_S3" >&2; exit 1; }

# Two cores: one test thread per core keeps the FUSE and kill -9 tests honest.
status=0
cargo test --all-targets -- --test-threads="$(nproc)" "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per target,
# and the last target, an example, has no tests).
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
