//! Settings that need a check hook (the hook is FFI): the value is parsed by
//! the pure code in `governance`, and a bad one refused with a clear DETAIL.
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// Defines `pwb.replica_lag_standbys` (`*` or a list of application names).
pub fn define_replica_lag_standbys(setting: &'static GucSetting<Option<CString>>) {
    // SAFETY: registration from _PG_init with a static setting and a check
    // hook that only reads the proposed value and sets the check message.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pwb.replica_lag_standbys",
            c"Which standbys' replay lag pwb.max_replica_lag counts: * (every streaming standby) or a comma-separated list of their application_name.",
            c"A standby that is not connected is not counted.",
            setting,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_standbys),
            None,
            None,
        );
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_standbys(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: the GUC machinery passes a pointer to the proposed value,
    // NULL or NUL-terminated.
    let value = unsafe {
        let v = *newval;
        if v.is_null() {
            String::new()
        } else {
            CStr::from_ptr(v).to_string_lossy().into_owned()
        }
    };
    match governance::budget::feedback::parse_standbys(&value) {
        Ok(_) => true,
        Err(why) => {
            let detail = CString::new(why).unwrap_or_default();
            // SAFETY: the documented way for a check hook to give a detail:
            // a palloc'd string in GUC_check_errdetail_string.
            unsafe {
                pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
                pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(
                    c"Use * for every streaming standby, or their application_name values separated by commas."
                        .as_ptr(),
                );
            }
            false
        }
    }
}
