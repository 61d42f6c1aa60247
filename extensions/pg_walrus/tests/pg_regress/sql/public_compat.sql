-- Coming from the public pg_walrus: the shapes its users' monitoring and
-- scripts read (docs/pg_walrus.md, "Coming from the public pg_walrus").

-- status() carries the public keys at the top level, beside ours.
SELECT k AS missing_key
FROM unnest(ARRAY['enabled', 'current_max_wal_size_mb', 'worker_running', 'total_adjustments',
                  'changes_this_hour', 'shrink_enabled', 'shrink_factor', 'shrink_intervals',
                  'min_size_mb', 'cooldown_sec', 'max_changes_per_hour', 'at_ceiling',
                  'cooldown_active', 'cooldown_remaining_sec', 'hourly_limit_reached',
                  'configured_maximum_mb', 'threshold', 'checkpoint_timeout_sec',
                  'last_check_time', 'last_adjustment_time', 'quiet_intervals',
                  'hourly_window_start']) AS k
WHERE NOT walrus.status() ? k;
-- Same meanings and units: sizes in MB, times in seconds, flags as booleans.
SELECT (s->>'current_max_wal_size_mb')::bigint
           = (SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size') AS size_is_max_wal_size,
       (s->>'configured_maximum_mb')::bigint
           = (SELECT setting::bigint FROM pg_settings WHERE name = 'walrus.max') AS maximum_is_walrus_max,
       (s->>'min_size_mb')::bigint
           = (SELECT setting::bigint FROM pg_settings WHERE name = 'walrus.min_size') AS min_is_walrus_min_size,
       (s->>'cooldown_sec')::int = current_setting('walrus.cooldown_sec')::int AS cooldown_in_seconds,
       (s->>'at_ceiling')::bool
           = ((s->>'current_max_wal_size_mb')::bigint >= (s->>'configured_maximum_mb')::bigint) AS ceiling_rule,
       jsonb_typeof(s->'worker_running') AS worker_running_type,
       jsonb_typeof(s->'cooldown_active') AS cooldown_active_type,
       jsonb_typeof(s->'hourly_limit_reached') AS hourly_limit_type,
       (s->>'cooldown_remaining_sec')::int >= 0 AS remaining_not_negative,
       (s->>'total_adjustments')::int >= 0 AND (s->>'changes_this_hour')::int >= 0 AS counts
FROM walrus.status() AS s;

-- walrus.cooldown_sec is a plain number of seconds: SHOW prints 300, not 5min.
SHOW walrus.cooldown_sec;
SELECT unit FROM pg_settings WHERE name = 'walrus.cooldown_sec';

-- analyze() nests the recommendation, as the public pg_walrus does; ours
-- keeps its extra fields inside it.
SELECT jsonb_typeof(a->'analyzed') AS analyzed, jsonb_typeof(a->'recommendation') AS recommendation,
       jsonb_typeof(a->'applied') AS applied, (a->>'applied')::bool AS applied_value,
       a->'recommendation' ?& ARRAY['current_size_mb', 'recommended_size_mb', 'action', 'reason',
                                    'confidence', 'algorithm', 'server_role'] AS nested_keys,
       NOT a ? 'recommended_size_mb' AS not_flat
FROM walrus.analyze() AS a;

-- reset() keeps walrus.history; reset(clear_history => true) deletes it.
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec, reason)
VALUES ('increase', 1024, 2048, 3, 300, 'kept by reset()');
SELECT walrus.reset() AS reset_done;
SELECT count(*) AS rows_after_reset FROM walrus.history;
SELECT walrus.reset(clear_history => true) AS reset_and_clear;
SELECT count(*) AS rows_after_clear FROM walrus.history;
SELECT pg_get_function_arguments('walrus.reset'::regproc) AS reset_arguments;

-- walrus.history refuses rows the public pg_walrus' constraints refuse (terse:
-- the failing row holds the time).
\set VERBOSITY terse
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
VALUES ('grow', 1, 2, 0, 300);
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
VALUES ('increase', 0, 2, 0, 300);
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
VALUES ('increase', 1, -2, 0, 300);
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
VALUES ('decrease', 2, 1, -1, 300);
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec)
VALUES ('capped', 2, 2, 0, 0);
\set VERBOSITY default
SELECT count(*) AS nothing_inserted FROM walrus.history;
SELECT conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE conrelid = 'walrus.history'::regclass AND contype = 'c' ORDER BY conname;
-- The index has the public name.
SELECT indexrelid::regclass AS index FROM pg_index
WHERE indrelid = 'walrus.history'::regclass AND NOT indisprimary;
