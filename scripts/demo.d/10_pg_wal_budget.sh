#!/usr/bin/env bash
# Demo section: pg_wal_budget (a role policy observing, then rejecting, a WAL-heavy statement).
set -euo pipefail
echo
echo "================ pg_wal_budget ================"
say "installing pg_wal_budget"
sql -c "CREATE EXTENSION IF NOT EXISTS pg_wal_budget"
say "pg_wal_budget is installed; its feature demo (a role policy observing, then rejecting, a WAL-heavy statement) is not built yet."
