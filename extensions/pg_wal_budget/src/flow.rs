//! How a statement flows through pg_wal_budget: classify, resolve the scope,
//! match a policy, predict, decide (observe / shadow / queue / reject),
//! charge, and after execution measure, reconcile and learn. The hook bodies
//! in `hooks.rs` call [`begin_statement`], [`end_statement`] and the abort
//! functions here; the arithmetic lives in `governance::budget`.
use crate::{backend, errors, guc, policies, shmem, wal};
use governance::budget::admission::{self, Admission, DecisionKind, Ledger, Reason};
use governance::budget::policy::Mode;
use governance::budget::predict::{self, Predictor, Profile, StatementClass};
use governance::budget::scope::ScopeKind;
use pgrx::pg_sys;
use std::rc::Rc;

/// One admitted statement waiting for its end.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Identity of the QueryDesc / PlannedStmt that opened it.
    pub marker: usize,
    pub subxid: pg_sys::SubTransactionId,
    pub wal_start: u64,
    pub predicted: u64,
    pub charged: u64,
    /// Which bucket of the governing policy the measured WAL is settled in.
    pub ledger: Ledger,
    /// (slot index, policy id) of the governing policy.
    pub policy: Option<(usize, i32)>,
    pub dboid: u32,
    pub profile_scope: i64,
    pub query_id: i64,
    pub decision_seq: u64,
    /// Set for a statement admitted without writing shared state (observe
    /// mode, or no policy): its decision is written when it is settled.
    pub deferred: Option<Deferred>,
    /// Opened by ProcessUtility: may span internal commits (VACUUM, CREATE
    /// INDEX CONCURRENTLY), so it survives transaction commit.
    pub utility: bool,
}

impl Entry {
    /// A statement opened by `marker` that has charged nothing yet, in the
    /// current subtransaction and database. Never panics.
    fn new(marker: usize, class: StatementClass, query_id: i64, profile_scope: i64) -> Entry {
        Entry {
            marker,
            subxid: wal::subxact_id(),
            wal_start: 0,
            predicted: 0,
            charged: 0,
            ledger: Ledger::None,
            policy: None,
            dboid: wal::database_oid(),
            profile_scope,
            query_id,
            decision_seq: 0,
            deferred: None,
            utility: matches!(class, StatementClass::Utility | StatementClass::Copy),
        }
    }
}

/// What the decision of a statement that charges nothing is written from,
/// kept until the statement is settled: its class, when it was admitted,
/// its text's hash, and the scope and policy it was resolved to. (Small on
/// purpose: every governed statement's entry is moved a few times.)
#[derive(Debug, Clone)]
pub struct Deferred {
    pub class: StatementClass,
    pub timestamp_epoch_ms: i64,
    pub query_hash: i64,
    pub resolution: Rc<backend::Resolution>,
}

/// Whether a statement of this shape should be governed at all: cheap checks
/// only, so read-only statements pay almost nothing. Runs outside pgrx's
/// guard (see hooks.rs), so nothing here may panic.
pub fn should_govern() -> bool {
    guc::enabled()
        && shmem::available()
        && backend::is_idle_for_admission()
        && !is_parallel_worker()
}

fn is_parallel_worker() -> bool {
    // SAFETY: a plain per-process global.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Whether a statement governed by `matched` (None: no policy) charges
/// nothing: observe mode, or no policy. A policy without a bucket slot is
/// not among them: it takes the locked path, which fails open or errors.
fn charges_nothing(matched: Option<&Matched>) -> bool {
    matched.is_none_or(|m| Ledger::for_mode(m.mode) == Ledger::None && m.slot.is_some())
}

/// The entry of a statement that charges nothing, ready to push: its WAL
/// counter is read last. It takes no lock: its prediction, decision,
/// counters and scope are written after it ends (see `settle`). Never panics.
fn uncharged_entry(
    class: StatementClass,
    query_id: i64,
    query_hash: i64,
    marker: usize,
    resolution: Rc<backend::Resolution>,
) -> Entry {
    let mut entry = Entry::new(marker, class, query_id, resolution.profile_scope().0);
    entry.policy = resolution
        .matched
        .as_ref()
        .and_then(|m| m.slot.map(|i| (i, m.policy_id)));
    entry.deferred = Some(Deferred {
        class,
        timestamp_epoch_ms: wal::now().epoch_ms,
        query_hash,
        resolution,
    });
    entry.wal_start = wal::wal_bytes();
    entry
}

/// Admission of a statement that charges nothing, without pgrx's guard:
/// the common case of a stream of observed statements, once this backend's
/// policies and scope resolution are current. Never panics and raises no
/// error; false (nothing changed) sends the statement to the guarded
/// [`begin_statement`], which also loads what is stale.
pub fn try_begin_uncharged(
    class: StatementClass,
    query_id: i64,
    query_hash: i64,
    marker: usize,
) -> bool {
    if !policies::are_current() {
        return false;
    }
    let Some(resolution) = backend::cached_resolution(guc::composite_scope_enabled()) else {
        return false;
    };
    if !charges_nothing(resolution.matched.as_ref()) {
        return false;
    }
    backend::try_push(uncharged_entry(
        class, query_id, query_hash, marker, resolution,
    ))
}

/// Admission for one top-level writing statement. May wait (queue mode) or
/// raise an error (reject mode, or an internal failure with fail_open off).
pub fn begin_statement(class: StatementClass, query_id: i64, query_hash: i64, marker: usize) {
    let composite = guc::composite_scope_enabled();
    let dboid = wal::database_oid();
    let mut queued_recorded = false;
    let mut was_queued = false;

    loop {
        // Re-resolved on every attempt, so a queued statement sees a policy
        // being switched, relaxed or disabled while it waits.
        policies::refresh_if_stale();
        let resolution = backend::resolve(composite);
        let matched = resolution.matched.as_ref();
        let (profile_scope_hash, profile_scope_kind, profile_scope_value) =
            resolution.profile_scope();
        let now = wal::now();
        let (now_us, now_ms) = (now.micros, now.epoch_ms);
        let m = match matched {
            Some(m) if !charges_nothing(matched) => m,
            _ => {
                let resolution = Rc::clone(&resolution);
                backend::push(uncharged_entry(
                    class, query_id, query_hash, marker, resolution,
                ));
                return;
            }
        };
        let mut entry = Entry::new(marker, class, query_id, profile_scope_hash);
        let mut decision = shmem::DecisionSlot {
            seq: 0,
            timestamp_epoch_ms: now_ms,
            decision_kind: DecisionKind::Allowed.code(),
            reason: Reason::NoPolicy.code(),
            scope_kind: profile_scope_kind.code(),
            statement_class: class.code(),
            mode: m.mode.code(),
            policy_id: m.policy_id,
            scope_hash: profile_scope_hash,
            query_id,
            query_hash,
            predicted_wal_bytes: 0,
            actual_wal_bytes: -1,
            available_before: -1,
            available_after: -1,
        };
        let Some(mut shm) = lock_current() else {
            return;
        };
        let predicted = predict_statement(&mut shm, profile_scope_hash, query_id, class);
        decision.predicted_wal_bytes = clamp_i64(predicted);
        entry.predicted = predicted;
        if profile_scope_hash != 0
            && !shm.note_scope(
                profile_scope_kind.code(),
                profile_scope_hash,
                profile_scope_value,
                now_ms,
            )
        {
            shm.counters().scope_name_drop_count += 1;
        }
        let slot_index = m
            .slot
            .and_then(|i| shm.policy_slot_index((i, m.policy_id), dboid));
        let Some(slot_index) = slot_index else {
            // The policy has no shared bucket: the bucket table is full.
            decision.decision_kind = DecisionKind::InternalErrorFailOpen.code();
            decision.reason = Reason::InternalErrorFailOpen.code();
            if guc::fail_open() {
                shm.counters().internal_fail_open_count += 1;
                shm.counters().accepted_statements += 1;
                entry.decision_seq = shm.push_decision(decision);
                drop(shm);
                entry.wal_start = wal::wal_bytes();
                backend::push(entry);
                return;
            }
            shm.counters().rejected_statements += 1;
            shm.push_decision(decision);
            drop(shm);
            errors::internal_failure(m.policy_id);
        };

        let (rate, burst, admission, before, after) = {
            let slot = &mut shm.policies()[slot_index];
            let limits = slot.limits();
            let bucket = slot.bucket_mut(Ledger::for_mode(m.mode));
            bucket.refill(limits, now_us);
            let before = bucket.available();
            let admission = admission::admit(m.mode, bucket, limits, predicted, now_us);
            let after = bucket.available();
            (limits.rate_per_sec, limits.burst, admission, before, after)
        };
        decision.available_before = clamp_i64(before);
        decision.available_after = clamp_i64(after);
        match admission {
            Admission::Admit {
                charged,
                kind,
                reason,
            } => {
                decision.decision_kind = kind.code();
                decision.reason = if was_queued && reason == Reason::BudgetAvailable {
                    Reason::QueuedThenAdmitted.code()
                } else {
                    reason.code()
                };
                if kind == DecisionKind::WouldReject {
                    shm.counters().shadow_would_reject_count += 1;
                }
                shm.counters().accepted_statements += 1;
                entry.decision_seq = shm.push_decision(decision);
                entry.charged = charged;
                entry.ledger = Ledger::for_mode(m.mode);
                entry.policy = Some((slot_index, m.policy_id));
                drop(shm);
                entry.wal_start = wal::wal_bytes();
                backend::push(entry);
                return;
            }
            Admission::Reject { reason } => {
                decision.decision_kind = DecisionKind::Rejected.code();
                decision.reason = reason.code();
                shm.counters().rejected_statements += 1;
                shm.push_decision(decision);
                drop(shm);
                errors::budget_exceeded(
                    m.policy_id,
                    m.mode,
                    &m.describe(),
                    predicted,
                    before,
                    rate,
                    burst,
                    reason,
                );
            }
            Admission::Wait { wait_micros } => {
                if !queued_recorded {
                    decision.decision_kind = DecisionKind::Queued.code();
                    decision.reason = Reason::BudgetExceeded.code();
                    shm.push_decision(decision);
                    queued_recorded = true;
                }
                was_queued = true;
                drop(shm);
                wal::wait_for_budget(wait_micros);
            }
        }
    }
}

/// Predicts a statement's WAL from its profiles in shared memory, keyed by
/// (scope, query id): the statement's scope first, the global profile
/// (scope 0) only when the scope has none, no lookup at all without a query
/// id or with the class-fallback predictor.
fn predict_statement(
    shm: &mut shmem::Locked,
    scope_hash: i64,
    query_id: i64,
    class: StatementClass,
) -> u64 {
    let mut profile = |scope| shm.profile(scope, query_id, false).map(|p| to_profile(p));
    let predictor = guc::predictor();
    let wants_profiles = query_id != 0 && predictor == Predictor::ProfileEwma;
    let scope_profile = wants_profiles
        .then(|| profile(scope_hash))
        .flatten()
        .filter(|p| p.calls > 0);
    let global_profile = (wants_profiles && scope_profile.is_none())
        .then(|| profile(0))
        .flatten();
    let (predicted, _) = predict::predict(
        predictor,
        class,
        scope_profile.as_ref(),
        global_profile.as_ref(),
        guc::prediction_defaults(),
    );
    predicted
}

fn to_profile(p: &shmem::ProfileSlot) -> Profile {
    Profile {
        calls: p.calls,
        ewma_wal_bytes: p.ewma_wal_bytes,
        max_wal_bytes: p.max_wal_bytes,
    }
}

pub fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// After the statement opened by `marker` ran to completion: measure,
/// reconcile, learn.
pub fn end_statement(marker: usize) {
    let Some(entry) = backend::pop_if_top(marker) else {
        return;
    };
    settle(entry, wal::wal_bytes(), true);
}

/// [`end_statement`] without pgrx's guard for a statement that charged
/// nothing: holds it (see `settle`) unless that would make the held
/// statements due for writing. Never panics; false (nothing changed) leaves
/// the statement to the guarded [`end_statement`].
pub fn try_end_uncharged(marker: usize) -> bool {
    backend::try_hold_completed(marker, wal::wal_bytes(), MAX_HELD_MEASUREMENTS)
}

/// Transaction abort: settle every open statement for the WAL it actually
/// wrote, without learning from the partial run.
pub fn abort_all() {
    for entry in backend::drain_all() {
        settle(entry, wal::wal_bytes(), false);
    }
}

/// Transaction commit: executor statements still open (a portal never run
/// to its end) are settled; utility statements spanning commits stay open.
pub fn commit() {
    for entry in backend::drain_executor_entries() {
        settle(entry, wal::wal_bytes(), false);
    }
}

/// Subtransaction abort: settle the statements opened inside it.
pub fn abort_subxact(subxid: pg_sys::SubTransactionId) {
    for entry in backend::drain_from_subxact(subxid) {
        settle(entry, wal::wal_bytes(), false);
    }
}

/// A settled statement that charged nothing (observe mode, or no policy),
/// held by its backend until it is written to shared memory.
#[derive(Debug, Clone)]
pub struct Measured {
    pub entry: Entry,
    /// The WAL it wrote.
    pub actual: u64,
    /// Whether it ran to completion (only then is its profile learned).
    pub completed: bool,
}

/// Most measured statements a backend holds before writing them, so that a
/// long transaction publishes its statements as it goes and holds bounded
/// memory.
const MAX_HELD_MEASUREMENTS: usize = 32;

/// Takes the shared-memory lock and first writes the statements this backend
/// holds, so that whatever the caller reads or changes includes them: the
/// telemetry functions, and every locked admission (whose prediction then
/// learns from this session's earlier statements). `None` when shared memory
/// is not attached.
pub fn lock_current() -> Option<shmem::Locked> {
    let mut shm = shmem::lock()?;
    write_measured(&mut shm);
    Some(shm)
}

fn write_measured(shm: &mut shmem::Locked) {
    if !backend::has_measured() {
        return;
    }
    let now = wal::now();
    for measured in backend::take_measured() {
        write_uncharged(shm, &measured, now);
    }
}

/// Transaction end (after its commit, abort or prepare record was written
/// and its locks released): writes the statements this backend holds, and
/// charges the WAL written since the last governed statement settled, mostly
/// that record, as debt to the same policy bucket. Without that charge, a
/// stream of small autocommit writes would exceed its rate by the size of
/// its commit records.
pub fn end_transaction() {
    let tail = backend::take_tail().and_then(|tail| {
        let written = wal::wal_bytes().saturating_sub(tail.wal_mark);
        (written > 0).then_some((tail, written))
    });
    if tail.is_none() && !backend::has_measured() {
        return;
    }
    let Some(mut shm) = lock_current() else {
        return;
    };
    let Some((tail, written)) = tail else {
        return;
    };
    let debt_added = shm
        .policy_slot(tail.policy, tail.dboid)
        .and_then(|slot| slot.settle(tail.ledger, 0, written))
        .map_or(0, |(r, _)| r.debt_added);
    if tail.ledger == Ledger::Enforcement {
        let c = shm.counters();
        c.scope_debt_bytes = c.scope_debt_bytes.saturating_add(debt_added);
    }
}

/// Settles one statement that ended (or was abandoned) when the backend's
/// WAL counter stood at `wal_end`.
///
/// A statement that charged nothing has written nothing to shared memory
/// yet; it is held and written with the transaction's other such statements
/// under one lock once the transaction has ended and released its locks (or
/// sooner, see [`lock_current`]).
/// Under an observe policy a tpcb-like transaction then takes the exclusive
/// lock once instead of four times (bench/pg_wal_budget/results.md, sixth
/// session: no TPS change measurable on 2 vCPUs, fewer lock hand-offs).
fn settle(entry: Entry, wal_end: u64, completed: bool) {
    let actual = wal_end.saturating_sub(entry.wal_start);
    if entry.deferred.is_some() {
        let measured = Measured {
            entry,
            actual,
            completed,
        };
        if backend::hold_measured(measured) >= MAX_HELD_MEASUREMENTS {
            drop(lock_current());
        }
        return;
    }
    let Some(mut shm) = lock_current() else {
        return;
    };
    let mut after = None;
    if let Some(policy) = entry.policy
        && let Some(slot) = shm.policy_slot(policy, entry.dboid)
        && let Some((r, available)) = slot.settle(entry.ledger, entry.charged, actual)
    {
        after = Some(available);
        if entry.ledger == Ledger::Enforcement {
            let c = shm.counters();
            c.scope_debt_bytes = c.scope_debt_bytes.saturating_add(r.debt_added);
        }
        backend::set_tail(backend::Tail {
            policy,
            dboid: entry.dboid,
            ledger: entry.ledger,
            wal_mark: wal_end,
        });
    }
    if let Some(d) = shm.decision_mut(entry.decision_seq) {
        d.actual_wal_bytes = clamp_i64(actual);
        if let Some(a) = after {
            d.available_after = clamp_i64(a);
        }
    }
    count_and_learn(
        &mut shm,
        &entry,
        entry.predicted,
        actual,
        completed,
        wal::now(),
    );
}

/// Writes a statement that charged nothing: its scope, its count, its
/// decision (complete with the prediction, the measured WAL and, under an
/// observe policy, the bucket it would have been checked against) and its
/// profile.
fn write_uncharged(shm: &mut shmem::Locked, measured: &Measured, now: wal::Now) {
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
    let predicted = predict_statement(shm, entry.profile_scope, entry.query_id, deferred.class);
    let (scope_hash, scope_kind, scope_value) = deferred.resolution.profile_scope();
    if scope_hash != 0 && !shm.note_scope(scope_kind.code(), scope_hash, scope_value, now.epoch_ms)
    {
        shm.counters().scope_name_drop_count += 1;
    }
    shm.counters().accepted_statements += 1;
    let matched = deferred.resolution.matched.as_ref();
    let mut decision = shmem::DecisionSlot {
        seq: 0,
        timestamp_epoch_ms: deferred.timestamp_epoch_ms,
        decision_kind: DecisionKind::Allowed.code(),
        reason: match matched {
            Some(_) => Reason::ObserveMode.code(),
            None => Reason::NoPolicy.code(),
        },
        scope_kind: scope_kind.code(),
        statement_class: deferred.class.code(),
        mode: matched.map_or(0, |m| m.mode.code()),
        policy_id: matched.map_or(0, |m| m.policy_id),
        scope_hash,
        query_id: entry.query_id,
        query_hash: deferred.query_hash,
        predicted_wal_bytes: clamp_i64(predicted),
        actual_wal_bytes: clamp_i64(*actual),
        available_before: -1,
        available_after: -1,
    };
    if let Some(policy) = entry.policy
        && let Some(slot) = shm.policy_slot(policy, entry.dboid)
    {
        // Read without refilling: observe mode never writes the bucket.
        let available = slot.bucket.available_at(slot.limits(), now.micros);
        decision.available_before = clamp_i64(available);
        decision.available_after = decision.available_before;
    }
    shm.push_decision(decision);
    count_and_learn(shm, entry, predicted, *actual, *completed, now);
}

/// The counters every settled statement adds to, and the EWMA profiles of
/// its (scope, query id) and of the query id across scopes (scope 0), which
/// learn only from statements that ran to completion.
fn count_and_learn(
    shm: &mut shmem::Locked,
    entry: &Entry,
    predicted: u64,
    actual: u64,
    completed: bool,
    now: wal::Now,
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
    if !completed || entry.query_id == 0 {
        return;
    }
    let alpha = guc::profile_ewma_alpha();
    for scope in [entry.profile_scope, 0] {
        if let Some(p) = shm.profile(scope, entry.query_id, true) {
            let mut profile = to_profile(p);
            profile.observe(actual, alpha);
            p.calls = profile.calls;
            p.ewma_wal_bytes = profile.ewma_wal_bytes;
            p.max_wal_bytes = profile.max_wal_bytes;
            p.last_seen_epoch_ms = now.epoch_ms;
            p.dirty = true;
        }
        if entry.profile_scope == 0 {
            break;
        }
    }
}

/// A policy as matched for one statement.
#[derive(Debug, Clone)]
pub struct Matched {
    pub policy_id: i32,
    pub mode: Mode,
    pub scope_kind: ScopeKind,
    pub scope_value: String,
    pub scope_hash: i64,
    pub slot: Option<usize>,
}

impl Matched {
    pub fn describe(&self) -> String {
        format!("{} \"{}\"", self.scope_kind.as_str(), self.scope_value)
    }
}
