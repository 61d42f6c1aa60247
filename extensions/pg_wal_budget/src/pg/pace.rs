//! The executor side of pace mode: the node that feeds a paced statement's
//! writes is wrapped (see `pgsupport::exec_node`), and before each row it
//! produces, the WAL counter is compared with the statement's limit
//! (`pacing::limit`); at the limit, `pacing::reserve_more` reserves the next
//! chunk, waiting if the bucket is short.
//!
//! The per-row check runs without pgrx's guard: an atomic load, a read of
//! the WAL counter and a lookup in a small table; the node's own function is
//! then called directly, as PostgreSQL would (an ERROR below longjmps over
//! this frame, which holds nothing needing a drop). Only reserving (which
//! takes locks and may wait) goes through a guarded function.
use super::process;
use crate::pacing;
use pgrx::prelude::*;
use pgsupport::exec_node::{self, ExecProcNodeFn, Node};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most nodes one paced statement wraps (one per ModifyTable: a statement
/// with writable CTEs has several).
const MAX_WRAPPED: usize = 16;

/// Wrapped nodes (keys) and their own functions, as addresses; 0 = free.
static KEYS: [AtomicUsize; MAX_WRAPPED] = [const { AtomicUsize::new(0) }; MAX_WRAPPED];
static REALS: [AtomicUsize; MAX_WRAPPED] = [const { AtomicUsize::new(0) }; MAX_WRAPPED];

/// Wraps the child of every ModifyTable node of `query` (what feeds the
/// rows it writes): INSERT ... SELECT, UPDATE, DELETE, MERGE, and the data
/// modifying CTEs of any statement.
///
/// # Safety
/// `query` must be a QueryDesc whose executor has just been started.
pub unsafe fn wrap_writers(query: *mut pg_sys::QueryDesc) {
    // SAFETY: see the function's contract.
    for node in unsafe { exec_node::plan_states(query) } {
        if node.tag() == pg_sys::NodeTag::T_ModifyTableState
            && let Some(child) = node.outer()
        {
            register(child);
        }
    }
}

/// Wraps the top node of `query`: the plan whose rows CREATE TABLE AS,
/// SELECT INTO or REFRESH MATERIALIZED VIEW write.
///
/// # Safety
/// `query` must be a QueryDesc whose executor has just been started.
pub unsafe fn wrap_root(query: *mut pg_sys::QueryDesc) {
    // SAFETY: ExecutorStart set planstate to the valid root PlanState.
    let root = unsafe { (*query).planstate };
    if !root.is_null() {
        // SAFETY: as above.
        register(unsafe { Node::from_ptr(root) });
    }
}

fn register(node: Node) {
    let Some(free) = KEYS.iter().position(|k| k.load(Ordering::Relaxed) == 0) else {
        return; // more writers than we track: the rest is settled as debt
    };
    if let Some(real) = exec_node::wrap(node, paced_exec_proc_node) {
        REALS[free].store(real as usize, Ordering::Relaxed);
        KEYS[free].store(node.key(), Ordering::Relaxed);
    }
}

/// Forgets the wrapped nodes (their executor ended).
pub fn clear() {
    for key in &KEYS {
        key.store(0, Ordering::Relaxed);
    }
}

fn real_of(key: usize) -> Option<ExecProcNodeFn> {
    let i = KEYS.iter().position(|k| k.load(Ordering::Relaxed) == key)?;
    let address = REALS[i].load(Ordering::Relaxed);
    // SAFETY: REALS[i] only ever holds the address of a node's own
    // ExecProcNode function, stored by `register` with its key.
    (address != 0).then(|| unsafe { std::mem::transmute::<usize, ExecProcNodeFn>(address) })
}

unsafe extern "C-unwind" fn paced_exec_proc_node(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    if process::wal_bytes() >= pacing::limit() {
        // SAFETY: a guarded Rust function; it may wait and raise an ERROR
        // (cancel, statement_timeout), which PostgreSQL handles.
        unsafe { reserve() };
    }
    match real_of(node as usize) {
        // SAFETY: the node's own function, called with its node, as the
        // executor would have.
        Some(real) => unsafe { real(node) },
        // SAFETY: a guarded function that raises an ERROR.
        None => unsafe { lost_node() },
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn reserve() {
    pacing::reserve_more(process::wal_bytes());
}

#[pg_guard]
unsafe extern "C-unwind" fn lost_node() -> *mut pg_sys::TupleTableSlot {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "pg_wal_budget lost track of a plan node it paces"
    );
}
