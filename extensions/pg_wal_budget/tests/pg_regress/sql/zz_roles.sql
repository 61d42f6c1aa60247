-- An install finds an existing role of ours without the pg_wal_budget marker
-- and refuses to adopt it (roles are cluster-wide, so the test removes the
-- marker instead of dropping roles other databases may use). The error's
-- CONTEXT lines differ between versions (18 adds the extension script), so
-- they are not shown.
\set SHOW_CONTEXT never
DROP EXTENSION pg_wal_budget;
COMMENT ON ROLE pwb_monitor IS NULL;
CREATE EXTENSION pg_wal_budget;
SELECT count(*) FROM pg_extension WHERE extname = 'pg_wal_budget';
COMMENT ON ROLE pwb_monitor IS 'someone else''s role';
CREATE EXTENSION pg_wal_budget;
-- Marked again, the role is adopted.
COMMENT ON ROLE pwb_monitor IS 'pg_wal_budget operational role';
CREATE EXTENSION pg_wal_budget;
SELECT rolname FROM pg_roles WHERE rolname LIKE 'pwb\_%' ORDER BY 1;
