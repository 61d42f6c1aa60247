//! The sizing strategies (`walrus.algorithm`).
//!
//! - [`Algorithm::Multiplicative`]: the documented rule of pg_walsizer and the
//!   public pg_walrus: when the forced checkpoints of an interval reach the
//!   threshold, multiply the size by `forced + 1`; shrink by `shrink_factor`
//!   after `shrink_intervals` quiet intervals.
//! - [`Algorithm::WalRate`]: size for the WAL actually written. The peak
//!   checkpoint cycle observed in the window, times [`HEADROOM`], must fit
//!   under PostgreSQL's truncated `CheckPointSegments`; one step gets there.
//!   Shrinking never goes below what that peak needs.
//! - [`Algorithm::Percentile`]: like WAL rate but sized for the
//!   [`PERCENTILE`]th percentile of the window, for bursty loads where sizing
//!   for the rare peak would waste disk.
//!
//! Every strategy is bounded by the ceiling: `walrus.max`, or the disk cap
//! (see [`super::disk`]) when that is lower. A size above the disk cap is
//! brought down to it first, whatever the checkpoints say.
//!
//! On a standby the same strategies size `max_wal_size` for restartpoints.
//! A restartpoint can only start at a checkpoint record replayed from the
//! primary, whose redo point is up to `checkpoint_completion_target` of a
//! cycle older than the record, and the standby's timed restartpoint may
//! come up to one `checkpoint_timeout` after that record: the WAL past the
//! standby's redo point, which is what forces a restartpoint, reaches up to
//! [`standby_span_factor`] cycles. The measured strategies size for that
//! span instead of one cycle.

use super::checkpoint::{MAX_SIZE_MB, required_size_mb};

/// Safety margin on the measured cycle for the WAL-rate and percentile
/// strategies.
pub const HEADROOM: f64 = 1.5;

/// Percentile of the window the percentile strategy sizes for.
pub const PERCENTILE: u32 = 90;

crate::sql_enum! {
    /// A sizing strategy (the `walrus.algorithm` values).
    pub enum Algorithm {
        Multiplicative = 1 => "multiplicative",
        WalRate = 2 => "wal_rate",
        Percentile = 3 => "percentile",
    }
}

impl Algorithm {
    /// The name used by `walrus.algorithm`.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

/// How many checkpoint cycles of WAL a standby's restartpoint span reaches
/// (see the module documentation): `2 + checkpoint_completion_target`.
#[must_use]
pub fn standby_span_factor(completion_target: f64) -> f64 {
    let target = if completion_target.is_finite() {
        completion_target.clamp(0.0, 1.0)
    } else {
        0.9
    };
    2.0 + target
}

/// What a strategy wants to do about one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    /// Leave the size as it is.
    Keep { reason: String },
    /// Grow to `new_mb` (already capped at `walrus.max`); `capped` tells that
    /// the cap cut the wish short, `wanted_mb` is what the strategy wanted.
    Grow {
        new_mb: u64,
        wanted_mb: u64,
        capped: bool,
        reason: String,
    },
    /// Already at or above the ceiling while the threshold was met.
    AtCap { reason: String },
    /// Shrink to `new_mb`.
    Shrink { new_mb: u64, reason: String },
    /// Above the disk cap: bring it down to `new_mb` (recorded as `capped`;
    /// not held back by the rate limits).
    DiskCap { new_mb: u64, reason: String },
}

/// The inputs a strategy looks at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub algorithm: Algorithm,
    pub current_mb: u64,
    pub forced: u64,
    pub threshold: u64,
    pub max_mb: u64,
    pub min_mb: u64,
    pub shrink_enable: bool,
    pub shrink_factor: f64,
    pub shrink_intervals: u32,
    pub quiet_intervals: u32,
    pub segment_mb: u64,
    pub completion_target: f64,
    /// Checkpoint-cycle WAL (bytes per `checkpoint_timeout`) of the recent
    /// full intervals, oldest first, the interval being judged included.
    pub window: &'a [u64],
    /// The disk cap in MB (None: no cap).
    pub disk_cap_mb: Option<u64>,
    /// Sizing a standby for restartpoints.
    pub standby: bool,
}

/// The `p`th percentile (nearest rank) of `values`; 0 for an empty slice.
#[must_use]
pub fn percentile(values: &[u64], p: u32) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let p = u64::from(p.clamp(1, 100));
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(sorted.len() - 1);
    sorted[index]
}

/// The size the measured window needs under a WAL-based strategy (0 when the
/// strategy does not measure, or nothing was measured yet).
#[must_use]
pub fn measured_need_mb(inp: &Inputs<'_>) -> u64 {
    let cycle = match inp.algorithm {
        Algorithm::Multiplicative => return 0,
        Algorithm::WalRate => inp.window.iter().copied().max().unwrap_or(0),
        Algorithm::Percentile => percentile(inp.window, PERCENTILE),
    };
    if cycle == 0 {
        return 0;
    }
    let span = if inp.standby {
        let scaled = (cycle as f64 * standby_span_factor(inp.completion_target)).ceil();
        if scaled >= u64::MAX as f64 {
            u64::MAX
        } else {
            scaled as u64
        }
    } else {
        cycle
    };
    required_size_mb(span, inp.segment_mb, inp.completion_target, HEADROOM)
}

/// The ceiling growth stops at: `walrus.max`, or the disk cap when lower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceiling {
    pub mb: u64,
    /// The disk cap is the binding limit.
    pub disk: bool,
}

impl Ceiling {
    #[must_use]
    pub fn of(max_mb: u64, disk_cap_mb: Option<u64>) -> Ceiling {
        let max_mb = max_mb.clamp(1, MAX_SIZE_MB);
        match disk_cap_mb {
            Some(cap) if cap < max_mb => Ceiling {
                mb: cap,
                disk: true,
            },
            _ => Ceiling {
                mb: max_mb,
                disk: false,
            },
        }
    }

    /// How a reason names it.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.disk {
            format!(
                "the disk cap {}MB (walrus.max_wal_disk_fraction of the space pg_wal can use)",
                self.mb
            )
        } else {
            format!("walrus.max {}MB", self.mb)
        }
    }
}

/// "checkpoints" on a primary, "restartpoints" on a standby.
fn points(inp: &Inputs<'_>) -> &'static str {
    if inp.standby {
        "restartpoints"
    } else {
        "checkpoints"
    }
}

/// Decide what to do about one full interval.
#[must_use]
pub fn propose(inp: &Inputs<'_>) -> Proposal {
    if let Some(cap) = inp.disk_cap_mb
        && inp.current_mb > cap
    {
        return Proposal::DiskCap {
            new_mb: cap,
            reason: format!(
                "max_wal_size {}MB is above the disk cap {cap}MB (walrus.max_wal_disk_fraction of the space pg_wal can use)",
                inp.current_mb
            ),
        };
    }
    let ceiling = Ceiling::of(inp.max_mb, inp.disk_cap_mb);
    let threshold = inp.threshold.max(1);
    if inp.forced >= threshold {
        return propose_grow(inp, ceiling);
    }
    propose_shrink(inp)
}

fn propose_grow(inp: &Inputs<'_>, ceiling: Ceiling) -> Proposal {
    let current = inp.current_mb;
    let max_mb = ceiling.mb;
    let points = points(inp);
    if current >= max_mb {
        return Proposal::AtCap {
            reason: format!(
                "{} forced {points} but max_wal_size {}MB is already at {}",
                inp.forced,
                current,
                ceiling.describe()
            ),
        };
    }
    let (wanted, why) = match inp.algorithm {
        Algorithm::Multiplicative => (
            current.saturating_mul(inp.forced.saturating_add(1)),
            format!(
                "{} forced {points} >= threshold {}",
                inp.forced, inp.threshold
            ),
        ),
        Algorithm::WalRate | Algorithm::Percentile => {
            let need = measured_need_mb(inp);
            if need <= current {
                return Proposal::Keep {
                    reason: format!(
                        "{} forced {points}, but the measured WAL ({}) fits {}MB: not caused by WAL volume",
                        inp.forced,
                        describe_cycle(inp),
                        current
                    ),
                };
            }
            (
                need,
                format!(
                    "{} forced {points} >= threshold {}; {} needs {}MB",
                    inp.forced,
                    inp.threshold,
                    describe_cycle(inp),
                    need
                ),
            )
        }
    };
    if wanted > max_mb {
        Proposal::Grow {
            new_mb: max_mb,
            wanted_mb: wanted,
            capped: true,
            reason: format!(
                "{why}; capped at {} (wanted {wanted}MB)",
                ceiling.describe()
            ),
        }
    } else {
        Proposal::Grow {
            new_mb: wanted,
            wanted_mb: wanted,
            capped: false,
            reason: why,
        }
    }
}

fn propose_shrink(inp: &Inputs<'_>) -> Proposal {
    let current = inp.current_mb;
    if !inp.shrink_enable || inp.quiet_intervals < inp.shrink_intervals.max(1) {
        return Proposal::Keep {
            reason: format!(
                "{} forced {} < threshold {}; {} of {} quiet intervals before a shrink",
                inp.forced,
                points(inp),
                inp.threshold.max(1),
                inp.quiet_intervals,
                inp.shrink_intervals.max(1)
            ),
        };
    }
    let min_mb = inp.min_mb.min(MAX_SIZE_MB);
    if current <= min_mb {
        return Proposal::Keep {
            reason: format!("max_wal_size {current}MB is at or below walrus.min_size {min_mb}MB"),
        };
    }
    let factor = if inp.shrink_factor.is_finite() {
        inp.shrink_factor.clamp(0.01, 0.99)
    } else {
        0.75
    };
    let shrunk = ((current as f64) * factor).floor() as u64;
    let need = measured_need_mb(inp);
    let target = shrunk.max(min_mb).max(need);
    if target >= current {
        return Proposal::Keep {
            reason: format!(
                "{} quiet intervals, but the measured WAL ({}) needs {}MB: not shrinking",
                inp.quiet_intervals,
                describe_cycle(inp),
                need
            ),
        };
    }
    let mut reason = format!(
        "{} quiet intervals >= walrus.shrink_intervals {}; shrink by {}",
        inp.quiet_intervals, inp.shrink_intervals, factor
    );
    if target == need && need > shrunk.max(min_mb) {
        reason.push_str(&format!(", kept at {need}MB for the measured WAL"));
    } else if target == min_mb && min_mb > shrunk {
        reason.push_str(&format!(", floored at walrus.min_size {min_mb}MB"));
    }
    Proposal::Shrink {
        new_mb: target,
        reason,
    }
}

fn describe_cycle(inp: &Inputs<'_>) -> String {
    let cycle = describe_window(inp);
    if inp.standby && inp.algorithm != Algorithm::Multiplicative {
        format!(
            "{cycle}, restartpoint span x{:.1}",
            standby_span_factor(inp.completion_target)
        )
    } else {
        cycle
    }
}

fn describe_window(inp: &Inputs<'_>) -> String {
    match inp.algorithm {
        Algorithm::Multiplicative => String::from("unmeasured"),
        Algorithm::WalRate => format!(
            "peak cycle {}MB",
            inp.window
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .div_ceil(super::MB)
        ),
        Algorithm::Percentile => format!(
            "p{} cycle {}MB",
            PERCENTILE,
            percentile(inp.window, PERCENTILE).div_ceil(super::MB)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizing::{MB, checkpoint::cycle_capacity_bytes};

    fn inputs(algorithm: Algorithm, window: &[u64]) -> Inputs<'_> {
        Inputs {
            algorithm,
            current_mb: 32,
            forced: 0,
            threshold: 2,
            max_mb: 4096,
            min_mb: 32,
            shrink_enable: true,
            shrink_factor: 0.75,
            shrink_intervals: 5,
            quiet_intervals: 0,
            segment_mb: 16,
            completion_target: 0.9,
            window,
            disk_cap_mb: None,
            standby: false,
        }
    }

    #[test]
    fn multiplicative_grows_by_forced_plus_one() {
        let mut i = inputs(Algorithm::Multiplicative, &[]);
        i.forced = 2;
        assert!(matches!(
            propose(&i),
            Proposal::Grow {
                new_mb: 96,
                capped: false,
                ..
            }
        ));
        i.forced = 1;
        assert!(
            matches!(propose(&i), Proposal::Keep { .. }),
            "below threshold"
        );
    }

    #[test]
    fn growth_is_capped_and_at_cap_is_reported() {
        let mut i = inputs(Algorithm::Multiplicative, &[]);
        i.forced = 10;
        i.max_mb = 200;
        match propose(&i) {
            Proposal::Grow {
                new_mb,
                wanted_mb,
                capped,
                ..
            } => {
                assert_eq!(new_mb, 200);
                assert_eq!(wanted_mb, 32 * 11);
                assert!(capped);
            }
            other => panic!("{other:?}"),
        }
        i.current_mb = 200;
        assert!(matches!(propose(&i), Proposal::AtCap { .. }));
    }

    #[test]
    fn wal_rate_sizes_the_peak_in_one_step() {
        let window = [10 * MB, 80 * MB, 40 * MB];
        let mut i = inputs(Algorithm::WalRate, &window);
        i.forced = 5;
        match propose(&i) {
            Proposal::Grow {
                new_mb,
                capped: false,
                ..
            } => {
                assert!(cycle_capacity_bytes(new_mb, 16, 0.9) >= 80 * MB * 3 / 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wal_rate_ignores_forced_checkpoints_the_wal_does_not_explain() {
        let window = [MB];
        let mut i = inputs(Algorithm::WalRate, &window);
        i.current_mb = 1024;
        i.forced = 3;
        assert!(matches!(propose(&i), Proposal::Keep { .. }));
    }

    #[test]
    fn percentile_ignores_a_single_burst() {
        let mut window = vec![20 * MB; 19];
        window.push(2000 * MB);
        assert_eq!(percentile(&window, 90), 20 * MB);
        let mut i = inputs(Algorithm::Percentile, &window);
        i.forced = 4;
        i.current_mb = 160;
        let wal_rate = Inputs {
            algorithm: Algorithm::WalRate,
            ..i
        };
        let by_rate = match propose(&wal_rate) {
            Proposal::Grow { new_mb, .. } => new_mb,
            other => panic!("{other:?}"),
        };
        assert!(by_rate > 3000);
        assert!(
            matches!(propose(&i), Proposal::Keep { .. }),
            "p90 fits 160MB"
        );
    }

    #[test]
    fn shrink_waits_for_quiet_intervals_and_respects_floors() {
        let mut i = inputs(Algorithm::Multiplicative, &[]);
        i.current_mb = 1000;
        i.quiet_intervals = 4;
        assert!(matches!(propose(&i), Proposal::Keep { .. }));
        i.quiet_intervals = 5;
        assert_eq!(
            propose(&i),
            Proposal::Shrink {
                new_mb: 750,
                reason: "5 quiet intervals >= walrus.shrink_intervals 5; shrink by 0.75".into()
            }
        );
        i.min_mb = 900;
        assert!(matches!(propose(&i), Proposal::Shrink { new_mb: 900, .. }));
        i.shrink_enable = false;
        assert!(matches!(propose(&i), Proposal::Keep { .. }));
    }

    #[test]
    fn measured_strategies_never_shrink_below_the_peak_need() {
        let window = [100 * MB; 5];
        let mut i = inputs(Algorithm::WalRate, &window);
        let need = measured_need_mb(&i);
        i.current_mb = need + 16;
        i.quiet_intervals = 5;
        assert!(matches!(propose(&i), Proposal::Shrink { new_mb, .. } if new_mb == need));
        i.current_mb = need;
        assert!(matches!(propose(&i), Proposal::Keep { .. }));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let window = [u64::MAX];
        let mut i = inputs(Algorithm::Multiplicative, &window);
        i.current_mb = MAX_SIZE_MB - 1;
        i.forced = u64::MAX;
        i.max_mb = u64::MAX;
        assert!(matches!(
            propose(&i),
            Proposal::Grow {
                new_mb: MAX_SIZE_MB,
                capped: true,
                ..
            }
        ));
        i.algorithm = Algorithm::WalRate;
        assert!(matches!(
            propose(&i),
            Proposal::Grow {
                new_mb: MAX_SIZE_MB,
                ..
            }
        ));
        i.shrink_factor = f64::NAN;
        i.forced = 0;
        i.quiet_intervals = u32::MAX;
        assert!(matches!(propose(&i), Proposal::Keep { .. }));
    }

    #[test]
    fn the_disk_cap_bounds_growth_and_brings_a_larger_size_down() {
        let window = [300 * MB];
        let mut i = inputs(Algorithm::WalRate, &window);
        i.forced = 5;
        i.disk_cap_mb = Some(128);
        match propose(&i) {
            Proposal::Grow {
                new_mb: 128,
                capped: true,
                reason,
                ..
            } => assert!(reason.contains("disk cap 128MB"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // walrus.max below the disk cap is the binding limit.
        i.max_mb = 64;
        match propose(&i) {
            Proposal::Grow {
                new_mb: 64, reason, ..
            } => assert!(reason.contains("walrus.max 64MB"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A size above the cap comes down to it even when quiet or forced.
        i.max_mb = 4096;
        i.current_mb = 512;
        assert!(matches!(propose(&i), Proposal::DiskCap { new_mb: 128, .. }));
        i.forced = 0;
        assert!(matches!(propose(&i), Proposal::DiskCap { new_mb: 128, .. }));
        // At the cap with the threshold met: recorded as at the ceiling.
        i.current_mb = 128;
        i.forced = 3;
        assert!(matches!(propose(&i), Proposal::AtCap { reason } if reason.contains("disk cap")));
    }

    #[test]
    fn a_standby_sizes_for_the_restartpoint_span() {
        let window = [30 * MB];
        let mut i = inputs(Algorithm::WalRate, &window);
        let primary = measured_need_mb(&i);
        i.standby = true;
        let standby = measured_need_mb(&i);
        // The span is (2 + 0.9) cycles: 87 MB, with the headroom 130.5 MB.
        assert!(cycle_capacity_bytes(standby, 16, 0.9) as f64 >= 30.0 * 2.9 * 1.5 * MB as f64);
        assert!(standby > primary);
        i.forced = 4;
        match propose(&i) {
            Proposal::Grow { reason, .. } => {
                assert!(reason.starts_with("4 forced restartpoints"), "{reason}");
                assert!(reason.contains("restartpoint span"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // The multiplicative rule measures nothing: the same on both.
        i.algorithm = Algorithm::Multiplicative;
        assert_eq!(measured_need_mb(&i), 0);
        assert_eq!(standby_span_factor(f64::NAN), 2.9);
        assert_eq!(standby_span_factor(5.0), 3.0);
    }
}
