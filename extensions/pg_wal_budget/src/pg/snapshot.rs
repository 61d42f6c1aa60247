//! Reading with the latest committed snapshot instead of the statement's.
use pgrx::pg_sys;

/// Runs `f` with the latest committed snapshot as the active snapshot: what
/// a queued statement reads after waiting is current, not what its own
/// snapshot (taken before it waited) showed. An ERROR in `f` is cleaned up by
/// transaction abort, which pops the snapshot.
pub fn with_latest_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushes a copy of the latest snapshot; popped below.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let r = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    r
}
