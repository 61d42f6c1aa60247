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

-- Mode pace.
ALTER TABLE pwb.policy DROP CONSTRAINT policy_mode_check;
ALTER TABLE pwb.policy ADD CONSTRAINT policy_mode_check
    CHECK (mode IN ('off', 'observe', 'shadow', 'queue', 'reject', 'pace'));

-- Telemetry: counters() and scope_stats() gain columns; waits() and
-- metrics() are new.
DROP FUNCTION pwb.counters();
DROP FUNCTION pwb.scope_stats();
CREATE FUNCTION pwb.counters() RETURNS TABLE (
    "accepted_statements" bigint,
    "rejected_statements" bigint,
    "shadow_would_reject_count" bigint,
    "predicted_wal_bytes" bigint,
    "actual_wal_bytes" bigint,
    "absolute_prediction_error" bigint,
    "scope_debt_bytes" bigint,
    "missing_actual_wal_count" bigint,
    "internal_fail_open_count" bigint,
    "aborted_after_charge_count" bigint,
    "scope_name_drop_count" bigint,
    "bucket_capacity_exhausted_count" bigint,
    "policies_without_bucket" bigint,
    "queue_gave_up_count" bigint,
    "policy_generation" bigint,
    "paced_statements" bigint,
    "pace_wait_ms" bigint
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'counters_wrapper';

CREATE FUNCTION pwb.scope_stats() RETURNS TABLE (
    "policy_id" INT,
    "scope_hash" bigint,
    "available_bytes" bigint,
    "max_burst_bytes" bigint,
    "rate_bytes_per_sec" bigint,
    "debt_bytes" bigint,
    "last_refill_epoch_ms" bigint,
    "mode" TEXT,
    "paced_statements" bigint,
    "pace_wait_ms" bigint,
    "waiting_statements" bigint,
    "scope_value" TEXT,
    "effective_rate_bytes_per_sec" bigint,
    "accepted_statements" bigint,
    "queued_statements" bigint,
    "rejected_statements" bigint,
    "predicted_wal_bytes" bigint,
    "actual_wal_bytes" bigint,
    "queue_wait_ms" bigint
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'scope_stats_wrapper';

CREATE FUNCTION pwb.waits() RETURNS TABLE (
    "pid" INT,
    "policy_id" INT,
    "wait_kind" TEXT,
    "waiting_since_epoch_ms" bigint,
    "wanted_bytes" bigint,
    "position" INT
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'waits_wrapper';

CREATE FUNCTION pwb.metrics() RETURNS TEXT
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'metrics_wrapper';

REVOKE EXECUTE ON FUNCTION pwb.counters(), pwb.scope_stats(), pwb.waits(), pwb.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.counters(), pwb.scope_stats(), pwb.waits(), pwb.metrics() TO pwb_monitor;
GRANT EXECUTE ON FUNCTION pwb.metrics() TO pg_monitor;

-- Template policies (a NULL scope_value: every value of the kind, each with
-- its own bucket), and the precedence view lists disabled policies too.
ALTER TABLE pwb.policy ALTER COLUMN scope_value DROP NOT NULL;
DROP VIEW pwb.active_policy_precedence;
-- Which policy wins when several match: highest priority, then a specific
-- policy before a template, then lowest policy_id. Disabled policies are
-- listed too (enabled = false), with the precedence they would have.
CREATE VIEW pwb.active_policy_precedence AS
SELECT p.policy_id,
       p.scope_kind,
       p.scope_value,
       p.mode,
       p.priority,
       p.wal_rate_bytes_per_sec,
       p.wal_burst_bytes,
       rank() OVER (ORDER BY p.priority DESC, (p.scope_value IS NULL), p.policy_id) AS precedence,
       p.enabled
  FROM pwb.policy p
 ORDER BY p.priority DESC, (p.scope_value IS NULL), p.policy_id;

GRANT SELECT ON pwb.active_policy_precedence TO pwb_monitor;

-- Replica-lag and WAL-disk feedback: a per-policy exemption and what the
-- worker sees.
ALTER TABLE pwb.policy ADD COLUMN feedback_exempt boolean NOT NULL DEFAULT false;
CREATE FUNCTION pwb.set_policy_feedback_exempt(
    "policy_id" INT,
    "exempt" bool
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_policy_feedback_exempt_wrapper';

CREATE FUNCTION pwb.feedback() RETURNS TABLE (
    "standby" TEXT,
    "replay_lag_bytes" bigint,
    "counted" bool,
    "max_replica_lag_bytes" bigint,
    "wal_disk_free_bytes" bigint,
    "min_wal_disk_free_bytes" bigint,
    "factor" double precision,
    "limiting" TEXT,
    "engaged_since_epoch_ms" bigint,
    "updated_epoch_ms" bigint
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'feedback_wrapper';

REVOKE EXECUTE ON FUNCTION pwb.set_policy_feedback_exempt(integer, boolean), pwb.feedback() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pwb.set_policy_feedback_exempt(integer, boolean) TO pwb_admin;
GRANT EXECUTE ON FUNCTION pwb.feedback() TO pwb_monitor;
