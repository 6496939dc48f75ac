#!/bin/sh
# Regenerate tests/fixtures/fingerprints-generated/ (cases and expected.json).
#
#   scripts/fingerprint-corpus/regenerate.sh [COUNT] [SEED]
#
# Needs CPython 2.7 (a wide build, as on the CI hosts of 2016; here
# PYENV_VERSION=2.7.18 python2) and network access to PyPI once: each PyYAML
# version is installed into $PYYAML_CACHE (default /tmp/fp-pyyaml/VERSION) with
# pip's --target.  The YAML cases are written by generate.py (Python 3,
# seeded, reproducible); the expected outputs by legacy.py, the legacy
# algorithm under each PyYAML version, merged by merge.py with PyYAML 3.10 as
# the baseline.  cargo test reads the result; it never needs Python.
set -eu
COUNT=${1:-600}
SEED=${2:-15}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../../tests/fixtures/fingerprints-generated"
cache=${PYYAML_CACHE:-/tmp/fp-pyyaml}
versions="3.10 3.11 3.12 3.13 5.1 5.3.1 5.4.1"
py2() { PYENV_VERSION=2.7.18 python2 "$@"; }

for v in $versions; do
    if [ ! -f "$cache/$v/yaml/__init__.py" ]; then
        py2 -m pip install -q --no-deps --target "$cache/$v" "PyYAML==$v"
    fi
done
rm -rf "$out/cases"
python3 "$here/generate.py" "$out" "$COUNT" "$SEED"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
args=""
for v in $versions; do
    # Relative paths, so that messages name cases/gNNNN.yaml wherever the tree is.
    (cd "$out" && py2 "$here/legacy.py" "$cache/$v" cases/*.yaml) >"$tmp/$v.json"
    args="$args $v=$tmp/$v.json"
done
# shellcheck disable=SC2086
python3 "$here/merge.py" "$out/expected.json" $args
echo "wrote $COUNT cases and expected.json under $out"
