//! Replica-lag and WAL-disk feedback, run by pg_wal_budget's worker every
//! 100 ms: it reads the replay lag of the counted standbys
//! (`pg_stat_replication`) and the free space on the WAL filesystem, steps
//! the control law (`governance::budget::feedback`), and scales the rate of
//! every policy that is not `feedback_exempt`, the lowest priorities first.
//! Backends read nothing of this: they find the scaled rate in their
//! policy's bucket.
use crate::guc;
use crate::pg::process;
use crate::pg::shmem::{self, MAX_STANDBYS, StandbyLag};
use governance::budget::buckets::FULL_SCALE;
use governance::budget::feedback::{Controller, Limiting, Reading, Transition, level_factor};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// How often the worker looks.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// The worker's feedback state.
pub struct Feedback {
    controller: Controller,
    last: std::time::Instant,
    engaged_since_epoch_ms: i64,
}

impl Default for Feedback {
    fn default() -> Feedback {
        Feedback {
            controller: Controller::default(),
            last: std::time::Instant::now(),
            engaged_since_epoch_ms: 0,
        }
    }
}

/// The streaming standbys and their replay lag in bytes (None: no replay
/// position yet), read on the primary.
fn read_standbys() -> Vec<(String, Option<i64>)> {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| -> Result<Vec<(String, Option<i64>)>, pgrx::spi::Error> {
            let rows = client.select(
                "SELECT r.application_name::text, \
                        pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn)::int8 \
                   FROM pg_catalog.pg_stat_replication r \
                  WHERE r.state OPERATOR(pg_catalog.=) 'streaming'",
                None,
                &[],
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push((row.get::<String>(1)?.unwrap_or_default(), row.get::<i64>(2)?));
            }
            Ok(out)
        })
        .unwrap_or_default()
    })
}

impl Feedback {
    /// One look: read, step, apply, publish, log what changed.
    pub fn tick(&mut self) {
        let elapsed = u64::try_from(self.last.elapsed().as_millis()).unwrap_or(0);
        self.last = std::time::Instant::now();
        let lag_limit = guc::max_replica_lag_bytes();
        let floor = guc::min_wal_disk_free_bytes();
        let counted = guc::replica_lag_standbys();
        // A standby has no lag of its own to hold back (and no position to
        // measure it from); after promotion it counts its own standbys.
        let standbys = if lag_limit > 0 && !pgsupport::catalog::in_recovery() {
            read_standbys()
        } else {
            Vec::new()
        };
        let worst_lag = standbys
            .iter()
            .filter(|(name, _)| counted.counts(name))
            .filter_map(|(_, lag)| *lag)
            .max()
            .map(|lag| u64::try_from(lag).unwrap_or(0));
        let free = pgsupport::disk::pg_wal_available_bytes().ok();
        let reading = Reading {
            worst_lag,
            lag_limit,
            free,
            free_floor: floor,
        };
        let now_ms = process::now().epoch_ms;
        match self.controller.step(&reading, elapsed.max(1)) {
            Transition::Engaged(why) => {
                self.engaged_since_epoch_ms = now_ms;
                let detail = match why {
                    Limiting::WalDisk => format!(
                        "{} MB free on the WAL filesystem, below pwb.min_wal_disk_free ({} MB)",
                        free.unwrap_or(0) / 1_048_576,
                        floor / 1_048_576
                    ),
                    _ => format!(
                        "a standby replays {} MB behind, more than pwb.max_replica_lag ({} MB)",
                        worst_lag.unwrap_or(0) / 1_048_576,
                        lag_limit / 1_048_576
                    ),
                };
                pgrx::log!(
                    "pg_wal_budget: {} feedback engaged: {detail}; policies' WAL rates are scaled down, lowest priority first",
                    why.as_str()
                );
            }
            Transition::Released => {
                self.engaged_since_epoch_ms = 0;
                pgrx::log!(
                    "pg_wal_budget: feedback released: policies' WAL rates are back to their own"
                );
            }
            Transition::Unchanged => {}
        }
        self.publish(&standbys, &counted, free, now_ms);
    }

    /// Scales every policy's rate and publishes the state for
    /// `pwb.feedback()` and the metrics.
    fn publish(
        &self,
        standbys: &[(String, Option<i64>)],
        counted: &governance::budget::feedback::Standbys,
        free: Option<u64>,
        now_ms: i64,
    ) {
        let Some(mut shm) = shmem::lock() else {
            return;
        };
        let factor = self.controller.factor;
        let now = process::now_micros();
        // Distinct priorities of the policies feedback applies to, lowest
        // first.
        let mut levels: Vec<i32> = shm
            .policies()
            .iter()
            .filter(|s| s.used && !s.feedback_exempt)
            .map(|s| s.priority)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        let mut scales = Vec::new();
        for slot in shm.policies().iter_mut().filter(|s| s.used) {
            let scale = if slot.feedback_exempt {
                FULL_SCALE
            } else {
                let rank = levels.iter().position(|p| *p == slot.priority).unwrap_or(0);
                (level_factor(factor, rank, levels.len()) * f64::from(FULL_SCALE)) as u32
            };
            slot.buckets.set_scale(scale, now);
            scales.push((slot.dboid, slot.policy_id, scale));
        }
        for value in shm.values().iter_mut().filter(|v| v.used) {
            if let Some((_, _, scale)) = scales
                .iter()
                .find(|(db, id, _)| *db == value.dboid && *id == value.policy_id)
            {
                value.buckets.set_scale(*scale, now);
            }
        }
        let state = shm.feedback();
        state.factor_ppm = (factor * f64::from(FULL_SCALE)) as u32;
        state.limiting = self.controller.limiting.code();
        state.engaged_since_epoch_ms = self.engaged_since_epoch_ms;
        state.updated_epoch_ms = now_ms;
        state.wal_disk_free_bytes = free.map_or(-1, |f| i64::try_from(f).unwrap_or(i64::MAX));
        let n = standbys.len().min(MAX_STANDBYS);
        state.n_standbys = n as u32;
        for (i, (name, lag)) in standbys.iter().take(n).enumerate() {
            state.standbys[i] = StandbyLag::new(name, lag.unwrap_or(-1), counted.counts(name));
        }
    }
}
