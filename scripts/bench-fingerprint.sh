#!/bin/sh
# Time `deploycache fingerprint --sorted` on a generated 10,000-file ISO tree.
#
#   scripts/bench-fingerprint.sh [FILES] [RUNS]
#
# The tree is deterministic (same names, same bytes every run) and lives in a
# temporary directory that is removed afterwards. It imitates an unpacked Fuel
# ISO: package pools full of small .deb stand-ins, dists/ trees with top-level
# Release files carrying MD5Sum sections of realistic size (~600 entries each),
# binary-* component Release files (skipped by the algorithm), a bootstrap
# config and a DEA. Builds the release binary first (cargo build --release).
set -eu

FILES=${1:-10000}
RUNS=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/deploycache"

(cd "$here" && cargo build --release --quiet)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deploycache-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
iso="$tmp/iso"

python3 - "$iso" "$FILES" <<'PY'
import hashlib, os, sys
iso, total = sys.argv[1], int(sys.argv[2])
count = 0
def write(path, data):
    global count
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    count += 1
def md5(s):
    return hashlib.md5(s.encode()).hexdigest()
def release(suite, entries):
    lines = ["Origin: Mirantis", "Suite: %s" % suite, "Architectures: amd64", "MD5Sum:"]
    for i in range(entries):
        name = "main/binary-amd64/Packages-%05d" % i
        lines.append(" %s %8d %s" % (md5(suite + name), 1000 + i, name))
    lines.append("SHA1:")
    for i in range(entries):
        lines.append(" %s %8d main/x-%05d" % (hashlib.sha1(str(i).encode()).hexdigest(), i, i))
    return ("\n".join(lines) + "\n").encode()
mirrors = ["ubuntu", "mitaka-9.0/ubuntu/x86_64", "mitaka-9.0/ubuntu/auxiliary", "mos-updates"]
suites = ["trusty", "trusty-updates", "trusty-security", "mos9.0", "mos9.0-proposed"]
for m in mirrors:
    for s in suites:
        base = os.path.join(iso, m, "dists", s)
        write(os.path.join(base, "Release"), release(s, 600))
        write(os.path.join(base, "Release.gpg"), b"-----BEGIN PGP SIGNATURE-----\n")
        for comp in ("main", "restricted", "universe"):
            write(os.path.join(base, comp, "binary-amd64", "Release"), release(s + comp, 40))
            write(os.path.join(base, comp, "source", "Release"), b"Archive: x\nComponent: %s\n" % comp.encode())
write(os.path.join(iso, "opnfv", "fuel_bootstrap_cli.yaml"), b"flavor: ubuntu\npackages: [a, b]\n")
i = 0
while count < total:
    m = mirrors[i % len(mirrors)]
    path = os.path.join(iso, m, "pool", "main", "p%03d" % (i % 300), "pkg-%05d_1.0_amd64.deb" % i)
    write(path, b"!<arch>\n" + (b"%05d" % i) * 20)
    i += 1
with open(os.path.join(os.path.dirname(iso), "dea.yaml"), "w") as f:
    f.write("settings:\n  editable:\n    provision:\n      packages: {value: 'acl\n\n        vim'}\n"
            "    repo_setup:\n      repos: {value: [{name: ubuntu, priority: null}]}\n")
print("generated %d files under %s" % (count, iso))
PY

files=$(find "$iso" -type f | wc -l)
sync
echo "files: $files"
"$bin" fingerprint --iso-root "$iso" --dea "$tmp/dea.yaml" --output "$tmp/fp.yaml" --sorted >/dev/null # warm cache
best=""
n=0
while [ "$n" -lt "$RUNS" ]; do
    start=$(date +%s%N)
    "$bin" fingerprint --iso-root "$iso" --dea "$tmp/dea.yaml" --output "$tmp/fp.yaml" --sorted >/dev/null
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    echo "run $((n + 1)): ${ms} ms"
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    n=$((n + 1))
done
echo "best of $RUNS (warm page cache): ${best} ms for $files files"
