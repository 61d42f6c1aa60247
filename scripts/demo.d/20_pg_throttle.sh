#!/usr/bin/env bash
# Demo section: pg_throttle (a 200-row scan taking about 2 s at 100 tuples/s).
set -euo pipefail
echo
echo "================ pg_throttle ================"
say "installing pg_throttle"
sql -c "CREATE EXTENSION IF NOT EXISTS pg_throttle"
say "pg_throttle is installed; its feature demo (a 200-row scan taking about 2 s at 100 tuples/s) is not built yet."
