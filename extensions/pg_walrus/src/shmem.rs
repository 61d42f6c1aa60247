//! Shared memory: the sizer state and the worker's status, read by the SQL
//! functions and written by the worker (and by `walrus.analyze(true)` /
//! `walrus.reset()`).
use governance::sizing::SizerState;
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};
use std::sync::atomic::{AtomicBool, Ordering};

/// Worker lifecycle as shown by `walrus.status()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkerState {
    #[default]
    NotStarted,
    Starting,
    Running,
    Disabled,
    Standby,
    Stopped,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Disabled => "disabled",
            Self::Standby => "standby",
            Self::Stopped => "stopped",
        }
    }
}

/// Last decision, in fixed-size form.
#[derive(Clone, Copy, Debug, Default)]
pub struct LastDecision {
    pub at_ms: u64,
    /// Index into [`ACTIONS`] + 1; 0 = none yet.
    pub action: u8,
    pub old_mb: u64,
    pub new_mb: u64,
    pub forced: u64,
}

pub const ACTIONS: [&str; 5] = ["increase", "decrease", "capped", "dry_run", "skipped"];

/// Everything the worker publishes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shared {
    pub sizer: SizerState,
    pub worker_pid: i32,
    pub state: WorkerState,
    pub started_ms: u64,
    pub last_check_ms: u64,
    pub last_baseline_ms: u64,
    pub last_change_ms: u64,
    pub last: LastDecision,
    pub intervals: u64,
    pub decisions: u64,
    /// Per action, indexed like [`ACTIONS`].
    pub actions: [u64; 5],
    pub last_forced: u64,
    pub last_timed: u64,
    pub requested_total: u64,
    pub timed_total: u64,
    pub last_cycle_bytes: u64,
    pub last_wal_rate_bps: u64,
    pub last_needed_mb: u64,
    pub last_interval_ms: u64,
    pub changes_applied: u64,
    pub history_errors: u64,
    pub alter_errors: u64,
}

// SAFETY: `Shared` is `Copy`, holds no pointers, and is only accessed through
// the `PgLwLock` below.
unsafe impl PGRXSharedMemory for Shared {}

// SAFETY: the name is unique to this extension and the lock is registered
// through `pg_shmem_init!` in `init()` before any use.
pub static SHARED: PgLwLock<Shared> = unsafe { PgLwLock::new(c"pg_walrus_state") };

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Request the shared memory (only from `shared_preload_libraries`).
pub fn init() {
    pg_shmem_init!(SHARED);
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Whether this process has the shared memory (library was preloaded).
pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

pub fn action_index(name: &str) -> Option<usize> {
    ACTIONS.iter().position(|a| *a == name)
}
