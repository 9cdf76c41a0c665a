//! Checked conversion of the arguments C hands us: pointers that may be
//! NULL, strings that may not be UTF-8, uids of the wrong length.
//!
//! Every helper returns a [`Failure`] naming the argument, so the status and
//! the last-error text point at the culprit.

use std::ffi::{c_char, CStr};

use crate::status::{chronica_status, Failure, FfiResult};

/// The longest uid in bytes (SPEC section 1).
pub(crate) const MAX_UID_LEN: usize = 255;

/// A shared reference to an object C gave us.
///
/// # Safety
/// `p` must be NULL or point to a live `T` that is not mutated meanwhile.
pub(crate) unsafe fn object<'a, T>(p: *const T, what: &str) -> FfiResult<&'a T> {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// A mutable reference to an object C gave us.
///
/// # Safety
/// `p` must be NULL or point to a live `T` not used elsewhere meanwhile.
pub(crate) unsafe fn object_mut<'a, T>(p: *mut T, what: &str) -> FfiResult<&'a mut T> {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's guarantee.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(chronica_status::CHRONICA_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8: {e}"))
    })
}

/// An optional string: NULL gives `None`.
///
/// # Safety
/// As for [`string`].
pub(crate) unsafe fn optional_string<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { string(p, what) }.map(Some)
    }
}

/// Checks a uid's length: 1 to 255 bytes.
pub(crate) fn check_uid<'a>(uid: &'a str, what: &str) -> FfiResult<&'a str> {
    if uid.is_empty() || uid.len() > MAX_UID_LEN {
        return Err(Failure::invalid(format!("{what} must be 1 to {MAX_UID_LEN} bytes, got {}", uid.len())));
    }
    Ok(uid)
}

/// A required uid.
///
/// # Safety
/// As for [`string`].
pub(crate) unsafe fn uid<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded from the caller.
    check_uid(unsafe { string(p, what) }?, what)
}

/// An optional uid: NULL gives `None`.
///
/// # Safety
/// As for [`string`].
pub(crate) unsafe fn optional_uid<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    // SAFETY: forwarded from the caller.
    match unsafe { optional_string(p, what) }? {
        Some(u) => check_uid(u, what).map(Some),
        None => Ok(None),
    }
}

/// A byte buffer: NULL is allowed only with length 0.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    match (p.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(Failure::null(what)),
        // SAFETY: non-NULL and `len` readable bytes per the caller.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, len) }),
    }
}

/// Writes `value` through an out-pointer already checked non-NULL.
///
/// # Safety
/// `out` must be valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: guaranteed by the caller; `write` does not drop the old
    // (possibly uninitialised) contents.
    unsafe { out.write(value) }
}

/// Fails when an out-pointer is NULL.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> FfiResult {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}
