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

-- counters() gains capacity, queue and generation columns.
DROP FUNCTION pwb.counters();
CREATE FUNCTION pwb.counters() RETURNS TABLE (
    accepted_statements bigint, rejected_statements bigint,
    shadow_would_reject_count bigint, predicted_wal_bytes bigint,
    actual_wal_bytes bigint, absolute_prediction_error bigint,
    scope_debt_bytes bigint, missing_actual_wal_count bigint,
    internal_fail_open_count bigint, aborted_after_charge_count bigint,
    scope_name_drop_count bigint, bucket_capacity_exhausted_count bigint,
    policies_without_bucket bigint, queue_gave_up_count bigint,
    policy_generation bigint)
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'counters_wrapper';
REVOKE EXECUTE ON FUNCTION pwb.counters() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.counters() TO pwb_monitor;
