//! pg_throttle on a streaming hot standby: the configuration is a table,
//! replicated like any other, and read-only queries on the standby are
//! throttled exactly as on the primary (serial and parallel, live
//! reconfiguration included: the relcache invalidation that tells sessions
//! to re-read it is replayed on the standby too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg_throttle_support;

use cluster_tests::{REPLICATION_WAIT, sqlstate};
use pg_throttle_support::{
    Preload, assert_paced, assert_unthrottled, force_parallel, seconds, setup_with,
};

#[test]
fn throttling_applies_on_a_hot_standby() {
    let primary = setup_with(Preload::Shared, &[]);
    let mut admin = primary.connect();
    admin
        .batch_execute(
            "CREATE TABLE par AS SELECT g AS id FROM generate_series(1, 3000) g;
             ALTER TABLE par SET (parallel_workers = 2);
             GRANT SELECT ON par TO alice;
             SELECT throttle_user_per_node_all('alice', 100);",
        )
        .unwrap();
    let standby = primary.start_standby("throttle_standby");
    primary.wait_for_replay(&standby, REPLICATION_WAIT);
    assert!(standby.in_recovery());

    // The document's Getting started example, on the standby: 2 s.
    let mut alice = standby.connect_as("alice", "postgres");
    assert_paced(
        "on the standby",
        seconds(&mut alice, "SELECT * FROM tbl"),
        2.0,
    );

    // A change on the primary reaches the standby's open session at its
    // next statement, once replayed.
    admin
        .batch_execute("SELECT throttle_user_query('alice', 1000)")
        .unwrap();
    primary.wait_for_replay(&standby, REPLICATION_WAIT);
    // 3000 rows at 1000/s, leader and two workers sharing the budget: 3 s.
    force_parallel(&mut alice, 2);
    assert_paced(
        "parallel on the standby",
        seconds(&mut alice, "SELECT count(*) FROM par"),
        3.0,
    );
    admin
        .batch_execute("SELECT unthrottle_user('alice')")
        .unwrap();
    primary.wait_for_replay(&standby, REPLICATION_WAIT);
    assert_unthrottled(
        "unthrottled on the primary, then on the standby",
        seconds(&mut alice, "SELECT count(*) FROM par"),
        3.0,
    );

    // Statistics are the standby's own; changing the configuration there is
    // refused as any write is.
    let mut standby_admin = standby.connect();
    let statements: i64 = standby_admin
        .query_one(
            "SELECT statements FROM throttle_stats WHERE username = 'alice'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(statements, 2);
    for sql in [
        "SELECT throttle_user_query('alice', 5)",
        "SELECT throttle_user_per_node_all('alice', 5)",
        "SELECT unthrottle_user('alice')",
        "SELECT throttle_user_count('alice', 'examined')",
    ] {
        let err = standby_admin.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err), Some("25006"), "{sql}: {err}");
    }
    // Monitoring works there too.
    standby_admin
        .batch_execute("SELECT throttle_stats_reset('alice'); SELECT throttle_metrics()")
        .unwrap();
}
