//! The timed emits: `chronica_director_emit` and `_emit_to` with the wait
//! for room bounded by the caller's timeout instead of the director's
//! `block_timeout` (Rust's `Director::emit_until` / `emit_to_until`).
//!
//! C takes the bound as a relative timeout in milliseconds (as
//! `mq_timedsend` and `pthread_mutex_timedlock` take theirs, but relative,
//! as every other timeout of this API is); the deadline is that many
//! milliseconds after the call begins. Not in the SPEC's minimum set, so
//! these return the event's id through `id_out` as well as
//! `chronica_last_event_id`.

use std::ffi::c_char;
use std::time::{Duration, Instant};

use crate::boundary::boundary;
use crate::director::{chronica_director, enter};
use crate::emit::{copied, message};
use crate::event_id::record_to;
use crate::input::uid;
use crate::status::{chronica_status, FfiResult};

/// Far enough to mean "never" (about 34 years), near enough that adding it
/// to the clock cannot overflow: a timeout of `UINT64_MAX` ms is a wait
/// without end, not a panic. The engine saturates its own deadlines at the
/// same horizon.
const HORIZON: Duration = Duration::from_secs(1 << 30);

/// The instant `timeout_ms` after now, saturated at [`HORIZON`].
pub(crate) fn deadline(timeout_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(timeout_ms).min(HORIZON)
}

/// As `chronica_director_emit` (same arguments first, same checks in the
/// same order, same statuses), but under `CHRONICA_OVERFLOW_BLOCK` it waits
/// for room in a full target lane for at most `timeout_ms` milliseconds
/// rather than the director's block timeout: where a lane is still full
/// then, it returns `CHRONICA_ERR_QUEUE_FULL` and no node accepts the
/// event (no counter moves; the event's id is consumed, as by any emit
/// that timed out). A `timeout_ms` of 0 is `chronica_director_try_emit`;
/// any value is taken (`UINT64_MAX` waits as long as room takes). Under
/// the dropping policies it is `chronica_director_emit`. For a host that
/// bounds each emit by its own budget (a request's remaining time, a
/// frame of an event loop) whatever the director was built with.
///
/// On `CHRONICA_OK` writes the event's id to `*id_out` when `id_out` is
/// not NULL, and `chronica_last_event_id` gives it too; on a refusal
/// `*id_out` is left alone. Callable from inside callbacks.
///
/// # Safety
/// As for `chronica_director_emit`; `id_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_timed_emit(
    director: *mut chronica_director,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    timeout_ms: u64,
    id_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let msg = unsafe { message(source, topic, None, copied(payload, len)) }?;
        let id = d.emit_until(msg, deadline(timeout_ms))?;
        // SAFETY: forwarded from the caller.
        unsafe { record_to(id_out, id) };
        Ok(())
    })
}

/// As `chronica_director_emit_to`, waiting for room in `target`'s full
/// lane for at most `timeout_ms` milliseconds, as
/// `chronica_director_timed_emit` does (same timeout, same `id_out`).
///
/// # Safety
/// As for `chronica_director_emit_to`; `id_out` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the emit_to arguments, the timeout and the id
pub unsafe extern "C" fn chronica_director_timed_emit_to(
    director: *mut chronica_director,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    timeout_ms: u64,
    id_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let target = unsafe { uid(target, "target") }?;
        // SAFETY: forwarded from the caller.
        let msg = unsafe { message(source, topic, None, copied(payload, len)) }?;
        let id = d.emit_to_until(target, msg, deadline(timeout_ms))?;
        // SAFETY: forwarded from the caller.
        unsafe { record_to(id_out, id) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_timeout_saturates_rather_than_overflowing_the_clock() {
        let before = Instant::now();
        assert!(deadline(u64::MAX) >= before + HORIZON);
        assert!(deadline(0) >= before);
    }
}
