-- Privileges per role: public, pwb_monitor, pwb_tenant_setter, pwb_admin.
CREATE ROLE regress_pwb_public;
CREATE ROLE regress_pwb_mon IN ROLE pwb_monitor;
CREATE ROLE regress_pwb_tenant IN ROLE pwb_tenant_setter;
CREATE ROLE regress_pwb_adm IN ROLE pwb_admin;
\set VERBOSITY terse
SET ROLE regress_pwb_public;
SELECT pwb.version() IS NOT NULL AS version, pwb.preload_status();
SELECT * FROM pwb.counters();
SELECT * FROM pwb.policies();
SELECT * FROM pwb.policy;
SELECT pwb.create_policy('role', 'x', 1, 1);
SELECT pwb.set_tenant('acme');
SELECT pwb.reset_stats();
RESET ROLE;
SET ROLE regress_pwb_mon;
SELECT count(*) >= 0 AS can_read FROM pwb.counters();
SELECT count(*) >= 0 AS can_read FROM pwb.recent_decisions(10);
SELECT count(*) >= 0 AS can_read FROM pwb.scope_stats();
SELECT count(*) >= 0 AS can_read FROM pwb.query_profiles();
SELECT count(*) >= 0 AS can_read FROM pwb.scope_names();
SELECT count(*) >= 0 AS can_read FROM pwb.policies();
SELECT count(*) >= 0 AS can_read FROM pwb.active_policy_precedence;
SELECT pwb.create_policy('role', 'x', 1, 1);
SELECT pwb.reset_stats();
SELECT pwb.reset_profiles();
SELECT pwb.set_tenant('acme');
DELETE FROM pwb.policy;
RESET ROLE;
SET ROLE regress_pwb_tenant;
SELECT pwb.set_tenant('acme');
SELECT pwb.current_tenant();
SELECT pwb.clear_tenant();
SELECT * FROM pwb.counters();
SELECT pwb.create_policy('role', 'x', 1, 1);
RESET ROLE;
SET ROLE regress_pwb_adm;
SELECT pwb.create_policy('role', 'regress_pwb_x', 1000, 2000) > 0 AS created;
SELECT pwb.set_policy_mode(max(policy_id), 'reject') FROM pwb.policy;
SELECT pwb.update_policy(max(policy_id), 2000, 4000) FROM pwb.policy;
SELECT pwb.disable_policy(max(policy_id)) FROM pwb.policy;
SELECT pwb.reset_stats();
SELECT pwb.reset_profiles();
SELECT pwb.flush_profiles();
SELECT pwb.set_tenant('acme');
SELECT pwb.clear_tenant();
SELECT count(*) FROM pwb.policies();
RESET ROLE;
-- Nothing is granted to PUBLIC beyond version() and preload_status().
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pwb' AND has_function_privilege('regress_pwb_public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pwb' AND has_table_privilege('regress_pwb_public', c.oid, 'SELECT') ORDER BY 1;
-- The trigger function that reloads policies pins its search_path.
SELECT proname, prosecdef, proconfig FROM pg_proc WHERE proname = 'policy_changed';
DELETE FROM pwb.policy;
DROP ROLE regress_pwb_public, regress_pwb_mon, regress_pwb_tenant, regress_pwb_adm;
