//! Where the emit family copies the payloads C hands it.
//!
//! The caller's buffer is not ours to keep, so every emit copies it once
//! (never once per node). A buffer of its own per emit would cost a `malloc`
//! on the emitting thread and a `free` on whichever delivery thread drops
//! the event last, and glibc serialises that cross-thread free with the
//! emitter's next `malloc` on the emitter's arena lock: on W1 that was the
//! largest part of what the C path cost beyond the Rust one.
//!
//! So a small payload is copied into a slab the emitting thread keeps
//! (thread-local, so no lock) and leaves as a `Bytes` slice of it: one
//! atomic increment of the slab's reference count instead of a `malloc`.
//! The slab's memory goes back to the allocator when its last slice is
//! dropped; an emitter that finds its slab no longer referenced reuses it
//! in place, so a producer whose nodes keep up allocates nothing.
//!
//! Invariant: a slice pins its whole slab. Slabs are small ([`SLAB`]) and
//! only payloads up to [`SMALL`] bytes go into one, so an event retained
//! long (a lagging node, a retry) keeps at most [`SLAB`] bytes alive; larger
//! payloads, whose `malloc` is cheap next to their copy, get a buffer of
//! their own.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::status::FfiResult;

/// Bytes per slab: a page, so a retained event pins little.
pub(crate) const SLAB: usize = 4096;

/// The largest payload copied into a slab (at least 16 per slab).
pub(crate) const SMALL: usize = SLAB / 16;

thread_local! {
    /// The emitting thread's slab: empty, with the spare capacity that the
    /// next small payloads are copied into.
    static SLAB_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A shared copy of `payload`, made as cheaply as its size allows;
/// `CHRONICA_ERR_RESOURCE` when a large one finds no memory.
pub(crate) fn copy(payload: &[u8]) -> FfiResult<Bytes> {
    if payload.is_empty() {
        return Ok(Bytes::new());
    }
    if payload.len() > SMALL {
        return owned(payload);
    }
    // `try_with` and `try_borrow_mut`: during thread teardown, or if this
    // were ever reached re-entrantly, fall back to a plain copy.
    SLAB_BUF
        .try_with(|slab| slab.try_borrow_mut().ok().map(|mut s| carve(&mut s, payload)))
        .ok()
        .flatten()
        .map_or_else(|| owned(payload), Ok)
}

/// `data` in a buffer of its own, or `CHRONICA_ERR_RESOURCE` when the
/// memory cannot be had (`Bytes::copy_from_slice` aborted the host).
pub(crate) fn owned(data: &[u8]) -> FfiResult<Bytes> {
    Ok(chronica::copy_bytes(data)?)
}

/// Appends `payload` to `slab` and splits it off as its own `Bytes`.
fn carve(slab: &mut BytesMut, payload: &[u8]) -> Bytes {
    // `slab` is always empty here (everything written was split off); only
    // its spare capacity matters.
    if slab.capacity() < payload.len() && !slab.try_reclaim(SLAB) {
        *slab = BytesMut::with_capacity(SLAB);
    }
    slab.extend_from_slice(payload);
    slab.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_equal_and_independent_of_the_source() {
        let mut src = vec![0u8; 100];
        let mut kept = Vec::new();
        for i in 0..1000u32 {
            let len = (i as usize * 7) % 300; // empty, slab-sized and larger ones
            src.resize(len, 0);
            src.iter_mut().enumerate().for_each(|(j, b)| *b = (i as usize + j) as u8);
            kept.push((src.clone(), copy(&src).unwrap()));
            src.fill(0xee); // the caller reuses its buffer
        }
        for (want, got) in &kept {
            assert_eq!(&want[..], &got[..]);
        }
    }

    #[test]
    fn a_slab_nobody_references_is_reused_in_place() {
        // Each test runs on a fresh thread, so this copy starts a slab.
        let first = copy(&[1; 8]).unwrap();
        let base = first.as_ptr();
        drop(first);
        for _ in 1..SLAB / 8 {
            drop(copy(&[2; 8]).unwrap());
        }
        // The slab is full and unreferenced: the next copy reclaims it.
        let again = copy(&[3; 8]).unwrap();
        assert_eq!(again.as_ptr(), base);
        assert_eq!(&again[..], &[3; 8]);
    }

    #[test]
    fn a_referenced_slab_is_left_alone() {
        let held = copy(&[1; 8]).unwrap();
        for _ in 0..SLAB / 8 {
            drop(copy(&[2; 8]).unwrap());
        }
        assert_eq!(&held[..], &[1; 8]);
    }

    #[test]
    fn a_copy_outlives_its_thread() {
        let b = std::thread::spawn(|| copy(b"kept after the emitter exits").unwrap()).join().unwrap();
        assert_eq!(&b[..], b"kept after the emitter exits");
    }
}
