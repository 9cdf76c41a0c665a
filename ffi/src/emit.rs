//! The emit family: broadcast, keyed broadcast, unicast, root events, and
//! the non-blocking `try_` forms of broadcast and unicast.
//!
//! Each copies the payload once into a shared buffer that every receiving
//! fiber references (never once per node; `slab.rs` says where the copy
//! lives), and returns before delivery. `chronica_director_emit_payload`
//! copies nothing: it shares a `chronica_payload` made beforehand. Each
//! success records the new event's id for `chronica_last_event_id`
//! (`event_id.rs`): the SPEC's signatures have no room to return it.

use std::ffi::c_char;

use chronica::{Bytes, Message};

use crate::boundary::boundary;
use crate::director::{chronica_director, enter};
use crate::event_id::record;
use crate::input::{bytes, object, optional_uid, string, uid};
use crate::payload::chronica_payload;
use crate::slab::{copy as copy_payload, owned};
use crate::status::{chronica_status, Failure, FfiResult};

/// Builds a message from C arguments, checking them in the order given
/// (source, topic, then the payload `payload` produces). Inlined: on the
/// hot path a call returning the message by value cost more than building
/// it.
///
/// # Safety
/// Pointers as documented on the exports.
#[inline(always)]
pub(crate) unsafe fn message<'a>(
    source: *const c_char,
    topic: *const c_char,
    key: Option<&[u8]>,
    payload: impl FnOnce() -> FfiResult<Bytes>,
) -> FfiResult<Message<'a>> {
    // SAFETY: forwarded from the caller.
    let (source, topic) = unsafe { (optional_uid(source, "source")?, string(topic, "topic")?) };
    let mut msg = Message::new(topic, payload()?);
    if let Some(s) = source {
        msg = msg.source(s);
    }
    if let Some(k) = key {
        msg = msg.key(owned(k)?);
    }
    Ok(msg)
}

/// The payload argument pair as a shared copy (see slab.rs).
///
/// # Safety
/// `payload` must be NULL or `len` readable bytes.
#[inline(always)]
pub(crate) unsafe fn copied(payload: *const u8, len: usize) -> impl FnOnce() -> FfiResult<Bytes> {
    // SAFETY: forwarded from the caller.
    move || copy_payload(unsafe { bytes(payload, len, "payload") }?)
}

/// Whether an emit may wait for room in a lane under the `block` policy:
/// the one difference between `chronica_director_emit` and
/// `chronica_director_try_emit` (and their `_to` forms, and the same pairs
/// of `chronica_distributed_*`), so each pair shares one body and cannot
/// drift apart in what it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Wait up to the block timeout (`emit`).
    Yes,
    /// Fail at once with `CHRONICA_ERR_QUEUE_FULL` (`try_emit`).
    No,
}

/// The body of `chronica_director_emit` and `chronica_director_try_emit`.
/// Inlined: `wait` is a constant at each call site.
///
/// # Safety
/// As for `chronica_director_emit`.
#[inline(always)]
unsafe fn broadcast(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    wait: Wait,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (d, _scope) = unsafe { enter(director) }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, None, copied(payload, len)) }?;
    record(match wait {
        Wait::Yes => d.emit(msg)?,
        Wait::No => d.try_emit(msg)?,
    });
    Ok(())
}

/// The body of `chronica_director_emit_to` and
/// `chronica_director_try_emit_to`.
///
/// # Safety
/// As for `chronica_director_emit_to`.
#[inline(always)]
unsafe fn unicast(
    director: *mut chronica_director,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    wait: Wait,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (d, _scope) = unsafe { enter(director) }?;
    // SAFETY: forwarded from the caller.
    let target = unsafe { uid(target, "target") }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, None, copied(payload, len)) }?;
    record(match wait {
        Wait::Yes => d.emit_to(target, msg)?,
        Wait::No => d.try_emit_to(target, msg)?,
    });
    Ok(())
}

/// Broadcasts an event on `topic` (may be "", not NULL) with `len` bytes of
/// `payload` (NULL allowed when `len` is 0) to every node whose subscription
/// matches, except `source` (nullable: a registered uid to emit on behalf
/// of; it does not receive its own event). In a consumer group one member
/// receives it. `CHRONICA_ERR_UNKNOWN_NODE` when `source` is not
/// registered; `CHRONICA_ERR_QUEUE_FULL` when a blocking lane stayed full
/// (under `CHRONICA_OVERFLOW_BLOCK` this waits up to the block timeout;
/// `chronica_director_try_emit` never waits). On `CHRONICA_OK`,
/// `chronica_last_event_id` gives the new event's id, as every emit of this
/// family does.
///
/// # Safety
/// `director` must be NULL or a live director; strings NULL or
/// NUL-terminated; `payload` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { broadcast(director, source, topic, payload, len, Wait::Yes) })
}

/// As `chronica_director_emit` (same arguments, same checks in the same
/// order, same statuses), but it never waits: where a target lane under
/// `CHRONICA_OVERFLOW_BLOCK` is full it returns `CHRONICA_ERR_QUEUE_FULL`
/// at once, and no node accepts the event (no counter moves; the event's
/// id is consumed, as by an emit that timed out). Under the dropping
/// policies it is `chronica_director_emit`. For a caller that must not
/// block here (an event loop, a thread holding a lock the delivery threads
/// need) and retries or sheds load itself. Callable from inside callbacks.
///
/// # Safety
/// As for `chronica_director_emit`.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_try_emit(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { broadcast(director, source, topic, payload, len, Wait::No) })
}

/// As `chronica_director_emit`, with the bytes of `payload` (not NULL; see
/// `chronica_payload_new`) shared instead of copied: the event keeps its
/// own reference, so the payload may be freed, or emitted again, as soon as
/// this returns.
///
/// # Safety
/// As for `chronica_director_emit`; `payload` NULL or a live payload.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_payload(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    payload: *const chronica_payload,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let shared = move || Ok(unsafe { object(payload, "payload") }?.bytes.clone());
        // SAFETY: forwarded from the caller.
        record(d.emit(unsafe { message(source, topic, None, shared) }?)?);
        Ok(())
    })
}

/// As `chronica_director_emit`, with an ordering / partition key of
/// `key_len` bytes (`key` not NULL; `key_len` may be 0): a consumer group
/// sends every event of one key to the same member, and a node with
/// concurrency above 1 keeps order per key.
///
/// # Safety
/// As for `chronica_director_emit`; `key` NULL or `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_keyed(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    key: *const u8,
    key_len: usize,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        if key.is_null() {
            return Err(Failure::null("key"));
        }
        // SAFETY: forwarded from the caller.
        let key = unsafe { bytes(key, key_len, "key") }?;
        // SAFETY: forwarded from the caller.
        record(d.emit(unsafe { message(source, topic, Some(key), copied(payload, len)) }?)?);
        Ok(())
    })
}

/// Sends an event to exactly `target`, whatever its subscription (and even
/// when `target` is `source`). Arguments as for `chronica_director_emit`.
///
/// # Safety
/// As for `chronica_director_emit`; `target` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_to(
    director: *mut chronica_director,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { unicast(director, source, target, topic, payload, len, Wait::Yes) })
}

/// As `chronica_director_emit_to`, but it never waits: a full `target`
/// lane under `CHRONICA_OVERFLOW_BLOCK` returns `CHRONICA_ERR_QUEUE_FULL`
/// at once and nothing is accepted, as for `chronica_director_try_emit`.
///
/// # Safety
/// As for `chronica_director_emit_to`.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_try_emit_to(
    director: *mut chronica_director,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { unicast(director, source, target, topic, payload, len, Wait::No) })
}

/// Sends a root (control) event `action` (not NULL) with `payload` to every
/// node, on the priority lane, carrying the director's trust token. Its id:
/// `chronica_last_event_id`, as for `chronica_director_emit`.
///
/// # Safety
/// `director` must be NULL or a live director; `action` NULL or
/// NUL-terminated; `payload` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_root(
    director: *mut chronica_director,
    action: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let (action, payload) = unsafe { (string(action, "action")?, bytes(payload, len, "payload")?) };
        record(d.emit_root(action, copy_payload(payload)?)?);
        Ok(())
    })
}

/// Sends a root (control) event to node `target` only.
///
/// # Safety
/// As for `chronica_director_emit_root`; `target` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_emit_root_to(
    director: *mut chronica_director,
    target: *const c_char,
    action: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let (target, action, payload) =
            unsafe { (uid(target, "target")?, string(action, "action")?, bytes(payload, len, "payload")?) };
        record(d.emit_root_to(target, action, copy_payload(payload)?)?);
        Ok(())
    })
}
