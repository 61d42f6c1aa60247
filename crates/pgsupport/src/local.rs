//! Backend-local state. A PostgreSQL backend runs our code on one thread,
//! but a `static` still has to be `Sync`; `thread_local!` costs a lookup
//! (`__tls_get_addr` from a shared library) on every access, which adds up
//! on a per-statement path. [`BackendCell`] is a plain static behind an
//! uncontended lock: one atomic exchange to enter and one to leave.
use std::sync::{Mutex, MutexGuard, TryLockError};

/// A value owned by this backend. Access is never re-entrant: a nested
/// access (a bug) panics, which pgrx turns into an ERROR, instead of
/// deadlocking.
pub struct BackendCell<T>(Mutex<T>);

impl<T> BackendCell<T> {
    pub const fn new(value: T) -> BackendCell<T> {
        BackendCell(Mutex::new(value))
    }

    fn guard(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            // A panic (an ERROR unwinding) while the value was in use leaves
            // it as the code had it; every user keeps it consistent at each
            // step, as with a RefCell.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Runs `f` with the value. Panics on re-entrant use.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        match self.guard() {
            Some(mut guard) => f(&mut guard),
            None => panic!("re-entrant use of backend-local state"),
        }
    }

    /// Runs `f` with the value, or returns None when it is in use further
    /// up the stack. Never panics by itself (for code that runs outside
    /// pgrx's guard).
    pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.guard().map(|mut guard| f(&mut guard))
    }
}

impl<T: Copy> BackendCell<T> {
    pub fn get(&self) -> T {
        self.with(|v| *v)
    }

    pub fn set(&self, value: T) {
        self.with(|v| *v = value);
    }

    /// Sets the value and returns the previous one.
    pub fn replace(&self, value: T) -> T {
        self.with(|v| std::mem::replace(v, value))
    }
}
