#!/usr/bin/env python3
"""One row of bench/pg_throttle/run.sh's table from paired measurements.

    ratios.py PAIRS NAME TARGET BASE MEASURED UNIT OP LIMIT

PAIRS holds one pair per line, "baseline<TAB>measured". The row gives both
medians, the median of the pair ratios (measured / baseline) and its
distribution-free 95 % interval (order statistics: no assumption about how
the machine's noise is distributed), and the verdict: met when the median
ratio is OP ('>=' or '<=') LIMIT. Appended to stdout, tab-separated.
"""
import math
import statistics
import sys


def median_interval(r):
    """The 95 % interval of the median of sorted r: order statistics k and
    n + 1 - k, with k the largest rank where P(Binomial(n, 1/2) < k) <= 2.5 %."""
    n = len(r)
    k, cdf = 0, 0.0
    while cdf + math.comb(n, k) / 2 ** n <= 0.025:
        cdf += math.comb(n, k) / 2 ** n
        k += 1
    return r[max(k - 1, 0)], r[min(n - k, n - 1)]


def main():
    path, name, target, base, measured, unit, op, limit = sys.argv[1:9]
    pairs = [tuple(map(float, line.split("\t")[:2])) for line in open(path) if line.strip()]
    r = sorted(m / b for b, m in pairs)
    med = statistics.median(r)
    lo, hi = median_interval(r)
    limit = float(limit)
    ok = med >= limit if op == ">=" else med <= limit
    inside = lo >= limit if op == ">=" else hi <= limit
    note = "" if not ok or inside else " (interval reaches past the target)"
    print("\t".join([
        f"{name} ({len(r)} pairs)",
        target,
        f"{base}: median {statistics.median(b for b, _ in pairs):.1f} {unit}",
        f"{measured}: median {statistics.median(m for _, m in pairs):.1f} {unit}; "
        f"pair ratios median {100 * med:.1f} % (95 % interval {100 * lo:.1f}-{100 * hi:.1f} %)",
        ("met" if ok else "NOT met") + note,
    ]))


main()
