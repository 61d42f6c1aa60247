-- SQL surface: GUCs, functions, history, privileges.
-- (The worker itself is exercised by the cluster tests.)

-- Every documented GUC with its default, unit, range and context.
SELECT name, setting, unit, context, vartype, min_val, max_val, enumvals
FROM pg_settings WHERE name LIKE 'walrus.%' ORDER BY name;

-- Out-of-range values are refused and change nothing.
ALTER SYSTEM SET walrus.shrink_factor = 1.5;
ALTER SYSTEM SET walrus.shrink_factor = 0.001;
ALTER SYSTEM SET walrus.shrink_intervals = 0;
ALTER SYSTEM SET walrus.history_retention_days = 3651;
ALTER SYSTEM SET walrus.max_changes_per_hour = 1001;
ALTER SYSTEM SET walrus.threshold = 0;
ALTER SYSTEM SET walrus.algorithm = 'fastest';
-- SIGHUP parameters cannot be set per session.
SET walrus.threshold = 3;
-- The prefix is reserved: a typo is an error, not a silent placeholder.
SET walrus.tresholds = 3;

-- The functions and their signatures.
SELECT p.proname, pg_get_function_arguments(p.oid) AS args, pg_get_function_result(p.oid) AS result,
       p.prosecdef
FROM pg_proc p WHERE p.pronamespace = 'walrus'::regnamespace ORDER BY p.proname;

-- The history table has the documented columns.
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
FROM pg_attribute WHERE attrelid = 'walrus.history'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;

-- recommendation(), analyze() and status() answer with the documented keys.
SELECT walrus.recommendation() ?& ARRAY['current_size_mb', 'recommended_size_mb', 'action', 'reason', 'confidence']
       AS has_keys,
       (walrus.recommendation()->>'confidence')::int BETWEEN 0 AND 100 AS confidence_in_range;
SELECT (walrus.recommendation()->>'current_size_mb')::bigint
       = (SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size') AS current_matches;
SELECT walrus.analyze()->>'applied' AS applied, walrus.analyze(false)->'recommendation' ? 'recommended_size_mb' AS has_size;
SELECT (s->>'loaded')::bool AS loaded, s->'settings'->>'walrus.algorithm' AS algorithm,
       s->'settings'->>'walrus.database' AS database, s ? 'last_check' AS has_last_check,
       s ? 'last_change' AS has_last_change, s->'counters' ? 'skipped' AS has_counters
FROM walrus.status() AS s;

-- Prometheus exposition: the metric families.
SELECT line FROM regexp_split_to_table(walrus.metrics(), E'\n') AS line
WHERE line LIKE '# TYPE %' ORDER BY line;

-- history() lists decisions newest first; cleanup_history() deletes expired rows.
INSERT INTO walrus.history (timestamp, action, old_size_mb, new_size_mb, forced_checkpoints,
                            checkpoint_timeout_sec, reason)
VALUES (now() - interval '30 days', 'increase', 1024, 3072, 2, 300, 'old'),
       (now() - interval '1 hour', 'decrease', 3072, 2304, 0, 300, 'recent');
SELECT action, old_size_mb, new_size_mb, forced_checkpoints, reason FROM walrus.history();
SELECT walrus.cleanup_history() AS deleted;
SELECT action, reason FROM walrus.history();

-- Privileges: nothing for PUBLIC, reading for walrus_monitor, acting for walrus_admin.
CREATE ROLE regress_walrus_user;
SET ROLE regress_walrus_user;
SELECT walrus.status();
SELECT count(*) FROM walrus.history;
RESET ROLE;
GRANT walrus_monitor TO regress_walrus_user;
SET ROLE regress_walrus_user;
SELECT walrus.status() ? 'worker' AS monitor_reads_status;
SELECT walrus.recommendation() ? 'action' AS monitor_reads_recommendation;
SELECT walrus.metrics() LIKE '%walrus_max_wal_size_bytes%' AS monitor_reads_metrics;
SELECT count(*) AS history_rows FROM walrus.history();
SELECT walrus.analyze(false) ? 'applied' AS monitor_can_analyze;
SELECT walrus.analyze(apply => true);
SELECT walrus.reset();
SELECT walrus.cleanup_history();
DELETE FROM walrus.history;
RESET ROLE;
GRANT walrus_admin TO regress_walrus_user;
SET ROLE regress_walrus_user;
SELECT walrus.reset() AS reset_done;
SELECT walrus.cleanup_history() AS nothing_expired;
SELECT (walrus.analyze(apply => true) ? 'applied') AS admin_can_apply;
RESET ROLE;
DROP ROLE regress_walrus_user;
DELETE FROM walrus.history;
