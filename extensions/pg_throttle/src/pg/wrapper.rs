//! The functions the executor calls in place of a throttled node's
//! `ExecProcNode` and of a throttled filter's evaluation function. Each
//! calls the real function and then lets `crate::throttle` pace the tuple;
//! they hold no state of their own.
//!
//! The per-tuple path is kept as cheap as a C extension's: for a wrapped
//! thing with a hot slot, the wrapper finds its real function and spends a
//! credit with plain loads and stores, and calls the real function
//! directly, without pgrx's guard (which saves the registers for a
//! `sigsetjmp` on every call). An ERROR raised by the real function then
//! longjmps through the wrapper's frame, which is allowed because that frame
//! holds nothing to drop (integers and raw pointers only) and no
//! `catch_unwind`, exactly like a C function's frame. Everything that can
//! raise an ERROR or panic on our side (taking tokens, sleeping, the
//! registry) runs in functions behind pgrx's guard.
use pgrx::prelude::*;
use pgsupport::exec_node::{self, EvalFn, ExecProcNodeFn};

use crate::throttle::{self, Real};

/// What [`throttled_exec_proc_node`] is, as a value to install.
pub const NODE: ExecProcNodeFn = throttled_exec_proc_node;
/// What [`throttled_filter`] is, as a value to install.
pub const FILTER: EvalFn = throttled_filter;

fn lost_track() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "pg_throttle lost track of a plan node it wrapped"
    );
}

/// Whether a node returned a tuple (`Slot::has_tuple`, inlined here: it
/// runs once per tuple).
#[inline(always)]
fn has_tuple(slot: *mut pg_sys::TupleTableSlot) -> bool {
    // SAFETY: a non-null slot returned by an executor node is valid.
    !slot.is_null() && unsafe { (*slot).tts_flags } & pg_sys::TTS_FLAG_EMPTY as u16 == 0
}

/// Returns what the real node returns, after pacing each tuple.
unsafe extern "C-unwind" fn throttled_exec_proc_node(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let key = node as usize;
    let Some(hot) = throttle::hot(key) else {
        // SAFETY: called with the node we were called with.
        return unsafe { guarded_exec_proc_node(node) };
    };
    // SAFETY: the hot slot holds the address of this node's real
    // ExecProcNode, stored when the node was wrapped (never 0 for a slot
    // whose key matched).
    let real = unsafe { std::mem::transmute::<usize, ExecProcNodeFn>(hot.real()) };
    // SAFETY: the node's own function with its node; see the module
    // documentation for why no guard is needed around it.
    let slot = unsafe { real(node) };
    if has_tuple(slot) && !hot.spend() {
        // SAFETY: a guarded function, called with a plain integer.
        unsafe { guarded_pace(key) };
    }
    slot
}

/// The path for a node without a hot slot, through the registry.
// Kept out of line: the per-tuple path stays a small function.
#[inline(never)]
#[pg_guard]
unsafe extern "C-unwind" fn guarded_exec_proc_node(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let key = node as usize;
    let Some((Real::Node(real), _)) = throttle::real(key) else {
        lost_track();
    };
    // SAFETY: `real` is the function this node had before we wrapped it,
    // called with its node, through pgrx's guard.
    let slot = unsafe { exec_node::call_real(real, node) };
    if slot.has_tuple() {
        throttle::pace(key);
    }
    slot.0
}

// Kept out of line: the per-tuple path stays a small function.
#[inline(never)]
#[pg_guard]
unsafe extern "C-unwind" fn guarded_pace(key: usize) {
    throttle::pace(key);
}

// Kept out of line: the per-tuple path stays a small function.
#[inline(never)]
#[pg_guard]
unsafe extern "C-unwind" fn guarded_replace_filter(key: usize, real: usize) {
    // SAFETY: `real` is the address of an evaluation function PostgreSQL
    // itself just installed in the filter's ExprState.
    let real = unsafe { std::mem::transmute::<usize, EvalFn>(real) };
    throttle::replace_real(key, Real::Filter(real));
}

/// Evaluates the real filter, then paces the tuple it examined (whether
/// the filter passed it or not).
unsafe extern "C-unwind" fn throttled_filter(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    is_null: *mut bool,
) -> pg_sys::Datum {
    let key = state as usize;
    let Some(hot) = throttle::hot(key) else {
        // SAFETY: called with our own arguments.
        return unsafe { guarded_filter(state, econtext, is_null) };
    };
    // SAFETY: as in throttled_exec_proc_node, for the filter's evaluation
    // function.
    let real = unsafe { std::mem::transmute::<usize, EvalFn>(hot.real()) };
    // SAFETY: the filter's own function with our arguments; see the module
    // documentation for why no guard is needed around it.
    let value = unsafe { real(state, econtext, is_null) };
    // PostgreSQL's first-call functions (ExecInterpExprStillValid, JIT)
    // install the final function in place of ours and call it: put ours
    // back, and remember theirs as the real one.
    // SAFETY: `state` is the ExprState just evaluated.
    let now = unsafe { (*state).evalfunc };
    if let Some(f) = now
        && f as usize != FILTER as usize
    {
        // SAFETY: as above.
        unsafe {
            (*state).evalfunc = Some(FILTER);
            guarded_replace_filter(key, f as usize);
        }
    }
    if !hot.spend() {
        // SAFETY: a guarded function, called with a plain integer.
        unsafe { guarded_pace(key) };
    }
    value
}

/// The path for a filter without a hot slot, through the registry.
// Kept out of line: the per-tuple path stays a small function.
#[inline(never)]
#[pg_guard]
unsafe extern "C-unwind" fn guarded_filter(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    is_null: *mut bool,
) -> pg_sys::Datum {
    let key = state as usize;
    let Some((Real::Filter(real), _)) = throttle::real(key) else {
        lost_track();
    };
    // SAFETY: `real` is this filter's own evaluation function (or the one
    // it replaced itself with), called with our arguments.
    let (value, replaced) =
        unsafe { exec_node::call_real_expr(real, FILTER, state, econtext, is_null) };
    if let Some(real) = replaced {
        throttle::replace_real(key, Real::Filter(real));
    }
    throttle::pace(key);
    value
}
