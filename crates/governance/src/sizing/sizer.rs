//! Interval bookkeeping, rate limiting and the recorded decision.
//!
//! [`SizerState`] is a plain `Copy` value with fixed-size arrays so it can live
//! in shared memory: the worker advances it once per full interval with
//! [`SizerState::tick`], and SQL functions preview it with
//! [`SizerState::preview`] without changing it.

use super::checkpoint::MAX_SIZE_MB;
use super::strategy::{Algorithm, Inputs, Proposal, measured_need_mb, propose};

/// Full intervals of checkpoint-cycle WAL kept for the WAL-based strategies.
pub const WINDOW: usize = 32;
/// WAL position samples kept per interval (see [`SizerState::sample`]).
pub const SAMPLES: usize = 12;
/// Change timestamps kept for the hourly limit (`walrus.max_changes_per_hour`
/// is at most this).
pub const MAX_CHANGES_PER_HOUR: usize = 1000;
const HOUR_MS: u64 = 3_600_000;

/// Settings for one evaluation (read from the GUCs by the caller).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub enabled: bool,
    pub algorithm: Algorithm,
    pub threshold: u64,
    pub max_mb: u64,
    pub min_mb: u64,
    pub shrink_enable: bool,
    pub shrink_factor: f64,
    pub shrink_intervals: u32,
    /// `checkpoint_timeout`, the cycle the WAL is measured against.
    pub checkpoint_timeout_ms: u64,
    /// How long a full interval is (normally `checkpoint_timeout`).
    pub interval_ms: u64,
    pub completion_target: f64,
    pub segment_mb: u64,
    pub dry_run: bool,
    pub cooldown_ms: u64,
    /// 0 means no hourly limit.
    pub max_changes_per_hour: u32,
    /// The disk cap in MB (see [`super::disk`]); None: no cap.
    pub disk_cap_mb: Option<u64>,
    /// Sizing a standby for restartpoints (the counters are restartpoints
    /// and the WAL position is the replay position).
    pub standby: bool,
}

/// Cumulative server counters at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Requested (forced) checkpoints since the statistics reset.
    pub requested: u64,
    /// Timed checkpoints since the statistics reset.
    pub timed: u64,
    /// WAL insert position, in bytes.
    pub wal_lsn: u64,
    /// Statistics reset time (any stable encoding; a change means a reset).
    pub stats_reset: i64,
}

crate::sql_enum! {
    /// The recorded action (the `walrus.history.action` values).
    pub enum Action {
        Increase = 1 => "increase",
        Decrease = 2 => "decrease",
        Capped = 3 => "capped",
        DryRun = 4 => "dry_run",
        Skipped = 5 => "skipped",
    }
}

crate::sql_enum! {
    /// Who made a decision (`metadata->>'origin'` in `walrus.history`).
    pub enum Origin {
        /// The background worker at the end of an interval.
        Worker = 1 => "worker",
        /// `walrus.analyze(apply => true)`.
        Analyze = 2 => "analyze",
        /// The worker carrying a known size over to a promoted standby.
        Promotion = 3 => "promotion",
    }
}

impl Action {
    /// Whether the caller must apply `new_mb`.
    #[must_use]
    pub fn changes_size(self) -> bool {
        matches!(self, Self::Increase | Self::Decrease | Self::Capped)
    }
}

/// A decision worth recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// What the strategy wanted (`increase`, `decrease` or `capped`); equals
    /// `action` unless dry run or rate limiting intervened.
    pub intended: Action,
    pub old_mb: u64,
    pub new_mb: u64,
    pub reason: String,
}

/// What one full interval showed and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub forced: u64,
    pub timed: u64,
    pub wal_bytes: u64,
    pub elapsed_ms: u64,
    /// `wal_bytes` scaled to one `checkpoint_timeout`.
    pub cycle_bytes: u64,
    /// The size the measured window needs (0 for the multiplicative strategy).
    pub needed_mb: u64,
    /// `None`: keep the size, with this reason.
    pub decision: Option<Decision>,
    pub keep_reason: String,
}

/// The outcome of [`SizerState::tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// `walrus.enable` is off: nothing measured.
    Disabled,
    /// A new baseline was taken (first look, enabled again, statistics reset):
    /// no decision on a stale delta.
    Baseline { reason: &'static str },
    /// Woken before a full interval passed (reload, signal): nothing counted.
    Early { remaining_ms: u64 },
    /// A full interval was evaluated.
    Evaluated(Evaluation),
}

/// The sizer's memory between intervals.
#[derive(Clone, Copy, Debug)]
pub struct SizerState {
    baseline: Counters,
    baseline_ms: u64,
    has_baseline: bool,
    quiet_intervals: u32,
    full_intervals: u64,
    window: [u64; WINDOW],
    window_len: u32,
    window_next: u32,
    last_change_ms: u64,
    has_changed: bool,
    changes: [u64; MAX_CHANGES_PER_HOUR],
    changes_next: u32,
    changes_len: u32,
    /// WAL insert positions sampled within the current interval.
    samples: [(u64, u64); SAMPLES],
    samples_len: u32,
}

impl Default for SizerState {
    fn default() -> Self {
        Self::new()
    }
}

impl SizerState {
    #[must_use]
    pub const fn new() -> Self {
        Self {
            baseline: Counters {
                requested: 0,
                timed: 0,
                wal_lsn: 0,
                stats_reset: 0,
            },
            baseline_ms: 0,
            has_baseline: false,
            quiet_intervals: 0,
            full_intervals: 0,
            window: [0; WINDOW],
            window_len: 0,
            window_next: 0,
            last_change_ms: 0,
            has_changed: false,
            changes: [0; MAX_CHANGES_PER_HOUR],
            changes_next: 0,
            changes_len: 0,
            samples: [(0, 0); SAMPLES],
            samples_len: 0,
        }
    }

    #[must_use]
    pub fn has_baseline(&self) -> bool {
        self.has_baseline
    }
    #[must_use]
    pub fn baseline(&self) -> Option<(Counters, u64)> {
        self.has_baseline
            .then_some((self.baseline, self.baseline_ms))
    }
    #[must_use]
    pub fn quiet_intervals(&self) -> u32 {
        self.quiet_intervals
    }
    #[must_use]
    pub fn full_intervals(&self) -> u64 {
        self.full_intervals
    }
    #[must_use]
    pub fn last_change_ms(&self) -> Option<u64> {
        self.has_changed.then_some(self.last_change_ms)
    }

    /// The checkpoint-cycle WAL of the window, oldest first.
    #[must_use]
    pub fn window(&self) -> Vec<u64> {
        let len = self.window_len as usize;
        let next = self.window_next as usize;
        (0..len)
            .map(|i| self.window[(next + WINDOW - len + i) % WINDOW])
            .collect()
    }

    /// Size changes applied in the hour before `now_ms`.
    #[must_use]
    pub fn changes_last_hour(&self, now_ms: u64) -> u32 {
        let len = self.changes_len as usize;
        let next = self.changes_next as usize;
        (0..len)
            .map(|i| self.changes[(next + MAX_CHANGES_PER_HOUR - 1 - i) % MAX_CHANGES_PER_HOUR])
            .filter(|&t| now_ms.saturating_sub(t) < HOUR_MS)
            .count() as u32
    }

    /// When the sliding hour of the hourly limit began: the oldest change
    /// applied in the hour before `now_ms` (None: no change in that hour).
    #[must_use]
    pub fn hour_window_start(&self, now_ms: u64) -> Option<u64> {
        let len = self.changes_len as usize;
        let next = self.changes_next as usize;
        (0..len)
            .map(|i| self.changes[(next + MAX_CHANGES_PER_HOUR - 1 - i) % MAX_CHANGES_PER_HOUR])
            .filter(|&t| now_ms.saturating_sub(t) < HOUR_MS)
            .min()
    }

    /// Forget everything (as `walrus.reset()`): the next tick takes a baseline.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Drop the baseline only: the next tick takes a new one.
    pub fn drop_baseline(&mut self) {
        self.has_baseline = false;
    }

    /// Take `counters` as the baseline of the next interval.
    pub fn rebaseline(&mut self, counters: Counters, now_ms: u64) {
        self.samples_len = 0;
        self.baseline = counters;
        self.baseline_ms = now_ms;
        self.has_baseline = true;
    }

    /// Record the WAL insert position at `now_ms` within the current interval
    /// (the worker samples it a few times per interval). Samples let a
    /// measured strategy ignore the idle start of an interval in which the
    /// load began, instead of averaging it in and undersizing.
    pub fn sample(&mut self, now_ms: u64, wal_lsn: u64) {
        if !self.has_baseline || (self.samples_len as usize) >= SAMPLES {
            return;
        }
        let (last_ms, last_lsn) = match self.samples_len {
            0 => (self.baseline_ms, self.baseline.wal_lsn),
            n => self.samples[n as usize - 1],
        };
        if now_ms <= last_ms || wal_lsn < last_lsn {
            return;
        }
        self.samples[self.samples_len as usize] = (now_ms, wal_lsn);
        self.samples_len += 1;
    }

    /// WAL of the interval ending at (`now_ms`, `wal_lsn`), scaled to one
    /// checkpoint_timeout, over the part of the interval after its idle start:
    /// sub-periods before the first one writing at least a tenth of the
    /// fastest sub-period's rate are left out.
    fn cycle_bytes(&self, s: &Settings, now_ms: u64, wal_lsn: u64) -> u64 {
        let mut points = Vec::with_capacity(SAMPLES + 2);
        points.push((self.baseline_ms, self.baseline.wal_lsn));
        points.extend_from_slice(&self.samples[..self.samples_len as usize]);
        if now_ms > points[points.len() - 1].0 && wal_lsn >= points[points.len() - 1].1 {
            points.push((now_ms, wal_lsn));
        }
        let rate = |a: (u64, u64), b: (u64, u64)| -> u64 {
            scale(
                b.1.saturating_sub(a.1),
                1000,
                b.0.saturating_sub(a.0).max(1),
            )
        };
        let fastest = points
            .windows(2)
            .map(|w| rate(w[0], w[1]))
            .max()
            .unwrap_or(0);
        let start = points
            .windows(2)
            .position(|w| rate(w[0], w[1]) >= fastest / 10)
            .unwrap_or(0);
        let (t0, l0) = points[start];
        let wal = wal_lsn.saturating_sub(l0);
        scale(
            wal,
            s.checkpoint_timeout_ms,
            now_ms.saturating_sub(t0).max(1),
        )
    }

    /// Record that a size change was applied at `now_ms` (the caller calls
    /// this only once `ALTER SYSTEM` succeeded).
    pub fn record_change(&mut self, now_ms: u64) {
        self.last_change_ms = now_ms;
        self.has_changed = true;
        self.changes[self.changes_next as usize] = now_ms;
        self.changes_next = ((self.changes_next as usize + 1) % MAX_CHANGES_PER_HOUR) as u32;
        self.changes_len = (self.changes_len + 1).min(MAX_CHANGES_PER_HOUR as u32);
    }

    /// Why a change at `now_ms` would be refused by the rate limits, if it
    /// would.
    #[must_use]
    pub fn rate_limited(&self, s: &Settings, now_ms: u64) -> Option<String> {
        if self.has_changed && s.cooldown_ms > 0 {
            let since = now_ms.saturating_sub(self.last_change_ms);
            if since < s.cooldown_ms {
                return Some(format!(
                    "cooldown: last change {}s ago, walrus.cooldown_sec is {}s",
                    since / 1000,
                    s.cooldown_ms / 1000
                ));
            }
        }
        if s.max_changes_per_hour > 0 {
            let recent = self.changes_last_hour(now_ms);
            if recent >= s.max_changes_per_hour {
                return Some(format!(
                    "hourly limit: {recent} changes in the last hour, walrus.max_changes_per_hour is {}",
                    s.max_changes_per_hour
                ));
            }
        }
        None
    }

    /// Advance by one wake-up of the worker.
    pub fn tick(&mut self, s: &Settings, now_ms: u64, c: Counters, current_mb: u64) -> Tick {
        if !s.enabled {
            self.has_baseline = false;
            self.quiet_intervals = 0;
            return Tick::Disabled;
        }
        if !self.has_baseline {
            let reason = if self.full_intervals == 0 && !self.has_changed {
                "first look"
            } else {
                "re-enabled or reset"
            };
            self.rebaseline(c, now_ms);
            self.quiet_intervals = 0;
            return Tick::Baseline { reason };
        }
        if c.stats_reset != self.baseline.stats_reset
            || c.requested < self.baseline.requested
            || c.timed < self.baseline.timed
            || c.wal_lsn < self.baseline.wal_lsn
        {
            self.rebaseline(c, now_ms);
            self.quiet_intervals = 0;
            return Tick::Baseline {
                reason: "statistics reset",
            };
        }
        let elapsed = now_ms.saturating_sub(self.baseline_ms);
        let interval = s.interval_ms.max(1);
        if elapsed < interval {
            return Tick::Early {
                remaining_ms: interval - elapsed,
            };
        }
        let mut eval = self.evaluate(s, now_ms, c, current_mb, true);
        // Commit the interval.
        self.push_window(eval.cycle_bytes);
        self.full_intervals = self.full_intervals.saturating_add(1);
        self.rebaseline(c, now_ms);
        if eval.forced >= s.threshold.max(1) {
            self.quiet_intervals = 0;
        } else if eval.forced == 0 {
            self.quiet_intervals = self.quiet_intervals.saturating_add(1);
        } else {
            self.quiet_intervals = 0;
        }
        if let Some(d) = &eval.decision
            && d.intended == Action::Decrease
            && d.action != Action::Skipped
        {
            // A shrink (or its dry run) starts a new count of quiet intervals.
            self.quiet_intervals = 0;
        }
        eval.needed_mb = measured_need_mb(&self.inputs(s, current_mb, eval.forced, &self.window()));
        Tick::Evaluated(eval)
    }

    /// What the sizer would decide if the current interval ended now, without
    /// changing any state. `None` when there is no baseline yet.
    #[must_use]
    pub fn preview(
        &self,
        s: &Settings,
        now_ms: u64,
        c: Counters,
        current_mb: u64,
    ) -> Option<Evaluation> {
        if !self.has_baseline
            || c.stats_reset != self.baseline.stats_reset
            || c.requested < self.baseline.requested
            || c.wal_lsn < self.baseline.wal_lsn
        {
            return None;
        }
        let mut copy = *self;
        let eval = copy.evaluate(s, now_ms, c, current_mb, false);
        Some(eval)
    }

    fn push_window(&mut self, cycle: u64) {
        self.window[self.window_next as usize] = cycle;
        self.window_next = ((self.window_next as usize + 1) % WINDOW) as u32;
        self.window_len = (self.window_len + 1).min(WINDOW as u32);
    }

    fn inputs<'a>(
        &self,
        s: &Settings,
        current_mb: u64,
        forced: u64,
        window: &'a [u64],
    ) -> Inputs<'a> {
        Inputs {
            algorithm: s.algorithm,
            current_mb,
            forced,
            threshold: s.threshold.max(1),
            max_mb: s.max_mb,
            min_mb: s.min_mb,
            shrink_enable: s.shrink_enable,
            shrink_factor: s.shrink_factor,
            shrink_intervals: s.shrink_intervals,
            quiet_intervals: self.quiet_intervals,
            segment_mb: s.segment_mb,
            completion_target: s.completion_target,
            window,
            disk_cap_mb: s.disk_cap_mb,
            standby: s.standby,
        }
    }

    fn evaluate(
        &mut self,
        s: &Settings,
        now_ms: u64,
        c: Counters,
        current_mb: u64,
        full: bool,
    ) -> Evaluation {
        let forced = c.requested.saturating_sub(self.baseline.requested);
        let timed = c.timed.saturating_sub(self.baseline.timed);
        let wal_bytes = c.wal_lsn.saturating_sub(self.baseline.wal_lsn);
        let elapsed_ms = now_ms.saturating_sub(self.baseline_ms);
        let cycle_bytes = self.cycle_bytes(s, now_ms, c.wal_lsn);
        let mut window = self.window();
        if window.len() == WINDOW {
            window.remove(0);
        }
        window.push(cycle_bytes);
        // A partial interval (preview) counts as quiet only if it would be.
        let quiet_before = self.quiet_intervals;
        if forced == 0 && (full || quiet_before > 0) {
            self.quiet_intervals = quiet_before.saturating_add(1);
        }
        let inputs = self.inputs(s, current_mb, forced, &window);
        let proposal = propose(&inputs);
        let needed_mb = measured_need_mb(&inputs);
        self.quiet_intervals = quiet_before;
        let current = current_mb.min(MAX_SIZE_MB);
        // Bringing the size down to the disk cap protects the disk: the rate
        // limits do not hold it back.
        let protective = matches!(proposal, Proposal::DiskCap { .. });
        let (intended, new_mb, reason) = match proposal {
            Proposal::Keep { reason } => {
                return Evaluation {
                    forced,
                    timed,
                    wal_bytes,
                    elapsed_ms,
                    cycle_bytes,
                    needed_mb,
                    decision: None,
                    keep_reason: reason,
                };
            }
            Proposal::AtCap { reason } => (Action::Capped, current, reason),
            Proposal::Grow {
                new_mb,
                capped,
                reason,
                ..
            } => (
                if capped {
                    Action::Capped
                } else {
                    Action::Increase
                },
                new_mb,
                reason,
            ),
            Proposal::Shrink { new_mb, reason } => (Action::Decrease, new_mb, reason),
            Proposal::DiskCap { new_mb, reason } => (Action::Capped, new_mb, reason),
        };
        let mut decision = Decision {
            action: intended,
            intended,
            old_mb: current,
            new_mb,
            reason,
        };
        if new_mb != current {
            if s.dry_run {
                decision.action = Action::DryRun;
                decision.reason = format!("dry run (walrus.dry_run): {}", decision.reason);
            } else if !protective && let Some(limit) = self.rate_limited(s, now_ms) {
                decision.action = Action::Skipped;
                decision.reason = format!("{limit}; would have: {}", decision.reason);
            }
        }
        Evaluation {
            forced,
            timed,
            wal_bytes,
            elapsed_ms,
            cycle_bytes,
            needed_mb,
            decision: Some(decision),
            keep_reason: String::new(),
        }
    }
}

/// `value * num / den` without overflow, saturating at `u64::MAX`.
#[must_use]
pub fn scale(value: u64, num: u64, den: u64) -> u64 {
    let r = u128::from(value) * u128::from(num) / u128::from(den.max(1));
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// A size a server applied at some time: its own last change, or the last
/// applied decision another server recorded in `walrus.history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownSize {
    pub at_ms: u64,
    pub size_mb: u64,
}

/// Where the size carried over to a promoted standby comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarrySource {
    /// The standby's own last decision while in recovery.
    Standby,
    /// The last applied decision of the old primary (replicated in
    /// `walrus.history`).
    Primary,
}

/// The best size a just-promoted standby knows: the newer of its own last
/// change and the old primary's last applied decision (its own on a tie).
#[must_use]
pub fn carry_over(
    standby: Option<KnownSize>,
    primary: Option<KnownSize>,
) -> Option<(CarrySource, KnownSize)> {
    match (standby, primary) {
        (Some(s), Some(p)) if p.at_ms > s.at_ms => Some((CarrySource::Primary, p)),
        (Some(s), _) => Some((CarrySource::Standby, s)),
        (None, Some(p)) => Some((CarrySource::Primary, p)),
        (None, None) => None,
    }
}

/// The decision that carries `known` over to a promoted server whose size
/// is `current_mb` (None when it already has that size). It is bounded by
/// the ceiling (`walrus.max` and the disk cap: then `capped`) and honours
/// dry run, but not the rate limits: it restores a size instead of
/// reacting to a measurement. `why` names the source for the reason.
#[must_use]
pub fn carry_over_decision(
    s: &Settings,
    current_mb: u64,
    known: KnownSize,
    why: &str,
) -> Option<Decision> {
    let ceiling = super::strategy::Ceiling::of(s.max_mb, s.disk_cap_mb);
    let floor = s.segment_mb.max(1).saturating_mul(2);
    let wanted = known.size_mb.clamp(floor, MAX_SIZE_MB);
    let new_mb = wanted.min(ceiling.mb);
    let current = current_mb.min(MAX_SIZE_MB);
    if new_mb == current {
        return None;
    }
    let mut reason = format!("promotion: {why} set max_wal_size to {}MB", known.size_mb);
    let intended = if new_mb < wanted {
        reason.push_str(&format!("; capped at {}", ceiling.describe()));
        Action::Capped
    } else if new_mb > current {
        Action::Increase
    } else {
        Action::Decrease
    };
    let mut decision = Decision {
        action: intended,
        intended,
        old_mb: current,
        new_mb,
        reason,
    };
    if s.dry_run {
        decision.action = Action::DryRun;
        decision.reason = format!("dry run (walrus.dry_run): {}", decision.reason);
    }
    Some(decision)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sizing::MB;

    /// Test settings: no cooldown and no hourly limit.
    pub(crate) fn settings(algorithm: Algorithm) -> Settings {
        Settings {
            enabled: true,
            algorithm,
            threshold: 2,
            max_mb: 4096,
            min_mb: 32,
            shrink_enable: true,
            shrink_factor: 0.75,
            shrink_intervals: 5,
            checkpoint_timeout_ms: 30_000,
            interval_ms: 30_000,
            completion_target: 0.9,
            segment_mb: 16,
            dry_run: false,
            cooldown_ms: 0,
            max_changes_per_hour: 0,
            disk_cap_mb: None,
            standby: false,
        }
    }

    fn c(requested: u64, lsn_mb: u64) -> Counters {
        Counters {
            requested,
            timed: 0,
            wal_lsn: lsn_mb * MB,
            stats_reset: 7,
        }
    }

    fn decision(t: Tick) -> Option<Decision> {
        match t {
            Tick::Evaluated(e) => e.decision,
            other => panic!("expected an evaluation, got {other:?}"),
        }
    }

    #[test]
    fn first_look_is_a_baseline_not_a_decision() {
        let s = settings(Algorithm::Multiplicative);
        let mut st = SizerState::new();
        // Counters full of history from before the worker started.
        assert_eq!(
            st.tick(&s, 1_000, c(500, 9000), 32),
            Tick::Baseline {
                reason: "first look"
            }
        );
        // One interval later with no new forced checkpoints: no grow.
        assert_eq!(decision(st.tick(&s, 31_000, c(500, 9001), 32)), None);
    }

    #[test]
    fn enable_off_and_on_takes_a_new_baseline() {
        let mut s = settings(Algorithm::Multiplicative);
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        s.enabled = false;
        assert_eq!(st.tick(&s, 30_000, c(10, 100), 32), Tick::Disabled);
        s.enabled = true;
        assert!(matches!(
            st.tick(&s, 60_000, c(20, 200), 32),
            Tick::Baseline { .. }
        ));
        assert_eq!(decision(st.tick(&s, 90_000, c(20, 201), 32)), None);
    }

    #[test]
    fn statistics_reset_takes_a_new_baseline() {
        let s = settings(Algorithm::Multiplicative);
        let mut st = SizerState::new();
        st.tick(&s, 0, c(100, 0), 32);
        let mut after = c(3, 10);
        after.stats_reset = 8;
        assert_eq!(
            st.tick(&s, 30_000, after, 32),
            Tick::Baseline {
                reason: "statistics reset"
            }
        );
        // A reset that leaves a larger counter is still caught by the timestamp.
        let mut st = SizerState::new();
        st.tick(&s, 0, c(1, 0), 32);
        let mut after = c(50, 10);
        after.stats_reset = 9;
        assert!(matches!(
            st.tick(&s, 30_000, after, 32),
            Tick::Baseline { .. }
        ));
    }

    #[test]
    fn early_wakeups_are_not_intervals() {
        let s = settings(Algorithm::Multiplicative);
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        for t in [1_000, 5_000, 29_999] {
            assert!(matches!(st.tick(&s, t, c(0, 0), 32), Tick::Early { .. }));
        }
        assert_eq!(st.quiet_intervals(), 0);
        assert_eq!(st.full_intervals(), 0);
        assert!(matches!(
            st.tick(&s, 30_000, c(0, 0), 32),
            Tick::Evaluated(_)
        ));
        assert_eq!(st.quiet_intervals(), 1);
    }

    #[test]
    fn grows_then_shrinks_after_quiet_intervals() {
        let mut s = settings(Algorithm::Multiplicative);
        s.min_mb = 64;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        let d = decision(st.tick(&s, 30_000, c(3, 100), 32)).unwrap();
        assert_eq!((d.action, d.old_mb, d.new_mb), (Action::Increase, 32, 128));
        st.record_change(30_000);
        let mut now = 30_000;
        for _ in 0..4 {
            now += 30_000;
            assert_eq!(decision(st.tick(&s, now, c(3, 100), 128)), None);
        }
        now += 30_000;
        let d = decision(st.tick(&s, now, c(3, 100), 128)).unwrap();
        assert_eq!((d.action, d.new_mb), (Action::Decrease, 96));
        // The quiet count restarts after a shrink.
        assert_eq!(st.quiet_intervals(), 0);
    }

    #[test]
    fn dry_run_records_without_changing() {
        let mut s = settings(Algorithm::Multiplicative);
        s.dry_run = true;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        let d = decision(st.tick(&s, 30_000, c(2, 10), 32)).unwrap();
        assert_eq!(d.action, Action::DryRun);
        assert_eq!(d.intended, Action::Increase);
        assert!(!d.action.changes_size());
    }

    #[test]
    fn cooldown_and_hourly_limit_skip_changes() {
        let mut s = settings(Algorithm::Multiplicative);
        s.cooldown_ms = 300_000;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        assert_eq!(
            decision(st.tick(&s, 30_000, c(2, 10), 32)).unwrap().action,
            Action::Increase
        );
        st.record_change(30_000);
        let d = decision(st.tick(&s, 60_000, c(4, 20), 96)).unwrap();
        assert_eq!(d.action, Action::Skipped);
        assert!(d.reason.starts_with("cooldown"), "{}", d.reason);
        // After the cooldown it goes through.
        let d = decision(st.tick(&s, 360_000, c(6, 30), 96)).unwrap();
        assert_eq!(d.action, Action::Increase);

        let mut s = settings(Algorithm::Multiplicative);
        s.max_changes_per_hour = 2;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        let mut size = 32;
        let mut requested = 0;
        let mut actions = Vec::new();
        for i in 1..=4 {
            requested += 2;
            let d = decision(st.tick(&s, i * 30_000, c(requested, 0), size)).unwrap();
            actions.push(d.action);
            if d.action.changes_size() {
                st.record_change(i * 30_000);
                size = d.new_mb;
            }
        }
        assert_eq!(
            actions,
            [
                Action::Increase,
                Action::Increase,
                Action::Skipped,
                Action::Skipped
            ]
        );
        // The window slides: an hour after the first change one more is allowed.
        assert_eq!(st.hour_window_start(90_000), Some(30_000));
        assert_eq!(st.changes_last_hour(30_000 + HOUR_MS), 1);
        assert_eq!(st.hour_window_start(30_000 + HOUR_MS), Some(60_000));
        assert_eq!(st.hour_window_start(60_000 + HOUR_MS), None);
        assert!(st.rate_limited(&s, 30_000 + HOUR_MS).is_none());
    }

    #[test]
    fn at_cap_is_recorded_without_a_change() {
        let mut s = settings(Algorithm::Multiplicative);
        s.max_mb = 64;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 64);
        let d = decision(st.tick(&s, 30_000, c(5, 10), 64)).unwrap();
        assert_eq!((d.action, d.old_mb, d.new_mb), (Action::Capped, 64, 64));
    }

    #[test]
    fn preview_changes_nothing() {
        let s = settings(Algorithm::WalRate);
        let mut st = SizerState::new();
        assert!(st.preview(&s, 0, c(0, 0), 32).is_none());
        st.tick(&s, 0, c(0, 0), 32);
        let before = format!("{st:?}");
        let e = st.preview(&s, 10_000, c(4, 100), 32).unwrap();
        assert_eq!(e.decision.unwrap().action, Action::Increase);
        // 100 MB in 10 s is 300 MB per 30 s checkpoint cycle.
        assert_eq!(e.cycle_bytes, 300 * MB);
        assert_eq!(format!("{st:?}"), before);
    }

    #[test]
    fn an_idle_start_of_the_interval_is_not_averaged_in() {
        let s = settings(Algorithm::WalRate);
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 32);
        // Idle for 20 s, then 10 MB/s for the last 10 s.
        for t in [5_000_u64, 10_000, 15_000, 20_000] {
            st.sample(t, 0);
        }
        st.sample(25_000, 50 * MB);
        let Tick::Evaluated(e) = st.tick(&s, 30_000, c(3, 100), 32) else {
            panic!()
        };
        // 10 MB/s over a 30 s cycle, not 100 MB averaged over 30 s.
        assert_eq!(e.cycle_bytes, 300 * MB);
        // A steady interval is its plain average.
        for t in [35_000_u64, 40_000, 45_000, 50_000, 55_000] {
            st.sample(t, 100 * MB + (t - 30_000) / 1000 * MB);
        }
        let Tick::Evaluated(e) = st.tick(&s, 60_000, c(3, 130), 32) else {
            panic!()
        };
        assert_eq!(e.cycle_bytes, 30 * MB);
        // Samples out of order or beyond capacity are ignored.
        for t in 0..100 {
            st.sample(60_000 - t, 0);
        }
        st.sample(61_000, 131 * MB);
        assert_eq!(st.samples_len, 1);
    }

    #[test]
    fn scale_saturates() {
        assert_eq!(scale(u64::MAX, u64::MAX, 1), u64::MAX);
        assert_eq!(scale(10, 3, 0), 30);
        assert_eq!(scale(100, 30_000, 3_000), 1000);
    }

    #[test]
    fn a_disk_cap_shrink_is_capped_and_not_held_back_by_the_rate_limits() {
        let mut s = settings(Algorithm::WalRate);
        s.cooldown_ms = 3_600_000;
        s.max_changes_per_hour = 1;
        let mut st = SizerState::new();
        st.tick(&s, 0, c(0, 0), 512);
        st.record_change(0);
        s.disk_cap_mb = Some(128);
        let d = decision(st.tick(&s, 30_000, c(0, 10), 512)).unwrap();
        assert_eq!((d.action, d.old_mb, d.new_mb), (Action::Capped, 512, 128));
        assert!(d.reason.contains("disk cap"), "{}", d.reason);
        // Dry run still holds it back.
        s.dry_run = true;
        let d = decision(st.tick(&s, 60_000, c(0, 20), 512)).unwrap();
        assert_eq!((d.action, d.intended), (Action::DryRun, Action::Capped));
    }

    #[test]
    fn promotion_carries_the_newer_known_size() {
        let own = KnownSize {
            at_ms: 1_000,
            size_mb: 320,
        };
        let old_primary = KnownSize {
            at_ms: 2_000,
            size_mb: 304,
        };
        assert_eq!(
            carry_over(Some(own), Some(old_primary)),
            Some((CarrySource::Primary, old_primary))
        );
        let later_own = KnownSize {
            at_ms: 3_000,
            ..own
        };
        assert_eq!(
            carry_over(Some(later_own), Some(old_primary)),
            Some((CarrySource::Standby, later_own))
        );
        assert_eq!(
            carry_over(None, Some(old_primary)),
            Some((CarrySource::Primary, old_primary))
        );
        assert_eq!(carry_over(None, None), None);

        let mut s = settings(Algorithm::WalRate);
        let d = carry_over_decision(&s, 32, old_primary, "the old primary").unwrap();
        assert_eq!((d.action, d.old_mb, d.new_mb), (Action::Increase, 32, 304));
        assert!(
            d.reason.starts_with("promotion: the old primary"),
            "{}",
            d.reason
        );
        assert_eq!(carry_over_decision(&s, 304, old_primary, "x"), None);
        let d = carry_over_decision(&s, 1024, old_primary, "x").unwrap();
        assert_eq!(d.action, Action::Decrease);
        // Bounded by the ceiling.
        s.disk_cap_mb = Some(128);
        let d = carry_over_decision(&s, 32, old_primary, "x").unwrap();
        assert_eq!((d.action, d.new_mb), (Action::Capped, 128));
        s.dry_run = true;
        let d = carry_over_decision(&s, 32, old_primary, "x").unwrap();
        assert_eq!((d.action, d.intended), (Action::DryRun, Action::Capped));
        // Nonsense sizes are clamped to PostgreSQL's range.
        s.dry_run = false;
        s.disk_cap_mb = None;
        let tiny = KnownSize {
            at_ms: 0,
            size_mb: 0,
        };
        assert_eq!(carry_over_decision(&s, 32, tiny, "x"), None);
    }
}
