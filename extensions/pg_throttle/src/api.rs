//! SQL-callable Rust functions. The documented functions
//! (`throttle_user_per_node` and friends) are SQL, in `sql/api.sql`.
use pgrx::prelude::*;

/// Statement-level trigger on `throttlings`: queues a relcache invalidation
/// for the table, delivered to every backend when the change commits, so
/// sessions re-read their configuration at their next statement.
#[pg_trigger]
fn throttlings_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let relid = trigger.relid()?;
    // SAFETY: queues an invalidation message for an existing relation inside
    // the current transaction.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}
