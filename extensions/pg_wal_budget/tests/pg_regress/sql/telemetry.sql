-- Telemetry: observe, shadow and reject decisions on real writes.
SET compute_query_id = on;
SELECT pwb.reset_stats();
SELECT pwb.reset_profiles();
CREATE TABLE regress_pwb_t (id int PRIMARY KEY, payload text);
SELECT pwb.create_policy('role', current_user, 1000, 100000, 'observe') AS pid \gset
INSERT INTO regress_pwb_t SELECT g, repeat('x', 100) FROM generate_series(1, 100) g;
SELECT decision_kind, policy_id = :pid AS our_policy, scope_kind, statement_class, mode, reason_code,
       actual_wal_bytes > 0 AS measured, predicted_wal_bytes = 16384 AS class_default
  FROM pwb.recent_decisions(1);
-- Column sets of the telemetry functions.
SELECT * FROM pwb.counters() WHERE false;
SELECT * FROM pwb.scope_stats() WHERE false;
SELECT * FROM pwb.query_profiles() WHERE false;
SELECT * FROM pwb.recent_decisions() WHERE false;
SELECT * FROM pwb.scope_names() WHERE false;
SELECT accepted_statements >= 2 AS accepted, rejected_statements, actual_wal_bytes > 0 AS measured
  FROM pwb.counters();
SELECT scope_kind, scope_value = current_user AS is_me, seen_count > 0 AS seen FROM pwb.scope_names();
SELECT count(*) > 0 AS learned, bool_or(is_global) AS has_global FROM pwb.query_profiles();
-- Read-only statements are not governed.
SELECT count(*) FROM regress_pwb_t;
SELECT statement_class FROM pwb.recent_decisions(1);
-- Shadow: an 8 kB row far over the remaining budget is a would_reject, and still runs.
SELECT pwb.update_policy(:pid, 1, 2000);
SELECT pwb.set_policy_mode(:pid, 'shadow');
UPDATE regress_pwb_t SET payload = repeat('y', 8000) WHERE id <= 10;
SELECT decision_kind, reason_code, mode FROM pwb.recent_decisions(1);
SELECT shadow_would_reject_count >= 1 AS would_reject FROM pwb.counters();
SELECT count(*) FROM regress_pwb_t WHERE payload LIKE 'y%';
-- Reject: the statement is refused before it runs.
SELECT pwb.set_policy_mode(:pid, 'reject');
\set VERBOSITY terse
DELETE FROM regress_pwb_t WHERE id = 50;
\set VERBOSITY default
SELECT decision_kind, reason_code, mode FROM pwb.recent_decisions(1);
SELECT count(*) FROM regress_pwb_t WHERE id = 50;
SELECT rejected_statements >= 1 AS rejected FROM pwb.counters();
-- Budget state for the policy.
SELECT max_burst_bytes, rate_bytes_per_sec, available_bytes <= max_burst_bytes AS within_burst
  FROM pwb.scope_stats() WHERE policy_id = :pid;
-- Limits and resets.
SELECT count(*) FROM pwb.recent_decisions(0);
SELECT count(*) <= 3 FROM pwb.recent_decisions(3);
SELECT * FROM pwb.recent_decisions(-1);
SELECT pwb.disable_policy(:pid);
SELECT pwb.reset_stats();
SELECT accepted_statements, rejected_statements, shadow_would_reject_count FROM pwb.counters();
SELECT count(*) FROM pwb.scope_names();
SELECT pwb.flush_profiles();
SELECT count(*) > 0 AS stored FROM pwb.query_profile;
SELECT pwb.reset_profiles();
SELECT count(*) FROM pwb.query_profiles();
SELECT count(*) FROM pwb.query_profile;
DROP TABLE regress_pwb_t;
DELETE FROM pwb.policy;
