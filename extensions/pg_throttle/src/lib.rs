//! `pg_throttle`: caps the tuples per second that a user's queries read from
//! executor scan nodes. Loaded through `session_preload_libraries` (as
//! documented) or `shared_preload_libraries`.
//!
//! - `config`: the session user's configuration, read from `throttlings`
//!   and cached until invalidated.
//! - `hooks`: FFI only; ExecutorStart/End and transaction callbacks.
//! - `wrap`: wraps `PlanState->ExecProcNode` and paces tuples.
//! - `api`: SQL-callable Rust (the invalidation trigger); the documented
//!   functions are SQL in `sql/api.sql`.
use pgrx::prelude::*;

mod api;
mod config;
mod hooks;
mod wrap;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/throttlings.sql", name = "throttlings", bootstrap);
extension_sql_file!("../sql/api.sql", name = "api", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    hooks::install();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
#[allow(clippy::expect_used)] // test code: a failed expectation is a failed test
mod tests {
    use std::time::Instant;

    use pgrx::prelude::*;

    fn seconds(sql: &str) -> f64 {
        let start = Instant::now();
        Spi::run(sql).expect("query runs");
        start.elapsed().as_secs_f64()
    }

    #[pg_test]
    fn throttlings_table_exists() {
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM throttlings");
        assert_eq!(rows, Ok(Some(0)));
    }

    /// The session's own configuration is picked up by the next statement,
    /// even inside the same transaction, and applies to queries run through
    /// SPI (nested executors).
    #[pg_test]
    fn throttles_the_session_user_from_the_next_statement() {
        assert!(seconds("SELECT count(*) FROM generate_series(1, 200)") < 0.2);
        Spi::run("SELECT throttle_user_per_node_all(session_user::text, 400)").expect("configured");
        let took = seconds("SELECT count(*) FROM generate_series(1, 200)");
        assert!(
            (0.4..0.8).contains(&took),
            "200 tuples at 400/s took {took:.3}s"
        );
        Spi::run("SELECT unthrottle_user(session_user::text)").expect("unthrottled");
        assert!(seconds("SELECT count(*) FROM generate_series(1, 200)") < 0.2);
    }

    /// A rate that only covers other node kinds leaves this one alone.
    #[pg_test]
    fn other_node_kinds_are_not_throttled() {
        Spi::run(
            "SELECT throttle_user_per_node(session_user::text, 10, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .expect("configured");
        assert!(seconds("SELECT count(*) FROM generate_series(1, 500)") < 0.2);
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
