# What the pg_wal_budget benchmark scripts share, sourced once each script has
# set DIR (its throwaway cluster's directory): the project's shell library, the
# PostgreSQL version (PG, default 15) and its binaries, a free port, psql and
# pgbench against that cluster, stopping its server when the script exits,
# what the overhead benchmarks share, and the summary of paired TPS ratios.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$REPO_ROOT/scripts/lib.sh"
unset RUST_BACKTRACE
PG="${PG:-15}"
BIN="$(pg_bindir_for "$PG")"
PORT="$(free_port)"
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
pgbench_() { as_server_user "$BIN/pgbench" -h 127.0.0.1 -p "$PORT" "$@"; }
trap 'as_server_user "$BIN/pg_ctl" -D "$DIR/data" -w -m immediate stop >/dev/null 2>&1 || true' EXIT

# The servers of the diagnostic overhead scripts (cpu_share.sh, instructions.sh).
OVERHEAD_SERVER_SETTINGS=("max_connections = 50" "shared_buffers = 256MB" "compute_query_id = on"
    "max_wal_size = 1GB" "checkpoint_timeout = 15min" "synchronous_commit = off")
# pgbench's option for a workload (MODES): -S for select_only, none for tpcb.
mode_flag() { if [[ $1 == select_only ]]; then echo "-S"; fi; }
# The TPS in pgbench's output, read from stdin or the files given.
tps_of() { awk '/^tps = / {print $3; exit}' "$@"; }

# Per workload and client count: the geometric mean over rounds of each
# configuration's TPS divided by the baseline's TPS in the same round, with a
# 95% interval (the mean log ratio ± 2 standard errors). "clients=all" pools
# the workload's pairs over all client counts.
summarize() { # file baseline label [metric, default tps]
    awk -v base="$2" -v label="$3" -v metric="${4:-tps}" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        key = f["mode"] " clients=" f["clients"]
        tps[key, f["config"], f["round"]] = f[metric]; keys[key] = 1; rounds[f["round"]] = 1
        pooled = f["mode"] " clients=all"; pooled_round = f["round"] "/" f["clients"]
        tps[pooled, f["config"], pooled_round] = f[metric]; keys[pooled] = 1; rounds[pooled_round] = 1
        if (f["config"] != base) configs[f["config"]] = 1
    } END {
        for (key in keys) for (config in configs) {
            sum = 0; sq = 0; n = 0
            for (r in rounds) if (tps[key, base, r] > 0 && tps[key, config, r] > 0) {
                x = log(tps[key, config, r] / tps[key, base, r]); sum += x; sq += x * x; n++
            }
            if (n < 2) continue
            mean = sum / n; se = sqrt((sq - n * mean * mean) / (n - 1) / n)
            printf "%s summary mode=%s config=%s rounds=%d %s_ratio=%.4f ci95=[%.4f,%.4f]\n",
                label, key, config, n, metric, exp(mean), exp(mean - 2 * se), exp(mean + 2 * se)
        }
    }' "$1" | sort
}
