//! `pg_wal_budget`: predicts each statement's WAL and admits, queues or rejects
//! it against per-scope budgets. Loaded through `shared_preload_libraries`.
//!
//! Module map: `guc` (settings), `shmem` (shared state), `hooks` (FFI hook
//! bodies), `flow` (a statement's path through admission and reconciliation),
//! `policies` (policy cache), `backend` (backend-local state), `profiles`
//! and `worker` (durable profiles), `wal` (FFI helpers), `unguarded`
//! (hot-path PostgreSQL functions called without pgrx's guard), `errors`,
//! `api` (SQL functions), `preload`.
use pgrx::prelude::*;

mod api;
mod backend;
mod errors;
mod flow;
mod guc;
mod hooks;
mod policies;
mod preload;
mod profiles;
mod shmem;
mod unguarded;
mod wal;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    preload::record_load();
    guc::init();
    if preload::is_preloaded() {
        shmem::init();
        hooks::init();
        worker::init();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
#[allow(clippy::unwrap_used)] // test code: a panic is a test failure
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn reports_preloaded_under_shared_preload_libraries() {
        let status = Spi::get_one::<String>("SELECT pwb.preload_status()");
        assert_eq!(status, Ok(Some("preloaded".to_string())));
    }

    #[pg_test]
    fn observe_policy_records_a_measured_decision() {
        Spi::run("CREATE TABLE pgt_observe (a int, b text)").unwrap();
        let id = Spi::get_one::<i32>(
            "SELECT pwb.create_policy('role', current_user, 1000000, 2000000, 'observe')",
        )
        .unwrap()
        .unwrap();
        Spi::run(
            "INSERT INTO pgt_observe SELECT g, repeat('x', 100) FROM generate_series(1, 100) g",
        )
        .unwrap();
        let (policy, actual) = Spi::get_two::<i32, i64>(
            "SELECT policy_id, actual_wal_bytes FROM pwb.recent_decisions(1)",
        )
        .unwrap();
        assert_eq!(policy, Some(id));
        assert!(actual.unwrap_or(0) > 0, "measured WAL: {actual:?}");
    }

    #[pg_test(error = "statement exceeds the WAL burst of its pg_wal_budget policy")]
    fn reject_mode_refuses_a_statement_larger_than_the_burst() {
        Spi::run("CREATE TABLE pgt_reject (a int)").unwrap();
        Spi::run("SELECT pwb.create_policy('role', current_user, 100, 100, 'reject')").unwrap();
        // Predicted at the 16kB class default, above the 100-byte burst.
        Spi::run("INSERT INTO pgt_reject VALUES (1)").unwrap();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_wal_budget'",
            "compute_query_id = on",
        ]
    }
}
