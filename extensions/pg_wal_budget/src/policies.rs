//! The policy cache: the durable `pwb.policy` table of each database is
//! mirrored into shared slots (one pair of token buckets per policy) and into
//! each backend's local copy. A generation counter, bumped by a trigger on
//! `pwb.policy` (and again at commit, and at COMMIT PREPARED), by DDL on
//! this extension and by DROP DATABASE, tells backends to reload.
use crate::pg::process;
use crate::pg::shmem::{self, PolicySlot};
use crate::session::{self, InternalScope};
use crate::types::CachedPolicy;
use governance::budget::buckets::PolicyBuckets;
use governance::budget::policy::{Mode, PolicyKey};
use governance::budget::scope::{ScopeKind, scope_hash};
use governance::token_bucket::BucketLimits;
use pgrx::prelude::*;
use pgsupport::local::BackendCell;
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct Row {
    policy_id: i32,
    enabled: bool,
    mode: Mode,
    kind: ScopeKind,
    /// None: a template policy.
    value: Option<String>,
    rate: u64,
    burst: u64,
    priority: i32,
    /// `created_at`, in microseconds: tells a new row that reuses a
    /// policy_id from the row it replaced.
    incarnation: i64,
    feedback_exempt: bool,
}

/// Whether this backend's copy of the policies is current. Never panics.
pub fn are_current() -> bool {
    session::policies_current(shmem::policy_generation(), process::database_oid())
}

/// Reloads this backend's policies when the generation moved.
pub fn refresh_if_stale() {
    if are_current() || !process::in_transaction() {
        return;
    }
    let generation = shmem::policy_generation();
    let dboid = process::database_oid();
    let (cached, newly_without_bucket) = match read_rows() {
        Some(rows) => sync_shared(&rows, dboid),
        None => {
            release_database_slots(dboid);
            (Vec::new(), Vec::new())
        }
    };
    for policy_id in newly_without_bucket {
        crate::errors::warn_without_bucket(policy_id);
    }
    pgrx::debug1!(
        "pg_wal_budget: loaded {} policies at generation {generation}",
        cached.len()
    );
    session::install_policies(cached, generation, dboid);
}

/// Reads `pwb.policy` as the bootstrap superuser (the statement's user need
/// not see the table), with a pinned search_path, with the latest committed
/// snapshot, and with our own hooks switched off; `None` when the extension
/// is not installed in this database.
fn read_rows() -> Option<Vec<Row>> {
    pgsupport::catalog::extension_oid(c"pg_wal_budget")?;
    let _internal = InternalScope::enter();
    let rows = pgsupport::privileged::as_superuser(|| {
        crate::pg::snapshot::with_latest_snapshot(|| Spi::connect(select_rows))
    });
    Some(rows.unwrap_or_default())
}

fn select_rows(client: &pgrx::spi::SpiClient<'_>) -> Result<Vec<Row>, pgrx::spi::Error> {
    let table = client.select(
        // feedback_exempt is read through to_jsonb: a 0.3.0 schema (the new
        // library before ALTER EXTENSION ... UPDATE) has no such column.
        "SELECT p.policy_id, p.enabled, p.mode, p.scope_kind, p.scope_value, \
         p.wal_rate_bytes_per_sec, p.wal_burst_bytes, p.priority, \
         (pg_catalog.date_part('epoch', p.created_at) OPERATOR(pg_catalog.*) 1000000)::int8, \
         (pg_catalog.to_jsonb(p) OPERATOR(pg_catalog.->>) 'feedback_exempt')::bool \
         FROM pwb.policy p",
        None,
        &[],
    )?;
    let mut rows = Vec::new();
    for row in table {
        let (Some(id), Some(kind)) = (
            row.get::<i32>(1)?,
            row.get::<String>(4)?.and_then(|k| ScopeKind::parse(&k)),
        ) else {
            continue;
        };
        let value = row.get::<String>(5)?;
        let Some(mode) = row.get::<String>(3)?.and_then(|m| Mode::parse(&m)) else {
            continue;
        };
        let rate = row.get::<i64>(6)?.unwrap_or(1).max(1).unsigned_abs();
        let burst = row
            .get::<i64>(7)?
            .unwrap_or(1)
            .max(1)
            .unsigned_abs()
            .max(rate);
        rows.push(Row {
            policy_id: id,
            enabled: row.get::<bool>(2)?.unwrap_or(false),
            mode,
            kind,
            value,
            rate,
            burst,
            priority: row.get::<i32>(8)?.unwrap_or(100),
            incarnation: row.get::<i64>(9)?.unwrap_or(0),
            feedback_exempt: row.get::<bool>(10)?.unwrap_or(false),
        });
    }
    Ok(rows)
}

/// The extension is gone from database `dboid` (DROP EXTENSION, DROP
/// DATABASE): its policies' buckets go too, so a later CREATE EXTENSION,
/// which numbers policies from 1 again, starts with full buckets.
pub fn release_database_slots(dboid: u32) {
    let Some(mut shm) = shmem::lock() else {
        return;
    };
    for slot in shm
        .policies()
        .iter_mut()
        .filter(|s| s.used && s.dboid == dboid)
    {
        slot.used = false;
    }
    for value in shm
        .values()
        .iter_mut()
        .filter(|v| v.used && v.dboid == dboid)
    {
        value.used = false;
    }
}

/// Mirrors this database's rows into the shared slots, keeping bucket state
/// for policies that already had a slot, and returns the local cache. Holds
/// the lock for one pass over the slots and one over the rows.
///
/// A slot whose policy this backend cannot see is left alone while free
/// slots remain: the policy may be deleted, but it may as well be another
/// session's uncommitted policy, or one committed after `rows` were read, and
/// freeing its slot would leave the backends using it without a bucket.
/// Such slots are reclaimed only when a visible policy needs one and the
/// table is full.
/// Also returns the policies that found the table full for the first time
/// (to warn about once the lock is released).
fn sync_shared(rows: &[Row], dboid: u32) -> (Vec<CachedPolicy>, Vec<i32>) {
    let now = process::now_micros();
    let Some(mut shm) = shmem::lock() else {
        return (Vec::new(), Vec::new());
    };
    let slots = shm.policies();
    let visible: HashMap<i32, ()> = rows.iter().map(|r| (r.policy_id, ())).collect();
    let mut ours: HashMap<i32, usize> = HashMap::new();
    let mut free: Vec<usize> = Vec::new();
    let mut reclaimable: Vec<usize> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        if !slot.used {
            free.push(i);
        } else if slot.dboid == dboid {
            if visible.contains_key(&slot.policy_id) {
                ours.insert(slot.policy_id, i);
            } else {
                reclaimable.push(i);
            }
        }
    }
    // Hand out free slots lowest first, then invisible ones.
    free.reverse();
    reclaimable.reverse();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let limits = BucketLimits {
            rate_per_sec: row.rate,
            burst: row.burst,
        };
        let hash = row.value.as_deref().map_or(0, |v| scope_hash(row.kind, v));
        let existing = ours.get(&row.policy_id).copied();
        let index = existing
            .or_else(|| free.pop())
            .or_else(|| reclaimable.pop());
        if let Some(i) = index {
            let slot = &mut slots[i];
            let same_policy = existing.is_some()
                && slot.incarnation == row.incarnation
                && slot.scope_hash == hash
                && slot.scope_kind == row.kind.code();
            if same_policy {
                slot.buckets.change_limits(limits, now);
            } else {
                slot.buckets = PolicyBuckets::fresh(limits, now);
                slot.stats = shmem::PolicyStats::default();
            }
            *slot = PolicySlot {
                used: true,
                enabled: row.enabled,
                mode: row.mode.code(),
                scope_kind: row.kind.code(),
                dboid,
                policy_id: row.policy_id,
                priority: row.priority,
                scope_hash: hash,
                incarnation: row.incarnation,
                feedback_exempt: row.feedback_exempt,
                buckets: slot.buckets,
                stats: slot.stats,
            };
        }
        out.push(CachedPolicy {
            key: PolicyKey {
                policy_id: row.policy_id,
                enabled: row.enabled,
                mode: row.mode,
                scope_kind: row.kind,
                scope_hash: hash,
                template: row.value.is_none(),
                priority: row.priority,
                rate: row.rate,
                burst: row.burst,
            },
            scope_value: row.value.clone(),
            slot: index,
        });
    }
    let mut newly_without_bucket = Vec::new();
    for policy in out.iter().filter(|p| p.slot.is_none()) {
        if shm.first_without_bucket(dboid, policy.key.policy_id) {
            newly_without_bucket.push(policy.key.policy_id);
        }
    }
    (out, newly_without_bucket)
}

/// How many of this database's policies have no bucket (the table was full
/// when this backend last loaded them).
pub fn without_bucket() -> i64 {
    session::count_policies_without_bucket()
}

static BUMP_AT_COMMIT: BackendCell<bool> = BackendCell::new(false);

/// `pwb.policy` changed in this transaction: reload now, and again once the
/// change is committed and visible to everyone.
pub fn notify_changed() {
    shmem::bump_policy_generation();
    BUMP_AT_COMMIT.set(true);
}

/// Whether this transaction changed policies (for the commit callback's
/// quick check). Never panics.
pub fn bump_pending() -> bool {
    BUMP_AT_COMMIT.try_with(|b| *b).unwrap_or(false)
}

/// Transaction end: publish a committed change (or a rolled-back one, which
/// costs only a reload), and wake this database's waiting statements so
/// they look at the policies again.
pub fn at_transaction_end() {
    if BUMP_AT_COMMIT.replace(false) {
        shmem::bump_policy_generation();
        wake_waiters();
    }
}

/// Wakes every statement of this database waiting for budget (a policy may
/// have changed under it).
pub fn wake_waiters() {
    let dboid = process::database_oid();
    let pids = shmem::lock()
        .map(|mut shm| crate::queue::waiters_of_database(&mut shm, dboid))
        .unwrap_or_default();
    crate::queue::wake(pids);
}
