#!/usr/bin/env bash
# Demo section: pg_walrus. The demo cluster runs with max_wal_size = 32MB and
# checkpoint_timeout = 30s; a steady stream of inserts forces checkpoints and
# the worker grows max_wal_size at the end of its (real, 30 s) interval.
set -euo pipefail
echo
echo "================ pg_walrus ================"

say "installing pg_walrus; the worker is already running (shared_preload_libraries) and has taken its baseline"
sql -q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_walrus;
DROP TABLE IF EXISTS walrus_demo;
CREATE TABLE walrus_demo (id bigint, pad text);
SQL
sql -At -c "SELECT 'max_wal_size = ' || current_setting('max_wal_size') || ', algorithm = ' || current_setting('walrus.algorithm') || ', worker ' || (walrus.status()->'worker'->>'state')"

say "writing about 8 MB of WAL per second: with max_wal_size = 32MB every 16 MB segment forces a checkpoint"
start=$(date +%s)
rows=0
while (($(date +%s) - start < 95)); do
    sql -q -c "INSERT INTO walrus_demo SELECT g, repeat('x', 900) FROM generate_series(1, 8000) g" \
           -c "TRUNCATE walrus_demo"
    sleep 1
    rows=$(sql -At -c "SELECT count(*) FROM walrus.history WHERE action IN ('increase', 'capped')")
    if ((rows > 0)); then break; fi
done
elapsed=$(($(date +%s) - start))
if ((rows == 0)); then
    say "unexpected: no resize within ${elapsed} s (the machine may be too slow to force two checkpoints in one interval)"
    exit 1
else
    say "after ${elapsed} s of load the worker resized max_wal_size (walrus.history):"
fi
sql -c "SELECT to_char(timestamp, 'HH24:MI:SS') AS at, action, old_size_mb, new_size_mb, forced_checkpoints, reason FROM walrus.history()"
sql -At -c "SELECT 'max_wal_size is now ' || current_setting('max_wal_size')"

say "the server log, as the document shows it"
grep -E "forced checkpoints over|WAL request threshold|current max_wal_size is|parameter \"max_wal_size\" changed" \
    "$DEMO_DIR/server.log" | sed -E 's/^.*(LOG: )/\1/' | head -n 5 || true

say "with the load stopped, walrus.recommendation() explains why it keeps the size"
sql -At -c "SELECT jsonb_pretty(walrus.recommendation() - 'cycle_wal_bytes' - 'interval_elapsed_ms')"

say "growth never outruns the disk: the cap is walrus.max_wal_disk_fraction of what pg_wal can use on its filesystem"
sql -At -c "SELECT 'server_role = ' || (s->>'server_role') || ', disk cap = ' || coalesce((s->'disk'->>'cap_mb') || ' MB', 'off') || ', pg_wal holds ' || pg_size_pretty((s->'disk'->>'pg_wal_bytes')::bigint) FROM walrus.status() s"

say "Prometheus metrics (walrus.metrics(), excerpt)"
sql -At -c "SELECT walrus.metrics()" | grep -E "^walrus_(max_wal_size_bytes|recommended_size_bytes|checkpoints_requested_total|changes_total|decisions_total)" || true
sql -q -c "DROP TABLE walrus_demo"
