//! `chronica_distributed`: a director's membership in a fabric of directors
//! in other processes, through a message broker (SPEC section 4).
//!
//! The handle wraps a director the host made with `chronica_director_new`
//! and joins the fabric through the broker a URL names. Emits through it
//! reach the matching nodes of every instance; unicast reaches a node
//! wherever it lives; root events are signed with the director's trust
//! token (every instance must share it).

use std::ffi::{c_char, c_void};
use std::time::Duration;

use chronica::mq::MqError;
use chronica::{AckMode, Bytes, Distributed, DistributedConfig, DistributedStats, Message};

use crate::boundary::boundary;
use crate::director::chronica_director;
use crate::emit::Wait;
use crate::input::{bytes, check_out, object, object_mut, optional_uid, string, uid, write_out};
use crate::node::{chronica_free_fn, chronica_send_fn, hand_over, CNode};
use crate::node_options::{chronica_node_options, node_options_or_default};
use crate::out_struct::{checked_size, field, write_fields, OutStruct};
use crate::status::{chronica_status, Failure, FfiResult};

/// How long `chronica_distributed_free` publishes what is still buffered.
const FREE_GRACE: Duration = Duration::from_secs(1);

impl From<MqError> for Failure {
    fn from(e: MqError) -> Self {
        use chronica_status::*;
        let text = e.to_string();
        match e {
            MqError::Engine(e) => Failure::from(e),
            MqError::Closed => Failure::new(CHRONICA_ERR_CLOSED, text),
            MqError::Config(_) | MqError::Unsupported(_) => Failure::new(CHRONICA_ERR_INVALID_ARGUMENT, text),
            _ => Failure::new(CHRONICA_ERR_ADAPTER, text),
        }
    }
}

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
/// `HOSTNAME-PID-RANDOM`, topic prefix "chronica", `CHRONICA_ACK_ENQUEUE`,
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
/// among the instances).
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
        let id = string(instance_id, "instance_id")?;
        with_options(o, |c| {
            c.instance_id = id.to_owned();
            Ok(())
        })
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
        let prefix = string(prefix, "prefix")?;
        with_options(o, |c| {
            c.topic_prefix = prefix.to_owned();
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
        let mode = match mode {
            CHRONICA_ACK_ENQUEUE => AckMode::Enqueue,
            CHRONICA_ACK_DELIVERY => AckMode::Delivery,
            other => return Err(Failure::invalid(format!("{other} is not an ack mode (CHRONICA_ACK_*)"))),
        };
        with_options(o, |c| {
            c.ack_mode = mode;
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
/// `chronica_distributed_new`.
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
        if timeout_ms == 0 {
            return Err(Failure::invalid("connect_timeout must be at least 1 ms"));
        }
        with_options(o, |c| {
            c.connect_timeout = Duration::from_millis(timeout_ms.into());
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
        let ct = crate::input::optional_string(content_type, "content_type")?;
        with_options(o, |c| {
            c.content_type = ct.map(str::to_owned);
            Ok(())
        })
    })
}

/// A snapshot of the distributed layer's counters.
///
/// Set `struct_size` to `sizeof(chronica_distributed_stats)` before passing
/// one to `chronica_distributed_get_stats` (`chronica_distributed_stats s =
/// {.struct_size = sizeof s};`). The struct grows by appending counters;
/// the library writes only those that fit in `struct_size`, so a program
/// built against an older header keeps working with a newer library. The
/// first version ends after `resubscribes`
/// (`offsetof(chronica_distributed_stats, group_sender_only)` is the
/// smallest size accepted); a smaller one, 0 included, is
/// `CHRONICA_ERR_INVALID_ARGUMENT` with nothing written. `struct_size` is
/// never written; fields past it are left as they were.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct chronica_distributed_stats {
    /// Set by the caller: `sizeof(chronica_distributed_stats)`.
    pub struct_size: usize,
    /// Events handed to the broker successfully.
    pub published: u64,
    /// Publish attempts that failed and were retried (broker away).
    pub publish_retries: u64,
    /// Events waiting in the outbox to be published.
    pub buffered: u64,
    /// Events the full outbox dropped (oldest first) while the broker was away.
    pub buffer_dropped: u64,
    /// Broker messages received, on every subscription.
    pub received: u64,
    /// Received events handed to at least one local node.
    pub injected: u64,
    /// Received events already seen within the dedup window.
    pub duplicates: u64,
    /// Plain messages from foreign producers, accepted as events.
    pub foreign: u64,
    /// Malformed messages received.
    pub malformed: u64,
    /// Malformed received messages, and events the broker refused for good
    /// (`publish_rejected`), published to the dead-letter topic.
    pub dead_lettered: u64,
    /// Root events refused for a missing signature.
    pub rejected_unsigned: u64,
    /// Root events refused for a wrong signature.
    pub rejected_forged: u64,
    /// Errors reported by the broker (subscriptions, acks, and an adapter
    /// `close` that failed or outlasted the layer's 5 s).
    pub broker_errors: u64,
    /// Subscriptions re-established after their stream ended. The last
    /// field of the first version.
    pub resubscribes: u64,
    /// Version 2. Group shares that came to this instance when the group's only
    /// member here that matched was the event's own source: sender
    /// exclusion left nobody, so the share was acknowledged undelivered
    /// (a broker gives a share to an instance, and cannot be told to skip
    /// the sender's).
    pub group_sender_only: u64,
    /// Version 3. Events the broker refused for good (a publish answered
    /// `CHRONICA_ERR_INVALID_ARGUMENT`, or a built-in adapter's broker
    /// refused them: too large, say): not retried, so later events still
    /// go out; each is dead-lettered. Every event queued for the broker is
    /// counted once in `published`, `buffered`, `buffer_dropped` or here.
    pub publish_rejected: u64,
    /// Version 4. Unicast messages (`chronica_distributed_emit_to`, `_emit_root` with
    /// a target, across the broker) received for a target not registered
    /// on this instance. Every instance reads every unicast, the sender's
    /// own included, and only the one that has the target delivers it;
    /// each of the others counts it here. A unicast counted here by every
    /// instance of the fabric reached nobody: no instance had its target.
    pub unicast_not_here: u64,
    /// Version 5. Genuine root events rejected because their signed
    /// timestamp is further than the root max age
    /// (`chronica_distributed_options_set_root_max_age`) from this
    /// instance's clock: a replay, or clocks apart.
    pub rejected_stale: u64,
}

impl From<&DistributedStats> for chronica_distributed_stats {
    fn from(s: &DistributedStats) -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            published: s.published,
            publish_retries: s.publish_retries,
            buffered: s.buffered,
            buffer_dropped: s.buffer_dropped,
            received: s.received,
            injected: s.injected,
            duplicates: s.duplicates,
            foreign: s.foreign,
            malformed: s.malformed,
            dead_lettered: s.dead_lettered,
            rejected_unsigned: s.rejected_unsigned,
            rejected_forged: s.rejected_forged,
            broker_errors: s.broker_errors,
            resubscribes: s.resubscribes,
            group_sender_only: s.group_sender_only,
            publish_rejected: s.publish_rejected,
            unicast_not_here: s.unicast_not_here,
            rejected_stale: s.rejected_stale,
        }
    }
}

impl OutStruct for chronica_distributed_stats {
    const NAME: &'static str = "chronica_distributed_stats";
    const FIRST_VERSION_SIZE: usize = std::mem::offset_of!(Self, resubscribes) + std::mem::size_of::<u64>();
    const FIELDS: &'static [(usize, usize)] = &[
        field!(Self, published: u64),
        field!(Self, publish_retries: u64),
        field!(Self, buffered: u64),
        field!(Self, buffer_dropped: u64),
        field!(Self, received: u64),
        field!(Self, injected: u64),
        field!(Self, duplicates: u64),
        field!(Self, foreign: u64),
        field!(Self, malformed: u64),
        field!(Self, dead_lettered: u64),
        field!(Self, rejected_unsigned: u64),
        field!(Self, rejected_forged: u64),
        field!(Self, broker_errors: u64),
        field!(Self, resubscribes: u64),
        field!(Self, group_sender_only: u64),
        field!(Self, publish_rejected: u64),
        field!(Self, unicast_not_here: u64),
        field!(Self, rejected_stale: u64),
    ];
}

/// A director's membership in a fabric (opaque). Made by
/// `chronica_distributed_new`, released by `chronica_distributed_free`
/// (which must not race with other calls on it). Thread-safe otherwise, and
/// callable from inside node callbacks. It does not own the director: close
/// and free the director yourself, after this handle.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_distributed {
    pub(crate) fabric: Distributed,
}

/// Joins the fabric through the broker `url` names, with `director` serving
/// the local nodes: `memory://NAME` (in-process hub shared by every handle of
/// that name), `kafka://HOST:PORT[,HOST:PORT]`, `nats://HOST:PORT`,
/// `redis://HOST:PORT[/DB]`. `options` NULL: the defaults (copied).
/// Blocks until the broker answered, at most the connect timeout:
/// `CHRONICA_ERR_ADAPTER` when it did not, `CHRONICA_ERR_INVALID_ARGUMENT`
/// for a malformed URL, an adapter this library was built without, or a
/// director with an empty trust token (it signs root events on the wire;
/// every instance of the fabric needs the same one).
///
/// # Safety
/// `director` must be NULL or a live director; `url` NULL or NUL-terminated;
/// `options` NULL or live options; `distributed_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_new(
    director: *mut chronica_director,
    url: *const c_char,
    options: *const chronica_distributed_options,
    distributed_out: *mut *mut chronica_distributed,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let d = unsafe { object(director, "director") }?;
        // SAFETY: forwarded from the caller.
        let url = unsafe { string(url, "url") }?;
        check_out(distributed_out, "distributed_out")?;
        let cfg = if options.is_null() {
            DistributedConfig::default()
        } else {
            // SAFETY: non-NULL, live per the caller.
            unsafe { object(options, "options") }?.cfg.clone()
        };
        let fabric = Distributed::connect(&d.director, url, cfg)?;
        let handle = Box::into_raw(Box::new(chronica_distributed { fabric }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(distributed_out, handle) };
        Ok(())
    })
}

/// Leaves the fabric if still joined (publishing what is buffered for up
/// to 1 s) and frees the handle. The director stays open. NULL is ignored.
/// A C adapter's callback still running after that second is not waited
/// for: its `close` and `free_user_data` then run on a library thread once
/// it returns.
/// From inside a C adapter's callback (`chronica_mq_adapter`) it would wait
/// for that very callback: the call is refused, the handle is left
/// untouched, and the thread's last error is set to
/// `CHRONICA_ERR_REENTRANT`.
///
/// # Safety
/// `distributed` must be NULL or a live handle, not used by another thread
/// during or after this call.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_free(distributed: *mut chronica_distributed) {
    boundary(|| {
        // SAFETY: NULL or live per the caller.
        let Some(live) = (unsafe { distributed.as_ref() }) else { return };
        if chronica::mq::in_host_call() || crate::reentry::inside(live) {
            let f = reentrant_close("chronica_distributed_free");
            return crate::status::set_last_error(f.status, &f.message);
        }
        // The adapter's free_user_data may run on this thread: a free of
        // this handle from there is refused (it would free it twice).
        let _scope = crate::reentry::CallScope::enter(live);
        // SAFETY: made by Box::into_raw in chronica_distributed_new, freed once.
        let h = unsafe { Box::from_raw(distributed) };
        let _ = h.fabric.close(FREE_GRACE);
        drop(h);
    })
}

/// Publishes what is buffered for up to `timeout_ms`, stops receiving and
/// releases the broker client. Writes the number of emits never published
/// to `*unpublished_out` when it is not NULL. The director stays open.
/// The adapter's own close is given up to 5 s; if it fails or takes longer,
/// the fabric is closed all the same and `broker_errors` counts it.
/// Afterwards every call but stats and free returns `CHRONICA_ERR_CLOSED`.
/// `CHRONICA_ERR_REENTRANT`, changing nothing, from inside a C adapter's
/// callback (it would wait for that very callback).
///
/// # Safety
/// `distributed` must be NULL or a live handle; `unpublished_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_close(
    distributed: *mut chronica_distributed,
    timeout_ms: u32,
    unpublished_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        if chronica::mq::in_host_call() || crate::reentry::inside(h) {
            return Err(reentrant_close("chronica_distributed_close"));
        }
        let _scope = crate::reentry::CallScope::enter(h);
        let left = h.fabric.close(Duration::from_millis(timeout_ms.into()))?;
        if !unpublished_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(unpublished_out, left) };
        }
        Ok(())
    })
}

/// Registers node `uid` on the director exactly as
/// `chronica_director_register_with` does (same ownership of `user_data`);
/// when `options` name a consumer group, also joins that group on the
/// broker before returning, so the group's share of every instance's emits
/// reaches it. Should the node be registered but the group not joined
/// (`CHRONICA_ERR_ADAPTER`), the node stays registered and the director
/// owns `user_data`. After `chronica_distributed_close`,
/// `CHRONICA_ERR_CLOSED`: nothing is registered and `user_data` stays
/// with the caller.
///
/// # Safety
/// As for `chronica_director_register_with`, with `distributed` NULL or a
/// live handle.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_register_with(
    distributed: *mut chronica_distributed,
    uid: *const c_char,
    options: *const chronica_node_options,
    send: chronica_send_fn,
    user_data: *mut c_void,
    free_user_data: chronica_free_fn,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        // SAFETY: forwarded from the caller.
        let uid = unsafe { crate::input::uid(uid, "uid") }?;
        let send = send.ok_or_else(|| Failure::null("send"))?;
        // SAFETY: forwarded from the caller.
        let opts = unsafe { node_options_or_default(options) }?;
        let node = CNode::new(send, user_data, free_user_data);
        // `Err`: the director refused it, or the fabric was closed before it
        // registered anything: user_data stays with the caller.
        match hand_over(node, |node| h.fabric.register_shared(uid, node, opts))? {
            Ok(()) => Ok(()),
            // Registered, but the broker group could not be joined: the
            // director owns the node now (its destructor runs at unregister),
            // which CHRONICA_ERR_ADAPTER alone says, whatever the cause.
            Err(e) => Err(Failure::new(chronica_status::CHRONICA_ERR_ADAPTER, e.to_string())),
        }
    })
}

/// Builds a message from C arguments.
///
/// # Safety
/// Pointers as documented on the exports.
unsafe fn message<'a>(
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> FfiResult<Message<'a>> {
    // SAFETY: forwarded from the caller.
    let (source, topic, payload) = unsafe {
        (optional_uid(source, "source")?, string(topic, "topic")?, bytes(payload, len, "payload")?)
    };
    let mut msg = Message::new(topic, Bytes::copy_from_slice(payload));
    if let Some(s) = source {
        msg = msg.source(s);
    }
    Ok(msg)
}

/// Writes `id` to `id_out` when it is not NULL.
///
/// # Safety
/// `id_out` must be NULL or writable.
unsafe fn id_to(id_out: *mut u64, id: u64) {
    if !id_out.is_null() {
        // SAFETY: non-NULL and writable per the caller.
        unsafe { write_out(id_out, id) };
    }
}

/// The body of `chronica_distributed_emit` and `_try_emit`.
///
/// # Safety
/// As for `chronica_distributed_emit`.
unsafe fn broadcast(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
    wait: Wait,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(distributed, "distributed") }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, payload, len) }?;
    let id = match wait {
        Wait::Yes => h.fabric.emit(msg)?,
        Wait::No => h.fabric.try_emit(msg)?,
    };
    // SAFETY: forwarded from the caller.
    unsafe { id_to(id_out, id) };
    Ok(())
}

/// The body of `chronica_distributed_emit_to` and `_try_emit_to`.
///
/// # Safety
/// As for `chronica_distributed_emit_to`.
#[allow(clippy::too_many_arguments)]
unsafe fn unicast(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
    wait: Wait,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(distributed, "distributed") }?;
    // SAFETY: forwarded from the caller.
    let target = unsafe { uid(target, "target") }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, payload, len) }?;
    let id = match wait {
        Wait::Yes => h.fabric.emit_to(target, msg)?,
        Wait::No => h.fabric.try_emit_to(target, msg)?,
    };
    // SAFETY: forwarded from the caller.
    unsafe { id_to(id_out, id) };
    Ok(())
}

/// Broadcasts an event on `topic` with `len` bytes of `payload` to every
/// matching node of every instance except `source` (nullable: a local uid);
/// one member per consumer group across all instances. Writes the event's
/// id on the wire (unique per instance, increasing) to `*id_out` when it is
/// not NULL. Under `CHRONICA_OVERFLOW_BLOCK` a full local lane makes it
/// wait up to the block timeout (`chronica_distributed_try_emit` never
/// waits).
///
/// # Safety
/// `distributed` must be NULL or a live handle; strings NULL or
/// NUL-terminated; `payload` NULL or `len` readable bytes; `id_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_emit(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { broadcast(distributed, source, topic, payload, len, id_out, Wait::Yes) })
}

/// `chronica_distributed_emit` that never waits: where a local target under
/// `CHRONICA_OVERFLOW_BLOCK` is full it returns `CHRONICA_ERR_QUEUE_FULL`
/// at once, and the event reaches no node and is not published.
///
/// # Safety
/// As for `chronica_distributed_emit`.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_try_emit(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { broadcast(distributed, source, topic, payload, len, id_out, Wait::No) })
}

/// Sends to node `target` of whichever instance owns it: at once when it is
/// local, else through the broker (an unknown uid is silently ignored by
/// every instance). Writes the local event id or the wire id to `*id_out`
/// when it is not NULL.
///
/// # Safety
/// As for `chronica_distributed_emit`; `target` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_emit_to(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { unicast(distributed, source, target, topic, payload, len, id_out, Wait::Yes) })
}

/// `chronica_distributed_emit_to` that never waits, as
/// `chronica_distributed_try_emit` (only a local target can be full).
///
/// # Safety
/// As for `chronica_distributed_emit_to`.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_try_emit_to(
    distributed: *mut chronica_distributed,
    source: *const c_char,
    target: *const c_char,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { unicast(distributed, source, target, topic, payload, len, id_out, Wait::No) })
}

/// Sends a root (control) event `action` to every node of every instance,
/// or to node `target` (nullable) wherever it lives; on the wire it is
/// signed with the director's trust token. Writes its id to `*id_out` when
/// it is not NULL.
///
/// # Safety
/// `distributed` must be NULL or a live handle; strings NULL or
/// NUL-terminated; `payload` NULL or `len` readable bytes; `id_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_emit_root(
    distributed: *mut chronica_distributed,
    target: *const c_char,
    action: *const c_char,
    payload: *const u8,
    len: usize,
    id_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        // SAFETY: forwarded from the caller.
        let (target, action, payload) = unsafe {
            (optional_uid(target, "target")?, string(action, "action")?, bytes(payload, len, "payload")?)
        };
        let payload = Bytes::copy_from_slice(payload);
        let id = match target {
            Some(t) => h.fabric.emit_root_to(t, action, payload)?,
            None => h.fabric.emit_root(action, payload)?,
        };
        // SAFETY: forwarded from the caller.
        unsafe { id_to(id_out, id) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` until every emit so far reached the broker.
/// Writes whether none is left to `*flushed_out` when it is not NULL.
///
/// # Safety
/// `distributed` must be NULL or a live handle; `flushed_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_flush(
    distributed: *mut chronica_distributed,
    timeout_ms: u32,
    flushed_out: *mut bool,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        let flushed = h.fabric.flush(Duration::from_millis(timeout_ms.into()));
        if !flushed_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(flushed_out, flushed) };
        }
        Ok(())
    })
}

/// Writes a snapshot of the layer's counters to `*stats_out`, as many as
/// its `struct_size` (set by the caller) has room for; see
/// `chronica_distributed_stats`. Works after close (the final counters).
///
/// # Safety
/// `distributed` must be NULL or a live handle; `stats_out` NULL or
/// `stats_out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_get_stats(
    distributed: *mut chronica_distributed,
    stats_out: *mut chronica_distributed_stats,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        // SAFETY: forwarded from the caller.
        let size = unsafe { checked_size(stats_out, "stats_out") }?;
        let stats = chronica_distributed_stats::from(&h.fabric.stats());
        // SAFETY: `size` writable bytes per the caller.
        unsafe { write_fields(stats_out, &stats, size) };
        Ok(())
    })
}

fn reentrant_close(what: &str) -> Failure {
    Failure::new(
        chronica_status::CHRONICA_ERR_REENTRANT,
        format!("{what} from inside a C adapter callback is refused (it would wait for that callback)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::chronica_status::*;

    #[test]
    fn every_stats_field_is_written() {
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            n
        };
        crate::out_struct::tests::check(chronica_distributed_stats {
            struct_size: 1,
            published: next(),
            publish_retries: next(),
            buffered: next(),
            buffer_dropped: next(),
            received: next(),
            injected: next(),
            duplicates: next(),
            foreign: next(),
            malformed: next(),
            dead_lettered: next(),
            rejected_unsigned: next(),
            rejected_forged: next(),
            broker_errors: next(),
            resubscribes: next(),
            group_sender_only: next(),
            publish_rejected: next(),
            unicast_not_here: next(),
            rejected_stale: next(),
        });
    }

    #[test]
    fn broker_errors_map_to_statuses() {
        assert_eq!(Failure::from(MqError::Config("x".into())).status, CHRONICA_ERR_INVALID_ARGUMENT);
        assert_eq!(Failure::from(MqError::Unsupported("x".into())).status, CHRONICA_ERR_INVALID_ARGUMENT);
        assert_eq!(Failure::from(MqError::Connect("x".into())).status, CHRONICA_ERR_ADAPTER);
        assert_eq!(Failure::from(MqError::Broker("x".into())).status, CHRONICA_ERR_ADAPTER);
        assert_eq!(Failure::from(MqError::Closed).status, CHRONICA_ERR_CLOSED);
        assert_eq!(
            Failure::from(MqError::Engine(chronica::Error::UnknownNode("n".into()))).status,
            CHRONICA_ERR_UNKNOWN_NODE
        );
    }
}
