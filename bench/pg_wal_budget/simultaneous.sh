#!/usr/bin/env bash
# pg_wal_budget's overhead measured in simultaneous pairs. Two identical
# servers (same binaries and settings, both preloading pg_wal_budget and
# pg_stat_statements, both with an observe policy on the pgbench role) run the
# same pgbench workload at the same time, one with the feature under test
# switched on by a reloaded setting and the other with it off:
#   pwb_observe: pwb.enabled = on  vs off (pg_stat_statements.track = none);
#   pgss:        pg_stat_statements.track = top vs none (pwb.enabled = off).
# Whatever slows this shared VM down during a pair slows both servers, so a
# pair's TPS ratio is much less noisy than the ratio of runs made one after
# the other (run.sh). The two servers share the CPUs, so the ratio measures
# the cost per transaction: a server that spends 1% more CPU per transaction
# completes about 1% fewer in its share. The servers swap sides every round,
# so neither one's data directory, port or table layout favours a side.
# Usage: bench/pg_wal_budget/simultaneous.sh  (env: PG, ROUNDS, SECONDS_PER_RUN,
#        CLIENTS, MODES, SCALE). Needs pg_wal_budget installed into that
#        PostgreSQL (a release build, as for run.sh).
set -euo pipefail
ROUNDS="${ROUNDS:-12}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-2 4 8}"
MODES="${MODES:-tpcb select_only}"
SCALE="${SCALE:-10}"
DIR="${BENCH_DIR:-/tmp/pwb-simultaneous}"
source "$(dirname "$0")/common.sh"

SERVERS=(a b)
declare -A PORTS
trap 'for s in "${SERVERS[@]}"; do cluster_stop "$DIR/$s" "$PG" immediate; done' EXIT
for s in "${SERVERS[@]}"; do
    cluster_init "$DIR/$s" "$PG" "${OVERHEAD_SERVER_SETTINGS[@]}" \
        "shared_preload_libraries = 'pg_wal_budget,pg_stat_statements'"
    PORTS[$s]="$(free_port)"
    cluster_start "$DIR/$s" "$PG" "${PORTS[$s]}"
done
psql_on() { local s="$1"; shift; "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORTS[$s]}" -U postgres "$@"; }
pgbench_on() { local s="$1"; shift; as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "${PORTS[$s]}" "$@"; }
for s in "${SERVERS[@]}"; do
    psql_on "$s" -d postgres -c "CREATE ROLE bench LOGIN SUPERUSER" -c "CREATE DATABASE bench OWNER bench"
    psql_on "$s" -d bench -c "CREATE EXTENSION pg_wal_budget" -c "CREATE EXTENSION pg_stat_statements"
    psql_on "$s" -d bench -c "SELECT pwb.create_policy('role', 'bench', 1073741824, 1073741824, 'observe')" >/dev/null
    pgbench_on "$s" -U bench -i -q -s "$SCALE" bench >/dev/null 2>&1
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')"
echo "pgbench: scale $SCALE, clients $CLIENTS, $SECONDS_PER_RUN s per pair, $ROUNDS rounds, two servers at once, sides swapped every round"

set_on_server() { # server pwb.enabled pg_stat_statements.track
    psql_on "$1" -d bench -c "ALTER SYSTEM SET pwb.enabled = $2" \
        -c "ALTER SYSTEM SET pg_stat_statements.track = $3" -c "SELECT pg_reload_conf()" >/dev/null
}
declare -A FEATURE_ON=([pwb_observe]="on none" [pgss]="off top")
OFF_SETTINGS="off none"
RESULTS="$DIR/pairs.txt"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then on_side=a off_side=b; else on_side=b off_side=a; fi
    for s in "${SERVERS[@]}"; do
        psql_on "$s" -d bench -c "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history" -c "CHECKPOINT"
    done
    for feature in pwb_observe pgss; do
        set_on_server "$on_side" ${FEATURE_ON[$feature]}
        set_on_server "$off_side" $OFF_SETTINGS
        for clients in $CLIENTS; do
            for mode in $MODES; do
                for s in "${SERVERS[@]}"; do
                    pgbench_on "$s" -U bench $(mode_flag "$mode") -c "$clients" -j 2 -T "$SECONDS_PER_RUN" -n bench \
                        >"$DIR/$s.out" 2>/dev/null &
                done
                wait
                tps_on=$(tps_of "$DIR/$on_side.out")
                tps_off=$(tps_of "$DIR/$off_side.out")
                # Each pair is its own round for the summary, against its own baseline.
                echo "pair round=$round-$feature config=$feature mode=$mode clients=$clients tps=$tps_on server=$on_side" >>"$RESULTS"
                echo "pair round=$round-$feature config=off mode=$mode clients=$clients tps=$tps_off server=$off_side" >>"$RESULTS"
                echo "pair round=$round feature=$feature mode=$mode clients=$clients on=$tps_on off=$tps_off" \
                    "ratio=$(awk -v a="$tps_on" -v b="$tps_off" 'BEGIN { if (b > 0) printf "%.4f", a / b }')"
            done
        done
    done
done
summarize "$RESULTS" off simultaneous
