//! The functions the executor calls in place of a throttled node's
//! `ExecProcNode` and of a throttled filter's evaluation function. Each
//! calls the real function and then lets `crate::throttle` pace the tuple
//! (or, for a scan that keeps its position, paces the tuple returned last
//! and then jumps to the real function); they hold no state of their own.
//!
//! The per-tuple path is kept as cheap as a C extension's: each hot slot
//! has its own wrappers (the slot is a constant in them), which find the
//! real function and spend a credit with plain loads and stores, and call
//! the real function
//! directly, without pgrx's guard (which saves the registers for a
//! `sigsetjmp` on every call). An ERROR raised by the real function then
//! longjmps through the wrapper's frame, which is allowed because that frame
//! holds nothing to drop (integers and raw pointers only) and no
//! `catch_unwind`, exactly like a C function's frame. Everything that can
//! raise an ERROR or panic on our side (taking tokens, sleeping, the
//! registry) runs in functions behind pgrx's guard.
use pgrx::prelude::*;
use pgsupport::exec_node::{self, EvalFn, ExecProcNodeFn};

use crate::throttle::{self, HOT_SLOTS, Real};

/// The wrapper to install on a node: the one bound to hot slot `slot`, or
/// the registry's when the node has none. `positioned`: the node keeps its
/// position and runs once (`exec_node::keeps_position`,
/// `PlanNode::runs_once`), so its tuples can be counted on the way in.
pub fn node(slot: Option<usize>, positioned: bool) -> ExecProcNodeFn {
    match slot {
        Some(i) if positioned => POSITIONED[i],
        Some(i) => NODES[i],
        None => NODE,
    }
}

/// The wrapper to install on a filter, as [`node`] does for nodes.
pub fn filter(slot: Option<usize>) -> EvalFn {
    slot.map_or(FILTER, |i| FILTERS[i])
}

/// Whether `f` is one of our node wrappers.
pub fn is_node_wrapper(f: ExecProcNodeFn) -> bool {
    f as usize == NODE as usize
        || NODES
            .iter()
            .chain(&POSITIONED)
            .any(|&w| w as usize == f as usize)
}

/// Whether `f` is one of our filter wrappers.
pub fn is_filter_wrapper(f: EvalFn) -> bool {
    f as usize == FILTER as usize || FILTERS.iter().any(|&w| w as usize == f as usize)
}

macro_rules! per_slot {
    ($f:ident) => {
        [
            $f::<0>, $f::<1>, $f::<2>, $f::<3>, $f::<4>, $f::<5>, $f::<6>, $f::<7>, $f::<8>,
            $f::<9>, $f::<10>, $f::<11>, $f::<12>, $f::<13>, $f::<14>, $f::<15>,
        ]
    };
}

/// The registry's node wrapper, for a node without a hot slot.
const NODE: ExecProcNodeFn = guarded_exec_proc_node;
/// The registry's filter wrapper, for a filter without a hot slot.
const FILTER: EvalFn = guarded_filter;

/// One node wrapper per hot slot: the slot is a constant in each, so the
/// per-tuple path looks nothing up and keeps nothing across the real call.
const NODES: [ExecProcNodeFn; HOT_SLOTS] = per_slot!(slot_exec_proc_node);
/// One wrapper per hot slot for scans that keep their position.
const POSITIONED: [ExecProcNodeFn; HOT_SLOTS] = per_slot!(positioned_exec_proc_node);
/// One filter wrapper per hot slot, as [`NODES`].
const FILTERS: [EvalFn; HOT_SLOTS] = per_slot!(slot_filter);

fn lost_track() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "pg_throttle lost track of a plan node it wrapped"
    );
}

/// The wrapper of a node with hot slot `I`: returns what the real node
/// returns, after pacing each tuple.
unsafe extern "C-unwind" fn slot_exec_proc_node<const I: usize>(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let hot = throttle::hot_slot(I);
    if !hot.is(node as usize) {
        // Never expected (a slot is freed only with its query's nodes);
        // the registry knows every wrapped node.
        // SAFETY: called with the node we were called with.
        return unsafe { guarded_exec_proc_node(node) };
    }
    // SAFETY: the hot slot holds the address of this node's real
    // ExecProcNode, stored when the node was wrapped (never 0 for a slot
    // whose key matched).
    let real = unsafe { std::mem::transmute::<usize, ExecProcNodeFn>(hot.real()) };
    // SAFETY: the node's own function with its node; see the module
    // documentation for why no guard is needed around it.
    let slot = unsafe { real(node) };
    // SAFETY: what a node returns is NULL or a valid slot.
    if unsafe { exec_node::slot_has_tuple(slot) } && !hot.spend() {
        // SAFETY: a guarded function, called with a plain integer.
        unsafe { guarded_pace_slot(I) };
    }
    slot
}

/// The wrapper of a scan with hot slot `I` that keeps its position and
/// runs once: paces the tuple the scan returned last time, if it did, then
/// hands over to the real function, which returns straight to the caller
/// (a tail call: no frame of ours stays on the per-tuple path). Counting on
/// the way in is exact for such a scan: it is positioned on a tuple exactly
/// when its previous call returned one, and the tuple it returned last is
/// counted at the end of the query (`throttle::settle_positions`). Pacing a
/// tuple when the next one is asked for, rather than when it is returned,
/// holds the rate just the same.
unsafe extern "C-unwind" fn positioned_exec_proc_node<const I: usize>(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let hot = throttle::hot_slot(I);
    if !hot.is(node as usize) {
        // As in slot_exec_proc_node.
        // SAFETY: called with the node we were called with.
        return unsafe { guarded_exec_proc_node(node) };
    }
    // SAFETY: the node got this wrapper because it keeps its position
    // (exec_node::keeps_position).
    if unsafe { exec_node::positioned(node) } && !hot.spend() {
        // SAFETY: a guarded function, called with a plain integer.
        unsafe { guarded_pace_slot(I) };
    }
    // SAFETY: as in slot_exec_proc_node.
    let real = unsafe { std::mem::transmute::<usize, ExecProcNodeFn>(hot.real()) };
    // SAFETY: as in slot_exec_proc_node.
    unsafe { real(node) }
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
unsafe extern "C-unwind" fn guarded_pace_slot(slot: usize) {
    throttle::pace(throttle::hot_slot(slot).key());
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

/// The wrapper of a filter with hot slot `I`: evaluates the real filter,
/// then paces the tuple it examined (whether the filter passed it or not).
unsafe extern "C-unwind" fn slot_filter<const I: usize>(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    is_null: *mut bool,
) -> pg_sys::Datum {
    let hot = throttle::hot_slot(I);
    if !hot.is(state as usize) {
        // As in slot_exec_proc_node.
        // SAFETY: called with our own arguments.
        return unsafe { guarded_filter(state, econtext, is_null) };
    }
    // SAFETY: as in slot_exec_proc_node, for the filter's evaluation
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
        && f as usize != FILTERS[I] as usize
    {
        // SAFETY: as above.
        unsafe {
            (*state).evalfunc = Some(FILTERS[I]);
            guarded_replace_filter(state as usize, f as usize);
        }
    }
    if !hot.spend() {
        // SAFETY: a guarded function, called with a plain integer.
        unsafe { guarded_pace_slot(I) };
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
