//! The FFI of pg_throttle: the executor hooks and transaction callbacks
//! ([`hooks`]), the functions installed in place of a plan node's
//! `ExecProcNode` and of a filter's evaluation function ([`wrapper`]), the
//! layout of a parallel query's shared segment ([`segment`]) and the shared
//! memory of statistics ([`shmem`]), and `COPY table TO` in its query form
//! for throttled sessions ([`copy`]). Shared helpers come from `pgsupport`;
//! everything else in the crate is safe code.
pub mod copy;
pub mod hooks;
pub mod segment;
pub mod shmem;
pub mod wrapper;

use pgrx::pg_sys;

/// Queues a relcache invalidation for relation `relid`, delivered to every
/// backend when the current transaction commits.
pub fn invalidate_relation(relid: pg_sys::Oid) {
    // SAFETY: queues an invalidation message for an existing relation inside
    // the current transaction.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
}
