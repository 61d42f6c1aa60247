-- Roles, the history() function and privileges (see docs/pg_walrus.md).
-- Roles are cluster-wide: create them only if another database's
-- installation has not already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'walrus_monitor') THEN
        CREATE ROLE walrus_monitor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'walrus_admin') THEN
        CREATE ROLE walrus_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('walrus_admin', 'walrus_monitor', 'MEMBER') THEN
        GRANT walrus_monitor TO walrus_admin;
    END IF;
END
$$;

-- Sizing decisions, newest first.
CREATE FUNCTION history()
RETURNS TABLE ("timestamp" timestamptz, action text, old_size_mb integer, new_size_mb integer,
               forced_checkpoints bigint, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h."timestamp", h.action, h.old_size_mb, h.new_size_mb, h.forced_checkpoints, h.reason
    FROM walrus.history AS h
    ORDER BY h."timestamp" DESC, h.id DESC
$$;

REVOKE ALL ON FUNCTION status(), recommendation(), "analyze"(boolean), reset(), cleanup_history(),
    metrics(), history() FROM PUBLIC;
GRANT USAGE ON SCHEMA walrus TO walrus_monitor, walrus_admin;
GRANT SELECT ON TABLE history TO walrus_monitor;
GRANT EXECUTE ON FUNCTION status(), recommendation(), metrics(), history(), "analyze"(boolean)
    TO walrus_monitor;
GRANT EXECUTE ON FUNCTION reset(), cleanup_history() TO walrus_admin;
