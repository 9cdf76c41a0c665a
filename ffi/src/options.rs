//! `chronica_options`: the director's settings, built by setters and copied
//! by `chronica_director_new` (the options may be freed right after).
//!
//! Every setter checks its value at once: a refused value returns a status
//! and leaves the options unchanged.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use chronica::{Director, DirectorBuilder, Overflow, RetryPolicy};

use crate::boundary::boundary;
use crate::capacity;
use crate::hooks::{chronica_dead_letter_fn, chronica_drop_fn, chronica_error_fn, HookSet};
use crate::input::{object, object_mut, string};
use crate::node::UserData;
use crate::retry::{self, chronica_overflow_t};
use crate::status::{chronica_status, FfiResult};

/// Director settings (opaque). Made by `chronica_options_new` with the
/// SPEC's defaults, released by `chronica_options_free`. Not thread-safe:
/// do not share one options object between threads while setting it.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone)]
pub struct chronica_options {
    queue_capacity: usize,
    root_capacity: usize,
    batch_size: usize,
    overflow: Overflow,
    block_timeout: Duration,
    retry: RetryPolicy,
    trust_token: String,
    membership_events: bool,
    hooks: HookSet,
}

impl Default for chronica_options {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            root_capacity: 1_024,
            batch_size: 64,
            overflow: Overflow::DropOldest,
            block_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            trust_token: String::new(),
            membership_events: false,
            hooks: HookSet::default(),
        }
    }
}

impl chronica_options {
    /// Starts a director with these settings.
    pub(crate) fn build(&self) -> FfiResult<Director> {
        let builder = DirectorBuilder::default()
            .queue_capacity(self.queue_capacity)
            .root_capacity(self.root_capacity)
            .batch_size(self.batch_size)
            .overflow(self.overflow)
            .block_timeout(self.block_timeout)
            .retry(self.retry.clone())
            .trust_token(self.trust_token.clone())
            .membership_events(self.membership_events);
        Ok(self.hooks.apply(builder).build()?)
    }
}

/// Applies `set` to the options behind `o`.
///
/// # Safety
/// `o` must be NULL or a live options object not used elsewhere meanwhile.
unsafe fn with_options(
    o: *mut chronica_options,
    set: impl FnOnce(&mut chronica_options) -> FfiResult,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    set(unsafe { object_mut(o, "options") }?)
}

/// New options with the defaults: queue capacity 65,536, root capacity
/// 1,024, batch size 64, `CHRONICA_OVERFLOW_DROP_OLDEST`, block timeout
/// 1,000 ms, retry 100 ms doubling to 5,000 ms with jitter 0.1 and no limit,
/// empty trust token, no membership events, no hooks. NULL only when a
/// panic was caught. Free with `chronica_options_free`.
#[no_mangle]
pub extern "C" fn chronica_options_new() -> *mut chronica_options {
    boundary(|| Box::into_raw(Box::<chronica_options>::default()))
}

/// Frees options made by `chronica_options_new`. NULL is ignored.
///
/// # Safety
/// `o` must be NULL or a pointer from `chronica_options_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_free(o: *mut chronica_options) {
    boundary(|| {
        if !o.is_null() {
            // SAFETY: made by Box::into_raw in chronica_options_new, freed once.
            drop(unsafe { Box::from_raw(o) });
        }
    })
}

/// Capacity of each node's user lane, in events: 1 to
/// `CHRONICA_MAX_CAPACITY` (2^31 - 1); a value outside is refused here with
/// `CHRONICA_ERR_INVALID_ARGUMENT`, leaving the options as they were.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_queue_capacity(
    o: *mut chronica_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.queue_capacity = capacity::lane(n, "queue_capacity")?;
            Ok(())
        })
    })
}

/// Capacity of each node's root (control) lane, in events: 1 to
/// `CHRONICA_MAX_CAPACITY` (2^31 - 1); a value outside is refused here with
/// `CHRONICA_ERR_INVALID_ARGUMENT`, leaving the options as they were.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_root_capacity(
    o: *mut chronica_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.root_capacity = capacity::lane(n, "root_capacity")?;
            Ok(())
        })
    })
}

/// Most events handed to one callback call (at least 1).
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_batch_size(
    o: *mut chronica_options,
    n: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.batch_size = retry::nonzero(n, "batch_size")?;
            Ok(())
        })
    })
}

/// What a full user lane does (a `chronica_overflow` value).
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_overflow(
    o: *mut chronica_options,
    policy: chronica_overflow_t,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.overflow = retry::overflow(policy)?;
            Ok(())
        })
    })
}

/// How long an emitter waits under `CHRONICA_OVERFLOW_BLOCK` before
/// `CHRONICA_ERR_QUEUE_FULL` (0: fail at once when full).
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_block_timeout(
    o: *mut chronica_options,
    ms: u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.block_timeout = Duration::from_millis(ms);
            Ok(())
        })
    })
}

/// The default retry policy of every node: first retry after `initial_ms`
/// (at least 1: every delay is a multiple of it, and 0 would call a failing
/// node in a busy loop), each next delay multiplied by `multiplier`
/// (finite, >= 1.0) up to `max_ms` (>= `initial_ms`); after `max_retries`
/// re-attempts (0 = unlimited, as the SPEC fixes it) the batch goes to the
/// dead-letter hook. Here 0 cannot ask for no re-attempt at all:
/// `chronica_options_set_max_retries`, called after this (which replaces
/// the limit), sets an exact limit where 0 means none. The jitter and the
/// backoff shape (`chronica_options_set_retry_backoff`) are kept; the
/// multiplier and the cap are checked only where the shape uses them, so
/// set the shape first when the delays suit only it. A refused value
/// leaves the options as they were.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_retry(
    o: *mut chronica_options,
    initial_ms: u64,
    max_ms: u64,
    multiplier: f64,
    max_retries: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.retry = retry::policy(initial_ms, max_ms, multiplier, max_retries, &o.retry)?;
            Ok(())
        })
    })
}

/// The exact number of re-attempts of a failed batch before it goes to the
/// dead-letter hook: `n` = 0 means none, so the first failure dead-letters
/// the batch. Note the flip: in `chronica_options_set_retry`'s
/// `max_retries` 0 means unlimited, and that setter, called after this one,
/// replaces the limit (a later call of this one replaces its limit in turn).
/// Every value is taken.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_max_retries(
    o: *mut chronica_options,
    n: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.retry.max_retries = Some(n);
            Ok(())
        })
    })
}

/// The shape of the default retry delays, a `CHRONICA_BACKOFF_*` value:
/// exponential (the default; `initial_ms * multiplier^k` before re-attempt
/// `k`, capped at `max_ms`), linear (`initial_ms * (k + 1)`, capped) or
/// constant (`initial_ms` every time). The delays, limit and jitter set by
/// the other retry setters are kept. An unknown value, or a shape the
/// delays set before do not suit (exponential with a multiplier below 1,
/// linear or exponential with `max_ms` < `initial_ms`), is refused with
/// `CHRONICA_ERR_INVALID_ARGUMENT`, leaving the options as they were.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_retry_backoff(
    o: *mut chronica_options,
    backoff: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.retry = retry::with_backoff(&o.retry, backoff)?;
            Ok(())
        })
    })
}

/// The relative random spread of each retry delay, 0.0 to 1.0 (default 0.1).
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_retry_jitter(
    o: *mut chronica_options,
    jitter: f64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.retry.jitter = retry::jitter(jitter)?;
            Ok(())
        })
    })
}

/// The token every root event carries (NUL-terminated UTF-8, copied).
///
/// # Safety
/// `o` must be NULL or a live options object; `token` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_trust_token(
    o: *mut chronica_options,
    token: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.trust_token = string(token, "token")?.to_owned();
            Ok(())
        })
    })
}

/// Send `chronica.node_joined` / `chronica.node_left` root events to the
/// other nodes when a node joins or leaves (default off); each node
/// receives them in the order of the membership changes.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_membership_events(
    o: *mut chronica_options,
    on: bool,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.membership_events = on;
            Ok(())
        })
    })
}

/// Sets (or with `hook` NULL, removes) the drop hook. `user_data` is
/// borrowed: it must stay valid until the director is freed.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_drop_hook(
    o: *mut chronica_options,
    hook: chronica_drop_fn,
    user_data: *mut c_void,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.hooks.on_drop = hook;
            o.hooks.drop_data = UserData(user_data);
            Ok(())
        })
    })
}

/// Sets (or with `hook` NULL, removes) the dead-letter hook. `user_data` is
/// borrowed: it must stay valid until the director is freed.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_dead_letter_hook(
    o: *mut chronica_options,
    hook: chronica_dead_letter_fn,
    user_data: *mut c_void,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.hooks.on_dead_letter = hook;
            o.hooks.dead_letter_data = UserData(user_data);
            Ok(())
        })
    })
}

/// Sets (or with `hook` NULL, removes) the error hook, called for every
/// failed callback call. `user_data` is borrowed: it must stay valid until
/// the director is freed.
///
/// # Safety
/// `o` must be NULL or a live options object.
#[no_mangle]
pub unsafe extern "C" fn chronica_options_set_error_hook(
    o: *mut chronica_options,
    hook: chronica_error_fn,
    user_data: *mut c_void,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |o| {
            o.hooks.on_error = hook;
            o.hooks.error_data = UserData(user_data);
            Ok(())
        })
    })
}

/// The options behind a const pointer, or the defaults for NULL.
///
/// # Safety
/// `o` must be NULL or a live options object.
pub(crate) unsafe fn options_or_default(o: *const chronica_options) -> FfiResult<chronica_options> {
    if o.is_null() {
        Ok(chronica_options::default())
    } else {
        // SAFETY: forwarded from the caller.
        Ok(unsafe { object(o, "options") }?.clone())
    }
}
