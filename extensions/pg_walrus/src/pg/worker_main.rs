//! The background worker's entry point, looked up by name by the postmaster.
use pgrx::prelude::*;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn walrus_worker_main(_arg: pg_sys::Datum) {
    crate::worker::run();
    // The worker only returns on SIGTERM. Exit code 1 makes the postmaster
    // start it again after bgw_restart_time when someone terminated it
    // (pg_terminate_backend); while the server shuts down nothing is
    // restarted. With exit code 0 the postmaster would forget the worker.
    // SAFETY: proc_exit runs the process's exit callbacks and never
    // returns; nothing of ours is left to unwind.
    unsafe { pg_sys::proc_exit(1) }
}
