#!/usr/bin/env bash
# pg_wal_budget benchmark: one command, one results table, every baseline
# measured in the same run (results.md holds the last recorded table).
#
#   bench/pg_wal_budget/run.sh                 # all scenarios, PostgreSQL 15, release build
#   bench/pg_wal_budget/run.sh pace fairness   # some scenarios (names or numbers 1-10)
#   PG=18 bench/pg_wal_budget/run.sh           # another version (15, 16, 18)
#   SKIP_INSTALL=1 ...                         # use the pg_wal_budget already installed
#   PORT_BASE=5460                             # servers listen on PORT_BASE .. PORT_BASE+8
#
# Scenarios (rows of the table):
#  1 overhead  pgbench tpcb-like on two identical servers side by side, one
#              with pg_wal_budget preloaded and an observe policy on the
#              pgbench role, the other without the extension preloaded; both
#              run at the same time, so the machine's changing speed hits both
#              sides of a pair. PAIRS (12) pairs of PAIR_SECONDS (8); the two
#              servers swap roles (restart) every SWAP_EVERY (3) pairs.
#              Target: TPS ratio >= 0.98 (geometric mean, 95 % interval).
#  2 queue     4 pgbench writers (20-row inserts) under a queue policy of
#              1 MiB/s (burst 4 MiB): WAL (by LSN) over QUEUE_WINDOW (30) s
#              after the burst is spent, within +-5 % of 1 MiB/s. Baseline:
#              the same writers without the policy.
#  3 pace      one backend, pace 1 MiB/s, burst 4 MiB, one INSERT ... SELECT
#              writing ~28 MiB: WAL (LSN sampled every 0.5 s) over every 5 s
#              window after the burst within +-5 % of 1 MiB/s, and the
#              duration within +-5 % of (WAL - burst) / rate. Baseline: the
#              same statement without the policy.
#  4 tenants   4 roles, each its own pace policy of 1 MiB/s (burst 1 MiB),
#              looping 1,000-row bulk INSERTs. Two identical servers side by
#              side, an unpoliced role running pgbench tpcb-like on both all
#              along; the paced load runs on one of them at a time, in 6
#              segments of SEG (8) s taking turns. Each role's WAL rate (rows
#              it wrote, stamped with clock_timestamp(), times the WAL per row
#              measured in the same run) within +-5 %. The unpoliced role's
#              TPS: q = TPS(A) / TPS(B) per segment; sqrt(q with the load on A
#              / q with it on B) is the loaded server's TPS against its own
#              TPS without the load, with the machine's changing speed and
#              any difference between the servers divided out: >= 95 %.
#  5 fairness  queue policy 1 MiB/s (burst 4 MiB), 8 sessions looping
#              20-row inserts; a statement predicted at ~2 MiB (its profile
#              learned first) arrives while they wait. Overtakes: statements
#              that arrived after it (statement_timestamp()) and were admitted
#              before it (clock_timestamp() of their first row): 0. Its wait
#              <= 2 x (bytes queued ahead of it, from pwb.waits() sampled every
#              ~10 ms, + its own prediction) / rate.
#  6 pacecost  INSERT of 1,000,000 rows under a pace policy of 256 MiB/s
#              (never reached) against the same policy in observe mode, in
#              one session, alternating which goes first, PACECOST_PAIRS (15)
#              pairs: median time ratio <= 1.02, with its 95 % interval.
#  7 template  one template policy (scope_kind tenant, scope_value NULL:
#              a bucket per tenant) of 1 MiB/s, 4 tenants set with
#              pwb.set_tenant() by a member of pwb_tenant_setter, looping bulk
#              INSERTs for TEMPLATE_SECONDS (25): each tenant within +-10 %.
#  8 replica   two primary + standby pairs (pg_basebackup) side by side, the
#              standbys' replay held back by recovery_min_apply_delay
#              (REPLICA_DELAY, 10min: nothing is replayed during the run);
#              4 tenant roles under queue policies of 1 MiB/s and one
#              feedback-exempt role at 256 kB/s write for REPLICA_SECONDS
#              (40). One primary has pwb.max_replica_lag = 64MB, the other
#              no feedback (baseline). Replay lag sampled every 1 s: < 128 MiB
#              at every sample with feedback; the exempt role's throughput
#              >= 95 % of the baseline's.
#  9 reload    10,000 policies; a governed INSERT loop (pgbench, per-statement
#              latency log) for RELOAD_SECONDS (15) without and then with a
#              policy change in another session every 0.25 s (each one makes
#              every backend reload its policy cache): max and p99 latency;
#              target: no statement stalled more than 10 ms over the loop's
#              median without reloads.
# 10 footprint a server at default settings: pg_wal_budget's shared memory
#              (pg_shmem_allocations) <= 8 MB; prediction error of the
#              calibration workloads (tests/workloads/calibration_summary.sql,
#              runs 4-12 of each): median error ratio <= 10 %.
#
# Servers run as $PG_RUN_AS when root, with fsync = off, autovacuum = off
# (background WAL would blur the WAL-rate measurements). Raw output goes to
# OUT (default target/bench/pg_wal_budget/<time>/), never into the tree.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

PG="${PG:-15}"
PORT_BASE="${PORT_BASE:-5460}"
PAIRS="${PAIRS:-12}"
PAIR_SECONDS="${PAIR_SECONDS:-8}"
SWAP_EVERY="${SWAP_EVERY:-3}"
QUEUE_WINDOW="${QUEUE_WINDOW:-30}"
SEG="${SEG:-6}"
PACECOST_PAIRS="${PACECOST_PAIRS:-15}"
TEMPLATE_SECONDS="${TEMPLATE_SECONDS:-25}"
REPLICA_SECONDS="${REPLICA_SECONDS:-40}"
REPLICA_DELAY="${REPLICA_DELAY:-10min}"
RELOAD_SECONDS="${RELOAD_SECONDS:-15}"
ALL_SCENARIOS=(overhead queue pace tenants fairness pacecost template replica reload footprint)
MIB=1048576

HERE="$REPO_ROOT/bench/pg_wal_budget"
OUT="${OUT:-$TARGET_DIR/bench/pg_wal_budget/$(date -u +%Y%m%dT%H%M%SZ)}"
WORK="$TARGET_DIR/bench/pg_wal_budget/work"
mkdir -p "$OUT" "$WORK"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"
BIN="$(pg_bindir_for "$PG")"
ANALYZE=(python3 "$HERE/analyze.py")

scenarios=()
for arg in "${@:-${ALL_SCENARIOS[@]}}"; do
    if [[ $arg =~ ^([1-9]|10)$ ]]; then arg="${ALL_SCENARIOS[$((arg - 1))]}"; fi
    [[ " ${ALL_SCENARIOS[*]} " == *" $arg "* ]] || die "unknown scenario '$arg' (${ALL_SCENARIOS[*]} or 1-10)"
    scenarios+=("$arg")
done

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    log "building pg_wal_budget (release) for PostgreSQL $PG and installing it into this checkout's copy"
    pkg="$TARGET_DIR/release/pg_wal_budget-pg$PG"
    rm -rf "$pkg"
    (cd extensions/pg_wal_budget && cargo pgrx package --no-default-features --features "pg$PG" \
        --pg-config "$(pg_config_for "$PG")" --out-dir "$pkg" >"$OUT/build.log" 2>&1) ||
        { tail -n 30 "$OUT/build.log"; die "build failed"; }
    scripts/install-files "$pkg" / >>"$OUT/build.log"
fi

# ---- helpers ---------------------------------------------------------------
STARTED=()
cleanup() {
    local dir
    for dir in "${STARTED[@]}"; do cluster_stop "$dir" "$PG" immediate; done
    jobs -p | xargs -r kill 2>/dev/null || true
}
trap cleanup EXIT
start_server() { # DIR PORT [postgresql.conf lines...]
    local dir="$1" port="$2"
    shift 2
    cluster_init "$dir" "$PG" "max_connections = 100" "shared_buffers = 256MB" "compute_query_id = on" \
        "max_wal_size = 8GB" "checkpoint_timeout = 30min" "autovacuum = off" "$@"
    cluster_start "$dir" "$PG" "$port"
    STARTED+=("$dir")
}
# psql as postgres (or AS) on PORT, database DB.
sql() { # PORT DB [psql args...]
    local port="$1" db="$2"
    shift 2
    PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "${AS:-postgres}" -d "$db" "$@"
}
pgbench_() { # PORT [pgbench args...]
    local port="$1"
    shift
    "$BIN/pgbench" -h 127.0.0.1 -p "$port" "$@"
}
# now: epoch seconds (client clock = server clock: same machine).
now() { date +%s.%N; }
lsn() { sql "$1" postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"; }
new_db() { # PORT DB: a fresh database with the extension
    sql "$1" postgres -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2"
    sql "$1" "$2" -c "CREATE EXTENSION pg_wal_budget" -c "GRANT ALL ON SCHEMA public TO PUBLIC"
}
grant_all() { sql "$1" "$2" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC" \
    -c "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC"; }
# WAL bytes per row of a (at timestamptz, pad text) table with 1,000-byte
# pads, as inserted 1,000 rows at a time: measured by LSN on a quiet server.
wal_per_row() { # PORT DB
    local a b
    sql "$1" "$2" -c "CREATE TABLE IF NOT EXISTS calib (at timestamptz DEFAULT clock_timestamp(), pad text)"
    a=$(lsn "$1")
    for _ in 1 2 3 4 5; do
        sql "$1" "$2" -c "INSERT INTO calib (pad) SELECT repeat('x', 1000) FROM generate_series(1, 1000)"
    done
    b=$(lsn "$1")
    sql "$1" "$2" -c "DROP TABLE calib"
    awk -v d=$((b - a)) 'BEGIN { printf "%.2f", d / 5000 }'
}
# Samples "epoch<TAB>value" of a query every INTERVAL seconds until killed.
sampler() { # PORT DB INTERVAL SQL
    local port="$1" db="$2" interval="$3" query="$4"
    while :; do
        sql "$port" "$db" -F $'\t' -c "SELECT extract(epoch FROM clock_timestamp()), ($query)" || true
        sleep "$interval"
    done
}

ENF_PORT=$((PORT_BASE + 2))
ENF="$WORK/enforcement"
TWIN_PORT=$((PORT_BASE + 7))
TWIN="$WORK/twin"
# The server of scenarios 2-7 and 9 (each in its own database), and its
# twin for scenario 4.
enf_like() { # DIR PORT
    [[ -f "$1/data/postmaster.pid" ]] && return
    log "starting $(basename "$1") server (port $2)"
    start_server "$1" "$2" "shared_preload_libraries = 'pg_wal_budget'" "pwb.budget_bucket_capacity = 16384"
    sql "$2" postgres <<'SQL'
CREATE ROLE w LOGIN; CREATE ROLE p LOGIN; CREATE ROLE free LOGIN; CREATE ROLE fair LOGIN;
CREATE ROLE app LOGIN; CREATE ROLE gov LOGIN;
CREATE ROLE r1 LOGIN; CREATE ROLE r2 LOGIN; CREATE ROLE r3 LOGIN; CREATE ROLE r4 LOGIN;
CREATE ROLE h1 LOGIN; CREATE ROLE h2 LOGIN; CREATE ROLE h3 LOGIN; CREATE ROLE h4 LOGIN;
SQL
}
# Sets the CPU affinity of a server's postmaster and every process it has
# now (backends started later inherit it).
pin() { # DIR CPUS
    local pm c
    pm=$(head -n 1 "$1/data/postmaster.pid")
    for c in "$pm" $(ps -o pid= --ppid "$pm"); do taskset -p -c "$2" "$c" >/dev/null 2>&1 || true; done
}
PIN_CPU="${PIN_CPU:-$(($(nproc) - 1))}"
ALL_CPUS="0-$(($(nproc) - 1))"
# CPU ticks used so far by a server: the postmaster, its children, and the
# children it has reaped (the backends of finished connections).
server_ticks() { # DIR
    local pm
    pm=$(head -n 1 "$1/data/postmaster.pid")
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
        for c in $(ps -o pid= --ppid "$pm"); do awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || true; done
    } | awk '{ s += $1 } END { print s }'
}
enforcement_server() { enf_like "$ENF" "$ENF_PORT"; }
twin_server() { enf_like "$TWIN" "$TWIN_PORT"; }

# ---- 1. observe-mode overhead: paired servers side by side --------------------
s_overhead() {
    log "1. overhead: $PAIRS pairs of ${PAIR_SECONDS} s, two servers at once"
    local a="$WORK/over-a" b="$WORK/over-b" pa=$PORT_BASE pb=$((PORT_BASE + 1)) s
    local settings=("synchronous_commit = off")
    start_server "$a" "$pa" "${settings[@]}"
    start_server "$b" "$pb" "${settings[@]}"
    for port in $pa $pb; do
        sql "$port" postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench"
        sql "$port" bench -c "CREATE EXTENSION pg_wal_budget" \
            -c "SELECT pwb.create_policy('role', 'bench', 1073741824, 1073741824, 'observe')" >/dev/null
        pgbench_ "$port" -U bench -i -q -s 10 bench >/dev/null 2>&1
    done
    # with_ext: which server has pg_wal_budget preloaded now.
    local with_ext="" pairs="$OUT/overhead.tsv" i
    : >"$pairs"
    for ((i = 0; i < PAIRS; i++)); do
        if ((i % SWAP_EVERY == 0)); then
            if [[ $with_ext == a ]]; then with_ext=b; else with_ext=a; fi
            for s in a b; do
                local dir="$WORK/over-$s"
                local preload=""
                [[ $s == "$with_ext" ]] && preload="pg_wal_budget"
                echo "shared_preload_libraries = '$preload'" | as_server_user tee "$dir/data/postgresql.auto.conf" >/dev/null
                cluster_stop "$dir" "$PG"
            done
            cluster_start "$a" "$PG" "$pa"
            cluster_start "$b" "$PG" "$pb"
            for port in $pa $pb; do
                sql "$port" bench -c "VACUUM ANALYZE" -c "CHECKPOINT"
                pgbench_ "$port" -U bench -n -c 2 -j 1 -T 3 bench >/dev/null 2>&1 & # warm-up
            done
            wait
        fi
        pgbench_ $pa -U bench -n -c 2 -j 1 -T "$PAIR_SECONDS" bench >"$OUT/overhead-a.txt" 2>&1 &
        pgbench_ $pb -U bench -n -c 2 -j 1 -T "$PAIR_SECONDS" bench >"$OUT/overhead-b.txt" 2>&1 &
        wait
        local ta tb
        ta=$(awk '/^tps/ { print $3; exit }' "$OUT/overhead-a.txt")
        tb=$(awk '/^tps/ { print $3; exit }' "$OUT/overhead-b.txt")
        if [[ $with_ext == a ]]; then echo "$tb	$ta	a"; else echo "$ta	$tb	b"; fi >>"$pairs"
    done
    cluster_stop "$a" "$PG"
    cluster_stop "$b" "$PG"
    # columns: tps without, tps with, side of the server with the extension
    "${ANALYZE[@]}" overhead "$pairs" >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
}

# ---- 2. queue: 1 MiB/s -----------------------------------------------------------
s_queue() {
    enforcement_server
    log "2. queue 1 MiB/s, 4 writers, ${QUEUE_WINDOW} s window"
    local port=$ENF_PORT db=s2
    new_db $port $db
    sql $port $db -c "CREATE TABLE flood (w int, pad text)"
    grant_all $port $db
    local script="$OUT/flood.sql"
    echo "INSERT INTO flood (w, pad) SELECT :client_id, repeat('x', 100) FROM generate_series(1, 20);" >"$script"
    # Baseline: the same writers, no policy.
    local l0 l1 t0 t1
    sql $port $db -c "CHECKPOINT"
    l0=$(lsn $port); t0=$(now)
    pgbench_ $port -U w -n -f "$script" -c 4 -j 2 -T 5 $db >"$OUT/queue-baseline.txt" 2>&1
    l1=$(lsn $port); t1=$(now)
    local base
    base=$(awk -v d=$((l1 - l0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", d / (t1 - t0) / 1048576 }')
    sql $port $db -c "SELECT pwb.create_policy('role', 'w', $MIB, $((4 * MIB)), 'queue')" -c "CHECKPOINT" >/dev/null
    local warm=6
    pgbench_ $port -U w -n -f "$script" -c 4 -j 2 -T $((warm + QUEUE_WINDOW + 2)) $db >"$OUT/queue-run.txt" 2>&1 &
    local bench=$!
    sleep $warm
    l0=$(lsn $port); t0=$(now)
    sleep "$QUEUE_WINDOW"
    l1=$(lsn $port); t1=$(now)
    wait $bench || true
    local shares
    shares=$(sql $port $db -c "SELECT string_agg(round(100.0 * n / sum(n) OVER ())::text, '/' ORDER BY w)
        FROM (SELECT w, count(*) n FROM flood GROUP BY w) s" 2>/dev/null || echo "?")
    awk -v d=$((l1 - l0)) -v t0="$t0" -v t1="$t1" -v base="$base" 'BEGIN {
        r = d / (t1 - t0) / 1048576
        printf "2. queue policy 1 MiB/s, 4 writers of 20-row inserts, WAL by LSN over %.0f s after the burst\t1 MiB/s +- 5 %%\twithout the policy: %s MiB/s\t%.4f MiB/s (%+.2f %%)\t%s\n",
            t1 - t0, base, r, 100 * (r - 1), (r >= 0.95 && r <= 1.05) ? "met" : "NOT met" }' >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
    echo "writers' shares of rows (%, whole run incl. baseline): $shares" >"$OUT/queue-shares.txt"
}

# ---- 3. pace inside one statement ---------------------------------------------------
s_pace() {
    enforcement_server
    log "3. pace 1 MiB/s inside one INSERT ... SELECT"
    local port=$ENF_PORT db=s3
    new_db $port $db
    local bpr rows
    bpr=$(wal_per_row $port $db)
    rows=$(awk -v b="$bpr" 'BEGIN { printf "%d", 28 * 1048576 / b }')
    sql $port $db -c "CREATE TABLE bulk (at timestamptz DEFAULT clock_timestamp(), pad text)"
    grant_all $port $db
    local insert="INSERT INTO bulk (pad) SELECT repeat('x', 1000) FROM generate_series(1, $rows)"
    local l0 l1 t0 t1
    sql $port $db -c "CHECKPOINT"
    l0=$(lsn $port); t0=$(now)
    AS=p sql $port $db -c "$insert"
    t1=$(now); l1=$(lsn $port)
    local base
    base=$(awk -v d=$((l1 - l0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f MiB/s (%.1f MiB in %.2f s)", d / (t1 - t0) / 1048576, d / 1048576, t1 - t0 }')
    sql $port $db -c "TRUNCATE bulk" -c "SELECT pwb.create_policy('role', 'p', $MIB, $((4 * MIB)), 'pace')" -c "CHECKPOINT" >/dev/null
    sampler $port postgres 0.5 "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint" >"$OUT/pace-lsn.tsv" &
    local smp=$!
    sleep 1
    l0=$(lsn $port); t0=$(now)
    AS=p sql $port $db -c "$insert"
    t1=$(now); l1=$(lsn $port)
    sleep 0.6
    kill $smp; wait $smp 2>/dev/null || true
    "${ANALYZE[@]}" pace "$OUT/pace-lsn.tsv" "$t0" "$t1" "$l0" "$l1" "$MIB" $((4 * MIB)) "$base" >>"$RESULTS"
    tail -n 2 "$RESULTS" >&2
}

# ---- 4. several tenants (roles), each its own pace policy -----------------------------
s_tenants() {
    enforcement_server
    twin_server
    log "4. four roles paced at 1 MiB/s each, an unpoliced role alongside, on two servers in turn"
    local db=s4 r port side bpr
    for port in $ENF_PORT $TWIN_PORT; do
        new_db $port $db
        for r in 1 2 3 4; do
            sql $port $db -c "CREATE TABLE t_r$r (at timestamptz DEFAULT clock_timestamp(), pad text)" \
                -c "CREATE TABLE t_h$r (at timestamptz DEFAULT clock_timestamp(), pad text)" \
                -c "SELECT pwb.create_policy('role', 'r$r', $MIB, $MIB, 'pace')" >/dev/null
        done
        pgbench_ $port -U postgres -i -q -s 10 $db >>"$OUT/tenants-init.txt" 2>&1
        grant_all $port $db
    done
    bpr=$(wal_per_row $ENF_PORT $db)
    for r in 1 2 3 4; do
        echo "INSERT INTO t_r$r (pad) SELECT repeat('x', 1000) FROM generate_series(1, 1000);" >"$OUT/tenant-r$r.sql"
        printf '%s\n' "BEGIN;" "SELECT txid_current();" \
            "INSERT INTO t_h$r (pad) SELECT repeat('x', 1000) FROM generate_series(1, 1000);" \
            "SELECT pg_sleep(1);" "COMMIT;" >"$OUT/tenant-h$r.sql"
    done
    for port in $ENF_PORT $TWIN_PORT; do sql $port $db -c "VACUUM ANALYZE" -c "CHECKPOINT"; done
    # Both servers and their clients share one CPU, so that the scheduler
    # splits it evenly between them whatever else the machine runs.
    pin "$ENF" "$PIN_CPU"
    pin "$TWIN" "$PIN_CPU"
    # The unpoliced role runs on both servers all along; the load runs on
    # one server at a time, in turn (A: the enforcement server, B: its twin):
    # first the paced roles, then (control, no pg_wal_budget policy) roles
    # h1-h4 writing the same WAL in transactions held open as long (1 s).
    local kinds=(r r r r r r r r r r r r h h h h h h)
    local total=$((${#kinds[@]} * SEG + 12))
    taskset -c "$PIN_CPU" "$BIN/pgbench" -h 127.0.0.1 -p $ENF_PORT -U free -n -c 2 -j 2 -T $total -P 1 --progress-timestamp $db >"$OUT/tenants-free-A.txt" 2>&1 &
    local free_a=$!
    taskset -c "$PIN_CPU" "$BIN/pgbench" -h 127.0.0.1 -p $TWIN_PORT -U free -n -c 2 -j 2 -T $total -P 1 --progress-timestamp $db >"$OUT/tenants-free-B.txt" 2>&1 &
    local free_b=$!
    sleep 3
    : >"$OUT/tenants-segments.tsv"
    local seg pids s0 s1 c0 c1 kind
    for seg in "${!kinds[@]}"; do
        kind=${kinds[$seg]}
        if ((seg % 2 == 0)); then side=A port=$ENF_PORT; else side=B port=$TWIN_PORT; fi
        c0="$(server_ticks "$ENF") $(server_ticks "$TWIN")"
        s0=$(now)
        pids=()
        for r in 1 2 3 4; do
            taskset -c "$PIN_CPU" "$BIN/pgbench" -h 127.0.0.1 -p $port -U $kind$r -n -f "$OUT/tenant-$kind$r.sql" -c 1 -j 1 -T "$SEG" $db >"$OUT/tenants-$side-$kind$r-$seg.txt" 2>&1 &
            pids+=($!)
        done
        sleep "$SEG"
        s1=$(now)
        c1="$(server_ticks "$ENF") $(server_ticks "$TWIN")"
        wait "${pids[@]}" || true
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$side" "$s0" "$s1" "$(now)" "$c0 $c1" >>"$OUT/tenants-segments.tsv"
    done
    wait $free_a $free_b || true
    pin "$ENF" "$ALL_CPUS"
    pin "$TWIN" "$ALL_CPUS"
    for side in A B; do
        port=$ENF_PORT
        [[ $side == B ]] && port=$TWIN_PORT
        for r in 1 2 3 4; do
            sql $port $db -F $'\t' -c "SELECT '$side r$r', extract(epoch FROM at) FROM t_r$r"
        done
    done >"$OUT/tenants-rows.tsv"
    "${ANALYZE[@]}" tenants "$OUT/tenants-rows.tsv" "$OUT/tenants-segments.tsv" "$OUT/tenants-free-A.txt" \
        "$OUT/tenants-free-B.txt" "$bpr" "$MIB" >>"$RESULTS"
    tail -n 2 "$RESULTS" >&2
}

# ---- 5. fairness: a 2 MiB statement among small ones -----------------------------------
s_fairness() {
    enforcement_server
    log "5. fairness: queue 1 MiB/s, 8 small writers, one ~2 MiB statement"
    local port=$ENF_PORT db=s5
    new_db $port $db
    sql $port $db -c "CREATE TABLE f_small (pid int, arrived timestamptz, admitted timestamptz, pad text)" \
        -c "CREATE TABLE f_big (arrived timestamptz, admitted timestamptz, pad text)"
    grant_all $port $db
    local small="INSERT INTO f_small SELECT pg_backend_pid(), statement_timestamp(), clock_timestamp(), repeat('x', 100) FROM generate_series(1, 20);"
    local big="INSERT INTO f_big SELECT statement_timestamp(), clock_timestamp(), repeat('x', 1000) FROM generate_series(1, 1900)"
    echo "$small" >"$OUT/fair-small.sql"
    local id i
    id=$(sql $port $db -c "SELECT pwb.create_policy('role', 'fair', $MIB, $((4 * MIB)), 'observe')")
    # Learn both statements' WAL (the profile of the policy's scope).
    for i in 1 2 3 4 5; do AS=fair sql $port $db -c "$small" -c "$big"; done
    sql $port $db -c "TRUNCATE f_small, f_big" -c "CHECKPOINT" -c "SELECT pwb.set_policy_mode($id, 'queue')" >/dev/null
    {
        for ((i = 0; i < 1500; i++)); do
            echo "SELECT extract(epoch FROM statement_timestamp()), pid, position, wanted_bytes, waiting_since_epoch_ms FROM pwb.waits() WHERE policy_id = $id;"
            echo "SELECT pg_sleep(0.01);"
        done
    } >"$OUT/fair-sampler.sql"
    sql $port $db -F $'\t' -f "$OUT/fair-sampler.sql" >"$OUT/fair-waits.tsv" 2>/dev/null &
    local smp=$!
    pgbench_ $port -U fair -n -f "$OUT/fair-small.sql" -c 8 -j 2 -T 14 $db >"$OUT/fair-small.txt" 2>&1 &
    local bench=$!
    sleep 6
    AS=fair sql $port $db -c "$big"
    wait $bench || true
    kill $smp 2>/dev/null; wait $smp 2>/dev/null || true
    sql $port $db -F $'\t' -c "SELECT extract(epoch FROM min(arrived)), extract(epoch FROM min(admitted)) FROM f_big" >"$OUT/fair-big.tsv"
    sql $port $db -F $'\t' -c "SELECT pid, extract(epoch FROM arrived), extract(epoch FROM min(admitted))
        FROM f_small GROUP BY pid, arrived" >"$OUT/fair-small.tsv"
    sql $port $db -F $'\t' -c "SELECT query_id, calls, round(ewma_wal_bytes) FROM pwb.query_profiles() WHERE NOT is_global" >"$OUT/fair-profiles.tsv"
    "${ANALYZE[@]}" fairness "$OUT/fair-big.tsv" "$OUT/fair-small.tsv" "$OUT/fair-waits.tsv" "$MIB" >>"$RESULTS"
    tail -n 2 "$RESULTS" >&2
}

# ---- 6. the cost of pacing checks -----------------------------------------------------
s_pacecost() {
    enforcement_server
    log "6. pacing-check cost: 1,000,000-row INSERT, pace (rate never reached) vs observe"
    local port=$ENF_PORT db=s6 id i
    new_db $port $db
    sql $port $db -c "CREATE TABLE c (id int)"
    id=$(sql $port $db -c "SELECT pwb.create_policy('database', '$db', $((256 * MIB)), $((256 * MIB)), 'observe')")
    local script="$OUT/pacecost.sql" order="$OUT/pacecost-order.txt"
    : >"$order"
    {
        echo "INSERT INTO c SELECT g FROM generate_series(1, 1000000) g;" # warm-up
        for ((i = 0; i < PACECOST_PAIRS; i++)); do
            local first=pace second=observe
            if ((i % 2)); then first=observe second=pace; fi
            for mode in $first $second; do
                echo "$mode" >>"$order"
                echo "SELECT pwb.set_policy_mode($id, '$mode');"
                echo "TRUNCATE c;"
                echo "CHECKPOINT;"
                echo '\timing on'
                echo "INSERT INTO c SELECT g FROM generate_series(1, 1000000) g;"
                echo '\timing off'
            done
        done
    } >"$script"
    sql $port $db -f "$script" | awk '/^Time:/ { print $2 }' >"$OUT/pacecost-times.txt"
    local paced
    paced=$(sql $port $db -c "SELECT paced_statements FROM pwb.scope_stats() WHERE policy_id = $id")
    "${ANALYZE[@]}" pacecost "$order" "$OUT/pacecost-times.txt" "$paced" >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
}

# ---- 7. template policy: a bucket per tenant ----------------------------------------------
s_template() {
    enforcement_server
    log "7. template policy: 4 tenants at 1 MiB/s each"
    local port=$ENF_PORT db=s7 t
    new_db $port $db
    local bpr
    bpr=$(wal_per_row $port $db)
    sql $port $db -c "CREATE TABLE tt (tenant text, at timestamptz DEFAULT clock_timestamp(), pad text)" \
        -c "GRANT pwb_tenant_setter TO app" \
        -c "SELECT pwb.create_policy('tenant', NULL, $MIB, $MIB, 'pace')" >/dev/null
    grant_all $port $db
    sql $port $db -c "CHECKPOINT"
    local t0 t1
    t0=$(now)
    for t in 1 2 3 4; do
        printf '%s\n' "SELECT pwb.set_tenant('t$t');" \
            "INSERT INTO tt (tenant, pad) SELECT 't$t', repeat('x', 1000) FROM generate_series(1, 1000);" >"$OUT/template-t$t.sql"
        pgbench_ $port -U app -n -f "$OUT/template-t$t.sql" -c 1 -j 1 -T "$TEMPLATE_SECONDS" $db >"$OUT/template-t$t.txt" 2>&1 &
    done
    wait
    t1=$(now)
    sql $port $db -F $'\t' -c "SELECT tenant, extract(epoch FROM at) FROM tt" >"$OUT/template-rows.tsv"
    sql $port $db -F $'\t' -c "SELECT policy_id, scope_value, rate_bytes_per_sec, paced_statements FROM pwb.scope_stats()" >"$OUT/template-scope-stats.tsv"
    # One segment: from the start + 4 s (burst spent) to the end - 1 s.
    printf '%s\t%s\t%s\n' "$t0" "$(awk -v t="$t0" -v s="$TEMPLATE_SECONDS" 'BEGIN { printf "%.3f", t + s }')" "$t1" >"$OUT/template-segments.tsv"
    "${ANALYZE[@]}" template "$OUT/template-rows.tsv" "$OUT/template-segments.tsv" "$bpr" "$MIB" >>"$RESULTS"
    tail -n 4 "$RESULTS" >&2
}

# ---- 8. replica lag held by feedback --------------------------------------------------------
replica_pair() { # NAME PRIMARY_PORT STANDBY_PORT MAX_REPLICA_LAG
    local name="$1" pport="$2" sport="$3" limit="$4"
    local pdir="$WORK/replica-$name-primary" sdir="$WORK/replica-$name-standby"
    start_server "$pdir" "$pport" "shared_preload_libraries = 'pg_wal_budget'" "pwb.max_replica_lag = '$limit'"
    sql "$pport" postgres <<SQL >/dev/null
CREATE EXTENSION pg_wal_budget;
CREATE TABLE rl (who text, pad text);
GRANT ALL ON rl TO PUBLIC;
CREATE ROLE t1 LOGIN; CREATE ROLE t2 LOGIN; CREATE ROLE t3 LOGIN; CREATE ROLE t4 LOGIN; CREATE ROLE ex LOGIN;
SELECT pwb.create_policy('role', 't' || g, $MIB, $MIB, 'queue') FROM generate_series(1, 4) g;
SELECT pwb.set_policy_feedback_exempt(pwb.create_policy('role', 'ex', 262144, 262144, 'queue'), true);
CHECKPOINT;
SQL
    rm -rf "$sdir"
    mkdir -p "$sdir"
    if is_root; then chown "$PG_RUN_AS" "$sdir"; fi
    as_server_user "$BIN/pg_basebackup" -d "host=127.0.0.1 port=$pport user=postgres application_name=standby" \
        -D "$sdir/data" -R -X stream -C -S standby --checkpoint=fast --no-sync >"$OUT/replica-$name-basebackup.log" 2>&1
    printf '%s\n' "unix_socket_directories = '$sdir'" "recovery_min_apply_delay = '$REPLICA_DELAY'" |
        as_server_user tee -a "$sdir/data/postgresql.conf" >/dev/null
    cluster_start "$sdir" "$PG" "$sport"
    STARTED+=("$sdir")
    for ((i = 0; i < 30; i++)); do
        [[ $(sql "$pport" postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1 ]] && break
        sleep 0.5
    done
}
s_replica() {
    log "8. replica lag: two primary + standby pairs, ${REPLICA_SECONDS} s of writes"
    local bp=$((PORT_BASE + 3)) fp=$((PORT_BASE + 5)) who name port
    replica_pair base $bp $((PORT_BASE + 4)) 0
    replica_pair feedback $fp $((PORT_BASE + 6)) 64MB
    for who in t1 t2 t3 t4 ex; do
        echo "INSERT INTO rl SELECT '$who', repeat('x', 1000) FROM generate_series(1, 50);" >"$OUT/replica-$who.sql"
    done
    local lagq="(SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)::bigint FROM pg_stat_replication)"
    sampler $bp postgres 1 "$lagq || E'\t' || 1" >"$OUT/replica-base-lag.tsv" &
    local s1=$!
    sampler $fp postgres 1 "$lagq || E'\t' || (SELECT round(factor::numeric, 3) FROM pwb.feedback() LIMIT 1)" >"$OUT/replica-feedback-lag.tsv" &
    local s2=$!
    for name in base feedback; do
        port=$bp
        [[ $name == feedback ]] && port=$fp
        for who in t1 t2 t3 t4 ex; do
            pgbench_ $port -U $who -n -f "$OUT/replica-$who.sql" -c 1 -j 1 -T "$REPLICA_SECONDS" postgres \
                >"$OUT/replica-$name-$who.txt" 2>&1 &
        done
    done
    sleep "$REPLICA_SECONDS"
    sleep 2
    kill $s1 $s2
    # The tenants' last statements on the feedback side wait for a standby
    # whose replay is held back for REPLICA_DELAY: cancel them (pgbench still
    # prints what it did) rather than wait for the replay.
    for port in $bp $fp; do
        sql $port postgres -c "SELECT count(pg_catalog.pg_cancel_backend(pid)) FROM pg_catalog.pg_stat_activity
            WHERE usename IN ('t1', 't2', 't3', 't4', 'ex')" >/dev/null || true
    done
    wait || true
    "${ANALYZE[@]}" replica "$OUT" 67108864 >>"$RESULTS"
    tail -n 3 "$RESULTS" >&2
    for name in base feedback; do
        cluster_stop "$WORK/replica-$name-standby" "$PG" immediate
        cluster_stop "$WORK/replica-$name-primary" "$PG" immediate
    done
}

# ---- 9. policy-cache reload with 10,000 policies --------------------------------------------
s_reload() {
    enforcement_server
    log "9. reload stall: 10,000 policies, governed INSERT loop with and without reloads"
    local port=$ENF_PORT db=s9
    new_db $port $db
    sql $port $db -c "CREATE TABLE g (pad text)"
    grant_all $port $db
    sql $port $db -c "INSERT INTO pwb.policy (mode, scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes)
        SELECT 'queue', 'application', 'app' || g, $MIB, $MIB FROM generate_series(1, 9999) g" \
        -c "SELECT pwb.create_policy('role', 'gov', 1073741824, 1073741824, 'queue')" >/dev/null
    echo "INSERT INTO g SELECT repeat('x', 100) FROM generate_series(1, 10);" >"$OUT/reload-insert.sql"
    local n
    n=$(sql $port $db -c "SELECT count(*) FROM pwb.policy")
    sql $port $db -c "CHECKPOINT"
    pgbench_ $port -U gov -n -f "$OUT/reload-insert.sql" -c 1 -j 1 -T 3 $db >/dev/null 2>&1 # warm-up
    pgbench_ $port -U gov -n -f "$OUT/reload-insert.sql" -c 1 -j 1 -T "$RELOAD_SECONDS" \
        -l --log-prefix="$OUT/reload-quiet" $db >"$OUT/reload-quiet-out.txt" 2>&1
    pgbench_ $port -U gov -n -f "$OUT/reload-insert.sql" -c 1 -j 1 -T "$RELOAD_SECONDS" \
        -l --log-prefix="$OUT/reload-busy" $db >"$OUT/reload-busy-out.txt" 2>&1 &
    local bench=$! i
    # One session makes the changes (no connection start-up beside the
    # measured loop), printing the time after each one has committed.
    {
        for ((i = 1; i <= RELOAD_SECONDS * 4 - 2; i++)); do
            echo "SELECT pwb.update_policy(1, $MIB + $i, $((2 * MIB)));"
            echo "SELECT extract(epoch FROM clock_timestamp());"
            echo "SELECT pg_sleep(0.25);"
        done
    } >"$OUT/reload-changes.sql"
    sql $port $db -f "$OUT/reload-changes.sql" | grep -E '^[0-9]+\.[0-9]+$' >"$OUT/reload-changes.txt"
    wait $bench || true
    "${ANALYZE[@]}" reload "$OUT"/reload-quiet.* "$OUT"/reload-busy.* "$n" "$OUT/reload-changes.txt" >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
}

# ---- 10. footprint: shared memory and prediction error -------------------
s_footprint() {
    local port=$((PORT_BASE + 8)) dir="$WORK/footprint"
    log "10. shared memory at default settings, prediction error of the calibration workloads"
    start_server "$dir" $port "shared_preload_libraries = 'pg_wal_budget'"
    sql $port postgres -c "CREATE DATABASE scratch"
    local shm
    shm=$(sql $port postgres -c "SELECT allocated_size FROM pg_shmem_allocations WHERE name = 'pg_wal_budget'")
    awk -v b="${shm:-0}" 'BEGIN {
        printf "10. shared memory at default settings (pg_shmem_allocations)\t<= 8 MB\t-\t%d B (%.2f MB)\t%s\n",
            b, b / 1048576, (b > 0 && b <= 8 * 1048576) ? "met" : "NOT met" }' >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
    (cd tests/workloads && sql $port scratch -F '|' -f calibration_summary.sql) >"$OUT/calibration.txt" 2>&1 ||
        { tail -n 20 "$OUT/calibration.txt"; die "calibration workloads failed"; }
    awk -F'|' '/^Summary/ { summary = 1; next }
        !summary { next }
        $1 == "ALL" { all = $0; r = $6 }
        $1 != "ALL" && NF == 6 && $2 ~ /^[0-9]+$/ { per = per sprintf("%s%s %.1f %%", per == "" ? "" : ", ", $1, 100 * $6) }
        END {
            printf "10. prediction error: calibration workloads, runs 4-12 each (median of abs(predicted - actual) / actual)\t<= 10 %%\t-\tall %.1f %% (%s)\t%s\n",
                100 * r, per, (all != "" && r <= 0.10) ? "met" : "NOT met" }' "$OUT/calibration.txt" >>"$RESULTS"
    tail -n 1 "$RESULTS" >&2
    cluster_stop "$dir" "$PG" fast
}

started_at=$(date -u +%H:%M)
for s in "${scenarios[@]}"; do "s_$s"; done

{
    echo
    echo "## pg_wal_budget benchmark (PostgreSQL $("$BIN/pg_config" --version | awk '{print $2}'), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(date -u +%Y-%m-%d) $started_at-$(date -u +%H:%M) UTC, commit $(git rev-parse --short HEAD))"
    echo
    echo "| measurement | target | baseline (same run) | measured | verdict |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$RESULTS"
    echo
    echo "raw output: $OUT"
} | tee "$OUT/summary.md"
