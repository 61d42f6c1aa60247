//! pg_wal_budget's worker: it loads stored profiles into shared memory at
//! startup and writes them back every `pwb.profile_flush_interval` and once
//! more at shutdown, in the database named by `pwb.profile_database`; and
//! every 100 ms it runs the replica-lag and WAL-disk feedback (`feedback`).
//! It starts on a standby too (read-only there: it loads profiles and
//! stores none) and carries on after promotion.
use crate::{feedback, guc, profiles};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// Registers the worker. `_PG_init` only, while preloading.
pub fn init() {
    BackgroundWorkerBuilder::new("pg_wal_budget profile writer")
        .set_type("pg_wal_budget")
        .set_library("pg_wal_budget")
        .set_function("pwb_profile_writer_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

fn extension_ready() -> bool {
    BackgroundWorker::transaction(|| {
        pgsupport::spi::select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension \
                            WHERE extname OPERATOR(pg_catalog.=) 'pg_wal_budget') \
             AND pg_catalog.to_regclass('pwb.query_profile') IS NOT NULL",
            &[],
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
        // (A read-only statement: the worker runs on standbys too, where
        // anything that would assign a transaction id fails.)
        if let Err(e) = pgsupport::spi::select_run(
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)",
            &[],
        ) {
            pgrx::warning!("pg_wal_budget: could not pin the worker's search_path: {e}");
        }
    });
    // The worker's own writes are bookkeeping, not workload.
    crate::session::set_process_internal();
    let mut loaded = false;
    let mut last_flush = Instant::now();
    let mut last_look: Option<Instant> = None;
    let mut feedback = feedback::Feedback::default();
    loop {
        feedback.tick();
        // Profiles: loaded once the extension exists, stored on schedule
        // (not while a standby: it cannot write).
        let interval = guc::profile_flush_interval();
        if last_look.is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            || interval.is_some_and(|i| last_flush.elapsed() >= i)
        {
            last_look = Some(Instant::now());
            let ready = extension_ready();
            if ready && !loaded {
                let n = BackgroundWorker::transaction(profiles::load);
                log!(
                    "pg_wal_budget: loaded {n} stored query profiles from database \"{database}\""
                );
                loaded = true;
            }
            if ready
                && loaded
                && !pgsupport::catalog::in_recovery()
                && interval.is_some_and(|i| last_flush.elapsed() >= i)
            {
                BackgroundWorker::transaction(profiles::flush);
                last_flush = Instant::now();
            }
        }
        if !BackgroundWorker::wait_latch(Some(feedback::TICK)) {
            // SIGTERM (shutdown): one last flush, then exit.
            if !pgsupport::catalog::in_recovery() && extension_ready() {
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
