//! Internal subtransactions: run a closure so that an ERROR inside it rolls
//! back only what it did and comes back as `Err(message)`, as PL handlers do.
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs `f` in an internal subtransaction; an ERROR inside rolls the
/// subtransaction back and is returned as `Err(message)` instead of
/// aborting the caller's transaction. Must be called inside a transaction.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: we are inside a transaction (callers guarantee it); the memory
    // context and resource owner are restored on both paths, as PL handlers
    // do.
    let (old_cxt, old_owner) = unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        (cxt, owner)
    };
    PgTryBuilder::new(move || {
        let r = f();
        // SAFETY: the subtransaction started above is still the current one.
        unsafe {
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Ok(r)
    })
    .catch_others(move |e| {
        // SAFETY: the error left us inside the subtransaction; roll it back.
        unsafe {
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Err(match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
    })
    .execute()
}
