//! `pg_walrus`: a background worker that sizes `max_wal_size` so checkpoints
//! are not forced by WAL volume. Loaded through `shared_preload_libraries`.
//!
//! - `worker`: the background worker's loop: wakes every interval, feeds the
//!   counters to the sizer (`governance::sizing`), carries out decisions.
//! - `engine`: carrying out one decision: apply, log, record, announce.
//! - `stats`: the checkpointer counters and server settings sizing reads.
//! - `state`: what the worker publishes in shared memory.
//! - `guc`: every `walrus.*` setting.
//! - `api`: the SQL functions in schema `walrus`.
//! - `pg`: everything that talks to PostgreSQL through `unsafe` (shared
//!   memory registration, `ALTER SYSTEM`, the worker's entry point); the
//!   rest of the crate may not use `unsafe`.
#![deny(unsafe_code)]
use pgrx::prelude::*;

mod api;
mod disk;
mod engine;
mod guc;
mod metrics;
#[allow(unsafe_code)]
mod pg;
mod promotion;
mod state;
mod stats;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/history.sql", name = "history", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    if pgsupport::guc::loading_shared_preload_libraries() {
        pg::shmem::init();
        worker::register();
    }
}
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn history_table_exists_in_walrus_schema() {
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM walrus.history");
        assert_eq!(rows, Ok(Some(0)));
    }

    #[pg_test]
    fn status_reports_the_preloaded_worker_and_current_size() {
        let loaded = Spi::get_one::<bool>("SELECT (walrus.status()->>'loaded')::bool");
        assert_eq!(loaded, Ok(Some(true)));
        let same = Spi::get_one::<bool>(
            "SELECT (walrus.status()->>'current_size_mb')::bigint = \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size')",
        );
        assert_eq!(same, Ok(Some(true)));
    }

    #[pg_test]
    fn recommendation_has_the_documented_keys() {
        let ok = Spi::get_one::<bool>(
            "SELECT walrus.recommendation() ?& \
             ARRAY['current_size_mb','recommended_size_mb','action','reason','confidence']",
        );
        assert_eq!(ok, Ok(Some(true)));
    }

    #[pg_test]
    fn metrics_expose_the_current_size_in_bytes() {
        let ok = Spi::get_one::<bool>(
            "SELECT walrus.metrics() LIKE '%walrus_max_wal_size_bytes ' || \
             (SELECT setting::bigint * 1048576 FROM pg_settings WHERE name = 'max_wal_size') || '%'",
        );
        assert_eq!(ok, Ok(Some(true)));
    }

    #[pg_test]
    fn cleanup_history_deletes_only_expired_rows() {
        let inserted = Spi::run(
            "INSERT INTO walrus.history (timestamp, action, old_size_mb, new_size_mb, \
             forced_checkpoints, checkpoint_timeout_sec) VALUES \
             (now() - interval '8 days', 'increase', 1, 2, 2, 300), (now(), 'decrease', 2, 1, 0, 300)",
        );
        assert!(inserted.is_ok(), "{inserted:?}");
        assert_eq!(
            Spi::get_one::<i64>("SELECT walrus.cleanup_history()"),
            Ok(Some(1))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM walrus.history"),
            Ok(Some(1))
        );
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_walrus'"]
    }
}
