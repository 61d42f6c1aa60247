//! pg_walrus in a real server: the worker really sees forced checkpoints
//! (from real WAL with max_wal_size = 32MB, or from CHECKPOINT requests where
//! only the count matters), really runs ALTER SYSTEM and reloads.
//!
//! `walrus.naptime_override_ms` (a documented testing GUC) makes intervals
//! last about a second instead of checkpoint_timeout (>= 30 s), so the whole
//! file runs in well under the CI budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, sqlstate, wait_for, write_wal_mb};
use postgres::fallible_iterator::FallibleIterator;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder()
        .shared_preload("pg_walrus")
        .setting("max_wal_size", "32MB")
        .setting("min_wal_size", "32MB")
        .setting("checkpoint_timeout", "30s")
        .setting("log_checkpoints", "on")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.min_size", "32MB")
        .setting("walrus.cooldown_sec", "0")
        .setting("walrus.max_changes_per_hour", "0")
        // Intervals of seconds scaled to checkpoint_timeout ask for tens of
        // GB, which a disk cap would cut to a size that depends on the
        // machine's free space; the cap has its own tests (pg_walrus_disk).
        .setting("walrus.max_wal_disk_fraction", "0");
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    let c = b.start();
    c.connect()
        .batch_execute("CREATE EXTENSION pg_walrus")
        .unwrap();
    c
}

fn max_wal_size_mb(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size'",
            &[],
        )
        .unwrap()
        .get(0)
}

fn count_rows(client: &mut Client, action: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM walrus.history WHERE action = $1",
            &[&action],
        )
        .unwrap()
        .get(0)
}

/// Wait until `history` has a row with `action`, running `drive` between looks.
fn wait_for_action(client: &mut Client, action: &str, mut drive: impl FnMut(&mut Client)) {
    let deadline = Instant::now() + WAIT;
    while count_rows(client, action) == 0 {
        if Instant::now() >= deadline {
            let last: String = client
                .query_one(
                    "SELECT coalesce(string_agg(format('%s %s->%s: %s', action, old_size_mb, new_size_mb, reason), E'\\n' ORDER BY id), 'none')
                     FROM (SELECT * FROM walrus.history ORDER BY id DESC LIMIT 5) h",
                    &[],
                )
                .unwrap()
                .get(0);
            let decision: String = client
                .query_one(
                    "SELECT coalesce(walrus.status()->>'last_decision', 'none')",
                    &[],
                )
                .unwrap()
                .get(0);
            panic!(
                "no '{action}' row within {WAIT:?}; last history rows:\n{last}\nlast decision: {decision}"
            );
        }
        drive(client);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The worker's pid, once it has published it.
fn worker_pid(client: &mut Client) -> i32 {
    let mut pid = 0;
    wait_for(WAIT, "the worker to start", || {
        pid = client
            .query_one(
                "SELECT coalesce((walrus.status()->'worker'->>'pid')::int, 0)",
                &[],
            )
            .unwrap()
            .get(0);
        pid > 0
    });
    pid
}

/// Full intervals the worker has evaluated so far.
fn intervals(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT (walrus.status()->'counters'->>'intervals')::bigint",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Waits until the worker has evaluated `n` more full intervals: a positive
/// signal that it looked, before asserting that it did not act.
fn wait_for_intervals(client: &mut Client, n: i64) {
    let start = intervals(client);
    wait_for(WAIT, &format!("{n} more intervals"), || {
        intervals(client) >= start + n
    });
}

fn checkpoints(client: &mut Client, n: usize) {
    for _ in 0..n {
        client.batch_execute("CHECKPOINT").unwrap();
    }
}

#[test]
fn wal_rate_grows_in_one_step_with_history_notify_and_log() {
    // Intervals of 3 s: on a loaded 2-core machine an 80 MB write and its
    // checkpoints can take longer than a second, which would spread the
    // forced checkpoints one per interval, under the threshold of 2.
    let c = cluster(&[
        ("walrus.max", "64GB"),
        ("walrus.naptime_override_ms", "3000"),
    ]);
    let mut client = c.connect();
    let mut listener = c.connect();
    listener.batch_execute("LISTEN walrus").unwrap();
    assert_eq!(max_wal_size_mb(&mut client), 32);

    wait_for_action(&mut client, "increase", |cl| write_wal_mb(cl, 80));

    let row = client
        .query_one(
            "SELECT old_size_mb, new_size_mb, forced_checkpoints, checkpoint_timeout_sec, reason,
                    (metadata->>'needed_size_mb')::bigint, metadata->>'algorithm'
             FROM walrus.history WHERE action = 'increase' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap();
    let (old, new, forced): (i32, i32, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(old, 32);
    assert!(forced >= 2, "threshold is 2, got {forced}");
    assert_eq!(row.get::<_, i32>(3), 30);
    assert_eq!(row.get::<_, String>(6), "wal_rate");
    // One step straight to the size the measured cycle needs.
    assert_eq!(i64::from(new), row.get::<_, i64>(5));
    assert!(new > 32);
    wait_for(WAIT, "the reload to apply the new size", || {
        max_wal_size_mb(&mut client) == i64::from(new)
    });
    // ALTER SYSTEM wrote it to postgresql.auto.conf.
    let auto: String = client
        .query_one("SELECT pg_read_file('postgresql.auto.conf')", &[])
        .unwrap()
        .get(0);
    assert!(
        auto.contains(&format!("max_wal_size = '{new}MB'")),
        "{auto}"
    );

    // The NOTIFY payload is JSON describing the decision.
    let payload = {
        let mut n = listener.notifications();
        let mut it = n.timeout_iter(Duration::from_secs(10));
        it.next()
            .unwrap()
            .expect("a walrus notification")
            .payload()
            .to_string()
    };
    let p = client
        .query_one(
            "SELECT j->>'action', (j->>'old_size_mb')::int, (j->>'new_size_mb')::int, j ? 'reason'
             FROM (SELECT $1::text::jsonb AS j) s",
            &[&payload],
        )
        .unwrap();
    assert_eq!(p.get::<_, String>(0), "increase");
    assert_eq!((p.get::<_, i32>(1), p.get::<_, i32>(2)), (32, new));
    assert!(p.get::<_, bool>(3));

    // The log says what the document shows.
    let log = c.log();
    assert!(log.contains("forced checkpoints over"), "{log}");
    assert!(log.contains("WAL request threshold (2) met, resizing max_wal_size"));
    assert!(log.contains(&format!("current max_wal_size is 32, should be {new}")));

    // status() and metrics() report it.
    let s = client
        .query_one(
            "SELECT (s->'counters'->>'increase')::int, s->'last_decision'->>'action', s->>'last_change' IS NOT NULL
             FROM walrus.status() s",
            &[],
        )
        .unwrap();
    assert!(s.get::<_, i32>(0) >= 1);
    assert!(s.get::<_, bool>(2));
    let metrics: String = client
        .query_one("SELECT walrus.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(
        metrics.contains(&format!(
            "walrus_max_wal_size_bytes {}",
            i64::from(new) * 1_048_576
        )),
        "{metrics}"
    );
    assert!(metrics.contains("walrus_decisions_total{action=\"increase\"}"));
}

#[test]
fn multiplicative_growth_is_capped_at_walrus_max() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.max", "64MB"),
        // As in the wal_rate test: intervals long enough to hold two forced
        // checkpoints of one write on a loaded machine.
        ("walrus.naptime_override_ms", "3000"),
    ]);
    let mut client = c.connect();
    wait_for_action(&mut client, "capped", |cl| write_wal_mb(cl, 64));
    let row = client
        .query_one(
            "SELECT old_size_mb, new_size_mb, forced_checkpoints, reason FROM walrus.history
             WHERE action = 'capped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (32, 64));
    // (forced + 1) x 32 MB would exceed the cap.
    assert!(32 * (row.get::<_, i64>(2) + 1) > 64);
    assert!(row.get::<_, String>(3).contains("walrus.max"));
    wait_for(WAIT, "max_wal_size at the cap", || {
        max_wal_size_mb(&mut client) == 64
    });
    // It never goes past the cap, however much more WAL comes: the worker
    // records that it is at the cap (capped, 64 -> 64) and stays there.
    wait_for(WAIT, "a decision at the cap", || {
        write_wal_mb(&mut client, 64);
        client
            .query_one(
                "SELECT count(*) FROM walrus.history
                 WHERE action = 'capped' AND old_size_mb = 64 AND new_size_mb = 64",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    assert_eq!(max_wal_size_mb(&mut client), 64);
    let over: i64 = client
        .query_one(
            "SELECT count(*) FROM walrus.history WHERE new_size_mb > 64",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(over, 0);
}

#[test]
fn shrinks_after_quiet_intervals_down_to_min_size() {
    let c = cluster(&[
        ("max_wal_size", "256MB"),
        ("walrus.algorithm", "multiplicative"),
        ("walrus.shrink_intervals", "2"),
        ("walrus.min_size", "150MB"),
    ]);
    let mut client = c.connect();
    wait_for(WAIT, "two decreases", || {
        count_rows(&mut client, "decrease") >= 2
    });
    let rows = client
        .query(
            "SELECT old_size_mb, new_size_mb FROM walrus.history WHERE action = 'decrease' ORDER BY id",
            &[],
        )
        .unwrap();
    let first = (rows[0].get::<_, i32>(0), rows[0].get::<_, i32>(1));
    assert_eq!(first, (256, 192), "256 x 0.75");
    let second = (rows[1].get::<_, i32>(0), rows[1].get::<_, i32>(1));
    assert_eq!(
        second,
        (192, 150),
        "192 x 0.75 = 144, floored at walrus.min_size"
    );
    wait_for(WAIT, "max_wal_size at min_size", || {
        max_wal_size_mb(&mut client) == 150
    });
    // At the floor: no further decrease over more than shrink_intervals.
    wait_for_intervals(&mut client, 4);
    assert_eq!(count_rows(&mut client, "decrease"), 2);
}

#[test]
fn dry_run_records_and_notifies_but_changes_nothing() {
    let c = cluster(&[
        ("walrus.dry_run", "on"),
        ("walrus.algorithm", "multiplicative"),
    ]);
    let mut client = c.connect();
    let mut listener = c.connect();
    listener.batch_execute("LISTEN walrus").unwrap();
    wait_for_action(&mut client, "dry_run", |cl| checkpoints(cl, 3));
    let row = client
        .query_one(
            "SELECT old_size_mb, new_size_mb, metadata->>'intended_action' FROM walrus.history
             WHERE action = 'dry_run' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 32);
    assert!(row.get::<_, i32>(1) > 32);
    assert_eq!(row.get::<_, String>(2), "increase");
    wait_for_intervals(&mut client, 2);
    assert_eq!(max_wal_size_mb(&mut client), 32);
    assert_eq!(count_rows(&mut client, "increase"), 0);
    let auto: String = client
        .query_one("SELECT pg_read_file('postgresql.auto.conf')", &[])
        .unwrap()
        .get(0);
    assert!(!auto.contains("max_wal_size"), "{auto}");
    let payload = {
        let mut n = listener.notifications();
        let mut it = n.timeout_iter(Duration::from_secs(10));
        it.next()
            .unwrap()
            .expect("a walrus notification")
            .payload()
            .to_string()
    };
    assert!(payload.contains("\"action\":\"dry_run\""), "{payload}");
}

#[test]
fn cooldown_skips_changes() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.cooldown_sec", "3600"),
        ("walrus.threshold", "1"),
    ]);
    let mut client = c.connect();
    wait_for_action(&mut client, "increase", |cl| checkpoints(cl, 2));
    wait_for(WAIT, "the first change applied", || {
        max_wal_size_mb(&mut client) > 32
    });
    let after_first = max_wal_size_mb(&mut client);
    wait_for_action(&mut client, "skipped", |cl| checkpoints(cl, 2));
    let reason: String = client
        .query_one(
            "SELECT reason FROM walrus.history WHERE action = 'skipped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.starts_with("cooldown"), "{reason}");
    assert_eq!(max_wal_size_mb(&mut client), after_first);
    assert_eq!(count_rows(&mut client, "increase"), 1);
}

#[test]
fn hourly_limit_skips_changes_over_the_window() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.max_changes_per_hour", "2"),
        ("walrus.threshold", "1"),
    ]);
    let mut client = c.connect();
    wait_for(WAIT, "two increases", || {
        checkpoints(&mut client, 1);
        std::thread::sleep(Duration::from_millis(300));
        count_rows(&mut client, "increase") >= 2
    });
    wait_for_action(&mut client, "skipped", |cl| checkpoints(cl, 1));
    let reason: String = client
        .query_one(
            "SELECT reason FROM walrus.history WHERE action = 'skipped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.starts_with("hourly limit"), "{reason}");
    assert_eq!(count_rows(&mut client, "increase"), 2);
    let last_new: i32 = client
        .query_one("SELECT new_size_mb FROM walrus.history WHERE action = 'increase' ORDER BY id DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    wait_for(WAIT, "size stays at the second change", || {
        max_wal_size_mb(&mut client) == i64::from(last_new)
    });
}

#[test]
fn refused_alter_system_is_recorded_as_skipped_and_the_worker_survives() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
    ]);
    // ALTER SYSTEM writes postgresql.auto.conf.tmp first: a directory in its
    // place makes every ALTER SYSTEM fail.
    std::fs::create_dir(c.data_dir().join("postgresql.auto.conf.tmp")).unwrap();
    let mut client = c.connect();
    let pid_before = worker_pid(&mut client);
    wait_for(WAIT, "two skipped decisions", || {
        checkpoints(&mut client, 2);
        std::thread::sleep(Duration::from_millis(300));
        count_rows(&mut client, "skipped") >= 2
    });
    let reason: String = client
        .query_one(
            "SELECT reason FROM walrus.history WHERE action = 'skipped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.starts_with("ALTER SYSTEM failed"), "{reason}");
    assert_eq!(max_wal_size_mb(&mut client), 32);
    let s = client
        .query_one(
            "SELECT (s->'worker'->>'pid')::int, (s->'counters'->>'alter_system_failures')::int FROM walrus.status() s",
            &[],
        )
        .unwrap();
    assert_eq!(
        s.get::<_, i32>(0),
        pid_before,
        "the worker was not restarted"
    );
    assert!(s.get::<_, i32>(1) >= 2);
    assert!(!c.log().contains("terminated by exit code"), "{}", c.log());
    // Once ALTER SYSTEM works again, so does the worker.
    std::fs::remove_dir(c.data_dir().join("postgresql.auto.conf.tmp")).unwrap();
    wait_for_action(&mut client, "increase", |cl| checkpoints(cl, 2));
}

#[test]
fn no_grow_on_a_stale_baseline_and_only_full_intervals_count() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
        ("walrus.enable", "off"),
        ("max_wal_size", "256MB"),
        ("walrus.shrink_intervals", "1"),
        // The reloads below take about 2 s: a 10 s interval leaves a margin
        // a loaded machine cannot eat.
        ("walrus.naptime_override_ms", "10000"),
    ]);
    let mut client = c.connect();
    // Forced checkpoints while disabled, visible in the statistics (the
    // checkpointer reports them just after CHECKPOINT returns)...
    checkpoints(&mut client, 5);
    wait_for(WAIT, "the checkpoints in the statistics", || {
        client
            .query_one(
                "SELECT (walrus.status()->'checkpoints'->>'requested')::bigint >= 5",
                &[],
            )
            .unwrap()
            .get(0)
    });
    client
        .batch_execute("ALTER SYSTEM SET walrus.enable = on")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    // ...and a burst of reloads (early wake-ups) right after enabling.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        c.reload();
    }
    // None of those wake-ups was a full interval: nothing evaluated yet.
    let intervals: i64 = client
        .query_one(
            "SELECT (walrus.status()->'counters'->>'intervals')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(intervals, 0, "reloads are not intervals");
    // The first full interval after enabling must not act on the checkpoints
    // made while disabled: it is quiet, so it shrinks (shrink_intervals = 1).
    wait_for(WAIT, "a first decision", || {
        client
            .query_one("SELECT count(*) FROM walrus.history", &[])
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    assert_eq!(count_rows(&mut client, "increase"), 0);
    assert_eq!(count_rows(&mut client, "decrease"), 1);
}

#[test]
fn restart_and_statistics_reset_take_a_new_baseline() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
        ("walrus.max", "64GB"),
        ("walrus.enable", "off"),
    ]);
    let mut client = c.connect();
    // Forced checkpoints before a restart survive in the statistics; the
    // restarted worker must not count them.
    checkpoints(&mut client, 3);
    c.restart();
    let mut client = c.connect();
    client
        .batch_execute("ALTER SYSTEM SET walrus.enable = on")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for_intervals(&mut client, 2);
    assert_eq!(
        count_rows(&mut client, "increase"),
        0,
        "no grow on counters from before the restart"
    );
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    let target = if version >= 170000 {
        "checkpointer"
    } else {
        "bgwriter"
    };
    client
        .execute("SELECT pg_stat_reset_shared($1)", &[&target])
        .unwrap();
    wait_for_intervals(&mut client, 2);
    assert_eq!(
        count_rows(&mut client, "increase"),
        0,
        "no grow across a statistics reset"
    );
    assert!(c.log().contains("pg_walrus worker started"));
    // Real forced checkpoints after that are still seen.
    wait_for_action(&mut client, "increase", |cl| checkpoints(cl, 2));
}

#[test]
fn worker_exits_on_postmaster_death() {
    let c = cluster(&[]);
    let mut client = c.connect();
    let pid = worker_pid(&mut client);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The worker is visible as such in pg_stat_activity.
    wait_for(WAIT, "the worker in pg_stat_activity", || {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND application_name = 'pg_walrus'",
                &[&pid],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    });
    drop(client);
    let pidfile = std::fs::read_to_string(c.data_dir().join("postmaster.pid")).unwrap();
    let postmaster = pidfile.lines().next().unwrap().trim().to_string();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &postmaster])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(Duration::from_secs(30), "the worker to exit", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

#[test]
fn manual_apply_needs_walrus_admin() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.naptime_override_ms", "600000"),
    ]);
    let mut su = c.connect();
    su.batch_execute(
        "CREATE ROLE watcher LOGIN IN ROLE walrus_monitor; CREATE ROLE operator LOGIN IN ROLE walrus_admin;",
    )
    .unwrap();
    // Forced checkpoints inside the worker's (long) interval.
    checkpoints(&mut su, 3);
    let mut watcher = c.connect_as("watcher", "postgres");
    let rec = watcher
        .query_one("SELECT walrus.recommendation()->>'action', (walrus.recommendation()->>'recommended_size_mb')::int", &[])
        .unwrap();
    assert_eq!(rec.get::<_, String>(0), "increase");
    let wanted = rec.get::<_, i32>(1);
    assert!(wanted > 32);
    let err = watcher
        .query_one("SELECT walrus.analyze(true)", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"));
    assert_eq!(max_wal_size_mb(&mut watcher), 32);
    let mut operator = c.connect_as("operator", "postgres");
    let applied: bool = operator
        .query_one(
            "SELECT (walrus.analyze(apply => true)->>'applied')::bool",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(applied);
    wait_for(WAIT, "the manual change", || {
        max_wal_size_mb(&mut su) == i64::from(wanted)
    });
    let origin: String = su
        .query_one(
            "SELECT metadata->>'origin' FROM walrus.history WHERE action = 'increase'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(origin, "analyze");
    // The operator is not a superuser and holds no other privilege.
    let err = operator
        .batch_execute("ALTER SYSTEM SET max_wal_size = '1GB'")
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"));
}

/// allow_alter_system exists from PostgreSQL 17; on older servers ALTER
/// SYSTEM cannot be switched off this way (the refused-write test above
/// covers the same code path there), and the test is reported as skipped.
#[test]
#[cfg_attr(
    any(pg_major = "15", pg_major = "16"),
    ignore = "allow_alter_system exists from PostgreSQL 17"
)]
fn allow_alter_system_off_is_recorded_as_skipped() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
        ("allow_alter_system", "off"),
    ]);
    let mut client = c.connect();
    let pid = worker_pid(&mut client);
    wait_for_action(&mut client, "skipped", |cl| checkpoints(cl, 2));
    let reason: String = client
        .query_one(
            "SELECT reason FROM walrus.history WHERE action = 'skipped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.starts_with("ALTER SYSTEM failed"), "{reason}");
    assert_eq!(max_wal_size_mb(&mut client), 32);
    assert_eq!(worker_pid(&mut client), pid, "the worker was not restarted");
}

#[test]
fn max_wal_size_on_the_command_line_is_recorded_as_skipped() {
    let c = cluster(&[
        ("walrus.algorithm", "multiplicative"),
        ("walrus.threshold", "1"),
    ]);
    c.restart_with_options("-c max_wal_size=32MB");
    let mut client = c.connect();
    let source: String = client
        .query_one(
            "SELECT source FROM pg_settings WHERE name = 'max_wal_size'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(source, "command line");
    let pid = worker_pid(&mut client);
    wait_for_action(&mut client, "skipped", |cl| checkpoints(cl, 2));
    let reason: String = client
        .query_one(
            "SELECT reason FROM walrus.history WHERE action = 'skipped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(reason.contains("command line"), "{reason}");
    // Nothing was written to postgresql.auto.conf, and the worker lives on.
    let auto: String = client
        .query_one("SELECT pg_read_file('postgresql.auto.conf')", &[])
        .unwrap()
        .get(0);
    assert!(!auto.contains("max_wal_size"), "{auto}");
    assert_eq!(worker_pid(&mut client), pid);
}
