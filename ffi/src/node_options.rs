//! `chronica_node_options`: per-node registration settings for
//! `chronica_director_register_with`. Unset fields take the director's.
//! Every setter checks its value at once and changes nothing on refusal.

use std::ffi::c_char;

use chronica::{NodeOptions, Pattern, MAX_CONCURRENCY};

use crate::boundary::boundary;
use crate::capacity;
use crate::input::{object, object_mut, string};
use crate::retry::{self, chronica_overflow_t};
use crate::status::{chronica_status, Failure, FfiResult};

/// Registration settings of one node (opaque): topic patterns, consumer
/// group, concurrency, connected at start, retry, capacities, overflow.
/// Made by `chronica_node_options_new`, released by
/// `chronica_node_options_free`; copied at registration, so one object may
/// serve several registrations. Not thread-safe while being set.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Default)]
pub struct chronica_node_options {
    pub(crate) opts: NodeOptions,
}

/// Applies `set` to the node options behind `o`.
///
/// # Safety
/// `o` must be NULL or a live node options object not used elsewhere.
unsafe fn with_node_options(
    o: *mut chronica_node_options,
    set: impl FnOnce(&mut NodeOptions) -> FfiResult,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    set(&mut unsafe { object_mut(o, "node_options") }?.opts)
}

/// The options behind a const pointer, or the defaults for NULL.
///
/// # Safety
/// `o` must be NULL or a live node options object.
pub(crate) unsafe fn node_options_or_default(o: *const chronica_node_options) -> FfiResult<NodeOptions> {
    if o.is_null() {
        Ok(NodeOptions::default())
    } else {
        // SAFETY: forwarded from the caller.
        Ok(unsafe { object(o, "node_options") }?.opts.clone())
    }
}

/// New node options: every topic, no group, concurrency 1, connected, and
/// the director's retry policy, capacities and overflow policy. NULL only
/// when a panic was caught. Free with `chronica_node_options_free`.
#[no_mangle]
pub extern "C" fn chronica_node_options_new() -> *mut chronica_node_options {
    boundary(|| Box::into_raw(Box::<chronica_node_options>::default()))
}

/// Frees node options. NULL is ignored.
///
/// # Safety
/// `o` must be NULL or a pointer from `chronica_node_options_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_free(o: *mut chronica_node_options) {
    boundary(|| {
        if !o.is_null() {
            // SAFETY: made by Box::into_raw in chronica_node_options_new, freed once.
            drop(unsafe { Box::from_raw(o) });
        }
    })
}

/// Adds a topic pattern (dot-separated; `*` matches one segment, `>` one or
/// more trailing ones). A node with no pattern receives every topic.
///
/// # Safety
/// `o` must be NULL or a live node options object; `pattern` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_add_topic(
    o: *mut chronica_node_options,
    pattern: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            let pattern = string(pattern, "pattern")?;
            Pattern::new(pattern)?;
            opts.topics.push(pattern.to_owned());
            Ok(())
        })
    })
}

/// Sets the consumer group (non-empty): members of a group share each
/// matching event, by key hash when it has a key, else round-robin.
///
/// # Safety
/// `o` must be NULL or a live node options object; `group` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_group(
    o: *mut chronica_node_options,
    group: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            let group = string(group, "group")?;
            if group.is_empty() {
                return Err(Failure::invalid("group must not be empty"));
            }
            opts.group = Some(group.to_owned());
            Ok(())
        })
    })
}

/// Parallel callback calls, 1 to 64 (default 1). Above 1 the callback may
/// run on several threads at once, and order holds per event key.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_concurrency(
    o: *mut chronica_node_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            if n == 0 || n > MAX_CONCURRENCY {
                return Err(Failure::invalid(format!("concurrency must be 1 to {MAX_CONCURRENCY}, got {n}")));
            }
            opts.concurrency = n;
            Ok(())
        })
    })
}

/// Whether the node starts connected (default true). A disconnected node's
/// fiber holds its events (bounded) until `chronica_director_node_connected`.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_connected(
    o: *mut chronica_node_options,
    connected: bool,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            opts.connected = connected;
            Ok(())
        })
    })
}

/// This node's retry policy; the arguments are as for
/// `chronica_options_set_retry` (jitter 0.1 and exponential backoff unless
/// set by their own setters, before or after this call).
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_retry(
    o: *mut chronica_node_options,
    initial_ms: u64,
    max_ms: u64,
    multiplier: f64,
    max_retries: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            let kept = opts.retry.clone().unwrap_or_default();
            opts.retry = Some(retry::policy(initial_ms, max_ms, multiplier, max_retries, &kept)?);
            Ok(())
        })
    })
}

/// This node's exact number of re-attempts of a failed batch before it is
/// dead-lettered: `n` = 0 means none (the first failure dead-letters it),
/// where `chronica_node_options_set_retry`'s `max_retries` 0 means
/// unlimited; as for `chronica_options_set_max_retries`, the later of the
/// two calls sets the limit. Without an earlier
/// `chronica_node_options_set_retry` the node's other retry settings are
/// the defaults (100 ms doubling to 5,000 ms, jitter 0.1), not the
/// director's.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_max_retries(
    o: *mut chronica_node_options,
    n: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            opts.retry.get_or_insert_with(Default::default).max_retries = Some(n);
            Ok(())
        })
    })
}

/// This node's backoff shape, a `CHRONICA_BACKOFF_*` value, checked as
/// `chronica_options_set_retry_backoff` checks it. Without an earlier
/// `chronica_node_options_set_retry` the node's delays are the defaults
/// (100 ms doubling to 5,000 ms, jitter 0.1, unlimited), not the
/// director's.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_retry_backoff(
    o: *mut chronica_node_options,
    backoff: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            let kept = opts.retry.clone().unwrap_or_default();
            opts.retry = Some(retry::with_backoff(&kept, backoff)?);
            Ok(())
        })
    })
}

/// This node's retry jitter, 0.0 to 1.0. Without an earlier
/// `chronica_node_options_set_retry` it applies to the default delays
/// (100 ms doubling to 5,000 ms, unlimited).
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_retry_jitter(
    o: *mut chronica_node_options,
    jitter: f64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            let jitter = retry::jitter(jitter)?;
            opts.retry.get_or_insert_with(Default::default).jitter = jitter;
            Ok(())
        })
    })
}

/// This node's user lane capacity: 1 to `CHRONICA_MAX_CAPACITY` (2^31 - 1),
/// refused here otherwise.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_queue_capacity(
    o: *mut chronica_node_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            opts.queue_capacity = Some(capacity::lane(n, "queue_capacity")?);
            Ok(())
        })
    })
}

/// This node's root lane capacity: 1 to `CHRONICA_MAX_CAPACITY`
/// (2^31 - 1), refused here otherwise.
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_root_capacity(
    o: *mut chronica_node_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            opts.root_capacity = Some(capacity::lane(n, "root_capacity")?);
            Ok(())
        })
    })
}

/// This node's overflow policy (a `chronica_overflow` value).
///
/// # Safety
/// `o` must be NULL or a live node options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_node_options_set_overflow(
    o: *mut chronica_node_options,
    policy: chronica_overflow_t,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_node_options(o, |opts| {
            opts.overflow = Some(retry::overflow(policy)?);
            Ok(())
        })
    })
}
