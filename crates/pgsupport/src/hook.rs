//! Saving the hook installed before ours and installing ours, so each
//! extension chains to whatever was there (another extension's hook, or
//! nothing and then the standard implementation).
use std::cell::UnsafeCell;

/// The previous value of one PostgreSQL hook variable (of its type `H`, an
/// `Option` of a function pointer such as `pg_sys::ExecutorStart_hook_type`).
pub struct Previous<H: Copy>(UnsafeCell<Option<H>>);

// SAFETY: written once, by `install` in `_PG_init` (single-threaded, before
// any query runs), and only read afterwards; `H` is a function pointer type.
unsafe impl<H: Copy> Sync for Previous<H> {}

impl<H: Copy> Previous<H> {
    pub const fn new() -> Previous<H> {
        Previous(UnsafeCell::new(None))
    }

    /// Saves `*slot` and stores `ours` in it.
    ///
    /// # Safety
    /// Only from `_PG_init` (the postmaster while preloading, or a backend
    /// loading the library), with `slot` one of PostgreSQL's hook variables,
    /// and at most once per process.
    pub unsafe fn install(&self, slot: *mut H, ours: H) {
        // SAFETY: see the function's contract: no reader runs yet.
        unsafe {
            *self.0.get() = Some(*slot);
            *slot = ours;
        }
    }

    /// The hook value that was installed before ours (`None` before
    /// `install`).
    pub fn get(&self) -> Option<H> {
        // SAFETY: written only by `install` before any reader ran.
        unsafe { *self.0.get() }
    }
}

impl<H: Copy> Default for Previous<H> {
    fn default() -> Self {
        Previous::new()
    }
}

/// The type of `ProcessUtility_hook`.
pub type UtilityHook = pgrx::pg_sys::ProcessUtility_hook_type;

/// The arguments of one `ProcessUtility` call, to pass on to the hook
/// installed before ours (or the standard implementation).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct UtilityCall {
    pub pstmt: *mut pgrx::pg_sys::PlannedStmt,
    pub query_string: *const std::ffi::c_char,
    pub read_only_tree: bool,
    pub context: pgrx::pg_sys::ProcessUtilityContext::Type,
    pub params: pgrx::pg_sys::ParamListInfo,
    pub query_env: *mut pgrx::pg_sys::QueryEnvironment,
    pub dest: *mut pgrx::pg_sys::DestReceiver,
    pub qc: *mut pgrx::pg_sys::QueryCompletion,
}

/// A `ProcessUtility` function (the hook's or the standard one).
type UtilityFn = unsafe extern "C-unwind" fn(
    *mut pgrx::pg_sys::PlannedStmt,
    *const std::ffi::c_char,
    bool,
    pgrx::pg_sys::ProcessUtilityContext::Type,
    pgrx::pg_sys::ParamListInfo,
    *mut pgrx::pg_sys::QueryEnvironment,
    *mut pgrx::pg_sys::DestReceiver,
    *mut pgrx::pg_sys::QueryCompletion,
);

impl UtilityCall {
    /// Runs the statement: `previous`'s hook, or the standard
    /// implementation, through pgrx's FFI guard (an ERROR raised by the
    /// statement unwinds as a Rust panic through the caller).
    ///
    /// # Safety
    /// The arguments are the ones PostgreSQL handed to our hook (or an
    /// equivalent statement in place of `pstmt`), and `previous` is the
    /// value our `ProcessUtility_hook` replaced.
    pub unsafe fn chain(self, previous: &Previous<UtilityHook>) {
        // SAFETY: see the function's contract.
        unsafe { pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| self.call(next(previous))) }
    }

    /// As [`chain`](Self::chain), without pgrx's guard: an ERROR raised by
    /// the statement longjmps over the caller's frame, as over a C hook's.
    /// For the hot path of a hook that leaves most statements alone.
    ///
    /// # Safety
    /// As [`chain`](Self::chain), and every frame between PostgreSQL's
    /// call of our hook and this call holds nothing that needs dropping
    /// and no `catch_unwind` (no pgrx guard).
    pub unsafe fn chain_unguarded(self, previous: &Previous<UtilityHook>) {
        // SAFETY: see the function's contract.
        unsafe { self.call(next(previous)) }
    }

    /// # Safety
    /// As [`chain_unguarded`](Self::chain_unguarded).
    unsafe fn call(self, f: UtilityFn) {
        let c = self;
        // SAFETY: the caller's contract.
        unsafe {
            f(
                c.pstmt,
                c.query_string,
                c.read_only_tree,
                c.context,
                c.params,
                c.query_env,
                c.dest,
                c.qc,
            )
        }
    }
}

/// The hook installed before ours, or the standard implementation.
fn next(previous: &Previous<UtilityHook>) -> UtilityFn {
    previous
        .get()
        .flatten()
        .unwrap_or(unguarded::standard_ProcessUtility)
}

/// PostgreSQL's standard utility implementation, declared without pgrx's
/// per-call guard (see [`UtilityCall::chain_unguarded`]).
mod unguarded {
    use pgrx::pg_sys::{
        DestReceiver, ParamListInfo, PlannedStmt, ProcessUtilityContext, QueryCompletion,
        QueryEnvironment,
    };
    use std::ffi::c_char;

    unsafe extern "C-unwind" {
        pub fn standard_ProcessUtility(
            pstmt: *mut PlannedStmt,
            query_string: *const c_char,
            read_only_tree: bool,
            context: ProcessUtilityContext::Type,
            params: ParamListInfo,
            query_env: *mut QueryEnvironment,
            dest: *mut DestReceiver,
            qc: *mut QueryCompletion,
        );
    }
}
