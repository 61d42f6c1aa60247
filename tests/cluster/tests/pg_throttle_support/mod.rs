//! Helpers shared by the pg_throttle cluster test files.
//!
//! Timing assertions follow one rule: a throttled statement takes at least
//! 80 % of its ideal duration (pacing guarantees that on any machine) and at
//! most 3 times it (a generous ceiling for a loaded 2-core machine); a
//! statement that must *not* be throttled is checked against a rate at which
//! wrongful throttling would take at least several seconds, never against a
//! sub-second wall-clock budget.
#![allow(dead_code)]

use std::time::Instant;

use cluster_tests::{Client, Cluster};

/// Seconds a statement takes.
pub fn seconds(client: &mut Client, sql: &str) -> f64 {
    let start = Instant::now();
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    start.elapsed().as_secs_f64()
}

/// Asserts a throttled duration: at least 80 % of `ideal`, at most 3 times it.
pub fn assert_paced(what: &str, took: f64, ideal: f64) {
    assert!(
        took >= ideal * 0.8 && took <= ideal * 3.0,
        "{what}: took {took:.3}s, ideal {ideal:.3}s (allowed {:.3}..{:.3}s)",
        ideal * 0.8,
        ideal * 3.0
    );
}

/// Asserts a statement was not throttled: it took less than half of
/// `throttled`, the duration throttling would have imposed.
pub fn assert_unthrottled(what: &str, took: f64, throttled: f64) {
    assert!(
        took < throttled / 2.0,
        "{what}: took {took:.3}s; throttled it would take {throttled:.1}s"
    );
}

/// The lines of a query's output, joined (EXPLAIN).
pub fn lines(client: &mut Client, sql: &str) -> String {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The plan of `sql` as text (to check a test exercises the node it means).
pub fn plan(client: &mut Client, sql: &str) -> String {
    lines(client, &format!("EXPLAIN (COSTS OFF) {sql}"))
}

/// EXPLAIN ANALYZE of `sql` without timings.
pub fn explain_analyze(client: &mut Client, sql: &str) -> String {
    lines(
        client,
        &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"),
    )
}

/// Whether EXPLAIN ANALYZE text shows `rows=<rows> loops=<loops>`
/// (PostgreSQL 18 prints row counts with two decimals).
pub fn has_rows(text: &str, rows: &str, loops: &str) -> bool {
    text.contains(&format!("rows={rows} loops={loops}"))
        || text.contains(&format!("rows={rows}.00 loops={loops}"))
}

/// How pg_throttle is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preload {
    Session,
    Shared,
}

/// A cluster with pg_throttle preloaded, the extension created, a role
/// `alice` to throttle, an admin `boss` (member of throttle_admin) and
/// tables: `tbl` (200 rows), `big` (20,000 rows, primary key), `sink`.
/// Dynamic shared memory segments are files in `pg_dynshmem`, so tests can
/// count them.
pub fn setup(preload: Preload) -> Cluster {
    setup_with(preload, &[])
}

/// [`setup`] with extra settings.
pub fn setup_with(preload: Preload, settings: &[(&str, &str)]) -> Cluster {
    let mut builder = Cluster::builder().setting("dynamic_shared_memory_type", "mmap");
    builder = match preload {
        Preload::Shared => builder.shared_preload("pg_throttle"),
        Preload::Session => builder.session_preload("pg_throttle"),
    };
    for (name, value) in settings {
        builder = builder.setting(name, value);
    }
    let cluster = builder.start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_throttle;
             CREATE ROLE alice LOGIN;
             CREATE ROLE boss LOGIN IN ROLE throttle_admin;
             CREATE TABLE tbl(value int);
             INSERT INTO tbl SELECT * FROM generate_series(1, 200);
             CREATE TABLE big(id int PRIMARY KEY, pad text);
             INSERT INTO big SELECT g, 'x' FROM generate_series(1, 20000) g;
             CREATE TABLE sink(id int);
             GRANT SELECT ON tbl, big TO alice;
             GRANT SELECT, INSERT, UPDATE, DELETE ON sink TO alice;",
        )
        .unwrap();
    admin.batch_execute("VACUUM ANALYZE big, tbl").unwrap();
    cluster
}

/// Makes `client`'s next queries use `workers` parallel workers per Gather
/// whenever possible.
pub fn force_parallel(client: &mut Client, workers: u32) {
    client
        .batch_execute(&format!(
            "SET max_parallel_workers_per_gather = {workers}; SET parallel_setup_cost = 0;
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
             SET parallel_leader_participation = on"
        ))
        .unwrap();
}

/// How many dynamic shared memory segments exist (files in pg_dynshmem;
/// the cluster must use `dynamic_shared_memory_type = mmap`).
pub fn dsm_segments(cluster: &Cluster) -> usize {
    std::fs::read_dir(cluster.data_dir().join("pg_dynshmem"))
        .map(|dir| dir.filter_map(Result::ok).count())
        .unwrap_or(0)
}

/// How many dynamic shared memory segments of less than 1 kB exist: the
/// size of pg_throttle's segments (a header and a few dozen bytes per
/// throttled plan node); PostgreSQL's own are far larger.
pub fn small_dsm_segments(cluster: &Cluster) -> usize {
    std::fs::read_dir(cluster.data_dir().join("pg_dynshmem"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() < 1024))
                .count()
        })
        .unwrap_or(0)
}

/// The pid of `client`'s backend.
pub fn pid(client: &mut Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// Parallel workers alive now.
pub fn parallel_workers(admin: &mut Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'",
            &[],
        )
        .unwrap()
        .get(0)
}
