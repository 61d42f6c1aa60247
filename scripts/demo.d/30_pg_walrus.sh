#!/usr/bin/env bash
# Demo section: pg_walrus (max_wal_size growing after forced checkpoints).
set -euo pipefail
echo
echo "================ pg_walrus ================"
say "installing pg_walrus"
sql -c "CREATE EXTENSION IF NOT EXISTS pg_walrus"
say "pg_walrus is installed; its feature demo (max_wal_size growing after forced checkpoints) is not built yet."
