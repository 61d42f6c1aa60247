#!/usr/bin/env bash
# Monitoring benchmark: what scraping costs. One command, one results table,
# every baseline measured in the same run (results.md holds the last one).
#
#   bench/monitoring/run.sh               # PostgreSQL 15, release builds
#   PG=18 bench/monitoring/run.sh         # another version
#   SKIP_INSTALL=1 ...                    # use the extensions already installed
#   POLICIES=1000 CALLS=200 ...           # policies, and pwb.metrics() calls timed
#   ROUNDS=12 SECONDS_PER_RUN=10 CLIENTS=2 # pgbench rounds, their length, clients per server
#
# Two identical servers (A and B) preload all three extensions; each holds
# POLICIES role policies in queue mode (each with its bucket, none matching
# pgbench) and one observe policy matching the pgbench role.
#
# Rows of the table:
# - pwb.metrics() with POLICIES policies, on A: CALLS calls in one session,
#   each timed by the client (psql \timing: the call and the transfer of
#   its text over loopback), median and max: <= 50 ms. The same calls timed
#   inside the server (clock_timestamp() around each call) for reference,
#   and the size of the text.
# - pgbench tpcb-like, side by side: A and B run pgbench (CLIENTS clients
#   each, SECONDS_PER_RUN s) at the same time, so that the machine's
#   changing speed (it is shared) affects both sides of every pair; one of
#   them (A in even rounds, B in odd ones) is scraped. Three kinds of pairs,
#   in rotating order, ROUNDS of each: nothing scraped (the noise floor of
#   the pairing); pwb.metrics() scraped once a second by a persistent
#   session (each call followed by pg_sleep(1): one scrape every 1 s plus
#   the call's own time); that and the exporter
#   (prometheus-postgres-exporter with docs/monitoring's queries, as a
#   pg_monitor/pwb_monitor/walrus_monitor role) scraped over HTTP once a
#   second as well. Ratio: median over the rounds of TPS(scraped side) /
#   TPS(other side): >= 0.98. The scrapers' own CPU (the backend running
#   pwb.metrics(), the exporter process) loads the whole machine, so the
#   pairing spreads it over both sides; the CPU each scrape costs is
#   reported beside the ratio.
# - The exporter's own scrape duration (pg_exporter_last_scrape_duration_seconds)
#   and CPU time per scrape, with those policies.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"

PG="${PG:-15}"
POLICIES="${POLICIES:-1000}"
CALLS="${CALLS:-200}"
ROUNDS="${ROUNDS:-12}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-2}"
SCALE="${SCALE:-10}"
DIR="$TARGET_DIR/bench-monitoring"
BIN="$(pg_bindir_for "$PG")"
RESULTS="$DIR/results.tsv"
EXPORTER="$(command -v prometheus-postgres-exporter || true)"
QUERIES="$REPO_ROOT/docs/monitoring/postgres_exporter_queries.yaml"

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    log "building the extensions (release) for PostgreSQL $PG and installing them into this checkout's copy"
    PGGOV_PROFILE=release install_extensions "$PG"
fi

rm -rf "$DIR"
mkdir -p "$DIR"
declare -A PORT EXPORTER_PORT EXPORTER_PID
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    cluster_stop "$DIR/a" "$PG"
    cluster_stop "$DIR/b" "$PG"
}
trap cleanup EXIT
: >"$RESULTS"
# psql_ SIDE ...: psql on server SIDE (a or b) as AS (default postgres).
psql_() {
    local side="$1"
    shift
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$side]}" -U "${AS:-postgres}" -d postgres "$@"
}
# row NAME TARGET BASELINE MEASURED VERDICT
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
# http_get PORT PATH: the response (headers and body), with bash's /dev/tcp.
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    cat <&3
    exec 3<&-
}
# CPU seconds (user + system) process PID has used.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

for side in a b; do
    PORT[$side]="$(free_port)"
    cluster_init "$DIR/$side" "$PG" \
        "shared_preload_libraries = 'pg_wal_budget,pg_walrus,pg_throttle'" \
        "compute_query_id = on" "max_connections = 50"
    cluster_start "$DIR/$side" "$PG" "${PORT[$side]}"
    log "server $side: $POLICIES policies, pgbench scale $SCALE"
    psql_ "$side" <<SQL >/dev/null
CREATE EXTENSION pg_wal_budget;
CREATE EXTENSION pg_walrus;
CREATE EXTENSION pg_throttle;
CREATE ROLE pgexporter LOGIN;
GRANT pg_monitor, pwb_monitor, walrus_monitor TO pgexporter;
SELECT count(pwb.create_policy('role', 'bench_role_' || g, 1048576 + g, 8388608, 'queue'))
  FROM generate_series(1, $POLICIES) AS g;
SELECT pwb.create_policy('role', 'postgres', 104857600, 1073741824, 'observe', 1000);
SQL
    "$BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "${PORT[$side]}" -U postgres postgres \
        >/dev/null 2>"$DIR/pgbench-init-$side.log" || { cat "$DIR/pgbench-init-$side.log" >&2; exit 1; }
    psql_ "$side" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    if [[ -n "$EXPORTER" ]]; then
        EXPORTER_PORT[$side]="$(free_port)"
        DATA_SOURCE_NAME="host=127.0.0.1 port=${PORT[$side]} user=pgexporter dbname=postgres sslmode=disable" \
            "$EXPORTER" --web.listen-address="127.0.0.1:${EXPORTER_PORT[$side]}" \
            --extend.query-path="$QUERIES" >"$DIR/exporter-$side.log" 2>&1 &
        EXPORTER_PID[$side]=$!
        pids+=($!)
    fi
done

log "pwb.metrics(): $CALLS calls"
{
    echo 'SELECT pwb.metrics();'
    echo '\timing on'
    for ((i = 0; i < CALLS; i++)); do echo 'SELECT pwb.metrics();'; done
} >"$DIR/metrics.sql"
AS=pgexporter psql_ a -f "$DIR/metrics.sql" -o /dev/null | awk '/^Time:/ { print $2 }' >"$DIR/client_ms.txt"
psql_ a -At >"$DIR/server_ms.txt" <<SQL
CREATE FUNCTION pg_temp.time_metrics(n int) RETURNS SETOF float8 LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
    text_out text;
BEGIN
    FOR i IN 1..n LOOP
        t0 := clock_timestamp();
        text_out := pwb.metrics();
        RETURN NEXT extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
END
\$\$;
SELECT * FROM pg_temp.time_metrics($CALLS);
SQL
size=$(psql_ a -At -c "SELECT length(pwb.metrics())")
samples=$(psql_ a -At -c "SELECT count(*) FROM regexp_split_to_table(pwb.metrics(), E'\n') AS l WHERE l LIKE 'pwb_%'")
python3 - "$DIR/client_ms.txt" "$DIR/server_ms.txt" "$POLICIES" "$size" "$samples" "$RESULTS" <<'PY'
import statistics, sys
client = [float(x) for x in open(sys.argv[1]).read().split()]
server = [float(x) for x in open(sys.argv[2]).read().split()]
n, size, samples = sys.argv[3], int(sys.argv[4]), sys.argv[5]
med, mx = statistics.median(client), max(client)
with open(sys.argv[6], "a") as out:
    out.write(f"pwb.metrics() with {int(n):,} policies ({len(client)} calls; {size / 1e6:.2f} MB, "
              f"{int(samples):,} samples)\t<= 50 ms\t-\t"
              f"client: median {med:.1f} ms, max {mx:.1f} ms; in the server: median "
              f"{statistics.median(server):.1f} ms, max {max(server):.1f} ms\t"
              f"{'met' if mx <= 50 else ('met (median)' if med <= 50 else 'NOT met')}\n")
PY

# The scrapers of one side: started for a pair, stopped after it.
{
    echo '\o /dev/null'
    for ((i = 0; i < 100000; i++)); do echo 'SELECT pwb.metrics();' 'SELECT pg_sleep(1);'; done
} >"$DIR/scrape.sql"
scraper_pids=()
start_metrics_scraper() {
    AS=pgexporter psql_ "$1" -f "$DIR/scrape.sql" >/dev/null 2>&1 &
    scraper_pids+=($!)
}
start_exporter_scraper() {
    local port="${EXPORTER_PORT[$1]}"
    (
        next=$(date +%s%N)
        while :; do
            http_get "$port" /metrics >"$DIR/exporter-scrape.txt" || true
            echo >>"$DIR/exporter-scrapes.count"
            next=$((next + 1000000000))
            wait_ns=$((next - $(date +%s%N)))
            if ((wait_ns > 0)); then sleep "$(awk -v n="$wait_ns" 'BEGIN { printf "%.3f", n / 1e9 }')"; fi
        done
    ) &
    scraper_pids+=($!)
}
stop_scrapers() {
    local pid
    for pid in "${scraper_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    scraper_pids=()
}
# pgbench on SIDE into FILE (its tps).
pgbench_to() {
    "$BIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -h 127.0.0.1 -p "${PORT[$1]}" \
        -U postgres postgres 2>&1 | awk '/^tps/ { print $3; exit }' >"$2"
}
# pair CONFIG ROUND: pgbench on both sides at once, the scraped side's
# scrapers going.
pair() {
    local config="$1" round="$2" scraped other
    if ((round % 2 == 0)); then scraped=a other=b; else scraped=b other=a; fi
    case "$config" in
        none) ;;
        metrics) start_metrics_scraper "$scraped" ;;
        exporter) start_metrics_scraper "$scraped"; start_exporter_scraper "$scraped" ;;
    esac
    sleep 1
    pgbench_to "$scraped" "$DIR/tps-scraped" &
    local p1=$!
    pgbench_to "$other" "$DIR/tps-other" &
    local p2=$!
    wait "$p1" "$p2"
    stop_scrapers
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$config" "$scraped" \
        "$(cat "$DIR/tps-scraped")" "$(cat "$DIR/tps-other")" >>"$DIR/pairs.tsv"
}

configs=(none metrics exporter)
if [[ -z "$EXPORTER" ]]; then
    log "prometheus-postgres-exporter is not installed: the exporter pairs are skipped"
    configs=(none metrics)
fi
: >"$DIR/pairs.tsv"
: >"$DIR/exporter-scrapes.count"
exporter_cpu_before=0
if [[ -n "$EXPORTER" ]]; then
    exporter_cpu_before=$(awk -v a="$(cpu_seconds "${EXPORTER_PID[a]}")" -v b="$(cpu_seconds "${EXPORTER_PID[b]}")" 'BEGIN { print a + b }')
fi
log "pgbench tpcb-like side by side: $ROUNDS rounds of ${#configs[@]} pairs of $SECONDS_PER_RUN s"
for ((r = 0; r < ROUNDS; r++)); do
    n=${#configs[@]}
    for ((k = 0; k < n; k++)); do
        pair "${configs[$(((k + r) % n))]}" "$r"
    done
done
server_ms=$(python3 -c "import statistics; print(f'{statistics.median(float(x) for x in open(\"$DIR/server_ms.txt\").read().split()):.1f}')")
python3 - "$DIR/pairs.tsv" "$SECONDS_PER_RUN" "$CLIENTS" "$POLICIES" "$server_ms" "$RESULTS" <<'PY'
import collections, math, statistics, sys
pairs = collections.defaultdict(list)
for line in open(sys.argv[1]).read().splitlines():
    r, c, side, scraped, other = line.split("\t")
    pairs[c].append((float(scraped), float(other)))
secs, clients, policies, server_ms = sys.argv[2:6]
names = {"none": "nothing scraped (noise floor: side A or B against the other)",
         "metrics": "pwb.metrics() scraped every 1 s",
         "exporter": "pwb.metrics() and the exporter each scraped every 1 s"}
cost = {"none": "-",
        "metrics": f"the scraped side's backend: {server_ms} ms of CPU per scrape, "
                   f"{float(server_ms) / 10:.2f} % of one CPU at one scrape a second",
        "exporter": "see the exporter row"}
with open(sys.argv[6], "a") as out:
    for c in ("none", "metrics", "exporter"):
        if c not in pairs:
            continue
        ratios = sorted(s / o for s, o in pairs[c])
        med = statistics.median(ratios)
        # Geometric mean of the pair ratios with a 95 % interval (mean log
        # ratio +- 2 standard errors): the verdict is on the point estimate,
        # and says so when the interval still reaches below the target.
        logs = [math.log(x) for x in ratios]
        m = statistics.mean(logs)
        se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("inf")
        gm, lo, hi = math.exp(m), math.exp(m - 2 * se), math.exp(m + 2 * se)
        target = "about 1 (the pairing's noise)" if c == "none" else ">= 0.98 of TPS without scraping"
        if c == "none":
            verdict = "-"
        elif gm >= 0.98:
            verdict = "met" if lo >= 0.98 else "met (interval reaches below 0.98)"
        else:
            verdict = "NOT met" if hi < 0.98 else "not met (interval reaches above 0.98)"
        out.write(f"pgbench tpcb-like, {clients} clients per server, observe policy, {int(policies):,} policies: "
                  f"{names[c]} ({len(ratios)} pairs of {secs} s)\t{target}\t"
                  f"other side: median {statistics.median(o for _, o in pairs[c]):.0f} tps\t"
                  f"scraped side: median {statistics.median(s for s, _ in pairs[c]):.0f} tps; ratio {gm:.3f} "
                  f"[95 % interval {lo:.3f}, {hi:.3f}] (pair ratios median {med:.3f}); "
                  f"{cost[c]}\t{verdict}\n")
PY
if [[ -n "$EXPORTER" ]]; then
    exporter_cpu_after=$(awk -v a="$(cpu_seconds "${EXPORTER_PID[a]}")" -v b="$(cpu_seconds "${EXPORTER_PID[b]}")" 'BEGIN { print a + b }')
    scrapes=$(wc -l <"$DIR/exporter-scrapes.count")
    took=$(awk '/^pg_exporter_last_scrape_duration_seconds / { printf "%.0f ms", $2 * 1000 }' "$DIR/exporter-scrape.txt")
    series=$(grep -cE '^(pwb|walrus|pg_throttle)_' "$DIR/exporter-scrape.txt" || true)
    cpu=$(awk -v a="$exporter_cpu_before" -v b="$exporter_cpu_after" -v n="$scrapes" 'BEGIN { printf "%.0f ms", n ? (b - a) * 1000 / n : 0 }')
    row "exporter scrape with $(printf "%'d" "$POLICIES") policies ($series series of ours)" "-" "-" \
        "last scrape took $took (pg_exporter_last_scrape_duration_seconds, built-in and our queries); the exporter process used $cpu of CPU per scrape ($scrapes scrapes)" "-"
fi

echo
echo "## Monitoring benchmark (PostgreSQL $("$BIN/pg_config" --version | awk '{print $2}'), $(nproc) CPUs, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))"
echo
echo "| measurement | target | baseline (same run) | measured | verdict |"
echo "|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$RESULTS"
