#!/usr/bin/env bash
# pg_walrus benchmark: forced checkpoints per 30 s interval, with pg_walrus
# and with the baseline (walrus.enable = off) measured side by side in the
# same run, on real servers and real WAL. Prints one results table.
#
#   bench/pg_walrus/run.sh                      # both scenarios, PostgreSQL 15
#   PG=16 SCENARIOS=replica bench/pg_walrus/run.sh
#
# Scenarios (SCENARIOS, default "sizing replica"):
#   sizing   From max_wal_size = 32MB, pgbench TPC-B-like rate-limited to
#            TPS (200) for INTERVALS (20) intervals, one primary per
#            configuration: off (baseline) and each strategy in STRATEGIES
#            ("wal_rate multiplicative percentile").
#   replica  A primary and a streaming standby, both from 32MB, under a
#            steady write load of about 1 MB/s (pgbench -R 100, ten 1 kB rows
#            per transaction). For PRE (6) intervals the standby's forced
#            restartpoints are counted (forced ones from the log, and the
#            requests its statistics count, which include requests skipped
#            for want of a new checkpoint record); then the primary is stopped
#            (immediate), the standby promoted, the load moved to it, and its
#            forced checkpoints counted for POST (10) intervals. Once with
#            pg_walrus on both servers, once with walrus.enable = off.
#
# Forced checkpoints and restartpoints are counted from the server log
# (log_checkpoints: "starting: ... wal"), per 30 s interval from the start of
# the load (interval 1 after a promotion is the one in which it happened).
# Everything else about pg_walrus is its defaults (threshold 2, cooldown
# 300 s, 4 changes an hour, shrink after 5 quiet intervals by 0.75), except
# walrus.min_size = 32MB so that shrinking is possible at all.
#
# It first builds and installs the extensions into this checkout's private
# copy of PostgreSQL $PG (scripts/lib.sh install_extensions: atomic, so a
# running server keeps its library). Raw samples, logs and histories go to
# OUT (default target/bench/pg_walrus/<time>/), never into the tree.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$ROOT/scripts/lib.sh"

PG="${PG:-15}"
SCENARIOS="${SCENARIOS:-sizing replica}"
INTERVALS="${INTERVALS:-20}"
TPS="${TPS:-200}"
STRATEGIES="${STRATEGIES:-wal_rate multiplicative percentile}"
PRE="${PRE:-6}"
POST="${POST:-10}"
INTERVAL_S=30
OUT="${OUT:-$TARGET_DIR/bench/pg_walrus/$(date -u +%Y%m%dT%H%M%SZ)}"
WORK="$TARGET_DIR/bench/pg_walrus/work"
mkdir -p "$OUT" "$WORK"
if is_root; then chown "$PG_RUN_AS" "$WORK"; fi

log "installing the extensions into the private PostgreSQL $PG"
install_extensions "$PG" >"$OUT/install.log" 2>&1 || { tail -n 30 "$OUT/install.log"; die "install failed"; }
BIN="$(pg_bindir_for "$PG")"

psql_at() { "$BIN/psql" -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres "${@:2}"; }

# Forced (WAL-caused) checkpoints and restartpoints logged so far.
forced_in_log() {
    grep -cE '(checkpoint|restartpoint) starting:.* wal( |$)' "$1" 2>/dev/null || true
}

server_conf() {
    local enable="$1" algorithm="$2"
    printf '%s\n' "shared_preload_libraries = 'pg_walrus'" \
        "max_wal_size = 32MB" "min_wal_size = 32MB" "checkpoint_timeout = 30s" \
        "log_checkpoints = on" "walrus.enable = $enable" "walrus.algorithm = $algorithm" \
        "walrus.min_size = 32MB"
}

# ---- sizing: one primary per configuration -------------------------------
sizing_one() {
    local config="$1" port="$2" enable=on algorithm="$1"
    if [[ $config == off ]]; then enable=off; algorithm=wal_rate; fi
    local dir="$WORK/sizing-$config"
    # walrus is switched on only after pgbench -i (off -> on takes a fresh
    # baseline), so that the initialisation's WAL does not count.
    cluster_init "$dir" "$PG" $'\n'"$(server_conf off "$algorithm")"
    cluster_start "$dir" "$PG" "$port"
    psql_at "$port" -c "CREATE EXTENSION pg_walrus"
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -q -s 10 postgres >/dev/null 2>&1
    if [[ $enable == on ]]; then
        psql_at "$port" -c "ALTER SYSTEM SET walrus.enable = on"
        psql_at "$port" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    local before
    before=$(forced_in_log "$dir/server.log")
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c 2 -j 2 \
        -R "$TPS" -T $((INTERVALS * INTERVAL_S)) postgres >"$OUT/sizing-$config.pgbench.txt" 2>&1 &
    local bench=$! i
    echo "interval,forced_total,max_wal_size_mb" >"$OUT/sizing-$config.csv"
    for ((i = 1; i <= INTERVALS; i++)); do
        sleep "$INTERVAL_S"
        echo "$i,$(($(forced_in_log "$dir/server.log") - before)),$(psql_at "$port" -c "SELECT setting FROM pg_settings WHERE name = 'max_wal_size'")" \
            >>"$OUT/sizing-$config.csv"
    done
    wait "$bench" || true
    psql_at "$port" -F ',' -c "SELECT to_char(timestamp, 'HH24:MI:SS'), action, old_size_mb, new_size_mb,
        forced_checkpoints, reason FROM walrus.history ORDER BY id" >"$OUT/sizing-$config.history.csv"
    cp "$dir/server.log" "$OUT/sizing-$config.server.log"
    cluster_stop "$dir" "$PG"
}

# ---- replica: standby restartpoints, then promotion ----------------------
replica_one() {
    local config="$1" pport="$2" sport="$3" enable=on
    if [[ $config == off ]]; then enable=off; fi
    local pdir="$WORK/replica-$config-primary" sdir="$WORK/replica-$config-standby"
    cluster_init "$pdir" "$PG" $'\n'"$(server_conf "$enable" wal_rate)"
    cluster_start "$pdir" "$PG" "$pport"
    psql_at "$pport" -c "CREATE EXTENSION pg_walrus"
    psql_at "$pport" -c "CREATE TABLE load (id bigint, pad text)"
    rm -rf "$sdir"
    mkdir -p "$sdir"
    if is_root; then chown "$PG_RUN_AS" "$sdir"; fi
    as_server_user "$BIN/pg_basebackup" -d "host=127.0.0.1 port=$pport user=postgres application_name=standby" \
        -D "$sdir/data" -R -X stream -C -S standby --checkpoint=fast --no-sync >"$sdir/basebackup.log" 2>&1
    printf '%s\n' "unix_socket_directories = '$sdir'" | as_server_user tee -a "$sdir/data/postgresql.conf" >/dev/null
    cluster_start "$sdir" "$PG" "$sport"
    local script="$WORK/load.sql"
    echo "INSERT INTO load SELECT g, repeat('x', 1000) FROM generate_series(1, 10) g;" >"$script"
    chmod a+r "$script"
    local sbefore
    sbefore=$(forced_in_log "$sdir/server.log")
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$pport" -U postgres -n -c 1 -j 1 -R 100 \
        -f "$script" -T $((PRE * INTERVAL_S)) postgres >"$OUT/replica-$config.pgbench-primary.txt" 2>&1 &
    local bench=$! i
    # Restartpoints the standby's statistics count as requested (also those
    # skipped for want of a new checkpoint record): what pg_walrus sizes on.
    local requested_sql="SELECT walrus.status()->'restartpoints'->>'requested'"
    local rbefore
    rbefore=$(psql_at "$sport" -c "$requested_sql")
    echo "phase,interval,forced_total,max_wal_size_mb" >"$OUT/replica-$config.csv"
    for ((i = 1; i <= PRE; i++)); do
        sleep "$INTERVAL_S"
        local size
        size=$(psql_at "$sport" -c "SELECT setting FROM pg_settings WHERE name = 'max_wal_size'")
        echo "standby,$i,$(($(forced_in_log "$sdir/server.log") - sbefore)),$size" >>"$OUT/replica-$config.csv"
        echo "requested,$i,$(($(psql_at "$sport" -c "$requested_sql") - rbefore)),$size" >>"$OUT/replica-$config.csv"
    done
    wait "$bench" || true
    # Failover: the primary dies, the standby is promoted, the load follows.
    cluster_stop "$pdir" "$PG" immediate
    as_server_user "$BIN/pg_ctl" -D "$sdir/data" -w -t 90 promote >/dev/null
    local promoted_at after
    promoted_at=$(psql_at "$sport" -c "SELECT now()")
    after=$(forced_in_log "$sdir/server.log")
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$sport" -U postgres -n -c 1 -j 1 -R 100 \
        -f "$script" -T $((POST * INTERVAL_S)) postgres >"$OUT/replica-$config.pgbench-promoted.txt" 2>&1 &
    bench=$!
    for ((i = 1; i <= POST; i++)); do
        sleep "$INTERVAL_S"
        echo "promoted,$i,$(($(forced_in_log "$sdir/server.log") - after)),$(psql_at "$sport" -c "SELECT setting FROM pg_settings WHERE name = 'max_wal_size'")" \
            >>"$OUT/replica-$config.csv"
    done
    wait "$bench" || true
    local columns="to_char(timestamp, 'HH24:MI:SS'), action, old_size_mb, new_size_mb,
        forced_checkpoints, metadata->>'server_role', metadata->>'origin', reason"
    psql_at "$sport" -F ',' -c "SELECT $columns FROM walrus.history ORDER BY timestamp, id" \
        >"$OUT/replica-$config.history.csv"
    # The standby's own decisions (written at promotion), and those of the
    # promoted server (the old primary's replicated rows are in neither).
    psql_at "$sport" -F ',' -c "SELECT $columns FROM walrus.history
        WHERE metadata->>'server_role' = 'standby' ORDER BY timestamp, id" >"$OUT/replica-$config.standby.history"
    psql_at "$sport" -F ',' -c "SELECT $columns FROM walrus.history
        WHERE timestamp >= '$promoted_at' ORDER BY timestamp, id" >"$OUT/replica-$config.promoted.history"
    cp "$pdir/server.log" "$OUT/replica-$config.primary.log"
    cp "$sdir/server.log" "$OUT/replica-$config.standby.log"
    cluster_stop "$sdir" "$PG"
}

# One table row from samples "interval,forced_total,size" (cumulative counts).
row() {
    local scenario="$1" config="$2" csv="$3" history="$4"
    awk -F, -v scenario="$scenario" -v config="$config" -v hist="$history" '
        { forced = $2 - prev; prev = $2; f[NR] = forced; total += forced; if (NR > 1) later += forced
          size = $3; n = NR }
        END {
            changes = 0
            while ((getline line < hist) > 0) {
                split(line, h, ",")
                if (h[2] == "increase" || h[2] == "decrease" || (h[2] == "capped" && h[3] != h[4])) changes++
            }
            per = ""; for (i = 1; i <= n; i++) per = per (i > 1 ? " " : "") f[i]
            printf "| %s | %s | %s | %d | %d | %d | %s MB |\n", scenario, config, per, total, later, changes, size
        }' "$csv"
}

configs_sizing="off $STRATEGIES"
pids=()
port=$(free_port)
for scenario in $SCENARIOS; do
    case "$scenario" in
        sizing)
            for config in $configs_sizing; do
                port=$((port + 1))
                sizing_one "$config" "$port" &
                pids+=($!)
            done ;;
        replica)
            for config in off wal_rate; do
                replica_one "$config" $((port + 1)) $((port + 2)) &
                pids+=($!)
                port=$((port + 2))
            done ;;
        *) die "unknown scenario '$scenario' (sizing, replica)" ;;
    esac
done
log "running: $SCENARIOS (PostgreSQL $PG); raw output in $OUT"
for pid in "${pids[@]}"; do wait "$pid"; done

{
    echo "| scenario | configuration | forced per 30 s interval | total | after interval 1 | size changes | final max_wal_size |"
    echo "|---|---|---|---|---|---|---|"
    for scenario in $SCENARIOS; do
        case "$scenario" in
            sizing)
                for config in $configs_sizing; do
                    name="$config"; [[ $config == off ]] && name="off (baseline)"
                    tail -n +2 "$OUT/sizing-$config.csv" >"$OUT/sizing-$config.samples"
                    row "primary, pgbench $TPS tps" "$name" "$OUT/sizing-$config.samples" "$OUT/sizing-$config.history.csv"
                done ;;
            replica)
                for config in off wal_rate; do
                    name="$config"; [[ $config == off ]] && name="off (baseline)"
                    grep '^standby,' "$OUT/replica-$config.csv" | cut -d, -f2- >"$OUT/replica-$config.standby.samples"
                    grep '^requested,' "$OUT/replica-$config.csv" | cut -d, -f2- >"$OUT/replica-$config.requested.samples"
                    grep '^promoted,' "$OUT/replica-$config.csv" | cut -d, -f2- >"$OUT/replica-$config.promoted.samples"
                    row "standby forced restartpoints, 1 MB/s" "$name" "$OUT/replica-$config.standby.samples" "$OUT/replica-$config.standby.history"
                    row "standby requested restartpoints, 1 MB/s" "$name" "$OUT/replica-$config.requested.samples" "$OUT/replica-$config.standby.history"
                    row "promoted standby, 1 MB/s" "$name" "$OUT/replica-$config.promoted.samples" "$OUT/replica-$config.promoted.history"
                done ;;
        esac
    done
} | tee "$OUT/summary.md"
echo "PostgreSQL $PG, $(nproc) CPUs, commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ); raw output: $OUT"
