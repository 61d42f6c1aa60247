//! Waiting for budget in arrival order. A statement that must wait (queue
//! mode before it runs; pace mode for its next chunk while it runs) takes a
//! ticket in the shared waiter table; only the first in line of its policy
//! may take budget, and it is woken when budget is returned or when the
//! one ahead of it leaves, not by polling. A statement that arrives while
//! others of its policy wait gets in line behind them even if budget is
//! there: nobody overtakes.
//!
//! A waiter that is cancelled, times out or fails leaves the line at once
//! ([`Place`]'s drop); one that is terminated leaves it from the exit
//! callback; one that was killed is skipped (its pid is gone) and shared
//! memory is reinitialised anyway.
use crate::pg::process;
use crate::pg::shmem::{self, Locked};

governance::sql_enum! {
    /// Why a statement waits (`pwb.waits()`).
    pub enum WaitKind {
        Queue = 1 => "queue",
        Pace = 2 => "pace",
    }
}

/// How long a waiter that is not first in line sleeps at most before it
/// looks again (it is normally woken earlier: when the one ahead of it is
/// admitted, or leaves, or a policy changes).
pub const NOT_FIRST_SLEEP_MS: u64 = 1000;

/// This backend's place in the line of one policy, while it has one.
pub struct Place {
    pub ticket: u64,
    dboid: u32,
    policy_id: i32,
    value_hash: i64,
}

impl Place {
    /// Gets in line (or stays in its place) for bucket `key` of `dboid`.
    pub fn join(
        shm: &mut Locked,
        kind: WaitKind,
        dboid: u32,
        key: LineKey,
        wanted: u64,
        now_epoch_ms: i64,
    ) -> Place {
        let LineKey(policy_id, value_hash) = key;
        let pid = process::my_pid();
        if let Some(w) = shm.waiters().iter_mut().find(|w| w.used && w.pid == pid) {
            w.kind = kind.code();
            w.wanted = wanted;
            if w.dboid == dboid && w.policy_id == policy_id && w.value_hash == value_hash {
                return Place {
                    ticket: w.ticket,
                    dboid,
                    policy_id,
                    value_hash,
                };
            }
        }
        let ticket = shm.take_ticket();
        let waiters = shm.waiters();
        if let Some(w) = waiters.iter_mut().find(|w| !w.used || w.pid == pid) {
            *w = shmem::WaiterSlot {
                used: true,
                kind: kind.code(),
                pid,
                dboid,
                policy_id,
                value_hash,
                ticket,
                since_epoch_ms: now_epoch_ms,
                wanted,
            };
        }
        process::on_exit_once(leave_at_exit);
        Place {
            ticket,
            dboid,
            policy_id,
            value_hash,
        }
    }

    /// Leaves the line; returns the pid of the one now first, to wake once
    /// the lock is released.
    pub fn leave(self, shm: &mut Locked) -> Option<i32> {
        leave_all(shm, process::my_pid());
        first_in_line(shm, self.dboid, LineKey(self.policy_id, self.value_hash))
    }
}

/// A statement's place in its policy's line while it waits; it leaves the
/// line when admitted or refused, and on any error unwinding through it
/// (cancel, statement_timeout, giving up).
#[derive(Default)]
pub struct Line {
    place: Option<Place>,
    /// Whether its `queued` decision row was written.
    recorded: bool,
    /// When it first got in line.
    since: Option<std::time::Instant>,
}

impl Line {
    /// Whether its `queued` decision row was written.
    pub fn was_recorded(&self) -> bool {
        self.recorded
    }

    /// How long it has been in line (0 if it never was).
    pub fn waited_micros(&self) -> u64 {
        self.since.map_or(0, |t| {
            u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
        })
    }

    pub fn ticket(&self) -> Option<u64> {
        self.place.as_ref().map(|p| p.ticket)
    }

    /// Gets in line; true the first time (the caller records `queued`).
    pub fn join(
        &mut self,
        shm: &mut Locked,
        kind: WaitKind,
        dboid: u32,
        key: LineKey,
        wanted: u64,
        now_epoch_ms: i64,
    ) -> bool {
        self.place = Some(Place::join(shm, kind, dboid, key, wanted, now_epoch_ms));
        self.since.get_or_insert_with(std::time::Instant::now);
        !std::mem::replace(&mut self.recorded, true)
    }

    /// Gets in line for a paced statement's next chunk.
    pub fn join_for_chunk(
        &mut self,
        shm: &mut Locked,
        dboid: u32,
        key: LineKey,
        chunk: u64,
        now_epoch_ms: i64,
    ) {
        self.join(shm, WaitKind::Pace, dboid, key, chunk, now_epoch_ms);
    }

    /// Leaves the line under the caller's lock; returns whom to wake.
    pub fn leave_locked(&mut self, shm: &mut Locked) -> Option<i32> {
        self.place.take().and_then(|p| p.leave(shm))
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.place.is_none() {
            return;
        }
        let next = crate::pg::shmem::lock().and_then(|mut shm| self.leave_locked(&mut shm));
        wake(next);
    }
}

/// Removes every place `pid` holds.
pub fn leave_all(shm: &mut Locked, pid: i32) {
    for w in shm.waiters().iter_mut().filter(|w| w.used && w.pid == pid) {
        w.used = false;
    }
}

/// Which line: a policy's, or one template value's (each value of a
/// template policy has its own bucket, so its own line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineKey(pub i32, pub i64);

impl LineKey {
    pub fn of(bucket: crate::types::BucketRef) -> LineKey {
        LineKey(bucket.policy_id, bucket.value_hash)
    }
}

/// Whether a statement of line `key` in `dboid` holding `ticket` (None: not
/// in line yet) is first in line: no other live waiter of the line arrived
/// before it. Waiters whose process is gone are removed.
pub fn is_first(shm: &mut Locked, dboid: u32, key: LineKey, ticket: Option<u64>) -> bool {
    let LineKey(policy_id, value_hash) = key;
    let me = process::my_pid();
    let mut first = true;
    for w in shm.waiters().iter_mut() {
        if !w.used
            || w.dboid != dboid
            || w.policy_id != policy_id
            || w.value_hash != value_hash
            || w.pid == me
        {
            continue;
        }
        if ticket.is_some_and(|t| w.ticket > t) {
            continue;
        }
        if !process::pid_alive(w.pid) {
            w.used = false;
            continue;
        }
        first = false;
    }
    first
}

/// The pid of the first waiter of line `key` in `dboid`.
pub fn first_in_line(shm: &mut Locked, dboid: u32, key: LineKey) -> Option<i32> {
    let LineKey(policy_id, value_hash) = key;
    shm.waiters()
        .iter()
        .filter(|w| {
            w.used && w.dboid == dboid && w.policy_id == policy_id && w.value_hash == value_hash
        })
        .min_by_key(|w| w.ticket)
        .map(|w| w.pid)
}

/// Every waiter of `dboid` (a policy changed: each must look again).
pub fn waiters_of_database(shm: &mut Locked, dboid: u32) -> Vec<i32> {
    shm.waiters()
        .iter()
        .filter(|w| w.used && w.dboid == dboid)
        .map(|w| w.pid)
        .collect()
}

/// Wakes the processes `pids` (after the lock is released).
pub fn wake(pids: impl IntoIterator<Item = i32>) {
    for pid in pids {
        pgsupport::wait::set_latch_of_pid(pid);
    }
}

/// The exit callback's work: this backend leaves every line.
pub fn leave_at_exit() {
    let first = shmem::lock().map(|mut shm| {
        let pid = process::my_pid();
        let mine: Vec<(u32, LineKey)> = shm
            .waiters()
            .iter()
            .filter(|w| w.used && w.pid == pid)
            .map(|w| (w.dboid, LineKey(w.policy_id, w.value_hash)))
            .collect();
        leave_all(&mut shm, pid);
        mine.into_iter()
            .filter_map(|(db, key)| first_in_line(&mut shm, db, key))
            .collect::<Vec<_>>()
    });
    wake(first.unwrap_or_default());
}
