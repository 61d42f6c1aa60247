//! pg_throttle together with pg_wal_budget, both in shared_preload_libraries,
//! in either order: both load, their executor hooks chain (each calls the
//! one installed before it), pg_throttle still throttles exactly, and writes
//! (which pg_wal_budget accounts) still work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use cluster_tests::Cluster;

fn check_order(first: &str, second: &str) {
    let cluster = Cluster::builder()
        .shared_preload(first)
        .shared_preload(second)
        .setting("compute_query_id", "on")
        .start();
    let mut admin = cluster.connect();
    let preload: String = admin
        .query_one("SHOW shared_preload_libraries", &[])
        .unwrap()
        .get(0);
    assert_eq!(preload, format!("{first},{second}"));
    admin
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE EXTENSION pg_throttle;
             CREATE ROLE alice LOGIN;
             CREATE TABLE tbl(value int);
             INSERT INTO tbl SELECT * FROM generate_series(1, 200);
             GRANT SELECT, INSERT, UPDATE, DELETE ON tbl TO alice;
             SELECT throttle_user_per_node_all('alice', 400);",
        )
        .unwrap();
    let installed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname IN ('pg_wal_budget', 'pg_throttle')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(installed, 2, "{first},{second}: both extensions create");

    let mut alice = cluster.connect_as("alice", "postgres");
    // Reads are throttled: 200 rows at 400/s, about half a second.
    let start = Instant::now();
    let rows = alice.query("SELECT * FROM tbl", &[]).unwrap();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(rows.len(), 200);
    assert!(
        (0.4..=0.8).contains(&took),
        "{first},{second}: 200 rows at 400/s took {took:.3}s"
    );
    // Writes go through both extensions' hooks and land.
    alice
        .batch_execute(
            "INSERT INTO tbl SELECT * FROM generate_series(201, 300);
             UPDATE tbl SET value = value + 1 WHERE value > 250;
             DELETE FROM tbl WHERE value > 290;",
        )
        .unwrap();
    let returned = alice
        .query("INSERT INTO tbl VALUES (1000), (1001) RETURNING value", &[])
        .unwrap();
    assert_eq!(returned.len(), 2);
    let count: i64 = admin
        .query_one("SELECT count(*) FROM tbl", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 200 + 100 - 11 + 2);
    // The admin (not throttled) is fast through the same hook chain.
    let start = Instant::now();
    admin.batch_execute("SELECT * FROM tbl").unwrap();
    assert!(start.elapsed().as_secs_f64() < 0.3);
}

#[test]
fn pg_throttle_after_pg_wal_budget() {
    check_order("pg_wal_budget", "pg_throttle");
}

#[test]
fn pg_throttle_before_pg_wal_budget() {
    check_order("pg_throttle", "pg_wal_budget");
}
