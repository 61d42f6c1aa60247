#!/usr/bin/env bash
# Demo section: pg_wal_budget's pace mode holding one bulk INSERT to its
# policy's rate, measured from the WAL position and the clock.
set -euo pipefail
echo
echo "================ pg_wal_budget: pace ================"
say "a bulk loader role and its table; first the same INSERT without a policy, for comparison"
sql -q <<'SQL'
DROP TABLE IF EXISTS demo_bulk;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_loader') THEN
    CREATE ROLE demo_loader LOGIN;
  END IF;
END $$;
CREATE TABLE demo_bulk (id bigint, payload text);
GRANT ALL ON demo_bulk TO demo_loader;
SQL

# One INSERT ... SELECT as demo_loader; prints WAL written (MiB), seconds, MiB/s.
measure() {
    DEMO_USER=demo_loader sql -qAt -F ' ' <<'SQL'
SELECT pg_current_wal_lsn() AS l0, clock_timestamp() AS t0 \gset
INSERT INTO demo_bulk SELECT g, repeat('x', 300) FROM generate_series(1, 24000) g;
SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0') / 1048576.0, 1),
       round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 2),
       round((pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0') / 1048576.0
              / greatest(extract(epoch FROM clock_timestamp() - :'t0'), 0.001))::numeric, 1);
SQL
}
read -r mb secs rate < <(measure)
echo "unpoliced: ${mb} MiB of WAL in ${secs} s = ${rate} MiB/s"

say "a pace policy for demo_loader: 1 MiB/s with a 2 MiB burst. Pace mode admits the statement at once and makes it wait row by row whenever the bucket is empty"
policy_id=$(sql -qAt -c "SELECT pwb.create_policy(scope_kind => 'role', scope_value => 'demo_loader',
    wal_rate_bytes_per_sec => 1048576, wal_burst_bytes => 2097152, mode => 'pace', priority => 200)")
echo "policy_id = $policy_id (the same INSERT again; this takes a few seconds)"
read -r mb secs rate < <(measure)
after_burst=$(awk -v mb="$mb" -v s="$secs" 'BEGIN { printf "%.2f", (mb - 2) / s }')
echo "paced:     ${mb} MiB of WAL in ${secs} s = ${rate} MiB/s overall; after the 2 MiB burst $after_burst MiB/s (policy: 1.00 MiB/s)"
sql -c "SELECT decision_kind, reason_code, pg_size_pretty(actual_wal_bytes) AS measured
          FROM pwb.recent_decisions(5) WHERE policy_id = $policy_id"
sql -c "SELECT policy_id, mode, paced_statements, round(pace_wait_ms / 1000.0, 1) AS pace_wait_s,
               pg_size_pretty(debt_bytes) AS debt
          FROM pwb.scope_stats() WHERE policy_id = $policy_id"
sql -qAt -c "SELECT pwb.disable_policy($policy_id)" >/dev/null
