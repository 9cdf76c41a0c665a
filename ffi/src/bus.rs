//! `chronica_bus`: the EventBus facade for C. A bus subscribes handlers to
//! topic patterns (`chronica_bus_on`), emits payload bytes
//! (`chronica_bus_emit*`), and ends subscriptions (`chronica_bus_off`) or
//! everything (`chronica_bus_close`). Each subscription is a node named
//! `bus.sub.<n>` on the bus's director. Payloads are bytes: C serializes
//! itself and labels the encoding with a content type, which consumers read
//! back with `chronica_event_content_type`.
//!
//! Handlers, dead-letter callbacks and destructors run on the
//! subscription's own threads; they may call any chronica function except
//! closing or freeing the bus or director that runs them
//! (`CHRONICA_ERR_REENTRANT`).

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::{Error, Event, EventBus, Message, NodeError, Subscription};

use crate::boundary::boundary;
use crate::director::chronica_director;
use crate::event::chronica_event;
use crate::input::{bytes, check_out, object, optional_string, string, write_out};
use crate::node::{chronica_free_fn, hand_over, Disarm, UserData};
use crate::options::{chronica_options, options_or_default};
use crate::reentry::{inside, CallScope};
use crate::slab::{copy as copy_payload, owned};
use crate::stats::chronica_node_stats;
use crate::status::{chronica_status, set_last_error, Failure, FfiResult};
use crate::subscribe_options::{chronica_bus_dead_letter_fn, chronica_subscribe_options};

/// How long `chronica_bus_free` drains a bus still open.
const FREE_GRACE: Duration = Duration::from_secs(5);

/// A subscription's handler: receives one event, valid only during the
/// call. Return 0 when handled; anything else retries this event under the
/// subscription's retry policy (events of the same batch already handled
/// are not handed again). Runs on the subscription's threads, never
/// concurrently with itself unless its concurrency is above 1.
#[allow(non_camel_case_types)]
pub type chronica_handler_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const chronica_event) -> i32>;

/// The EventBus (opaque). Thread-safe: every function taking a bus may be
/// called from any thread at once, and from inside its handlers and
/// subscription destructors, except `chronica_bus_close` /
/// `chronica_bus_free` there
/// (`CHRONICA_ERR_REENTRANT`). Made by `chronica_bus_new` (sharing a
/// director) or `chronica_bus_new_with_options` (owning one), released by
/// `chronica_bus_free`, which must not race with other calls on it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_bus {
    bus: EventBus,
}

/// One subscription (opaque), made by `chronica_bus_on`. It stays valid
/// after `chronica_bus_off` and `chronica_bus_close`; release it with
/// `chronica_subscription_free`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_subscription {
    sub: Subscription,
    uid: CString,
}

/// The host's handler, user data and destructor, shared by the closures
/// the subscription's node calls for events and dead letters; the
/// destructor runs once, when both are gone (with the node, inside the
/// call that ends it), unless a refused registration disarmed it.
#[derive(Debug)]
struct CHandler {
    handler: unsafe extern "C" fn(*mut c_void, *const chronica_event) -> i32,
    dead_letter: chronica_bus_dead_letter_fn,
    user_data: UserData,
    free_user_data: chronica_free_fn,
    armed: AtomicBool,
    /// The address of the `chronica_bus` subscribed through (for
    /// `CallScope`; never dereferenced).
    bus: usize,
}

impl CHandler {
    fn handle(&self, e: &Event) -> Result<(), NodeError> {
        let view = chronica_event::view(e);
        // SAFETY: the host's callback, registered non-NULL; the view and
        // what it points to outlive the call.
        let rc = unsafe { (self.handler)(self.user_data.ptr(), &view) };
        if rc == 0 {
            Ok(())
        } else {
            Err(NodeError::new(format!("handler returned {rc}")))
        }
    }

    fn dead(&self, e: &Event, err: &NodeError) {
        let Some(f) = self.dead_letter else { return };
        let text = err.message();
        let view = chronica_event::view(e);
        // SAFETY: the host's callback; the view, the text and what they
        // point to outlive the call.
        unsafe { f(self.user_data.ptr(), &view, text.as_ptr().cast(), text.len()) };
    }
}

impl Disarm for CHandler {
    fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let (true, Some(free)) = (*self.armed.get_mut(), self.free_user_data) {
            // This runs inside the call that ends the subscription (off,
            // close, free, a director close), on a fiber thread: a close or
            // free of the bus from here is refused, as from a handler,
            // instead of closing the bus under that call or freeing it twice.
            let _scope = CallScope::enter_at(self.bus);
            // SAFETY: the bus owned `user_data` since the registration
            // succeeded (a refused one disarmed us); this is the last
            // reference to it.
            unsafe { free(self.user_data.ptr()) }
        }
    }
}

/// Checks the handle and marks the thread as inside a call of it.
///
/// # Safety
/// `b` must be NULL or a live bus.
unsafe fn enter<'a>(b: *const chronica_bus) -> FfiResult<(&'a EventBus, CallScope)> {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(b, "bus") }?;
    Ok((&h.bus, CallScope::enter(h)))
}

fn reentrant(what: &str) -> Failure {
    Failure::new(
        chronica_status::CHRONICA_ERR_REENTRANT,
        format!("{what} from inside one of the bus's own callbacks is refused"),
    )
}

/// A bus over `director`, which it shares with the director's other nodes
/// (and other buses). Closing the bus ends only its own subscriptions; the
/// director must still be freed by its owner (the bus keeps the engine
/// alive, so the two may be freed in either order).
///
/// # Safety
/// `director` must be NULL or a live director; `bus_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_new(
    director: *const chronica_director,
    bus_out: *mut *mut chronica_bus,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let d = unsafe { object(director, "director") }?;
        check_out(bus_out, "bus_out")?;
        if d.director.is_closed() {
            return Err(Error::Closed.into());
        }
        let handle = Box::into_raw(Box::new(chronica_bus { bus: EventBus::new(d.director.clone()) }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(bus_out, handle) };
        Ok(())
    })
}

/// A bus over a director of its own, started with `options` (NULL: the
/// defaults; copied). Closing the bus closes that director.
///
/// # Safety
/// `options` must be NULL or live options; `bus_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_new_with_options(
    options: *const chronica_options,
    bus_out: *mut *mut chronica_bus,
) -> chronica_status {
    boundary(|| -> FfiResult {
        check_out(bus_out, "bus_out")?;
        // SAFETY: forwarded from the caller.
        let director = unsafe { options_or_default(options) }?.build()?;
        let bus = EventBus::owning(director);
        let handle = Box::into_raw(Box::new(chronica_bus { bus }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(bus_out, handle) };
        Ok(())
    })
}

/// Subscribes `handler` to `topic` (a pattern: `*` one segment, `>` the
/// rest) with `options` (NULL: the defaults; copied) and writes the new
/// subscription to `*subscription_out`. Ownership of `user_data` passes to
/// the bus only on success; `free_user_data` (nullable) then runs exactly
/// once, after the subscription's last handler or dead-letter call, on a
/// thread of the subscription, before the call that ends the subscription
/// returns: `chronica_bus_off`, `chronica_bus_close` / `_free`, an
/// unregister of its uid or a close / free of the director, even one
/// racing this call. (Called from inside a callback or hook of the
/// director, that call does not wait: the destructor runs once the
/// subscription's running handler has returned.) A close or free of
/// the bus from the destructor is refused (`CHRONICA_ERR_REENTRANT`). A
/// refused call leaves `user_data` with the caller.
/// `CHRONICA_ERR_INVALID_ARGUMENT` for a bad pattern or option,
/// `CHRONICA_ERR_CLOSED` after close. A call racing `chronica_bus_close`
/// either registers first, and the close ends the subscription before it
/// returns (this call then succeeds with a subscription already ended,
/// its `free_user_data` already run), or is refused with
/// `CHRONICA_ERR_CLOSED`, having registered and called nothing.
///
/// # Safety
/// `bus` must be NULL or a live bus; `topic` NULL or NUL-terminated;
/// `options` NULL or live; `subscription_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_on(
    bus: *mut chronica_bus,
    topic: *const c_char,
    options: *const chronica_subscribe_options,
    handler: chronica_handler_fn,
    user_data: *mut c_void,
    free_user_data: chronica_free_fn,
    subscription_out: *mut *mut chronica_subscription,
) -> chronica_status {
    boundary(|| -> FfiResult {
        let address = bus as usize;
        // SAFETY: forwarded from the caller.
        let (bus, _scope) = unsafe { enter(bus) }?;
        // SAFETY: forwarded from the caller.
        let topic = unsafe { string(topic, "topic") }?;
        let handler = handler.ok_or_else(|| Failure::null("handler"))?;
        check_out(subscription_out, "subscription_out")?;
        let (mut opts, dead_letter) = if options.is_null() {
            (Default::default(), None)
        } else {
            // SAFETY: non-NULL and live per the caller.
            let o = unsafe { object(options, "options") }?;
            (o.opts.clone(), o.dead_letter)
        };
        let c = CHandler {
            handler,
            dead_letter,
            user_data: UserData(user_data),
            free_user_data,
            armed: AtomicBool::new(true),
            bus: address,
        };
        // The engine gets the only strong references (in the two closures):
        // one of ours would delay the destructor past an unregister or close
        // of the subscription's node racing this call.
        let sub = hand_over(c, |c| {
            if dead_letter.is_some() {
                let d = c.clone();
                opts.dead_letter = Some(Arc::new(move |e: &Event, err: &NodeError| d.dead(e, err)));
            }
            bus.on_shared(topic, Arc::new(move |e: &Event| c.handle(e)), opts)
        })?;
        let uid = CString::new(sub.uid()).map_err(|_| Failure::invalid("uid holds a NUL byte"))?;
        let handle = Box::into_raw(Box::new(chronica_subscription { sub, uid }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(subscription_out, handle) };
        Ok(())
    })
}

/// Ends a subscription: its node leaves the routes at once (nothing
/// emitted from then on reaches it), delivers what it holds until none is
/// left or `timeout_ms` passes, and is unregistered; events still pending
/// then go to another member of its group, else they are dropped and
/// reported to the director's drop hook. Writes the node's final counters
/// (those events counted as dropped, nothing pending) to `*stats_out` when
/// it is not NULL. From inside its own handler it neither drains nor
/// waits, and from inside another callback of the director it does not
/// wait (the drain goes on); the counters are then those of the moment.
/// `CHRONICA_ERR_CLOSED` once the bus or its director is closed (which
/// ended the subscription). Racing `chronica_bus_close`, either this call
/// ends the subscription or the close does, and this call returns
/// `CHRONICA_ERR_CLOSED` only once it has: either way `free_user_data`
/// has run when it returns (unless called from inside a callback of the
/// director, which cannot wait for it). A bus close that finds this call
/// draining cuts the drain short at its own timeout, also one just as the
/// drain starts. A director close that begins during this call ends the
/// subscription in its stead: the call then succeeds once it has, with
/// the node's final counters.
///
/// `CHRONICA_ERR_UNKNOWN_NODE`, changing nothing and writing no counters,
/// when the subscription has already ended: by an earlier
/// `chronica_bus_off`, or by a `chronica_director_unregister` of its uid.
/// Its `free_user_data` has run then (or runs once its current call
/// returns, when that unregister came from inside a callback and so did
/// not wait), and the bus no longer lists it (or stops when that call
/// returns): nothing is left to clean up but the handle
/// (`chronica_subscription_free`),
/// so a caller that only wants it gone may take this status as done. The
/// bus never acts on a uid whose subscription has ended, even when a plain
/// node has registered that uid since.
///
/// The subscription's `free_user_data`, when it runs inside this call, may
/// free the handle (`chronica_subscription_free`): the call does not touch
/// it after.
///
/// # Safety
/// `bus` must be NULL or a live bus; `subscription` NULL or live when the
/// call starts; `stats_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_off(
    bus: *mut chronica_bus,
    subscription: *const chronica_subscription,
    timeout_ms: u32,
    stats_out: *mut chronica_node_stats,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (bus, _scope) = unsafe { enter(bus) }?;
        // SAFETY: forwarded from the caller.
        let sub = unsafe { object(subscription, "subscription") }?;
        // A copy: the subscription's free_user_data may free the handle.
        let sub = sub.sub.clone();
        let last = bus.off_within(&sub, Duration::from_millis(timeout_ms.into())).map_err(|e| match e {
            Error::UnknownNode(uid) => Failure::new(
                chronica_status::CHRONICA_ERR_UNKNOWN_NODE,
                format!(
                    "subscription {uid:?} has already ended (by chronica_bus_off or an unregister of its uid); \
                     its free_user_data has run"
                ),
            ),
            e => e.into(),
        })?;
        if !stats_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(stats_out, chronica_node_stats::from(&last)) };
        }
        Ok(())
    })
}

/// The current counters of a live subscription's node; after a close of
/// the director, its final counters (all seven; see
/// `chronica_node_stats`). `CHRONICA_ERR_UNKNOWN_NODE` once a
/// `chronica_bus_off` or an unregister of its uid has ended it (even when
/// a plain node has registered that uid since).
///
/// # Safety
/// `bus` must be NULL or a live bus; `subscription` NULL or live;
/// `stats_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_stats(
    bus: *mut chronica_bus,
    subscription: *const chronica_subscription,
    stats_out: *mut chronica_node_stats,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (bus, _scope) = unsafe { enter(bus) }?;
        // SAFETY: forwarded from the caller.
        let sub = unsafe { object(subscription, "subscription") }?;
        check_out(stats_out, "stats_out")?;
        let s = bus.stats(&sub.sub)?;
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(stats_out, chronica_node_stats::from(&s)) };
        Ok(())
    })
}

/// The uid of the node behind a subscription (`bus.sub.<n>`), as a
/// NUL-terminated string owned by the subscription. NULL for NULL.
///
/// # Safety
/// `subscription` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscription_uid(
    subscription: *const chronica_subscription,
) -> *const c_char {
    boundary(|| -> *const c_char {
        // SAFETY: NULL or live per the caller.
        match unsafe { subscription.as_ref() } {
            Some(s) => s.uid.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// Frees a subscription handle (it does not end the subscription: call
/// `chronica_bus_off` first). NULL is ignored.
///
/// # Safety
/// `subscription` must be NULL or from `chronica_bus_on`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn chronica_subscription_free(subscription: *mut chronica_subscription) {
    boundary(|| {
        if !subscription.is_null() {
            // SAFETY: made by Box::into_raw in chronica_bus_on, freed once.
            drop(unsafe { Box::from_raw(subscription) });
        }
    })
}

/// Emits `len` bytes of `payload` (NULL allowed when `len` is 0) on
/// `topic`, with no key and no content type. On `CHRONICA_OK`,
/// `chronica_last_event_id` gives the new event's id (the `id` its
/// handlers see), here and for `chronica_bus_emit_with`.
///
/// # Safety
/// `bus` must be NULL or a live bus; `topic` NULL or NUL-terminated;
/// `payload` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_emit(
    bus: *mut chronica_bus,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { emit(bus, topic, std::ptr::null(), 0, std::ptr::null(), payload, len) })
}

/// Emits like `chronica_bus_emit` with an ordering / partition key (`key`
/// NULL for none; groups hash it, and with concurrency above 1 order holds
/// per key) and a content type (nullable, e.g. "application/json") that
/// consumers read with `chronica_event_content_type`.
///
/// # Safety
/// As for `chronica_bus_emit`; `key` NULL or `key_len` readable bytes;
/// `content_type` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_emit_with(
    bus: *mut chronica_bus,
    topic: *const c_char,
    key: *const u8,
    key_len: usize,
    content_type: *const c_char,
    payload: *const u8,
    len: usize,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { emit(bus, topic, key, key_len, content_type, payload, len) })
}

/// The body of the emit exports.
///
/// # Safety
/// As documented on the exports.
unsafe fn emit(
    bus: *mut chronica_bus,
    topic: *const c_char,
    key: *const u8,
    key_len: usize,
    content_type: *const c_char,
    payload: *const u8,
    len: usize,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (bus, _scope) = unsafe { enter(bus) }?;
    // SAFETY: forwarded from the caller.
    let (topic, payload, ct) = unsafe {
        (
            string(topic, "topic")?,
            bytes(payload, len, "payload")?,
            optional_string(content_type, "content_type")?,
        )
    };
    let mut msg = Message::new(topic, copy_payload(payload)?);
    if !key.is_null() {
        // SAFETY: non-NULL with `key_len` readable bytes per the caller.
        msg = msg.key(owned(unsafe { bytes(key, key_len, "key") }?)?);
    }
    if let Some(ct) = ct {
        msg = msg.content_type(ct);
    }
    crate::event_id::record(bus.emit_message(msg)?);
    Ok(())
}

/// Closes the bus: new calls are refused with `CHRONICA_ERR_CLOSED`. A bus
/// from `chronica_bus_new_with_options` closes its director (draining for
/// up to `timeout_ms`); a bus sharing a director ends its own subscriptions,
/// each drained within the timeout. Writes the events left undelivered to
/// `*undelivered_out` when it is not NULL. Refused with
/// `CHRONICA_ERR_REENTRANT` from inside one of its handlers or
/// subscription destructors. No subscription of the bus is registered
/// when it returns, not even one a racing `chronica_bus_on` registered
/// (the close ends it without waiting for that call to return; a call it
/// overtakes is refused with `CHRONICA_ERR_CLOSED`), nor one a racing
/// `chronica_bus_off` is ending: the close waits for it, having cut its
/// drain short at the close's own timeout.
///
/// # Safety
/// `bus` must be NULL or a live bus; `undelivered_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_close(
    bus: *mut chronica_bus,
    timeout_ms: u32,
    undelivered_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(bus, "bus") }?;
        if inside(h) {
            return Err(reentrant("chronica_bus_close"));
        }
        // Destructors may run on this thread during the close: a close or
        // free of this bus from one of them is refused, not run inside ours.
        let _scope = CallScope::enter(h);
        let undelivered = h.bus.close(Duration::from_millis(timeout_ms.into()))?;
        if !undelivered_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(undelivered_out, undelivered) };
        }
        Ok(())
    })
}

/// Frees a bus, closing it first if still open (draining for up to 5 s).
/// NULL is ignored. From inside one of its own handlers or subscription
/// destructors the call is refused: the bus is left usable and the
/// thread's last error is set to `CHRONICA_ERR_REENTRANT`.
///
/// # Safety
/// `bus` must be NULL or a live bus, not used by another thread during or
/// after this call.
#[no_mangle]
pub unsafe extern "C" fn chronica_bus_free(bus: *mut chronica_bus) {
    boundary(|| {
        // SAFETY: NULL or live per the caller.
        let Some(h) = (unsafe { bus.as_ref() }) else { return };
        if inside(h) {
            let f = reentrant("chronica_bus_free");
            return set_last_error(f.status, &f.message);
        }
        // A subscription's free_user_data may run on this thread, during the
        // close or the drop below: a free of this bus from there is refused
        // (a second Box::from_raw would free it twice).
        let _scope = CallScope::enter(h);
        if let Err(Error::Reentrant) = h.bus.close(FREE_GRACE) {
            let f = reentrant("chronica_bus_free");
            return set_last_error(f.status, &f.message);
        }
        // SAFETY: made by Box::into_raw in a chronica_bus_new*; freed once,
        // with no call of ours running on it (checked above).
        drop(unsafe { Box::from_raw(bus) });
    })
}
