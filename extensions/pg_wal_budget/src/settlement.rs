//! After a statement ends (or is abandoned): measure the WAL it wrote,
//! reconcile it against what it was charged, and learn its profile.
//!
//! A statement that charged nothing (observe mode, or no policy) has
//! written nothing to shared memory yet; it is held by the session and
//! written with the transaction's other such statements under one lock once
//! the transaction has ended and released its locks (or sooner, see
//! [`lock_current`]): under an observe policy a tpcb-like transaction then
//! takes the exclusive lock once instead of four times.
use crate::decision::Decision;
use crate::pg::process::{self, Now};
use crate::pg::shmem::{self, Locked};
use crate::prediction;
use crate::queue;
use crate::session;
use crate::types::{Entry, Measured, Tail};
use governance::budget::admission::Ledger;

/// Most measured statements a backend holds before writing them, so that a
/// long transaction publishes its statements as it goes and holds bounded
/// memory.
const MAX_HELD_MEASUREMENTS: usize = 32;

/// The fast end of a statement that charged nothing and ran to completion:
/// holds it without pgrx's guard, unless holding it would make the held
/// statements due for writing. Never panics; false (nothing changed) leaves
/// the statement to [`end_statement`].
pub fn try_end_uncharged(marker: usize) -> bool {
    session::try_hold_completed(marker, process::wal_bytes(), MAX_HELD_MEASUREMENTS)
}

/// After the statement opened by `marker` ran to completion: measure,
/// reconcile, learn. The uncharged case first takes the same fast path as
/// [`try_end_uncharged`].
pub fn end_statement(marker: usize) {
    if try_end_uncharged(marker) {
        return;
    }
    let Some(entry) = session::pop_if_top(marker) else {
        return;
    };
    settle(entry, process::wal_bytes(), true);
}

/// Transaction abort: settle every open statement for the WAL it actually
/// wrote, without learning from the partial run.
pub fn abort_all() {
    for entry in session::drain_all() {
        settle(entry, process::wal_bytes(), false);
    }
}

/// Transaction commit: executor statements still open (a portal never run
/// to its end) are settled; utility statements spanning commits stay open.
pub fn commit() {
    for entry in session::drain_executor_entries() {
        settle(entry, process::wal_bytes(), false);
    }
}

/// Subtransaction abort: settle the statements opened inside it.
pub fn abort_subxact(subxid: pgrx::pg_sys::SubTransactionId) {
    for entry in session::drain_from_subxact(subxid) {
        settle(entry, process::wal_bytes(), false);
    }
}

/// Takes the shared-memory lock and first writes the statements this backend
/// holds, so that whatever the caller reads or changes includes them: the
/// telemetry functions, and every locked admission (whose prediction then
/// learns from this session's earlier statements). `None` when shared memory
/// is not attached.
pub fn lock_current() -> Option<Locked> {
    let mut shm = shmem::lock()?;
    if session::has_measured() {
        let now = process::now();
        for measured in session::take_measured() {
            write_uncharged(&mut shm, &measured, now);
        }
    }
    Some(shm)
}

/// Transaction end (after its commit, abort or prepare record was written
/// and its locks released): writes the statements this backend holds, and
/// charges the WAL written since the last governed statement settled, mostly
/// that record, as debt to the same policy bucket. Without that charge, a
/// stream of small autocommit writes would exceed its rate by the size of
/// its commit records.
pub fn end_transaction() {
    let tail = session::take_tail().and_then(|tail| {
        let written = process::wal_bytes().saturating_sub(tail.wal_mark);
        (written > 0).then_some((tail, written))
    });
    if tail.is_none() && !session::has_measured() {
        return;
    }
    let Some(mut shm) = lock_current() else {
        return;
    };
    if let Some((tail, written)) = tail {
        charge_debt(&mut shm, tail, written);
    }
}

fn charge_debt(shm: &mut Locked, tail: Tail, written: u64) {
    let mut bucket = tail.policy;
    if bucket.value_hash != 0 && shm.buckets(bucket, tail.dboid).is_none() {
        // A template value without a bucket yet (its first statement was
        // not admitted): make it.
        let now = process::now_micros();
        if let Some(index) = shm.policy_slot_index((bucket.slot, bucket.policy_id), tail.dboid)
            && let Some(made) = shm.value_bucket(index, bucket.value_hash, now)
        {
            bucket = made;
        }
    }
    let debt_added = shm
        .buckets(bucket, tail.dboid)
        .and_then(|b| b.settle(tail.ledger, 0, written))
        .map_or(0, |(r, _)| r.debt_added);
    if tail.ledger == Ledger::Enforcement {
        let c = shm.counters();
        c.scope_debt_bytes = c.scope_debt_bytes.saturating_add(debt_added);
    }
}

/// Settles one statement that ended (or was abandoned) when the backend's
/// WAL counter stood at `wal_end`.
fn settle(entry: Entry, wal_end: u64, completed: bool) {
    let actual = wal_end.saturating_sub(entry.wal_start);
    if entry.deferred.is_some() {
        let held = session::hold_measured(Measured {
            entry,
            actual,
            completed,
        });
        if held >= MAX_HELD_MEASUREMENTS {
            drop(lock_current());
        }
        return;
    }
    let Some(mut shm) = lock_current() else {
        return;
    };
    let mut after = None;
    let mut wake = None;
    if let Some(policy) = entry.policy
        && let Some(buckets) = shm.buckets(policy, entry.dboid)
        && let Some((r, available)) = buckets.settle(entry.ledger, entry.charged, actual)
    {
        after = Some(available);
        if r.refunded > 0 {
            // Budget came back: the first waiter of the line may fit now.
            wake = queue::first_in_line(&mut shm, entry.dboid, queue::LineKey::of(policy));
        }
        if entry.ledger == Ledger::Enforcement {
            let c = shm.counters();
            c.scope_debt_bytes = c.scope_debt_bytes.saturating_add(r.debt_added);
        }
        // What was written since the tail's mark and before this statement
        // started (by statements that were not admitted) is charged now; the
        // tail then starts at this statement's end.
        if let Some(earlier) = session::take_tail() {
            let gap = entry.wal_start.saturating_sub(earlier.wal_mark);
            if gap > 0 {
                charge_debt(&mut shm, earlier, gap);
            }
        }
        session::set_tail(Tail {
            policy,
            dboid: entry.dboid,
            ledger: entry.ledger,
            wal_mark: wal_end,
        });
    }
    if let Some(policy) = entry.policy {
        shm.count(policy, entry.dboid, |s| {
            s.actual_bytes = s.actual_bytes.saturating_add(actual);
        });
    }
    if let Some(d) = shm.decision_mut(entry.decision_seq) {
        d.actual_wal_bytes = crate::decision::clamp_i64(actual);
        if let Some(a) = after {
            d.available_after = crate::decision::clamp_i64(a);
        }
    }
    count_and_learn(
        &mut shm,
        &entry,
        entry.predicted,
        actual,
        completed,
        process::now(),
    );
    drop(shm);
    queue::wake(wake);
}

/// Writes a statement that charged nothing: its scope, its count, its
/// decision (complete with the prediction, the measured WAL and, under an
/// observe policy, the bucket it would have been checked against) and its
/// profile.
fn write_uncharged(shm: &mut Locked, measured: &Measured, now: Now) {
    let Measured {
        entry,
        actual,
        completed,
    } = measured;
    let Some(deferred) = &entry.deferred else {
        return;
    };
    // Predicted now, from the profiles as they stand before this statement's
    // own measurement is learned below.
    let predicted = prediction::predict(shm, entry.profile_scope, entry.query_id, deferred.class);
    let resolution = &deferred.resolution;
    note_scope(shm, resolution, now.epoch_ms);
    shm.counters().accepted_statements += 1;
    let mut decision = Decision::new(
        resolution,
        deferred.class,
        deferred.timestamp_epoch_ms,
        entry.query_id,
        deferred.query_hash,
    )
    .predicted(predicted)
    .actual(*actual);
    if let Some(policy) = entry.policy
        && let Some(buckets) = shm.buckets(policy, entry.dboid)
    {
        // Read without refilling: observe mode never writes the bucket.
        let level = buckets.level_at(now.micros);
        decision = decision.levels(level, level);
    }
    if let Some(policy) = entry.policy {
        shm.count(policy, entry.dboid, |s| {
            s.accepted += 1;
            s.predicted_bytes = s.predicted_bytes.saturating_add(predicted);
            s.actual_bytes = s.actual_bytes.saturating_add(*actual);
        });
    }
    shm.push_decision(decision.into_slot());
    count_and_learn(shm, entry, predicted, *actual, *completed, now);
}

/// Records that the statement's scope was seen (`pwb.scope_names()`).
pub fn note_scope(shm: &mut Locked, resolution: &crate::types::Resolution, now_epoch_ms: i64) {
    let (hash, kind, value) = resolution.profile_scope();
    if hash != 0 && !shm.note_scope(kind.code(), hash, value, now_epoch_ms) {
        shm.counters().scope_name_drop_count += 1;
    }
}

/// The counters every settled statement adds to, and the profiles, which
/// learn only from statements that ran to completion.
fn count_and_learn(
    shm: &mut Locked,
    entry: &Entry,
    predicted: u64,
    actual: u64,
    completed: bool,
    now: Now,
) {
    let c = shm.counters();
    c.predicted_wal_bytes = c.predicted_wal_bytes.saturating_add(predicted);
    c.actual_wal_bytes = c.actual_wal_bytes.saturating_add(actual);
    c.absolute_prediction_error = c
        .absolute_prediction_error
        .saturating_add(predicted.abs_diff(actual));
    if !completed && entry.charged > 0 {
        c.aborted_after_charge_count += 1;
    }
    if completed {
        prediction::learn(
            shm,
            entry.profile_scope,
            entry.query_id,
            actual,
            now.epoch_ms,
        );
    }
}
