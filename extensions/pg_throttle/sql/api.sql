-- Roles, privileges, the invalidation trigger and the documented functions.
-- @extschema@ is the schema given to CREATE EXTENSION (any schema works).

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

-- Validates and stores one user's configuration. Internal: called by the
-- documented functions below, which pass their own argument names so that
-- errors name what the caller wrote.
CREATE FUNCTION @extschema@.throttle_store(
    target text, query_max int, node_max int[], arg_names text[]
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i int;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'username must not be null'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the name of an existing role.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = target) THEN
        RAISE EXCEPTION 'role "%" does not exist', target
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('username = %L', target),
                  HINT = 'Create the role first, or check the spelling (role names are case-sensitive).';
    END IF;
    FOR i IN 1 .. array_length(arg_names, 1) LOOP
        IF (CASE WHEN i = 1 THEN query_max ELSE node_max[i - 1] END) <= 0 THEN
            RAISE EXCEPTION 'invalid value for %: must be positive', arg_names[i]
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('%s = %s', arg_names[i],
                                      CASE WHEN i = 1 THEN query_max ELSE node_max[i - 1] END),
                      HINT = 'Pass a number of tuples per second greater than zero, or NULL to leave it unthrottled.';
        END IF;
    END LOOP;
    INSERT INTO @extschema@.throttlings AS t (
        username, query_throttle,
        seq_scan_throttle, idx_scan_throttle, idx_only_scan_throttle,
        bitmap_heap_scan_throttle, bitmap_index_scan_throttle,
        custom_scan_throttle, foreign_scan_throttle, tid_range_scan_throttle,
        modify_scan_throttle, values_scan_throttle, result_scan_throttle,
        func_scan_throttle)
    VALUES (target, query_max,
        node_max[1], node_max[2], node_max[3], node_max[4], node_max[5], node_max[6],
        node_max[7], node_max[8], node_max[9], node_max[10], node_max[11], node_max[12])
    ON CONFLICT (username) DO UPDATE SET
        query_throttle = EXCLUDED.query_throttle,
        seq_scan_throttle = EXCLUDED.seq_scan_throttle,
        idx_scan_throttle = EXCLUDED.idx_scan_throttle,
        idx_only_scan_throttle = EXCLUDED.idx_only_scan_throttle,
        bitmap_heap_scan_throttle = EXCLUDED.bitmap_heap_scan_throttle,
        bitmap_index_scan_throttle = EXCLUDED.bitmap_index_scan_throttle,
        custom_scan_throttle = EXCLUDED.custom_scan_throttle,
        foreign_scan_throttle = EXCLUDED.foreign_scan_throttle,
        tid_range_scan_throttle = EXCLUDED.tid_range_scan_throttle,
        modify_scan_throttle = EXCLUDED.modify_scan_throttle,
        values_scan_throttle = EXCLUDED.values_scan_throttle,
        result_scan_throttle = EXCLUDED.result_scan_throttle,
        func_scan_throttle = EXCLUDED.func_scan_throttle;
END
$fn$;

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
        $1, NULL,
        ARRAY[$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13],
        ARRAY['query_max', 'seq_scan_max', 'idx_scan_max', 'idx_only_scan_max',
              'bitmap_heap_scan_max', 'bitmap_index_scan_max', 'custom_scan_max',
              'foreign_scan_max', 'tid_range_scan_max', 'modify_scan_max',
              'values_scan_max', 'result_scan_max', 'func_scan_max']);
$fn$;

CREATE FUNCTION @extschema@.throttle_user_per_node_all(username text, max int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @extschema@.throttle_store(
        $1, NULL, array_fill($2, ARRAY[12]),
        array_prepend('query_max', array_fill('max'::text, ARRAY[12])));
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
    PERFORM @extschema@.throttle_store(
        $1, $2, array_fill(NULL::int, ARRAY[12]),
        array_prepend('max', array_fill('unused'::text, ARRAY[12])));
END
$fn$;

CREATE FUNCTION @extschema@.unthrottle_user(username text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'username must not be null'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the name of an existing role.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) THEN
        RAISE EXCEPTION 'role "%" does not exist', $1
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('username = %L', $1),
                  HINT = 'Create the role first, or check the spelling (role names are case-sensitive).';
    END IF;
    DELETE FROM @extschema@.throttlings t WHERE t.username = $1;
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
    SELECT * FROM @extschema@.throttlings t WHERE t.username = session_user;
$fn$;

-- Only superusers and throttle_admin members change the configuration.
REVOKE ALL ON FUNCTION @extschema@.throttle_store(text, int, int[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_per_node(text, int, int, int, int, int, int, int, int, int, int, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_per_node_all(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.throttle_user_query(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unthrottle_user(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_store(text, int, int[], text[]) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_per_node(text, int, int, int, int, int, int, int, int, int, int, int, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_per_node_all(text, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.throttle_user_query(text, int) TO throttle_admin;
GRANT EXECUTE ON FUNCTION @extschema@.unthrottle_user(text) TO throttle_admin;
