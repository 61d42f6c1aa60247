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
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn throttlings_table_exists() {
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM throttlings");
        assert_eq!(rows, Ok(Some(0)));
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
