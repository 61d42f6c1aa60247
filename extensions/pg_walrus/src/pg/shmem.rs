//! The shared-memory registration of [`Shared`]: one struct behind one
//! LWLock, written by the worker (and by `walrus.analyze(true)` /
//! `walrus.reset()`), read by the SQL functions.
use crate::state::Shared;
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};
use std::sync::atomic::{AtomicBool, Ordering};

// SAFETY: `Shared` is `Copy`, holds no pointers, and is only accessed through
// the `PgLwLock` below.
unsafe impl PGRXSharedMemory for Shared {}

// SAFETY: the name is unique to this extension and the lock is registered
// through `pg_shmem_init!` in `init()` before any use.
pub static SHARED: PgLwLock<Shared> = unsafe { PgLwLock::new(c"pg_walrus_state") };

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Request the shared memory (only from `shared_preload_libraries`).
pub fn init() {
    pg_shmem_init!(SHARED);
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Whether this process has the shared memory (library was preloaded).
pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}
