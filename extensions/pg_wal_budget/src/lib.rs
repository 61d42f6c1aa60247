//! `pg_wal_budget`: predicts each statement's WAL and admits, queues or rejects
//! it against per-scope budgets. Loaded through `shared_preload_libraries`.
//!
//! A statement's path, top to bottom: `pg::hooks` (the executor, utility and
//! transaction hooks) → `admission` (resolve → predict → decide → record,
//! before it runs) → `settlement` (measure → reconcile → learn, after).
//! Along the way: `resolution` (scopes and the governing policy),
//! `prediction` (profiles), `decision` (the decision rows), `policies` (the
//! policy cache), `session` (this backend's state), `types` (what a
//! statement carries). Around it: `guc` (settings), `errors`, `api` (SQL
//! functions), `profiles` and `worker` (durable profiles). `pg` holds the
//! FFI and is the only module allowed `unsafe`.
#![deny(unsafe_code)]
use pgrx::prelude::*;

mod admission;
mod api;
mod decision;
mod errors;
mod feedback;
mod guc;
mod metrics;
mod pacing;
#[allow(unsafe_code)]
mod pg;
mod policies;
mod prediction;
mod profiles;
mod queue;
mod resolution;
mod session;
mod settlement;
mod types;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = pgsupport::guc::loading_shared_preload_libraries();
    guc::init(preloading);
    if preloading {
        pg::shmem::init();
        pg::hooks::init();
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
