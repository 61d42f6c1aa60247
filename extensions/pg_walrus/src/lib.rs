//! `pg_walrus`: a background worker that sizes `max_wal_size` so checkpoints
//! are not forced by WAL volume. Loaded through `shared_preload_libraries`.
use pgrx::prelude::*;

mod api;
mod engine;
mod guc;
mod shmem;
mod stats;
mod sys;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/history.sql", name = "history", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    // SAFETY: a plain read of a flag the postmaster sets while loading
    // shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
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
