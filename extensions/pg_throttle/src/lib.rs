//! `pg_throttle`: caps the tuples per second that a user's queries read from
//! executor scan nodes. Loaded through `session_preload_libraries` (as
//! documented) or `shared_preload_libraries`.
use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/throttlings.sql", name = "throttlings", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {}

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
