-- An install finds an existing unmarked role of ours and refuses to adopt it.
DROP EXTENSION pg_wal_budget;
DROP ROLE pwb_admin, pwb_monitor, pwb_tenant_setter;
CREATE ROLE pwb_monitor;
\set VERBOSITY default
CREATE EXTENSION pg_wal_budget;
SELECT count(*) FROM pg_extension WHERE extname = 'pg_wal_budget';
DROP ROLE pwb_monitor;
CREATE EXTENSION pg_wal_budget;
SELECT rolname FROM pg_roles WHERE rolname LIKE 'pwb\_%' ORDER BY 1;
