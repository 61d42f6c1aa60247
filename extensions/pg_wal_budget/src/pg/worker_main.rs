//! The profile writer's entry point, looked up by name by the postmaster.
use pgrx::prelude::*;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pwb_profile_writer_main(_arg: pg_sys::Datum) {
    crate::worker::run();
}
