//! Running our own SQL safely: as the bootstrap superuser for internal
//! writes a caller may not make directly, and in every case with a pinned
//! `search_path`, so that no object a user created (a function, an
//! operator, an aggregate shadowing a built-in one) runs inside our
//! statements. This is what a `SECURITY DEFINER` function with
//! `SET search_path` does, for code that is not such a function.
//!
//! The SQL run inside must still schema-qualify every function and operator
//! (`pg_catalog.count(*)`, `OPERATOR(pg_catalog.<)`): the pinned path is the
//! second line of defence, not the first.
use pgrx::pg_sys;

/// The `search_path` every internal statement runs with: the system catalog
/// only, and the session's temporary schema last (so a temporary table can
/// never shadow a table we name without a schema).
pub const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Restores the user id, security context and settings a [`Section`]
/// changed, when it ends normally and when an error unwinds through it.
struct Section {
    user: pg_sys::Oid,
    sec_context: i32,
    guc_level: i32,
}

impl Section {
    /// Enters a section running as `user` (None: the current user) with
    /// `search_path` pinned.
    fn enter(user: Option<pg_sys::Oid>) -> Section {
        let mut saved_user = pg_sys::InvalidOid;
        let mut sec_context = 0;
        // SAFETY: plain reads and writes of the backend's user-id state and
        // GUC nesting, as fmgr_security_definer does; both are undone by
        // `Drop`, and by transaction abort if the backend dies in between.
        let guc_level = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut sec_context);
            if let Some(user) = user {
                // A restricted operation cannot create temporary objects or
                // change the role: nothing of ours needs to, and a
                // function a user smuggled in could not escape through them.
                pg_sys::SetUserIdAndSecContext(
                    user,
                    sec_context
                        | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                        | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
                );
            }
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                SAFE_SEARCH_PATH.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            level
        };
        Section {
            user: saved_user,
            sec_context,
            guc_level,
        }
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        // SAFETY: pops exactly the GUC nest level entered above (a no-op if
        // an aborted subtransaction already popped it) and restores the saved
        // identity; neither raises an error in these circumstances.
        unsafe {
            pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.guc_level);
            pg_sys::SetUserIdAndSecContext(self.user, self.sec_context);
        }
    }
}

/// Runs `f` as the bootstrap superuser (like a `SECURITY DEFINER` function
/// owned by it) with `search_path` pinned to [`SAFE_SEARCH_PATH`], inside a
/// security-restricted operation. The caller's identity and settings are
/// restored afterwards, also when `f` raises an ERROR. Must run inside a
/// transaction.
pub fn as_superuser<R>(f: impl FnOnce() -> R) -> R {
    let _section = Section::enter(Some(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)));
    f()
}

/// Runs `f` as the current user with `search_path` pinned to
/// [`SAFE_SEARCH_PATH`] (for internal statements that need no other
/// privileges). Must run inside a transaction.
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    let _section = Section::enter(None);
    f()
}

/// Whether this process is inside an [`as_superuser`] section (of this
/// extension or of another one built on this crate, which keeps its own
/// copy of this code): the current user is the bootstrap superuser,
/// switched to locally, inside a security-restricted operation. Our
/// extensions' internal statements (policy reloads, history writes) run
/// there, and are exempt from the others' throttling and budgets.
/// PostgreSQL itself sets the two flags separately: `SECURITY DEFINER`
/// functions change the user locally without restricting the operation,
/// and the maintenance commands that restrict it (`REFRESH MATERIALIZED
/// VIEW`, `VACUUM`, `ANALYZE`, `CREATE INDEX`) switch to the table's owner
/// without a local change; only a superuser-owned `SECURITY DEFINER`
/// function called inside one of those commands looks the same.
pub fn in_superuser_section() -> bool {
    let mut user = pg_sys::InvalidOid;
    let mut sec_context = 0;
    // SAFETY: plain reads of the backend's user-id state.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec_context) };
    let wanted =
        (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
    sec_context & wanted == wanted && user == pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)
}
