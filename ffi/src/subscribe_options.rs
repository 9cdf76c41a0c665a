//! `chronica_subscribe_options`: the options of one EventBus subscription
//! for `chronica_bus_on`: consumer group, concurrency, buffer, retry with a
//! backoff shape, and a per-event dead-letter callback. Every setter checks
//! its value at once and changes nothing on refusal.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use chronica::{Retry, SubscribeOptions, MAX_CONCURRENCY};

use crate::boundary::boundary;
use crate::capacity;
use crate::event::chronica_event;
use crate::input::{object_mut, string};
use crate::retry;
use crate::status::{chronica_status, Failure, FfiResult};

/// Called once per event given up on after the subscription's
/// `max_retries`, with the subscription's `user_data`, the event and the
/// last failure's text (`error_len` bytes, not NUL-terminated), all valid
/// only during the call. Runs on the subscription's delivery thread.
#[allow(non_camel_case_types)]
pub type chronica_bus_dead_letter_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        event: *const chronica_event,
        error: *const c_char,
        error_len: usize,
    ),
>;

/// The options of one subscription (opaque): group, concurrency, buffer,
/// retry, dead-letter callback. Made by `chronica_subscribe_options_new`
/// (no group, concurrency 1, the director's capacity and retry policy, no
/// dead-letter callback), released by `chronica_subscribe_options_free`;
/// copied by `chronica_bus_on`. Not thread-safe while being set.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Default)]
pub struct chronica_subscribe_options {
    pub(crate) opts: SubscribeOptions,
    pub(crate) dead_letter: chronica_bus_dead_letter_fn,
}

/// Applies `set` to the options behind `o`.
///
/// # Safety
/// `o` must be NULL or live options not used elsewhere.
unsafe fn with_options(
    o: *mut chronica_subscribe_options,
    set: impl FnOnce(&mut chronica_subscribe_options) -> FfiResult,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    set(unsafe { object_mut(o, "subscribe_options") }?)
}

/// New subscription options with the defaults. NULL only when a panic was
/// caught. Free with `chronica_subscribe_options_free`.
#[no_mangle]
pub extern "C" fn chronica_subscribe_options_new() -> *mut chronica_subscribe_options {
    boundary(|| Box::into_raw(Box::<chronica_subscribe_options>::default()))
}

/// Frees subscription options. NULL is ignored.
///
/// # Safety
/// `o` must be NULL or a pointer from `chronica_subscribe_options_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_free(o: *mut chronica_subscribe_options) {
    boundary(|| {
        if !o.is_null() {
            // SAFETY: made by Box::into_raw in chronica_subscribe_options_new, freed once.
            drop(unsafe { Box::from_raw(o) });
        }
    })
}

/// Sets the consumer group (non-empty): subscriptions sharing it receive
/// each event once between them, by key hash when the event has a key.
///
/// # Safety
/// `o` must be NULL or live options; `group` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_group(
    o: *mut chronica_subscribe_options,
    group: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            let group = string(group, "group")?;
            if group.is_empty() {
                return Err(Failure::invalid("group must not be empty"));
            }
            s.opts.group = Some(group.to_owned());
            Ok(())
        })
    })
}

/// Parallel handler calls, 1 to 64 (default 1); above 1 the handler runs
/// on several threads at once and order holds per event key.
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_concurrency(
    o: *mut chronica_subscribe_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            if n == 0 || n > MAX_CONCURRENCY {
                return Err(Failure::invalid(format!("concurrency must be 1 to {MAX_CONCURRENCY}, got {n}")));
            }
            s.opts.concurrency = n;
            Ok(())
        })
    })
}

/// The subscription's buffer (lane capacity) in events: 1 to
/// `CHRONICA_MAX_CAPACITY` (2^31 - 1), refused here otherwise, and at least
/// the concurrency (checked by `chronica_bus_on`).
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_buffer(
    o: *mut chronica_subscribe_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            s.opts.buffer = Some(capacity::lane(n, "buffer")?);
            Ok(())
        })
    })
}

/// The subscription's retry: `backoff` is a `CHRONICA_BACKOFF_*` value;
/// delays start at `initial_ms` (at least 1: 0 would retry in a busy loop)
/// and stay at most `max_ms` (at least `initial_ms`; constant backoff
/// ignores it); `multiplier` >= 1 (used, and checked, by exponential
/// backoff only); `jitter` 0 to 1; `max_retries`
/// re-attempts before the dead-letter callback (0 = unlimited, as the SPEC
/// fixes it; `chronica_subscribe_options_set_max_retries`, called after
/// this, sets an exact limit where 0 means none). Linear backoff waits
/// `initial_ms * (k + 1)` before re-attempt `k`. It replaces the whole
/// retry, the limit included.
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_retry(
    o: *mut chronica_subscribe_options,
    backoff: u32,
    initial_ms: u64,
    max_ms: u64,
    multiplier: f64,
    jitter: f64,
    max_retries: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            let backoff = retry::backoff(backoff)?;
            let r = Retry {
                max_retries: (max_retries != 0).then_some(max_retries),
                backoff,
                initial_delay: Duration::from_millis(initial_ms),
                max_delay: Duration::from_millis(max_ms),
                multiplier,
                jitter,
            };
            r.to_policy()?;
            s.opts.retry = Some(r);
            Ok(())
        })
    })
}

/// The subscription's exact number of re-attempts of a failed event before
/// it is dead-lettered: `n` = 0 means none (the first failure dead-letters
/// it), where `chronica_subscribe_options_set_retry`'s `max_retries` 0
/// means unlimited; as for `chronica_options_set_max_retries`, the later
/// of the two calls sets the limit. Without an earlier
/// `chronica_subscribe_options_set_retry` the subscription's other retry
/// settings are the defaults (exponential, 100 ms doubling to 5,000 ms,
/// jitter 0.1), not the director's, as for
/// `chronica_node_options_set_max_retries`. Every value is taken.
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_max_retries(
    o: *mut chronica_subscribe_options,
    n: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            s.opts.retry.get_or_insert_with(Retry::default).max_retries = Some(n);
            Ok(())
        })
    })
}

/// The callback that receives each event given up on after `max_retries`
/// (NULL: dead letters go to the director's dead-letter hook instead).
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscribe_options_set_dead_letter(
    o: *mut chronica_subscribe_options,
    dead_letter: chronica_bus_dead_letter_fn,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |s| {
            s.dead_letter = dead_letter;
            Ok(())
        })
    })
}
