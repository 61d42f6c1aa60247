//! Sleeping on the process latch. Cancel, `statement_timeout` and
//! `pg_terminate_backend` set the latch, so a sleeper notices them at once;
//! postmaster death ends the process; a named wait event tells a DBA in
//! `pg_stat_activity` why the backend waits.
use pgrx::pg_sys;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// A wait event shown in `pg_stat_activity.wait_event` while sleeping: its
/// own name on PostgreSQL 17 and later (registered on first use), the
/// generic `Extension` event on 15 and 16.
pub struct WaitEvent {
    name: &'static CStr,
    id: AtomicU32,
}

impl WaitEvent {
    pub const fn new(name: &'static CStr) -> WaitEvent {
        WaitEvent {
            name,
            id: AtomicU32::new(0),
        }
    }

    /// The name shown where the server supports named events.
    pub fn name(&self) -> &'static str {
        self.name.to_str().unwrap_or("Extension")
    }

    /// Whether this server shows the event under its own name.
    pub const fn is_named() -> bool {
        cfg!(any(feature = "pg17", feature = "pg18"))
    }

    /// The wait event information to pass to `WaitLatch`.
    pub fn info(&self) -> u32 {
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        {
            let id = self.id.load(Ordering::Relaxed);
            if id != 0 {
                return id;
            }
            // SAFETY: registers (or finds) a named wait event in shared
            // memory; valid in any process attached to shared memory.
            let id = unsafe { pg_sys::WaitEventExtensionNew(self.name.as_ptr()) };
            self.id.store(id, Ordering::Relaxed);
            id
        }
        #[cfg(not(any(feature = "pg17", feature = "pg18")))]
        {
            let _ = (&self.id, Ordering::Relaxed);
            pg_sys::PG_WAIT_EXTENSION
        }
    }
}

/// Services pending interrupts: raises the ERROR of a cancel or timeout,
/// or ends the process when it was terminated.
pub fn check_for_interrupts() {
    pgrx::check_for_interrupts!();
}

/// Sleeps on the process latch for at most `millis` (at least 1 ms), shown
/// as `event`, then services interrupts. Returns whether the latch was set
/// (someone woke us, or an interrupt arrived) rather than the time running
/// out.
pub fn sleep(millis: u64, event: &WaitEvent) -> bool {
    let timeout = std::ffi::c_long::try_from(millis.max(1)).unwrap_or(std::ffi::c_long::MAX);
    let info = event.info();
    let events = (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32;
    // SAFETY: MyLatch is this process's own latch, valid for its lifetime;
    // WL_EXIT_ON_PM_DEATH makes the wait end the process if the postmaster
    // dies.
    let rc = unsafe { pg_sys::WaitLatch(pg_sys::MyLatch, events, timeout, info) };
    let set = rc & pg_sys::WL_LATCH_SET as i32 != 0;
    if set {
        // SAFETY: as above.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
    }
    check_for_interrupts();
    set
}

/// Wakes the process whose latch is `proc_number`'s (for a queue: the next
/// waiter when budget returns). Harmless if the process is gone.
pub fn set_latch_of_pid(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: BackendPidGetProc looks the pid up under ProcArrayLock and
    // returns NULL for a process that is gone; SetLatch on a live PGPROC's
    // latch is the standard way to wake it.
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(std::ptr::addr_of_mut!((*proc_).procLatch));
        }
    }
}

/// This process's pid.
pub fn my_pid() -> i32 {
    // SAFETY: a plain per-process global set at process start.
    unsafe { pg_sys::MyProcPid }
}
