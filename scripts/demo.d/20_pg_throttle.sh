#!/usr/bin/env bash
# Demo section: pg_throttle (the document's Getting started example: a 200-row
# scan taking about 2 s at 100 tuples/s), live reconfiguration, query mode,
# a parallel query held to its rate, counting examined tuples.
set -euo pipefail
echo
echo "================ pg_throttle ================"

# Runs one statement as the demo role and prints how long it took.
timed() {
    local start end
    start=$(date +%s%N)
    DEMO_USER=throttle_demo sql -q -At -c "$1" >/dev/null
    end=$(date +%s%N)
    awk -v ns=$((end - start)) -v q="$1" 'BEGIN { printf "   measured %.2f s for: %s\n", ns / 1e9, q }'
}

say "installing pg_throttle and the Getting started table (200 rows); a login role throttle_demo plays the throttled user"
sql -q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_throttle;
DROP TABLE IF EXISTS tbl;
CREATE TABLE tbl(value int);
INSERT INTO tbl SELECT * FROM generate_series(1, 200);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'throttle_demo') THEN
        CREATE ROLE throttle_demo LOGIN;
    END IF;
END $$;
GRANT SELECT ON tbl TO throttle_demo;
SQL

say "unthrottled, the scan is instant"
timed "SELECT count(*) FROM tbl"

say "SELECT throttle_user_per_node_all('throttle_demo', 100): 200 tuples / 100 tuples per second = about 2 s"
sql -q -c "SELECT throttle_user_per_node_all('throttle_demo', 100)" >/dev/null
timed "SELECT count(*) FROM tbl"

say "the configuration (the user reads only their own row, without any grant on throttlings)"
DEMO_USER=throttle_demo sql -c "SELECT username, query_throttle, seq_scan_throttle, func_scan_throttle FROM current_throttling()"

say "live reconfiguration: one open session, the rate changes between its statements (no reconnect)"
DEMO_USER=throttle_demo sql -q <<'SQL' &
\timing on
SELECT count(*) AS at_100_per_s FROM tbl;
SELECT pg_sleep(0.5);
SELECT count(*) AS at_1000_per_s FROM tbl;
SQL
sleep 2.2
sql -q -c "SELECT throttle_user_per_node_all('throttle_demo', 1000)" >/dev/null
wait

say "query mode: one budget for every node of the query; EXPLAIN ANALYZE keeps exact row counts (time includes pacing)"
sql -q -c "SELECT throttle_user_query('throttle_demo', 400)" >/dev/null
DEMO_USER=throttle_demo sql -c "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM tbl, LATERAL generate_series(value, value) g"

say "a throttled backend sleeps on its latch, visible in pg_stat_activity, and cancels at once"
sql -q -c "SELECT throttle_user_per_node_all('throttle_demo', 5)" >/dev/null
DEMO_USER=throttle_demo sql -q -c "SELECT count(*) FROM tbl" >/dev/null 2>&1 &
sleep 1
sql -c "SELECT usename, state, wait_event_type, wait_event, query FROM pg_stat_activity WHERE usename = 'throttle_demo'"
start=$(date +%s%N)
sql -q -At -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'throttle_demo'" >/dev/null
wait || true
end=$(date +%s%N)
awk -v ns=$((end - start)) 'BEGIN { printf "   cancelled; the statement ended %.0f ms after the request (psql round trips included)\n", ns / 1e6 }'

say "parallel query: the leader and its 2 workers share one budget (3,000 rows at 1,000 tuples/s: about 3 s, not 1 s)"
sql -q <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS par;
CREATE TABLE par AS SELECT g AS id FROM generate_series(1, 3000) g;
ALTER TABLE par SET (parallel_workers = 2);
GRANT SELECT ON par TO throttle_demo;
SQL
sql -q -c "VACUUM ANALYZE par" >/dev/null
sql -q -c "SELECT throttle_user_query('throttle_demo', 1000)" >/dev/null
start=$(date +%s%N)
plan=$(DEMO_USER=throttle_demo sql -q -At -c "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
    SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0" \
    -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT count(*) FROM par")
end=$(date +%s%N)
echo "$plan" | sed 's/^/   /'
launched=$(echo "$plan" | awk '/Workers Launched/ { print $3 }')
rate=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.0f", 3000 / (ns / 1e9) }')
echo "   workers launched: $launched; measured: $rate tuples/s for the leader and workers together (limit 1000)"
if [[ "${launched:-0}" -lt 1 ]] || ((rate > 1100)); then
    echo "   unexpected: the parallel query was not held to its rate" >&2
    exit 1
fi

say "pg_throttle.count = examined (superuser-only, per role): a filter matching 3 of 3,000 rows is paced by the rows it reads (about 3 s)"
sql -q -c "ALTER ROLE throttle_demo SET pg_throttle.count = 'examined'" >/dev/null
timed "SELECT count(*) FROM par WHERE id % 1000 = 0"
sql -q -c "ALTER ROLE throttle_demo RESET pg_throttle.count" >/dev/null

say "unthrottle_user('throttle_demo'): instant again"
sql -q -c "SELECT unthrottle_user('throttle_demo')" >/dev/null
timed "SELECT count(*) FROM tbl"
