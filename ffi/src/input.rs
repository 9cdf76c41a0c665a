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

/// Strings up to this many bytes take the one-pass path in [`string`].
const SHORT: usize = 64;

/// A required NUL-terminated UTF-8 string.
///
/// Every emit converts a topic and a source, almost always short ASCII:
/// for those, one pass finds the NUL and proves the bytes are UTF-8
/// (ASCII is), instead of `strlen` followed by a UTF-8 validation. Longer
/// strings and any non-ASCII byte take the general path.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
#[inline]
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    let p = p.cast::<u8>();
    let mut seen = 0u8;
    for n in 0..SHORT {
        // SAFETY: the string is NUL-terminated and this loop stops at the
        // NUL, so every byte read belongs to it.
        let b = unsafe { *p.add(n) };
        if b == 0 {
            if seen.is_ascii() {
                // SAFETY: `n` bytes before the NUL, all ASCII, hence UTF-8.
                return Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(p, n)) });
            }
            break;
        }
        seen |= b;
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's guarantee.
    let bytes = unsafe { CStr::from_ptr(p.cast()) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(chronica_status::CHRONICA_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8: {e}"))
    })
}

/// An optional string: NULL gives `None`.
///
/// # Safety
/// As for [`string`].
#[inline]
pub(crate) unsafe fn optional_string<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { string(p, what) }.map(Some)
    }
}

/// Checks a uid's length: 1 to 255 bytes.
#[inline]
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
#[inline]
pub(crate) unsafe fn optional_uid<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    // SAFETY: forwarded from the caller.
    match unsafe { optional_string(p, what) }? {
        Some(u) => check_uid(u, what).map(Some),
        None => Ok(None),
    }
}

/// A byte buffer: NULL is allowed only with length 0. A length no object
/// can have (above `PTRDIFF_MAX`: a negative length cast to `size_t`, say)
/// is refused: building the slice would be undefined, and copying it
/// aborted the process on the allocation.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    match (p.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(Failure::null(what)),
        (false, n) if isize::try_from(n).is_err() => {
            Err(Failure::invalid(format!("{what}: a length of {n} bytes is impossible")))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn read(bytes: &[u8]) -> FfiResult<String> {
        let c = CString::new(bytes).unwrap();
        // SAFETY: a live NUL-terminated string.
        unsafe { string(c.as_ptr(), "s") }.map(str::to_owned)
    }

    #[test]
    fn strings_of_every_length_and_kind_read_back() {
        for len in [0, 1, SHORT - 1, SHORT, SHORT + 1, 300] {
            let ascii: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert_eq!(read(ascii.as_bytes()).unwrap(), ascii, "ascii of {len}");
            let wide = format!("{}é", &ascii[..len.saturating_sub(2)]);
            assert_eq!(read(wide.as_bytes()).unwrap(), wide, "non-ascii of about {len}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused_whatever_its_length() {
        for prefix in [0, 10, SHORT - 1, SHORT, 200] {
            let mut b = vec![b'x'; prefix];
            b.push(0xff);
            let e = read(&b).unwrap_err();
            assert_eq!(e.status, chronica_status::CHRONICA_ERR_INVALID_UTF8, "prefix {prefix}");
        }
    }

    #[test]
    fn null_is_refused() {
        // SAFETY: NULL is allowed.
        let e = unsafe { string(std::ptr::null(), "topic") }.unwrap_err();
        assert_eq!(e.status, chronica_status::CHRONICA_ERR_NULL_ARGUMENT);
    }
}
