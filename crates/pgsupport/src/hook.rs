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
