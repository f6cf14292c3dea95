#!/usr/bin/python3
"""check_bootstrap: the bootstrap CIs of apps/report.c (methods/bootstrap.c) against numpy.
The resample indices come from this file's own Philox4x32-10 (the algorithm of Salmon et
al. 2011 with the key and counter layout of methods/vkd_bootstrap.h); the statistic of each
resample and the percentiles are numpy's (np.percentile, linear). Means and token-pooled
ratios, odd sizes (1, 7, 33), reps 1, 199 and 1000."""
import subprocess
import sys

import numpy as np

M32 = 0xFFFFFFFF
STREAM = 0x42530001


def philox(seed, hi, lo):
    c = [lo & M32, (lo >> 32) & M32, hi & M32, (hi >> 32) & M32]
    k0, k1 = seed & M32, (seed >> 32) & M32
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M32, (p0 >> 32) ^ c[3] ^ k1, p0 & M32]
    return c


def uniform(seed, pos):
    w = philox(seed, STREAM, pos)
    return (w[0] >> 8) / 16777216.0 + (w[1] >> 8) / 281474976710656.0


def reference(num, den, reps, seed):
    n = len(num)
    num, den = np.array(num, dtype=np.float64), np.array(den if den is not None else [1.0] * n)
    stats = []
    for r in range(reps):
        idx = np.array([min(int(uniform(seed, r * n + i) * n), n - 1) for i in range(n)])
        d = den[idx].sum()
        if d != 0:
            stats.append(num[idx].sum() / d)
    value = num.sum() / den.sum()
    return value, np.percentile(stats, 2.5), np.percentile(stats, 97.5)


def main():
    exe = sys.argv[1]
    rng = np.random.default_rng(5)
    failures, worst = 0, 0.0
    cases = [(rng.normal(size=7), None, 199, 1), (rng.exponential(size=33), None, 1000, 12345678901),
             ([3.5], None, 50, 0), (rng.integers(0, 50, 7).astype(float), rng.integers(1, 20, 7).astype(float), 300, 9),
             (rng.normal(size=5), None, 1, 2)]
    for k, (num, den, reps, seed) in enumerate(cases):
        lines = "".join("%r %s\n" % (float(v), "-" if den is None else repr(float(den[i]))) for i, v in enumerate(num))
        p = subprocess.run([exe, "boot", str(reps), str(seed)], input=lines, capture_output=True, text=True)
        got = [float(v) for v in p.stdout.split()]
        want = reference(list(num), None if den is None else list(den), reps, seed)
        err = max(abs(a - b) for a, b in zip(got, want)) if len(got) == 3 else float("inf")
        worst = max(worst, err)
        if p.returncode != 0 or err > 1e-12:
            failures += 1
            print("FAIL: case %d: C %r, numpy %r" % (k, got, want), file=sys.stderr)
    print("check_bootstrap: %d cases, %d failed, worst |C - numpy| = %.3g" % (len(cases), failures, worst),
          file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
