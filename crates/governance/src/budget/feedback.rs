//! Replica-lag and WAL-disk feedback: a factor between 0 and 1 that scales
//! the rate of every enforcing policy while a standby's replay lags too far
//! behind, or free space on the WAL filesystem falls below a floor.
//!
//! The control law (applied every `tick` by pg_wal_budget's worker):
//! - pressure = the larger of `worst lag / lag limit` and `floor / free
//!   space` (each only when its limit is set);
//! - above 1 (a limit is exceeded), the factor falls quickly: it is
//!   multiplied by `DECREASE_PER_SECOND` (0.2) per second, and held at 0 once
//!   below `OFF_BELOW`;
//! - below `RECOVER_BELOW` (0.8: the condition has cleared with a margin),
//!   it recovers gradually: `RECOVERY_PER_SECOND` (0.1) is added per second,
//!   so a full recovery takes at least ten seconds;
//! - in between (the band from 0.8 to 1) it settles: it moves by
//!   `BAND_GAIN × (0.9 − pressure) − BAND_DAMPING × d(pressure)/dt` per
//!   second, toward the factor at which the pressure stays at 0.9 (writes
//!   as fast as the standby replays), damped by the pressure's trend so that
//!   it does not swing around that point.
//!
//! Policies are scaled from the lowest priority up: with the policies'
//! distinct priorities ranked from the lowest (0) to the highest (n - 1),
//! the reduction `1 - factor` is spread so that the lowest priority level is
//! reduced first, fully, then the next: a level of rank `k` gets the factor
//! `1 - clamp(reduction * n - k, 0, 1)`.

/// Which limit is binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limiting {
    #[default]
    None,
    ReplicaLag,
    WalDisk,
}

impl Limiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Limiting::None => "none",
            Limiting::ReplicaLag => "replica_lag",
            Limiting::WalDisk => "wal_disk",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Limiting::None => 0,
            Limiting::ReplicaLag => 1,
            Limiting::WalDisk => 2,
        }
    }

    pub fn from_code(code: u8) -> Limiting {
        match code {
            1 => Limiting::ReplicaLag,
            2 => Limiting::WalDisk,
            _ => Limiting::None,
        }
    }
}

/// What the worker measured this tick, and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// The worst replay lag (bytes) among the counted standbys; None when
    /// none is connected.
    pub worst_lag: Option<u64>,
    /// 0 = off.
    pub lag_limit: u64,
    /// Free bytes on the WAL filesystem; None when unknown.
    pub free: Option<u64>,
    /// 0 = off.
    pub free_floor: u64,
}

impl Reading {
    /// The pressure and which limit it comes from.
    pub fn pressure(&self) -> (f64, Limiting) {
        let lag = match (self.worst_lag, self.lag_limit) {
            (Some(lag), limit) if limit > 0 => lag as f64 / limit as f64,
            _ => 0.0,
        };
        let disk = match (self.free, self.free_floor) {
            (Some(free), floor) if floor > 0 => floor as f64 / (free.max(1)) as f64,
            _ => 0.0,
        };
        if disk > lag {
            (disk, Limiting::WalDisk)
        } else {
            (lag, Limiting::ReplicaLag)
        }
    }
}

pub const DECREASE_PER_SECOND: f64 = 0.2;
pub const RECOVERY_PER_SECOND: f64 = 0.1;
pub const RECOVER_BELOW: f64 = 0.8;
pub const OFF_BELOW: f64 = 0.01;
pub const BAND_TARGET: f64 = 0.9;
pub const BAND_GAIN: f64 = 0.5;
pub const BAND_DAMPING: f64 = 2.0;

/// The feedback state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controller {
    pub factor: f64,
    /// What held the factor below 1 last (None once recovered).
    pub limiting: Limiting,
    /// The pressure at the previous step (for its trend).
    last_pressure: Option<f64>,
}

/// What a step changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// The factor left 1: feedback engaged.
    Engaged(Limiting),
    /// The factor is back at 1.
    Released,
}

impl Default for Controller {
    fn default() -> Controller {
        Controller {
            factor: 1.0,
            limiting: Limiting::None,
            last_pressure: None,
        }
    }
}

impl Controller {
    /// One step of `elapsed_ms`.
    pub fn step(&mut self, reading: &Reading, elapsed_ms: u64) -> Transition {
        let seconds = elapsed_ms as f64 / 1000.0;
        let (pressure, cause) = reading.pressure();
        let trend = match self.last_pressure {
            Some(last) if seconds > 0.0 => (pressure - last) / seconds,
            _ => 0.0,
        };
        self.last_pressure = Some(pressure);
        let was_full = self.factor >= 1.0;
        if pressure > 1.0 {
            self.factor *= DECREASE_PER_SECOND.powf(seconds);
            if self.factor < OFF_BELOW {
                self.factor = 0.0;
            }
            self.limiting = cause;
        } else if pressure < RECOVER_BELOW {
            if self.factor < 1.0 {
                self.factor = (self.factor + RECOVERY_PER_SECOND * seconds).min(1.0);
            }
        } else if self.factor < 1.0 {
            let change = (BAND_GAIN * (BAND_TARGET - pressure) - BAND_DAMPING * trend) * seconds;
            let step = RECOVERY_PER_SECOND * seconds;
            self.factor = (self.factor + change.clamp(-step, step)).clamp(0.0, 1.0);
        }
        if was_full && self.factor < 1.0 {
            Transition::Engaged(self.limiting)
        } else if !was_full && self.factor >= 1.0 {
            self.limiting = Limiting::None;
            Transition::Released
        } else {
            Transition::Unchanged
        }
    }
}

/// The factor of a policy whose priority has rank `rank` (0 = lowest) among
/// `levels` distinct priorities, when the overall factor is `factor`.
pub fn level_factor(factor: f64, rank: usize, levels: usize) -> f64 {
    let levels = levels.max(1) as f64;
    let reduction = (1.0 - factor).clamp(0.0, 1.0);
    1.0 - (reduction * levels - rank as f64).clamp(0.0, 1.0)
}

/// Which standbys count (`pwb.replica_lag_standbys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standbys {
    All,
    Named(Vec<String>),
}

impl Standbys {
    pub fn counts(&self, application_name: &str) -> bool {
        match self {
            Standbys::All => true,
            Standbys::Named(names) => names.iter().any(|n| n == application_name),
        }
    }
}

/// Parses `*` or a comma-separated list of application names (each
/// trimmed, non-empty, at most 63 bytes as application_name is).
pub fn parse_standbys(text: &str) -> Result<Standbys, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(Standbys::All);
    }
    if text.is_empty() {
        return Err("the list is empty (use * for every standby)".into());
    }
    let mut names = Vec::new();
    for name in text.split(',') {
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("\"{text}\" has an empty name"));
        }
        if name == "*" {
            return Err("* cannot be combined with names".into());
        }
        if name.len() > 63 {
            return Err(format!("\"{name}\" is longer than 63 bytes"));
        }
        names.push(name.to_string());
    }
    Ok(Standbys::Named(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lagging(lag: u64) -> Reading {
        Reading {
            worst_lag: Some(lag),
            lag_limit: 100,
            free: None,
            free_floor: 0,
        }
    }

    #[test]
    fn shrinks_quickly_while_a_limit_is_exceeded() {
        let mut c = Controller::default();
        assert_eq!(
            c.step(&lagging(150), 100),
            Transition::Engaged(Limiting::ReplicaLag)
        );
        for _ in 0..9 {
            c.step(&lagging(150), 100);
        }
        assert!((c.factor - 0.2).abs() < 1e-9, "one second: {}", c.factor);
        for _ in 0..30 {
            c.step(&lagging(150), 100);
        }
        assert_eq!(c.factor, 0.0, "held at 0 once below 1%");
    }

    #[test]
    fn recovers_gradually_after_it_clears_and_holds_in_the_band() {
        let mut c = Controller::default();
        for _ in 0..50 {
            c.step(&lagging(150), 100);
        }
        // At the band's target and steady, it holds.
        c.step(&lagging(90), 1000);
        let held = c.factor;
        c.step(&lagging(90), 1000);
        assert_eq!(c.factor, held);
        // Cleared: +0.1 per second, at least ten seconds to full.
        let before = c.factor;
        c.step(&lagging(10), 4000);
        assert!((c.factor - before - 0.4).abs() < 1e-9);
        assert_eq!(c.step(&lagging(10), 10_000), Transition::Released);
        assert_eq!(c.factor, 1.0);
        assert_eq!(c.limiting, Limiting::None);
    }

    #[test]
    fn does_not_oscillate_against_a_plant_that_drains_slowly() {
        // A standby replaying 50 units/s; writers wanting 200 units/s at
        // factor 1. The lag settles inside the band instead of swinging.
        let mut c = Controller::default();
        let mut lag = 0.0f64;
        let mut crossings = 0;
        let mut above = false;
        for _ in 0..6000 {
            lag = (lag + (200.0 * c.factor - 50.0) * 0.1).max(0.0);
            c.step(&lagging(lag as u64), 100);
            let now_above = lag > 100.0;
            if now_above != above {
                crossings += 1;
                above = now_above;
            }
            assert!(lag < 200.0, "lag {lag} stays below twice the limit");
        }
        assert!(crossings <= 4, "{crossings} crossings of the limit");
        // It settles where writes match the replay.
        assert!((c.factor - 0.25).abs() < 0.05, "factor {}", c.factor);
    }

    #[test]
    fn a_paused_standby_stops_the_writers() {
        // Writers at a fifth of the limit per second (64 MB of lag allowed,
        // 12.8 MB/s written): the lag tops out within a fifth above it.
        let mut c = Controller::default();
        let mut lag = 0.0f64;
        for _ in 0..600 {
            lag += 20.0 * c.factor * 0.1;
            c.step(&lagging(lag as u64), 100);
        }
        assert_eq!(c.factor, 0.0);
        assert!(lag < 120.0, "lag {lag}");
    }

    #[test]
    fn the_disk_floor_counts_too() {
        let r = Reading {
            worst_lag: Some(10),
            lag_limit: 100,
            free: Some(50),
            free_floor: 100,
        };
        assert_eq!(r.pressure(), (2.0, Limiting::WalDisk));
        let off = Reading::default();
        assert_eq!(off.pressure().0, 0.0);
    }

    #[test]
    fn the_lowest_priority_level_is_reduced_first() {
        // Three levels, overall factor 2/3: the reduction (1/3) is all on
        // the lowest level.
        assert!((level_factor(2.0 / 3.0, 0, 3) - 0.0).abs() < 1e-9);
        assert!((level_factor(2.0 / 3.0, 1, 3) - 1.0).abs() < 1e-9);
        assert!((level_factor(2.0 / 3.0, 2, 3) - 1.0).abs() < 1e-9);
        assert!((level_factor(0.5, 1, 3) - 0.5).abs() < 1e-9);
        assert_eq!(level_factor(1.0, 0, 1), 1.0);
        assert_eq!(level_factor(0.0, 2, 3), 0.0);
    }

    #[test]
    fn standby_lists() {
        assert_eq!(parse_standbys(" * "), Ok(Standbys::All));
        assert_eq!(
            parse_standbys("s1, s2"),
            Ok(Standbys::Named(vec!["s1".into(), "s2".into()]))
        );
        assert!(parse_standbys("").is_err());
        assert!(parse_standbys("s1,,s2").is_err());
        assert!(parse_standbys("*,s1").is_err());
        assert!(parse_standbys(&"x".repeat(64)).is_err());
        assert!(parse_standbys("s1").unwrap().counts("s1"));
        assert!(!parse_standbys("s1").unwrap().counts("s2"));
    }
}
