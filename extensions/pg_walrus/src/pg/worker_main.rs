//! The background worker's entry point, looked up by name by the postmaster.
use pgrx::prelude::*;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn walrus_worker_main(_arg: pg_sys::Datum) {
    crate::worker::run();
}
