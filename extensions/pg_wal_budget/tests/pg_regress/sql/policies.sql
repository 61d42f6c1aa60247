-- Policy management: create, update, mode changes, disable, listing.
SELECT pwb.create_policy(scope_kind => 'role', scope_value => 'regress_pwb_app',
                         wal_rate_bytes_per_sec => 1048576, wal_burst_bytes => 8388608,
                         mode => 'observe', priority => 100) AS first_id \gset
SELECT pwb.create_policy('  DATABASE ', '  regress_pwb_db ', 1000, 1000, ' Shadow ') AS second_id \gset
SELECT pwb.create_policy('application', 'regress_app', 10, 20) AS third_id \gset
SELECT :second_id - :first_id AS id_step, :third_id - :second_id AS id_step2;
-- Arguments were trimmed and lower-cased; defaults applied.
SELECT mode, scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, priority, enabled
  FROM pwb.policies() ORDER BY policy_id;
SELECT pwb.set_policy_mode(:first_id, 'shadow');
SELECT pwb.update_policy(:first_id, 2097152, 16777216);
SELECT pwb.update_policy(:second_id, 2000, 4000, 300);
SELECT pwb.set_policy_mode(:first_id, 'QUEUE');
SELECT pwb.set_policy_mode(:third_id, 'reject');
SELECT pwb.set_policy_mode(:third_id, 'off');
SELECT pwb.disable_policy(:second_id);
SELECT mode, scope_kind, wal_rate_bytes_per_sec, wal_burst_bytes, priority, enabled, updated_at >= created_at AS touched
  FROM pwb.policy ORDER BY policy_id;
-- Precedence: highest priority first, then a specific policy before a
-- template, then lowest id; disabled and off policies are listed too.
SELECT scope_kind, mode, priority, precedence FROM pwb.active_policy_precedence;
SELECT pwb.set_policy_mode(:third_id, 'observe');
SELECT pwb.update_policy(:third_id, 10, 20, 100);
SELECT scope_kind, priority, precedence FROM pwb.active_policy_precedence;
-- Bad input: clear errors, nothing changes.
CREATE TEMP TABLE before AS SELECT * FROM pwb.policy;
SELECT pwb.create_policy(NULL, 'x', 1, 1);
SELECT pwb.create_policy('user', 'x', 1, 1);
SELECT pwb.create_policy('role', repeat('x', 257), 1, 1);
SELECT pwb.create_policy('role', 'x', 0, 1);
SELECT pwb.create_policy('role', 'x', -1, 1);
SELECT pwb.create_policy('role', 'x', NULL, 1);
SELECT pwb.create_policy('role', 'x', 10, 9);
SELECT pwb.create_policy('role', 'x', 10, NULL);
SELECT pwb.create_policy('role', 'x', 10, 10, 'block');
SELECT pwb.create_policy('role', 'x', 10, 10, NULL);
SELECT pwb.create_policy('role', 'x', 10, 10, 'observe', NULL);
SELECT pwb.update_policy(NULL, 1, 1);
SELECT pwb.update_policy(0, 1, 1);
SELECT pwb.update_policy(2147483647, 1, 1);
SELECT pwb.update_policy(:first_id, 5, 4);
SELECT pwb.set_policy_mode(:first_id, 'fast');
SELECT pwb.set_policy_mode(2147483647, 'observe');
SELECT pwb.disable_policy(-3);
SELECT pwb.disable_policy(2147483647);
-- Direct DML is held to the same CHECK constraints.
\set VERBOSITY terse
INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes) VALUES ('role', 'x', 10, 5);
INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes) VALUES ('group', 'x', 10, 50);
INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, mode) VALUES ('role', 'x', 10, 50, 'block');
INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes) VALUES ('role', ' x', 10, 50);
\set VERBOSITY default
SELECT count(*) AS changed_rows FROM (
  (SELECT * FROM pwb.policy EXCEPT SELECT * FROM before)
  UNION ALL
  (SELECT * FROM before EXCEPT SELECT * FROM pwb.policy)) d;
DELETE FROM pwb.policy;
