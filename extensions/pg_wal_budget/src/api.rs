//! SQL functions in schema `pwb`. Argument names and defaults follow the
//! document; validation lives in `governance::budget::policy`.
use crate::pg::shmem;
use crate::session::InternalScope;
use crate::{errors, policies, profiles, session, settlement};
use governance::budget::admission::{DecisionKind, Reason};
use governance::budget::policy::{self, Mode};
use governance::budget::predict::StatementClass;
use governance::budget::scope::ScopeKind;
use pgrx::prelude::*;

/// The extension's version, as installed in this library.
#[pg_extern(immutable, parallel_safe)]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `preloaded` when loaded through `shared_preload_libraries`, else
/// `not_preloaded` (SQL objects exist but admission control is inactive).
#[pg_extern(stable, parallel_safe)]
fn preload_status() -> &'static str {
    if shmem::available() {
        "preloaded"
    } else {
        "not_preloaded"
    }
}

/// The shared state, with this session's own statements written to it (see
/// `settlement::lock_current`), so a session always sees what it just did.
fn require_shmem() -> shmem::Locked {
    settlement::lock_current().unwrap_or_else(|| errors::not_preloaded())
}

/// Runs `f` with admission control off for this backend: pg_wal_budget's
/// own bookkeeping writes are never throttled, so an administrator can
/// always fix a policy.
fn internal<R>(f: impl FnOnce() -> R) -> R {
    let _internal = InternalScope::enter();
    pgsupport::privileged::with_safe_search_path(f)
}

fn ok<T>(r: Result<T, policy::ArgError>) -> T {
    r.unwrap_or_else(|e| errors::bad_argument(e))
}

/// Creates a policy and returns its id.
#[pg_extern(volatile, parallel_unsafe)]
fn create_policy(
    scope_kind: Option<&str>,
    scope_value: Option<&str>,
    wal_rate_bytes_per_sec: Option<i64>,
    wal_burst_bytes: Option<i64>,
    mode: default!(Option<&str>, "'observe'"),
    priority: default!(Option<i32>, 100),
) -> i32 {
    let kind = ok(policy::parse_scope_kind(scope_kind));
    // None: a template policy (every value of the kind, each its own bucket).
    let value = ok(policy::parse_scope_value(scope_value));
    let (rate, burst) = ok(policy::validate_limits(
        wal_rate_bytes_per_sec,
        wal_burst_bytes,
    ));
    let mode = ok(policy::parse_mode(mode));
    let priority = ok(policy::validate_priority(priority));
    if let Some(mut shm) = settlement::lock_current()
        && !shm.has_free_policy_slot()
    {
        drop(shm);
        errors::bucket_table_full();
    }
    let id = internal(|| {
        Spi::get_one_with_args::<i32>(
            // A CTE, so the statement-level trigger fires even though SPI
            // stops reading after the first row.
            "WITH i AS (INSERT INTO pwb.policy (mode, scope_kind, scope_value, wal_rate_bytes_per_sec, wal_burst_bytes, priority) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING policy_id) SELECT policy_id FROM i",
            &[
                mode.as_str().into(),
                kind.as_str().into(),
                value.into(),
                (rate as i64).into(),
                (burst as i64).into(),
                priority.into(),
            ],
        )
    });
    match id {
        Ok(Some(id)) => id,
        _ => error!("pg_wal_budget could not insert the policy"),
    }
}

fn update_one(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>], policy_id: i32) {
    let n = internal(|| {
        Spi::get_one_with_args::<i64>(
            &format!("WITH u AS ({sql} RETURNING 1) SELECT pg_catalog.count(*) FROM u"),
            args,
        )
    });
    if !matches!(n, Ok(Some(1))) {
        errors::no_such_policy(policy_id);
    }
}

/// Changes a policy's rate and burst (and priority when given).
#[pg_extern(volatile, parallel_unsafe)]
fn update_policy(
    policy_id: Option<i32>,
    wal_rate_bytes_per_sec: Option<i64>,
    wal_burst_bytes: Option<i64>,
    priority: default!(Option<i32>, "NULL"),
) {
    let id = ok(policy::validate_policy_id(policy_id));
    let (rate, burst) = ok(policy::validate_limits(
        wal_rate_bytes_per_sec,
        wal_burst_bytes,
    ));
    update_one(
        "UPDATE pwb.policy SET wal_rate_bytes_per_sec = $2, wal_burst_bytes = $3, \
         priority = coalesce($4, priority), updated_at = pg_catalog.now() \
         WHERE policy_id OPERATOR(pg_catalog.=) $1",
        &[
            id.into(),
            (rate as i64).into(),
            (burst as i64).into(),
            priority.into(),
        ],
        id,
    );
}

/// Sets a policy's mode (off, observe, shadow, queue, reject); re-enables a
/// disabled policy unless the mode is off.
#[pg_extern(volatile, parallel_unsafe)]
fn set_policy_mode(policy_id: Option<i32>, mode: Option<&str>) {
    let id = ok(policy::validate_policy_id(policy_id));
    let mode = ok(policy::parse_mode(mode));
    update_one(
        "UPDATE pwb.policy SET mode = $2, updated_at = pg_catalog.now() \
         WHERE policy_id OPERATOR(pg_catalog.=) $1",
        &[id.into(), mode.as_str().into()],
        id,
    );
}

/// Disables a policy (it stays in pwb.policy, enabled = false).
#[pg_extern(volatile, parallel_unsafe)]
fn disable_policy(policy_id: Option<i32>) {
    let id = ok(policy::validate_policy_id(policy_id));
    update_one(
        "UPDATE pwb.policy SET enabled = false, updated_at = pg_catalog.now() \
         WHERE policy_id OPERATOR(pg_catalog.=) $1",
        &[id.into()],
        id,
    );
}

/// Exempts a policy from replica-lag and WAL-disk feedback (or subjects it
/// to feedback again).
#[pg_extern(volatile, parallel_unsafe)]
fn set_policy_feedback_exempt(policy_id: Option<i32>, exempt: Option<bool>) {
    let id = ok(policy::validate_policy_id(policy_id));
    let Some(exempt) = exempt else {
        errors::bad_argument(policy::ArgError {
            message: "exempt must not be null".into(),
            detail: "exempt is NULL.".into(),
            hint: "Pass true to exempt the policy from feedback, false to subject it again.".into(),
        });
    };
    update_one(
        "UPDATE pwb.policy SET feedback_exempt = $2, updated_at = pg_catalog.now() \
         WHERE policy_id OPERATOR(pg_catalog.=) $1",
        &[id.into(), exempt.into()],
        id,
    );
}

/// Replica-lag and WAL-disk feedback as pg_wal_budget's worker last saw it:
/// one row per streaming standby (none: one row with NULL standby), with the
/// free space on the WAL filesystem, the factor policies' rates are scaled
/// by, and which limit holds it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn feedback() -> TableIterator<
    'static,
    (
        name!(standby, Option<String>),
        name!(replay_lag_bytes, Option<i64>),
        name!(counted, Option<bool>),
        name!(max_replica_lag_bytes, i64),
        name!(wal_disk_free_bytes, Option<i64>),
        name!(min_wal_disk_free_bytes, i64),
        name!(factor, f64),
        name!(limiting, String),
        name!(engaged_since_epoch_ms, Option<i64>),
        name!(updated_epoch_ms, i64),
    ),
> {
    let state = *require_shmem().feedback();
    let lag_limit = i64::try_from(crate::guc::max_replica_lag_bytes()).unwrap_or(i64::MAX);
    let floor = i64::try_from(crate::guc::min_wal_disk_free_bytes()).unwrap_or(i64::MAX);
    let free = (state.wal_disk_free_bytes >= 0).then_some(state.wal_disk_free_bytes);
    let factor = f64::from(state.factor_ppm) / f64::from(governance::budget::buckets::FULL_SCALE);
    let limiting = governance::budget::feedback::Limiting::from_code(state.limiting)
        .as_str()
        .to_string();
    let since = (state.engaged_since_epoch_ms > 0).then_some(state.engaged_since_epoch_ms);
    let n = usize::try_from(state.n_standbys)
        .unwrap_or(0)
        .min(state.standbys.len());
    let mut rows: Vec<_> = state.standbys[..n]
        .iter()
        .map(|s| {
            (
                Some(s.name()),
                (s.lag_bytes >= 0).then_some(s.lag_bytes),
                Some(s.counted),
                lag_limit,
                free,
                floor,
                factor,
                limiting.clone(),
                since,
                state.updated_epoch_ms,
            )
        })
        .collect();
    if rows.is_empty() {
        rows.push((
            None,
            None,
            None,
            lag_limit,
            free,
            floor,
            factor,
            limiting,
            since,
            state.updated_epoch_ms,
        ));
    }
    TableIterator::new(rows)
}

/// Called by the trigger on pwb.policy: tells every backend to reload.
#[pg_extern(volatile, parallel_unsafe)]
fn notify_policy_change() {
    policies::notify_changed();
}

fn require_tenant_setter() {
    if !pgsupport::roles::current_user_has_privs_of(c"pwb_tenant_setter") {
        errors::privilege("set the pg_wal_budget tenant", "pwb_tenant_setter");
    }
}

/// Sets this backend's trusted tenant, like `SET pwb.tenant` (undone by
/// ROLLBACK, cleared by RESET ALL / DISCARD ALL); with `is_local => true`
/// like `SET LOCAL` (until the end of the transaction). A NULL `is_local`
/// counts as false, as does its absence (the 0.3.0 signature, before
/// `ALTER EXTENSION ... UPDATE`).
#[pg_extern(volatile, parallel_unsafe)]
fn set_tenant(tenant: Option<&str>, is_local: default!(Option<bool>, false)) {
    require_tenant_setter();
    let tenant = ok(policy::parse_tenant(tenant));
    let lifetime = if is_local == Some(true) {
        pgsupport::guc::Lifetime::Transaction
    } else {
        pgsupport::guc::Lifetime::Session
    };
    crate::guc::set_tenant(Some(&tenant), lifetime);
}

/// Clears this backend's tenant (like `SET pwb.tenant = ''`).
#[pg_extern(volatile, parallel_unsafe)]
fn clear_tenant() {
    require_tenant_setter();
    crate::guc::set_tenant(None, pgsupport::guc::Lifetime::Session);
}

/// The backend's current tenant, or NULL.
#[pg_extern(stable, parallel_unsafe)]
fn current_tenant() -> Option<String> {
    crate::guc::tenant()
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn counters() -> TableIterator<
    'static,
    (
        name!(accepted_statements, i64),
        name!(rejected_statements, i64),
        name!(shadow_would_reject_count, i64),
        name!(predicted_wal_bytes, i64),
        name!(actual_wal_bytes, i64),
        name!(absolute_prediction_error, i64),
        name!(scope_debt_bytes, i64),
        name!(missing_actual_wal_count, i64),
        name!(internal_fail_open_count, i64),
        name!(aborted_after_charge_count, i64),
        name!(scope_name_drop_count, i64),
        name!(bucket_capacity_exhausted_count, i64),
        name!(policies_without_bucket, i64),
        name!(queue_gave_up_count, i64),
        name!(policy_generation, i64),
        name!(paced_statements, i64),
        name!(pace_wait_ms, i64),
    ),
> {
    let c = *require_shmem().counters();
    policies::refresh_if_stale();
    let without_bucket = policies::without_bucket();
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    TableIterator::once((
        i(c.accepted_statements),
        i(c.rejected_statements),
        i(c.shadow_would_reject_count),
        i(c.predicted_wal_bytes),
        i(c.actual_wal_bytes),
        i(c.absolute_prediction_error),
        i(c.scope_debt_bytes),
        i(c.missing_actual_wal_count),
        i(c.internal_fail_open_count),
        i(c.aborted_after_charge_count),
        i(c.scope_name_drop_count),
        i(c.bucket_capacity_exhausted_count),
        without_bucket,
        i(c.queue_gave_up_count),
        i(shmem::policy_generation()),
        i(c.paced_statements),
        i(c.pace_wait_micros / 1000),
    ))
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn scope_stats() -> TableIterator<
    'static,
    (
        name!(policy_id, i32),
        name!(scope_hash, i64),
        name!(available_bytes, i64),
        name!(max_burst_bytes, i64),
        name!(rate_bytes_per_sec, i64),
        name!(debt_bytes, i64),
        name!(last_refill_epoch_ms, i64),
        name!(mode, String),
        name!(paced_statements, i64),
        name!(pace_wait_ms, i64),
        name!(waiting_statements, i64),
        name!(scope_value, Option<String>),
        name!(effective_rate_bytes_per_sec, i64),
        name!(accepted_statements, i64),
        name!(queued_statements, i64),
        name!(rejected_statements, i64),
        name!(predicted_wal_bytes, i64),
        name!(actual_wal_bytes, i64),
        name!(queue_wait_ms, i64),
    ),
> {
    drop(require_shmem());
    policies::refresh_if_stale();
    // Only policies this session can see: a deleted policy's slot is kept
    // until the table needs it (see `policies::sync_shared`).
    let visible = session::loaded_policy_ids();
    let visible: std::collections::HashSet<i32> = visible.into_iter().collect();
    let dboid = crate::pg::process::database_oid();
    let now = crate::pg::process::now_micros();
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let ms = |micros: u64| i64::try_from(micros).unwrap_or(i64::MAX) / 1000 + 946_684_800_000;
    // Under the lock: plain copies of this database's slots, and the names
    // of its buckets (one pass over the name table); the rows are made
    // after it is released, so that reading holds up governed statements
    // only for the copies.
    let mut shm = require_shmem();
    let policies: Vec<_> = shm
        .policies()
        .iter()
        .filter(|s| s.used && s.dboid == dboid && visible.contains(&s.policy_id))
        .copied()
        .collect();
    let values: Vec<_> = shm
        .values()
        .iter()
        .filter(|v| v.used && v.dboid == dboid)
        .copied()
        .collect();
    let waiters: Vec<_> = shm
        .waiters()
        .iter()
        .filter(|w| w.used && w.dboid == dboid)
        .copied()
        .collect();
    // (policy, scope hash, buckets, statistics)
    let mut found = Vec::new();
    let mut values_of: std::collections::HashMap<(i32, i64), Vec<_>> =
        std::collections::HashMap::new();
    for v in &values {
        values_of
            .entry((v.policy_id, v.incarnation))
            .or_default()
            .push(v);
    }
    for slot in &policies {
        if slot.scope_hash != 0 {
            found.push((*slot, slot.scope_hash, slot.buckets, slot.stats));
            continue;
        }
        // A template policy: one row per value with a bucket.
        for v in values_of
            .get(&(slot.policy_id, slot.incarnation))
            .into_iter()
            .flatten()
        {
            found.push((*slot, v.value_hash, v.buckets, v.stats));
        }
    }
    let wanted: std::collections::HashSet<(u8, i64)> = found
        .iter()
        .map(|(slot, hash, _, _)| (slot.scope_kind, *hash))
        .collect();
    let names: std::collections::HashMap<(u8, i64), String> = shm
        .names()
        .iter()
        .filter(|n| n.used && wanted.contains(&(n.scope_kind, n.scope_hash)))
        .map(|n| ((n.scope_kind, n.scope_hash), n.value()))
        .collect();
    drop(shm);
    let mut waiting_by: std::collections::HashMap<(i32, i64), i64> =
        std::collections::HashMap::new();
    for w in &waiters {
        *waiting_by.entry((w.policy_id, w.value_hash)).or_default() += 1;
    }
    let mut rows = Vec::with_capacity(found.len());
    for (slot, hash, mut b, stats) in found {
        b.enforcement.refill(b.limits, now);
        // The policy's own line, and the value's for a template.
        let count = |h: i64| waiting_by.get(&(slot.policy_id, h)).copied().unwrap_or(0);
        let waiting = count(0) + if hash != 0 { count(hash) } else { 0 };
        let value = names.get(&(slot.scope_kind, hash)).cloned();
        rows.push((
            slot.policy_id,
            hash,
            i(b.enforcement.available()),
            i(b.limits.burst),
            i(b.limits.rate_per_sec),
            i(b.enforcement.debt()),
            ms(b.enforcement.last_refill_micros()),
            Mode::from_code(slot.mode)
                .map_or("unknown", Mode::as_str)
                .to_string(),
            i(stats.paced),
            i(stats.pace_wait_micros / 1000),
            waiting,
            value,
            i(b.effective_rate()),
            i(stats.accepted),
            i(stats.queued),
            i(stats.rejected),
            i(stats.predicted_bytes),
            i(stats.actual_bytes),
            i(stats.queue_wait_micros / 1000),
        ));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    TableIterator::new(rows)
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn query_profiles() -> TableIterator<
    'static,
    (
        name!(scope_hash, i64),
        name!(query_id, i64),
        name!(calls, i64),
        name!(ewma_wal_bytes, f64),
        name!(max_wal_bytes, i64),
        name!(last_seen_epoch_ms, i64),
        name!(is_global, bool),
    ),
> {
    let mut shm = require_shmem();
    let rows: Vec<_> = shm
        .profiles()
        .iter()
        .filter(|p| p.used && p.calls > 0)
        .map(|p| {
            (
                p.scope_hash,
                p.query_id,
                i64::try_from(p.calls).unwrap_or(i64::MAX),
                p.ewma_wal_bytes,
                i64::try_from(p.max_wal_bytes).unwrap_or(i64::MAX),
                p.last_seen_epoch_ms,
                p.scope_hash == 0,
            )
        })
        .collect();
    drop(shm);
    TableIterator::new(rows)
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn recent_decisions(
    decision_limit: default!(Option<i32>, 100),
) -> TableIterator<
    'static,
    (
        name!(timestamp_epoch_ms, i64),
        name!(decision_kind, String),
        name!(policy_id, Option<i32>),
        name!(scope_kind, Option<String>),
        name!(scope_hash, i64),
        name!(query_id, i64),
        name!(statement_class, String),
        name!(predicted_wal_bytes, i64),
        name!(actual_wal_bytes, Option<i64>),
        name!(available_before, Option<i64>),
        name!(available_after, Option<i64>),
        name!(reason_code, String),
        name!(mode, Option<String>),
        name!(query_hash, i64),
    ),
> {
    let limit = match decision_limit {
        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(0),
        other => errors::bad_argument(policy::ArgError {
            message: "decision_limit must be a non-negative integer".into(),
            detail: format!(
                "decision_limit is {}.",
                other.map_or("NULL".to_string(), |n| n.to_string())
            ),
            hint: "Pass the number of most recent decisions to return, e.g. 100.".into(),
        }),
    };
    let decisions = require_shmem().recent_decisions(limit);
    let opt = |v: i64| (v >= 0).then_some(v);
    let rows: Vec<_> = decisions
        .into_iter()
        .map(|d| {
            (
                d.timestamp_epoch_ms,
                DecisionKind::from_code(d.decision_kind)
                    .map_or("unknown", DecisionKind::as_str)
                    .to_string(),
                (d.policy_id > 0).then_some(d.policy_id),
                ScopeKind::from_code(d.scope_kind).map(|k| k.as_str().to_string()),
                d.scope_hash,
                d.query_id,
                StatementClass::from_code(d.statement_class)
                    .map_or("unknown", StatementClass::as_str)
                    .to_string(),
                d.predicted_wal_bytes,
                opt(d.actual_wal_bytes),
                opt(d.available_before),
                opt(d.available_after),
                Reason::from_code(d.reason)
                    .map_or("unknown", Reason::as_str)
                    .to_string(),
                (d.policy_id > 0)
                    .then(|| Mode::from_code(d.mode).map(|m| m.as_str().to_string()))
                    .flatten(),
                d.query_hash,
            )
        })
        .collect();
    TableIterator::new(rows)
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn scope_names() -> TableIterator<
    'static,
    (
        name!(scope_kind, String),
        name!(scope_hash, i64),
        name!(scope_value, String),
        name!(first_seen_epoch_ms, i64),
        name!(last_seen_epoch_ms, i64),
        name!(seen_count, i64),
    ),
> {
    let mut shm = require_shmem();
    let rows: Vec<_> = shm
        .names()
        .iter()
        .filter(|n| n.used)
        .map(|n| {
            (
                ScopeKind::from_code(n.scope_kind)
                    .map_or("unknown", ScopeKind::as_str)
                    .to_string(),
                n.scope_hash,
                n.value(),
                n.first_seen_epoch_ms,
                n.last_seen_epoch_ms,
                i64::try_from(n.seen_count).unwrap_or(i64::MAX),
            )
        })
        .collect();
    drop(shm);
    TableIterator::new(rows)
}

/// The statements pg_wal_budget holds waiting for budget right now: queued
/// before they run, or paced while they run (on PostgreSQL 15 and 16 their
/// wait event is the generic `Extension`; this tells them apart).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn waits() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(policy_id, i32),
        name!(wait_kind, String),
        name!(waiting_since_epoch_ms, i64),
        name!(wanted_bytes, i64),
        name!(position, i32),
    ),
> {
    let dboid = crate::pg::process::database_oid();
    let mut shm = require_shmem();
    let mut waiting: Vec<crate::pg::shmem::WaiterSlot> = shm
        .waiters()
        .iter()
        .filter(|w| w.used && w.dboid == dboid)
        .copied()
        .collect();
    drop(shm);
    waiting.sort_by_key(|w| (w.policy_id, w.ticket));
    let mut rows = Vec::with_capacity(waiting.len());
    let mut position = 0;
    let mut last_policy = None;
    for w in waiting {
        position = if last_policy == Some(w.policy_id) {
            position + 1
        } else {
            1
        };
        last_policy = Some(w.policy_id);
        rows.push((
            w.pid,
            w.policy_id,
            crate::queue::WaitKind::from_code(w.kind)
                .map_or("unknown", crate::queue::WaitKind::as_str)
                .to_string(),
            w.since_epoch_ms,
            i64::try_from(w.wanted).unwrap_or(i64::MAX),
            position,
        ));
    }
    TableIterator::new(rows)
}

/// Prometheus text exposition of pg_wal_budget's counters and per-policy
/// gauges (see docs/monitoring.md).
#[pg_extern(volatile, parallel_unsafe)]
fn metrics() -> String {
    crate::metrics::render().unwrap_or_else(|| errors::not_preloaded())
}

/// Resets counters, recent decisions and scope names.
#[pg_extern(volatile, parallel_unsafe)]
fn reset_stats() {
    let mut shm = require_shmem();
    *shm.counters() = shmem::Counters::default();
    shm.clear_decisions();
    for n in shm.names() {
        n.used = false;
    }
}

/// Forgets every learned profile, in shared memory and in pwb.query_profile.
#[pg_extern(volatile, parallel_unsafe)]
fn reset_profiles() {
    {
        let mut shm = require_shmem();
        for p in shm.profiles() {
            p.used = false;
        }
    }
    internal(profiles::delete_stored);
}

/// Writes the learned profiles to pwb.query_profile now.
#[pg_extern(volatile, parallel_unsafe)]
fn flush_profiles() {
    if !shmem::available() {
        errors::not_preloaded();
    }
    internal(profiles::flush);
}

/// Bytes of shared memory pg_wal_budget requested at the current settings.
#[pg_extern(volatile, parallel_safe)]
fn shmem_bytes() -> i64 {
    i64::try_from(shmem::requested_bytes()).unwrap_or(i64::MAX)
}
