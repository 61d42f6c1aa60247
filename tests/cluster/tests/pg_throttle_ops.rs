//! pg_throttle operations and hardening on a real server: reading the
//! configuration never waits for a lock; internal queries (background
//! workers, other extensions' superuser sections) are never throttled;
//! statistics, their privileges and Prometheus text; the sleeping backends
//! (`throttle_waits()`, the wait event); a fault matrix (cancel,
//! statement_timeout, terminate, SIGKILL); a bad-input matrix over every
//! SQL function; rows of dropped roles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg_throttle_support;

use std::thread;
use std::time::{Duration, Instant};

use cluster_tests::{Client, Cluster, NoTls, sqlstate, wait_for};
use pg_throttle_support::{
    Preload, assert_paced, assert_unthrottled, pid, seconds, setup, small_dsm_segments,
};

const WAIT: Duration = Duration::from_secs(60);

/// `throttlings` and the roles' settings, as text, for "nothing changed".
fn snapshot(admin: &mut Client) -> Vec<String> {
    admin
        .query(
            "SELECT t::text FROM throttlings t
             UNION ALL
             SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A `throttle_admin` member holding `LOCK TABLE throttlings IN ACCESS
/// EXCLUSIVE MODE` makes no session wait: new sessions run (unthrottled:
/// they know no configuration yet), sessions that read it before keep it,
/// and every session reads the table again once the lock is gone.
#[test]
fn a_lock_on_throttlings_blocks_no_statement() {
    let cluster = setup(Preload::Session);
    let mut boss = cluster.connect_as("boss", "postgres");
    boss.batch_execute("SELECT throttle_user_per_node_all('alice', 20)")
        .unwrap();
    let mut known = cluster.connect_as("alice", "postgres");
    // 100 tuples at 20/s: 5 s.
    let query = "SELECT * FROM generate_series(1, 100)";
    assert_paced("before the lock", seconds(&mut known, query), 5.0);

    boss.batch_execute("BEGIN; LOCK TABLE throttlings IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    for user in ["postgres", "alice", "boss"] {
        let mut fresh = cluster.connect_as(user, "postgres");
        fresh
            .batch_execute("SET statement_timeout = '20s'")
            .unwrap();
        let start = Instant::now();
        fresh
            .batch_execute("SELECT 1")
            .unwrap_or_else(|e| panic!("{user}: SELECT 1 under the lock: {e}"));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{user}: SELECT 1 took {:?}",
            start.elapsed()
        );
    }
    // The session that knew its configuration keeps it.
    assert_paced("during the lock", seconds(&mut known, query), 5.0);
    // A change made under the lock reaches everybody after the commit.
    boss.batch_execute("SELECT throttle_user_per_node_all('alice', 1000000); COMMIT")
        .unwrap();
    assert_unthrottled("after the commit", seconds(&mut known, query), 5.0);
}

/// `throttle_user_per_node_all('postgres', 1)`: the pg_walrus worker (a
/// background worker connected as postgres) and pg_wal_budget's policy
/// reload (run as the bootstrap superuser inside a client backend of a
/// throttled user) are not throttled.
#[test]
fn internal_queries_are_never_throttled() {
    let cluster = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .shared_preload("pg_walrus")
        .shared_preload("pg_throttle")
        .setting("walrus.naptime_override_ms", "500")
        .setting("walrus.cooldown_sec", "0")
        .start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE EXTENSION pg_walrus;
             CREATE EXTENSION pg_throttle;
             CREATE ROLE dba SUPERUSER LOGIN;
             CREATE TABLE t (id serial PRIMARY KEY, payload text);
             SELECT pwb.create_policy('role', 'r' || g, 1000000, 2000000)
                 FROM generate_series(1, 300) g;",
        )
        .unwrap();
    let mut dba = cluster.connect_as("dba", "postgres");
    let intervals = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT (walrus.status()->'counters'->>'intervals')::bigint",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // Throttle postgres, as the issue reproduced, from here on.
    admin
        .batch_execute("SELECT throttle_user_per_node_all('postgres', 1)")
        .unwrap();

    // pg_walrus's worker keeps its pace (one interval per 0.5 s; each
    // interval runs several queries that would take a second or more each
    // at 1 tuple/s) and is never counted as a throttled statement.
    let start = intervals(&mut dba);
    wait_for(WAIT, "six walrus intervals", || {
        intervals(&mut dba) >= start + 6
    });

    // pg_wal_budget's reload of 301 policies (a policy added just now makes
    // every session reload) in a throttled postgres session: at 1 tuple/s
    // it would take 5 minutes.
    dba.batch_execute("SELECT pwb.create_policy('role', 'late', 1000000, 2000000)")
        .unwrap();
    let took = seconds(&mut admin, "INSERT INTO t (payload) VALUES ('x')");
    assert!(
        took < 60.0,
        "the write with a policy reload took {took:.1}s"
    );
    // postgres's own statement was throttled (one Result node), nothing
    // else: the worker's queries and the reload did not count.
    let row = dba
        .query_one(
            "SELECT statements, tuples FROM throttle_stats WHERE username = 'postgres'",
            &[],
        )
        .unwrap();
    let (statements, tuples): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((statements, tuples), (1, 1), "postgres's throttled work");
}

/// A role dropped while it had a row: `unthrottle_user` still removes the
/// row (with a NOTICE); then the name is unknown again.
#[test]
fn rows_of_dropped_roles_can_be_removed() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    let mut boss = cluster.connect_as("boss", "postgres");
    admin
        .batch_execute("CREATE ROLE temp_user LOGIN; SELECT throttle_user_query('temp_user', 5)")
        .unwrap();
    admin.batch_execute("DROP ROLE temp_user").unwrap();
    boss.batch_execute("SELECT unthrottle_user('temp_user')")
        .unwrap();
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM throttlings WHERE username = 'temp_user'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let err = boss
        .batch_execute("SELECT unthrottle_user('temp_user')")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42704"), "{err}");
}

fn stats_row(client: &mut Client, user: &str) -> Option<(i64, i64, f64, i32)> {
    client
        .query_opt(
            "SELECT statements, tuples, sleep_time, backends FROM throttle_stats WHERE username = $1",
            &[&user],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

fn visible_users(client: &mut Client) -> Vec<String> {
    client
        .query("SELECT username FROM throttle_stats ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The statistics view, its privileges, resets, and the Prometheus text
/// (parsed by promtool where it is installed, in
/// `metrics_pass_promtool`).
#[test]
fn statistics_are_counted_reset_and_private() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE ROLE bob LOGIN; GRANT SELECT ON tbl TO bob;
             CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
             SELECT throttle_user_per_node_all('alice', 1000);
             SELECT throttle_user_query('bob', 1000);",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    let mut bob = cluster.connect_as("bob", "postgres");
    for _ in 0..2 {
        alice.batch_execute("SELECT * FROM tbl").unwrap();
    }
    bob.batch_execute("SELECT * FROM tbl").unwrap();
    let (statements, tuples, slept, backends) = stats_row(&mut admin, "alice").unwrap();
    assert_eq!((statements, tuples, backends), (2, 400, 0));
    // 400 tuples at 1000/s, minus two bursts of 20: at least 0.3 s asleep.
    assert!(slept >= 300.0, "slept {slept} ms");
    assert_eq!(stats_row(&mut admin, "bob").map(|r| r.0), Some(1));

    // Who sees what.
    assert_eq!(visible_users(&mut alice), ["alice"]);
    assert_eq!(visible_users(&mut bob), ["bob"]);
    let mut watcher = cluster.connect_as("watcher", "postgres");
    let mut boss = cluster.connect_as("boss", "postgres");
    for c in [&mut watcher, &mut boss, &mut admin] {
        assert_eq!(visible_users(c), ["alice", "bob"]);
    }
    // Her own metrics only (her statements since count too: she is
    // throttled at every node kind, so these reads are throttled statements).
    let metrics: String = alice
        .query_one("SELECT throttle_metrics()", &[])
        .unwrap()
        .get(0);
    let value = |name: &str| -> f64 {
        let prefix = format!("pg_throttle_{name}{{username=\"alice\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} for alice:\n{metrics}"))
    };
    assert!(value("statements_total") >= 2.0, "{metrics}");
    assert!(value("tuples_total") >= 400.0, "{metrics}");
    assert!(value("sleep_seconds_total") >= 0.3, "{metrics}");
    assert!(!metrics.contains("bob"), "{metrics}");

    // A running throttled statement counts as a throttled backend.
    admin
        .batch_execute("SELECT throttle_user_per_node_all('alice', 5)")
        .unwrap();
    let alice_pid = pid(&mut alice);
    let runner = thread::spawn(move || alice.batch_execute("SELECT * FROM tbl").is_err());
    wait_for(WAIT, "alice counted as throttled backend", || {
        stats_row(&mut watcher, "alice").is_some_and(|r| r.3 == 1)
    });
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({alice_pid})"))
        .unwrap();
    assert!(runner.join().unwrap());
    wait_for(WAIT, "the terminated backend no longer counted", || {
        stats_row(&mut watcher, "alice").is_some_and(|r| r.3 == 0)
    });

    // Resets: only throttle_admin members and superusers; one user or all.
    let err = bob
        .batch_execute("SELECT throttle_stats_reset()")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"), "{err}");
    let bob_before = stats_row(&mut admin, "bob").map(|r| r.0);
    assert!(bob_before >= Some(1));
    boss.batch_execute("SELECT throttle_stats_reset('alice')")
        .unwrap();
    assert_eq!(stats_row(&mut admin, "alice").map(|r| r.0), Some(0));
    assert_eq!(stats_row(&mut admin, "bob").map(|r| r.0), bob_before);
    let reset_later: bool = admin
        .query_one(
            "SELECT (SELECT stats_reset FROM throttle_stats WHERE username = 'alice')
                  > (SELECT stats_reset FROM throttle_stats WHERE username = 'bob')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reset_later, "alice's stats_reset moved on");
    admin
        .batch_execute("SELECT throttle_stats_reset()")
        .unwrap();
    assert_eq!(stats_row(&mut admin, "bob").map(|r| r.0), Some(0));
}

/// The metrics of users whose names need escaping pass a real parser.
#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "promtool is not installed (scripts/setup installs Debian's prometheus package)"
)]
fn metrics_pass_promtool() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            r#"CREATE ROLE "we""ird\name" LOGIN;
               GRANT SELECT ON tbl TO "we""ird\name";
               SELECT throttle_user_query('we"ird\name', 100000);
               SELECT throttle_user_query('alice', 100000);"#,
        )
        .unwrap();
    // (A connection string cannot carry that name; a superuser session
    // becomes that user instead, and throttling follows the session user.)
    let mut weird = cluster.connect();
    weird
        .batch_execute(r#"SET SESSION AUTHORIZATION "we""ird\name"; SELECT * FROM tbl"#)
        .unwrap();
    cluster
        .connect_as("alice", "postgres")
        .batch_execute("SELECT * FROM tbl")
        .unwrap();
    let metrics: String = admin
        .query_one("SELECT throttle_metrics()", &[])
        .unwrap()
        .get(0);
    assert!(
        metrics.contains(r#"pg_throttle_tuples_total{username="we\"ird\\name"} 200"#),
        "{metrics}"
    );
    let file = cluster.data_dir().with_file_name("metrics.prom");
    std::fs::write(&file, &metrics).unwrap();
    let output = std::process::Command::new(cluster_tests::find_program("promtool").unwrap())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Loaded only through session_preload_libraries there is no shared
/// memory: no statistics and no list of sleepers, said plainly.
#[test]
fn without_shared_memory_statistics_say_so() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    let metrics: String = admin
        .query_one("SELECT throttle_metrics()", &[])
        .unwrap()
        .get(0);
    assert!(
        metrics.contains("pg_throttle_statistics_enabled 0"),
        "{metrics}"
    );
    let err = admin
        .batch_execute("SELECT throttle_stats_reset()")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("55000"), "{err}");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM throttle_stats", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

/// `throttle_waits()` lists a sleeping backend (and its parallel workers),
/// why and since when; `pg_stat_activity` names the wait `ThrottleSleep`
/// on PostgreSQL 17 and later, `Extension` before.
#[test]
fn sleeping_backends_are_listed_with_why_and_since_when() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE TABLE par AS SELECT g AS id FROM generate_series(1, 3000) g;
             ALTER TABLE par SET (parallel_workers = 2);
             GRANT SELECT ON par TO alice;
             SELECT throttle_user_per_node('alice', 5, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    let leader = pid(&mut alice);
    let token = alice.cancel_token();
    let runner = thread::spawn(move || {
        let _ = alice.batch_execute("SELECT * FROM tbl");
        alice
    });
    wait_for(WAIT, "alice listed as sleeping", || {
        admin
            .query(
                "SELECT 1 FROM throttle_waits() WHERE pid = $1 AND leader_pid IS NULL
                   AND username = 'alice' AND mode = 'per_node' AND node = 'seq_scan'
                   AND rate = 5 AND count = 'returned' AND since <= now()",
                &[&leader],
            )
            .unwrap()
            .len()
            == 1
    });
    let (kind, event): (Option<String>, Option<String>) = {
        let row = admin
            .query_one(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1",
                &[&leader],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let expected = if cfg!(any(pg_major = "17", pg_major = "18")) {
        "ThrottleSleep"
    } else {
        "Extension"
    };
    assert_eq!(
        (kind.as_deref(), event.as_deref()),
        (Some("Extension"), Some(expected))
    );
    // Others see only their own sleepers.
    let mut boss = cluster.connect_as("boss", "postgres");
    admin.batch_execute("CREATE ROLE nosy LOGIN").unwrap();
    let mut nosy = cluster.connect_as("nosy", "postgres");
    let seen: i64 = nosy
        .query_one("SELECT count(*) FROM throttle_waits()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let seen: i64 = boss
        .query_one("SELECT count(*) FROM throttle_waits()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 1);
    token.cancel_query(NoTls).unwrap();
    let mut alice = runner.join().unwrap();

    // Parallel workers are listed with their leader.
    pg_throttle_support::force_parallel(&mut alice, 2);
    let token = alice.cancel_token();
    let runner = thread::spawn(move || {
        let _ = alice.batch_execute("SELECT count(*) FROM par");
    });
    wait_for(WAIT, "the workers listed with their leader", || {
        admin
            .query_one(
                "SELECT count(*) FROM throttle_waits() WHERE leader_pid = $1",
                &[&leader],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 2
    });
    token.cancel_query(NoTls).unwrap();
    runner.join().unwrap();
    wait_for(WAIT, "nobody sleeping", || {
        admin
            .query_one("SELECT count(*) FROM throttle_waits()", &[])
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });
}

/// After a fault nothing is left: no sleeper, no throttled backend, no
/// lock, no segment of ours, and the next statement is paced as usual.
fn assert_clean(cluster: &Cluster, admin: &mut Client) {
    wait_for(WAIT, "no sleeper and no throttled backend", || {
        let row = admin
            .query_one(
                "SELECT (SELECT count(*) FROM throttle_waits()),
                        (SELECT coalesce(sum(backends), 0) FROM throttle_stats)::bigint,
                        (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                          WHERE a.usename = 'alice')",
                &[],
            )
            .unwrap();
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
        ) == (0, 0, 0)
    });
    assert_eq!(small_dsm_segments(cluster), 0, "a segment of ours is left");
    let mut alice = cluster.connect_as("alice", "postgres");
    // 100 tuples at 50/s: 2 s.
    assert_paced(
        "the next statement",
        seconds(&mut alice, "SELECT * FROM generate_series(1, 100)"),
        2.0,
    );
}

#[test]
fn fault_matrix_cancel_timeout_terminate_and_kill_while_throttled() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    // 100 tuples at 50/s take 2 s; the victim statement (20,000 tuples)
    // would take 400 s.
    admin
        .batch_execute("SELECT throttle_user_per_node_all('alice', 50)")
        .unwrap();
    let victim = "SELECT * FROM big";
    let asleep = |admin: &mut Client, pid: i32| {
        wait_for(WAIT, "the victim asleep", || {
            admin
                .query_one(
                    "SELECT count(*) FROM throttle_waits() WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 1
        });
    };

    // Cancel.
    let mut alice = cluster.connect_as("alice", "postgres");
    let victim_pid = pid(&mut alice);
    let token = alice.cancel_token();
    let runner = thread::spawn(move || alice.batch_execute(victim).unwrap_err());
    asleep(&mut admin, victim_pid);
    token.cancel_query(NoTls).unwrap();
    let err = runner.join().unwrap();
    assert_eq!(sqlstate(&err), Some("57014"), "cancel: {err}");
    assert_clean(&cluster, &mut admin);

    // statement_timeout.
    let mut alice = cluster.connect_as("alice", "postgres");
    alice.batch_execute("SET statement_timeout = '1s'").unwrap();
    let start = Instant::now();
    let err = alice.batch_execute(victim).unwrap_err();
    assert_eq!(sqlstate(&err), Some("57014"), "statement_timeout: {err}");
    assert!(start.elapsed() < Duration::from_secs(30));
    alice.batch_execute("RESET statement_timeout").unwrap();
    assert_paced(
        "same session after the timeout",
        seconds(&mut alice, "SELECT * FROM generate_series(1, 100)"),
        2.0,
    );
    assert_clean(&cluster, &mut admin);

    // pg_terminate_backend.
    let mut alice = cluster.connect_as("alice", "postgres");
    let victim_pid = pid(&mut alice);
    let runner = thread::spawn(move || alice.batch_execute(victim).is_err());
    asleep(&mut admin, victim_pid);
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({victim_pid})"))
        .unwrap();
    assert!(runner.join().unwrap(), "terminated statement must fail");
    assert_clean(&cluster, &mut admin);

    // SIGKILL: the postmaster restarts every backend and resets shared
    // memory; afterwards everything works and nothing is left.
    let mut alice = cluster.connect_as("alice", "postgres");
    let victim_pid = pid(&mut alice);
    let runner = thread::spawn(move || alice.batch_execute(victim).is_err());
    asleep(&mut admin, victim_pid);
    cluster.kill_backend(victim_pid);
    assert!(runner.join().unwrap(), "killed statement must fail");
    let mut admin = cluster.connect();
    assert_clean(&cluster, &mut admin);
}

/// Every SQL function with NULL, 0, negative, extreme, empty and 10 kB
/// arguments and unknown roles: a clear error with the right SQLSTATE, and
/// nothing changes. The largest int is a valid rate.
#[test]
fn bad_input_matrix_errors_and_changes_nothing() {
    let cluster = setup(Preload::Shared);
    let mut admin = cluster.connect();
    let mut boss = cluster.connect_as("boss", "postgres");
    boss.batch_execute("SELECT throttle_user_per_node_all('alice', 400)")
        .unwrap();
    let long = "x".repeat(10_000);
    let before = snapshot(&mut admin);
    let nulls11 = "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";
    let matrix: Vec<(String, &str)> = vec![
        // throttle_user_per_node_all
        (
            "SELECT throttle_user_per_node_all(NULL, 10)".into(),
            "22023",
        ),
        ("SELECT throttle_user_per_node_all('', 10)".into(), "42704"),
        (
            format!("SELECT throttle_user_per_node_all('{long}', 10)"),
            "42704",
        ),
        (
            "SELECT throttle_user_per_node_all('nobody', 10)".into(),
            "42704",
        ),
        (
            "SELECT throttle_user_per_node_all('Alice', 10)".into(),
            "42704",
        ),
        (
            "SELECT throttle_user_per_node_all('alice', 0)".into(),
            "22023",
        ),
        (
            "SELECT throttle_user_per_node_all('alice', -1)".into(),
            "22023",
        ),
        (
            "SELECT throttle_user_per_node_all('alice', -2147483647 - 1)".into(),
            "22023",
        ),
        (
            "SELECT throttle_user_per_node_all('alice', 9999999999)".into(),
            "42883",
        ),
        // throttle_user_per_node
        (
            format!("SELECT throttle_user_per_node(NULL, 1, {nulls11})"),
            "22023",
        ),
        (
            format!("SELECT throttle_user_per_node('', 1, {nulls11})"),
            "42704",
        ),
        (
            format!("SELECT throttle_user_per_node('alice', 0, {nulls11})"),
            "22023",
        ),
        (
            "SELECT throttle_user_per_node('alice', 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -5)".into(),
            "22023",
        ),
        // throttle_user_query
        ("SELECT throttle_user_query('alice', NULL)".into(), "22023"),
        ("SELECT throttle_user_query('alice', 0)".into(), "22023"),
        ("SELECT throttle_user_query(NULL, 10)".into(), "22023"),
        ("SELECT throttle_user_query('', 10)".into(), "42704"),
        (format!("SELECT throttle_user_query('{long}', 10)"), "42704"),
        // unthrottle_user
        ("SELECT unthrottle_user(NULL)".into(), "22023"),
        ("SELECT unthrottle_user('')".into(), "42704"),
        (format!("SELECT unthrottle_user('{long}')"), "42704"),
        ("SELECT unthrottle_user('nobody')".into(), "42704"),
        // throttle_user_count
        (
            "SELECT throttle_user_count(NULL, 'examined')".into(),
            "22023",
        ),
        (
            "SELECT throttle_user_count('nobody', 'examined')".into(),
            "42704",
        ),
        (
            "SELECT throttle_user_count('alice', 'bogus')".into(),
            "22023",
        ),
        ("SELECT throttle_user_count('alice', '')".into(), "22023"),
        (
            format!("SELECT throttle_user_count('alice', '{long}')"),
            "22023",
        ),
        // throttle_stats_reset
        ("SELECT throttle_stats_reset('')".into(), "42704"),
        ("SELECT throttle_stats_reset('nobody')".into(), "42704"),
        (format!("SELECT throttle_stats_reset('{long}')"), "42704"),
    ];
    for (sql, code) in &matrix {
        for (who, client) in [("superuser", &mut admin), ("throttle_admin", &mut boss)] {
            let err = client.batch_execute(sql).unwrap_err();
            let shown: String = sql.chars().take(80).collect();
            assert_eq!(sqlstate(&err), Some(*code), "{who}: {shown}: {err}");
            let message = err.as_db_error().map_or("", |e| e.message());
            assert!(
                message.len() < 300,
                "{who}: {shown}: message of {} bytes",
                message.len()
            );
        }
    }
    // Users outside throttle_admin may change nothing, not even their own row.
    let mut alice = cluster.connect_as("alice", "postgres");
    for sql in [
        "SELECT unthrottle_user('alice')",
        "SELECT throttle_user_query('alice', 1000000)",
        "SELECT throttle_user_count('alice', 'returned')",
        "SELECT throttle_stats_reset()",
        "SELECT throttle_store('alice', NULL, NULL, NULL)",
        "DELETE FROM throttlings",
        "SET pg_throttle.count = 'returned'",
        "SET pg_throttle.parallel_segment = '1'",
    ] {
        let err = alice.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err), Some("42501"), "{sql}: {err}");
    }
    assert_eq!(snapshot(&mut admin), before, "bad input changed something");
    // ... and alice is still throttled exactly as before: 200 rows at 400/s.
    assert_paced(
        "after bad input",
        seconds(&mut alice, "SELECT * FROM tbl"),
        0.5,
    );

    // The extremes that are valid are stored as given.
    boss.batch_execute("SELECT throttle_user_per_node_all('alice', 2147483647)")
        .unwrap();
    let stored: i32 = admin
        .query_one(
            "SELECT func_scan_throttle FROM throttlings WHERE username = 'alice'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, i32::MAX);
    boss.batch_execute("SELECT throttle_user_count('alice', 'examined')")
        .unwrap();
    let setting: String = admin
        .query_one(
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
             WHERE setrole = 'alice'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(setting, "pg_throttle.count=examined");
}

fn copy_out(client: &mut Client, sql: &str) -> (String, f64) {
    use std::io::Read;
    let start = Instant::now();
    let mut out = String::new();
    client
        .copy_out(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .read_to_string(&mut out)
        .unwrap();
    (out, start.elapsed().as_secs_f64())
}

/// `COPY table TO` reads its rows at the Seq Scan rate, writes exactly what
/// it writes unthrottled (columns, order, generated columns left out), and
/// fails as it would for what is not a plain table.
#[test]
fn copy_table_to_is_paced_and_writes_the_same() {
    let cluster = setup(Preload::Session);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE TABLE gen (a int, b int GENERATED ALWAYS AS (a * 2) STORED, c text);
             INSERT INTO gen (a, c) SELECT g, 'r' || g FROM generate_series(1, 100) g;
             ALTER TABLE gen DROP COLUMN c;
             ALTER TABLE gen ADD COLUMN d text DEFAULT 'd';
             CREATE VIEW v AS SELECT * FROM tbl;
             GRANT SELECT ON gen, v TO alice;
             SELECT throttle_user_per_node('alice', 100, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice", "postgres");
    for (sql, rows) in [
        ("COPY tbl TO STDOUT", 200.0),
        (
            "COPY tbl (value) TO STDOUT WITH (FORMAT csv, HEADER)",
            200.0,
        ),
        ("COPY gen TO STDOUT", 100.0),
        ("COPY gen (d, a) TO STDOUT", 100.0),
    ] {
        let (expected, _) = copy_out(&mut admin, sql);
        let (got, took) = copy_out(&mut alice, sql);
        assert_eq!(got, expected, "{sql}: not the same output");
        assert_paced(sql, took, rows / 100.0);
    }
    // Not a plain table: the same error as without throttling.
    let err = alice.copy_out("COPY v TO STDOUT").err().unwrap();
    let unthrottled = admin.copy_out("COPY v TO STDOUT").err().unwrap();
    assert_eq!(sqlstate(&err), sqlstate(&unthrottled), "{err}");
    assert_eq!(sqlstate(&err), Some("42809"), "{err}");
}
