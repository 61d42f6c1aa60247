-- The documented functions: names, argument names, what they store, and
-- the errors for bad input (which change nothing).
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_throttle'
JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname <> 'tests' -- pgrx test builds
ORDER BY 1;

CREATE ROLE regress_thr_analytics;
CREATE ROLE "Regress_Thr_Mixed";

-- The documented per-node example.
SELECT throttle_user_per_node('regress_thr_analytics', 100, 1000, 1000, 1000, 1000,
    NULL, 10, 100, NULL, NULL, NULL, 1000);
SELECT * FROM throttlings ORDER BY username;

-- Short-hands: the same row is replaced, never duplicated.
SELECT throttle_user_per_node_all('regress_thr_analytics', 100);
SELECT * FROM throttlings ORDER BY username;
SELECT throttle_user_query('regress_thr_analytics', 50);
SELECT username, query_throttle, seq_scan_throttle, func_scan_throttle FROM throttlings;
-- NULL for every node: stored, and nothing is throttled.
SELECT throttle_user_per_node_all('regress_thr_analytics', NULL);
SELECT username, query_throttle, seq_scan_throttle FROM throttlings;
-- Role names are matched exactly (case-sensitive).
SELECT throttle_user_query('Regress_Thr_Mixed', 7);
SELECT username, query_throttle FROM throttlings ORDER BY username;

-- Bad input: an error each, and the table is unchanged afterwards.
CREATE TEMP TABLE before AS SELECT * FROM throttlings;
\set SHOW_CONTEXT never
SELECT throttle_user_per_node_all('regress_thr_nobody', 100);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node_all('regress_thr_mixed', 100);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node_all(NULL, 100);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node_all('regress_thr_analytics', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node_all('regress_thr_analytics', -5);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_query('regress_thr_analytics', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_query('regress_thr_analytics', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node('regress_thr_analytics', 100, 100, 100, 100, 100,
    100, 100, 100, -1, 100, 100, 100);
\echo :LAST_ERROR_SQLSTATE
SELECT unthrottle_user('regress_thr_nobody');
\echo :LAST_ERROR_SQLSTATE
-- The table's own CHECK constraints refuse direct writes of bad values too.
INSERT INTO throttlings (username, seq_scan_throttle) VALUES ('regress_thr_x', 0);
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT errors
SELECT count(*) AS changed_rows FROM (
    (SELECT * FROM throttlings EXCEPT SELECT * FROM before)
    UNION ALL
    (SELECT * FROM before EXCEPT SELECT * FROM throttlings)) d;

-- unthrottle_user removes the row; unthrottling an unthrottled user is fine.
SELECT unthrottle_user('regress_thr_analytics');
SELECT unthrottle_user('regress_thr_analytics');
SELECT unthrottle_user('Regress_Thr_Mixed');
SELECT count(*) FROM throttlings;

-- A custom schema given at CREATE EXTENSION is honoured.
DROP EXTENSION pg_throttle;
CREATE SCHEMA regress_thr_schema;
CREATE EXTENSION pg_throttle SCHEMA regress_thr_schema;
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = 'throttlings';
SELECT regress_thr_schema.throttle_user_query('regress_thr_analytics', 10);
SELECT username, query_throttle FROM regress_thr_schema.throttlings;
SELECT count(*) FROM pg_proc WHERE proname = 'throttle_user_query' AND pronamespace = 'public'::regnamespace;
DROP EXTENSION pg_throttle;
DROP SCHEMA regress_thr_schema;
CREATE EXTENSION pg_throttle;

DROP ROLE regress_thr_analytics;
DROP ROLE "Regress_Thr_Mixed";
