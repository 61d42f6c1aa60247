#!/usr/bin/env bash
# pg_wal_budget benchmarks (PostgreSQL 15 by default; PG=16/18 for others).
#   1. overhead: pgbench -S and tpcb-like, interleaved rounds, three server
#      configurations: no extension, pg_wal_budget with an observe policy
#      matching the pgbench role, pg_stat_statements alone (reference).
#      Then the same three, without restarts, in one server with both
#      extensions preloaded and switched by reloaded settings (AB_ROUNDS
#      short runs of AB_SECONDS for AB_CLIENTS), summarised both as
#      TPS and as transactions per second of the server's CPU time.
#   2. enforcement (run first): queue policy 1 MB/s, 4 MB burst, 4 writers
#      flooding inserts; the rate over a 60 s window after the burst is spent,
#      and over the whole run.
#   3. shared memory from pg_shmem_allocations at default capacities.
# Prediction error: tests/workloads/calibration_summary.sql.
# Usage: bench/pg_wal_budget/run.sh  (env: PG, ROUNDS, SECONDS_PER_RUN, CLIENTS,
#        SCALE, MODES, FLOOD_SECONDS, WARMUP_SECONDS,
#        AB_ROUNDS, AB_SECONDS, AB_CLIENTS). Needs pg_wal_budget
#        installed into that PostgreSQL; for the recorded numbers, a release build:
#        (cd extensions/pg_wal_budget && cargo pgrx install --release \
#           --no-default-features --features pg15 --pg-config "$(pg_config of PG)")
set -euo pipefail
ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-2 4 8}"
MODES="${MODES:-select_only tpcb}"
SCALE="${SCALE:-10}"
FLOOD_SECONDS="${FLOOD_SECONDS:-60}"
DIR="${BENCH_DIR:-/tmp/pwb-bench}"
source "$(dirname "$0")/common.sh"

cluster_init "$DIR" "$PG" "${OVERHEAD_SERVER_SETTINGS[@]}"
AUTOCONF="$DIR/data/postgresql.auto.conf"
set_preload() {
    echo "shared_preload_libraries = '$1'" | as_server_user tee "$AUTOCONF" >/dev/null
}
restart() {
    as_server_user "$BIN/pg_ctl" -D "$DIR/data" -w -m fast stop >/dev/null 2>&1 || true
    cluster_start "$DIR" "$PG" "$PORT"
}

set_preload "pg_wal_budget"
restart
psql_ -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER" -c "CREATE DATABASE bench OWNER bench"
psql_ -d bench -c "CREATE EXTENSION pg_wal_budget" -c "CREATE EXTENSION pg_stat_statements"
pgbench_ -U bench -i -q -s "$SCALE" bench >/dev/null 2>&1
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')"
echo "pgbench: scale $SCALE, clients $CLIENTS, $SECONDS_PER_RUN s per run, $ROUNDS rounds, configurations interleaved, all six orders in turn"

# Enforcement: 4 writers under one queue policy of 1 MB/s, 4 MB burst.
# Runs first, on a freshly vacuumed and checkpointed database, so background
# WAL (autovacuum after the tpcb rounds, full-page images) stays out of the
# measurement; autovacuum is off for the flooded table, whose vacuum WAL is
# the server's, not the writers'. The bucket starts full, so the writers
# first spend the 4 MB burst; the measured window of FLOOD_SECONDS starts
# after WARMUP_SECONDS, once it is spent. The whole run, burst included, is
# reported too.
WARMUP_SECONDS="${WARMUP_SECONDS:-8}"
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
psql_ -d bench -c "DELETE FROM pwb.policy" \
    -c "CREATE ROLE flood LOGIN" \
    -c "CREATE TABLE flood (w int, at timestamptz DEFAULT clock_timestamp(), payload text)
        WITH (autovacuum_enabled = off)" \
    -c "GRANT INSERT ON flood TO flood"
psql_ -d bench -At -c "SELECT pwb.create_policy('role', 'flood', 1048576, 4194304, 'queue')" >/dev/null
cat > "$DIR/flood.sql" <<'SQL'
INSERT INTO flood (w, payload) SELECT :client_id, repeat('x', 100) FROM generate_series(1, 20);
SQL
chmod 644 "$DIR/flood.sql"
lsn() { psql_ -d bench -At -c "SELECT pg_current_wal_lsn() || ' ' || clock_timestamp()"; }
read -r run_lsn _ _ <<<"$(lsn)"
pgbench_ -U flood -n -f "$DIR/flood.sql" -c 4 -j 4 -T "$((WARMUP_SECONDS + FLOOD_SECONDS + 2))" bench >/dev/null 2>&1 &
flood_pid=$!
sleep "$WARMUP_SECONDS"
read -r start_lsn start_date start_time <<<"$(lsn)"
sleep "$FLOOD_SECONDS"
read -r end_lsn end_date end_time <<<"$(lsn)"
wait "$flood_pid" || true
read -r final_lsn _ _ <<<"$(lsn)"
run_seconds=$((WARMUP_SECONDS + FLOOD_SECONDS + 2))
psql_ -d bench -At -c "SELECT 'enforcement window_seconds=$FLOOD_SECONDS wal_bytes=' || pg_wal_lsn_diff('$end_lsn', '$start_lsn')::bigint
        || ' rate_bytes_per_sec=' || round(pg_wal_lsn_diff('$end_lsn', '$start_lsn') / $FLOOD_SECONDS)
        || ' ratio_to_target=' || round(pg_wal_lsn_diff('$end_lsn', '$start_lsn') / $FLOOD_SECONDS / 1048576.0, 4)"
psql_ -d bench -At -c "SELECT 'enforcement whole_run_seconds=$run_seconds wal_bytes=' || pg_wal_lsn_diff('$final_lsn', '$run_lsn')::bigint
        || ' rate_bytes_per_sec=' || round(pg_wal_lsn_diff('$final_lsn', '$run_lsn') / $run_seconds)
        || ' expected_with_burst=' || round((4194304 + 1048576.0 * $run_seconds) / $run_seconds)"
psql_ -d bench -At -c "SELECT 'enforcement writer=' || w || ' rows_in_window=' || count(*) || ' share=' ||
        round(count(*)::numeric / sum(count(*)) OVER (), 3) FROM flood
        WHERE at >= '$start_date $start_time' AND at < '$end_date $end_time' GROUP BY w ORDER BY w"
psql_ -d bench -At -c "SELECT 'enforcement counters accepted=' || accepted_statements || ' rejected=' || rejected_statements
        || ' debt=' || scope_debt_bytes FROM pwb.counters()"
psql_ -d bench -At -c "SELECT 'enforcement queued_decisions_in_ring=' || count(*) FROM pwb.recent_decisions(100000) WHERE decision_kind = 'queued'"

psql_ -d bench -c "DELETE FROM pwb.policy" -c "DROP TABLE flood" -c "CHECKPOINT"
psql_ -d bench -c "SELECT pwb.create_policy('role', 'bench', 1073741824, 1073741824, 'observe')" >/dev/null

# The order of the three configurations in a round: all six orders in turn,
# so that over every six rounds each configuration runs first, second and
# third equally often and follows each other one equally often (a plain
# rotation would always run one after the same other).
ORDERS=("0 1 2" "1 2 0" "2 0 1" "0 2 1" "2 1 0" "1 0 2")
order_of_round() { echo "${ORDERS[$((($1 - 1) % 6))]}"; }

# Overhead: every round runs the three configurations, in an order that
# changes from round to round (order_of_round); each configuration
# starts from a restart, a vacuumed and checkpointed database and a short
# unrecorded warm-up, so table growth and checkpoints do not favour one.
CONFIGS=(none pwb_observe pgss)
declare -A PRELOAD=([none]="" [pwb_observe]="pg_wal_budget" [pgss]="pg_stat_statements")
RESULTS="$DIR/overhead.txt"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for i in $(order_of_round "$round"); do
        config="${CONFIGS[$i]}"
        set_preload "${PRELOAD[$config]}"
        restart
        psql_ -d bench -c "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history" -c "CHECKPOINT"
        pgbench_ -U bench -S -c 2 -j 2 -T 3 -n bench >/dev/null 2>&1
        for clients in $CLIENTS; do
            for mode in $MODES; do
                tps=$(pgbench_ -U bench $(mode_flag "$mode") -c "$clients" -j 2 -T "$SECONDS_PER_RUN" -n bench \
                    2>/dev/null | tps_of)
                echo "overhead round=$round config=$config mode=$mode clients=$clients tps=$tps" | tee -a "$RESULTS"
            done
        done
    done
done
summarize "$RESULTS" none overhead

# Overhead without restarts: one server with both extensions preloaded; the
# configurations differ only by a reloaded setting, so no restart reshuffles
# memory between them and many short runs fit in the same time.
# Baseline: pwb.enabled = off and pg_stat_statements.track = none (each hook
# then returns after one check); pwb_observe: pwb.enabled = on (the observe
# policy on the bench role); pgss: pg_stat_statements.track = top.
AB_ROUNDS="${AB_ROUNDS:-20}"
AB_SECONDS="${AB_SECONDS:-5}"
AB_CLIENTS="${AB_CLIENTS:-2 4}"
set_preload "pg_wal_budget,pg_stat_statements"
restart
# Unrecorded warm-up: the first runs after a restart (and after the
# enforcement flood) are far slower, and round 1 always starts with the same
# configuration.
psql_ -d bench -c "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history" -c "CHECKPOINT"
pgbench_ -U bench -c 2 -j 2 -T 10 -n bench >/dev/null 2>&1
reload_with() { # pwb.enabled pg_stat_statements.track
    psql_ -d bench -c "ALTER SYSTEM SET pwb.enabled = $1" \
        -c "ALTER SYSTEM SET pg_stat_statements.track = $2" -c "SELECT pg_reload_conf()" >/dev/null
}
declare -A SETTINGS=([off]="off none" [pwb_observe]="on none" [pgss]="off top")
AB_CONFIGS=(off pwb_observe pgss)
AB_RESULTS="$DIR/overhead-reload.txt"
: >"$AB_RESULTS"
# CPU used by the server, in clock ticks: the postmaster, its children still
# running, and (cutime/cstime) the children it has reaped, i.e. the backends
# of finished runs. TPS on this shared 2-vCPU VM swings by ±15% from one 5 s
# run to the next; transactions per second of server CPU shows the cost per
# transaction without the scheduling noise.
server_cpu_ticks() {
    local postmaster
    postmaster="$(head -n 1 "$DIR/data/postmaster.pid")"
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$postmaster/stat"
        for child in $(ps -o pid= --ppid "$postmaster"); do
            awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || true
        done
    } | awk '{ sum += $1 } END { print sum }'
}
TICKS_PER_SECOND="$(getconf CLK_TCK)"
echo "reload runs: clients $AB_CLIENTS, $AB_SECONDS s per run, $AB_ROUNDS rounds, configurations back to back per client count"
# Each round vacuums once; then, per client count and workload, the three
# configurations run back to back in the round's order, each right after a
# reload and a CHECKPOINT. So the runs compared with each other are seconds
# apart (up to run 18 each configuration ran all its client counts in one
# block, and a pair's runs were 20-40 s apart), and every run starts from
# the same point of the checkpoint cycle.
for round in $(seq 1 "$AB_ROUNDS"); do
    psql_ -d bench -c "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history"
    for clients in $AB_CLIENTS; do
        for mode in $MODES; do
            for i in $(order_of_round "$round"); do
                config="${AB_CONFIGS[$i]}"
                reload_with ${SETTINGS[$config]}
                psql_ -d bench -c "CHECKPOINT"
                sleep 0.5 # the previous connections' backends have exited
                ticks_before="$(server_cpu_ticks)"
                out=$(pgbench_ -U bench $(mode_flag "$mode") -c "$clients" -j 2 -T "$AB_SECONDS" -n bench 2>/dev/null)
                sleep 0.5
                ticks="$(($(server_cpu_ticks) - ticks_before))"
                tps=$(tps_of <<<"$out")
                xacts=$(awk '/^number of transactions actually processed:/ {print $NF; exit}' <<<"$out")
                xacts_per_cpu_s=$(awk -v x="$xacts" -v t="$ticks" -v hz="$TICKS_PER_SECOND" \
                    'BEGIN { if (t > 0) printf "%.1f", x * hz / t; else print 0 }')
                echo "reload round=$round config=$config mode=$mode clients=$clients tps=$tps" \
                    "server_cpu_s=$(awk -v t="$ticks" -v hz="$TICKS_PER_SECOND" 'BEGIN { printf "%.2f", t / hz }')" \
                    "xacts_per_cpu_s=$xacts_per_cpu_s" >>"$AB_RESULTS"
            done
        done
    done
done
summarize "$AB_RESULTS" off overhead-reload
summarize "$AB_RESULTS" off overhead-reload-cpu xacts_per_cpu_s
psql_ -d bench -c "ALTER SYSTEM RESET pwb.enabled" -c "ALTER SYSTEM RESET pg_stat_statements.track" >/dev/null

# Shared memory at default capacities.
set_preload "pg_wal_budget"
restart
psql_ -d bench -At -c "SELECT 'shmem name=' || name || ' allocated_size=' || allocated_size FROM pg_shmem_allocations WHERE name = 'pg_wal_budget'"
psql_ -d bench -At -c "SELECT 'shmem requested=' || pwb.shmem_bytes()"
