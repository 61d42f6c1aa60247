//! Role lookups and privilege checks.
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// The oid of role `name`, if it exists.
pub fn role_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup inside a transaction; missing_ok = true
    // returns InvalidOid instead of raising an error.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The oid of the role named by a Rust string (None for a name with a NUL
/// byte, which no role can have).
pub fn role_oid_by_str(name: &str) -> Option<pg_sys::Oid> {
    CString::new(name).ok().and_then(|n| role_oid(&n))
}

/// The name of role `oid`, if it exists.
pub fn role_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: noerr = true: NULL for an unknown role; the result is a
    // palloc'd NUL-terminated string, copied out at once.
    unsafe { crate::text::to_owned(pg_sys::GetUserNameFromId(oid, true)) }
}

/// The current user (the one privileges are checked against).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a process-local variable.
    unsafe { pg_sys::GetUserId() }
}

/// The session user (the one who logged in, or SET SESSION AUTHORIZATION).
pub fn session_user() -> pg_sys::Oid {
    // SAFETY: reads a process-local variable.
    unsafe { pg_sys::GetSessionUserId() }
}

/// The name of the current user ("" if it vanished).
pub fn current_user_name() -> String {
    role_name(current_user()).unwrap_or_default()
}

/// Whether `user` is a superuser.
pub fn is_superuser(user: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup inside a transaction.
    unsafe { pg_sys::superuser_arg(user) }
}

/// Whether `user` has the privileges of `role` (is a superuser, or an
/// inheriting member of it). False when the role does not exist.
pub fn has_privs_of(user: pg_sys::Oid, role: &CStr) -> bool {
    if is_superuser(user) {
        return true;
    }
    // SAFETY: catalog lookups inside a transaction.
    role_oid(role).is_some_and(|oid| unsafe { pg_sys::has_privs_of_role(user, oid) })
}

/// Whether the current user has the privileges of `role`.
pub fn current_user_has_privs_of(role: &CStr) -> bool {
    has_privs_of(current_user(), role)
}

/// Whether `user` has the privileges of any of `roles`.
pub fn has_privs_of_any(user: pg_sys::Oid, roles: &[&CStr]) -> bool {
    is_superuser(user) || roles.iter().any(|r| has_privs_of(user, r))
}

/// Whether `user` has the privileges of role `role` (superusers have every
/// role's).
pub fn has_privs_of_oid(user: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe { pg_sys::has_privs_of_role(user, role) }
}
