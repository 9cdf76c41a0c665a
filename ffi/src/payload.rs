//! `chronica_payload`: bytes copied once and emitted any number of times.
//!
//! `chronica_director_emit` must copy the caller's buffer on every call,
//! since the caller may reuse it as soon as the call returns. A host that
//! sends the same bytes many times (a broadcast of one state snapshot, a
//! heartbeat, a benchmark) can instead copy them once into a payload and
//! emit that with `chronica_director_emit_payload`: each emit then shares
//! the payload by reference count, as the Rust API shares a `Bytes`.
//!
//! Invariant: the bytes of a payload never change after
//! `chronica_payload_new`, so any number of threads may emit one at once,
//! and an event keeps its own reference: freeing the payload right after an
//! emit never affects delivery.

use chronica::Bytes;

use crate::boundary::boundary;
use crate::input::{bytes, check_out, write_out};
use crate::status::{chronica_status, FfiResult};

/// Immutable payload bytes shared by reference count (opaque).
///
/// Made by `chronica_payload_new`, released by `chronica_payload_free`;
/// emitted by `chronica_director_emit_payload`. Thread-safe: any number of
/// threads may emit the same payload at once. Events emitted with it keep
/// the bytes alive on their own, so the payload may be freed as soon as the
/// last emit using it has returned.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_payload {
    pub(crate) bytes: Bytes,
}

/// Copies `len` bytes of `data` (NULL allowed when `len` is 0) into a new
/// payload written to `*payload_out`.
///
/// # Safety
/// `data` must be NULL or `len` readable bytes; `payload_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_payload_new(
    data: *const u8,
    len: usize,
    payload_out: *mut *mut chronica_payload,
) -> chronica_status {
    boundary(|| -> FfiResult {
        check_out(payload_out, "payload_out")?;
        // SAFETY: forwarded from the caller.
        let data = unsafe { bytes(data, len, "data") }?;
        // A buffer of its own (not a slab slice, see slab.rs): a payload is
        // meant to live long, and must not pin anyone else's bytes.
        let handle = Box::into_raw(Box::new(chronica_payload { bytes: crate::slab::owned(data)? }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(payload_out, handle) };
        Ok(())
    })
}

/// Releases the caller's reference to a payload. Events already emitted
/// with it keep the bytes until they are delivered. NULL is ignored.
///
/// # Safety
/// `payload` must be NULL or a payload from `chronica_payload_new` not yet
/// freed, and no other thread may be using it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn chronica_payload_free(payload: *mut chronica_payload) {
    boundary(|| {
        if !payload.is_null() {
            // SAFETY: made by Box::into_raw in chronica_payload_new and freed
            // once, per the caller.
            drop(unsafe { Box::from_raw(payload) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_holds_a_copy_of_its_bytes() {
        let mut src = *b"shared bytes";
        let mut p = std::ptr::null_mut();
        // SAFETY: a live buffer and a writable out-pointer.
        let s = unsafe { chronica_payload_new(src.as_ptr(), src.len(), &mut p) };
        assert_eq!(s, chronica_status::CHRONICA_OK);
        src.fill(0);
        // SAFETY: just made, freed below.
        let kept = unsafe { &*p }.bytes.clone();
        // SAFETY: made above, not used after.
        unsafe { chronica_payload_free(p) };
        assert_eq!(&kept[..], b"shared bytes");
    }

    #[test]
    fn bad_input_writes_nothing() {
        let mut p = std::ptr::null_mut();
        // SAFETY: NULL with a length is refused before any read.
        let s = unsafe { chronica_payload_new(std::ptr::null(), 3, &mut p) };
        assert_eq!(s, chronica_status::CHRONICA_ERR_NULL_ARGUMENT);
        assert!(p.is_null());
        // SAFETY: a NULL out-pointer is refused before any write.
        let s = unsafe { chronica_payload_new(b"x".as_ptr(), 1, std::ptr::null_mut()) };
        assert_eq!(s, chronica_status::CHRONICA_ERR_NULL_ARGUMENT);
        // SAFETY: NULL data with length 0 is an empty payload.
        let s = unsafe { chronica_payload_new(std::ptr::null(), 0, &mut p) };
        assert_eq!(s, chronica_status::CHRONICA_OK);
        // SAFETY: made above; NULL is ignored.
        unsafe {
            assert!((*p).bytes.is_empty());
            chronica_payload_free(p);
            chronica_payload_free(std::ptr::null_mut());
        }
    }
}
