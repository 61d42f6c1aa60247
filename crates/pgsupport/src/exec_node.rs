//! Executor-node wrapping. After the standard `ExecutorStart`, a caller walks
//! the query's `PlanState` trees ([`plan_states`]) and, for each node it
//! wants to watch, replaces the node's real `ExecProcNode` with its own
//! function ([`wrap`]). That only replaces the `ExecProcNodeReal` pointer
//! and re-arms `ExecProcNodeFirst`, so EXPLAIN ANALYZE's instrumentation
//! (`ExecProcNodeInstr`) still wraps the node and counts exactly the tuples
//! it returns. The wrapper calls the saved real function with [`call_real`].
//!
//! CustomScan and ForeignScan nodes are wrapped the same way, at the
//! `PlanState` level: `ExecCustomScan` / `ExecForeignScan` (which call the
//! provider's methods) are called unchanged, and nothing of the provider's
//! state or methods table is touched or copied.
use pgrx::PgList;
use pgrx::pg_sys;

/// A plan node's `ExecProcNode` function.
pub type ExecProcNodeFn =
    unsafe extern "C-unwind" fn(*mut pg_sys::PlanState) -> *mut pg_sys::TupleTableSlot;

/// A node of a started executor's plan-state tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node(*mut pg_sys::PlanState);

impl Node {
    /// # Safety
    /// `ptr` must point to a valid, initialised `PlanState` that outlives
    /// every use of the returned value.
    pub unsafe fn from_ptr(ptr: *mut pg_sys::PlanState) -> Node {
        Node(ptr)
    }

    pub fn as_ptr(self) -> *mut pg_sys::PlanState {
        self.0
    }

    /// The key wrappers look their node up by.
    pub fn key(self) -> usize {
        self.0 as usize
    }

    pub fn tag(self) -> pg_sys::NodeTag {
        // SAFETY: a Node is a valid PlanState (see from_ptr).
        unsafe { (*self.0).type_ }
    }

    /// Whether a ModifyTable node has a RETURNING list (only then does it
    /// return tuples). False for other nodes.
    pub fn modify_table_returns(self) -> bool {
        if self.tag() != pg_sys::NodeTag::T_ModifyTableState {
            return false;
        }
        // SAFETY: a ModifyTableState's plan is a ModifyTable.
        let plan = unsafe { (*self.0).plan }.cast::<pg_sys::ModifyTable>();
        // SAFETY: `plan` is the node's own plan when non-null.
        !plan.is_null() && !unsafe { (*plan).returningLists }.is_null()
    }

    /// The node's left (outer) child.
    pub fn outer(self) -> Option<Node> {
        // SAFETY: a Node is a valid PlanState; its child, when set, is too.
        let child = unsafe { (*self.0).lefttree };
        (!child.is_null()).then_some(Node(child))
    }

    /// Whether this node is a scan that keeps its position
    /// ([`keeps_position`]) and is positioned on a tuple ([`positioned`]).
    pub fn is_positioned(self) -> bool {
        // SAFETY: checked to be such a scan just before.
        keeps_position(self) && unsafe { positioned(self.0) }
    }

    /// The node's current real function.
    pub fn real(self) -> Option<ExecProcNodeFn> {
        // SAFETY: reads a field of a valid PlanState.
        unsafe { (*self.0).ExecProcNodeReal }
    }
}

/// Every `PlanState` of a started executor: the main tree and every
/// subplan (init plans, correlated subplans, CTEs), each once.
///
/// # Safety
/// `query` must be a `QueryDesc` whose executor has been started and not
/// yet ended.
pub unsafe fn plan_states(query: *mut pg_sys::QueryDesc) -> Vec<Node> {
    // SAFETY: the caller's contract.
    unsafe { plan_nodes(query) }
        .into_iter()
        .map(|p| p.node)
        .collect()
}

/// A node of [`plan_nodes`], with where it sits in its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanNode {
    pub node: Node,
    /// The node runs at most once per run of the query: it is in the main
    /// tree, and no node above it rescans it while the query runs (it is
    /// not below the inner side of a Nested Loop, a Memoize, the recursive
    /// side of a Recursive Union, or a custom scan's children). Only a
    /// cursor's rewind rescans it then. Subplans never run once: a
    /// correlated subplan is rescanned for every outer row.
    pub runs_once: bool,
}

/// Every `PlanState` of a started executor, as [`plan_states`], each with
/// whether it runs once.
///
/// # Safety
/// As [`plan_states`].
pub unsafe fn plan_nodes(query: *mut pg_sys::QueryDesc) -> Vec<PlanNode> {
    let mut nodes = Vec::new();
    // SAFETY: ExecutorStart initialised planstate and estate.
    unsafe {
        collect((*query).planstate, true, &mut nodes);
        let estate = (*query).estate;
        if !estate.is_null() {
            let subplans = PgList::<pg_sys::PlanState>::from_pg((*estate).es_subplanstates);
            for sub in subplans.iter_ptr() {
                collect(sub, false, &mut nodes);
            }
        }
    }
    nodes
}

/// Collects every `PlanState` reachable from `node` through its children
/// (left/right trees and the node-specific child arrays and lists).
/// Subplans are not followed here: `plan_nodes` walks
/// `es_subplanstates`, which holds all of them once. `once`: whether
/// `node` runs once (see [`PlanNode::runs_once`]).
///
/// # Safety
/// `node` must be null or a valid, initialised `PlanState` tree.
unsafe fn collect(node: *mut pg_sys::PlanState, once: bool, out: &mut Vec<PlanNode>) {
    use pg_sys::NodeTag::*;
    if node.is_null() {
        return;
    }
    out.push(PlanNode {
        node: Node(node),
        runs_once: once,
    });
    // SAFETY: the caller guarantees a valid tree; each cast matches the tag
    // checked just before it, and child arrays have the stated lengths.
    unsafe {
        let tag = (*node).type_;
        // The children a node rescans while it runs: a Nested Loop's inner
        // side for every outer row, a Memoize's subtree for every cache
        // miss, a Recursive Union's recursive side for every iteration.
        let (left_once, right_once) = match tag {
            T_NestLoopState => (once, false),
            T_MemoizeState => (false, false),
            T_RecursiveUnionState => (once, false),
            _ => (once, once),
        };
        collect((*node).lefttree, left_once, out);
        collect((*node).righttree, right_once, out);
        let arrays: Option<(*mut *mut pg_sys::PlanState, i32)> = match tag {
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
                collect(*children.add(i), once, out);
            }
        }
        match tag {
            T_SubqueryScanState => {
                collect(
                    (*node.cast::<pg_sys::SubqueryScanState>()).subplan,
                    once,
                    out,
                );
            }
            T_CustomScanState => {
                // What a provider does with its children is its own.
                let list = PgList::<pg_sys::PlanState>::from_pg(
                    (*node.cast::<pg_sys::CustomScanState>()).custom_ps,
                );
                for child in list.iter_ptr() {
                    collect(child, false, out);
                }
            }
            _ => {}
        }
    }
}

/// Whether `node` is a scan that keeps the tuple it last returned in its
/// scan slot until asked for the next one, and empties that slot when it
/// reaches its end or is rescanned (`ExecScanReScan` clears it "so that
/// observers can tell that this plan node is not positioned on a tuple",
/// which `WHERE CURRENT OF` relies on): a Seq Scan, Index Scan, Index Only
/// Scan or Bitmap Heap Scan. For these, [`positioned`] tells whether the
/// last call returned a tuple without being on the return path.
pub fn keeps_position(node: Node) -> bool {
    use pg_sys::NodeTag::*;
    matches!(
        node.tag(),
        T_SeqScanState | T_IndexScanState | T_IndexOnlyScanState | T_BitmapHeapScanState
    )
}

/// Whether scan `node` is positioned on a tuple: its last call returned one
/// (see [`keeps_position`]). False before its first call.
///
/// # Safety
/// `node` must be a valid `PlanState` for which [`keeps_position`] is true.
#[inline(always)]
pub unsafe fn positioned(node: *mut pg_sys::PlanState) -> bool {
    // SAFETY: the node is a scan node (see the contract), so it starts with
    // a ScanState whose scan slot, set by its ExecInit function, is valid
    // while the node is.
    unsafe { slot_has_tuple((*node.cast::<pg_sys::ScanState>()).ss_ScanTupleSlot) }
}

/// Installs `wrapper` as `node`'s real function and returns the function it
/// replaces; None (nothing changed) when the node has no real function or
/// is already wrapped by `wrapper`.
pub fn wrap(node: Node, wrapper: ExecProcNodeFn) -> Option<ExecProcNodeFn> {
    let real = node.real()?;
    if real as usize == wrapper as usize {
        return None;
    }
    // SAFETY: `node` is a valid, initialised PlanState of a started
    // executor; this only swaps its ExecProcNodeReal and re-arms
    // ExecProcNodeFirst, as ExecSetExecProcNode is meant to be used.
    unsafe { pg_sys::ExecSetExecProcNode(node.0, Some(wrapper)) };
    Some(real)
}

/// Calls a node's saved real function, through pgrx's guard so that an
/// ERROR raised below unwinds correctly.
///
/// # Safety
/// `real` must be the function `node` had before it was wrapped, and `node`
/// must be the `PlanState` a wrapper was called with.
pub unsafe fn call_real(real: ExecProcNodeFn, node: *mut pg_sys::PlanState) -> Slot {
    // SAFETY: see the function's contract.
    Slot(unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| real(node)) })
}

/// What a node returned: a tuple, or the end of its output.
#[derive(Debug, Clone, Copy)]
pub struct Slot(pub *mut pg_sys::TupleTableSlot);

impl Slot {
    /// Whether the node returned a tuple (not the end of its output).
    pub fn has_tuple(self) -> bool {
        // SAFETY: a non-null slot returned by an executor node is valid.
        unsafe { slot_has_tuple(self.0) }
    }
}

/// Whether `slot` holds a tuple: not NULL, and not empty. Inlined into
/// callers on the per-tuple path.
///
/// # Safety
/// `slot` must be NULL or a valid `TupleTableSlot`.
#[inline(always)]
pub unsafe fn slot_has_tuple(slot: *mut pg_sys::TupleTableSlot) -> bool {
    // SAFETY: the caller's contract; read only when non-null.
    !slot.is_null() && unsafe { (*slot).tts_flags } & pg_sys::TTS_FLAG_EMPTY as u16 == 0
}

impl Node {
    /// The plan node's id, unique within its plan and the same in a
    /// parallel query's leader and workers (which run copies of the plan).
    pub fn plan_node_id(self) -> i32 {
        // SAFETY: a Node is a valid PlanState; its plan is set by
        // ExecInitNode.
        let plan = unsafe { (*self.0).plan };
        if plan.is_null() {
            return -1;
        }
        // SAFETY: non-null plan of a valid PlanState.
        unsafe { (*plan).plan_node_id }
    }

    /// The node's filter (its `qual`, shown as `Filter:` by EXPLAIN), if it
    /// has one.
    pub fn filter(self) -> Option<Expr> {
        // SAFETY: reads a field of a valid PlanState.
        let qual = unsafe { (*self.0).qual };
        (!qual.is_null()).then_some(Expr(qual))
    }

    /// The number of workers a Gather or Gather Merge node plans to launch
    /// (None for other nodes).
    pub fn planned_workers(self) -> Option<u32> {
        // SAFETY: each cast matches the tag checked: a GatherState's plan
        // is a Gather, a GatherMergeState's a GatherMerge.
        unsafe {
            let plan = (*self.0).plan;
            if plan.is_null() {
                return None;
            }
            let n = match self.tag() {
                pg_sys::NodeTag::T_GatherState => (*plan.cast::<pg_sys::Gather>()).num_workers,
                pg_sys::NodeTag::T_GatherMergeState => {
                    (*plan.cast::<pg_sys::GatherMerge>()).num_workers
                }
                _ => return None,
            };
            Some(u32::try_from(n).unwrap_or(0))
        }
    }
}

/// An expression's evaluation function (`ExprState->evalfunc`).
pub type EvalFn = unsafe extern "C-unwind" fn(
    *mut pg_sys::ExprState,
    *mut pg_sys::ExprContext,
    *mut bool,
) -> pg_sys::Datum;

/// A compiled expression of a started executor: a node's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expr(*mut pg_sys::ExprState);

impl Expr {
    /// The key wrappers look their expression up by.
    pub fn key(self) -> usize {
        self.0 as usize
    }

    /// The expression's current evaluation function.
    pub fn real(self) -> Option<EvalFn> {
        // SAFETY: reads a field of a valid ExprState.
        unsafe { (*self.0).evalfunc }
    }
}

/// Installs `wrapper` as the evaluation function of `expr` (a filter: the
/// executor evaluates it once for every tuple the node reads) and returns
/// the function it replaces; None (nothing changed) when the expression has
/// none or is already wrapped by `wrapper`. The wrapper calls the saved
/// function with [`call_real_expr`]. Nothing about what is evaluated
/// changes, so EXPLAIN ANALYZE's "Rows Removed by Filter" stays exact.
pub fn wrap_expr(expr: Expr, wrapper: EvalFn) -> Option<EvalFn> {
    // SAFETY: an Expr is a valid, initialised ExprState of a started
    // executor; evalfunc is the pointer the executor calls it through.
    unsafe {
        let real = (*expr.0).evalfunc?;
        if real as usize == wrapper as usize {
            return None;
        }
        (*expr.0).evalfunc = Some(wrapper);
        Some(real)
    }
}

/// Calls an expression's saved evaluation function, through pgrx's guard.
/// PostgreSQL's first-call functions (`ExecInterpExprStillValid`, JIT's
/// compile-on-first-use) replace `evalfunc` with the final function and
/// call it; when that happened, `wrapper` is put back and the replacement
/// is returned, for the caller to keep as the real function from then on.
///
/// # Safety
/// `real` must be the function `state` had before `wrapper` was installed
/// (or its replacement), and the arguments those the wrapper was called
/// with.
pub unsafe fn call_real_expr(
    real: EvalFn,
    wrapper: EvalFn,
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    is_null: *mut bool,
) -> (pg_sys::Datum, Option<EvalFn>) {
    // SAFETY: see the function's contract.
    let value = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| real(state, econtext, is_null)) };
    // SAFETY: `state` is the valid ExprState just evaluated.
    let now = unsafe { (*state).evalfunc };
    match now {
        Some(f) if f as usize != wrapper as usize => {
            // SAFETY: as above; put our wrapper back in front of it.
            unsafe { (*state).evalfunc = Some(wrapper) };
            (value, Some(f))
        }
        _ => (value, None),
    }
}
