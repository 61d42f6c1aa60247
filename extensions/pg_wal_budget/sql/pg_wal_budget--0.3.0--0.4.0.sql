-- Upgrade 0.3.0 -> 0.4.0.
\echo Use "ALTER EXTENSION pg_wal_budget UPDATE TO '0.4.0'" to load this file. \quit

-- The tenant follows SET semantics (pwb.tenant): set_tenant() gains the
-- SET LOCAL form.
DROP FUNCTION pwb.set_tenant(text);
CREATE FUNCTION pwb.set_tenant("tenant" text, "is_local" boolean DEFAULT false) RETURNS void
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'set_tenant_wrapper';
REVOKE EXECUTE ON FUNCTION pwb.set_tenant(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.set_tenant(text, boolean) TO pwb_tenant_setter;

-- The trigger function's search_path names pg_temp last.
ALTER FUNCTION pwb.policy_changed() SET search_path = pg_catalog, pwb, pg_temp;
