//! Small FFI helpers: WAL counters, clocks, identity, and the queue wait.
use crate::unguarded;
use pgrx::pg_sys;
use std::ffi::CStr;

/// Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// WAL bytes this backend has generated so far (parallel workers' usage is
/// added to it when they finish).
pub fn wal_bytes() -> u64 {
    // SAFETY: pgWalUsage is a plain per-process global.
    unsafe { (*std::ptr::addr_of!(pg_sys::pgWalUsage)).wal_bytes }
}

/// One reading of the clock in the two units the flow needs.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Microseconds since the PostgreSQL epoch, for bucket arithmetic.
    pub micros: u64,
    /// Milliseconds since the Unix epoch, for telemetry.
    pub epoch_ms: i64,
}

pub fn now() -> Now {
    // SAFETY: only reads the clock; cannot raise an error.
    let ts = unsafe { unguarded::GetCurrentTimestamp() };
    Now {
        micros: u64::try_from(ts).unwrap_or(0),
        epoch_ms: (ts + PG_EPOCH_OFFSET_US) / 1000,
    }
}

/// Microseconds since the PostgreSQL epoch, for bucket arithmetic.
pub fn now_micros() -> u64 {
    now().micros
}

pub fn subxact_id() -> pg_sys::SubTransactionId {
    // SAFETY: returns a process-local field of the transaction state; it
    // cannot raise an error.
    unsafe { unguarded::GetCurrentSubTransactionId() }
}

pub fn database_oid() -> u32 {
    // SAFETY: a plain per-process global.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

pub fn current_user_oid() -> pg_sys::Oid {
    // SAFETY: returns a process-local variable (only asserting it is set);
    // it cannot raise an error.
    unsafe { unguarded::GetUserId() }
}

fn owned(ptr: *const std::ffi::c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the pointer is a NUL-terminated string owned by PostgreSQL.
    let s = unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned();
    (!s.is_empty()).then_some(s)
}

pub fn role_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: noerr = true: returns NULL for an unknown role.
    owned(unsafe { pg_sys::GetUserNameFromId(oid, true) })
}

pub fn database_name() -> Option<String> {
    // SAFETY: returns NULL for an unknown database; palloc'd in the current
    // context, copied out immediately.
    owned(unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) })
}

pub fn application_name() -> Option<String> {
    // SAFETY: the GUC's current value, NULL or NUL-terminated.
    owned(unsafe { pg_sys::application_name })
}

/// Whether application_name still equals `value` (as [`application_name`]
/// would return it), without allocating.
pub fn application_name_is(value: Option<&str>) -> bool {
    // SAFETY: the GUC's current value, NULL or NUL-terminated, read at once.
    let ptr = unsafe { pg_sys::application_name };
    let current = if ptr.is_null() {
        &[][..]
    } else {
        // SAFETY: non-null and NUL-terminated, as above.
        unsafe { CStr::from_ptr(ptr) }.to_bytes()
    };
    current == value.unwrap_or("").as_bytes()
}

/// The custom wait event's id once registered (0 before).
#[cfg(any(feature = "pg17", feature = "pg18"))]
static WAIT_EVENT: crate::backend::BackendLocal<std::cell::Cell<u32>> =
    crate::backend::BackendLocal::new(std::cell::Cell::new(0));

/// The wait event shown in pg_stat_activity while queued: a named custom
/// event on 17+, the generic `Extension` event on 15/16.
fn wait_event() -> u32 {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        if WAIT_EVENT.get() == 0 {
            // SAFETY: registers (or finds) a named wait event in shared
            // memory; valid in a backend.
            WAIT_EVENT.set(unsafe { pg_sys::WaitEventExtensionNew(c"PwbBudgetQueue".as_ptr()) });
        }
        WAIT_EVENT.get()
    }
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    {
        pg_sys::PG_WAIT_EXTENSION
    }
}

/// Queue mode: sleeps on the process latch for at most 100 ms (less when the
/// budget should be there sooner), then checks interrupts so cancel,
/// terminate and statement_timeout take effect.
pub fn wait_for_budget(wait_micros: u64) {
    let ms = wait_micros.div_ceil(1000).clamp(1, 100);
    let event = wait_event();
    // SAFETY: MyLatch is this process's latch; WL_EXIT_ON_PM_DEATH makes the
    // wait safe if the postmaster dies.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as std::ffi::c_long,
            event,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}
