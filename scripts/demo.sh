#!/usr/bin/env bash
# The quick start: builds deploycache, stores two versions of a sample
# deploy-cache artifact, shows the dedupe achieved, exports the second
# version and checks every byte. Needs only the Rust toolchain and coreutils.
#
# The demo store lives in target/demo/store (override with DEPLOYCACHE_STORE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet
BIN=$PWD/target/release/deploycache
DEMO=$PWD/target/demo
export DEPLOYCACHE_STORE=${DEPLOYCACHE_STORE:-$DEMO/store}
rm -rf "$DEMO/input" "$DEMO/export" "$DEPLOYCACHE_STORE"
mkdir -p "$DEMO/input/root" "$DEMO/input/v1" "$DEMO/input/v2"

echo "== making two versions of a sample artifact (a bootstrap tar and a key pair)"
# A root file system of 300 "packages": half binary-like, half text.
root=$DEMO/input/root
for i in $(seq 1 300); do
    if (( i % 2 )); then
        head -c $(( 50000 + i * 997 )) /dev/urandom > "$root/pkg$i.so"
    else
        seq "$i" $(( i * 40 + 9000 )) > "$root/pkg$i.txt"
    fi
done
tar cf "$DEMO/input/v1/opnfv-bootstraps-cache.tar" -C "$root" .
printf 'ssh-rsa AAAAdemo v1\n' > "$DEMO/input/v1/id_rsa.pub"
# The update: 5 packages change, 2 are added, as a package update would.
for i in 11 57 120 201 299; do head -c 60000 /dev/urandom > "$root/pkg$i.so"; done
seq 1 50000 > "$root/pkg301.txt"; head -c 80000 /dev/urandom > "$root/pkg302.so"
tar cf "$DEMO/input/v2/opnfv-bootstraps-cache.tar" -C "$root" .
printf 'ssh-rsa AAAAdemo v2\n' > "$DEMO/input/v2/id_rsa.pub"

V1=1111111111111111111111111111111111111111
V2=2222222222222222222222222222222222222222
echo "== deploycache put (store: $DEPLOYCACHE_STORE)"
"$BIN" put "$V1" "$DEMO/input/v1"
"$BIN" put "$V2" "$DEMO/input/v2"
echo "== deploycache ls"
"$BIN" ls
echo "== deploycache stats"
"$BIN" stats
echo "== deploycache export $V2, then compare every byte"
"$BIN" export "$V2" "$DEMO/export"
cmp "$DEMO/input/v2/opnfv-bootstraps-cache.tar" "$DEMO/export/opnfv-bootstraps-cache.tar"
cmp "$DEMO/input/v2/id_rsa.pub" "$DEMO/export/id_rsa.pub"
"$BIN" cat "$V1" opnfv-bootstraps-cache.tar | cmp - "$DEMO/input/v1/opnfv-bootstraps-cache.tar"
"$BIN" verify --full

echo "== the mounted view: the same paths the deploy scripts use"
if ! command -v fusermount3 >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
    else
        echo "(skipped: fusermount3 missing; sudo apt-get install fuse3)"
        echo "== demo OK: both versions stored once, read back byte-identical"
        exit 0
    fi
fi
MNT=$DEMO/mnt
mkdir -p "$MNT"
"$BIN" umount "$MNT" 2>/dev/null || true
"$BIN" mount --daemon "$MNT"
trap '"$BIN" umount "$MNT"' EXIT
ls -la "$MNT" "$MNT/$V2"
# A cache miss, as the deploy scripts fill it: mkdir, then copy in.
V3=3333333333333333333333333333333333333333
mkdir -p "$MNT/$V3"
cp "$DEMO/input/v2/opnfv-bootstraps-cache.tar" "$DEMO/input/v2/id_rsa.pub" "$MNT/$V3/"
# A cache hit: read back through the mount, every byte compared.
sha256sum "$MNT/$V3/opnfv-bootstraps-cache.tar" "$DEMO/input/v2/opnfv-bootstraps-cache.tar"
cmp "$MNT/$V3/opnfv-bootstraps-cache.tar" "$DEMO/input/v2/opnfv-bootstraps-cache.tar"
"$BIN" stats | grep -E "artifacts|logical|unique|dedupe"
echo "== demo OK: three artifacts stored once, read back byte-identical, through the mount too"
