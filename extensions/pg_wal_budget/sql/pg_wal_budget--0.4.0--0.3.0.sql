-- Downgrade 0.4.0 -> 0.3.0: removes what 0.4.0 added. It also lets
-- PostgreSQL install 0.3.0 (CREATE EXTENSION ... VERSION '0.3.0' runs the
-- 0.4.0 script, then this one), which is how the upgrade test obtains a 0.3.0
-- installation to run ALTER EXTENSION ... UPDATE on. Before downgrading the
-- library itself, move pace policies to another mode (see "Upgrading" in the
-- docs).
\echo Use "ALTER EXTENSION pg_wal_budget UPDATE TO '0.3.0'" to load this file. \quit

DROP FUNCTION pwb.set_tenant(text, boolean);
CREATE FUNCTION pwb.set_tenant("tenant" text) RETURNS void
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'set_tenant_wrapper';
REVOKE EXECUTE ON FUNCTION pwb.set_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.set_tenant(text) TO pwb_tenant_setter;

ALTER FUNCTION pwb.policy_changed() SET search_path = pg_catalog, pwb;

UPDATE pwb.policy SET mode = 'queue' WHERE mode = 'pace';
ALTER TABLE pwb.policy DROP CONSTRAINT policy_mode_check;
ALTER TABLE pwb.policy ADD CONSTRAINT policy_mode_check
    CHECK (mode IN ('off', 'observe', 'shadow', 'queue', 'reject'));

DROP FUNCTION pwb.waits();
DROP FUNCTION pwb.feedback();
DROP FUNCTION pwb.set_policy_feedback_exempt(integer, boolean);
ALTER TABLE pwb.policy DROP COLUMN feedback_exempt;
DROP FUNCTION pwb.metrics();
DROP FUNCTION pwb.counters();
DROP FUNCTION pwb.scope_stats();
CREATE FUNCTION pwb.counters() RETURNS TABLE (
    accepted_statements bigint, rejected_statements bigint,
    shadow_would_reject_count bigint, predicted_wal_bytes bigint,
    actual_wal_bytes bigint, absolute_prediction_error bigint,
    scope_debt_bytes bigint, missing_actual_wal_count bigint,
    internal_fail_open_count bigint, aborted_after_charge_count bigint,
    scope_name_drop_count bigint)
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'counters_wrapper';
CREATE FUNCTION pwb.scope_stats() RETURNS TABLE (
    policy_id integer, scope_hash bigint, available_bytes bigint,
    max_burst_bytes bigint, rate_bytes_per_sec bigint, debt_bytes bigint,
    last_refill_epoch_ms bigint)
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'scope_stats_wrapper';
REVOKE EXECUTE ON FUNCTION pwb.counters(), pwb.scope_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.counters(), pwb.scope_stats() TO pwb_monitor;

DELETE FROM pwb.policy WHERE scope_value IS NULL;
ALTER TABLE pwb.policy ALTER COLUMN scope_value SET NOT NULL;
DROP VIEW pwb.active_policy_precedence;
CREATE VIEW pwb.active_policy_precedence AS
SELECT p.policy_id,
       p.scope_kind,
       p.scope_value,
       p.mode,
       p.priority,
       p.wal_rate_bytes_per_sec,
       p.wal_burst_bytes,
       rank() OVER (ORDER BY p.priority DESC, p.policy_id) AS precedence
  FROM pwb.policy p
 WHERE p.enabled AND p.mode <> 'off'
 ORDER BY p.priority DESC, p.policy_id;
GRANT SELECT ON pwb.active_policy_precedence TO pwb_monitor;
