//! Remembers whether the library was loaded through `shared_preload_libraries`,
//! the only way hooks and shared memory can be set up.
use pgrx::pg_sys;
use std::sync::atomic::{AtomicBool, Ordering};

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called once from `_PG_init`.
pub fn record_load() {
    // SAFETY: a plain global set by the postmaster before it loads preload
    // libraries; reading it from `_PG_init` in the same process is sound.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloading, Ordering::Relaxed);
}

/// True when this backend inherited the library from the postmaster's preload.
pub fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}
