//! `chronica_distributed`: a director's membership in a fabric of directors
//! in other processes, through a message broker (SPEC section 4).
//!
//! The handle wraps a director the host made with `chronica_director_new`
//! and joins the fabric through the broker a URL names. Emits through it
//! reach the matching nodes of every instance; unicast reaches a node
//! wherever it lives; root events are signed with the director's trust
//! token (every instance must share it).

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::MqError;
use chronica::{Distributed, DistributedConfig, Message};

use crate::boundary::boundary;
use crate::director::chronica_director;
use crate::distributed_options::chronica_distributed_options;
use crate::emit::Wait;
use crate::event_id::record_to;
use crate::input::{bytes, check_out, object, optional_uid, string, uid, write_out};
use crate::node::{chronica_free_fn, chronica_send_fn, hand_over, CNode};
use crate::node_options::{chronica_node_options, node_options_or_default};
use crate::parked::Parked;
use crate::reentry::CallScope;
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

/// A director's membership in a fabric (opaque). Made by
/// `chronica_distributed_new`, released by `chronica_distributed_free`
/// (which must not race with other calls on it). Thread-safe otherwise, and
/// callable from inside node callbacks. It does not own the director: close
/// and free the director yourself, after this handle.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_distributed {
    pub(crate) fabric: Distributed,
    /// Its director handle's parked destructors, for the nodes it registers.
    pub(crate) parked: Arc<Parked>,
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
            unsafe { object(options, "options") }?.for_instance()
        };
        let fabric = Distributed::connect(&d.director, url, cfg)?;
        let handle = Box::into_raw(Box::new(chronica_distributed { fabric, parked: d.parked.clone() }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(distributed_out, handle) };
        Ok(())
    })
}

/// Leaves the fabric if still joined (publishing what is buffered for up
/// to 1 s) and frees the handle. The director stays open. NULL is ignored.
/// With an adapter whose callbacks hang, it returns within about 8 s: 1 s
/// to publish, up to 1 s for emits in progress, up to 5 s for the
/// adapter's close (which waits for its running callbacks first), and 1 s
/// for a publish in progress. A C adapter's callback still running after
/// that is not waited for: its `close` and `free_user_data` then run on a
/// library thread once it returns.
/// From inside a C adapter's callback (`chronica_mq_adapter`) it would wait
/// for that very callback, and from a callback or hook running inside a
/// call of this handle (a drop hook on the thread of an emit through it)
/// it would free the handle under that call: either way the call is
/// refused, the handle is left untouched, and the thread's last error is
/// set to `CHRONICA_ERR_REENTRANT`.
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
        let _scope = CallScope::enter(live);
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
/// Afterwards every call but stats and free returns `CHRONICA_ERR_CLOSED`
/// once its arguments pass the library's checks (which come first).
/// `CHRONICA_ERR_REENTRANT`, changing nothing, from inside a C adapter's
/// callback (it would wait for that very callback) and from a callback or
/// hook running inside a call of this handle (that call would go on with
/// the handle closed under it).
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
        let _scope = CallScope::enter(h);
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
        let (h, _scope) = unsafe { enter(distributed) }?;
        // SAFETY: forwarded from the caller.
        let uid = unsafe { crate::input::uid(uid, "uid") }?;
        let send = send.ok_or_else(|| Failure::null("send"))?;
        // SAFETY: forwarded from the caller.
        let opts = unsafe { node_options_or_default(options) }?;
        let node = CNode::new(send, user_data, free_user_data, h.parked.clone());
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

/// Checks the handle and marks the thread as inside a call of it, as
/// `director::enter` does: a hook this call runs (a drop hook on the
/// emitting thread, say) that closes or frees the handle is refused, rather
/// than freeing it under the call.
///
/// # Safety
/// `d` must be NULL or a live handle.
unsafe fn enter<'a>(d: *const chronica_distributed) -> FfiResult<(&'a chronica_distributed, CallScope)> {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(d, "distributed") }?;
    Ok((h, CallScope::enter(h)))
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
    let mut msg = Message::new(topic, crate::slab::owned(payload)?);
    if let Some(s) = source {
        msg = msg.source(s);
    }
    Ok(msg)
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
    let (h, _scope) = unsafe { enter(distributed) }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, payload, len) }?;
    let id = match wait {
        Wait::Yes => h.fabric.emit(msg)?,
        Wait::No => h.fabric.try_emit(msg)?,
    };
    // SAFETY: forwarded from the caller.
    unsafe { record_to(id_out, id) };
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
    let (h, _scope) = unsafe { enter(distributed) }?;
    // SAFETY: forwarded from the caller.
    let target = unsafe { uid(target, "target") }?;
    // SAFETY: forwarded from the caller.
    let msg = unsafe { message(source, topic, payload, len) }?;
    let id = match wait {
        Wait::Yes => h.fabric.emit_to(target, msg)?,
        Wait::No => h.fabric.try_emit_to(target, msg)?,
    };
    // SAFETY: forwarded from the caller.
    unsafe { record_to(id_out, id) };
    Ok(())
}

/// Broadcasts an event on `topic` with `len` bytes of `payload` to every
/// matching node of every instance except `source` (nullable: a local uid);
/// one member per consumer group across all instances. Writes the event's
/// id on the wire (unique per instance, increasing) to `*id_out` when it is
/// not NULL; `chronica_last_event_id` gives it too, for every emit of the
/// handle. Under `CHRONICA_OVERFLOW_BLOCK` a full local lane makes it
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
        let (h, _scope) = unsafe { enter(distributed) }?;
        // SAFETY: forwarded from the caller.
        let (target, action, payload) = unsafe {
            (optional_uid(target, "target")?, string(action, "action")?, bytes(payload, len, "payload")?)
        };
        let payload = crate::slab::owned(payload)?;
        let id = match target {
            Some(t) => h.fabric.emit_root_to(t, action, payload)?,
            None => h.fabric.emit_root(action, payload)?,
        };
        // SAFETY: forwarded from the caller.
        unsafe { record_to(id_out, id) };
        Ok(())
    })
}

/// Joins consumer group `group` (NUL-terminated, not empty) on the broker
/// now, as `chronica_distributed_register_with` does for a grouped node:
/// returns once this instance's subscription is in place. Idempotent. A
/// group with no member here is left again at the group watcher's next
/// round (`chronica_distributed_options_set_group_watch_interval`), or as
/// soon as it reads a share of the group's traffic, which it hands back:
/// register the member first. `CHRONICA_ERR_INVALID_ARGUMENT` for an empty
/// or invalid `group` (nothing joined), `CHRONICA_ERR_ADAPTER` when the
/// broker refuses, `CHRONICA_ERR_CLOSED` after close.
///
/// # Safety
/// `distributed` must be NULL or a live handle; `group` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_join_group(
    distributed: *mut chronica_distributed,
    group: *const c_char,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (h, _scope) = unsafe { enter(distributed) }?;
        // SAFETY: forwarded from the caller.
        let group = unsafe { string(group, "group") }?;
        h.fabric.join_group(group)?;
        Ok(())
    })
}

/// Waits up to `timeout_ms` until every emit so far reached the broker.
/// Writes whether none is left to `*flushed_out` when it is not NULL. A
/// close on another thread ends the wait (not flushed if it left emits
/// unpublished).
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
        let (h, _scope) = unsafe { enter(distributed) }?;
        let flushed = h.fabric.flush(Duration::from_millis(timeout_ms.into()));
        if !flushed_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(flushed_out, flushed) };
        }
        Ok(())
    })
}

fn reentrant_close(what: &str) -> Failure {
    Failure::new(
        chronica_status::CHRONICA_ERR_REENTRANT,
        format!(
            "{what} from inside a C adapter callback, or from a callback or hook running inside a call \
             of this handle, is refused (it would wait for that callback, or free the handle under \
             that call)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::chronica_status::*;

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
