-- Roles, privileges, the invalidation trigger, the documented functions,
-- and the statistics view. @extschema@ is the schema given to CREATE
-- EXTENSION (any schema works).

-- Role names starting with "pg_" are reserved by PostgreSQL, so the
-- administrators' role is throttle_admin (see docs/pg_throttle.md). Roles are
-- cluster-wide: another database's installation may already have created it
-- and marked it as ours with a comment. A role of that name that pg_throttle
-- did not create stops the install: whoever could create it beforehand (any
-- CREATEROLE holder) would otherwise gain the right to throttle everyone.
DO $throttle_roles$
DECLARE
    marker constant text := 'pg_throttle operational role';
    existing oid;
BEGIN
    SELECT oid INTO existing FROM pg_catalog.pg_roles
     WHERE rolname OPERATOR(pg_catalog.=) 'throttle_admin';
    IF existing IS NULL THEN
        CREATE ROLE throttle_admin NOLOGIN;
        EXECUTE pg_catalog.format('COMMENT ON ROLE throttle_admin IS %L', marker);
    ELSIF pg_catalog.shobj_description(existing, 'pg_authid') IS DISTINCT FROM marker THEN
        RAISE EXCEPTION 'role "throttle_admin" already exists and was not created by pg_throttle'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Role throttle_admin has no pg_throttle marker comment.',
                  HINT = 'Rename or drop that role, or if it is meant for pg_throttle, mark it with COMMENT ON ROLE throttle_admin IS ''pg_throttle operational role''.';
    END IF;
END
$throttle_roles$;

GRANT USAGE ON SCHEMA @extschema@ TO throttle_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE @extschema@.throttlings TO throttle_admin;
-- Administrators see and change every row; everybody else (if ever granted
-- SELECT) sees only their own row through throttlings_own_row.
CREATE POLICY throttlings_admin ON @extschema@.throttlings
    TO throttle_admin USING (true) WITH CHECK (true);

-- Every change reaches every session at its next statement.
CREATE TRIGGER throttlings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.throttlings
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.throttlings_changed();
REVOKE ALL ON FUNCTION @extschema@.throttlings_changed() FROM PUBLIC;

-- The documented functions. Validation and the INSERT are in Rust
-- (throttle_store), which builds the column list from the one list of node
-- kinds; each function passes the name its caller knows a rate by, so that
-- errors name what the caller wrote.
CREATE FUNCTION @extschema@.throttle_user_per_node(
    username text,
    seq_scan_max int, idx_scan_max int, idx_only_scan_max int,
    bitmap_heap_scan_max int, bitmap_index_scan_max int,
    custom_scan_max int, foreign_scan_max int, tid_range_scan_max int,
    modify_scan_max int, values_scan_max int, result_scan_max int,
    func_scan_max int
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @extschema@.throttle_store(
        $1, NULL, ARRAY[$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13], NULL);
$fn$;

CREATE FUNCTION @extschema@.throttle_user_per_node_all(username text, max int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @extschema@.throttle_store($1, NULL, ARRAY[$2], 'max');
$fn$;

CREATE FUNCTION @extschema@.throttle_user_query(username text, max int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'invalid value for max: must not be null'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'max = NULL',
                  HINT = 'Pass a number of tuples per second greater than zero; use unthrottle_user() to remove throttling.';
    END IF;
    PERFORM @extschema@.throttle_store($1, $2, NULL, 'max');
END
$fn$;

-- Removes a user's row. The row of a role that has been dropped is removed
-- too (with a NOTICE): rows are keyed by name, and a role created later
-- under that name would otherwise inherit the throttling.
CREATE FUNCTION @extschema@.unthrottle_user(username text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot change the throttling configuration on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'throttlings is replicated from the primary.',
                  HINT = 'Run it on the primary; standbys follow once the change is replayed.';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'username must not be null'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the name of an existing role.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1) THEN
        DELETE FROM @extschema@.throttlings t WHERE t.username OPERATOR(pg_catalog.=) $1;
    ELSIF EXISTS (SELECT 1 FROM @extschema@.throttlings t WHERE t.username OPERATOR(pg_catalog.=) $1) THEN
        DELETE FROM @extschema@.throttlings t WHERE t.username OPERATOR(pg_catalog.=) $1;
        RAISE NOTICE 'removed the throttling of "%", a role that no longer exists', $1;
    ELSE
        RAISE EXCEPTION 'role "%" does not exist',
                CASE WHEN pg_catalog.length($1) OPERATOR(pg_catalog.<=) 64 THEN $1
                     ELSE pg_catalog.left($1, 64) OPERATOR(pg_catalog.||) '...' END
            USING ERRCODE = 'undefined_object',
                  DETAIL = pg_catalog.format('username = %L and no throttlings row has that name',
                               CASE WHEN pg_catalog.length($1) OPERATOR(pg_catalog.<=) 64 THEN $1
                                    ELSE pg_catalog.left($1, 64) OPERATOR(pg_catalog.||) '...' END),
                  HINT = 'Check the spelling (role names are case-sensitive).';
    END IF;
END
$fn$;

-- The session user's own configuration, readable by everyone without any
-- grant on throttlings (it returns only the session user's row).
CREATE FUNCTION @extschema@.current_throttling()
RETURNS SETOF @extschema@.throttlings
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT * FROM @extschema@.throttlings t WHERE t.username OPERATOR(pg_catalog.=) session_user;
$fn$;

-- What a role's throttled nodes are charged for (pg_throttle.count):
-- superusers use ALTER ROLE ... SET directly; throttle_admin members use
-- this. Takes effect at the role's next login. NULL resets it.
CREATE FUNCTION @extschema@.throttle_user_count(username text, count text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot change the throttling count of a role on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'Role settings are replicated from the primary.',
                  HINT = 'Run it on the primary; standbys follow once the change is replayed.';
    END IF;
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'username must not be null'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the name of an existing role.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1) THEN
        RAISE EXCEPTION 'role "%" does not exist',
                CASE WHEN pg_catalog.length($1) OPERATOR(pg_catalog.<=) 64 THEN $1
                     ELSE pg_catalog.left($1, 64) OPERATOR(pg_catalog.||) '...' END
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first, or check the spelling (role names are case-sensitive).';
    END IF;
    IF $2 IS NULL THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I RESET pg_throttle.count', $1);
    ELSIF $2 OPERATOR(pg_catalog.=) ANY (ARRAY['returned', 'examined']) THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I SET pg_throttle.count = %L', $1, $2);
    ELSE
        RAISE EXCEPTION 'invalid value for count: "%"',
                CASE WHEN pg_catalog.length($2) OPERATOR(pg_catalog.<=) 64 THEN $2
                     ELSE pg_catalog.left($2, 64) OPERATOR(pg_catalog.||) '...' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''returned'' or ''examined'', or NULL to reset it.';
    END IF;
END
$fn$;

-- Statistics (kept when pg_throttle is in shared_preload_libraries): one
-- row per throttled user; a user sees their own row, members of pg_monitor
-- and throttle_admin see every row.
CREATE VIEW @extschema@.throttle_stats AS
    SELECT * FROM @extschema@.throttle_stats_rows();
GRANT SELECT ON @extschema@.throttle_stats TO PUBLIC;

-- Only superusers and throttle_admin members change the configuration or
-- reset statistics.
REVOKE ALL ON FUNCTION @extschema@.throttle_store(text, int, int[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_per_node(text, int, int, int, int, int, int, int, int, int, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_per_node_all(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_query(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unthrottle_user(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_count(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_stats_reset(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_store(text, int, int[], text) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_per_node(text, int, int, int, int, int, int, int, int, int, int, int, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_per_node_all(text, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_query(text, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.unthrottle_user(text) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_count(text, text) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_stats_reset(text) TO throttle_admin;
