//! FFI only: installs the executor hooks and the transaction and cache
//! callbacks, and keeps their bodies thin (domain code is in `wrap` and
//! `config`). Previous hooks are kept and called through pgrx's FFI guard.
use pgrx::prelude::*;

use crate::{config, wrap};

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;

/// Installs hooks and callbacks; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend, single-threaded, before any
    // query; saving and replacing the hook globals is the documented protocol.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0usize));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            Some(syscache_callback),
            pg_sys::Datum::from(0usize),
        );
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            Some(syscache_callback),
            pg_sys::Datum::from(0usize),
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    // SAFETY: the previous hook (or the standard function) is called with the
    // arguments we were given, through pgrx's FFI guard.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query, eflags)),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    }
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
        return;
    }
    // Take in configuration changes committed since the last statement even
    // inside a transaction block (where no new lock may trigger it). This is
    // a cheap check of a shared counter when nothing is pending.
    // SAFETY: allowed anywhere inside a transaction, as lock acquisition does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let config = config::current();
    if config.is_throttled() {
        // SAFETY: the executor of `query` has just been started.
        unsafe { wrap::install(query, &config) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_end(query: *mut pg_sys::QueryDesc) {
    // SAFETY: as in executor_start.
    unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query)),
            None => pg_sys::standard_ExecutorEnd(query),
        }
    }
    wrap::end_query(query);
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    // Every executor of the transaction has ended (or died) by now.
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_ABORT
            | XACT_EVENT_PREPARE
    ) {
        wrap::clear();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        wrap::abort_subxact(my_subid);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    config::invalidate_relation(relid);
}

#[pg_guard]
unsafe extern "C-unwind" fn syscache_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    config::invalidate();
}
