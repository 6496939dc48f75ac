# -*- coding: utf-8 -*-
"""The legacy deploy_cache.py YAML fingerprints, run under Python 2.7 + one PyYAML.

    PYENV_VERSION=2.7.18 python2 legacy.py PYYAML_DIR CASE.yaml...

PYYAML_DIR holds a `yaml` package (pip install --target DIR PyYAML==X).  Each
CASE.yaml is used both as the bootstrap config (bootstraps: the whole document
is hashed) and as the DEA (targetimages: settings.editable.provision.packages
and settings.editable.repo_setup.repos are hashed).  The mirrors fingerprint
is that of an ISO without Release files (json.dumps([])).  Prints one JSON
object: {case name: {bootstraps, targetimages, hashed, errors,
fingerprints_yaml}}, where a fingerprint that raises is null and its error
message is in errors.  This is the legacy algorithm, not the Rust code: do
not "fix" it to agree with deploycache.
"""
import hashlib
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.abspath(sys.argv[1]))
import yaml  # noqa: E402  (the PyYAML under test)

warnings.simplefilter("ignore")  # PyYAML 5.x warns about yaml.load without Loader


def bootstraps_text(path):
    with open(path) as f:
        return json.dumps(yaml.load(f), sort_keys=True)


def targetimages_text(path):
    with open(path) as f:
        dea = yaml.load(f)
    return json.dumps({
        'packages': dea['settings']['editable']['provision']['packages'],
        'repos': dea['settings']['editable']['repo_setup']['repos'],
    }, sort_keys=True)


def describe(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    if not isinstance(text, unicode):
        text = text.decode('utf-8', 'replace')
    return text.replace("\n", " ")[:300]


def run(path):
    out = {"hashed": {}, "errors": {}}
    digests = {"mirrors": hashlib.sha1(json.dumps([], sort_keys=True)).hexdigest()}
    for name, fn in (("bootstraps", bootstraps_text), ("targetimages", targetimages_text)):
        try:
            text = fn(path)
        except (Exception, RuntimeError) as exc:  # RecursionError is a RuntimeError here
            out[name] = None
            out["errors"][name] = describe(exc)
            continue
        out["hashed"][name] = text
        digests[name] = hashlib.sha1(text).hexdigest()
        out[name] = digests[name]
    if len(digests) == 3:
        out["fingerprints_yaml"] = yaml.safe_dump(digests, default_flow_style=False)
    else:
        out["fingerprints_yaml"] = None
    return out


def main():
    sys.setrecursionlimit(1000)  # the interpreter's default, as in the original
    results = {}
    for path in sys.argv[2:]:
        results[os.path.splitext(os.path.basename(path))[0]] = run(path)
    json.dump(results, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
