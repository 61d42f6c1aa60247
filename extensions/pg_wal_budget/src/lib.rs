//! `pg_wal_budget`: predicts each statement's WAL and admits, queues or rejects
//! it against per-scope budgets. Loaded through `shared_preload_libraries`.
//!
//! Module map: `guc` (settings), `shmem` (shared state), `hooks` (FFI hook
//! bodies), `flow` (a statement's path through admission and reconciliation),
//! `policies` (policy cache), `backend` (backend-local state), `profiles`
//! and `worker` (durable profiles), `wal` (FFI helpers), `errors`, `api`
//! (SQL functions), `preload`.
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
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn reports_preloaded_under_shared_preload_libraries() {
        let status = Spi::get_one::<String>("SELECT pwb.preload_status()");
        assert_eq!(status, Ok(Some("preloaded".to_string())));
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
