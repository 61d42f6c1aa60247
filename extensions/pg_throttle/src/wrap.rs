//! Wrapping of `PlanState->ExecProcNode`.
//!
//! After the standard `ExecutorStart`, [`install`] walks the query's
//! `PlanState` tree (and every subplan: init plans, correlated subplans, CTEs)
//! and, for each supported node the session user's configuration throttles,
//! remembers the node's real function (`ExecProcNodeReal`) and installs
//! [`throttled_exec_proc_node`] with `ExecSetExecProcNode`. That function only
//! replaces the `ExecProcNodeReal` pointer and re-arms `ExecProcNodeFirst`,
//! so EXPLAIN ANALYZE's instrumentation (`ExecProcNodeInstr`) still wraps the
//! node and counts exactly the tuples it returns.
//!
//! CustomScan and ForeignScan nodes are wrapped the same way, at the
//! `PlanState` level: `ExecCustomScan` / `ExecForeignScan` (the real
//! functions, which call the provider's `CustomExecMethods` / `FdwRoutine`)
//! are called unchanged, and neither the provider's state nor its methods
//! table is touched or copied, so nothing of another extension is
//! overwritten.
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use governance::pacing::pacer::sleep_millis;
use governance::pacing::{Mode, NodeKind, Pacer, Registry, ThrottleConfig};
use pgrx::PgList;
use pgrx::prelude::*;

/// A plan node's real `ExecProcNode`.
type RealFn = unsafe extern "C-unwind" fn(*mut pg_sys::PlanState) -> *mut pg_sys::TupleTableSlot;

thread_local! {
    static REGISTRY: RefCell<Registry<RealFn>> = RefCell::new(Registry::new());
}

/// Monotonic microseconds since the first call in this process.
fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The kind of a plan node, if pg_throttle supports it.
///
/// # Safety
/// `node` must point to a valid, initialised `PlanState`.
unsafe fn kind_of(node: *mut pg_sys::PlanState) -> Option<NodeKind> {
    use pg_sys::NodeTag::*;
    // SAFETY: the caller guarantees `node` is a valid PlanState.
    let tag = unsafe { (*node).type_ };
    Some(match tag {
        T_SeqScanState => NodeKind::SeqScan,
        T_IndexScanState => NodeKind::IndexScan,
        T_IndexOnlyScanState => NodeKind::IndexOnlyScan,
        T_BitmapHeapScanState => NodeKind::BitmapHeapScan,
        T_BitmapIndexScanState => NodeKind::BitmapIndexScan,
        T_CustomScanState => NodeKind::CustomScan,
        T_ForeignScanState => NodeKind::ForeignScan,
        T_TidRangeScanState => NodeKind::TidRangeScan,
        T_ValuesScanState => NodeKind::ValuesScan,
        T_ResultState => NodeKind::Result,
        T_FunctionScanState => NodeKind::FunctionScan,
        T_ModifyTableState => {
            // SAFETY: a ModifyTableState's plan is a ModifyTable.
            let plan = unsafe { (*node).plan }.cast::<pg_sys::ModifyTable>();
            // Only with RETURNING does ModifyTable return tuples.
            // SAFETY: `plan` is the node's valid plan.
            if plan.is_null() || unsafe { (*plan).returningLists }.is_null() {
                return None;
            }
            NodeKind::ModifyTable
        }
        _ => return None,
    })
}

/// Collects every `PlanState` reachable from `node` through its children
/// (left/right trees and the node-specific child arrays and lists). Subplans
/// are not followed here: the caller walks `es_subplanstates`, which holds
/// all of them once.
///
/// # Safety
/// `node` must be null or a valid, initialised `PlanState` tree.
unsafe fn collect(node: *mut pg_sys::PlanState, out: &mut Vec<*mut pg_sys::PlanState>) {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return;
    }
    out.push(node);
    // SAFETY: the caller guarantees a valid tree; each cast matches the tag
    // checked just before it, and child arrays have the stated lengths.
    unsafe {
        collect((*node).lefttree, out);
        collect((*node).righttree, out);
        let arrays: Option<(*mut *mut pg_sys::PlanState, i32)> = match (*node).type_ {
            T_AppendState => {
                let s = node.cast::<pg_sys::AppendState>();
                Some(((*s).appendplans, (*s).as_nplans))
            }
            T_MergeAppendState => {
                let s = node.cast::<pg_sys::MergeAppendState>();
                Some(((*s).mergeplans, (*s).ms_nplans))
            }
            T_BitmapAndState => {
                let s = node.cast::<pg_sys::BitmapAndState>();
                Some(((*s).bitmapplans, (*s).nplans))
            }
            T_BitmapOrState => {
                let s = node.cast::<pg_sys::BitmapOrState>();
                Some(((*s).bitmapplans, (*s).nplans))
            }
            _ => None,
        };
        if let Some((children, n)) = arrays
            && !children.is_null()
        {
            for i in 0..usize::try_from(n).unwrap_or(0) {
                collect(*children.add(i), out);
            }
        }
        match (*node).type_ {
            T_SubqueryScanState => {
                collect((*node.cast::<pg_sys::SubqueryScanState>()).subplan, out);
            }
            T_CustomScanState => {
                let list = PgList::<pg_sys::PlanState>::from_pg(
                    (*node.cast::<pg_sys::CustomScanState>()).custom_ps,
                );
                for child in list.iter_ptr() {
                    collect(child, out);
                }
            }
            _ => {}
        }
    }
}

/// Wraps the supported nodes of `query` that `config` throttles. Called after
/// the standard `ExecutorStart`.
///
/// # Safety
/// `query` must be a `QueryDesc` whose executor has just been started.
pub unsafe fn install(query: *mut pg_sys::QueryDesc, config: &ThrottleConfig) {
    let mut nodes = Vec::new();
    // SAFETY: ExecutorStart initialised planstate and estate.
    unsafe {
        collect((*query).planstate, &mut nodes);
        let estate = (*query).estate;
        if !estate.is_null() {
            let subplans = PgList::<pg_sys::PlanState>::from_pg((*estate).es_subplanstates);
            for sub in subplans.iter_ptr() {
                collect(sub, &mut nodes);
            }
        }
    }
    let key = query as usize;
    // SAFETY: plain accessor of transaction state.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let now = now_micros();
    REGISTRY.with(|r| {
        let mut registry = r.borrow_mut();
        registry.begin_query(key, subxact);
        let shared = match config.mode() {
            Mode::Query(rate) => registry.add_pacer(key, Pacer::new(rate, now)),
            Mode::PerNode => None,
        };
        let mut wrapped = 0usize;
        for node in nodes {
            // SAFETY: every collected pointer is a valid PlanState.
            let Some(kind) = (unsafe { kind_of(node) }) else {
                continue;
            };
            if !config.throttles(kind) {
                continue;
            }
            // SAFETY: reading the node's current real function.
            let real = unsafe { (*node).ExecProcNodeReal };
            let Some(real) = real else { continue };
            if real as usize == throttled_exec_proc_node as RealFn as usize {
                continue; // never wrap twice
            }
            let pacer = match (shared, config.effective_node_rate(kind)) {
                (Some(index), _) => Some(index),
                (None, Some(rate)) => registry.add_pacer(key, Pacer::new(rate, now)),
                (None, None) => None,
            };
            let Some(pacer) = pacer else { continue };
            if registry.wrap_node(node as usize, key, pacer, real) {
                // SAFETY: `node` is a valid, initialised PlanState; this only
                // swaps its ExecProcNodeReal and re-arms ExecProcNodeFirst.
                unsafe { pg_sys::ExecSetExecProcNode(node, Some(throttled_exec_proc_node)) };
                wrapped += 1;
            }
        }
        if wrapped == 0 {
            registry.end_query(key);
        }
    });
}

/// Forgets `query` (at `ExecutorEnd`).
pub fn end_query(query: *mut pg_sys::QueryDesc) {
    REGISTRY.with(|r| {
        let mut registry = r.borrow_mut();
        if registry.query_count() > 0 {
            registry.end_query(query as usize);
        }
    });
}

/// Forgets the queries of an aborted subtransaction.
pub fn abort_subxact(subxact: pg_sys::SubTransactionId) {
    REGISTRY.with(|r| r.borrow_mut().abort_subxact(subxact));
}

/// Forgets everything (transaction end).
pub fn clear() {
    REGISTRY.with(|r| r.borrow_mut().clear());
}

/// Sleeps on the process latch for the deficit, then services interrupts, so
/// cancel, statement_timeout and terminate act at once: their signal
/// handlers set the latch.
fn sleep(wait_micros: u64) {
    let millis = std::ffi::c_long::try_from(sleep_millis(wait_micros)).unwrap_or(1000);
    let events = (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32;
    // SAFETY: MyLatch is the backend's own latch, valid for its lifetime.
    let rc =
        unsafe { pg_sys::WaitLatch(pg_sys::MyLatch, events, millis, pg_sys::PG_WAIT_EXTENSION) };
    if rc & pg_sys::WL_LATCH_SET as i32 != 0 {
        // SAFETY: as above.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
    }
    check_for_interrupts!();
}

/// The `ExecProcNode` of every wrapped node: returns what the real node
/// returns, after pacing each tuple.
#[pg_guard]
unsafe extern "C-unwind" fn throttled_exec_proc_node(
    node: *mut pg_sys::PlanState,
) -> *mut pg_sys::TupleTableSlot {
    let key = node as usize;
    let Some(real) = REGISTRY.with(|r| r.borrow().real(key)) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_throttle lost track of a plan node it wrapped"
        );
    };
    // No borrow of the registry is held here: the real node runs the nodes
    // below it, whose wrappers use the registry too.
    // SAFETY: `real` is the node's own function, called with its node, through
    // pgrx's guard so a PostgreSQL error unwinds correctly.
    let slot = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| real(node)) };
    // SAFETY: a non-null slot returned by an executor node is valid.
    if slot.is_null() || unsafe { (*slot).tts_flags } & pg_sys::TTS_FLAG_EMPTY as u16 != 0 {
        return slot;
    }
    loop {
        match REGISTRY.with(|r| r.borrow_mut().admit(key, now_micros())) {
            Ok(()) => break,
            Err(wait) => sleep(wait),
        }
    }
    slot
}
