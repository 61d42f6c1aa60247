//! Copying PostgreSQL's C strings (catalog names, string settings) into
//! Rust, and comparing them without copying.
use std::ffi::{CStr, c_char};

/// An owned copy of C string `ptr`, None for NULL (bytes that are not
/// UTF-8 are replaced).
///
/// # Safety
/// `ptr` must be NULL or a NUL-terminated string valid for this call.
#[inline]
pub unsafe fn to_owned(ptr: *const c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    unsafe { bytes(ptr) }.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A string setting's value, copied: None when it is NULL or empty (both
/// mean "unset").
///
/// # Safety
/// As [`to_owned`].
#[inline]
pub unsafe fn setting_value(ptr: *const c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    unsafe { to_owned(ptr) }.filter(|s| !s.is_empty())
}

/// Whether a string setting equals `value` as [`setting_value`] would
/// return it (None: NULL or empty), without copying.
///
/// # Safety
/// As [`to_owned`].
#[inline]
pub unsafe fn setting_is(ptr: *const c_char, value: Option<&str>) -> bool {
    // SAFETY: the caller's contract.
    let current = unsafe { bytes(ptr) }.unwrap_or_default();
    current == value.unwrap_or("").as_bytes()
}

/// The bytes of C string `ptr` (without its NUL), None for NULL.
///
/// # Safety
/// As [`to_owned`]; the bytes are used before the string can change.
#[inline]
unsafe fn bytes<'a>(ptr: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_bytes())
}
