-- Upgrade 0.2.0 -> 0.3.0 (see "Upgrading" in docs/pg_walrus.md):
-- - walrus.history gets the public pg_walrus' CHECK constraints and index
--   name; the update fails (and changes nothing) if a row breaks one of them:
--   fix or delete such rows first;
-- - walrus.reset() keeps walrus.history unless called with
--   clear_history => true;
-- - walrus.analyze(NULL) and walrus.reset(NULL) are errors instead of NULL;
-- - walrus.pending_history() lists a standby's own decisions, which
--   walrus.history() now includes.
\echo Use "ALTER EXTENSION pg_walrus UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE walrus.history
    ADD CONSTRAINT history_action_check
        CHECK (action OPERATOR(pg_catalog.=) ANY (ARRAY['increase', 'decrease', 'capped', 'dry_run', 'skipped'])),
    ADD CONSTRAINT history_old_size_mb_check CHECK (old_size_mb OPERATOR(pg_catalog.>) 0),
    ADD CONSTRAINT history_new_size_mb_check CHECK (new_size_mb OPERATOR(pg_catalog.>) 0),
    ADD CONSTRAINT history_forced_checkpoints_check CHECK (forced_checkpoints OPERATOR(pg_catalog.>=) 0),
    ADD CONSTRAINT history_checkpoint_timeout_sec_check CHECK (checkpoint_timeout_sec OPERATOR(pg_catalog.>) 0);
ALTER INDEX walrus.history_timestamp_idx RENAME TO walrus_history_timestamp_idx;

ALTER FUNCTION walrus."analyze"(boolean) CALLED ON NULL INPUT;

DROP FUNCTION walrus.reset();
CREATE FUNCTION walrus.reset("clear_history" boolean DEFAULT false) RETURNS boolean
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'reset_wrapper';

CREATE FUNCTION walrus.pending_history()
RETURNS TABLE ("timestamp" timestamp with time zone, "action" text, "old_size_mb" integer,
               "new_size_mb" integer, "forced_checkpoints" bigint, "checkpoint_timeout_sec" integer,
               "reason" text, "metadata" jsonb)
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pending_history_wrapper';

CREATE OR REPLACE FUNCTION walrus.history()
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

REVOKE ALL ON FUNCTION walrus.reset(boolean), walrus.pending_history() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION walrus.pending_history() TO walrus_monitor;
GRANT EXECUTE ON FUNCTION walrus.reset(boolean) TO walrus_admin;
