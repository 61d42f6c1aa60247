//! What the worker publishes in shared memory (registered in `pg::shmem`):
//! the sizer's state, the worker's lifecycle, the last decision, the
//! decisions a standby made that wait for `walrus.history`, the disk
//! reading, and counters.
use governance::sizing::{Action, Algorithm, Origin, WalDisk};

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

/// Bytes of a decision's reason kept in shared memory (longer reasons are
/// cut at a character boundary).
pub const REASON_BYTES: usize = 320;

/// One recorded decision, in fixed-size form: everything its history row
/// and NOTIFY payload hold.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub at_ms: u64,
    /// `Action::code`; 0 = none.
    pub action: u8,
    pub intended: u8,
    /// `Origin::code`.
    pub origin: u8,
    /// `Algorithm::code`.
    pub algorithm: u8,
    pub dry_run: bool,
    /// Made while the server was a standby.
    pub standby: bool,
    pub old_mb: u64,
    pub new_mb: u64,
    pub forced: u64,
    pub timed: u64,
    pub interval_ms: u64,
    pub wal_bytes: u64,
    pub cycle_bytes: u64,
    pub needed_mb: u64,
    pub checkpoint_timeout_s: u64,
    /// The disk cap in force (0: none).
    pub disk_cap_mb: u64,
    reason: [u8; REASON_BYTES],
    reason_len: u16,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            at_ms: 0,
            action: 0,
            intended: 0,
            origin: 0,
            algorithm: 0,
            dry_run: false,
            standby: false,
            old_mb: 0,
            new_mb: 0,
            forced: 0,
            timed: 0,
            interval_ms: 0,
            wal_bytes: 0,
            cycle_bytes: 0,
            needed_mb: 0,
            checkpoint_timeout_s: 0,
            disk_cap_mb: 0,
            reason: [0; REASON_BYTES],
            reason_len: 0,
        }
    }
}

impl Record {
    pub fn action(&self) -> Option<Action> {
        Action::from_code(self.action)
    }

    pub fn intended(&self) -> Option<Action> {
        Action::from_code(self.intended)
    }

    pub fn origin(&self) -> Option<Origin> {
        Origin::from_code(self.origin)
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_code(self.algorithm)
    }

    pub fn reason(&self) -> &str {
        let len = usize::from(self.reason_len).min(REASON_BYTES);
        std::str::from_utf8(&self.reason[..len]).unwrap_or("")
    }

    pub fn set_reason(&mut self, reason: &str) {
        let mut end = reason.len().min(REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.reason[..end].copy_from_slice(&reason.as_bytes()[..end]);
        self.reason_len = u16::try_from(end).unwrap_or(0);
    }
}

/// Decisions a standby keeps for `walrus.history` (older ones are dropped
/// and counted; all are in the server log).
pub const PENDING: usize = 64;

/// The last disk reading (see `disk`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskState {
    pub read: bool,
    pub disk: WalDisk,
    /// The cap it gave (0: none).
    pub cap_mb: u64,
    pub read_ms: u64,
}

/// Everything the worker publishes.
#[derive(Clone, Copy, Debug)]
pub struct Shared {
    pub sizer: governance::sizing::SizerState,
    pub worker_pid: i32,
    pub state: WorkerState,
    pub started_ms: u64,
    pub last_check_ms: u64,
    pub last_baseline_ms: u64,
    pub last_change_ms: u64,
    /// The size the last applied change set, and whether it was made in
    /// recovery (the standby's own size for promotion).
    pub last_change_mb: u64,
    pub last_change_standby: bool,
    pub last: Record,
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
    /// The role the worker last saw: in recovery or not.
    pub in_recovery: bool,
    pub promotions: u64,
    pub last_promotion_ms: u64,
    /// Decisions made in recovery, oldest first, not yet in walrus.history.
    pub pending: [Record; PENDING],
    pub pending_len: u32,
    pub pending_dropped: u64,
    pub disk: DiskState,
    pub disk_errors: u64,
}

/// How many actions there are (the size of the per-action counters).
pub const ACTION_COUNT: usize = Action::ALL.len();

impl Default for Shared {
    fn default() -> Self {
        Shared {
            sizer: governance::sizing::SizerState::new(),
            worker_pid: 0,
            state: WorkerState::NotStarted,
            started_ms: 0,
            last_check_ms: 0,
            last_baseline_ms: 0,
            last_change_ms: 0,
            last_change_mb: 0,
            last_change_standby: false,
            last: Record::default(),
            intervals: 0,
            decisions: 0,
            actions: [0; ACTION_COUNT],
            last_forced: 0,
            last_timed: 0,
            requested_total: 0,
            timed_total: 0,
            last_cycle_bytes: 0,
            last_wal_rate_bps: 0,
            last_needed_mb: 0,
            last_interval_ms: 0,
            changes_applied: 0,
            history_errors: 0,
            alter_errors: 0,
            in_recovery: false,
            promotions: 0,
            last_promotion_ms: 0,
            pending: [Record::default(); PENDING],
            pending_len: 0,
            pending_dropped: 0,
            disk: DiskState::default(),
            disk_errors: 0,
        }
    }
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

    /// Keeps a standby's decision for walrus.history (dropping the oldest
    /// when full).
    pub fn push_pending(&mut self, record: Record) {
        let len = self.pending_len as usize;
        if len >= PENDING {
            self.pending.copy_within(1.., 0);
            self.pending[PENDING - 1] = record;
            self.pending_dropped += 1;
        } else {
            self.pending[len] = record;
            self.pending_len += 1;
        }
    }

    /// The pending decisions, oldest first.
    pub fn pending(&self) -> &[Record] {
        &self.pending[..(self.pending_len as usize).min(PENDING)]
    }

    /// Forgets the first `n` pending decisions (written to walrus.history).
    pub fn drop_pending(&mut self, n: usize) {
        let len = (self.pending_len as usize).min(PENDING);
        let n = n.min(len);
        self.pending.copy_within(n..len, 0);
        self.pending_len = (len - n) as u32;
    }
}
