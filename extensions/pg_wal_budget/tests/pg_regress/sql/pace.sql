-- Mode pace: accepted wherever modes are, listed in the policy table and in
-- telemetry, and held to the same argument checks as the other modes.
SELECT pwb.create_policy('role', 'regress_pace', 1048576, 4194304, 'pace') AS id \gset
SELECT pwb.create_policy('role', 'regress_pace2', 1048576, 4194304, ' PACE ') IS NOT NULL AS trimmed_and_lowercased;
SELECT mode FROM pwb.policies() WHERE policy_id = :id;
SELECT pwb.set_policy_mode(:id, 'queue');
SELECT pwb.set_policy_mode(:id, 'pace');
SELECT policy_id = :id AS ours, mode, paced_statements, pace_wait_ms, waiting_statements
  FROM pwb.scope_stats() WHERE policy_id = :id;
SELECT mode FROM pwb.active_policy_precedence WHERE policy_id = :id;
SELECT paced_statements >= 0 AS counted FROM pwb.counters();
SELECT * FROM pwb.waits();
-- The same errors as the other modes.
SELECT pwb.create_policy('role', 'regress_pace', 0, 10, 'pace');
SELECT pwb.create_policy('role', 'regress_pace', 10, -1, 'pace');
SELECT pwb.set_policy_mode(:id, 'paced');
DELETE FROM pwb.policy;
