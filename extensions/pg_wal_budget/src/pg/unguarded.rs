//! PostgreSQL functions on the per-statement path, declared without pgrx's
//! per-call guard (a thread check, a `sigsetjmp` and a swap of the error
//! stack), which costs more than most of these functions themselves. Every
//! other PostgreSQL function is called through `pg_sys`, guarded.
//!
//! Each function here is one of:
//! - unable to raise an error: the clock and identity reads;
//! - unable to raise one where we call it: `LWLockAcquire` fails only when
//!   the process already holds `MAX_SIMUL_LWLOCKS` (200) LWLocks, and our
//!   callers (executor and utility hooks, the transaction callback, SQL
//!   functions) run where PostgreSQL holds none, while we hold at most our
//!   own one; `LWLockRelease` fails only for a lock not held, and `Locked`
//!   releases only the lock it took;
//! - the executor code our hooks chain to (the utility code is chained to
//!   through `pgsupport::hook::UtilityCall::chain_unguarded`), called from frames
//!   that hold nothing needing a drop, so an ERROR raised inside longjmps
//!   over them exactly as it would over a C extension's hook.
use pgrx::pg_sys::{LWLock, LWLockMode, Oid, QueryDesc, SubTransactionId, TimestampTz};
use std::ffi::c_int;

unsafe extern "C-unwind" {
    pub fn GetCurrentTimestamp() -> TimestampTz;
    pub fn GetCurrentSubTransactionId() -> SubTransactionId;
    pub fn GetUserId() -> Oid;

    pub fn LWLockAcquire(lock: *mut LWLock, mode: LWLockMode::Type) -> bool;
    pub fn LWLockRelease(lock: *mut LWLock);

    pub fn standard_ExecutorStart(query_desc: *mut QueryDesc, eflags: c_int);
    pub fn standard_ExecutorEnd(query_desc: *mut QueryDesc);
}
