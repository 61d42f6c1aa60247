-- Downgrade 0.3.0 -> 0.2.0: removes what 0.3.0 added. It also lets
-- PostgreSQL install 0.2.0 (CREATE EXTENSION ... VERSION '0.2.0' runs the
-- 0.3.0 script, then this one), which is how the upgrade test obtains a
-- 0.2.0 installation to run ALTER EXTENSION ... UPDATE on. The 0.3.0 library
-- does not serve a 0.2.0 catalog: before going back to the 0.2.0 library,
-- see "Upgrading" in docs/pg_walrus.md.
\echo Use "ALTER EXTENSION pg_walrus UPDATE TO '0.2.0'" to load this file. \quit

CREATE OR REPLACE FUNCTION walrus.history()
RETURNS TABLE ("timestamp" timestamptz, action text, old_size_mb integer, new_size_mb integer,
               forced_checkpoints bigint, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h."timestamp", h.action, h.old_size_mb, h.new_size_mb, h.forced_checkpoints, h.reason
    FROM walrus.history AS h
    ORDER BY h."timestamp" DESC, h.id DESC
$$;
DROP FUNCTION walrus.pending_history();

DROP FUNCTION walrus.reset(boolean);
CREATE FUNCTION walrus.reset() RETURNS boolean
    STRICT VOLATILE PARALLEL UNSAFE
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'reset_wrapper';
REVOKE ALL ON FUNCTION walrus.reset() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION walrus.reset() TO walrus_admin;

ALTER FUNCTION walrus."analyze"(boolean) STRICT;

ALTER INDEX walrus.walrus_history_timestamp_idx RENAME TO history_timestamp_idx;
ALTER TABLE walrus.history
    DROP CONSTRAINT history_action_check,
    DROP CONSTRAINT history_old_size_mb_check,
    DROP CONSTRAINT history_new_size_mb_check,
    DROP CONSTRAINT history_forced_checkpoints_check,
    DROP CONSTRAINT history_checkpoint_timeout_sec_check;
