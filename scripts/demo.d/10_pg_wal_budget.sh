#!/usr/bin/env bash
# Demo section: pg_wal_budget (a role policy observing, then rejecting, a WAL-heavy statement).
set -euo pipefail
echo
echo "================ pg_wal_budget ================"
say "installing pg_wal_budget (preloaded through shared_preload_libraries)"
sql -c "CREATE EXTENSION IF NOT EXISTS pg_wal_budget" -c "SELECT pwb.version(), pwb.preload_status()"

say "a writer role and a table for it"
sql -q <<'SQL'
DROP TABLE IF EXISTS demo_wal;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_writer') THEN
    CREATE ROLE demo_writer LOGIN;
  END IF;
END $$;
CREATE TABLE demo_wal (id bigserial PRIMARY KEY, payload text);
GRANT ALL ON demo_wal, demo_wal_id_seq TO demo_writer;
SQL

say "an observe-mode policy for role demo_writer: 1 MB/s, 8 MB burst (observe only records)"
policy_id=$(sql -qAt -c "SELECT pwb.create_policy(scope_kind => 'role', scope_value => 'demo_writer',
    wal_rate_bytes_per_sec => 1048576, wal_burst_bytes => 8388608, mode => 'observe', priority => 100)")
echo "policy_id = $policy_id"

say "demo_writer runs a WAL-heavy INSERT (20,000 rows) three times; the first prediction is the 16kB class default, then the EWMA profile learns"
for i in 1 2 3; do
    DEMO_USER=demo_writer sql -q -c "INSERT INTO demo_wal (payload) SELECT repeat('x', 200) FROM generate_series(1, 20000)"
done
sql -c "SELECT decision_kind, mode, reason_code,
               pg_size_pretty(predicted_wal_bytes) AS predicted,
               pg_size_pretty(actual_wal_bytes) AS measured
          FROM pwb.recent_decisions(10)
         WHERE policy_id = $policy_id
         ORDER BY timestamp_epoch_ms"
sql -c "SELECT policy_id, pg_size_pretty(available_bytes) AS available, pg_size_pretty(debt_bytes) AS debt,
               pg_size_pretty(rate_bytes_per_sec) || '/s' AS rate
          FROM pwb.scope_stats() WHERE policy_id = $policy_id"

say "switch the policy to reject with a 1 MB burst: the learned prediction can never fit, so the statement is refused before it runs"
sql -qAt -c "SELECT pwb.update_policy($policy_id, 1048576, 1048576)" -c "SELECT pwb.set_policy_mode($policy_id, 'reject')" >/dev/null
if DEMO_USER=demo_writer sql -q -c "INSERT INTO demo_wal (payload) SELECT repeat('x', 200) FROM generate_series(1, 20000)"; then
    echo "unexpected: the statement was admitted"
else
    echo "(the error above is the expected rejection: SQLSTATE 53400)"
fi
sql -c "SELECT decision_kind, mode, reason_code,
               pg_size_pretty(predicted_wal_bytes) AS predicted,
               pg_size_pretty(available_before) AS available
          FROM pwb.recent_decisions(1)"
say "observe mode never charged the bucket: it is full, yet the statement cannot fit in a 1 MB burst"
sql -c "SELECT pg_size_pretty(available_bytes) AS available, pg_size_pretty(max_burst_bytes) AS burst,
               pg_size_pretty(debt_bytes) AS debt
          FROM pwb.scope_stats() WHERE policy_id = $policy_id"
sql -c "SELECT accepted_statements, rejected_statements,
               pg_size_pretty(predicted_wal_bytes) AS predicted_total,
               pg_size_pretty(actual_wal_bytes) AS measured_total
          FROM pwb.counters()"
say "roll back to observe for the rest of the demo"
sql -qAt -c "SELECT pwb.set_policy_mode($policy_id, 'observe')" >/dev/null
