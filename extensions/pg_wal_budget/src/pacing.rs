//! Pace mode while a statement runs. A paced statement is admitted with one
//! chunk of the policy's bucket reserved (see
//! `governance::budget::admission::pace_chunk`); the node that feeds its
//! writes (the child of each ModifyTable, or the plan behind CREATE TABLE AS
//! and REFRESH MATERIALIZED VIEW) is wrapped (`pg::pace`), and before each
//! row it produces the WAL written so far is compared with what was
//! reserved. When the statement has written its reservation, it reserves
//! the next chunk, waiting in its policy's line (`queue`) until the bucket
//! holds one: so over any window the policy's WAL stays within its rate and
//! burst, plus at most one row per paced statement. Whatever it reserved
//! beyond what it wrote is refunded when it is settled, and what it wrote
//! beyond (a statement with no per-row point: COPY FROM, CREATE INDEX) is
//! debt its scope's next statements pay before they start.
use crate::pg::process;
use crate::settlement::lock_current;
use crate::{queue, session};
use governance::budget::admission::Admission;
use governance::budget::policy::Mode;
use pgsupport::local::BackendCell;
use pgsupport::wait::WaitEvent;
use std::sync::atomic::{AtomicU64, Ordering};

/// The wait event of a statement waiting for its next chunk.
pub static PACE_WAIT: WaitEvent = WaitEvent::new(c"WalBudgetPace");

/// The statement being paced.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    pub marker: usize,
    /// Its bucket.
    pub policy: crate::types::BucketRef,
    pub dboid: u32,
    pub chunk: u64,
    /// The WAL counter when it started.
    pub wal_start: u64,
    /// What it has reserved so far.
    pub reserved: u64,
    /// A utility statement (CREATE TABLE AS, REFRESH MATERIALIZED VIEW):
    /// the next executor started is the one that writes.
    pub root_of_next_executor: bool,
}

impl Paced {
    /// The WAL counter value at which it must reserve more.
    pub fn limit(&self) -> u64 {
        self.wal_start.saturating_add(self.reserved)
    }
}

static PACED: BackendCell<Option<Paced>> = BackendCell::new(None);

/// The paced statement's limit, read by the wrapped node before every row
/// (an atomic, so the per-row check costs a load): `u64::MAX` when nothing
/// is paced.
static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// The WAL counter value at which the paced statement must reserve more.
pub fn limit() -> u64 {
    LIMIT.load(Ordering::Relaxed)
}

/// Starts pacing a statement that was just admitted.
pub fn start(paced: Paced) {
    PACED.set(Some(paced));
    LIMIT.store(paced.limit(), Ordering::Relaxed);
}

/// Whether `marker`'s statement is the one being paced. Never panics.
pub fn is_paced(marker: usize) -> bool {
    PACED
        .try_with(|p| p.is_some_and(|p| p.marker == marker))
        .unwrap_or(false)
}

/// Whether the executor starting now is the writing one of a paced utility
/// statement (asked once: the flag is cleared).
pub fn take_root_request() -> bool {
    PACED
        .try_with(|p| match p {
            Some(paced) if paced.root_of_next_executor => {
                paced.root_of_next_executor = false;
                true
            }
            _ => false,
        })
        .unwrap_or(false)
}

/// Stops pacing (the statement ended, or its transaction did).
pub fn stop() {
    LIMIT.store(u64::MAX, Ordering::Relaxed);
    let _ = PACED.try_with(|p| *p = None);
}

/// Stops pacing when the paced statement is no longer open (its
/// subtransaction was rolled back).
pub fn stop_unless_open() {
    let marker = PACED.try_with(|p| p.map(|p| p.marker)).flatten();
    if let Some(marker) = marker
        && !session::is_open(marker)
    {
        stop();
    }
}

/// Stops pacing `marker`'s statement, if it is the one paced.
pub fn stop_if(marker: usize) {
    if PACED.try_with(|p| p.is_some_and(|p| p.marker == marker)) == Some(true) {
        stop();
    }
}

/// The wrapped node found the WAL counter at or past the limit: reserve
/// chunks until the reservation covers `wal_now`, waiting in the policy's
/// line while the bucket is short. Returns the new limit (`u64::MAX` when
/// pacing stopped: the policy was deleted or is no longer in pace mode).
pub fn reserve_more(wal_now: u64) -> u64 {
    let Some(mut paced) = PACED.get() else {
        return u64::MAX;
    };
    let mut line = queue::Line::default();
    let mut waited = std::time::Duration::ZERO;
    while paced.limit() <= wal_now {
        let Some(mut shm) = lock_current() else {
            return u64::MAX;
        };
        let policy = (paced.policy.slot, paced.policy.policy_id);
        let Some(index) = shm.policy_slot_index(policy, paced.dboid) else {
            drop(shm);
            stop();
            return u64::MAX;
        };
        if Mode::from_code(shm.policies()[index].mode) != Some(Mode::Pace) {
            drop(shm);
            stop();
            return u64::MAX;
        }
        let key = queue::LineKey::of(paced.policy);
        let now = process::now();
        let sleep_micros = if !queue::is_first(&mut shm, paced.dboid, key, line.ticket()) {
            line.join_for_chunk(&mut shm, paced.dboid, key, paced.chunk, now.epoch_ms);
            queue::NOT_FIRST_SLEEP_MS * 1000
        } else {
            let Some(buckets) = shm.buckets(paced.policy, paced.dboid) else {
                drop(shm);
                stop();
                return u64::MAX;
            };
            match buckets.admit(Mode::Pace, paced.chunk, now.micros).admission {
                Admission::Admit { charged, .. } => {
                    paced.reserved = paced.reserved.saturating_add(charged);
                    session::add_charged(paced.marker, charged);
                    0
                }
                Admission::Wait { wait_micros } => {
                    line.join_for_chunk(&mut shm, paced.dboid, key, paced.chunk, now.epoch_ms);
                    wait_micros
                }
                Admission::Reject { .. } => 0,
            }
        };
        if sleep_micros == 0 {
            continue;
        }
        drop(shm);
        let started = std::time::Instant::now();
        pgsupport::wait::sleep(sleep_micros.div_ceil(1000).clamp(1, 1000), &PACE_WAIT);
        waited += started.elapsed();
    }
    drop(line);
    if !waited.is_zero()
        && let Some(mut shm) = lock_current()
    {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        shm.counters().pace_wait_micros = shm.counters().pace_wait_micros.saturating_add(micros);
        shm.count(paced.policy, paced.dboid, |s| {
            s.pace_wait_micros = s.pace_wait_micros.saturating_add(micros)
        });
    }
    PACED.set(Some(paced));
    LIMIT.store(paced.limit(), Ordering::Relaxed);
    paced.limit()
}
