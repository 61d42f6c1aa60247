-- Bad input to every walrus function: a clear error with its SQLSTATE, and
-- nothing changes (docs/pg_walrus.md, "SQL functions").
INSERT INTO walrus.history (action, old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec, reason)
VALUES ('increase', 1024, 2048, 3, 300, 'must survive');
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM walrus.history) AS rows,
       current_setting('max_wal_size') AS max_wal_size;

-- NULL where a boolean is wanted: 22004, with a hint.
SELECT walrus.analyze(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.analyze(apply => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.reset(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.reset(clear_history => NULL);
\echo :LAST_ERROR_SQLSTATE
-- Not a boolean at all: PostgreSQL's own 22P02.
SELECT walrus.analyze('maybe');
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.reset('sometimes');
\echo :LAST_ERROR_SQLSTATE
-- Arguments the functions do not take (terse: the hint's wording differs
-- between PostgreSQL versions).
\set VERBOSITY terse
SELECT walrus.status(true);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.metrics(1);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.cleanup_history(7);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.history(1);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.recommendation(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT walrus.analyze(apply => true, dry => true);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- Settings out of range or of the wrong type: 22023, nothing written.
ALTER SYSTEM SET walrus.max_wal_disk_fraction = 1.5;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.max_wal_disk_fraction = -0.1;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.max_wal_disk_fraction = 'NaN';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.cooldown_sec = 86401;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.cooldown_sec = -1;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.cooldown_sec = '5min';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.max = '1MB';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.min_size = 'lots';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.dry_run = 'perhaps';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET walrus.history_retention_days = -1;
\echo :LAST_ERROR_SQLSTATE
SELECT pg_read_file('postgresql.auto.conf') LIKE '%walrus.%' AS auto_conf_has_walrus;

-- Nothing changed.
SELECT (SELECT count(*) FROM walrus.history) = b.rows AS same_rows,
       current_setting('max_wal_size') = b.max_wal_size AS same_size
FROM before AS b;
DELETE FROM walrus.history;
