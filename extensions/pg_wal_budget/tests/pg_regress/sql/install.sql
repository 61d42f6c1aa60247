-- The extension installs into schema pwb and knows it was preloaded.
CREATE EXTENSION pg_wal_budget;
SELECT nspname FROM pg_namespace WHERE nspname = 'pwb';
SELECT pwb.preload_status();
SELECT pwb.version() = extversion AS version_matches FROM pg_extension WHERE extname = 'pg_wal_budget';
-- The three operational roles exist, cannot log in, and are marked as ours.
SELECT rolname, rolcanlogin, shobj_description(oid, 'pg_authid') AS marker
  FROM pg_roles WHERE rolname LIKE 'pwb\_%' ORDER BY rolname;
-- pwb_admin includes the monitor and tenant-setter roles.
SELECT pg_has_role('pwb_admin', 'pwb_monitor', 'MEMBER') AS admin_monitors,
       pg_has_role('pwb_admin', 'pwb_tenant_setter', 'MEMBER') AS admin_sets_tenants;
-- Every documented function, with its documented argument names.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pwb' ORDER BY p.proname;
-- Tables, view and CHECK constraints.
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pwb' AND c.relkind IN ('r', 'v') ORDER BY c.relname;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'pwb.policy'::regclass AND contype = 'c' ORDER BY conname;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'pwb.policy'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'pwb.query_profile'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
-- GUCs: documented names, defaults and contexts.
SELECT name, setting, unit, context, boot_val FROM pg_settings WHERE name LIKE 'pwb.%' ORDER BY name;
SHOW pwb.default_write_wal_bytes;
SHOW pwb.default_utility_wal_bytes;
SHOW pwb.max_prediction_bytes;
SELECT enumvals FROM pg_settings WHERE name = 'pwb.predictor';
-- Runtime GUCs cannot be changed per session; they are SIGHUP.
SET pwb.enabled = off;
-- Reinstalling over our own roles works (they carry our marker).
DROP EXTENSION pg_wal_budget;
CREATE EXTENSION pg_wal_budget;
SELECT count(*) AS our_roles FROM pg_roles WHERE rolname LIKE 'pwb\_%';
