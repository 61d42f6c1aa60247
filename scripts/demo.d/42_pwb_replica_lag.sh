#!/usr/bin/env bash
# Demo section: pg_wal_budget's replica-lag feedback. A streaming standby of
# the demo server has its replay paused; a tenant keeps writing through a pace
# policy; once the standby is more than pwb.max_replica_lag behind, the
# tenant's policy is held back until replay resumes.
source "$REPO_ROOT/scripts/lib.sh"
echo
echo "================ pg_wal_budget: replica-lag feedback ================"
STANDBY_DIR="$DEMO_DIR/standby"
STANDBY_PORT="$(free_port)"
BINDIR="$(pg_bindir_for "$PG")"
standby_sql() { "$PSQL_BIN" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$STANDBY_PORT" -U postgres -d postgres "$@"; }
cleanup() {
    sql -qAt -c "ALTER SYSTEM RESET pwb.max_replica_lag" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    cluster_stop "$STANDBY_DIR" "$PG" immediate
}
trap cleanup EXIT

say "a streaming standby of the demo server (pg_basebackup), on port $STANDBY_PORT"
cluster_stop "$STANDBY_DIR" "$PG" immediate
rm -rf "$STANDBY_DIR"
mkdir -p "$STANDBY_DIR"
if is_root; then chown "$PG_RUN_AS" "$STANDBY_DIR"; fi
as_server_user "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$STANDBY_DIR/data" \
    -R -X stream --no-sync >"$STANDBY_DIR/basebackup.log" 2>&1 ||
    { cat "$STANDBY_DIR/basebackup.log" >&2; die "pg_basebackup failed"; }
echo "unix_socket_directories = '$STANDBY_DIR'" | as_server_user tee -a "$STANDBY_DIR/data/postgresql.conf" >/dev/null
# The standby's name in pg_stat_replication (its primary_conninfo gets it).
sed -i "s/^primary_conninfo = '/primary_conninfo = 'application_name=demo_standby /" "$STANDBY_DIR/data/postgresql.auto.conf"
cluster_start "$STANDBY_DIR" "$PG" "$STANDBY_PORT"
for _ in $(seq 1 100); do
    [[ $(sql -qAt -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'demo_standby' AND state = 'streaming'") == 1 ]] && break
    sleep 0.2
done
sql -c "SELECT application_name, state, replay_lsn FROM pg_stat_replication"

say "hold policies back when a standby is more than 16MB behind in replay (pwb.max_replica_lag, a reload setting)"
sql -qAt -c "ALTER SYSTEM SET pwb.max_replica_lag = '16MB'" -c "SELECT pg_reload_conf()" >/dev/null
sql -q <<'SQL'
DROP TABLE IF EXISTS demo_tenant_rows;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_tenant') THEN
    CREATE ROLE demo_tenant LOGIN;
  END IF;
END $$;
CREATE TABLE demo_tenant_rows (id bigint, payload text);
GRANT ALL ON demo_tenant_rows TO demo_tenant;
SQL
policy_id=$(sql -qAt -c "SELECT pwb.create_policy(scope_kind => 'role', scope_value => 'demo_tenant',
    wal_rate_bytes_per_sec => 4194304, wal_burst_bytes => 4194304, mode => 'pace', priority => 200)")
echo "a pace policy of 4 MiB/s for role demo_tenant: policy_id = $policy_id"

say "pause replay on the standby, then demo_tenant starts a 40 MiB bulk INSERT"
standby_sql -qAt -c "SELECT pg_wal_replay_pause()" >/dev/null
DEMO_USER=demo_tenant sql -q -c "INSERT INTO demo_tenant_rows SELECT g, repeat('x', 300) FROM generate_series(1, 100000) g" &
writer=$!

# One line per second: replay lag, the feedback factor, the policy's effective
# rate and how much the tenant has written so far.
sample() {
    sql -qAt -F ' | ' -c "SELECT to_char(clock_timestamp(), 'HH24:MI:SS'),
        lpad(coalesce(pg_size_pretty(max(f.replay_lag_bytes)), '-'), 10),
        lpad(round(min(f.factor)::numeric, 2)::text, 6),
        lpad(coalesce(pg_size_pretty((SELECT effective_rate_bytes_per_sec FROM pwb.scope_stats() WHERE policy_id = $policy_id)) || '/s', '-'), 11),
        lpad(pg_size_pretty(pg_relation_size('demo_tenant_rows')), 8)
      FROM pwb.feedback() f"
}
echo "  time   | replay lag | factor | effective rate | table size"
for _ in $(seq 1 12); do sample; sleep 1; done

say "resume replay: the standby catches up, feedback releases and the policy recovers (a tenth of its rate per second)"
standby_sql -qAt -c "SELECT pg_wal_replay_resume()" >/dev/null
for _ in $(seq 1 8); do sample; sleep 1; done
echo "(the factor is shared by all policies, which are held back from the lowest priority up and recover"
echo " in the opposite order: demo_tenant's priority-200 policy is back at its full rate before the factor is)"
wait "$writer"
echo "the INSERT finished"
sql -c "SELECT decision_kind, reason_code FROM pwb.recent_decisions(3) WHERE policy_id = $policy_id"
sql -c "SELECT standby, pg_size_pretty(replay_lag_bytes) AS lag, counted, factor, limiting FROM pwb.feedback()"
sql -qAt -c "SELECT pwb.disable_policy($policy_id)" >/dev/null
