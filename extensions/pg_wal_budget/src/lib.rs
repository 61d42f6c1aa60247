//! `pg_wal_budget`: predicts each statement's WAL and admits, queues or rejects
//! it against per-scope budgets. Loaded through `shared_preload_libraries`.
//!
//! Module map: `preload` (how we were loaded), `api` (SQL functions).
use pgrx::prelude::*;

mod api;
mod preload;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    preload::record_load();
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
        vec!["shared_preload_libraries = 'pg_wal_budget'"]
    }
}
