-- Template policies: a NULL (or blank) scope_value makes a policy for every
-- value of its kind, each value with its own bucket; a specific policy wins
-- over a template of the same priority.
SELECT pwb.create_policy('tenant', NULL, 1048576, 4194304, 'observe') AS template \gset
SELECT pwb.create_policy('tenant', '  ', 1048576, 4194304, 'observe', 50) IS NOT NULL AS blank_is_a_template;
SELECT pwb.create_policy('tenant', 'vip', 1048576, 4194304, 'observe') AS vip \gset
SELECT policy_id = :template AS is_template, scope_kind, scope_value IS NULL AS no_value
  FROM pwb.policies() ORDER BY policy_id;
-- Precedence: the specific policy, then the template of the same priority,
-- then the lower priority; disabled policies are listed too.
SELECT pwb.disable_policy(:template);
SELECT policy_id = :vip AS vip, scope_value, priority, precedence, enabled
  FROM pwb.active_policy_precedence ORDER BY precedence;
-- A too long value is still refused; direct DML may store NULL.
SELECT pwb.create_policy('tenant', repeat('x', 257), 10, 10);
INSERT INTO pwb.policy (scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes)
VALUES ('role', NULL, 10, 10) RETURNING scope_value IS NULL AS template;
DELETE FROM pwb.policy;
