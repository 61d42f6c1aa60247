-- Security model: who may change the configuration, who may read what.
CREATE ROLE regress_thr_user LOGIN;
CREATE ROLE regress_thr_other LOGIN;
CREATE ROLE regress_thr_admin LOGIN IN ROLE throttle_admin;
GRANT USAGE ON SCHEMA public TO regress_thr_user, regress_thr_other, regress_thr_admin;

-- Nothing is granted to PUBLIC except the self-only reader.
SELECT p.proname, has_function_privilege('regress_thr_user', p.oid, 'EXECUTE') AS user_can,
       has_function_privilege('regress_thr_admin', p.oid, 'EXECUTE') AS admin_can,
       p.prosecdef AS security_definer, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_throttle'
JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname <> 'tests' -- pgrx test builds
ORDER BY 1;
SELECT has_table_privilege('regress_thr_user', 'throttlings', 'SELECT') AS user_select,
       has_table_privilege('regress_thr_admin', 'throttlings', 'INSERT') AS admin_insert;

-- An administrator (a member of throttle_admin) configures other users.
SET ROLE regress_thr_admin;
SELECT throttle_user_query('regress_thr_user', 100000);
SELECT throttle_user_per_node_all('regress_thr_other', 100000);
SELECT username, query_throttle, seq_scan_throttle FROM throttlings ORDER BY username;
RESET ROLE;

-- An ordinary user can change nothing (terse: these errors are raised while
-- starting the executor, and only the message and SQLSTATE matter here).
SET ROLE regress_thr_user;
\set VERBOSITY terse
SELECT throttle_user_query('regress_thr_user', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT unthrottle_user('regress_thr_user');
\echo :LAST_ERROR_SQLSTATE
SELECT throttle_user_per_node_all('regress_thr_other', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM throttlings;
\echo :LAST_ERROR_SQLSTATE
UPDATE throttlings SET query_throttle = 1;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
-- ... but reads its own configuration, and only its own, without any grant:
-- current_throttling() follows the session user, like the throttling itself.
SET SESSION AUTHORIZATION regress_thr_user;
SELECT session_user, username, query_throttle FROM current_throttling();
SET SESSION AUTHORIZATION regress_thr_other;
SELECT session_user, username, seq_scan_throttle FROM current_throttling();
RESET SESSION AUTHORIZATION;
SELECT count(*) FROM current_throttling();

-- With the documented GRANT SELECT, row-level security shows a user only
-- their own row.
GRANT SELECT ON throttlings TO regress_thr_user;
SET ROLE regress_thr_user;
SELECT username, query_throttle FROM throttlings;
RESET ROLE;
REVOKE SELECT ON throttlings FROM regress_thr_user;

-- Nothing changed through the refused calls.
SELECT username, query_throttle, seq_scan_throttle FROM throttlings ORDER BY username;
SELECT unthrottle_user('regress_thr_user');
SELECT unthrottle_user('regress_thr_other');

REVOKE USAGE ON SCHEMA public FROM regress_thr_user, regress_thr_other, regress_thr_admin;
DROP ROLE regress_thr_user;
DROP ROLE regress_thr_other;
DROP ROLE regress_thr_admin;
