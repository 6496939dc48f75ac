#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/: the tar and gzip checks, the manifest
# record decoder, the pack scan) and, where cargo-fuzz is installed, runs
# each for SECONDS (default 60) with libFuzzer. Findings land in
# fuzz/artifacts/<target>/; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a regression test beside the code it broke.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz instruments with -Z flags, which only a nightly compiler takes;
# RUSTC_BOOTSTRAP=1 lets the stable one take them (this script sets it).
# Without cargo-fuzz (`cargo install cargo-fuzz`) only the build is checked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(check_tar check_gzip manifest_decode pack_scan)

if ! cargo fuzz --help >/dev/null 2>&1; then
    # The targets build on stable, uninstrumented (beside the main build,
    # whose dependencies they share).
    cargo build --manifest-path fuzz/Cargo.toml --bins --target-dir target
    echo "fuzz.sh: the targets build; cargo-fuzz is not installed, so none was run" >&2
    exit 0
fi

# Seeds: a small tar and gzip file for the checks (the first byte of an
# input is the size of the pieces it is fed in).
seed() {
    local dir=fuzz/corpus/$1 name=$2
    mkdir -p "$dir"
    # Read the input either way: a writer cut off would fail the pipeline.
    if [ -e "$dir/$name" ]; then cat >/dev/null; return; fi
    { printf '\x20'; cat; } >"$dir/$name"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/d/sub"
printf 'hello\n' >"$tmp/d/a.txt"
head -c 3000 /dev/zero | tr '\0' 'x' >"$tmp/d/sub/b.bin"
ln -s a.txt "$tmp/d/link"
tar -C "$tmp" --format=gnu -cf - d | seed check_tar gnu.tar
tar -C "$tmp" --format=pax -cf - d | seed check_tar pax.tar
tar -C "$tmp" --format=gnu -cf - d | gzip -c | seed check_gzip d.tar.gz
{ printf 'one'; } | gzip -c | seed check_gzip one.gz

export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz.sh: $t for ${secs}s" >&2
    # No sanitizer: the crate denies unsafe, and ASan would slow each run
    # several times over; panics and wrong answers are what is looked for.
    cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 || status=$?
done
exit "$status"
