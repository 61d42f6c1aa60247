#!/usr/bin/env bash
# pg_wal_budget benchmarks (PostgreSQL 15 by default; PG=16/18 for others).
#   1. overhead: pgbench -S and tpcb-like, interleaved rounds, three server
#      configurations: no extension, pg_wal_budget with an observe policy
#      matching the pgbench role, pg_stat_statements alone (reference).
#   2. enforcement (run first): queue policy 1 MB/s, 4 MB burst, 4 writers
#      flooding inserts.
#   3. shared memory from pg_shmem_allocations at default capacities.
# Prediction error: tests/workloads/calibration_summary.sql.
# Usage: bench/pg_wal_budget/run.sh  (env: PG, ROUNDS, SECONDS_PER_RUN, CLIENTS,
#        SCALE, FLOOD_SECONDS). Needs pg_wal_budget installed into that PostgreSQL.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$REPO_ROOT/scripts/lib.sh"
unset RUST_BACKTRACE
PG="${PG:-15}"
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-4}"
SCALE="${SCALE:-10}"
FLOOD_SECONDS="${FLOOD_SECONDS:-60}"
DIR="${BENCH_DIR:-/tmp/pwb-bench}"
BIN="$(pg_bindir_for "$PG")"
PORT="$(free_port)"
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
pgbench_() { as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$PORT" "$@"; }

cluster_init "$DIR" "$PG" "max_connections = 50" "shared_buffers = 256MB" \
    "compute_query_id = on" "max_wal_size = 1GB" "checkpoint_timeout = 15min" "synchronous_commit = off"
AUTOCONF="$DIR/data/postgresql.auto.conf"
set_preload() {
    echo "shared_preload_libraries = '$1'" | as_server_user tee "$AUTOCONF" >/dev/null
}
restart() {
    as_server_user "$BIN/pg_ctl" -D "$DIR/data" -w -m fast stop >/dev/null 2>&1 || true
    cluster_start "$DIR" "$PG" "$PORT"
}
trap 'as_server_user "$BIN/pg_ctl" -D "$DIR/data" -w -m immediate stop >/dev/null 2>&1 || true' EXIT

set_preload "pg_wal_budget"
restart
psql_ -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER" -c "CREATE DATABASE bench OWNER bench"
psql_ -d bench -c "CREATE EXTENSION pg_wal_budget" -c "CREATE EXTENSION pg_stat_statements"
pgbench_ -U bench -i -q -s "$SCALE" bench >/dev/null 2>&1
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')"
echo "pgbench: scale $SCALE, $CLIENTS clients, $SECONDS_PER_RUN s per run, $ROUNDS rounds, configurations interleaved"

# Enforcement: 4 writers under one queue policy of 1 MB/s, 4 MB burst.
# Runs first, on a freshly vacuumed and checkpointed database, so background
# WAL (autovacuum after the tpcb rounds, full-page images) stays out of the
# measurement.
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
psql_ -d bench -c "DELETE FROM pwb.policy" \
    -c "CREATE ROLE flood LOGIN" \
    -c "CREATE TABLE flood (w int, payload text)" -c "GRANT INSERT ON flood TO flood"
policy=$(psql_ -d bench -At -c "SELECT pwb.create_policy('role', 'flood', 1048576, 4194304, 'queue')")
cat > "$DIR/flood.sql" <<'SQL'
INSERT INTO flood (w, payload) SELECT :client_id, repeat('x', 100) FROM generate_series(1, 20);
SQL
chmod 644 "$DIR/flood.sql"
start_lsn=$(psql_ -d bench -At -c "SELECT pg_current_wal_lsn()")
pgbench_ -U flood -n -f "$DIR/flood.sql" -c 4 -j 4 -T "$FLOOD_SECONDS" bench >/dev/null 2>&1 || true
end_lsn=$(psql_ -d bench -At -c "SELECT pg_current_wal_lsn()")
psql_ -d bench -At -F ' ' -c "SELECT 'enforcement wal_bytes=' || pg_wal_lsn_diff('$end_lsn', '$start_lsn')::bigint
        || ' seconds=$FLOOD_SECONDS rate_bytes_per_sec=' || round(pg_wal_lsn_diff('$end_lsn', '$start_lsn') / $FLOOD_SECONDS)
        || ' rate_without_initial_burst=' || round((pg_wal_lsn_diff('$end_lsn', '$start_lsn') - 4194304) / $FLOOD_SECONDS)"
psql_ -d bench -At -c "SELECT 'enforcement writer=' || w || ' rows=' || count(*) || ' share=' ||
        round(count(*)::numeric / sum(count(*)) OVER (), 3) FROM flood GROUP BY w ORDER BY w"
psql_ -d bench -At -c "SELECT 'enforcement counters accepted=' || accepted_statements || ' rejected=' || rejected_statements
        || ' debt=' || scope_debt_bytes FROM pwb.counters()"
psql_ -d bench -At -c "SELECT 'enforcement queued_decisions_in_ring=' || count(*) FROM pwb.recent_decisions(100000) WHERE decision_kind = 'queued'"

psql_ -d bench -c "DELETE FROM pwb.policy"
psql_ -d bench -c "SELECT pwb.create_policy('role', 'bench', 1073741824, 1073741824, 'observe')" >/dev/null

declare -A PRELOAD=([none]="" [pwb_observe]="pg_wal_budget" [pgss]="pg_stat_statements")
for round in $(seq 1 "$ROUNDS"); do
    for config in none pwb_observe pgss; do
        set_preload "${PRELOAD[$config]}"
        restart
        for mode in select_only tpcb; do
            flag=""; [[ $mode == select_only ]] && flag="-S"
            tps=$(pgbench_ -U bench $flag -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -n bench 2>/dev/null |
                awk '/^tps = / {print $3; exit}')
            echo "overhead round=$round config=$config mode=$mode tps=$tps"
        done
    done
done

# Shared memory at default capacities.
set_preload "pg_wal_budget"
restart
psql_ -d bench -At -c "SELECT 'shmem name=' || name || ' allocated_size=' || allocated_size FROM pg_shmem_allocations WHERE name = 'pg_wal_budget'"
psql_ -d bench -At -c "SELECT 'shmem requested=' || pwb.shmem_bytes()"
