# What the pg_wal_budget benchmark scripts share, sourced once each script has
# set DIR (its throwaway cluster's directory): the project's shell library, the
# PostgreSQL version (PG, default 15) and its binaries, a free port, psql and
# pgbench against that cluster, and stopping its server when the script exits.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$REPO_ROOT/scripts/lib.sh"
unset RUST_BACKTRACE
PG="${PG:-15}"
BIN="$(pg_bindir_for "$PG")"
PORT="$(free_port)"
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
pgbench_() { as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$PORT" "$@"; }
trap 'as_server_user "$BIN/pg_ctl" -D "$DIR/data" -w -m immediate stop >/dev/null 2>&1 || true' EXIT
