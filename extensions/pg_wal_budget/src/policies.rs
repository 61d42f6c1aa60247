//! The policy cache: the durable `pwb.policy` table of each database is
//! mirrored into shared slots (one pair of token buckets per policy) and into
//! each backend's local copy. A generation counter, bumped by a trigger on
//! `pwb.policy` (and again at commit, and at COMMIT PREPARED), by DDL on
//! this extension and by DROP DATABASE, tells backends to reload.
use crate::pg::process;
use crate::pg::shmem::{self, PolicySlot};
use crate::session;
use crate::types::CachedPolicy;
use governance::budget::buckets::PolicyBuckets;
use governance::budget::policy::{Mode, PolicyKey};
use governance::budget::scope::{ScopeKind, scope_hash};
use governance::token_bucket::BucketLimits;
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
        Read::Rows(rows) => sync_shared(&rows, dboid),
        Read::NotInstalled => {
            release_database_slots(dboid);
            (Vec::new(), Vec::new())
        }
        // Keep what we have and try again at the next statement.
        Read::Locked => return,
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

enum Read {
    Rows(Vec<Row>),
    /// The extension (or its table) is not in this database.
    NotInstalled,
    /// Another transaction holds a lock on `pwb.policy` that conflicts with
    /// reading it (`LOCK TABLE`, `TRUNCATE`, `ALTER TABLE`): we do not wait.
    Locked,
}

/// The columns of `pwb.policy` a reload reads, in [`Row`] order. A 0.3.0
/// schema (the new library before `ALTER EXTENSION ... UPDATE`) has no
/// `feedback_exempt`: it reads as false.
const COLUMNS: [&str; 10] = [
    "policy_id",
    "enabled",
    "mode",
    "scope_kind",
    "scope_value",
    "wal_rate_bytes_per_sec",
    "wal_burst_bytes",
    "priority",
    "created_at",
    "feedback_exempt",
];

/// Reads `pwb.policy` straight from the heap with the latest committed
/// snapshot (plus this transaction's own changes): no SQL runs, so no
/// permission check, search_path, hook or budget is involved, and a lock
/// held by another transaction is not waited for. With 10,000 policies a
/// reload through SPI took 9-12 ms (and 40 ms more when `feedback_exempt`
/// was read through `to_jsonb`), which every governed session paid at its
/// next statement after any policy change.
fn read_rows() -> Read {
    use pgsupport::catalog;
    let Some(relid) = catalog::extension_oid(c"pg_wal_budget")
        .and_then(catalog::extension_schema)
        .and_then(|schema| catalog::relation_oid(c"policy", schema))
    else {
        return Read::NotInstalled;
    };
    let mut rows = Vec::new();
    let read = catalog::read_table_latest(relid, &COLUMNS, |row, at| {
        if let Some(r) = parse_row(row, at) {
            rows.push(r);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match read {
        Ok(_) => Read::Rows(rows),
        Err(catalog::Unreadable::Locked) => Read::Locked,
        Err(catalog::Unreadable::Missing) => Read::NotInstalled,
    }
}

/// One `pwb.policy` row (columns as in [`COLUMNS`]); None when it cannot
/// be a policy (the table's constraints make that impossible).
fn parse_row(row: &pgsupport::catalog::Row<'_>, at: &[Option<usize>]) -> Option<Row> {
    let kind = ScopeKind::parse(&row.text(at[3])?)?;
    let mode = Mode::parse(&row.text(at[2])?)?;
    let rate = row.int8(at[5]).unwrap_or(1).max(1).unsigned_abs();
    let burst = row.int8(at[6]).unwrap_or(1).max(1).unsigned_abs().max(rate);
    Some(Row {
        policy_id: row.int4(at[0])?,
        enabled: row.bool(at[1]).unwrap_or(false),
        mode,
        kind,
        value: row.text(at[4]),
        rate,
        burst,
        priority: row.int4(at[7]).unwrap_or(100),
        // A timestamptz datum is its microseconds since 2000 (an int8).
        incarnation: row.int8(at[8]).unwrap_or(0),
        feedback_exempt: row.bool(at[9]).unwrap_or(false),
    })
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
    let mut ours: HashMap<i32, usize> = HashMap::with_capacity(rows.len());
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

/// `pwb.policy` changed in this transaction: this backend reloads at its
/// next statement (it sees its own change), and every backend once the
/// change is committed and visible to everyone. Other backends are not told
/// before the commit: they could not see the change yet, and a reload of
/// many policies is not free (each one would reload twice per change).
pub fn notify_changed() {
    session::invalidate_policies();
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
