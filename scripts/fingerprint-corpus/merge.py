#!/usr/bin/env python3
"""Merge legacy.py outputs of several PyYAML versions into expected.json.

    merge.py OUT.json VERSION=RESULTS.json...   (the first VERSION is the baseline)

Every case gets the baseline's outcome (PyYAML 3.10, what the 2016 legacy
tool ran); `versions` lists which PyYAML versions gave exactly that outcome,
and `differs` records any version whose outcome differed, so a divergence
between PyYAML releases stays visible instead of being averaged away.
"""
import json
import sys

out_path, pairs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
runs = [(v, json.load(open(p))) for v, p in pairs]
base_version, base = runs[0]
cases = {}
for name in sorted(base):
    want = base[name]
    key = lambda r: (r["bootstraps"], r["targetimages"], r["fingerprints_yaml"])
    agree = [v for v, r in runs if key(r[name]) == key(want)]
    differs = {v: {"bootstraps": r[name]["bootstraps"], "targetimages": r[name]["targetimages"],
                   "errors": r[name]["errors"]}
               for v, r in runs if key(r[name]) != key(want)}
    case = dict(want, versions=agree)
    if differs:
        case["differs"] = differs
    cases[name] = case
with open(out_path, "w") as f:
    json.dump({"baseline": "PyYAML " + base_version, "mirrors_input": "[]", "cases": cases},
              f, indent=1, sort_keys=True, ensure_ascii=True)
    f.write("\n")
