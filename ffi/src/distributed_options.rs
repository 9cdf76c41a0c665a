//! `chronica_distributed_options`: the settings a `chronica_distributed`
//! is made with (SPEC section 4), and the ack-mode constants.

use std::ffi::c_char;
use std::time::Duration;

use chronica::{AckMode, DistributedConfig};

use crate::boundary::boundary;
use crate::input::{object_mut, string};
use crate::status::{chronica_status, Failure, FfiResult};

/// Ack mode (`chronica_distributed_options_set_ack_mode`): acknowledge a
/// received broker message once the local fibers accepted it (the default).
pub const CHRONICA_ACK_ENQUEUE: u32 = 0;
/// Ack mode: acknowledge a received broker message once every local target
/// finished with it (delivered, dropped or dead-lettered), and never before
/// a message the same subscription received earlier.
pub const CHRONICA_ACK_DELIVERY: u32 = 1;

/// Settings of the distributed layer (opaque). Made by
/// `chronica_distributed_options_new` with the defaults, released by
/// `chronica_distributed_options_free`; copied by `chronica_distributed_new`.
/// Not thread-safe while being set.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Default)]
pub struct chronica_distributed_options {
    pub(crate) cfg: DistributedConfig,
    /// Whether the host named the instance. If not, every
    /// `chronica_distributed_new` draws a fresh default id: one drawn when
    /// the options were made was shared by every instance made from them,
    /// and each took the others' events for its own and dropped them.
    pub(crate) id_set: bool,
}

impl chronica_distributed_options {
    /// The configuration of one new instance.
    pub(crate) fn for_instance(&self) -> DistributedConfig {
        let mut cfg = self.cfg.clone();
        if !self.id_set {
            cfg.instance_id = DistributedConfig::default().instance_id;
        }
        cfg
    }
}

/// Applies `set` to the options behind `o` if the result is valid.
///
/// # Safety
/// `o` must be NULL or live options not used elsewhere meanwhile.
unsafe fn with_options(
    o: *mut chronica_distributed_options,
    set: impl FnOnce(&mut DistributedConfig) -> FfiResult,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let cfg = &mut unsafe { object_mut(o, "options") }?.cfg;
    // Applied to a copy and kept only if the whole configuration is still
    // valid: a refused setting changes nothing.
    let mut next = cfg.clone();
    set(&mut next)?;
    next.validate()?;
    *cfg = next;
    Ok(())
}

/// New distributed options with the defaults: instance id
/// `HOSTNAME-PID-RANDOM` (drawn by each `chronica_distributed_new` made
/// from these options, unless one is set), topic prefix "chronica", `CHRONICA_ACK_ENQUEUE`,
/// dedup window 300,000 ms, connect timeout 10,000 ms, no content type.
/// NULL only when a panic was caught. Free with
/// `chronica_distributed_options_free`.
#[no_mangle]
pub extern "C" fn chronica_distributed_options_new() -> *mut chronica_distributed_options {
    boundary(|| Box::into_raw(Box::<chronica_distributed_options>::default()))
}

/// Frees options made by `chronica_distributed_options_new`. NULL is ignored.
///
/// # Safety
/// `o` must be NULL or a pointer from `chronica_distributed_options_new`
/// not yet freed.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_free(o: *mut chronica_distributed_options) {
    boundary(|| {
        if !o.is_null() {
            // SAFETY: made by Box::into_raw in chronica_distributed_options_new, freed once.
            drop(unsafe { Box::from_raw(o) });
        }
    })
}

/// This process's name on the fabric (1 to 200 of `[A-Za-z0-9._-]`, unique
/// among the instances). Options with an id set give it to every instance
/// made from them; unset, each `chronica_distributed_new` draws its own.
///
/// # Safety
/// `o` must be NULL or live options; `instance_id` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_instance_id(
    o: *mut chronica_distributed_options,
    instance_id: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.instance_id = string(instance_id, "instance_id")?.to_owned();
            Ok(())
        })?;
        // SAFETY: `with_options` checked it non-NULL and live.
        object_mut(o, "options")?.id_set = true;
        Ok(())
    })
}

/// The broker topic the instances share (1 to 200 of `[A-Za-z0-9._-]`, not
/// starting or ending with '.'); dead letters go to `PREFIX.dlq`.
///
/// # Safety
/// `o` must be NULL or live options; `prefix` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_topic_prefix(
    o: *mut chronica_distributed_options,
    prefix: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.topic_prefix = string(prefix, "prefix")?.to_owned();
            Ok(())
        })
    })
}

/// When received messages are acknowledged: `CHRONICA_ACK_ENQUEUE` or
/// `CHRONICA_ACK_DELIVERY`.
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_ack_mode(
    o: *mut chronica_distributed_options,
    mode: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.ack_mode = match mode {
                CHRONICA_ACK_ENQUEUE => AckMode::Enqueue,
                CHRONICA_ACK_DELIVERY => AckMode::Delivery,
                other => {
                    return Err(Failure::invalid(format!("{other} is not an ack mode (CHRONICA_ACK_*)")))
                }
            };
            Ok(())
        })
    })
}

/// How long (milliseconds) an (origin, id) pair is remembered to drop
/// duplicates.
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_dedup_window(
    o: *mut chronica_distributed_options,
    window_ms: u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.dedup_window = Duration::from_millis(window_ms);
            Ok(())
        })
    })
}

/// Longest wait (milliseconds, at least 1) for the broker in
/// `chronica_distributed_new`, and later for the adapter's answer to a
/// subscribe, an acknowledgement or a release (a wait past it is counted in
/// `broker_errors` and the subscription goes on).
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_connect_timeout(
    o: *mut chronica_distributed_options,
    timeout_ms: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            if timeout_ms == 0 {
                return Err(Failure::invalid("connect_timeout must be at least 1 ms"));
            }
            c.connect_timeout = Duration::from_millis(timeout_ms.into());
            Ok(())
        })
    })
}

/// How often (milliseconds, at least 1; default 250) the group watcher
/// looks again at the consumer groups of the nodes registered on the
/// director directly, joining theirs and leaving those with no member
/// here. It acts on every registration and unregistration at once
/// regardless; the period retries a failed join and leaves a group joined
/// ahead of its member (`chronica_distributed_join_group`).
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_group_watch_interval(
    o: *mut chronica_distributed_options,
    interval_ms: u32,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            if interval_ms == 0 {
                return Err(Failure::invalid("group_watch_interval must be at least 1 ms"));
            }
            c.group_watch_interval = Duration::from_millis(interval_ms.into());
            Ok(())
        })
    })
}

/// Replay protection for root events: a root event whose signed timestamp
/// is further than `max_age_ms` milliseconds from this instance's clock, in
/// the past or the future, is rejected and counted in `rejected_stale`. 0
/// (the default) turns the check off. It needs the hosts' clocks in step,
/// and rejects root events that waited longer than the limit (in the
/// outbox while the broker was away, or in the broker while an instance
/// was down): set it above both (docs/DISTRIBUTED.md, "Replayed root
/// events").
///
/// # Safety
/// `o` must be NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_root_max_age(
    o: *mut chronica_distributed_options,
    max_age_ms: u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.root_max_age = (max_age_ms > 0).then(|| Duration::from_millis(max_age_ms));
            Ok(())
        })
    })
}

/// Content type stamped on emits that carry none (NULL: none).
///
/// # Safety
/// `o` must be NULL or live options; `content_type` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_options_set_content_type(
    o: *mut chronica_distributed_options,
    content_type: *const c_char,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        with_options(o, |c| {
            c.content_type = crate::input::optional_string(content_type, "content_type")?.map(str::to_owned);
            Ok(())
        })
    })
}
