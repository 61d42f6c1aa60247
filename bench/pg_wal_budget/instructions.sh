#!/usr/bin/env bash
# Instructions per tpcb-like transaction with pg_wal_budget's observe policy
# matching the session's role, against the same server with pwb.enabled = off
# (the library preloaded, each hook returning after one check). Counted by
# callgrind in a single-user backend, which makes the count exactly
# repeatable, unlike TPS on a shared VM. It does not count cache misses, which
# cpu_share.sh's sampling does see.
#
# Each count runs XACTS and 2 * XACTS transactions from a copy of the same
# data directory; the difference, divided by XACTS, is the cost of one
# transaction without the backend's start-up and shut-down.
# Usage: bench/pg_wal_budget/instructions.sh  (env: PG, XACTS, SCALE). Needs
#        pg_wal_budget installed into that PostgreSQL (a release build, as for
#        run.sh) and valgrind (installed from the distribution if missing).
set -euo pipefail
XACTS="${XACTS:-1000}"
SCALE="${SCALE:-1}"
DIR="${BENCH_DIR:-/tmp/pwb-instructions}"
source "$(dirname "$0")/common.sh"
command -v valgrind >/dev/null || { as_root apt-get install -y -qq valgrind >/dev/null; }

# A pristine data directory: pgbench tables and the observe policy on the
# role the single-user backend runs as (postgres).
cluster_init "$DIR" "$PG" "shared_preload_libraries = 'pg_wal_budget'" "compute_query_id = on"
cluster_start "$DIR" "$PG" "$PORT"
psql_ -d postgres -c "CREATE DATABASE bench"
psql_ -d bench -c "CREATE EXTENSION pg_wal_budget" \
    -c "SELECT pwb.create_policy('role', 'postgres', 1073741824, 1073741824, 'observe')" >/dev/null
pgbench_ -U postgres -i -q -s "$SCALE" bench >/dev/null 2>&1
psql_ -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
cluster_stop "$DIR" "$PG"

# pgbench's tpcb-like transaction, one statement per line (the single-user
# backend runs each line as one simple query), from a fixed random seed.
transactions() { # count
    awk -v n="$1" -v scale="$SCALE" 'BEGIN {
        srand(42)
        for (i = 0; i < n; i++) {
            aid = int(rand() * 100000 * scale) + 1; bid = int(rand() * scale) + 1
            tid = int(rand() * 10 * scale) + 1; delta = int(rand() * 10001) - 5000
            print "BEGIN;"
            printf "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d;\n", delta, aid
            printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d;\n", aid
            printf "UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = %d;\n", delta, tid
            printf "UPDATE pgbench_branches SET bbalance = bbalance + %d WHERE bid = %d;\n", delta, bid
            printf "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, %d, %d, %d, CURRENT_TIMESTAMP);\n", tid, bid, aid, delta
            print "END;"
        }
        # Shows that the observe policy governed the writes (4 per transaction).
        print "SELECT \x27governed=\x27 || accepted_statements FROM pwb.counters();"
    }'
}

# Instructions of one single-user backend running `count` transactions with
# pwb.enabled = `enabled`, from a fresh copy of the pristine data directory.
count_instructions() { # enabled count
    local run="$DIR/run" script="$DIR/xacts-$2.sql" out="$DIR/callgrind-$1-$2"
    rm -rf "$run"
    as_server_user cp -a "$DIR/data" "$run"
    transactions "$2" | as_server_user tee "$script" >/dev/null
    as_server_user valgrind --tool=callgrind --callgrind-out-file="$out.out" \
        "$BIN/postgres" --single -D "$run" -c "pwb.enabled=$1" bench \
        <"$script" >"$out.log" 2>&1
    awk '/Collected :/ { print $NF }' "$out.log"
}

echo "machine: $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), valgrind $(valgrind --version)"
echo "transactions: $XACTS and $((2 * XACTS)) tpcb-like, scale $SCALE, single-user backend"
declare -A PER_XACT
for enabled in off on; do
    small="$(count_instructions "$enabled" "$XACTS")"
    large="$(count_instructions "$enabled" "$((2 * XACTS))")"
    PER_XACT[$enabled]=$(((large - small) / XACTS))
    governed="$(grep -o 'governed=[0-9]*' "$DIR/callgrind-$enabled-$((2 * XACTS)).log" | tail -n 1)"
    echo "instructions pwb.enabled=$enabled xacts=$XACTS total=$small xacts=$((2 * XACTS)) total=$large per_xact=${PER_XACT[$enabled]} $governed"
done
awk -v off="${PER_XACT[off]}" -v on="${PER_XACT[on]}" 'BEGIN {
    printf "instructions summary per_xact_off=%d per_xact_observe=%d added=%d ratio=%.4f implied_tps_ratio=%.4f\n",
        off, on, on - off, on / off, off / on
}'
