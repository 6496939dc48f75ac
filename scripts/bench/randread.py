#!/usr/bin/env python3
"""Random 4 KiB read latency of one file: randread.py FILE [COUNT] [SEED].

Prints "p50_us p99_us count". Offsets are 4 KiB-aligned, drawn from a seeded
PRNG so every tool is probed at the same offsets. The caller drops the page
cache first; POSIX_FADV_RANDOM keeps kernel read-ahead from warming the
neighbours of each probe (a FUSE file system may still read ahead itself,
which is part of what is measured).
"""
import os
import random
import sys
import time

BLOCK = 4096


def main():
    path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 4096)
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    if size < BLOCK:
        sys.exit("randread.py: %s is smaller than 4 KiB" % path)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    except OSError:
        pass  # not every file system takes advice; the probes still run
    blocks = size // BLOCK
    samples = []
    for _ in range(count):
        off = rng.randrange(blocks) * BLOCK
        t0 = time.perf_counter_ns()
        data = os.pread(fd, BLOCK, off)
        samples.append(time.perf_counter_ns() - t0)
        if len(data) != BLOCK:
            sys.exit("randread.py: short read at %d of %s" % (off, path))
    os.close(fd)
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, len(samples) * p // 100)] / 1000.0

    print("%.1f %.1f %d" % (pct(50), pct(99), count))


if __name__ == "__main__":
    main()
