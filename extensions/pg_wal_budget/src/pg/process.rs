//! What the statement path reads from this process: the WAL counter, the
//! clock, the subtransaction, the user, the database and application_name.
//! The reads made for every statement go through `unguarded` (they cannot
//! raise an error); the others through pgrx.
use super::unguarded;
use pgrx::pg_sys;

/// WAL bytes this backend has generated so far (parallel workers' usage is
/// added to it when they finish).
pub fn wal_bytes() -> u64 {
    // SAFETY: pgWalUsage is a plain per-process global.
    unsafe { (*std::ptr::addr_of!(pg_sys::pgWalUsage)).wal_bytes }
}

/// One reading of the clock in the two units the statement path needs.
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
        epoch_ms: pgsupport::time::pg_to_unix_ms(ts),
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

/// Whether this process is a parallel worker (its statements belong to the
/// leader's).
pub fn is_parallel_worker() -> bool {
    // SAFETY: a plain per-process global.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Whether a transaction is running (SPI may be used).
pub fn in_transaction() -> bool {
    // SAFETY: reads transaction state.
    unsafe { pg_sys::IsTransactionState() }
}

pub fn application_name() -> Option<String> {
    // SAFETY: the GUC's current value, NULL or NUL-terminated; copied at
    // once.
    unsafe { pgsupport::text::setting_value(application_name_ptr()) }
}

fn application_name_ptr() -> *const std::ffi::c_char {
    // SAFETY: reads the GUC's current value pointer.
    unsafe { pg_sys::application_name }
}

/// Whether application_name still equals `value` (as [`application_name`]
/// would return it), without allocating.
pub fn application_name_is(value: Option<&str>) -> bool {
    // SAFETY: as in `application_name`; read at once.
    unsafe { pgsupport::text::setting_is(application_name_ptr(), value) }
}

/// `lock_timeout` in milliseconds (0: none).
pub fn lock_timeout_ms() -> u64 {
    // SAFETY: a plain per-process GUC variable.
    u64::try_from(unsafe { pg_sys::LockTimeout }).unwrap_or(0)
}

/// Whether another backend waits for a lock this backend's transaction
/// holds (`pg_blocking_pids()` names us). Runs a query, as the bootstrap
/// superuser (other users' wait events are hidden from an ordinary role):
/// call it only while queued, and rarely. False when it cannot tell.
pub fn blocks_lock_waiters() -> bool {
    use pgrx::prelude::*;
    pgsupport::privileged::as_superuser(|| {
        // pg_stat_activity is read once per transaction unless cleared.
        if Spi::run("SELECT pg_catalog.pg_stat_clear_snapshot()").is_err() {
            return false;
        }
        let r = Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
              WHERE a.wait_event_type OPERATOR(pg_catalog.=) 'Lock' \
                AND pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) \
                    ANY (pg_catalog.pg_blocking_pids(a.pid)))",
        );
        r.ok().flatten().unwrap_or(false)
    })
}

/// This process's pid.
pub fn my_pid() -> i32 {
    pgsupport::wait::my_pid()
}

/// Whether `pid` is a live backend of this server.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: BackendPidGetProc looks the pid up under ProcArrayLock; we
    // only compare the result with NULL.
    !unsafe { pg_sys::BackendPidGetProc(pid) }.is_null()
}

static EXIT_WORK: pgsupport::local::BackendCell<Option<fn()>> =
    pgsupport::local::BackendCell::new(None);

/// Runs `work` when this backend exits (also when it is terminated),
/// before shared memory is detached; registered once per backend.
pub fn on_exit_once(work: fn()) {
    let first = EXIT_WORK.with(|w| w.replace(work).is_none());
    if first {
        // SAFETY: registers a callback for this process's exit; the
        // callback only takes our LWLock and writes our shared table.
        unsafe { pg_sys::before_shmem_exit(Some(run_exit_work), pg_sys::Datum::from(0usize)) };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn run_exit_work(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if let Some(work) = EXIT_WORK.try_with(|w| *w).flatten() {
        work();
    }
}
