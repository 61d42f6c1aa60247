#!/usr/bin/env bash
# pg_throttle benchmark: one command, one results table, every baseline
# measured in the same run (see results.md for the last recorded table).
#
#   bench/pg_throttle/run.sh              # PostgreSQL 15, release build
#   PG=18 bench/pg_throttle/run.sh        # another version
#   SKIP_INSTALL=1 ...                    # use the pg_throttle already installed
#   PAIRS=12 SECONDS_PER_RUN=8 ...        # pgbench pairs and their length
#
# Rows of the table:
# - parallel: count(*) of 20,000 rows with 2 and 4 workers at 1,000 tuples/s,
#   query mode and per-node mode: 20 s +- 5 % (baseline: the same query
#   unthrottled, and what the rate would give per process alone: 20 s / the
#   number of processes);
# - window: the most tuples any 100 ms saw from the leader and 2 workers
#   together, against rate x 0.1 + burst. Each process stamps a tuple as
#   its scan produces it, just before pacing it (a stamp cannot be taken
#   after the pacing inside a worker: the tuple queue hands tuples to the
#   leader in batches), so the stamps may show one tuple more per process;
# - examined: count(*) of 20,000 rows with a filter matching 10, at 1,000
#   tuples/s with pg_throttle.count = examined: 20 s +- 5 %; with
#   `returned` (the default) it is not slowed;
# - overhead: pgbench -S (1 client each) on two identical servers at the
#   same time, one with pg_throttle loaded and the user not throttled, one
#   without; the servers swap roles every SWAP_EVERY (3) pairs: >= 99 %
#   (median of PAIRS (12) pair ratios of SECONDS_PER_RUN (8) s, with its
#   distribution-free 95 % interval);
# - unreached rate: a query throttled at a rate it never reaches
#   (2,147,483,647 tuples/s, query mode) against the same query unthrottled,
#   alternating in one session (SET SESSION AUTHORIZATION, pairs in ABBA
#   order, UNREACHED_PAIRS=40), for a cheap serial count(*) of 2,000,000
#   rows and for 200,000 rows sent to the client: <= 2 % slower (median of
#   pair ratios, with its distribution-free 95 % interval).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"

PG="${PG:-15}"
PAIRS="${PAIRS:-12}"
SWAP_EVERY="${SWAP_EVERY:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-8}"
DIR="$TARGET_DIR/bench-pg_throttle"
PORT="$(free_port)"
PORT_B="$(free_port)"
while [[ $PORT_B == "$PORT" ]]; do PORT_B="$(free_port)"; done
BIN="$(pg_bindir_for "$PG")"
RESULTS="$DIR/results.tsv"

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    log "building pg_throttle (release) for PostgreSQL $PG and installing it into this checkout's copy"
    out="$TARGET_DIR/release/pg_throttle-pg$PG"
    rm -rf "$out"
    (cd extensions/pg_throttle && cargo pgrx package --no-default-features --features "pg$PG" \
        --pg-config "$(pg_config_for "$PG")" --out-dir "$out" >/dev/null)
    scripts/install-files "$out" / >/dev/null
fi

cluster_init "$DIR" "$PG" "session_preload_libraries = 'pg_throttle'" \
    "max_worker_processes = 16" "max_parallel_workers = 8"
cluster_start "$DIR" "$PG" "$PORT"
trap 'cluster_stop "$DIR" "$PG"' EXIT
: >"$RESULTS"
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "${AS:-postgres}" -d postgres "$@"; }
# row NAME TARGET BASELINE MEASURED VERDICT
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
# Seconds a statement takes, run by AS in a fresh session.
timed() {
    local start end
    start=$(date +%s%N)
    psql_ -c "SET max_parallel_workers_per_gather = ${WORKERS:-0}; SET parallel_setup_cost = 0;
              SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0" -c "$1" >/dev/null
    end=$(date +%s%N)
    awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }'
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { print (v >= lo && v <= hi) ? "met" : "NOT met" }'; }

log "loading data"
psql_ <<'SQL' >/dev/null
CREATE EXTENSION pg_throttle;
CREATE ROLE bench_throttled LOGIN;
CREATE ROLE bench_free LOGIN;
CREATE TABLE par2 AS SELECT g AS id FROM generate_series(1, 20000) g;
CREATE TABLE par4 AS SELECT g AS id FROM generate_series(1, 20000) g;
ALTER TABLE par2 SET (parallel_workers = 2);
ALTER TABLE par4 SET (parallel_workers = 4);
CREATE TABLE m AS SELECT g AS id FROM generate_series(1, 2000000) g;
GRANT SELECT ON par2, par4, m TO bench_throttled, bench_free;
SQL
psql_ -c "VACUUM ANALYZE par2, par4, m" >/dev/null

log "parallel: 20,000 rows at 1,000 tuples/s"
for mode in query per_node; do
    if [[ $mode == query ]]; then
        psql_ -c "SELECT throttle_user_query('bench_throttled', 1000)" >/dev/null
    else
        psql_ -c "SELECT throttle_user_per_node('bench_throttled', 1000, NULL, NULL, NULL, NULL,
                      NULL, NULL, NULL, NULL, NULL, NULL, NULL)" >/dev/null
    fi
    for workers in 2 4; do
        launched=$(AS=bench_throttled psql_ -At -c "SET max_parallel_workers_per_gather = $workers;
                SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0" \
            -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT count(*) FROM par$workers" |
            awk '/Workers Launched/ { print $3 }')
        free=$(AS=bench_free WORKERS=$workers timed "SELECT count(*) FROM par$workers")
        took=$(AS=bench_throttled WORKERS=$workers timed "SELECT count(*) FROM par$workers")
        alone=$(awk -v w="$workers" 'BEGIN { printf "%.1f", 20 / (w + 1) }')
        row "parallel, $mode mode, $workers workers (launched: $launched)" "20 s +- 5 %" \
            "unthrottled ${free} s; per process alone ${alone} s" "${took} s" "$(within "$took" 19 21)"
    done
done

log "window bound over the leader and 2 workers"
psql_ -c "SELECT throttle_user_query('bench_throttled', 1000)" >/dev/null
AS=bench_throttled psql_ -At -c "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
        SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0" \
    -c "SELECT extract(epoch FROM clock_timestamp()) FROM par2 WHERE id <= 10000" >"$DIR/stamps.txt"
python3 - "$DIR/stamps.txt" "$RESULTS" <<'PY'
import sys
t = sorted(float(x) for x in open(sys.argv[1]).read().split())
best, start = 0, 0
for end in range(len(t)):
    while t[end] - t[start] >= 0.1:
        start += 1
    best = max(best, end - start + 1)
rate = (len(t) - 1) / (t[-1] - t[0])
with open(sys.argv[2], "a") as out:
    out.write(f"100 ms window, 10,000 tuples at 1,000/s, leader + 2 workers\t"
              f"<= 120 (rate x 0.1 + burst; stamps: + 1 per process)\t-\t"
              f"max {best} per 100 ms; {rate:.1f} tuples/s overall\t{'met' if best <= 123 else 'NOT met'}\n")
PY

log "examined: a filter matching 10 of 20,000 rows"
psql_ -c "SELECT throttle_user_per_node_all('bench_throttled', 1000)" >/dev/null
q="SELECT count(*) FROM par2 WHERE id % 2000 = 0"
free=$(AS=bench_free timed "$q")
returned=$(AS=bench_throttled timed "$q")
psql_ -c "ALTER ROLE bench_throttled SET pg_throttle.count = 'examined'" >/dev/null
examined=$(AS=bench_throttled timed "$q")
psql_ -c "ALTER ROLE bench_throttled RESET pg_throttle.count" >/dev/null
row "examined: count(*) with a filter matching 10 of 20,000, 1,000 tuples/s" "20 s +- 5 %" \
    "unthrottled ${free} s" "${examined} s" "$(within "$examined" 19 21)"
row "returned (default): the same query" "not slowed (10 tuples)" "unthrottled ${free} s" "${returned} s" \
    "$(awk -v r="$returned" -v f="$free" 'BEGIN { print (r < f + 1) ? "met" : "NOT met" }')"

log "overhead: pgbench -S on two identical servers at once, $PAIRS pairs of ${SECONDS_PER_RUN} s"
# A second server like the first; each pair runs pgbench on both at the
# same time, one with pg_throttle loaded and one without, so the machine's
# changing speed hits both sides of a pair. The servers swap roles every
# SWAP_EVERY pairs (session_preload_libraries, taken by new connections).
cluster_init "$DIR/b" "$PG" "session_preload_libraries = 'pg_throttle'"
cluster_start "$DIR/b" "$PG" "$PORT_B"
trap 'cluster_stop "$DIR" "$PG"; cluster_stop "$DIR/b" "$PG"' EXIT
for port in "$PORT" "$PORT_B"; do
    "$BIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$port" -U postgres postgres >/dev/null 2>"$DIR/pgbench-init.log" ||
        { cat "$DIR/pgbench-init.log" >&2; exit 1; }
    PORT=$port psql_ -c "CREATE ROLE bench_free LOGIN" >/dev/null 2>&1 || true
    PORT=$port psql_ -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_free" >/dev/null
done
set_preload() { # port value
    if [[ -n "$2" ]]; then
        PORT=$1 psql_ -c "ALTER SYSTEM SET session_preload_libraries = '$2'" >/dev/null
    else
        PORT=$1 psql_ -c "ALTER SYSTEM RESET session_preload_libraries" >/dev/null
    fi
    PORT=$1 psql_ -c "SELECT pg_reload_conf()" >/dev/null
}
tps() { # port
    "$BIN/pgbench" -n -S -c 1 -j 1 -T "$SECONDS_PER_RUN" -h 127.0.0.1 -p "$1" -U bench_free postgres 2>&1 |
        awk '/^tps/ { print $3; found = 1; exit } END { if (!found) exit 1 }'
}
: >"$DIR/overhead.tsv"
with_port=""
for ((i = 0; i < PAIRS; i++)); do
    if ((i % SWAP_EVERY == 0)); then
        if [[ $with_port == "$PORT" ]]; then with_port=$PORT_B; without_port=$PORT; else with_port=$PORT; without_port=$PORT_B; fi
        set_preload "$with_port" pg_throttle
        set_preload "$without_port" ""
        sleep 0.5
    fi
    tps "$with_port" >"$DIR/with.txt" &
    tps "$without_port" >"$DIR/without.txt" &
    wait
    printf '%s\t%s\n' "$(cat "$DIR/without.txt")" "$(cat "$DIR/with.txt")" >>"$DIR/overhead.tsv"
done
cluster_stop "$DIR/b" "$PG"
bench/pg_throttle/ratios.py "$DIR/overhead.tsv" \
    "overhead: pgbench -S (1 client per server), library loaded, user not throttled, two servers at once" \
    ">= 99 % of TPS" "without" "with" "tps" ">=" 0.99 >>"$RESULTS"

log "unreached rate: throttled at 2,147,483,647 tuples/s versus unthrottled, alternating in one session"
psql_ -c "SELECT throttle_user_query('bench_throttled', 2147483647)" >/dev/null
unreached() {
    local name="$1" sql="$2" script="$DIR/unreached.sql" pairs="${UNREACHED_PAIRS:-40}" order
    {
        echo "SET max_parallel_workers_per_gather = 0;"
        echo "$sql"
        echo '\timing on'
        # Pairs in ABBA order: neither side always runs first.
        for ((i = 0; i < pairs; i++)); do
            if ((i % 2 == 0)); then order="bench_free bench_throttled"; else order="bench_throttled bench_free"; fi
            for who in $order; do
                echo "SET SESSION AUTHORIZATION $who;"
                echo "$sql"
            done
        done
    } >"$script"
    # Time lines alternate SET, query; pair i ran the unthrottled query
    # first when i is even.
    psql_ -f "$script" -o /dev/null | awk '/^Time:/ { print $2 }' |
        awk 'NR % 2 == 0 { q[n++] = $1 } END {
            for (i = 0; 2 * i + 1 < n; i++) {
                a = q[2 * i]; b = q[2 * i + 1]
                if (i % 2) { t = a; a = b; b = t }
                printf "%s\t%s\n", a, b
            } }' >"$DIR/unreached.tsv"
    bench/pg_throttle/ratios.py "$DIR/unreached.tsv" "unreached rate: $name, ABBA" \
        "<= 2 % slower" "unthrottled" "throttled" "ms" "<=" 1.02 >>"$RESULTS"
}
unreached "count(*) of 2,000,000 rows, serial" "SELECT count(*) FROM m;"
unreached "200,000 rows sent to the client" "SELECT id FROM m WHERE id <= 200000;"

echo
echo "## pg_throttle benchmark (PostgreSQL $("$BIN/pg_config" --version | awk '{print $2}'), $(nproc) CPUs, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))"
echo
echo "| measurement | target | baseline (same run) | measured | verdict |"
echo "|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$RESULTS"
