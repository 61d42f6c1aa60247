#!/usr/bin/env python3
"""Turns the raw files of bench/pg_wal_budget/run.sh into rows of its table.

Each subcommand prints tab-separated rows: measurement, target, baseline
(same run), measured, verdict. Called by run.sh only.
"""
import math
import os
import statistics
import sys

MIB = 1048576.0

# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11,
       18: 2.10, 19: 2.09, 20: 2.09, 25: 2.06, 30: 2.04}


def t95(df):
    if df in T95:
        return T95[df]
    return 2.04 if df < 30 else 1.96


def verdict(ok):
    return "met" if ok else "**NOT met**"


def out(*cols):
    print("\t".join(str(c) for c in cols))


def median_interval(values):
    """Median and a distribution-free 95 % interval (binomial order statistics)."""
    v = sorted(values)
    n = len(v)
    # Largest k with P(Binomial(n, 1/2) < k) <= 0.025: [v[k-1], v[n-k]].
    k, cum = 0, 0.0
    while True:
        p = math.comb(n, k) / 2 ** n
        if cum + p > 0.025:
            break
        cum += p
        k += 1
    k = max(k, 1)
    return statistics.median(v), v[k - 1], v[n - k]


def geo_interval(ratios):
    """Geometric mean of ratios and its 95 % interval (t, on the logs)."""
    logs = [math.log(x) for x in ratios]
    n = len(logs)
    mean = statistics.mean(logs)
    if n < 2:
        return math.exp(mean), float("nan"), float("nan")
    se = statistics.stdev(logs) / math.sqrt(n)
    return math.exp(mean), math.exp(mean - t95(n - 1) * se), math.exp(mean + t95(n - 1) * se)


def overhead(path):
    pairs = [line.split("\t") for line in open(path) if line.strip()]
    pairs = [(float(a), float(b)) for a, b, _ in pairs if a and b]
    n = len(pairs)
    ratio, lo, hi = geo_interval([b / a for a, b in pairs])
    out(f"1. observe-mode overhead: pgbench tpcb-like (2 clients per server, scale 10), "
        f"two servers side by side, {n} pairs",
        ">= 0.98 of TPS without the extension",
        f"without the extension: median {statistics.median(a for a, _ in pairs):.0f} tps",
        f"with an observe policy: median {statistics.median(b for _, b in pairs):.0f} tps; "
        f"ratio {ratio:.3f} [95 % interval {lo:.3f}, {hi:.3f}]",
        verdict(ratio >= 0.98) + ("" if lo >= 0.98 or ratio < 0.98 else " (interval reaches below 0.98)"))


def read_samples(path):
    s = []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 2 and f[0] and f[1]:
            s.append([float(x) if x not in ("", "-1") else None for x in f])
    return s


def pace(lsn_path, t0, t1, l0, l1, rate, burst, base):
    t0, t1, l0, l1, rate, burst = map(float, (t0, t1, l0, l1, rate, burst))
    s = [(t, v) for t, v, *_ in read_samples(lsn_path) if v is not None]
    start = t0 + 1.5  # the burst goes in the first fraction of a second
    windows = []
    for i, (ti, vi) in enumerate(s):
        if ti < start:
            continue
        for tj, vj in s[i + 1:]:
            if tj > t1:
                break
            if tj - ti >= 5.0:
                windows.append((vj - vi) / (tj - ti) / rate)
                break
    wal = l1 - l0
    took = t1 - t0
    expected = (wal - burst) / rate
    lo, hi = min(windows), max(windows)
    out(f"3. pace 1 MiB/s, burst 4 MiB, one INSERT ... SELECT of {wal / MIB:.1f} MiB: "
        f"WAL (LSN every 0.5 s) over each 5 s window after the burst ({len(windows)} windows)",
        "1 MiB/s +- 5 % in every window",
        f"without the policy: {base}",
        f"{lo:.3f} - {hi:.3f} MiB/s", verdict(lo >= 0.95 and hi <= 1.05))
    out("3. pace: the same statement's duration",
        "(WAL - burst) / rate +- 5 %",
        f"(WAL - burst) / rate = {expected:.1f} s",
        f"{took:.1f} s ({100 * (took / expected - 1):+.1f} %)", verdict(abs(took / expected - 1) <= 0.05))


def rows_by_who(path):
    rows = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) == 2:
            rows.setdefault(f[0], []).append(float(f[1]))
    return rows


def segments(path):
    return [tuple(map(float, line.split("\t"))) for line in open(path) if line.strip()]


def rates(rows, windows, bpr, rate):
    total = sum(b - a for a, b in windows)
    res = {}
    for who in sorted(rows):
        n = sum(1 for t in rows[who] for a, b in windows if a <= t < b)
        res[who] = n * bpr / total / rate
    return res, total


def progress(path):
    """pgbench -P 1 --progress-timestamp lines: (end of the second, tps)."""
    p = []
    for line in open(path):
        if line.startswith("progress:"):
            f = line.split()
            p.append((float(f[1]), float(f[3])))
    return p


def mean_tps(prog, a, b):
    v = [tps for t, tps in prog if t - 1 >= a and t <= b]
    return statistics.mean(v) if v else float("nan")


def tenants(rows_path, seg_path, free_a, free_b, bpr, rate):
    bpr, rate = float(bpr), float(rate)
    segs = []
    for line in open(seg_path):
        if line.strip():
            kind, side, s0, s1, s2, ticks = line.rstrip("\n").split("\t")
            a0, b0, a1, b1 = map(float, ticks.split())
            segs.append((kind, side, float(s0), float(s1), float(s2), {"A": a1 - a0, "B": b1 - b0}))
    rows = rows_by_who(rows_path)
    res = {}
    total = 0
    nseg = sum(1 for x in segs if x[0] == "r" and x[1] == "A")
    for side in ("A", "B"):
        windows = [(s0 + 2.0, s1 - 0.5) for kind, sd, s0, s1, _, _ in segs if sd == side and kind == "r"]
        r, total = rates({w: v for w, v in rows.items() if w.startswith(side)}, windows, bpr, rate)
        res.update(r)
    lo, hi = min(res.values()), max(res.values())
    out(f"4. four roles, each its own pace policy of 1 MiB/s, looping 1,000-row INSERTs "
        f"(two servers, {nseg} segments each, {total:.0f} s measured per role after the bursts; "
        f"{bpr:.0f} B WAL per row)",
        "each role 1 MiB/s +- 5 %", "-",
        f"8 roles (4 per server): {lo:.3f} - {hi:.3f} MiB/s", verdict(lo >= 0.95 and hi <= 1.05))
    prog = {"A": progress(free_a), "B": progress(free_b)}
    found = {}
    for kind in ("r", "h"):
        ks = [x for x in segs if x[0] == kind]
        tps_r, cpu_r, loaded, other = [], [], [], []
        for k in range(0, len(ks) - 1, 2):
            (_, sa, a0, a1, _, ta), (_, sb, b0, b1, _, tb) = ks[k], ks[k + 1]
            assert sa == "A" and sb == "B"
            t = {(srv, seg): mean_tps(prog[srv], w0, w1)
                 for srv in "AB" for seg, (w0, w1) in (("a", (a0, a1)), ("b", (b0, b1)))}
            tps_r.append(math.sqrt(t["A", "a"] / t["A", "b"] * t["B", "b"] / t["B", "a"]))
            # transactions per CPU second of each server, loaded against not
            e = {("A", "a"): t["A", "a"] * (a1 - a0) / ta["A"], ("A", "b"): t["A", "b"] * (b1 - b0) / tb["A"],
                 ("B", "a"): t["B", "a"] * (a1 - a0) / ta["B"], ("B", "b"): t["B", "b"] * (b1 - b0) / tb["B"]}
            cpu_r.append(math.sqrt(e["A", "a"] / e["A", "b"] * e["B", "b"] / e["B", "a"]))
            loaded += [t["A", "a"], t["B", "b"]]
            other += [t["A", "b"], t["B", "a"]]
        found[kind] = (geo_interval(tps_r), tps_r, geo_interval(cpu_r), loaded, other)
    (r, rlo, rhi), tps_r, (cpu, clo, chi), loaded, other = found["r"]
    (hr, _, _), _, (hcpu, _, _), _, _ = found["h"]
    out("4. an unpoliced role's pgbench tpcb-like TPS (2 clients) on the server where the four paced roles write, "
        "against its TPS without them (paired servers sharing one CPU, the load taking turns)",
        ">= 95 %",
        f"not loaded: median {statistics.median(other):.0f} tps; control load (same WAL, no policy, "
        f"transactions held open 1 s): TPS {100 * hr:.1f} %, per CPU second {100 * hcpu:.1f} %",
        f"loaded: median {statistics.median(loaded):.0f} tps; TPS {100 * r:.1f} % [{100 * rlo:.1f}, {100 * rhi:.1f}] "
        f"({len(tps_r)} pairs: {', '.join(f'{100 * x:.0f}' for x in tps_r)} %); "
        f"transactions per server CPU second {100 * cpu:.1f} % [{100 * clo:.1f}, {100 * chi:.1f}]",
        verdict(r >= 0.95))


def template(rows_path, seg_path, bpr, rate):
    bpr, rate = float(bpr), float(rate)
    (t0, t_end, _), = segments(seg_path)
    windows = [(t0 + 4.0, t_end - 1.0)]
    res, total = rates(rows_by_who(rows_path), windows, bpr, rate)
    lo, hi = min(res.values()), max(res.values())
    out(f"7. one template policy (tenant, NULL) of 1 MiB/s, 4 tenants (set_tenant) looping "
        f"1,000-row INSERTs, {total:.0f} s after the burst",
        "each tenant 1 MiB/s +- 10 %", "-",
        " / ".join(f"{who} {r:.3f}" for who, r in res.items()) + " MiB/s",
        verdict(lo >= 0.90 and hi <= 1.10))


def fairness(big_path, small_path, waits_path, rate):
    rate = float(rate)
    arrived, admitted = map(float, open(big_path).read().split())
    small = [tuple(map(float, line.split("\t"))) for line in open(small_path) if line.strip()]
    samples = {}
    for line in open(waits_path):
        f = line.rstrip("\n").split("\t")
        if len(f) == 5:
            samples.setdefault(float(f[0]), []).append((int(f[1]), int(f[2]), int(f[3]), int(f[4])))
    times = sorted(samples)
    own = first = joined = None
    for t in times:
        big = [x for x in samples[t] if x[2] > MIB]
        if big:
            _, first, own, since_ms = big[0]
            joined = since_ms / 1000.0 + 0.001  # waiting_since is in whole ms
            break
    if joined is None:
        out("5. fairness", "0 overtakes", "-", "the ~2 MiB statement was never seen waiting in pwb.waits()", "?")
        return
    # A statement whose client message came in after the big one had joined
    # the line (statement_timestamp() > waiting_since) joined after it.
    later = [(a, adm) for _, a, adm in small if a > joined]
    overtakes = sum(1 for _, adm in later if adm < admitted)
    between = sum(1 for _, a, _ in small if arrived < a <= joined)
    out(f"5. fairness: queue 1 MiB/s, 8 sessions looping 20-row INSERTs ({len(small)} statements), "
        "one ~2 MiB statement arriving while they wait: statements that came in after it had joined the line "
        "(statement_timestamp() > its waiting_since in pwb.waits()) and were admitted before it",
        "0 overtakes", f"{len(later)} statements came in after it joined",
        f"{overtakes} overtakes (it joined at position {first}; {between} statements came in while it was "
        f"parsed and planned, {1000 * (joined - arrived):.0f} ms)", verdict(overtakes == 0))
    before = [t for t in times if t < arrived]
    ahead = sum(w for _, _, w, _ in samples[before[-1]]) if before else 0
    wait = admitted - arrived
    small_waits = [adm - a for _, a, adm in small]
    bound = 2 * (ahead + own) / rate
    out("5. fairness: the ~2 MiB statement's wait (first row's clock_timestamp() - statement_timestamp())",
        "<= 2 x (bytes queued ahead + its own) / rate",
        f"queued ahead {ahead / 1024:.0f} kB + own prediction {own / 1024:.0f} kB: bound {bound:.2f} s; "
        f"small statements waited median {1000 * statistics.median(small_waits):.0f} ms",
        f"{wait:.2f} s", verdict(wait <= bound))


def pacecost(order_path, times_path, paced):
    order = [line.strip() for line in open(order_path) if line.strip()]
    times = [float(x) for x in open(times_path).read().split()]
    times = times[-len(order):]  # drop the warm-up
    pairs = []
    for i in range(0, len(order), 2):
        d = dict(zip(order[i:i + 2], times[i:i + 2]))
        pairs.append((d["observe"], d["pace"]))
    ratios = [p / o for o, p in pairs]
    med, lo, hi = median_interval(ratios)
    out(f"6. pacing-check cost: INSERT of 1,000,000 rows under a pace policy of 256 MiB/s (never reached; "
        f"{paced} paced statements) against the same policy in observe mode, {len(pairs)} pairs, alternating order",
        "<= 2 % slower (median of pair ratios)",
        f"observe: median {statistics.median(o for o, _ in pairs):.0f} ms",
        f"pace: median {statistics.median(p for _, p in pairs):.0f} ms; ratio median {100 * (med - 1):+.1f} % "
        f"[95 % interval {100 * (lo - 1):+.1f}, {100 * (hi - 1):+.1f} %]",
        verdict(med <= 1.02))


def xacts(path):
    for line in open(path):
        if line.startswith("number of transactions actually processed:"):
            return int(line.split(":")[1].split("/")[0])
    return 0


def replica(outdir, limit):
    limit = float(limit)
    lag = {}
    for name in ("base", "feedback"):
        s = [x for x in read_samples(os.path.join(outdir, f"replica-{name}-lag.tsv"))]
        lag[name] = s
    base = [(t, v) for t, v, *_ in lag["base"] if v is not None]
    fb = [(t, v, *rest) for t, v, *rest in lag["feedback"] if v is not None]
    missing = len(lag["feedback"]) - len(fb)
    # The baseline's growth: least-squares slope of lag over time.
    tm = statistics.mean(t for t, _ in base)
    vm = statistics.mean(v for _, v in base)
    slope = sum((t - tm) * (v - vm) for t, v in base) / sum((t - tm) ** 2 for t, _ in base)
    fmax = max(v for _, v, *_ in fb)
    out(f"8. replica lag with pwb.max_replica_lag = 64MB: 4 tenants under queue policies of 1 MiB/s + "
        f"1 exempt role, standby replay held back; lag sampled every 1 s ({len(fb)} samples)",
        "< 2 x 64 MiB at every sample",
        f"no feedback: grew {slope / MIB:.2f} MiB/s to {base[-1][1] / MIB:.0f} MiB (max {max(v for _, v in base) / MIB:.0f} MiB)",
        f"max {fmax / MIB:.1f} MiB, final {fb[-1][1] / MIB:.1f} MiB"
        + (f" ({missing} samples without a streaming standby)" if missing else ""),
        verdict(fmax < 2 * limit and missing == 0))
    ex_b = xacts(os.path.join(outdir, "replica-base-ex.txt"))
    ex_f = xacts(os.path.join(outdir, "replica-feedback-ex.txt"))
    t_b = sum(xacts(os.path.join(outdir, f"replica-base-t{i}.txt")) for i in range(1, 5))
    t_f = sum(xacts(os.path.join(outdir, f"replica-feedback-t{i}.txt")) for i in range(1, 5))
    out("8. replica: the feedback-exempt role's throughput (256 kB/s queue policy) under feedback",
        ">= 95 % of the same without feedback",
        f"without feedback: {ex_b} transactions (tenants: {t_b})",
        f"with feedback: {ex_f} transactions = {100 * ex_f / max(ex_b, 1):.1f} % "
        f"(tenants, held back: {t_f} = {100 * t_f / max(t_b, 1):.0f} %)",
        verdict(ex_f >= 0.95 * ex_b and ex_b > 0))


def latencies(path):
    """pgbench -l lines: (completion time, latency in ms)."""
    v = []
    for line in open(path):
        f = line.split()
        if len(f) >= 6:
            v.append((int(f[4]) + int(f[5]) / 1e6, int(f[2]) / 1000.0))
    return v


def pct(v, p):
    return v[min(len(v) - 1, int(math.ceil(p * len(v))) - 1)]


def reload(quiet, busy, n, changes_path):
    changes = [float(x) for x in open(changes_path).read().split()]
    q, b = latencies(quiet), latencies(busy)
    ql, bl = sorted(x for _, x in q), sorted(x for _, x in b)
    med = statistics.median(ql)
    # Each change is committed just before its psql returns (the time
    # recorded); the governed session reloads in its next statement. A
    # change's stall: the slowest statement completing from 20 ms before to
    # 50 ms after that time, less the median without reloads.
    stalls = sorted(max([lat for t, lat in b if c - 0.02 <= t <= c + 0.05] or [med]) - med for c in changes)
    out(f"9. reload stall: {n} policies; a governed 10-row INSERT loop (one session) while another "
        f"session changes a policy every 0.25 s ({len(changes)} changes, each makes every backend reload)",
        "no statement stalled > 10 ms by a reload",
        f"without reloads ({len(ql)} statements): median {med:.2f} ms, p99 {pct(ql, 0.99):.2f} ms, "
        f"max {ql[-1]:.1f} ms",
        f"with reloads ({len(bl)} statements): p99 {pct(bl, 0.99):.2f} ms, max {bl[-1]:.1f} ms; "
        f"stall per change (slowest statement around it, less the median): median {statistics.median(stalls):.1f} ms, "
        f"max {stalls[-1]:.1f} ms",
        verdict(stalls[-1] <= 10))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "reload":
        # globs: quiet log, busy log
        quiet = [p for p in args if "reload-quiet." in os.path.basename(p)][0]
        busy = [p for p in args if "reload-busy." in os.path.basename(p)][0]
        rest = [p for p in args if p not in (quiet, busy)]
        reload(quiet, busy, *rest)
        return
    {"overhead": overhead, "pace": pace, "tenants": tenants, "template": template,
     "fairness": fairness, "pacecost": pacecost, "replica": replica}[cmd](*args)


if __name__ == "__main__":
    main()
