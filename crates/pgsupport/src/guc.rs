//! Settings: reading one on a per-statement path, and reserving a prefix.
use pgrx::guc::{GucSetting, GucValue};
use pgrx::pg_sys;
use std::ffi::CStr;

/// A setting's current value, read without the thread check of pgrx's
/// `GucSetting::get` (a thread-local lookup on every read). For settings
/// read several times per statement.
pub fn current<T: GucValue>(setting: &GucSetting<T>) -> T {
    // SAFETY: `as_ptr` points at the setting's own cell. PostgreSQL writes
    // it (SET, reload) only from the backend's one thread, the only thread
    // that runs our code, and keeps the value within the setting's range or
    // options, so `from_raw` accepts it.
    unsafe { T::from_raw(*setting.as_ptr()) }
}

/// Reserves `prefix.` for this extension's settings: an unknown
/// `prefix.something` is refused instead of becoming a placeholder.
/// `_PG_init` only.
pub fn reserve_prefix(prefix: &CStr) {
    // SAFETY: called from _PG_init with a static C string.
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) };
}

/// Whether this process is loading `shared_preload_libraries` (only then
/// can shared memory, postmaster settings and workers be set up).
pub fn loading_shared_preload_libraries() -> bool {
    // SAFETY: a plain global set by the postmaster around loading them.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Re-reads the configuration file (a background worker after SIGHUP).
pub fn reload_configuration() {
    // SAFETY: the standard way for a background worker to apply a reload.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

/// A string setting's current value (None when unset or empty).
pub fn current_str(setting: &GucSetting<Option<std::ffi::CString>>) -> Option<String> {
    // SAFETY: a string setting is NULL or a NUL-terminated string owned by
    // the GUC machinery, valid until the setting changes; copied at once.
    unsafe { crate::text::setting_value(current_str_ptr(setting)) }
}

/// Whether a string setting equals `value` (None: unset or empty), without
/// allocating.
pub fn str_equals(setting: &GucSetting<Option<std::ffi::CString>>, value: Option<&str>) -> bool {
    // SAFETY: as in `current_str`, read at once.
    unsafe { crate::text::setting_is(current_str_ptr(setting), value) }
}

fn current_str_ptr(setting: &GucSetting<Option<std::ffi::CString>>) -> *mut std::ffi::c_char {
    // SAFETY: reads the setting's cell (see `current`).
    unsafe { *setting.as_ptr() }
}

/// How long a value set by [`set_with_privilege`] lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Like `SET`: until changed or reset; undone if the transaction rolls
    /// back.
    Session,
    /// Like `SET LOCAL`: until the end of the transaction.
    Transaction,
}

/// Sets `name` to `value` (None: the empty string) for this session as a
/// superuser-only (`PGC_SUSET`) setting may be set by a caller whose
/// privilege the extension has checked itself, with the transactional
/// behaviour of `SET` or `SET LOCAL`. Raises an ERROR for an unknown
/// setting or an invalid value.
pub fn set_with_privilege(name: &CStr, value: Option<&str>, lifetime: Lifetime) {
    let value = std::ffi::CString::new(value.unwrap_or("")).unwrap_or_default();
    let action = match lifetime {
        Lifetime::Session => pg_sys::GucAction::GUC_ACTION_SET,
        Lifetime::Transaction => pg_sys::GucAction::GUC_ACTION_LOCAL,
    };
    // SAFETY: the standard entry point of SET; with elevel ERROR a bad value
    // raises an ERROR instead of returning.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}
