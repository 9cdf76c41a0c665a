//! `chronica_director_emit_many`: a run of events in one call, the C face
//! of Rust's `Director::emit_many`.
//!
//! Every message is checked and its payload copied before the engine sees
//! any of them, so a bad message anywhere in the array refuses the call
//! with nothing emitted (the last error names its index). The copies are
//! the ones `chronica_director_emit` makes (`slab.rs`), one per message:
//! what the call saves is the per-event claim and push in every target
//! lane, and the crossing of the boundary per event.

use std::ffi::c_char;

use chronica::Message;

use crate::boundary::boundary;
use crate::director::{chronica_director, enter};
use crate::emit::{copied, message};
use crate::event_id::record;
use crate::input::{bytes, optional_uid, write_out};
use crate::status::{chronica_status, Failure, FfiResult};
use crate::timed_emit::deadline;

/// One message of a `chronica_director_emit_many` call. Read only during
/// the call: the library copies what it keeps, so the array and everything
/// it points to may be reused or freed as soon as the call returns.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct chronica_message {
    /// The topic: NUL-terminated UTF-8, may be "", not NULL.
    pub topic: *const c_char,
    /// `payload_len` bytes of payload; NULL allowed when `payload_len` is 0.
    pub payload: *const u8,
    /// Length of `payload`.
    pub payload_len: usize,
    /// The ordering / partition key (as for `chronica_director_emit_keyed`),
    /// `key_len` bytes; NULL for an event without a key, in which case
    /// `key_len` must be 0. A non-NULL key of length 0 is an empty key,
    /// which is a key.
    pub key: *const u8,
    /// Length of `key`.
    pub key_len: usize,
}

/// The caller's array as a slice: NULL only with `n` 0, and no more
/// messages than an object can hold.
///
/// # Safety
/// `msgs` must be NULL or point to `n` readable messages.
unsafe fn messages<'a>(msgs: *const chronica_message, n: usize) -> FfiResult<&'a [chronica_message]> {
    if n == 0 {
        return Ok(&[]);
    }
    if msgs.is_null() {
        return Err(Failure::null("msgs"));
    }
    if n > isize::MAX as usize / size_of::<chronica_message>() {
        return Err(Failure::invalid(format!("msgs: {n} messages is impossible")));
    }
    // SAFETY: non-NULL, `n` readable messages per the caller, and a size
    // that fits an object (checked above).
    Ok(unsafe { std::slice::from_raw_parts(msgs, n) })
}

/// One message of the array, checked in the order key, topic, payload
/// (`chronica_director_emit_keyed`'s).
///
/// # Safety
/// The pointers of `m` as documented on `chronica_message`.
#[inline(always)]
unsafe fn one<'a>(m: &chronica_message, source: Option<&'a str>) -> FfiResult<Message<'a>> {
    let key = match (m.key.is_null(), m.key_len) {
        (true, 0) => None,
        // SAFETY: forwarded from the caller; NULL with a length is refused.
        _ => Some(unsafe { bytes(m.key, m.key_len, "key") }?),
    };
    // SAFETY: forwarded from the caller. The source was checked once for
    // the whole call, so it is added here rather than checked again.
    let msg = unsafe { message(std::ptr::null(), m.topic, key, copied(m.payload, m.payload_len)) }?;
    Ok(match source {
        Some(s) => msg.source(s),
        None => msg,
    })
}

/// Emits the `n` messages of `msgs` in order, as `n` calls of
/// `chronica_director_emit` (or `_emit_keyed`, for a message with a key)
/// would, all on behalf of `source` (nullable; as for
/// `chronica_director_emit`), and gives them consecutive ids: the first
/// is written to `*first_id_out` (nullable), the others follow it, and
/// `chronica_last_event_id` gives the last one (`first + n - 1`). Each
/// node's events of the call are stored in its lane with one claim and
/// one push, and events reaching the same nodes share that run, so a
/// producer with many events in hand pays per node what an emit pays per
/// node and event.
///
/// Every argument is checked first: a NULL `msgs` with `n` above 0, and
/// in any message a NULL or non-UTF-8 topic, a NULL payload with a length,
/// a NULL key with a `key_len`, or an impossible length, refuses the call
/// with nothing emitted (`chronica_last_error` names the message as
/// `msgs[i]`). `n` 0 is no error: nothing is emitted,
/// `chronica_last_event_id` stays as it was, and `*first_id_out` gets the
/// id the next event would have taken (an empty range).
///
/// `CHRONICA_ERR_UNKNOWN_NODE` when `source` is not registered, nothing
/// emitted. Under `CHRONICA_OVERFLOW_BLOCK` it is all or nothing: room for
/// all of each node's events of the call is reserved in every target,
/// waiting up to the block timeout, or the call returns
/// `CHRONICA_ERR_QUEUE_FULL` with no event accepted anywhere (no counter
/// moves; the ids are consumed, as by a timed-out emit); more events for
/// one `block` node than its queue holds can never fit and are refused
/// with `CHRONICA_ERR_INVALID_ARGUMENT` (send fewer at once). Under the
/// dropping policies a node whose lane lacks room for its run takes the
/// events one by one under its policy, as from `n` emits (a
/// `chronica.lagged` notice counts what it lost). On a refusal
/// `*first_id_out` is left alone. Callable from inside callbacks.
///
/// # Safety
/// `director` must be NULL or a live director; `source` NULL or
/// NUL-terminated; `msgs` NULL or `n` readable messages whose pointers are
/// as documented on `chronica_message`; `first_id_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_many(
    director: *mut chronica_director,
    source: *const c_char,
    msgs: *const chronica_message,
    n: usize,
    first_id_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        unsafe { emit_run(director, source, msgs, n, None, first_id_out) }
    })
}

/// As `chronica_director_emit_many` (same arguments first, same checks in
/// the same order, same statuses), but under `CHRONICA_OVERFLOW_BLOCK` it
/// waits for room for the run for at most `timeout_ms` milliseconds
/// rather than the director's block timeout, as
/// `chronica_director_timed_emit` does for one event: where some target
/// still lacks room then, it returns `CHRONICA_ERR_QUEUE_FULL` and no node
/// accepts any of the events. A `timeout_ms` of 0 never waits (the try
/// form); `UINT64_MAX` waits as long as room takes. Under the dropping
/// policies it is `chronica_director_emit_many`. Callable from inside
/// callbacks.
///
/// # Safety
/// As for `chronica_director_emit_many`.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_timed_emit_many(
    director: *mut chronica_director,
    source: *const c_char,
    msgs: *const chronica_message,
    n: usize,
    timeout_ms: u64,
    first_id_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        unsafe { emit_run(director, source, msgs, n, Some(timeout_ms), first_id_out) }
    })
}

/// The two emit_many calls: `timeout_ms` bounds the wait for room, `None`
/// being the director's block timeout.
///
/// # Safety
/// As for `chronica_director_emit_many`.
unsafe fn emit_run(
    director: *mut chronica_director,
    source: *const c_char,
    msgs: *const chronica_message,
    n: usize,
    timeout_ms: Option<u64>,
    first_id_out: *mut u64,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (d, _scope) = unsafe { enter(director) }?;
    // SAFETY: forwarded from the caller.
    let (source, msgs) = unsafe { (optional_uid(source, "source")?, messages(msgs, n)?) };
    let built = msgs
        .iter()
        .enumerate()
        // SAFETY: forwarded from the caller.
        .map(|(i, m)| unsafe { one(m, source) }.map_err(|f| at(i, f)))
        .collect::<FfiResult<Vec<_>>>()?;
    let ids = match timeout_ms {
        None => d.emit_many(built)?,
        Some(ms) => d.emit_many_until(built, deadline(ms))?,
    };
    if !ids.is_empty() {
        record(ids.end - 1);
    }
    if !first_id_out.is_null() {
        // SAFETY: non-NULL and writable per the caller.
        unsafe { write_out(first_id_out, ids.start) };
    }
    Ok(())
}

/// `f` with the index of the message it is about.
fn at(i: usize, f: Failure) -> Failure {
    Failure::new(f.status, format!("msgs[{i}]: {}", f.message))
}
