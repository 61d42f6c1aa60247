//! Installs the executor hooks and the transaction and cache callbacks, and
//! keeps their bodies thin: each calls the previous hook (through pgrx's
//! FFI guard) and hands over to `crate::throttle` or `crate::config`.
use pgrx::prelude::*;
use pgsupport::exec_node;
use pgsupport::hook::Previous;

use crate::{config, throttle};

static PREV_EXECUTOR_START: Previous<pg_sys::ExecutorStart_hook_type> = Previous::new();
static PREV_EXECUTOR_END: Previous<pg_sys::ExecutorEnd_hook_type> = Previous::new();

/// Installs hooks and callbacks; called once from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per process, before any query; saving and
    // replacing the hook globals is the documented protocol, and the
    // callbacks stay valid for the life of the process.
    unsafe {
        PREV_EXECUTOR_START.install(
            std::ptr::addr_of_mut!(pg_sys::ExecutorStart_hook),
            Some(executor_start),
        );
        PREV_EXECUTOR_END.install(
            std::ptr::addr_of_mut!(pg_sys::ExecutorEnd_hook),
            Some(executor_end),
        );
        super::copy::install();
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
        match PREV_EXECUTOR_START.get().flatten() {
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
    // SAFETY: the executor has just been started: its planned statement is
    // set.
    let parallel = unsafe { (*(*query).plannedstmt).parallelModeNeeded };
    // SAFETY: a plain accessor of transaction state.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    throttle::start(
        query as usize,
        // SAFETY: the executor of `query` has been started and not ended.
        || unsafe { exec_node::plan_nodes(query) },
        parallel,
        subxact,
    );
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_end(query: *mut pg_sys::QueryDesc) {
    throttle::settle_positions(
        query as usize,
        // SAFETY: the executor of `query` has not been ended yet.
        || unsafe { exec_node::plan_states(query) },
    );
    // SAFETY: as in executor_start.
    unsafe {
        match PREV_EXECUTOR_END.get().flatten() {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query)),
            None => pg_sys::standard_ExecutorEnd(query),
        }
    }
    throttle::end(query as usize);
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    // Every executor of the transaction has ended (or died) by now.
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            throttle::end_of_transaction(true)
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => throttle::end_of_transaction(false),
        _ => {}
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
        throttle::abort_subxact(my_subid);
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

/// Clears this process's backend slot when it exits.
#[pg_guard]
pub unsafe extern "C-unwind" fn clear_slot_at_exit(_code: i32, _arg: pg_sys::Datum) {
    crate::stats::process_exiting();
}
