//! The shared-memory policy cache: the durable `pwb.policy` table of each
//! database is mirrored into shared slots (one token bucket per policy) and
//! into each backend's local copy. A generation counter, bumped by a trigger
//! on `pwb.policy` (and again at commit), by extension DDL and by DROP
//! DATABASE, tells backends to reload.
use crate::backend::{self, BackendLocal, CachedPolicy};
use crate::shmem::PolicySlot;
use crate::{shmem, wal};
use governance::budget::policy::{Mode, PolicyKey};
use governance::budget::scope::{ScopeKind, scope_hash};
use governance::token_bucket::{BucketLimits, TokenBucket};
use pgrx::prelude::*;
use std::cell::Cell;

#[derive(Debug, Clone)]
struct Row {
    policy_id: i32,
    enabled: bool,
    mode: Mode,
    kind: ScopeKind,
    value: String,
    rate: u64,
    burst: u64,
    priority: i32,
}

/// Whether this backend's copy of the policies is current. Never panics.
pub fn are_current() -> bool {
    backend::policies_current(shmem::policy_generation(), wal::database_oid())
}

/// Reloads this backend's policies when the generation moved.
pub fn refresh_if_stale() {
    if are_current() {
        return;
    }
    let generation = shmem::policy_generation();
    let dboid = wal::database_oid();
    // SAFETY: reads transaction state.
    if !unsafe { pg_sys::IsTransactionState() } {
        return;
    }
    let cached = match read_rows() {
        Some(rows) => sync_shared(&rows, dboid),
        None => {
            release_database_slots(dboid);
            Vec::new()
        }
    };
    pgrx::debug1!(
        "pg_wal_budget: loaded {} policies at generation {generation}",
        cached.len()
    );
    backend::install_policies(cached, generation, dboid);
}

fn extension_installed() -> bool {
    // SAFETY: catalog lookup with missing_ok = true.
    unsafe { pg_sys::get_extension_oid(c"pg_wal_budget".as_ptr(), true) != pg_sys::InvalidOid }
}

/// Reads `pwb.policy` as the bootstrap superuser (the statement's user need
/// not see the table), with our own hooks switched off; `None` when the
/// extension is not installed in this database.
fn read_rows() -> Option<Vec<Row>> {
    if !extension_installed() {
        return None;
    }
    let _internal = backend::InternalScope::enter();
    // As the bootstrap superuser (the statement's user need not see the
    // table), with a pinned search_path.
    pgsupport::privileged::as_superuser(read_rows_with_latest_snapshot)
}

fn read_rows_with_latest_snapshot() -> Option<Vec<Row>> {
    // SAFETY: reads the policies with the latest committed snapshot (not the
    // statement's, which a queued statement took before waiting), popped
    // below; an error in between is cleaned up by transaction abort.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let rows = Spi::connect(|client| -> Result<Vec<Row>, pgrx::spi::Error> {
        let table = client.select(
            "SELECT policy_id, enabled, mode, scope_kind, scope_value, \
             wal_rate_bytes_per_sec, wal_burst_bytes, priority FROM pwb.policy",
            None,
            &[],
        )?;
        let mut rows = Vec::new();
        for row in table {
            let (Some(id), Some(kind), Some(value)) = (
                row.get::<i32>(1)?,
                row.get::<String>(4)?.and_then(|k| ScopeKind::parse(&k)),
                row.get::<String>(5)?,
            ) else {
                continue;
            };
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
            });
        }
        Ok(rows)
    });
    // SAFETY: undoes the snapshot push above.
    unsafe { pg_sys::PopActiveSnapshot() };
    Some(rows.unwrap_or_default())
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
}

/// Mirrors this database's rows into the shared slots, keeping bucket state
/// for policies that already had a slot, and returns the local cache.
///
/// A slot whose policy this backend cannot see is left alone while free
/// slots remain: the policy may be deleted, but it may as well be another
/// session's uncommitted policy, or one committed after `rows` were read, and
/// freeing its slot would leave the backends using it without a bucket.
/// Such slots are reclaimed only when a visible policy needs one and the
/// table is full.
fn sync_shared(rows: &[Row], dboid: u32) -> Vec<CachedPolicy> {
    let now = wal::now_micros();
    let Some(mut shm) = shmem::lock() else {
        return Vec::new();
    };
    let slots = shm.policies();
    let visible = |slot: &PolicySlot| rows.iter().any(|r| r.policy_id == slot.policy_id);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let limits = BucketLimits {
            rate_per_sec: row.rate,
            burst: row.burst,
        };
        let hash = scope_hash(row.kind, &row.value);
        let existing = slots
            .iter()
            .position(|s| s.used && s.dboid == dboid && s.policy_id == row.policy_id);
        let index = existing
            .or_else(|| slots.iter().position(|s| !s.used))
            .or_else(|| slots.iter().position(|s| s.dboid == dboid && !visible(s)));
        if let Some(i) = index {
            let slot = &mut slots[i];
            let old_limits = slot.limits();
            let fresh =
                existing.is_none() || slot.scope_hash != hash || slot.scope_kind != row.kind.code();
            for bucket in [&mut slot.bucket, &mut slot.shadow_bucket] {
                if fresh {
                    *bucket = TokenBucket::full(limits, now);
                } else {
                    bucket.refill(old_limits, now);
                    bucket.apply_limits(limits);
                }
            }
            slot.used = true;
            slot.dboid = dboid;
            slot.policy_id = row.policy_id;
            slot.enabled = row.enabled;
            slot.mode = row.mode.code();
            slot.scope_kind = row.kind.code();
            slot.scope_hash = hash;
            slot.priority = row.priority;
            slot.rate = row.rate;
            slot.burst = row.burst;
        }
        out.push(CachedPolicy {
            key: PolicyKey {
                policy_id: row.policy_id,
                enabled: row.enabled,
                mode: row.mode,
                scope_kind: row.kind,
                scope_hash: hash,
                priority: row.priority,
            },
            scope_value: row.value.clone(),
            slot: index,
        });
    }
    out
}

static BUMP_AT_COMMIT: BackendLocal<Cell<bool>> = BackendLocal::new(Cell::new(false));

/// `pwb.policy` changed in this transaction: reload now, and again once the
/// change is committed and visible to everyone.
pub fn notify_changed() {
    shmem::bump_policy_generation();
    BUMP_AT_COMMIT.set(true);
}

/// Whether this transaction changed policies (for the commit callback's
/// quick check; never panics).
pub fn bump_pending() -> bool {
    BUMP_AT_COMMIT.get()
}

/// Transaction end: publish a committed change (or a rolled-back one, which
/// costs only a reload).
pub fn at_transaction_end() {
    if BUMP_AT_COMMIT.replace(false) {
        shmem::bump_policy_generation();
    }
}
