//! Saving the hook installed before ours and installing ours, so each
//! extension chains to whatever was there (another extension's hook, or
//! nothing and then the standard implementation).
use std::cell::UnsafeCell;

/// The previous value of one PostgreSQL hook variable.
pub struct Previous<F: Copy>(UnsafeCell<Option<F>>);

// SAFETY: written once, by `install` in `_PG_init` (single-threaded, before
// any query runs), and only read afterwards; `F` is a function pointer type.
unsafe impl<F: Copy> Sync for Previous<F> {}

impl<F: Copy> Previous<F> {
    pub const fn new() -> Previous<F> {
        Previous(UnsafeCell::new(None))
    }

    /// Saves `*slot` and stores `ours` in it.
    ///
    /// # Safety
    /// Only from `_PG_init` (the postmaster while preloading, or a backend
    /// loading the library), with `slot` one of PostgreSQL's hook variables,
    /// and at most once per process.
    pub unsafe fn install(&self, slot: *mut Option<F>, ours: F) {
        // SAFETY: see the function's contract: no reader runs yet.
        unsafe {
            *self.0.get() = *slot;
            *slot = Some(ours);
        }
    }

    /// The hook that was installed before ours, if any.
    pub fn get(&self) -> Option<F> {
        // SAFETY: written only by `install` before any reader ran.
        unsafe { *self.0.get() }
    }
}

impl<F: Copy> Default for Previous<F> {
    fn default() -> Self {
        Previous::new()
    }
}
