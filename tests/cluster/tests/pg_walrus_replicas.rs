//! pg_walrus on streaming standbys and across promotion, with real
//! replication (`pg_basebackup -R -X stream`, physical slots), real WAL
//! replayed, real restartpoints and a real `pg_ctl promote`.
//!
//! Intervals last about a second (`walrus.naptime_override_ms`, a documented
//! testing GUC) with `checkpoint_timeout = 30s`, as in `pg_walrus.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_tests::{Client, Cluster, REPLICATION_WAIT, sqlstate, wait_for, write_wal_mb};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// A primary with pg_walrus preloaded and created (its own settings in
/// `settings`); standbys inherit its configuration.
fn primary(settings: &[(&str, &str)]) -> Cluster {
    let mut b = Cluster::builder()
        .shared_preload("pg_walrus")
        .setting("checkpoint_timeout", "30s")
        .setting("log_checkpoints", "on")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.cooldown_sec", "0")
        .setting("walrus.max_changes_per_hour", "0")
        // One-second intervals scaled to 30 s ask for sizes a disk cap
        // would cut; the cap has its own tests.
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

fn status_text(client: &mut Client, path: &str) -> Option<String> {
    client
        .query_one(&format!("SELECT walrus.status() #>> '{{{path}}}'"), &[])
        .unwrap()
        .get(0)
}

fn wait_for_worker_state(client: &mut Client, state: &str) {
    wait_for(WAIT, &format!("worker state {state}"), || {
        status_text(client, "worker,state").as_deref() == Some(state)
    });
}

/// Every function a monitoring user calls answers on a standby, read-only,
/// and says the server is a standby; the functions that write refuse with
/// SQLSTATE 25006 and change nothing.
#[test]
fn every_reading_function_works_on_a_standby_and_says_so() {
    let p = primary(&[]);
    let s = p.start_standby("walrus_standby");
    let mut su = s.connect();
    wait_for_worker_state(&mut su, "standby");
    p.connect()
        .batch_execute("CREATE ROLE watcher LOGIN IN ROLE walrus_monitor")
        .unwrap();
    p.wait_for_replay(&s, REPLICATION_WAIT);
    let mut watcher = s.connect_as("watcher", "postgres");
    let row = watcher
        .query_one(
            "SELECT (st->>'in_recovery')::bool, st->>'server_role', (st->>'worker_running')::bool,
                    st ? 'restartpoints', st ? 'current_max_wal_size_mb',
                    r->>'server_role', r ? 'recommended_size_mb',
                    (a->>'analyzed')::bool, a->'recommendation' ? 'action', (a->>'applied')::bool,
                    a->>'server_role'
             FROM walrus.status() st, walrus.recommendation() r, walrus.analyze(false) a",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "standby");
    assert!(row.get::<_, bool>(2), "the worker runs on the standby");
    assert!(row.get::<_, bool>(3) && row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "standby");
    assert!(row.get::<_, bool>(6));
    assert!(row.get::<_, bool>(7) && row.get::<_, bool>(8));
    assert!(!row.get::<_, bool>(9));
    assert_eq!(row.get::<_, String>(10), "standby");
    let history: i64 = watcher
        .query_one(
            "SELECT (SELECT count(*) FROM walrus.history()) + (SELECT count(*) FROM walrus.pending_history())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(history, 0);
    let metrics: String = watcher
        .query_one("SELECT walrus.metrics()", &[])
        .unwrap()
        .get(0);
    assert!(metrics.contains("\nwalrus_in_recovery 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nwalrus_restartpoints_requested_total "),
        "{metrics}"
    );
    assert!(metrics.contains("\nwalrus_worker_up 1\n"), "{metrics}");
    // Read-only: the same calls inside a transaction on the primary assign
    // no transaction id (on a standby assigning one is an error).
    let mut on_primary = p.connect();
    let mut tx = on_primary.transaction().unwrap();
    tx.batch_execute(
        "SELECT walrus.status(), walrus.recommendation(), walrus.analyze(false), walrus.metrics();
         SELECT count(*) FROM walrus.history(); SELECT count(*) FROM walrus.pending_history()",
    )
    .unwrap();
    let unassigned: bool = tx
        .query_one("SELECT pg_current_xact_id_if_assigned() IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(unassigned, "a reading function assigned a transaction id");
    tx.commit().unwrap();

    // Writes refuse on a standby, before changing anything.
    let mut admin = s.connect();
    let before: String = admin
        .query_one("SELECT walrus.status()->>'counters'", &[])
        .unwrap()
        .get(0);
    for sql in [
        "SELECT walrus.cleanup_history()",
        "SELECT walrus.reset(clear_history => true)",
    ] {
        let err = admin.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err), Some("25006"), "{sql}: {err}");
        let msg = err.as_db_error().unwrap();
        assert!(msg.message().contains("on a standby"), "{msg:?}");
        assert_eq!(msg.hint(), Some("Run it on the primary."));
    }
    let after: String = admin
        .query_one("SELECT walrus.status()->>'counters'", &[])
        .unwrap()
        .get(0);
    assert_eq!(before, after);
    // reset() without clearing the history works there (shared memory only).
    let reset: bool = admin
        .query_one("SELECT walrus.reset()", &[])
        .unwrap()
        .get(0);
    assert!(reset);
    assert!(
        !s.log().contains("cannot assign TransactionIds"),
        "{}",
        s.log()
    );
}

/// A standby whose max_wal_size is too small for the replayed WAL sees
/// forced restartpoints and grows its own max_wal_size with ALTER SYSTEM
/// there; the primary is left alone, the decision is kept in shared memory
/// (pending_history(), history(), status()) and logged.
#[test]
fn a_standby_sizes_itself_for_restartpoints() {
    // The primary keeps 1GB and pg_walrus off: it checkpoints on time.
    let p = primary(&[("max_wal_size", "1GB"), ("walrus.enable", "off")]);
    let s = p.start_standby_with(
        "sizing",
        &[
            ("max_wal_size", "32MB"),
            ("min_wal_size", "32MB"),
            ("walrus.enable", "on"),
            ("walrus.min_size", "32MB"),
            ("walrus.max", "64GB"),
        ],
    );
    let mut standby = s.connect();
    assert_eq!(max_wal_size_mb(&mut standby), 32);
    wait_for_worker_state(&mut standby, "standby");
    let mut writer = p.connect();
    wait_for(WAIT, "a standby decision", || {
        write_wal_mb(&mut writer, 48);
        p.wait_for_replay(&s, REPLICATION_WAIT);
        standby
            .query_one("SELECT count(*) FROM walrus.pending_history()", &[])
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    let row = standby
        .query_one(
            "SELECT action, old_size_mb, new_size_mb, forced_checkpoints, reason,
                    metadata->>'server_role', metadata->>'origin'
             FROM walrus.pending_history() ORDER BY timestamp LIMIT 1",
            &[],
        )
        .unwrap();
    let action: String = row.get(0);
    let (old, new): (i32, i32) = (row.get(1), row.get(2));
    assert_eq!(action, "increase", "{:?}", row.get::<_, String>(4));
    assert_eq!(old, 32);
    assert!(new > 32);
    assert!(row.get::<_, i64>(3) >= 2, "threshold 2");
    let reason: String = row.get(4);
    assert!(reason.contains("forced restartpoints"), "{reason}");
    assert_eq!(row.get::<_, String>(5), "standby");
    assert_eq!(row.get::<_, String>(6), "worker");
    // Applied on the standby: postgresql.auto.conf there, and the reload.
    wait_for(WAIT, "the standby to use its new size", || {
        max_wal_size_mb(&mut standby) == i64::from(new)
    });
    let auto: String = standby
        .query_one("SELECT pg_read_file('postgresql.auto.conf')", &[])
        .unwrap()
        .get(0);
    assert!(
        auto.contains(&format!("max_wal_size = '{new}MB'")),
        "{auto}"
    );
    // The primary is untouched and has no history row.
    let mut on_primary = p.connect();
    assert_eq!(max_wal_size_mb(&mut on_primary), 1024);
    let rows: i64 = on_primary
        .query_one("SELECT count(*) FROM walrus.history", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    // history() on the standby includes its own decisions; status() shows them.
    let listed: i64 = standby
        .query_one(
            "SELECT count(*) FROM walrus.history() WHERE new_size_mb = $1",
            &[&new],
        )
        .unwrap()
        .get(0);
    assert!(listed >= 1);
    let st = standby
        .query_one(
            "SELECT (s->'standby'->>'pending_decisions')::int, s->'last_decision'->>'server_role',
                    (s->>'total_adjustments')::int
             FROM walrus.status() s",
            &[],
        )
        .unwrap();
    assert!(st.get::<_, i32>(0) >= 1);
    assert_eq!(st.get::<_, String>(1), "standby");
    assert!(st.get::<_, i32>(2) >= 1);
    let log = s.log();
    assert!(log.contains("forced restartpoints over"), "{log}");
    assert!(log.contains(&format!("current max_wal_size is 32, should be {new}")));
    assert!(log.contains("standby decision kept for walrus.history until promotion"));
}

/// After promotion the worker writes the decisions it made as a standby to
/// walrus.history (with their own time and server_role "standby") and
/// keeps its own size when it is newer than the old primary's last
/// decision.
#[test]
fn promotion_writes_the_standby_decisions_to_history() {
    let p = primary(&[("max_wal_size", "1GB"), ("walrus.enable", "off")]);
    let s = p.start_standby_with(
        "promoted",
        &[
            ("max_wal_size", "32MB"),
            ("min_wal_size", "32MB"),
            ("walrus.enable", "on"),
            ("walrus.min_size", "32MB"),
            ("walrus.max", "64GB"),
            ("walrus.shrink_enable", "off"),
        ],
    );
    let mut standby = s.connect();
    wait_for_worker_state(&mut standby, "standby");
    let mut writer = p.connect();
    wait_for(WAIT, "a standby decision", || {
        write_wal_mb(&mut writer, 48);
        p.wait_for_replay(&s, REPLICATION_WAIT);
        standby
            .query_one(
                "SELECT count(*) FROM walrus.pending_history() WHERE action = 'increase'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    let (pending_before, own_size): (i64, i32) = {
        let r = standby
            .query_one(
                "SELECT (SELECT count(*) FROM walrus.pending_history()),
                        (SELECT new_size_mb FROM walrus.pending_history()
                         WHERE action = 'increase' ORDER BY timestamp DESC LIMIT 1)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    wait_for(WAIT, "the standby to use its own size", || {
        max_wal_size_mb(&mut standby) == i64::from(own_size)
    });
    drop(writer);
    s.promote();
    let mut promoted = s.connect();
    wait_for(WAIT, "the standby decisions in walrus.history", || {
        promoted
            .query_one(
                "SELECT count(*) FROM walrus.history WHERE metadata->>'server_role' = 'standby'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            >= pending_before
    });
    let row = promoted
        .query_one(
            "SELECT (SELECT count(*) FROM walrus.pending_history()),
                    (s->'standby'->>'promotions')::int, s->>'server_role',
                    (SELECT count(*) FROM walrus.history WHERE metadata->>'origin' = 'promotion')
             FROM walrus.status() s",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "nothing left pending");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_eq!(row.get::<_, String>(2), "primary");
    assert_eq!(
        row.get::<_, i64>(3),
        0,
        "its own size was the newest: nothing to carry over"
    );
    // The rows keep the time they were decided at (before the promotion).
    let early: bool = promoted
        .query_one(
            "SELECT max(timestamp) < (SELECT (walrus.status()->'standby'->>'last_promotion')::timestamptz)
             FROM walrus.history WHERE metadata->>'server_role' = 'standby'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(early);
    assert_eq!(max_wal_size_mb(&mut promoted), i64::from(own_size));
    wait_for_worker_state(&mut promoted, "running");
    assert!(
        s.log().contains("pg_walrus: server promoted"),
        "{}",
        s.log()
    );
}

/// When the old primary's last applied decision (replicated in
/// walrus.history) is newer than anything the standby decided, the promoted
/// standby starts from that size at once.
#[test]
fn promotion_carries_over_the_old_primary_size() {
    // No shrink: the primary's last decision is its last increase. One
    // forced checkpoint per (one-second) interval is enough to grow: on a
    // busy machine a 48 MB write can take longer than an interval.
    let p = primary(&[
        ("max_wal_size", "32MB"),
        ("min_wal_size", "32MB"),
        ("walrus.min_size", "32MB"),
        ("walrus.max", "64GB"),
        ("walrus.shrink_enable", "off"),
        ("walrus.threshold", "1"),
    ]);
    // The standby's copy is taken before the load; it takes no decision of
    // its own (off while the load runs). pg_basebackup copies the primary's
    // postgresql.auto.conf: the standby starts with whatever size the
    // primary had then (a decision can come from the base backup's own
    // checkpoint), and keeps it while the primary changes its own.
    let s = p.start_standby_with("carry", &[("walrus.enable", "off")]);
    let mut standby = s.connect();
    let initial = max_wal_size_mb(&mut standby);
    let mut writer = p.connect();
    let mut grown: i32 = 0;
    wait_for(WAIT, "the primary to grow past the standby's size", || {
        write_wal_mb(&mut writer, 48);
        grown = writer
            .query_one(
                "SELECT coalesce((SELECT new_size_mb FROM walrus.history WHERE action = 'increase'
                                  ORDER BY id DESC LIMIT 1), 0)",
                &[],
            )
            .unwrap()
            .get(0);
        i64::from(grown) > initial
    });
    p.wait_for_replay(&s, REPLICATION_WAIT);
    assert_eq!(
        max_wal_size_mb(&mut standby),
        initial,
        "ALTER SYSTEM is not replicated"
    );
    standby
        .batch_execute("ALTER SYSTEM SET walrus.enable = on")
        .unwrap();
    standby.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for_worker_state(&mut standby, "standby");
    drop(writer);
    s.promote();
    let mut promoted = s.connect();
    // The size is applied (ALTER SYSTEM, reload) before the history row
    // is written: wait for both.
    wait_for(WAIT, "the carried-over size and its history row", || {
        max_wal_size_mb(&mut promoted) == i64::from(grown)
            && promoted
                .query_one(
                    "SELECT count(*) FROM walrus.history WHERE metadata->>'origin' = 'promotion'",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                > 0
    });
    let row = promoted
        .query_one(
            "SELECT action, old_size_mb, new_size_mb, reason, metadata->>'server_role'
             FROM walrus.history WHERE metadata->>'origin' = 'promotion'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "increase");
    assert_eq!(
        (i64::from(row.get::<_, i32>(1)), row.get::<_, i32>(2)),
        (initial, grown)
    );
    let reason: String = row.get(3);
    assert!(
        reason.contains("the old primary's last decision"),
        "{reason}"
    );
    assert_eq!(row.get::<_, String>(4), "primary");
    let auto: String = promoted
        .query_one("SELECT pg_read_file('postgresql.auto.conf')", &[])
        .unwrap()
        .get(0);
    assert!(
        auto.contains(&format!("max_wal_size = '{grown}MB'")),
        "{auto}"
    );
}
