#!/usr/bin/env bash
# pg_wal_budget's share of the server's CPU, measured by sampling instead of
# by TPS, so it does not depend on how fast a noisy machine happens to be
# during one run: tpcb-like with an observe policy on the pgbench role,
# `perf record` with call stacks over all server processes, then the share
# of samples inside the extension's hooks, not counting the executor or
# utility code the hooks chain to (hook_share.py).
# Usage: bench/pg_wal_budget/cpu_share.sh  (env: PG, CLIENTS, SECONDS_PER_RUN,
#        SCALE, SCRIPT=tpcb-like|select-only). Needs pg_wal_budget installed
#        into that PostgreSQL (a release build, as for run.sh) and Linux perf
#        (installed from the distribution's linux-perf package if missing).
set -euo pipefail
CLIENTS="${CLIENTS:-2}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
SCALE="${SCALE:-10}"
SCRIPT="${SCRIPT:-tpcb-like}"
DIR="${BENCH_DIR:-/tmp/pwb-cpu-share}"
source "$(dirname "$0")/common.sh"
command -v perf >/dev/null || { as_root apt-get install -y -qq linux-perf >/dev/null; }

cluster_init "$DIR" "$PG" "shared_preload_libraries = 'pg_wal_budget'" "shared_buffers = 256MB" \
    "compute_query_id = on" "max_wal_size = 1GB" "synchronous_commit = off"
cluster_start "$DIR" "$PG" "$PORT"
psql_ -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER" -c "CREATE DATABASE bench OWNER bench"
psql_ -d bench -c "CREATE EXTENSION pg_wal_budget" \
    -c "SELECT pwb.create_policy('role', 'bench', 1073741824, 1073741824, 'observe')" >/dev/null
pgbench_ -U bench -i -q -s "$SCALE" bench >/dev/null 2>&1
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"

# perf finds a library's unwind tables by build id in its cache; a debug and
# a release build can share one, so forget any cached copy of the library.
perf buildid-cache --purge "$("$(pg_config_for "$PG")" --pkglibdir)/pg_wal_budget.so" >/dev/null 2>&1 || true
pgbench_ -U bench -b "$SCRIPT" -n -c "$CLIENTS" -j 2 -T "$((SECONDS_PER_RUN + 3))" bench >"$DIR/pgbench.txt" 2>&1 &
sleep 2
perf record -q --no-buildid-cache --call-graph dwarf,16384 -F 1000 -a -o "$DIR/perf.data" -- sleep "$SECONDS_PER_RUN" >/dev/null 2>&1
wait
psql_ -d bench -At -c "SELECT 'governed: ' || accepted_statements || ' statements admitted, '
    || (SELECT count(*) FROM pwb.recent_decisions(1000) WHERE reason_code = 'observe_mode')
    || ' of the last 1000 decisions under the observe policy' FROM pwb.counters()"
echo "machine: $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), $SCRIPT, $CLIENTS clients, $(awk '/^tps = / {print $3}' "$DIR/pgbench.txt") TPS"
perf script -i "$DIR/perf.data" --comm postgres -F ip,sym,dso 2>/dev/null |
    python3 "$REPO_ROOT/bench/pg_wal_budget/hook_share.py"
