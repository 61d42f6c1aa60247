//! pg_throttle and parallel query: the leader and its workers share one
//! budget (query mode) or one budget per plan node (per-node mode), with
//! both loading methods; cancel and terminate while they all sleep; a
//! thousand parallel throttled queries leave no shared memory segment or
//! memory behind; the 100 ms window bound holds for the sum of processes;
//! and `pg_throttle.count = examined` paces a filtered scan by the tuples it
//! reads, with EXPLAIN ANALYZE's counts intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg_throttle_support;

use std::thread;
use std::time::{Duration, Instant};

use cluster_tests::{Client, Cluster, sqlstate, wait_for};
use pg_throttle_support::{
    Preload, assert_paced, dsm_segments, explain_analyze, force_parallel, has_rows,
    parallel_workers, pid, seconds, setup, small_dsm_segments,
};

const WAIT: Duration = Duration::from_secs(60);

/// A table of `rows` rows planned with `workers` workers.
fn parallel_table(admin: &mut Client, name: &str, rows: u32, workers: u32) {
    admin
        .batch_execute(&format!(
            "CREATE TABLE {name} AS SELECT g AS id FROM generate_series(1, {rows}) g;
             ALTER TABLE {name} SET (parallel_workers = {workers});
             GRANT SELECT ON {name} TO alice;"
        ))
        .unwrap();
    admin
        .batch_execute(&format!("VACUUM ANALYZE {name}"))
        .unwrap();
}

/// "Workers Launched: N" of an EXPLAIN ANALYZE.
fn workers_launched(text: &str) -> u32 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Workers Launched: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `sql` under EXPLAIN ANALYZE and returns (seconds, plan text).
fn timed_explain(client: &mut Client, sql: &str) -> (f64, String) {
    let start = Instant::now();
    let text = explain_analyze(client, sql);
    (start.elapsed().as_secs_f64(), text)
}

/// 3,000 rows at 1,000 tuples/s with 2 and with 4 workers, in query mode
/// and in per-node mode: about 3 s every time (not 3 s / processes), with
/// the workers confirmed launched and every row counted.
fn leader_and_workers_share_the_budget(preload: Preload) {
    let cluster = setup(preload);
    let mut admin = cluster.connect();
    parallel_table(&mut admin, "par2", 3000, 2);
    parallel_table(&mut admin, "par4", 3000, 4);
    let mut alice = cluster.connect_as("alice", "postgres");
    for (table, workers) in [("par2", 2), ("par4", 4)] {
        force_parallel(&mut alice, workers);
        for config in [
            "SELECT throttle_user_query('alice', 1000)",
            "SELECT throttle_user_per_node('alice', 1000, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        ] {
            admin.batch_execute(config).unwrap();
            let sql = format!("SELECT count(*) FROM {table}");
            let (took, text) = timed_explain(&mut alice, &sql);
            assert_eq!(
                workers_launched(&text),
                workers,
                "{preload:?} {config}: not the planned workers:\n{text}"
            );
            assert!(
                text.contains(&format!("Parallel Seq Scan on {table}")),
                "{text}"
            );
            // Per process: 3000 / (workers + 1) rows, loops = workers + 1.
            let per = 3000 / (workers + 1);
            assert!(
                has_rows(&text, &per.to_string(), &(workers + 1).to_string()),
                "{preload:?}: row counts wrong:\n{text}"
            );
            assert_paced(&format!("{preload:?} {table} {config}"), took, 3.0);
        }
    }
}

#[test]
fn leader_and_workers_share_the_budget_with_session_preload() {
    leader_and_workers_share_the_budget(Preload::Session);
}

#[test]
fn leader_and_workers_share_the_budget_with_shared_preload() {
    leader_and_workers_share_the_budget(Preload::Shared);
}

/// Waits until alice's leader and `workers` parallel workers sleep for
/// pg_throttle (seen in pg_stat_activity).
fn wait_until_all_sleep(admin: &mut Client, leader: i32, workers: i64) {
    wait_for(WAIT, "leader and workers asleep", || {
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE pid = $1 AND wait_event_type = 'Extension'),
                        count(*) FILTER (WHERE backend_type = 'parallel worker'
                                           AND wait_event_type = 'Extension')
                 FROM pg_stat_activity",
                &[&leader],
            )
            .unwrap();
        row.get::<_, i64>(0) == 1 && row.get::<_, i64>(1) == workers
    });
}

/// Nothing is left behind: no parallel worker, the shared memory segments
/// back to `baseline`.
fn assert_nothing_left(cluster: &Cluster, admin: &mut Client, baseline: usize) {
    wait_for(WAIT, "parallel workers gone", || {
        parallel_workers(admin) == 0
    });
    let deadline = Instant::now() + WAIT;
    while dsm_segments(cluster) != baseline {
        assert!(
            Instant::now() < deadline,
            "shared memory segments: {} now, {baseline} before: {:?}",
            dsm_segments(cluster),
            std::fs::read_dir(cluster.data_dir().join("pg_dynshmem")).map(|d| d
                .filter_map(Result::ok)
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect::<Vec<_>>())
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// PostgreSQL gives a session that ran a parallel query a segment of its
/// own (its typmod registry) for the rest of its life; so the segments are
/// counted before alice connects, and after her first parallel query.
#[test]
fn cancel_and_terminate_while_leader_and_workers_sleep() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    parallel_table(&mut admin, "par", 3000, 2);
    let without_alice = dsm_segments(&cluster);
    let query = "SELECT count(*) FROM par";

    let mut alice = cluster.connect_as("alice", "postgres");
    force_parallel(&mut alice, 2);
    alice.batch_execute(query).unwrap();
    let with_alice = dsm_segments(&cluster);
    // 3000 rows at 50/s: a minute, unless interrupted.
    admin
        .batch_execute("SELECT throttle_user_query('alice', 50)")
        .unwrap();

    // Cancel.
    let leader = pid(&mut alice);
    let token = alice.cancel_token();
    let runner = thread::spawn(move || {
        let start = Instant::now();
        let result = alice.batch_execute(query);
        (alice, result, start.elapsed())
    });
    wait_until_all_sleep(&mut admin, leader, 2);
    token.cancel_query(cluster_tests::NoTls).unwrap();
    let (mut alice, result, took) = runner.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(sqlstate(&err), Some("57014"), "{err}");
    assert!(took < Duration::from_secs(30), "cancel took {took:?}");
    assert_nothing_left(&cluster, &mut admin, with_alice);
    // The next statement works and is paced as usual: 100 rows at 50/s.
    assert_paced(
        "after cancel",
        seconds(&mut alice, "SELECT * FROM generate_series(1, 100)"),
        2.0,
    );

    // Terminate the leader: its workers go, and with its session, every
    // segment it had.
    let leader = pid(&mut alice);
    let runner = thread::spawn(move || {
        let start = Instant::now();
        let result = alice.batch_execute(query);
        (result.is_err(), start.elapsed())
    });
    wait_until_all_sleep(&mut admin, leader, 2);
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({leader})"))
        .unwrap();
    let (failed, took) = runner.join().unwrap();
    assert!(failed, "the terminated statement must fail");
    assert!(took < Duration::from_secs(30), "terminate took {took:?}");
    assert_nothing_left(&cluster, &mut admin, without_alice);
    let mut alice = cluster.connect_as("alice", "postgres");
    assert_paced(
        "after terminate",
        seconds(&mut alice, "SELECT * FROM generate_series(1, 100)"),
        2.0,
    );
}

#[test]
fn a_thousand_parallel_throttled_queries_leave_nothing_behind() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    parallel_table(&mut admin, "par", 1000, 2);
    admin
        .batch_execute(
            "GRANT pg_read_all_stats TO alice;
             SELECT throttle_user_query('alice', 100000000);",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    force_parallel(&mut alice, 2);
    let text = explain_analyze(&mut alice, "SELECT count(*) FROM par");
    assert_eq!(workers_launched(&text), 2, "{text}");
    let memory = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let statements = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT coalesce(sum(statements), 0)::bigint FROM throttle_stats WHERE username = 'alice'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // Warm up (caches, plan), then measure.
    for _ in 0..50 {
        alice.batch_execute("SELECT count(*) FROM par").unwrap();
    }
    let baseline = dsm_segments(&cluster);
    let small_before = small_dsm_segments(&cluster);
    let memory_before = memory(&mut alice);
    let statements_before = statements(&mut admin);
    for _ in 0..1000 {
        let n: i64 = alice
            .query_one("SELECT count(*) FROM par", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1000);
    }
    // Every one of them was throttled (counted), with its workers.
    assert_eq!(statements(&mut admin) - statements_before, 1000);
    let memory_after = memory(&mut alice);
    assert!(
        memory_after - memory_before < 256 * 1024,
        "the session's memory grew from {memory_before} to {memory_after} bytes"
    );
    // No segment of ours is left, and the count did not grow with the
    // queries (PostgreSQL's cumulative statistics may have added one 1 MB
    // segment of their own meanwhile, which stays for the server's life).
    wait_for(WAIT, "parallel workers gone", || {
        parallel_workers(&mut admin) == 0
    });
    assert_eq!(small_dsm_segments(&cluster), small_before);
    let after = dsm_segments(&cluster);
    assert!(
        after <= baseline + 1,
        "{after} shared memory segments after 1000 queries, {baseline} before"
    );
}

/// Each process stamps a tuple as its scan produces it, just before pacing
/// it (a stamp taken after the pacing would have to be taken by the
/// leader, which receives workers' tuples in batches), so the stamps show
/// at most one tuple more per process than passed.
#[test]
fn any_100ms_window_holds_the_rate_over_all_processes() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    parallel_table(&mut admin, "par", 3000, 2);
    admin
        .batch_execute("SELECT throttle_user_query('alice', 1000)")
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    force_parallel(&mut alice, 2);
    // clock_timestamp() is parallel safe: each process evaluates it.
    let sql = "SELECT extract(epoch FROM clock_timestamp())::float8 FROM par";
    let text = explain_analyze(&mut alice, sql);
    assert_eq!(workers_launched(&text), 2, "{text}");
    let mut stamps: Vec<f64> = alice
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stamps.len(), 3000);
    stamps.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut start = 0;
    for end in 0..stamps.len() {
        while stamps[end] - stamps[start] >= 0.1 {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    // rate × 0.1 + burst = 120, + 1 per process for the stamps.
    assert!(best <= 120 + 3, "{best} tuples in one 100 ms window");
    let span = stamps[stamps.len() - 1] - stamps[0];
    assert!(span >= 2.4, "3000 tuples at 1000/s spanned {span:.3}s");
}

/// `pg_throttle.count = examined`: a scan with a selective filter is paced
/// by the tuples it reads (3000 at 1000/s: 3 s) instead of the 10 it
/// returns, serial and parallel; EXPLAIN ANALYZE's counts stay exact. The
/// setting is superuser-only: the session cannot switch back.
#[test]
fn examined_counting_paces_filtered_scans_by_tuples_read() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    parallel_table(&mut admin, "par", 3000, 2);
    admin
        .batch_execute(
            "SELECT throttle_user_per_node_all('alice', 1000);
             ALTER ROLE alice SET pg_throttle.count = 'examined';",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    let err = alice
        .batch_execute("SET pg_throttle.count = 'returned'")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"), "{err}");
    let sql = "SELECT count(*) FROM par WHERE id % 300 = 0";
    let (took, text) = timed_explain(&mut alice, sql);
    assert!(text.contains("Rows Removed by Filter: 2990"), "{text}");
    assert!(has_rows(&text, "10", "1"), "{text}");
    assert_paced("examined, serial", took, 3.0);

    force_parallel(&mut alice, 2);
    let (took, text) = timed_explain(&mut alice, sql);
    assert_eq!(workers_launched(&text), 2, "{text}");
    assert_paced("examined, parallel", took, 3.0);

    // With the default, `returned`, the same scan passes 10 tuples: fast
    // (throttled by examined tuples it would take 3 s).
    admin
        .batch_execute("ALTER ROLE alice RESET pg_throttle.count")
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    let took = seconds(&mut alice, sql);
    pg_throttle_support::assert_unthrottled("returned", took, 3.0);
}
