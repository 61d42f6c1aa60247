-- Downgrade 0.4.0 -> 0.3.0: removes what 0.4.0 added. It also lets
-- PostgreSQL install 0.3.0 (CREATE EXTENSION ... VERSION '0.3.0' runs the
-- 0.4.0 script, then this one), which is how the upgrade test obtains a 0.3.0
-- installation to run ALTER EXTENSION ... UPDATE on. Before downgrading the
-- library itself, see "Upgrading" in the docs.
\echo Use "ALTER EXTENSION pg_wal_budget UPDATE TO '0.3.0'" to load this file. \quit

DROP FUNCTION pwb.set_tenant(text, boolean);
CREATE FUNCTION pwb.set_tenant("tenant" text) RETURNS void
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'set_tenant_wrapper';
REVOKE EXECUTE ON FUNCTION pwb.set_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.set_tenant(text) TO pwb_tenant_setter;

ALTER FUNCTION pwb.policy_changed() SET search_path = pg_catalog, pwb;
