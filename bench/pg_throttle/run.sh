#!/usr/bin/env bash
# pg_throttle benchmarks (see results.md for the last recorded run).
#
#   bench/pg_throttle/run.sh            # PostgreSQL 15, release build
#   PG=18 bench/pg_throttle/run.sh      # another version
#   SKIP_INSTALL=1 ...                  # use the pg_throttle already installed
#   RUNS=10 SECONDS_PER_RUN=5 ...       # overhead benchmark size (pairs, seconds)
#
# 1. Accuracy: 10 s of throttled SeqScan, IndexScan and FunctionScan at
#    RATE tuples/s. Every tuple is timestamped by clock_timestamp() in a node
#    above the throttled one (so after pacing); we report the achieved rate
#    (first to last tuple) and the most tuples in any 100 ms window, against
#    the bound rate x 0.1 + burst.
# 3. Overhead measured as backend CPU time (less sensitive to other load on
#    the machine than TPS): one session runs LOOPS primary-key SELECTs through
#    PL/pgSQL (each one a full ExecutorStart/ExecutorEnd through the hooks)
#    and reads its own utime+stime from /proc/self/stat before and after;
#    alternating sessions with and without the library.
# 2. Overhead: pgbench -S (select-only, 2 clients) with pg_throttle loaded via
#    session_preload_libraries, the extension created and the pgbench user
#    not throttled (other users are), against the same server without the
#    library; runs in interleaved pairs (without/with, with/without, ...).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"

PG="${PG:-15}"
RATE="${RATE:-1000}"
RUNS="${RUNS:-10}"
LOOPS="${LOOPS:-200000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
DIR="$REPO_ROOT/target/bench-pg_throttle"
PORT="$(free_port)"
BIN="$(pg_bindir_for "$PG")"

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    log "installing pg_throttle (release) into PostgreSQL $PG"
    (cd extensions/pg_throttle && cargo pgrx install --release --no-default-features \
        --features "pg$PG" --pg-config "$(pg_config_for "$PG")" >/dev/null)
fi

cluster_init "$DIR" "$PG" "compute_query_id = on" "max_parallel_workers_per_gather = 0"
cluster_start "$DIR" "$PG" "$PORT"
trap 'cluster_stop "$DIR" "$PG"' EXIT
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "${AS:-postgres}" -d postgres "$@"; }

psql_ <<'SQL' >/dev/null
ALTER SYSTEM SET session_preload_libraries = 'pg_throttle';
SELECT pg_reload_conf();
SQL
sleep 1
psql_ <<SQL >/dev/null
CREATE EXTENSION pg_throttle;
CREATE ROLE bench_throttled LOGIN;
CREATE ROLE bench_free LOGIN;
CREATE TABLE big(id int PRIMARY KEY, pad text);
INSERT INTO big SELECT g, repeat('x', 20) FROM generate_series(1, 100000) g;
VACUUM ANALYZE big;
GRANT SELECT ON big TO bench_throttled;
SELECT throttle_user_per_node_all('bench_throttled', $RATE);
SQL

N=$((RATE * 10))
echo "## Accuracy (PostgreSQL $PG, rate $RATE tuples/s, $N tuples = 10 s each)"
echo
echo "| node | tuples | seconds | achieved rate | error | max in any 100 ms | bound (rate x 0.1 + burst) |"
echo "|---|---|---|---|---|---|---|"
accuracy() {
    local name="$1" settings="$2" inner="$3"
    AS=bench_throttled psql_ -At -c "$settings" \
        -c "SELECT extract(epoch FROM clock_timestamp()) FROM ($inner OFFSET 0) s" |
        python3 -c '
import sys
name, rate = sys.argv[1], int(sys.argv[2])
t = [float(x) for x in sys.stdin.read().split()]
n = len(t)
span = t[-1] - t[0]
achieved = (n - 1) / span
best, start = 0, 0
for end in range(n):
    while t[end] - t[start] >= 0.1:
        start += 1
    best = max(best, end - start + 1)
burst = max(1, -(-rate // 50))
print(f"| {name} | {n} | {span:.3f} | {achieved:.1f} | {100 * (achieved - rate) / rate:+.2f}% | {best} | {rate // 10 + burst} |")
' "$name" "$RATE"
}
accuracy "Seq Scan" "SET enable_indexscan = off; SET enable_bitmapscan = off" \
    "SELECT * FROM big WHERE id <= $N"
accuracy "Index Scan" "SET enable_seqscan = off; SET enable_bitmapscan = off" \
    "SELECT * FROM big WHERE id <= $N"
accuracy "Function Scan" "RESET ALL" "SELECT * FROM generate_series(1, $N)"

echo
echo "## Overhead (pgbench -S, 2 clients, ${SECONDS_PER_RUN} s per run, $RUNS interleaved pairs)"
echo
"$BIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$PORT" -U postgres postgres >/dev/null 2>"$DIR/pgbench-init.log" || { cat "$DIR/pgbench-init.log" >&2; exit 1; }
psql_ -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_free"
tps() {
    "$BIN/pgbench" -n -S -c 2 -j 2 -T "$SECONDS_PER_RUN" -h 127.0.0.1 -p "$PORT" -U bench_free postgres 2>&1 |
        awk '/^tps/ { print $3; found = 1; exit } { out = out $0 "\n" } END { if (!found) { printf "pgbench failed:\n%s", out > "/dev/stderr"; exit 1 } }'
}
set_preload() {
    if [[ -n "$1" ]]; then
        psql_ -c "ALTER SYSTEM SET session_preload_libraries = '$1'" >/dev/null
    else
        psql_ -c "ALTER SYSTEM RESET session_preload_libraries" >/dev/null
    fi
    psql_ -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
without=()
with=()
# Pairs in alternating order (without/with, then with/without, ...), so a
# slow drift in background load hits both sides equally.
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then
        set_preload ""
        without+=("$(tps)")
        set_preload "pg_throttle"
        with+=("$(tps)")
    else
        set_preload "pg_throttle"
        with+=("$(tps)")
        set_preload ""
        without+=("$(tps)")
    fi
done
set_preload "pg_throttle"
# Check the library really was loaded in the "with" runs.
loaded=$(psql_ -At -c "SHOW session_preload_libraries")
echo "| pair | without pg_throttle (tps) | with pg_throttle, user not throttled (tps) | ratio |"
echo "|---|---|---|---|"
for ((i = 0; i < RUNS; i++)); do
    awk -v i=$((i + 1)) -v a="${without[$i]}" -v b="${with[$i]}" \
        'BEGIN { printf "| %d | %.0f | %.0f | %.1f%% |\n", i, a, b, 100 * b / a }'
done
python3 - "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
ratios = [y / x for x, y in zip(a, b)]
print(f"| median | {ma:.0f} | {mb:.0f} | {100 * statistics.median(ratios):.1f}% |")
print()
print(f"median of per-pair ratios: {100 * statistics.median(ratios):.1f}%; ratio of medians: {100 * mb / ma:.1f}%; ratio of means: {100 * statistics.mean(b) / statistics.mean(a):.1f}%")
PY
echo "session_preload_libraries during the last \"with\" run: '$loaded'"

echo
echo "## Overhead as backend CPU time ($LOOPS primary-key SELECTs via PL/pgSQL per session, $RUNS interleaved pairs)"
echo
psql_ >/dev/null <<'SQL'
CREATE FUNCTION bench_loop(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r int;
BEGIN
    FOR i IN 1 .. n LOOP
        SELECT abalance INTO r FROM pgbench_accounts WHERE aid = 1 + (i * 7919) % 1000000;
    END LOOP;
END $$;
GRANT pg_read_server_files TO bench_free;
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO bench_free;
SQL
cpu() {
    AS=bench_free psql_ -At -c "SELECT pg_read_file('/proc/self/stat')" \
        -c "SELECT bench_loop($LOOPS)" -c "SELECT pg_read_file('/proc/self/stat')" |
        python3 -c '
import os, sys
stats = [l.split(")")[-1].split() for l in sys.stdin.read().splitlines() if ")" in l]
ticks = [int(s[11]) + int(s[12]) for s in stats]  # utime + stime (fields 14, 15)
print((ticks[1] - ticks[0]) / os.sysconf("SC_CLK_TCK"))'
}
cwithout=()
cwith=()
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then
        set_preload ""; cwithout+=("$(cpu)")
        set_preload "pg_throttle"; cwith+=("$(cpu)")
    else
        set_preload "pg_throttle"; cwith+=("$(cpu)")
        set_preload ""; cwithout+=("$(cpu)")
    fi
done
echo "| pair | without: CPU s | with: CPU s | with / without |"
echo "|---|---|---|---|"
for ((i = 0; i < RUNS; i++)); do
    awk -v i=$((i + 1)) -v a="${cwithout[$i]}" -v b="${cwith[$i]}" \
        'BEGIN { printf "| %d | %.2f | %.2f | %.1f%% |\n", i, a, b, 100 * b / a }'
done
python3 - "${cwithout[*]}" "${cwith[*]}" "$LOOPS" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
n = int(sys.argv[3])
ma, mb = statistics.median(a), statistics.median(b)
print(f"| median | {ma:.2f} | {mb:.2f} | {100 * mb / ma:.1f}% |")
print()
print(f"per statement: {1e6 * ma / n:.2f} us without, {1e6 * mb / n:.2f} us with "
      f"({1e9 * (mb - ma) / n:+.0f} ns); throughput equivalent {100 * ma / mb:.1f}% of without")
PY
