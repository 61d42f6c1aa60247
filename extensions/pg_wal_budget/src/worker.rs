//! The profile writer: a background worker that loads stored profiles into
//! shared memory at startup and writes them back every
//! `pwb.profile_flush_interval` and once more at shutdown, in the database
//! named by `pwb.profile_database`.
use crate::{guc, profiles};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// Registers the worker. `_PG_init` only, while preloading.
pub fn init() {
    BackgroundWorkerBuilder::new("pg_wal_budget profile writer")
        .set_type("pg_wal_budget")
        .set_library("pg_wal_budget")
        .set_function("pwb_profile_writer_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

fn extension_ready() -> bool {
    BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension \
                            WHERE extname OPERATOR(pg_catalog.=) 'pg_wal_budget') \
             AND pg_catalog.to_regclass('pwb.query_profile') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
}

/// The worker's body (entered from `pg::worker_main`).
pub fn run() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::profile_database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // The worker runs as the bootstrap superuser: its search_path is pinned
    // before anything else runs, so that no object created by the database's
    // owner (who can set the database's search_path) runs inside its
    // statements.
    BackgroundWorker::transaction(|| {
        if let Err(e) = Spi::run("SET search_path = pg_catalog, pg_temp") {
            pgrx::warning!("pg_wal_budget: could not pin the worker's search_path: {e}");
        }
    });
    // The worker's own writes are bookkeeping, not workload.
    crate::session::set_process_internal();
    let mut loaded = false;
    let mut last_flush = Instant::now();
    loop {
        let interval = guc::profile_flush_interval();
        let ready = extension_ready();
        if ready && !loaded {
            let n = BackgroundWorker::transaction(profiles::load);
            log!("pg_wal_budget: loaded {n} stored query profiles from database \"{database}\"");
            loaded = true;
        }
        if ready && loaded && interval.is_some_and(|i| last_flush.elapsed() >= i) {
            BackgroundWorker::transaction(profiles::flush);
            last_flush = Instant::now();
        }
        let timeout = interval
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(10));
        if !BackgroundWorker::wait_latch(Some(timeout)) {
            // SIGTERM (shutdown): one last flush, then exit.
            if extension_ready() {
                let n = BackgroundWorker::transaction(profiles::flush);
                log!("pg_wal_budget: stored {n} query profiles at shutdown");
            }
            break;
        }
        if BackgroundWorker::sighup_received() {
            pgsupport::guc::reload_configuration();
        }
    }
}
