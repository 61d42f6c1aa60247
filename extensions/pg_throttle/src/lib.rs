//! `pg_throttle`: caps the tuples per second that a user's queries read from
//! executor scan nodes. Loaded through `session_preload_libraries` (as
//! documented) or `shared_preload_libraries`.
//!
//! - `config`: the session user's configuration, read from `throttlings`
//!   without waiting for locks, and cached until invalidated.
//! - `exempt`: what is never throttled (background workers, our
//!   extensions' internal statements).
//! - `throttle`: one query: which nodes are wrapped, their buckets, the
//!   per-tuple pace, cleanup.
//! - `parallel`: one budget for a parallel query's leader and workers.
//! - `stats`: statistics and sleeping backends in shared memory.
//! - `guc`: the `pg_throttle.*` settings.
//! - `api`: SQL-callable Rust (store, statistics, metrics, waits, the
//!   invalidation trigger); the documented functions are SQL in
//!   `sql/api.sql`.
//! - `pg`: everything that talks to PostgreSQL through `unsafe` (hooks,
//!   wrappers, segment layout, shared memory); the rest of the crate may
//!   not use `unsafe`.
#![deny(unsafe_code)]
use pgrx::prelude::*;

mod api;
mod config;
mod exempt;
mod guc;
mod parallel;
#[allow(unsafe_code)]
mod pg;
mod stats;
mod throttle;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/throttlings.sql", name = "throttlings", bootstrap);
extension_sql_file!("../sql/api.sql", name = "api", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    pg::hooks::install();
    if pgsupport::guc::loading_shared_preload_libraries() {
        pg::shmem::install();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
#[allow(clippy::expect_used)] // test code: a failed expectation is a failed test
mod tests {
    use std::time::Instant;

    use governance::pacing::NodeKind;
    use pgrx::prelude::*;

    fn seconds(sql: &str) -> f64 {
        let start = Instant::now();
        Spi::run(sql).expect("query runs");
        start.elapsed().as_secs_f64()
    }

    fn texts(sql: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(sql, None, &[])
                .expect("query runs")
                .map(|row| row.get::<String>(1).expect("a value").expect("not null"))
                .collect()
        })
    }

    #[pg_test]
    fn throttlings_table_exists() {
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM throttlings");
        assert_eq!(rows, Ok(Some(0)));
    }

    /// The table's columns are the Rust list of node kinds, in order: adding
    /// a kind in one place and not the other fails here.
    #[pg_test]
    fn throttlings_columns_are_the_node_kinds() {
        let columns = texts(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = 'throttlings'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
        );
        let mut expected = vec!["username".to_string()];
        expected.extend(NodeKind::table_rate_columns());
        assert_eq!(columns, expected);
    }

    /// The documented function's arguments are the Rust list of node kinds.
    #[pg_test]
    fn throttle_user_per_node_arguments_are_the_node_kinds() {
        let arguments = texts(
            "SELECT unnest(proargnames) FROM pg_proc \
             WHERE proname = 'throttle_user_per_node' AND pronamespace = 'public'::regnamespace",
        );
        let mut expected = vec!["username".to_string()];
        expected.extend(NodeKind::ALL.iter().map(|k| k.argument()));
        assert_eq!(arguments, expected);
    }

    /// The session's own configuration is picked up by the next statement,
    /// even inside the same transaction, and applies to queries run through
    /// SPI (nested executors). 400 tuples at 400/s: at least 0.8 s (the
    /// pacing guarantees the lower bound; the upper one is wide).
    #[pg_test]
    fn throttles_the_session_user_from_the_next_statement() {
        let query = "SELECT count(*) FROM generate_series(1, 400)";
        let free = seconds(query);
        Spi::run("SELECT throttle_user_per_node_all(session_user::text, 400)").expect("configured");
        let took = seconds(query);
        assert!(
            (0.8..3.0).contains(&took),
            "400 tuples at 400/s took {took:.3}s"
        );
        assert!(
            free < took / 2.0,
            "unthrottled {free:.3}s, throttled {took:.3}s"
        );
        Spi::run("SELECT unthrottle_user(session_user::text)").expect("unthrottled");
        let again = seconds(query);
        assert!(again < took / 2.0, "after unthrottle_user: {again:.3}s");
    }

    /// A rate that only covers other node kinds leaves this one alone: 500
    /// tuples that would take 50 s at the Seq Scan rate.
    #[pg_test]
    fn other_node_kinds_are_not_throttled() {
        Spi::run(
            "SELECT throttle_user_per_node(session_user::text, 10, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .expect("configured");
        let took = seconds("SELECT count(*) FROM generate_series(1, 500)");
        assert!(took < 10.0, "took {took:.3}s");
    }

    #[pg_test(error = "role \"pg_throttle_no_such_role\" does not exist")]
    fn unknown_roles_are_refused() {
        Spi::run("SELECT throttle_user_query('pg_throttle_no_such_role', 10)").expect("refused");
    }

    #[pg_test(error = "invalid value for max: must be positive")]
    fn zero_rates_are_refused() {
        Spi::run("SELECT throttle_user_per_node_all(session_user::text, 0)").expect("refused");
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["session_preload_libraries = 'pg_throttle'"]
    }
}
