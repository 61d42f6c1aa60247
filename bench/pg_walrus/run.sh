#!/usr/bin/env bash
# pg_walrus sizing benchmark.
#
# From max_wal_size = 32MB with checkpoint_timeout = 30s under a steady,
# rate-limited pgbench write load, count forced (requested) checkpoints per
# 30 s interval, the size changes pg_walrus makes, and whether it ever shrinks
# and then grows again, for each strategy; plus a baseline run with
# walrus.enable = off measured on the same machine in the same session.
#
#   bench/pg_walrus/run.sh [INTERVALS] [TPS]     (defaults: 20 intervals, 200 tps)
#   env: PG=15 (16, 18), RUNS="off wal_rate multiplicative percentile",
#        PARALLEL=2 (runs at a time), OUT=bench/pg_walrus/out,
#        PGBIN=<bin directory of a private copy of the installation>
#
# Reinstalling pg_walrus.so while a server has it loaded crashes that server
# (the file is rewritten in place). On a shared machine, run against a private
# relocatable copy, e.g. PGBIN=/tmp/copy-of-pginstall/bin (PG 16/18 wheels).
#
# All other pg_walrus settings are the defaults (threshold 2, cooldown 300 s,
# 4 changes per hour, shrink after 5 quiet intervals by 0.75) except
# walrus.min_size = 32MB, so that shrinking is possible at all.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$ROOT/scripts/lib.sh"
INTERVALS="${1:-20}"
TPS="${2:-200}"
PG="${PG:-15}"
RUNS="${RUNS:-off wal_rate multiplicative percentile}"
PARALLEL="${PARALLEL:-2}"
OUT="${OUT:-$HERE/out}"
BIN="${PGBIN:-$(pg_bindir_for "$PG")}"
mkdir -p "$OUT"

run_one() {
    local algo="$1" port="$2"
    local dir="/tmp/walrus-bench-$algo"
    local enable=on
    local a="$algo"
    if [[ $algo == off ]]; then enable=off; a=wal_rate; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if is_root; then chown "$PG_RUN_AS" "$dir"; fi
    as_server_user "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 \
        --locale=C >"$dir/initdb.log" 2>&1
    printf '%s\n' "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$dir'" \
        "shared_preload_libraries = 'pg_walrus'" \
        "max_wal_size = 32MB" "min_wal_size = 32MB" "checkpoint_timeout = 30s" \
        "log_checkpoints = on" "walrus.enable = off" "walrus.algorithm = $a" \
        "walrus.min_size = 32MB" | as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -o "-p $port" -l "$dir/server.log" -w -t 60 start >/dev/null
    local psql=("$BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d postgres)
    "${psql[@]}" -c "CREATE EXTENSION pg_walrus"
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -i -q -s 10 postgres >/dev/null 2>&1
    # Counters are measured from here (initialisation excluded).
    "${psql[@]}" -c "SELECT pg_stat_reset_shared('$( [[ $PG -ge 17 ]] && echo checkpointer || echo bgwriter)')" >/dev/null
    # Enable pg_walrus only now (off -> on takes a fresh baseline), so that
    # the initialisation's WAL does not count.
    if [[ $enable == on ]]; then
        "${psql[@]}" -c "ALTER SYSTEM SET walrus.enable = on"
        "${psql[@]}" -c "SELECT pg_reload_conf()" >/dev/null
    fi
    "${psql[@]}" -c "TRUNCATE walrus.history"
    local duration=$((INTERVALS * 30))
    as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c 2 -j 2 \
        -R "$TPS" -T "$duration" postgres >"$OUT/$algo.pgbench.txt" 2>&1 &
    local bench=$!
    local req_col timed_col view
    if [[ $PG -ge 17 ]]; then view=pg_stat_checkpointer; req_col=num_requested; timed_col=num_timed;
    else view=pg_stat_bgwriter; req_col=checkpoints_req; timed_col=checkpoints_timed; fi
    echo "interval,requested_total,timed_total,max_wal_size_mb,wal_lsn_bytes" >"$OUT/$algo.csv"
    for ((i = 1; i <= INTERVALS; i++)); do
        sleep 30
        "${psql[@]}" -c "SELECT $i, $req_col, $timed_col,
               (SELECT setting FROM pg_settings WHERE name = 'max_wal_size'),
               (pg_current_wal_insert_lsn() - '0/0')::bigint FROM $view" | tr '|' ',' >>"$OUT/$algo.csv"
    done
    wait "$bench" || true
    "${psql[@]}" -F ',' -c "SELECT to_char(timestamp, 'HH24:MI:SS'), action, old_size_mb, new_size_mb,
        forced_checkpoints, reason FROM walrus.history ORDER BY id" >"$OUT/$algo.history.csv"
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

summarise() {
    local algo="$1"
    awk -F, -v algo="$algo" -v hist="$OUT/$algo.history.csv" '
        NR == 1 { next }
        { forced = $2 - prev; prev = $2; f[$1] = forced; total += forced; size[$1] = $4
          if (forced > 0) last = $1; n = $1 }
        END {
            changes = 0; shrunk = 0; regrow = 0
            while ((getline line < hist) > 0) {
                split(line, h, ",")
                if (h[2] == "increase" || h[2] == "decrease" || (h[2] == "capped" && h[3] != h[4])) changes++
                if (h[2] == "decrease") shrunk = 1
                if ((h[2] == "increase" || h[2] == "capped") && shrunk) regrow = 1
            }
            per = ""; for (i = 1; i <= n; i++) per = per (i > 1 ? " " : "") f[i]
            printf "| %s | %d | %s | %s | %d | %s | %s MB |\n", algo, total, per,
                (last == "" ? "none" : last), changes, (regrow ? "yes" : "no"), size[n]
        }' "$OUT/$algo.csv"
}

port=56100
pids=()
for algo in $RUNS; do
    port=$((port + 1))
    run_one "$algo" "$port" &
    pids+=($!)
    if ((${#pids[@]} >= PARALLEL)); then wait "${pids[@]}"; pids=(); fi
done
((${#pids[@]} == 0)) || wait "${pids[@]}"

{
    echo "| strategy | forced checkpoints (total) | forced per 30 s interval | last interval with a forced checkpoint | size changes | shrink then grow | final max_wal_size |"
    echo "|---|---|---|---|---|---|---|"
    for algo in $RUNS; do summarise "$algo"; done
} | tee "$OUT/summary.md"
