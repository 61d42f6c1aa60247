//! Before a governed statement runs: resolve its scope and policy, predict
//! its WAL, decide by the policy's mode (observe records, shadow checks a
//! copy of the bucket, queue waits, reject errors), and record the decision.
//!
//! A statement that charges nothing (observe mode, or no policy) takes no
//! lock: its entry is stamped and pushed, and its prediction, decision and
//! counters are written when it is settled (see `settlement`). That fast
//! path needs this backend's policies and resolution to be current; the hook
//! tries it outside pgrx's guard first ([`try_begin_uncharged`]), and
//! [`begin_statement`] makes them current and then takes the same path.
use crate::decision::Decision;
use crate::pg::process;
use crate::pg::shmem::Locked;
use crate::settlement::{self, lock_current};
use crate::types::{BucketRef, Deferred, Entry, Resolution};
use crate::{errors, guc, pacing, policies, prediction, queue, resolution, session};
use governance::budget::admission::{Admission, DecisionKind, Ledger, Reason, pace_chunk};
use governance::budget::policy::Mode;
use governance::budget::predict::StatementClass;
use pgsupport::wait::WaitEvent;
use std::sync::Arc;

/// The wait event a statement waiting for budget shows in
/// `pg_stat_activity` (its own name on PostgreSQL 17 and later).
pub static QUEUE_WAIT: WaitEvent = WaitEvent::new(c"WalBudgetQueue");

/// Whether a statement should be governed at all: cheap checks only, so
/// read-only statements pay almost nothing. Never panics (it runs outside
/// pgrx's guard).
pub fn should_govern() -> bool {
    guc::enabled()
        && crate::pg::shmem::available()
        && session::is_idle_for_admission()
        && !process::is_parallel_worker()
}

/// One statement to admit: what the hook knows about it.
#[derive(Debug, Clone, Copy)]
pub struct Statement {
    pub class: StatementClass,
    pub query_id: i64,
    pub query_hash: i64,
    /// Identity of the QueryDesc / PlannedStmt that opened it.
    pub marker: usize,
}

impl Statement {
    /// Its entry before anything is charged, in the current subtransaction
    /// and database. Never panics.
    fn entry(&self, profile_scope: i64) -> Entry {
        Entry {
            marker: self.marker,
            subxid: process::subxact_id(),
            wal_start: 0,
            predicted: 0,
            charged: 0,
            ledger: Ledger::None,
            policy: None,
            dboid: process::database_oid(),
            profile_scope,
            query_id: self.query_id,
            decision_seq: 0,
            deferred: None,
            utility: matches!(self.class, StatementClass::Utility | StatementClass::Copy),
        }
    }
}

/// The fast path, without pgrx's guard: a statement that charges nothing,
/// once this backend's policies and resolution are current. Never panics and
/// raises no error; false (nothing changed) sends the statement to
/// [`begin_statement`].
pub fn try_begin_uncharged(statement: Statement) -> bool {
    if !policies::are_current() {
        return false;
    }
    match resolution::cached(guc::composite_scope_enabled()) {
        Some(resolution) => admit_uncharged(statement, resolution),
        None => false,
    }
}

/// Pushes the entry of a statement that charges nothing. Never panics; false
/// when `resolution` charges something or the entry could not be pushed.
fn admit_uncharged(statement: Statement, resolution: Arc<Resolution>) -> bool {
    resolution.charges_nothing() && session::try_push(uncharged_entry(statement, resolution))
}

/// The entry of a statement that charges nothing; its WAL counter is read
/// last. Never panics.
fn uncharged_entry(statement: Statement, resolution: Arc<Resolution>) -> Entry {
    let mut entry = statement.entry(resolution.profile_scope().0);
    entry.policy = resolution.matched.as_ref().and_then(bucket_of);
    entry.deferred = Some(Deferred {
        class: statement.class,
        timestamp_epoch_ms: process::now().epoch_ms,
        query_hash: statement.query_hash,
        resolution,
    });
    entry.wal_start = process::wal_bytes();
    entry
}

/// A statement that is not admitted (read-only by its class, e.g. a
/// `SELECT`) still writes WAL when it calls a function that does (sequences,
/// large objects, logical messages). Under a policy that charges, the
/// transaction's tail starts here, so that whatever it writes is charged as
/// debt when the transaction ends (see `settlement::end_transaction`). The
/// fast form, without pgrx's guard: needs this backend's policies and
/// resolution current. Never panics; false (nothing changed) sends the
/// statement to [`mark_unadmitted`].
pub fn try_mark_unadmitted() -> bool {
    if !policies::are_current() {
        return false;
    }
    match resolution::cached(guc::composite_scope_enabled()) {
        Some(resolution) => mark_for(&resolution),
        None => false,
    }
}

/// [`try_mark_unadmitted`] after making the policies and resolution current.
pub fn mark_unadmitted() {
    policies::refresh_if_stale();
    let resolution = resolution::resolve(guc::composite_scope_enabled());
    mark_for(&resolution);
}

/// The bucket a matched policy charges, as far as is known without the
/// lock (a template value's slot is found when it is used).
fn bucket_of(m: &crate::types::Matched) -> Option<BucketRef> {
    let slot = m.slot?;
    Some(if m.template {
        BucketRef {
            slot,
            policy_id: m.policy_id,
            value_hash: m.scope_hash,
            value_slot: usize::MAX,
        }
    } else {
        BucketRef::policy(slot, m.policy_id)
    })
}

fn mark_for(resolution: &Resolution) -> bool {
    let Some(m) = resolution.matched.as_ref() else {
        return true;
    };
    let (ledger, Some(bucket)) = (m.ledger(), bucket_of(m)) else {
        return true;
    };
    if ledger == Ledger::None {
        return true;
    }
    session::try_mark_unsettled(crate::types::Tail {
        policy: bucket,
        dboid: process::database_oid(),
        ledger,
        wal_mark: process::wal_bytes(),
    })
}

/// Admission for one top-level writing statement. May wait (queue mode, or
/// pace mode for its first chunk) or raise an error (reject mode, a queued
/// statement giving up, or an internal failure with fail_open off).
pub fn begin_statement(statement: Statement) {
    let composite = guc::composite_scope_enabled();
    let mut line = queue::Line::default();
    let mut waiting = Waiting::default();
    loop {
        // Re-resolved on every attempt, so a waiting statement sees a policy
        // being switched, relaxed or disabled while it waits.
        policies::refresh_if_stale();
        let resolution = resolution::resolve(composite);
        if resolution.charges_nothing() {
            drop(line);
            session::push(uncharged_entry(statement, resolution));
            return;
        }
        let Some(mut shm) = lock_current() else {
            return;
        };
        match attempt(&mut shm, statement, &resolution, &mut line) {
            Step::Admitted { entry, paced } => {
                let next = line.leave_locked(&mut shm);
                drop(shm);
                queue::wake(next);
                let mut entry = *entry;
                entry.wal_start = process::wal_bytes();
                let marker = entry.marker;
                let (policy, dboid, charged) = (entry.policy, entry.dboid, entry.charged);
                session::push(entry);
                if let (Some(chunk), Some(policy)) = (paced, policy) {
                    pacing::start(pacing::Paced {
                        marker,
                        policy,
                        dboid,
                        chunk,
                        wal_start: process::wal_bytes(),
                        reserved: charged,
                        root_of_next_executor: statement.class != StatementClass::Write,
                    });
                }
                return;
            }
            Step::Refused(refusal) => {
                let next = line.leave_locked(&mut shm);
                drop(shm);
                queue::wake(next);
                refusal.raise();
            }
            Step::Wait {
                wait_micros,
                policy_id,
            } => {
                drop(shm);
                if let Some(why) = waiting.must_give_up() {
                    if let Some(mut shm) = crate::pg::shmem::lock() {
                        shm.counters().queue_gave_up_count += 1;
                    }
                    errors::queue_gave_up(policy_id, why, waiting.waited_ms());
                }
                pgsupport::wait::sleep(sleep_ms(wait_micros), &QUEUE_WAIT);
            }
        }
    }
}

/// How long to sleep for budget due in `wait_micros`: no longer than the
/// interval at which a waiter checks whether it must give up.
fn sleep_ms(wait_micros: u64) -> u64 {
    let check = u64::try_from(LOCK_CHECK_INTERVAL.as_millis()).unwrap_or(500);
    wait_micros.div_ceil(1000).clamp(1, check)
}

/// What one locked admission attempt came to.
enum Step {
    /// Admitted; `paced` is the chunk size when the statement is paced.
    Admitted {
        entry: Box<Entry>,
        paced: Option<u64>,
    },
    Refused(Refusal),
    Wait {
        wait_micros: u64,
        policy_id: i32,
    },
}

/// How long a queued statement has waited, and when it must give up: a
/// waiting statement holds the locks it took so far, and must not make
/// other sessions wait behind it for longer than they agreed to.
struct Waiting {
    since: std::time::Instant,
    last_lock_check: Option<std::time::Instant>,
}

impl Default for Waiting {
    fn default() -> Waiting {
        Waiting {
            since: std::time::Instant::now(),
            last_lock_check: None,
        }
    }
}

/// How often a queued statement looks for sessions waiting on its locks.
const LOCK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Waiting {
    fn waited_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Why the statement must stop waiting, if it must: its `lock_timeout`
    /// has passed, or (with `pwb.queue_yields_to_lock_waiters`) another
    /// session waits for a lock it holds.
    fn must_give_up(&mut self) -> Option<&'static str> {
        let timeout = process::lock_timeout_ms();
        if timeout > 0 && self.waited_ms() >= timeout {
            return Some("lock_timeout passed while queued");
        }
        if !guc::queue_yields_to_lock_waiters() {
            return None;
        }
        let due = self
            .last_lock_check
            .is_none_or(|t| t.elapsed() >= LOCK_CHECK_INTERVAL);
        if !due {
            return None;
        }
        self.last_lock_check = Some(std::time::Instant::now());
        let _internal = session::InternalScope::enter();
        process::blocks_lock_waiters()
            .then_some("another session is waiting for a lock this statement's transaction holds")
    }
}

/// A refusal, raised once the lock is released.
enum Refusal {
    Budget {
        policy_id: i32,
        mode: governance::budget::policy::Mode,
        scope: String,
        predicted: u64,
        available: u64,
        limits: governance::token_bucket::BucketLimits,
        reason: Reason,
    },
    NoBucket {
        policy_id: i32,
    },
}

impl Refusal {
    fn raise(self) -> ! {
        match self {
            Refusal::Budget {
                policy_id,
                mode,
                scope,
                predicted,
                available,
                limits,
                reason,
            } => errors::budget_exceeded(
                policy_id,
                mode,
                &scope,
                predicted,
                available,
                limits.rate_per_sec,
                limits.burst,
                reason,
            ),
            Refusal::NoBucket { policy_id } => errors::internal_failure(policy_id),
        }
    }
}

/// A statement refused or made to wait for lack of budget while feedback
/// holds its policy's rate down is recorded with feedback's reason.
fn feedback_reason(shm: &mut Locked, bucket: BucketRef, dboid: u32, reason: Reason) -> Reason {
    use governance::budget::feedback::Limiting;
    if reason != Reason::BudgetExceeded {
        return reason;
    }
    let scaled = shm
        .buckets(bucket, dboid)
        .is_some_and(|b| b.scale_ppm < governance::budget::buckets::FULL_SCALE);
    if !scaled {
        return reason;
    }
    match Limiting::from_code(shm.feedback().limiting) {
        Limiting::ReplicaLag => Reason::ReplicaLagFeedback,
        Limiting::WalDisk => Reason::WalDiskFeedback,
        Limiting::None => reason,
    }
}

/// One attempt under the lock: predict, keep arrival order (queue and pace
/// wait behind earlier waiters of their policy), decide against the
/// policy's bucket, record the decision (a waiting statement records
/// `queued` once, on its first wait) and count it.
fn attempt(
    shm: &mut Locked,
    statement: Statement,
    resolution: &Resolution,
    line: &mut queue::Line,
) -> Step {
    let Some(m) = resolution.matched.as_ref() else {
        return Step::Refused(Refusal::NoBucket { policy_id: 0 });
    };
    let now = process::now();
    let (profile_scope, _, _) = resolution.profile_scope();
    let mut entry = statement.entry(profile_scope);
    let predicted = prediction::predict(shm, profile_scope, statement.query_id, statement.class);
    entry.predicted = predicted;
    settlement::note_scope(shm, resolution, now.epoch_ms);
    let decision = Decision::new(
        resolution,
        statement.class,
        now.epoch_ms,
        statement.query_id,
        statement.query_hash,
    )
    .predicted(predicted);
    let slot_index = m
        .slot
        .and_then(|i| shm.policy_slot_index((i, m.policy_id), entry.dboid));
    // A template policy: the bucket of the statement's own value.
    let bucket = slot_index.and_then(|i| {
        if m.template {
            shm.value_bucket(i, m.scope_hash, now.micros)
        } else {
            Some(BucketRef::policy(i, m.policy_id))
        }
    });
    let Some(bucket) = bucket else {
        // No bucket: the policy or value table is full.
        let decision = decision.outcome(
            DecisionKind::InternalErrorFailOpen,
            Reason::InternalErrorFailOpen,
        );
        shm.counters().bucket_capacity_exhausted_count += 1;
        if guc::fail_open() {
            shm.counters().internal_fail_open_count += 1;
            shm.counters().accepted_statements += 1;
            entry.decision_seq = shm.push_decision(decision.into_slot());
            return Step::Admitted {
                entry: Box::new(entry),
                paced: None,
            };
        }
        shm.counters().rejected_statements += 1;
        shm.push_decision(decision.into_slot());
        return Step::Refused(Refusal::NoBucket {
            policy_id: m.policy_id,
        });
    };
    let dboid = entry.dboid;
    let Some(limits) = shm.buckets(bucket, dboid).map(|b| b.limits) else {
        return Step::Refused(Refusal::NoBucket {
            policy_id: m.policy_id,
        });
    };
    let paced = m.mode == Mode::Pace;
    let waits = matches!(m.mode, Mode::Queue | Mode::Pace);
    let amount = if paced { pace_chunk(limits) } else { predicted };
    let kind = if paced {
        queue::WaitKind::Pace
    } else {
        queue::WaitKind::Queue
    };
    let line_key = queue::LineKey::of(bucket);
    // Nobody overtakes: while earlier statements of the policy (or of the
    // template value) wait, this one gets in line behind them even if
    // budget is there.
    if waits && !queue::is_first(shm, dboid, line_key, line.ticket()) {
        let level = shm
            .buckets(bucket, dboid)
            .map_or(0, |b| b.enforcement.available());
        if line.join(shm, kind, dboid, line_key, amount, now.epoch_ms) {
            shm.count(bucket, dboid, |s| s.queued += 1);
            shm.push_decision(
                decision
                    .levels(level, level)
                    .outcome(DecisionKind::Queued, Reason::BudgetExceeded)
                    .into_slot(),
            );
        }
        return Step::Wait {
            wait_micros: queue::NOT_FIRST_SLEEP_MS * 1000,
            policy_id: m.policy_id,
        };
    }
    let Some(buckets) = shm.buckets(bucket, dboid) else {
        return Step::Refused(Refusal::NoBucket {
            policy_id: m.policy_id,
        });
    };
    let attempt = buckets.admit(m.mode, amount, now.micros);
    let decision = decision.levels(attempt.before, attempt.after);
    match attempt.admission {
        Admission::Admit {
            charged,
            kind,
            reason,
        } => {
            let reason = if line.was_recorded() && reason == Reason::BudgetAvailable {
                Reason::QueuedThenAdmitted
            } else {
                reason
            };
            if kind == DecisionKind::WouldReject {
                shm.counters().shadow_would_reject_count += 1;
            }
            shm.counters().accepted_statements += 1;
            if paced {
                shm.counters().paced_statements += 1;
            }
            let waited = line.waited_micros();
            shm.count(bucket, dboid, |s| {
                s.accepted += 1;
                s.paced += u64::from(paced);
                s.predicted_bytes = s.predicted_bytes.saturating_add(predicted);
                s.queue_wait_micros = s.queue_wait_micros.saturating_add(waited);
            });
            entry.decision_seq = shm.push_decision(decision.outcome(kind, reason).into_slot());
            entry.charged = charged;
            entry.ledger = m.ledger();
            entry.policy = Some(bucket);
            Step::Admitted {
                entry: Box::new(entry),
                paced: paced.then_some(amount),
            }
        }
        Admission::Reject { reason } => {
            let reason = feedback_reason(shm, bucket, dboid, reason);
            shm.counters().rejected_statements += 1;
            shm.count(bucket, dboid, |s| s.rejected += 1);
            shm.push_decision(decision.outcome(DecisionKind::Rejected, reason).into_slot());
            Step::Refused(Refusal::Budget {
                policy_id: m.policy_id,
                mode: m.mode,
                scope: m.describe(),
                predicted,
                available: attempt.before,
                limits,
                reason,
            })
        }
        Admission::Wait { wait_micros } => {
            if line.join(shm, kind, dboid, line_key, amount, now.epoch_ms) {
                shm.count(bucket, dboid, |s| s.queued += 1);
                let reason = feedback_reason(shm, bucket, dboid, Reason::BudgetExceeded);
                shm.push_decision(decision.outcome(DecisionKind::Queued, reason).into_slot());
            }
            Step::Wait {
                wait_micros,
                policy_id: m.policy_id,
            }
        }
    }
}
