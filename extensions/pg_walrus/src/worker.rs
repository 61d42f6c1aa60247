//! The background worker: wakes every interval (`checkpoint_timeout`), feeds
//! the counters to the sizer, carries out its decisions, cleans up history.
//!
//! It runs on a primary and on a hot standby (it starts once the standby is
//! consistent). On a standby it sizes `max_wal_size` for restartpoints from
//! the restartpoint counters and the replayed WAL, applies changes with
//! `ALTER SYSTEM` there, and keeps its decisions in shared memory; it never
//! writes a table or assigns a transaction id. When the server is promoted
//! it notices within a sample period and runs `promotion::on_promotion`.
use crate::engine::{self, Context};
use crate::pg::{server, shmem};
use crate::state::WorkerState;
use crate::{api, disk, guc, promotion, stats};
use governance::sizing::{Origin, Tick};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgsupport::subxact::in_subtransaction;
use pgsupport::time::unix_ms;
use std::time::Duration;

/// Register the worker (only from `shared_preload_libraries`).
pub fn register() {
    BackgroundWorkerBuilder::new("pg_walrus worker")
        .set_type("pg_walrus")
        .set_library("pg_walrus")
        .set_function("walrus_worker_main")
        .enable_spi_access()
        // After enable_spi_access (which asks for RecoveryFinished): start
        // on a hot standby too, as soon as it is consistent.
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(60)))
        .load();
}

/// WAL position samples taken per interval (they let the WAL-based
/// strategies leave out an idle start of the interval).
const SAMPLES_PER_INTERVAL: u64 = 6;

/// How often expired history is deleted.
const CLEANUP_EVERY_MS: u64 = 3_600_000;

/// The worker's body (entered from `pg::worker_main`).
pub fn run() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    {
        let mut sh = shmem::SHARED.exclusive();
        sh.worker_pid = pgsupport::wait::my_pid();
        sh.state = WorkerState::Starting;
        sh.started_ms = unix_ms();
        sh.sizer.drop_baseline();
        // `in_recovery` keeps what an earlier run of the worker saw: a
        // promotion while the worker was down is still noticed.
    }
    // The worker runs as the bootstrap superuser: its search_path is pinned
    // before anything else runs, so that no object created by a database
    // owner (who can set the database's search_path) runs inside its
    // statements. It never waits long on a lock (someone holding
    // walrus.history) or a slow statement: such an error costs one history
    // row, not the worker. A read-only statement: it works on a standby.
    BackgroundWorker::transaction(|| {
        let set = pgsupport::spi::select_run(
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false), \
                    pg_catalog.set_config('lock_timeout', '10s', false), \
                    pg_catalog.set_config('statement_timeout', '60s', false), \
                    pg_catalog.set_config('application_name', 'pg_walrus', false)",
            &[],
        );
        if let Err(e) = set {
            pgrx::warning!("pg_walrus: could not set worker timeouts: {e}");
        }
    });
    pgrx::log!(
        "pg_walrus worker started (database \"{database}\"{})",
        if stats::in_recovery() {
            ", standby"
        } else {
            ""
        }
    );
    let mut interval_ms: u64 = 0;
    let mut wait_ms: u64 = 0;
    let mut last_cleanup_ms: u64 = 0;
    loop {
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(wait_ms.max(1)))) {
            break;
        }
        let reloaded = BackgroundWorker::sighup_received();
        if reloaded {
            pgsupport::guc::reload_configuration();
        }
        let now = unix_ms();
        let (baseline_ms, was_standby) = {
            let sh = shmem::SHARED.share();
            (sh.sizer.baseline().map(|(_, t)| t), sh.in_recovery)
        };
        let role_changed = stats::in_recovery() != was_standby;
        let due = match baseline_ms {
            Some(t) => now.saturating_sub(t) >= interval_ms,
            None => true,
        };
        if due || reloaded || role_changed {
            let do_cleanup = now.saturating_sub(last_cleanup_ms) >= CLEANUP_EVERY_MS;
            let (next, cleaned) = BackgroundWorker::transaction(move || {
                let next = step(now);
                // A standby cannot delete: its history is the primary's.
                let cleaned = do_cleanup && !stats::in_recovery();
                if cleaned {
                    cleanup();
                }
                (next, cleaned)
            });
            interval_ms = next;
            if cleaned {
                last_cleanup_ms = now;
            }
        } else {
            // Between intervals: sample the WAL position (no transaction).
            shmem::SHARED
                .exclusive()
                .sizer
                .sample(now, server::wal_position());
        }
        // Sleep until the next sample or the end of the interval.
        let period = (interval_ms / SAMPLES_PER_INTERVAL).max(100);
        wait_ms = match shmem::SHARED.share().sizer.baseline() {
            Some((_, t)) => (t + interval_ms)
                .saturating_sub(unix_ms())
                .min(period)
                .max(1),
            // Disabled: look again after a full interval (a reload wakes us
            // earlier).
            None => interval_ms.max(1),
        };
    }
    {
        let mut sh = shmem::SHARED.exclusive();
        sh.state = WorkerState::Stopped;
        sh.worker_pid = 0;
    }
    pgrx::log!(
        "pg_walrus worker stopping on SIGTERM (started again after 60 s unless the server is shutting down)"
    );
}

/// One wake-up that may end an interval; returns the interval length.
fn step(now: u64) -> u64 {
    let standby = stats::in_recovery();
    let read = in_subtransaction(|| -> Result<_, pgrx::spi::Error> {
        Ok((stats::server()?, stats::counters_for(standby, true)?))
    });
    let (server, counters) = match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            pgrx::warning!("pg_walrus: could not read statistics: {e}");
            return 10_000;
        }
        Err(e) => {
            pgrx::warning!("pg_walrus: could not read statistics: {e}");
            return 10_000;
        }
    };
    let segment_mb = (server.segment_bytes / governance::sizing::MB).max(1);
    let disk_cap = disk::read_cap(segment_mb, now);
    let settings = guc::settings_for(&server, standby, disk_cap);
    let interval = settings.interval_ms;
    let was_standby = {
        let mut sh = shmem::SHARED.exclusive();
        let was = sh.in_recovery;
        sh.in_recovery = standby;
        was
    };
    if was_standby && !standby {
        promotion::on_promotion(&server, &settings);
    } else if was_standby != standby {
        // Started as a standby (or shared memory from a primary): restart-
        // points and the replay position are other counters.
        shmem::SHARED.exclusive().sizer.drop_baseline();
    } else if !standby && !shmem::SHARED.share().pending().is_empty() {
        // Written at promotion unless walrus.history could not take them.
        promotion::write_pending();
    }
    let running = if standby {
        WorkerState::Standby
    } else {
        WorkerState::Running
    };
    let tick = {
        let mut sh = shmem::SHARED.exclusive();
        let tick = sh
            .sizer
            .tick(&settings, now, counters, server.max_wal_size_mb);
        sh.requested_total = counters.requested;
        sh.timed_total = counters.timed;
        match &tick {
            Tick::Disabled => sh.state = WorkerState::Disabled,
            Tick::Baseline { .. } => {
                sh.state = running;
                sh.last_baseline_ms = now;
            }
            Tick::Early { .. } => sh.state = running,
            Tick::Evaluated(e) => {
                sh.state = running;
                sh.last_check_ms = now;
                sh.intervals += 1;
                sh.last_forced = e.forced;
                sh.last_timed = e.timed;
                sh.last_cycle_bytes = e.cycle_bytes;
                sh.last_wal_rate_bps =
                    governance::sizing::sizer::scale(e.wal_bytes, 1000, e.elapsed_ms.max(1));
                sh.last_needed_mb = e.needed_mb;
                sh.last_interval_ms = e.elapsed_ms;
            }
        }
        tick
    };
    match tick {
        Tick::Disabled | Tick::Early { .. } => {}
        Tick::Baseline { reason } => pgrx::debug1!("pg_walrus: baseline taken ({reason})"),
        Tick::Evaluated(eval) => {
            if let Some(d) = eval.decision.clone() {
                let ctx = Context {
                    settings: &settings,
                    server: &server,
                    origin: Origin::Worker,
                };
                engine::carry_out(d, &eval, ctx);
            }
        }
    }
    interval
}

fn cleanup() {
    match in_subtransaction(api::delete_expired_history) {
        Ok(Ok(n)) if n > 0 => pgrx::log!("pg_walrus: deleted {n} expired history rows"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => pgrx::debug1!("pg_walrus: history cleanup skipped: {e}"),
        Err(e) => pgrx::debug1!("pg_walrus: history cleanup skipped: {e}"),
    }
}
