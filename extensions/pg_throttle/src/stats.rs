//! Statistics and the list of sleeping backends, kept in shared memory when
//! the library is in `shared_preload_libraries` (absent otherwise: then
//! every function here does nothing and readers see no rows).
//!
//! Per user (the session user a statement is throttled for): throttled
//! statements, tuples that passed throttled nodes (or were examined by
//! throttled filters), time slept, when a throttled statement last
//! started, and since when the counters run. Per backend: how many
//! throttled queries it runs, and while it sleeps, why and since when.
//!
//! Nothing here runs for a statement that is not throttled, and nothing
//! runs per tuple: a throttled query touches shared memory when it starts,
//! when it ends, and around each sleep. The user's tuples and sleep time
//! grow at each wake-up (what the query did since the last one), so that
//! a long throttled scan shows in the statistics while it runs; its end
//! adds the rest.
use std::sync::atomic::{AtomicBool, Ordering};

use governance::pacing::{Counting, Mode, NodeKind, QueryTotals};
use pgrx::pg_sys;
use pgsupport::time::pg_now_micros;

use crate::pg::shmem::{self, BackendSlot, Shared, USER_SLOTS, UserSlot};
use crate::throttle::Why;

/// Whether statistics are kept (the library was preloaded).
pub fn available() -> bool {
    shmem::shared().is_some()
}

static EXIT_CALLBACK: AtomicBool = AtomicBool::new(false);

/// This process's backend slot (registering the exit callback that clears
/// it, once).
fn my_slot(sh: &Shared) -> Option<&'static BackendSlot> {
    let slot = sh.backends.get(pgsupport::process::proc_number()?)?;
    if !EXIT_CALLBACK.swap(true, Ordering::Relaxed) {
        shmem::at_exit(crate::pg::hooks::clear_slot_at_exit);
    }
    Some(slot)
}

/// Writes the slot under its change counter (odd while writing).
fn write(slot: &BackendSlot, f: impl FnOnce(&BackendSlot)) {
    slot.changes.fetch_add(1, Ordering::AcqRel);
    f(slot);
    slot.changes.fetch_add(1, Ordering::Release);
}

fn spread(role: u32) -> usize {
    (role.wrapping_mul(2_654_435_761) as usize) % USER_SLOTS
}

/// The counters of `role`, claiming a free slot for it on first use (None
/// when all are taken).
fn user_slot(sh: &Shared, role: u32) -> Option<&'static UserSlot> {
    let start = spread(role);
    for i in 0..USER_SLOTS {
        let slot = &sh.users[(start + i) % USER_SLOTS];
        match slot
            .role
            .compare_exchange(0, role, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                slot.stats_reset.store(pg_now_micros(), Ordering::Relaxed);
                return Some(slot);
            }
            Err(r) if r == role => return Some(slot),
            Err(_) => {}
        }
    }
    if sh.header.warned_full.swap(1, Ordering::Relaxed) == 0 {
        pgrx::warning!(
            "pg_throttle counts statistics for at most {USER_SLOTS} users; further users are not counted until the server restarts"
        );
    }
    None
}

fn session_role() -> u32 {
    pgsupport::roles::session_user().to_u32()
}

/// A query started: counted as a throttled statement (a leader's query,
/// not a worker's share) and/or active (it wrapped something).
pub fn query_started(counted: bool, active: bool) {
    let Some(sh) = shmem::shared() else { return };
    let role = session_role();
    if counted && active {
        match user_slot(&sh, role) {
            Some(u) => {
                u.statements.fetch_add(1, Ordering::Relaxed);
                u.last_throttled.store(pg_now_micros(), Ordering::Relaxed);
            }
            None => {
                sh.header
                    .untracked_statements
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if active && let Some(slot) = my_slot(&sh) {
        write(slot, |s| {
            if s.active.load(Ordering::Relaxed) == 0 {
                s.pid.store(pgsupport::wait::my_pid(), Ordering::Relaxed);
                s.role.store(role, Ordering::Relaxed);
                s.leader_pid.store(
                    pgsupport::process::parallel_leader_pid().unwrap_or(0),
                    Ordering::Relaxed,
                );
                s.active_since.store(pg_now_micros(), Ordering::Relaxed);
            }
            s.active.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Adds a query's tuples and sleep to the user's counters.
fn add_totals(sh: &Shared, totals: QueryTotals) {
    if (totals.tuples > 0 || totals.slept_nanos > 0)
        && let Some(u) = user_slot(sh, session_role())
    {
        u.tuples.fetch_add(totals.tuples, Ordering::Relaxed);
        u.slept_us
            .fetch_add(totals.slept_nanos / 1000, Ordering::Relaxed);
    }
}

/// A query ended (or died): what it did and was not yet added is added to
/// the user.
pub fn query_ended(active: bool, totals: QueryTotals) {
    let Some(sh) = shmem::shared() else { return };
    add_totals(&sh, totals);
    if active && let Some(slot) = my_slot(&sh) {
        write(slot, |s| {
            let left = s.active.load(Ordering::Relaxed).saturating_sub(1);
            s.active.store(left, Ordering::Relaxed);
            if left == 0 {
                s.active_since.store(0, Ordering::Relaxed);
                s.sleeping_since.store(0, Ordering::Relaxed);
            }
        });
    }
}

/// The backend starts sleeping for a node or query (`why`).
pub fn sleep_began(why: Option<Why>) {
    let Some(sh) = shmem::shared() else { return };
    let Some(slot) = my_slot(&sh) else { return };
    write(slot, |s| {
        s.pid.store(pgsupport::wait::my_pid(), Ordering::Relaxed);
        if let Some(w) = why {
            s.mode.store(
                match w.mode {
                    Mode::PerNode => 1,
                    Mode::Query(_) => 2,
                },
                Ordering::Relaxed,
            );
            s.kind
                .store(w.kind.map_or(0, |k| u32::from(k.code())), Ordering::Relaxed);
            s.counting
                .store(u32::from(w.counting.code()), Ordering::Relaxed);
            s.rate.store(w.rate, Ordering::Relaxed);
        }
        s.sleeping_since.store(pg_now_micros(), Ordering::Relaxed);
    });
}

/// The backend woke up (or an interrupt ended its sleep); `progress` is
/// what its query did since the last wake-up.
pub fn sleep_ended(progress: QueryTotals) {
    let Some(sh) = shmem::shared() else { return };
    add_totals(&sh, progress);
    let Some(slot) = my_slot(&sh) else { return };
    write(slot, |s| s.sleeping_since.store(0, Ordering::Relaxed));
}

/// The process exits: it no longer runs or sleeps for anything.
pub fn process_exiting() {
    let Some(sh) = shmem::shared() else { return };
    let Some(slot) = pgsupport::process::proc_number().and_then(|i| sh.backends.get(i)) else {
        return;
    };
    write(slot, |s| {
        s.active.store(0, Ordering::Relaxed);
        s.active_since.store(0, Ordering::Relaxed);
        s.sleeping_since.store(0, Ordering::Relaxed);
        s.pid.store(0, Ordering::Relaxed);
    });
}

/// One backend slot, read consistently.
#[derive(Debug, Clone, Copy)]
struct SlotCopy {
    pid: i32,
    role: u32,
    leader_pid: i32,
    active: u32,
    kind: u32,
    mode: u32,
    counting: u32,
    rate: u64,
    sleeping_since: i64,
}

fn read_slot(slot: &BackendSlot) -> SlotCopy {
    loop {
        let before = slot.changes.load(Ordering::Acquire);
        let copy = SlotCopy {
            pid: slot.pid.load(Ordering::Relaxed),
            role: slot.role.load(Ordering::Relaxed),
            leader_pid: slot.leader_pid.load(Ordering::Relaxed),
            active: slot.active.load(Ordering::Relaxed),
            kind: slot.kind.load(Ordering::Relaxed),
            mode: slot.mode.load(Ordering::Relaxed),
            counting: slot.counting.load(Ordering::Relaxed),
            rate: slot.rate.load(Ordering::Relaxed),
            sleeping_since: slot.sleeping_since.load(Ordering::Relaxed),
        };
        if before % 2 == 0 && slot.changes.load(Ordering::Acquire) == before {
            return copy;
        }
        std::hint::spin_loop();
    }
}

/// One user's statistics.
#[derive(Debug, Clone, Copy)]
pub struct UserRow {
    pub role: pg_sys::Oid,
    pub statements: u64,
    pub tuples: u64,
    pub slept_us: u64,
    pub backends: u32,
    /// PostgreSQL timestamps (0: never).
    pub last_throttled: i64,
    pub stats_reset: i64,
}

/// Every user with counters, and how many of its backends run a throttled
/// query now.
pub fn user_rows() -> Vec<UserRow> {
    let Some(sh) = shmem::shared() else {
        return Vec::new();
    };
    let slots: Vec<SlotCopy> = sh.backends.iter().map(read_slot).collect();
    sh.users
        .iter()
        .filter_map(|u| {
            let role = u.role.load(Ordering::Acquire);
            (role != 0).then(|| UserRow {
                role: pg_sys::Oid::from(role),
                statements: u.statements.load(Ordering::Relaxed),
                tuples: u.tuples.load(Ordering::Relaxed),
                slept_us: u.slept_us.load(Ordering::Relaxed),
                backends: slots
                    .iter()
                    .filter(|s| s.pid != 0 && s.active > 0 && s.role == role)
                    .count() as u32,
                last_throttled: u.last_throttled.load(Ordering::Relaxed),
                stats_reset: u.stats_reset.load(Ordering::Relaxed),
            })
        })
        .collect()
}

/// Statements of users beyond the table's capacity.
pub fn untracked_statements() -> u64 {
    shmem::shared().map_or(0, |sh| {
        sh.header.untracked_statements.load(Ordering::Relaxed)
    })
}

/// A backend pg_throttle holds asleep.
#[derive(Debug, Clone, Copy)]
pub struct WaitRow {
    pub pid: i32,
    pub leader_pid: Option<i32>,
    pub role: pg_sys::Oid,
    pub mode: &'static str,
    pub kind: Option<NodeKind>,
    pub counting: Option<Counting>,
    pub rate: u64,
    pub since: i64,
}

/// Every backend sleeping for pg_throttle now.
pub fn waits() -> Vec<WaitRow> {
    let Some(sh) = shmem::shared() else {
        return Vec::new();
    };
    sh.backends
        .iter()
        .map(read_slot)
        .filter(|s| s.pid != 0 && s.sleeping_since != 0)
        .map(|s| WaitRow {
            pid: s.pid,
            leader_pid: (s.leader_pid != 0).then_some(s.leader_pid),
            role: pg_sys::Oid::from(s.role),
            mode: if s.mode == 2 { "query" } else { "per_node" },
            kind: u8::try_from(s.kind).ok().and_then(NodeKind::from_code),
            counting: u8::try_from(s.counting).ok().and_then(Counting::from_code),
            rate: s.rate,
            since: s.sleeping_since,
        })
        .collect()
}

/// Zeroes the counters of `role`, or of every user (None). Returns false
/// when statistics are not kept.
pub fn reset(role: Option<pg_sys::Oid>) -> bool {
    let Some(sh) = shmem::shared() else {
        return false;
    };
    let now = pg_now_micros();
    for u in sh.users.iter() {
        let r = u.role.load(Ordering::Acquire);
        if r == 0 || role.is_some_and(|want| want.to_u32() != r) {
            continue;
        }
        u.statements.store(0, Ordering::Relaxed);
        u.tuples.store(0, Ordering::Relaxed);
        u.slept_us.store(0, Ordering::Relaxed);
        u.last_throttled.store(0, Ordering::Relaxed);
        u.stats_reset.store(now, Ordering::Relaxed);
    }
    if role.is_none() {
        sh.header.untracked_statements.store(0, Ordering::Relaxed);
        sh.header.stats_reset.store(now, Ordering::Relaxed);
    }
    true
}
