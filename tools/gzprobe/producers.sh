#!/usr/bin/env bash
# Compress INPUT with each gzip producer issue 14 names, then probe every
# result with gzprobe (one JSON line per file, "producer" added).
#
#   tools/gzprobe/producers.sh INPUT OUT_DIR [PRODUCER...]  > results.jsonl
#
# Producers: gzip-1 … gzip-9 (GNU gzip from stdin: no name), gzip-6-name
# (`gzip FILE`: name and mtime in the header), gzip-n (`gzip -n FILE`),
# pigz-6, pigz-9 (pigz -p 2), python-6, python-9 (Python's gzip module),
# multi (gzip-6 of the first and second half, concatenated), zeros (gzip-6
# followed by 64 KiB of zeros, as dd'd images carry), empty (a member of
# nothing before gzip-6), truncated (gzip-6 cut at 60 %), damaged (gzip-6
# with 4 bytes flipped at 40 %). Default: all of them.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROBE=${GZPROBE:-$HERE/target/release/gzprobe}
IN=${1:?usage: producers.sh INPUT OUT_DIR [PRODUCER...]}
OUT=${2:?usage: producers.sh INPUT OUT_DIR [PRODUCER...]}
shift 2
ALL=(gzip-1 gzip-2 gzip-3 gzip-4 gzip-5 gzip-6 gzip-7 gzip-8 gzip-9 gzip-6-name gzip-n
    pigz-6 pigz-9 python-6 python-9 multi zeros empty truncated damaged)
(($#)) && set -- "$@" || set -- "${ALL[@]}"
mkdir -p "$OUT"
command -v pigz >/dev/null || { echo "producers.sh: needs pigz (apt install pigz)" >&2; exit 1; }

make() {
    local p=$1 f=$OUT/$1.gz size
    size=$(stat -c %s "$IN")
    case $p in
    gzip-[1-9]) gzip "-${p#gzip-}" -c <"$IN" >"$f" ;;
    gzip-6-name | gzip-n)
        local flag=-N
        [[ $p == gzip-n ]] && flag=-n
        cp -p "$IN" "$OUT/input.img"
        gzip -6 "$flag" -f "$OUT/input.img"
        mv "$OUT/input.img.gz" "$f" ;;
    pigz-6) pigz -p 2 -c <"$IN" >"$f" ;;
    pigz-9) pigz -p 2 -9 -c <"$IN" >"$f" ;;
    python-[69]) python3 -c 'import gzip,shutil,sys
with open(sys.argv[1],"rb") as i, gzip.GzipFile(sys.argv[2],"wb",compresslevel=int(sys.argv[3]),mtime=0) as o:
    shutil.copyfileobj(i,o,1<<20)' "$IN" "$f" "${p#python-}" ;;
    multi) { head -c $((size / 2)) "$IN" | gzip -6; tail -c +$((size / 2 + 1)) "$IN" | gzip -6; } >"$f" ;;
    zeros) { gzip -6 -c <"$IN"; head -c 65536 /dev/zero; } >"$f" ;;
    empty) { gzip -6 -c </dev/null; gzip -6 -c <"$IN"; } >"$f" ;;
    truncated) # (not gzip | head: gzip's SIGPIPE would fail the pipeline)
        gzip -6 -c <"$IN" >"$f.whole"
        head -c $(($(stat -c %s "$f.whole") * 6 / 10)) "$f.whole" >"$f"
        rm "$f.whole" ;;
    damaged)
        gzip -6 -c <"$IN" >"$f"
        printf '\x5a\xa5\x5a\xa5' | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") * 4 / 10)) conv=notrunc status=none ;;
    *) echo "producers.sh: unknown producer $p" >&2; exit 2 ;;
    esac
}

for p in "$@"; do
    make "$p"
    "$PROBE" analyze --scratch "$OUT" "$OUT/$p.gz" |
        python3 -c 'import json,sys
for l in sys.stdin:
    d = json.loads(l); d["producer"] = sys.argv[1]; d["input_bytes"] = int(sys.argv[2]); print(json.dumps(d))' \
            "$p" "$(stat -c %s "$IN")"
    rm -f "$OUT/$p.gz"
done
