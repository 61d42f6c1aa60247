//! The server-side actions of pg_walrus: `ALTER SYSTEM SET max_wal_size`,
//! signalling a reload, reading the WAL position, looking up a process.
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;

/// `ALTER SYSTEM SET max_wal_size = '<mb>MB'` through the server's own
/// implementation (it cannot run through SPI: it refuses to run inside a
/// function). Errors are PostgreSQL ERRORs (catch them with
/// `pgsupport::subxact::in_subtransaction`). The caller must be a superuser
/// (see `pgsupport::privileged::as_superuser`).
pub fn alter_system_max_wal_size(mb: u64) {
    let sql = CString::new(format!("ALTER SYSTEM SET max_wal_size = '{mb}MB'")).unwrap_or_default();
    // SAFETY: raw_parser returns a List of RawStmt allocated in the current
    // memory context; we check the node tag before using the statement.
    unsafe {
        let list = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if list.is_null() || (*list).length < 1 {
            error!("pg_walrus: could not build the ALTER SYSTEM statement");
        }
        let raw = (*(*list).elements).ptr_value.cast::<pg_sys::RawStmt>();
        let stmt = (*raw).stmt;
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_AlterSystemStmt {
            error!("pg_walrus: unexpected parse tree for ALTER SYSTEM");
        }
        pg_sys::AlterSystemSetConfigFile(stmt.cast::<pg_sys::AlterSystemStmt>());
    }
}

/// Ask the postmaster to reload the configuration (as `pg_reload_conf()`).
pub fn signal_reload() -> bool {
    // SAFETY: PostmasterPid is set for every child process; kill is
    // async-signal-safe and harmless if it fails.
    unsafe {
        libc_kill(pg_sys::PostmasterPid, 1 /* SIGHUP */) == 0
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The WAL position the sizer measures: the insert position on a primary,
/// the replay position on a standby. Needs no transaction.
pub fn wal_position() -> u64 {
    if pgsupport::catalog::in_recovery() {
        // SAFETY: reads shared recovery state under its spinlock; a null
        // timeline pointer is allowed.
        unsafe { pg_sys::GetXLogReplayRecPtr(std::ptr::null_mut()) }
    } else {
        // SAFETY: reads shared XLog state under its own lock; valid in any
        // process attached to shared memory outside recovery.
        unsafe { pg_sys::GetXLogInsertRecPtr() }
    }
}

/// Whether `pid` is a live process with a PGPROC (a backend or a
/// background worker such as ours). Needs no transaction.
pub fn backend_alive(pid: i32) -> bool {
    // SAFETY: takes ProcArrayLock shared and scans the proc array; returns
    // NULL when no such process exists. The pointer is not dereferenced.
    pid > 0 && unsafe { !pg_sys::BackendPidGetProc(pid).is_null() }
}
