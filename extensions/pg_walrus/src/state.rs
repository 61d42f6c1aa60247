//! What the worker publishes in shared memory (registered in `pg::shmem`):
//! the sizer's state, the worker's lifecycle, the last decision and counters.
use governance::sizing::{Action, SizerState};

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
    /// The action's code (`Action::code`); 0 = none yet.
    pub action: u8,
    pub old_mb: u64,
    pub new_mb: u64,
    pub forced: u64,
}

impl LastDecision {
    pub fn action(&self) -> Option<Action> {
        Action::from_code(self.action)
    }
}

/// How many actions there are (the size of the per-action counters).
pub const ACTION_COUNT: usize = Action::ALL.len();

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
    /// Per action, indexed by `Action::index`.
    pub actions: [u64; ACTION_COUNT],
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

impl Shared {
    /// Counts a recorded decision.
    pub fn count(&mut self, action: Action) {
        self.decisions += 1;
        self.actions[action.index()] += 1;
    }

    /// Decisions recorded with `action`.
    pub fn count_of(&self, action: Action) -> u64 {
        self.actions[action.index()]
    }
}
