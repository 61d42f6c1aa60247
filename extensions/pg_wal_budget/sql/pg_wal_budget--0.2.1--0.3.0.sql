-- Upgrade 0.2.1 -> 0.3.0.
\echo Use "ALTER EXTENSION pg_wal_budget UPDATE TO '0.3.0'" to load this file. \quit

-- Scope values are stored trimmed and bounded, as the functions require.
-- Existing rows that do not comply are normalised first.
UPDATE pwb.policy SET scope_value = btrim(scope_value) WHERE scope_value <> btrim(scope_value);
ALTER TABLE pwb.policy ADD CONSTRAINT policy_scope_value_check
    CHECK (scope_value = btrim(scope_value) AND octet_length(scope_value) BETWEEN 1 AND 256);

CREATE FUNCTION pwb.current_tenant() RETURNS text
    STRICT STABLE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'current_tenant_wrapper';

CREATE FUNCTION pwb.shmem_bytes() RETURNS bigint
    STRICT VOLATILE PARALLEL SAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'shmem_bytes_wrapper';

REVOKE EXECUTE ON FUNCTION pwb.current_tenant(), pwb.shmem_bytes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.current_tenant() TO pwb_tenant_setter;
GRANT EXECUTE ON FUNCTION pwb.shmem_bytes() TO pwb_monitor;
