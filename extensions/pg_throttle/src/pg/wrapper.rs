//! The functions the executor calls in place of a throttled node's
//! `ExecProcNode` and of a throttled filter's evaluation function. Each
//! calls the real function and then lets `crate::throttle` pace the tuple;
//! they hold no state of their own.
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

/// Returns what the real node returns, after pacing each tuple.
#[pg_guard]
unsafe extern "C-unwind" fn throttled_exec_proc_node(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let key = node as usize;
    let Some((Real::Node(real), hint)) = throttle::real(key) else {
        lost_track();
    };
    // No registry borrow is held here: the real node runs the nodes below
    // it, whose wrappers use the registry too.
    // SAFETY: `real` is the function this node had before we wrapped it,
    // called with the node we were called with.
    let slot = unsafe { exec_node::call_real(real, node) };
    if slot.has_tuple() {
        throttle::passed(key, hint);
    }
    slot.0
}

/// Evaluates the real filter, then paces the tuple it examined (whether
/// the filter passed it or not).
#[pg_guard]
unsafe extern "C-unwind" fn throttled_filter(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    is_null: *mut bool,
) -> pg_sys::Datum {
    let key = state as usize;
    let Some((Real::Filter(real), hint)) = throttle::real(key) else {
        lost_track();
    };
    // SAFETY: `real` is this filter's own evaluation function (or the one
    // it replaced itself with), called with our arguments.
    let (value, replaced) =
        unsafe { exec_node::call_real_expr(real, FILTER, state, econtext, is_null) };
    if let Some(real) = replaced {
        throttle::replace_real(key, Real::Filter(real));
    }
    throttle::passed(key, hint);
    value
}
