#!/usr/bin/env python3
"""Deterministic synthetic stand-in for an Ubuntu root filesystem (benchmark corpus).

Why synthetic rather than debootstrap: debootstrap output depends on the mirror's
state on the day it runs, on package timestamps and on maintainer scripts; this
generator gives the same bytes on every machine and every run, in seconds.

What it models (see BENCHMARKS.md, "Corpus"):
  * a root of "packages", each a handful of files spread like a .deb's:
    ELF-like executables and shared libraries (skewed byte distribution, repeated
    prologue-like snippets, a .rodata string table, zero padding: gzip gets them to
    roughly half, like real x86-64 code), text (scripts, configs, docs, python:
    Zipf-distributed vocabulary, 3-4x compressible) and already-compressed data
    (man pages .gz, .png, .jar: incompressible);
  * kernel modules under lib/modules (the initrd is built from them), and
    var/lib/dpkg/status listing every package and version;
  * version 2 is a package update: ~3% of packages bumped (text files get a few
    lines inserted, half the ELF files are spliced at a few places as after a
    small patch and half fully rebuilt, compressed files are replaced), ~1% new
    packages, one package removed, dpkg status rewritten;
  * version V > 2 is version V-1 plus one more such update, with its own draws
    (v1 and v2 are the same bytes as before versions 3+ existed).

Only integer operations of CPython's Mersenne Twister drive every decision
(randrange, getrandbits, randbytes, choices without weights), so the output does
not depend on the platform's libm. Needs Python >= 3.9 (random.randbytes).

Subcommands:
  root DIR --version V --scale S   write the root tree; print a JSON summary (of the
                                   last update: what changed from version V-1)
  blob FILE --size N --seed X --kind {elf,text,data}
  cpio DIR FILE PREFIX...          newc cpio of DIR's files under PREFIXes (sorted, uid/gid 0)
  key FILE --seed X                a fake (unusable) OpenSSH key pair: FILE and FILE.pub
"""

import argparse
import base64
import json
import os
import random
import sys

EPOCH_V1 = 1500000000  # 2017-07-14: all v1 files carry this mtime
UPDATE_DAYS = 30  # files new or changed in update u carry EPOCH_V1 + (u - 1) * 30 days
ROOT_BYTES_AT_SCALE_1 = 400 * 1000 * 1000  # with the modules ~440 MB: fits 512 MiB of ext4
MODULES_BYTES_AT_SCALE_1 = 40 * 1000 * 1000
CHANGED_PER_MILLE = 30
ADDED_PER_MILLE = 10
KERNEL_VERSION = "4.4.0-98-generic"


def update_epoch(u):
    """The mtime of files new or changed in update u (v2's files: 2017-08-13)."""
    return EPOCH_V1 + (u - 1) * UPDATE_DAYS * 86400


# --- byte generators ---------------------------------------------------------


def _skew_table():
    """Map uniform bytes onto a skewed alphabet resembling x86-64 code bytes.

    0x00, 0xff, REX prefixes and common opcodes are over-represented, as in real
    .text; the entropy comes out near 6 bits per byte.
    """
    rng = random.Random(0x5EED)
    common = [0x00] * 60 + [0xFF] * 12 + [0x48] * 10 + [0x89] * 7 + [0x8B] * 7
    common += [0xE8] * 4 + [0x0F] * 5 + [0x83] * 4 + [0x24] * 3 + [0x44] * 3
    common += [0x4C] * 3 + [0xC3] * 2 + [0x74] * 2 + [0x75] * 2 + [0x85] * 2
    rest = [rng.randrange(256) for _ in range(256 - len(common))]
    table = common + rest
    rng.shuffle(table)
    return bytes(table)


SKEW = _skew_table()


def _vocabulary():
    """Lines of a Zipf-ish vocabulary: line i is drawn about 300/(i+1) times as
    often as the rarest, so files repeat phrases as real scripts and docs do."""
    rng = random.Random(0xC0FFEE)
    letters = "etaoinshrdlucmfwypvbgkjqxz_"
    base = ["the", "if", "then", "fi", "return", "def", "self", "=", "{", "}", "#",
            "/usr/lib", "None", "import", "echo", "done", "for", "in", "do", "(", ")",
            ":", "0", "1", "license", "GNU", "    ", "\t", "of", "to", "a", "is"]
    words = base + ["".join(letters[rng.randrange(len(letters))]
                            for _ in range(rng.randrange(2, 9))) for _ in range(1500)]
    zipf = [w for i, w in enumerate(words) for _ in range(max(1, 200 // (i + 1)))]
    lines = [" ".join(zipf[rng.randrange(len(zipf))] for _ in range(rng.randrange(2, 12)))
             for _ in range(3000)]
    return [ln + "\n" for i, ln in enumerate(lines) for _ in range(max(1, 300 // (i + 1)))]
VOCAB = _vocabulary()


def text_bytes(rng, size):
    """Text-like bytes (3-4x compressible by gzip)."""
    lines = rng.choices(VOCAB, k=size // 30 + 4)
    data = "".join(lines).encode()
    while len(data) < size:  # short draws on tiny sizes
        data += data
    return data[:size]


def elf_bytes(rng, size, snippets):
    """ELF-like bytes: header, .text of skewed bytes and repeated snippets,
    .rodata strings, zero padding. Compresses to roughly half with gzip."""
    out = [b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x03\x00\x3e\x00\x01\x00\x00\x00"
           + rng.randbytes(40)]
    n = 64
    text_end = size * 80 // 100
    while n < text_end:
        if rng.getrandbits(1):
            piece = snippets[rng.randrange(len(snippets))]
        else:
            piece = rng.randbytes(rng.randrange(16, 512)).translate(SKEW)
        out.append(piece)
        n += len(piece)
    pad = (-n) % 4096 if size > 65536 else 0
    out.append(bytes(min(pad, max(0, size - n))))
    n += pad
    if n < size:
        out.append(text_bytes(rng, size - n))
    return b"".join(out)[:size]


def data_bytes(rng, size):
    """Already-compressed data: incompressible, with a gzip magic."""
    return (b"\x1f\x8b\x08\x00" + rng.randbytes(max(0, size - 4)))[:size]


def make_bytes(kind, rng, size, snippets):
    if kind == "elf":
        return elf_bytes(rng, size, snippets)
    if kind == "text":
        return text_bytes(rng, size)
    return data_bytes(rng, size)


def splice(rng, data, kind, snippets):
    """A small patch: replace 1-4 ranges with fresh bytes of another length."""
    data = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        if not data:
            break
        at = rng.randrange(len(data))
        cut = rng.randrange(0, min(16384, len(data) - at) + 1)
        fresh = make_bytes(kind, rng, rng.randrange(64, 4096), snippets)
        data[at:at + cut] = fresh
    return bytes(data)


# --- the package model -------------------------------------------------------

# (kind, count weight, log2 size range, path template). Sizes are drawn
# log-uniformly: e = randrange(lo, hi), size = randrange(2**e, 2**(e+1)).
FILE_KINDS = [
    ("text", 30, (9, 17), "usr/share/{pkg}/{name}.txt"),
    ("text", 20, (9, 15), "usr/lib/python3/dist-packages/{pkg}/{name}.py"),
    ("text", 8, (10, 13), "usr/share/doc/{pkg}/copyright-{name}"),
    ("elf", 8, (12, 18), "usr/bin/{pkg}-{name}"),
    ("elf", 10, (12, 19), "usr/lib/x86_64-linux-gnu/lib{pkg}-{name}.so.1"),
    ("data", 12, (9, 13), "usr/share/man/man1/{pkg}-{name}.1.gz"),
    ("data", 8, (11, 18), "usr/share/{pkg}/{name}.png"),
]
KIND_TABLE = [k for k in FILE_KINDS for _ in range(k[1])]


def package_plan(seed_rng, index):
    """Name, file list (kind, size range, path) and a seed for package #index."""
    rng = random.Random(seed_rng * 1_000_003 + index)
    name = "pkg%05d-%s" % (index, "".join(chr(97 + rng.randrange(26)) for _ in range(5)))
    files = []
    for f in range(rng.randrange(3, 16)):
        kind, _, (lo, hi), template = KIND_TABLE[rng.randrange(len(KIND_TABLE))]
        e = rng.randrange(lo, hi)
        size = rng.randrange(1 << e, 1 << (e + 1))
        files.append((kind, size, template.format(pkg=name, name="f%02d" % f)))
    return name, files, rng.getrandbits(64)


def write_file(root, rel, data, mode, mtime):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def build_root(root, version, scale, seed):
    snippets_rng = random.Random(seed ^ 0xE1F)
    snippets = [snippets_rng.randbytes(snippets_rng.randrange(16, 200)).translate(SKEW)
                for _ in range(64)]
    target = int(ROOT_BYTES_AT_SCALE_1 * scale)
    # Plan v1's packages until the byte budget is met; the plan is the same for
    # both versions, so v2 differs only by the explicit changes below.
    plans, total = [], 0
    while total < target:
        plan = package_plan(seed, len(plans))
        plans.append(plan)
        total += sum(size for _, size, _ in plan[1])
    n = len(plans)
    n_changed = max(1, n * CHANGED_PER_MILLE // 1000)
    n_added = max(1, n * ADDED_PER_MILLE // 1000)
    # Update u (u = 2..version) turns v(u-1) into vu: it bumps n_changed of the
    # original packages, removes one and adds n_added. Update 2's draws are the
    # ones v2 always had (v1 and v2 keep their bytes); later updates draw from
    # their own seeds and apply on top of the earlier ones, so v3 is v2 plus a
    # small update, and so on.
    updates = []  # (u, changed, removed index, added plans)
    gone = set()
    for u in range(2, version + 1):
        choose = random.Random(seed ^ 0xC4A if u == 2 else (seed ^ 0xC4A) * 1_000_003 + u)
        order = list(range(n))
        choose.shuffle(order)
        changed = set(order[:n_changed])
        removed = order[n_changed] if u == 2 else next(
            i for i in order[n_changed:] if i != 0 and i not in gone)
        gone.add(removed)
        changed.add(0)  # package 0 feeds the initrd: an update regenerates it
        added = [package_plan(seed, 1_000_000 * (u - 1) + i) for i in range(n_added)]
        updates.append((u, changed, removed, added))
    last = updates[-1][0] if updates else 1

    summary = {"version": version, "packages": 0, "files": 0, "bytes": 0,
               "changed_packages": 0, "added_packages": 0, "removed_packages": 0,
               "changed_files": 0}
    status_lines = []

    def emit(plan, bumps, mtime):
        """Write a package; bumps: the updates (u) that changed it, in order."""
        name, files, pseed = plan
        rng = random.Random(pseed)
        # Each update's own decisions (update 2's seed is the one v2 always used).
        crngs = {u: random.Random(pseed ^ 0xB0B if u == 2 else (pseed ^ 0xB0B) * 1_000_003 + u)
                 for u in bumps}
        for kind, size, rel in files:
            data = make_bytes(kind, rng, size, snippets)
            fmtime = mtime
            for u in bumps:
                crng = crngs[u]
                if kind == "data" or (kind == "elf" and crng.getrandbits(1)):
                    data = make_bytes(kind, crng, size + crng.randrange(-size // 8, size // 8 + 1),
                                      snippets)
                else:
                    data = splice(crng, data, kind, snippets)
                fmtime = update_epoch(u)
                if u == last:
                    summary["changed_files"] += 1
            mode = 0o755 if rel.startswith("usr/bin/") else 0o644
            write_file(root, rel, data, mode, fmtime)
            summary["files"] += 1
            summary["bytes"] += len(data)
        ver = "1.%d-%dubuntu%d" % (pseed % 9, pseed % 5, 1 + len(bumps))
        status_lines.append("Package: %s\nStatus: install ok installed\nVersion: %s\n"
                            "Architecture: amd64\nInstalled-Size: %d\n"
                            % (name, ver, sum(s for _, s, _ in files) // 1024))
        summary["packages"] += 1

    for i, plan in enumerate(plans):
        if i in gone:
            summary["removed_packages"] += any(u == last and r == i for u, _, r, _ in updates)
            continue
        bumps = [u for u, changed, _, _ in updates if i in changed]
        summary["changed_packages"] += last in bumps
        emit(plan, bumps, EPOCH_V1)
        # New packages sort between existing ones, as new names do in a real root.
        if i * n_added // n != (i + 1) * n_added // n:
            for u, _, _, added in updates:
                emit(added[i * n_added // n], [], update_epoch(u))
                summary["added_packages"] += u == last

    # Kernel modules: identical in both versions (same kernel), feed the initrd.
    mrng = random.Random(seed ^ 0x30D)
    mbytes, m = 0, 0
    while mbytes < MODULES_BYTES_AT_SCALE_1 * scale:
        e = mrng.randrange(13, 19)
        size = mrng.randrange(1 << e, 1 << (e + 1))
        rel = "lib/modules/%s/kernel/drivers/mod%04d.ko" % (KERNEL_VERSION, m)
        write_file(root, rel, elf_bytes(mrng, size, snippets), 0o644, EPOCH_V1)
        mbytes += size
        m += 1
        summary["files"] += 1
        summary["bytes"] += size

    status = "\n".join(status_lines).encode()
    write_file(root, "var/lib/dpkg/status", status, 0o644,
               update_epoch(version))
    for rel, body in (("etc/hostname", b"bootstrap\n"),
                      ("etc/os-release", b'NAME="Ubuntu"\nVERSION="14.04.5 LTS, Trusty Tahr"\n')):
        write_file(root, rel, body, 0o644, EPOCH_V1)
    # Directories get the fixed time too (mksquashfs -all-time covers squashfs,
    # but mkfs.ext4 -d copies directory times from the source tree).
    for dirpath, _, _ in os.walk(root, topdown=False):
        os.utime(dirpath, (EPOCH_V1, EPOCH_V1))
    summary["files"] += 3
    summary["bytes"] += len(status) + 10 + 52
    return summary


# --- other artifacts ---------------------------------------------------------


def write_cpio(src, out, prefixes):
    """newc cpio of the files of src whose relative path starts with one of
    prefixes, with their parent directories: sorted, uid/gid 0, inode numbers
    from 1, file mtimes as on disk, directory mtimes fixed (they are created
    by this run, not by the generator)."""
    files = []
    for dirpath, _, filenames in os.walk(src):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            if rel.startswith(tuple(prefixes)):
                files.append(rel)
    dirs = {os.path.dirname(f) for f in files}
    for d in list(dirs):
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    dirs.discard("")
    with open(out, "wb") as fh:
        def header(name, mode, size, mtime, ino, nlink):
            name_b = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name_b), 0)
            hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
            fh.write(hdr + name_b + bytes((-(len(hdr) + len(name_b))) % 4))
        for ino, rel in enumerate(sorted(dirs | set(files)), 1):
            if rel in dirs:
                header(rel, 0o40755, 0, EPOCH_V1, ino, 2)
                continue
            path = os.path.join(src, rel)
            st = os.stat(path)
            with open(path, "rb") as f:
                data = f.read()
            header(rel, st.st_mode, len(data), int(st.st_mtime), ino, 1)
            fh.write(data + bytes((-len(data)) % 4))
        header("TRAILER!!!", 0, 0, 0, 0, 1)
        fh.write(bytes((-fh.tell()) % 512))


def write_key(path, seed):
    """A fake key pair: the shape of an OpenSSH key, none of its meaning."""
    rng = random.Random(seed)
    body = base64.encodebytes(b"openssh-key-v1\0fake-benchmark-key" + rng.randbytes(1600))
    with open(path, "wb") as fh:
        fh.write(b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + body.replace(b"\n", b"")
                 .replace(b"=", b"") + b"\n-----END OPENSSH PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    pub = base64.b64encode(b"\0\0\0\x07ssh-rsa" + rng.randbytes(279))
    with open(path + ".pub", "wb") as fh:
        fh.write(b"ssh-rsa " + pub + b" root@fuel-master\n")
    for p in (path, path + ".pub"):
        os.utime(p, (EPOCH_V1, EPOCH_V1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("root")
    r.add_argument("dir")
    r.add_argument("--version", type=int, required=True,
                   help="1: the base; V > 1: V-1 successive package updates of it")
    r.add_argument("--scale", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=20171)
    b = sub.add_parser("blob")
    b.add_argument("file")
    b.add_argument("--size", type=int, required=True)
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--kind", choices=("elf", "text", "data"), required=True)
    c = sub.add_parser("cpio")
    c.add_argument("dir")
    c.add_argument("file")
    c.add_argument("prefixes", nargs="+", help="relative path prefixes to include")
    k = sub.add_parser("key")
    k.add_argument("file")
    k.add_argument("--seed", type=int, required=True)
    args = ap.parse_args()

    if sys.version_info < (3, 9):
        sys.exit("rootfs.py: needs Python >= 3.9 (random.randbytes)")
    if args.cmd == "root":
        if os.path.exists(args.dir) and os.listdir(args.dir):
            sys.exit("rootfs.py: %s is not empty; remove it first" % args.dir)
        print(json.dumps(build_root(args.dir, args.version, args.scale, args.seed)))
    elif args.cmd == "blob":
        rng = random.Random(args.seed)
        snippets = [rng.randbytes(rng.randrange(16, 200)).translate(SKEW) for _ in range(64)]
        data = make_bytes(args.kind, rng, args.size, snippets)
        write_file(".", os.path.abspath(args.file), data, 0o644, EPOCH_V1)
    elif args.cmd == "cpio":
        write_cpio(args.dir, args.file, args.prefixes)
    elif args.cmd == "key":
        write_key(args.file, args.seed)


if __name__ == "__main__":
    main()
