//! FFI helpers: subtransactions, `ALTER SYSTEM`, privilege switching, reload.
//! Everything `unsafe` in the extension outside `_PG_init` lives here.
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::CString;

/// Run `f` in an internal subtransaction; an ERROR inside rolls the
/// subtransaction back and comes back as `Err(message)` instead of aborting
/// the caller's transaction. Must be called inside a transaction.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: we are inside a transaction (callers guarantee it); the memory
    // context and resource owner are restored on both paths, as PL handlers do.
    let (old_cxt, old_owner) = unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        (cxt, owner)
    };
    PgTryBuilder::new(move || {
        let r = f();
        // SAFETY: the subtransaction started above is still the current one.
        unsafe {
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Ok(r)
    })
    .catch_others(move |e| {
        // SAFETY: the error left us inside the subtransaction; roll it back.
        unsafe {
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Err(match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
    })
    .execute()
}

/// `ALTER SYSTEM SET max_wal_size = '<mb>MB'` through the server's own
/// implementation (it cannot run through SPI: it refuses to run inside a
/// function). Errors are PostgreSQL ERRORs (catch them with
/// [`in_subtransaction`]).
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

/// Run `f` as the bootstrap superuser (like a SECURITY DEFINER function owned
/// by it), restoring the caller's identity afterwards. An ERROR escaping `f`
/// aborts the transaction, which restores the identity too.
pub fn as_superuser<R>(f: impl FnOnce() -> R) -> R {
    let mut user: pg_sys::Oid = pg_sys::InvalidOid;
    let mut sec: i32 = 0;
    // SAFETY: plain reads/writes of the backend's user-id state.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let r = f();
    // SAFETY: restore what we saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, sec) };
    r
}

/// Whether the current user is a superuser or has the privileges of `role`.
pub fn current_user_has_role(role: &std::ffi::CStr) -> bool {
    // SAFETY: catalog lookups inside a transaction; a missing role gives
    // InvalidOid (missing_ok = true), which no one is a member of.
    unsafe {
        if pg_sys::superuser() {
            return true;
        }
        let oid = pg_sys::get_role_oid(role.as_ptr(), true);
        oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid)
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

/// Re-read the configuration file in this process (after our own SIGHUP).
pub fn process_config_file() {
    // SAFETY: the standard way for a background worker to apply a reload.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The WAL insert position, or `None` during recovery. Needs no transaction.
pub fn wal_insert_lsn() -> Option<u64> {
    // SAFETY: both read shared XLog state under their own locks; valid in any
    // process attached to shared memory.
    unsafe {
        if pg_sys::RecoveryInProgress() {
            None
        } else {
            Some(pg_sys::GetXLogInsertRecPtr())
        }
    }
}
