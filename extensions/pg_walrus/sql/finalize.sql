-- Roles, the history() function and privileges (see docs/pg_walrus.md).
-- Roles are cluster-wide: another database's installation may already have
-- created them, and marked them as ours with a comment. A role of the same
-- name that pg_walrus did not create stops the install: whoever could create
-- it beforehand (any CREATEROLE holder) would otherwise gain its rights.
DO $walrus_roles$
DECLARE
    r text;
    marker constant text := 'pg_walrus operational role';
    existing oid;
BEGIN
    FOREACH r IN ARRAY ARRAY['walrus_monitor', 'walrus_admin'] LOOP
        SELECT oid INTO existing FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r;
        IF existing IS NULL THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r, marker);
        ELSIF pg_catalog.shobj_description(existing, 'pg_authid') IS DISTINCT FROM marker THEN
            RAISE EXCEPTION 'role "%" already exists and was not created by pg_walrus', r
                USING ERRCODE = 'duplicate_object',
                      DETAIL = pg_catalog.format('Role %I has no pg_walrus marker comment.', r),
                      HINT = 'Rename or drop that role, or if it is meant for pg_walrus, mark it with COMMENT ON ROLE ... IS ''pg_walrus operational role''.';
        END IF;
    END LOOP;
    IF NOT pg_catalog.pg_has_role('walrus_admin', 'walrus_monitor', 'MEMBER') THEN
        GRANT walrus_monitor TO walrus_admin;
    END IF;
END
$walrus_roles$;

-- Sizing decisions, newest first: walrus.history, and on a standby the
-- decisions it made itself, which reach walrus.history after promotion.
CREATE FUNCTION history()
RETURNS TABLE ("timestamp" timestamptz, action text, old_size_mb integer, new_size_mb integer,
               forced_checkpoints bigint, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d."timestamp", d.action, d.old_size_mb, d.new_size_mb, d.forced_checkpoints, d.reason
    FROM (SELECT h."timestamp", h.action, h.old_size_mb, h.new_size_mb, h.forced_checkpoints,
                 h.reason, h.id
          FROM walrus.history AS h
          UNION ALL
          SELECT p."timestamp", p.action, p.old_size_mb, p.new_size_mb, p.forced_checkpoints,
                 p.reason, NULL::bigint
          FROM walrus.pending_history() AS p) AS d
    ORDER BY d."timestamp" DESC, d.id DESC NULLS FIRST
$$;

REVOKE ALL ON FUNCTION status(), recommendation(), "analyze"(boolean), reset(boolean), cleanup_history(),
    metrics(), history(), pending_history() FROM PUBLIC;
GRANT USAGE ON SCHEMA walrus TO walrus_monitor, walrus_admin;
GRANT SELECT ON TABLE history TO walrus_monitor;
GRANT EXECUTE ON FUNCTION status(), recommendation(), metrics(), history(), pending_history(),
    "analyze"(boolean) TO walrus_monitor;
GRANT EXECUTE ON FUNCTION reset(boolean), cleanup_history() TO walrus_admin;
