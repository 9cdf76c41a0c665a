//! `chronica_mq_adapter`: a message-broker adapter written in C, the C face
//! of `chronica::mq::MqAdapter` (SPEC section 4), as `python/src/adapter.rs`
//! is its Python face.
//!
//! The host fills a vtable (`publish`, `subscribe`, `ack`, `close`, its
//! `user_data` and a destructor) and joins a fabric through it with
//! `chronica_distributed_new_with_adapter`; the handle it gets is an
//! ordinary `chronica_distributed`. Each `subscribe` call hands the host a
//! `chronica_mq_subscription`, through which it delivers the subscription's
//! messages (`chronica_mq_subscription_deliver`) from any thread.
//!
//! # Invariants
//!
//! * `Inner` owns the copied vtable and, once the creation succeeded,
//!   `user_data`. The layer (the `Distributed` handle and its tasks) and
//!   every running callback hold it through an `Arc`, so its `Drop`, where
//!   `free_user_data` runs, comes after the last callback, exactly once.
//! * Callbacks run on the layer's blocking threads (`chronica-mq`), never on
//!   a tokio worker and never under a chronica lock. [`CallGate`] counts the
//!   running ones; `close` refuses every callback after it, waits for the
//!   running ones, ends the subscriptions and only then calls the C `close`,
//!   once. `Drop` calls it if the layer never did (a runtime shut down
//!   first), so C always learns when to stop delivering.
//! * A subscription handle is an `Arc` kept in `Inner::subs`: its address
//!   stays valid until `Inner` drops, after `close`. Its sender is taken at
//!   close, at a refusal, and when its stream drops (the layer left the
//!   group): deliver then reports `CHRONICA_ERR_CLOSED`, and the ended
//!   handle no longer holds the channel (about 5 KB) but only itself,
//!   about 100 bytes plus its pattern and group. An ended handle is handed
//!   out again to the next `subscribe` with the same pattern and group (a
//!   refused one retried every `group_watch_interval`, a group joined
//!   again), so `subs` holds at most one handle per pair ever subscribed
//!   instead of growing with every attempt; a late delivery through it
//!   then reaches the subscription of the same group that replaced it.
//! * A refused creation waits until no callback runs and the C `close` (due
//!   only if `subscribe` was called) has returned, and never frees
//!   `user_data`: the caller gets it back untouched by any thread.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chronica::mq::{
    AckToken, BoxFuture, CallGate, ChannelStream, Message, MessageStream, MqAdapter, MqError, MqResult,
};
use chronica::{Bytes, Distributed, DistributedConfig};
use tokio::sync::mpsc;

use crate::boundary::boundary;
use crate::director::chronica_director;
use crate::distributed::chronica_distributed;
use crate::distributed_options::chronica_distributed_options;
use crate::input::{check_out, object, write_out};
use crate::node::{chronica_free_fn, UserData};
use crate::status::{chronica_status, chronica_status_t, Failure, FfiResult};

/// Messages one subscription holds, delivered but not yet read by the
/// distributed layer, before `chronica_mq_subscription_deliver` answers
/// `CHRONICA_ERR_QUEUE_FULL`.
pub const CHRONICA_MQ_SUBSCRIPTION_CAPACITY: usize = 65_536;
// A literal above, for cbindgen; the engine's constant is the one rule.
const _: () = assert!(CHRONICA_MQ_SUBSCRIPTION_CAPACITY == chronica::mq::SUBSCRIPTION_CAPACITY);

/// `chronica_mq_message.timestamp_ms` handed to `publish` for a message
/// without a timestamp (deliver takes any negative value to mean none). Not
/// exported: a negative `#define` is a macro hazard; the docs say "-1".
const NO_TIMESTAMP: i64 = -1;

/// One broker header: a name and a value, UTF-8, `_len` bytes each.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct chronica_mq_header {
    /// The header name (e.g. "chronica-id"); names may repeat.
    pub name: *const c_char,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// The header value.
    pub value: *const c_char,
    /// Length of `value` in bytes.
    pub value_len: usize,
}

/// One broker message, as `publish` receives it and as
/// `chronica_mq_subscription_deliver` takes it. The payload travels
/// untouched as `value`; Chronica's metadata travels in `headers`.
///
/// Handed to `publish`: every pointer is valid only during the call; no
/// pointer is NULL except `key` when there is none; strings (`topic`, header
/// names and values) are UTF-8 and also NUL-terminated (`_len` excludes the
/// NUL). Given to deliver: only the lengths count (no NUL needed); a pointer
/// may be NULL when its length is 0 (`key` NULL: no key); everything is
/// copied before deliver returns.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct chronica_mq_message {
    /// The broker topic (Kafka topic, NATS subject, Redis stream key).
    pub topic: *const c_char,
    /// Length of `topic` in bytes.
    pub topic_len: usize,
    /// The partition / ordering key; NULL when the message has none.
    pub key: *const u8,
    /// Length of `key`.
    pub key_len: usize,
    /// The payload bytes.
    pub value: *const u8,
    /// Length of `value`.
    pub value_len: usize,
    /// Milliseconds since the Unix epoch; negative when unknown (`publish`
    /// receives -1 then).
    pub timestamp_ms: i64,
    /// `header_count` headers, in order.
    pub headers: *const chronica_mq_header,
    /// Number of `headers`.
    pub header_count: usize,
}

/// A subscription's end of the channel into the distributed layer
/// (opaque), handed to the adapter's `subscribe` callback. Pass it to
/// `chronica_mq_subscription_deliver` from any thread, any number of times.
/// It stays valid until the adapter's `close` callback returns: `close`
/// must make sure no thread is still delivering through it, nor will. The
/// adapter never frees it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_mq_subscription {
    tx: Mutex<Option<mpsc::Sender<Message>>>,
}

impl chronica_mq_subscription {
    /// Ends the stream: the layer sees no more messages from here.
    fn end(&self) {
        lock(&self.tx).take();
    }

    /// Lets go of the channel once its reader is gone, so that an ended
    /// handle, kept until the adapter drops, costs only itself and not the
    /// channel's first block of messages (about 5 KB). A handle handed out
    /// again meanwhile feeds a live reader and keeps its sender.
    fn lighten(&self) {
        let mut tx = lock(&self.tx);
        if tx.as_ref().is_some_and(mpsc::Sender::is_closed) {
            *tx = None;
        }
    }

    /// Feeds `tx` from now on if the stream has ended (refused, or its
    /// reader gone); false, changing nothing, while it is live.
    fn revive(&self, tx: &mpsc::Sender<Message>) -> bool {
        let mut ours = lock(&self.tx);
        if ours.as_ref().is_some_and(|t| !t.is_closed()) {
            return false;
        }
        *ours = Some(tx.clone());
        true
    }
}

/// Publishes `message` on `message->topic`. Return `CHRONICA_OK` once the
/// broker took it. Return `CHRONICA_ERR_INVALID_ARGUMENT` when the broker
/// refuses this message for good (too large for it, bytes it cannot
/// carry): the layer counts it (`publish_rejected`), publishes it to
/// `PREFIX.dlq` (again without its payload if that is refused too) and
/// goes on with the next messages; it never comes again. A message with a
/// NUL byte in its topic or a header is refused so without a call. Any
/// other status is a broker error: the distributed
/// layer counts it (`publish_retries`) and publishes the message again with
/// backoff (50 ms to 2 s) until it succeeds or the handle closes. Calls come
/// one at a time, in the order of the emits (a retried message comes again
/// after those behind it); the dead letters of malformed messages are
/// published here too, to `PREFIX.dlq`.
#[allow(non_camel_case_types)]
pub type chronica_mq_publish_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, message: *const chronica_mq_message) -> chronica_status_t,
>;

/// Starts delivering the messages of the topics matching `pattern`
/// (Chronica's syntax: `*` one segment, `>` the rest) through
/// `subscription`, each message to one subscription of the consumer
/// `group` (subscriptions sharing a group share its messages; a new group
/// starts at new messages). `pattern` and `group` are NUL-terminated and
/// valid only during the call. Delivery may start before this returns.
/// Any status but `CHRONICA_OK` refuses the subscription (the handle is
/// closed at once: forget it; a later `subscribe` with the same pattern
/// and group may be handed the same handle, live again) and is a broker
/// error: at creation
/// `chronica_distributed_new_with_adapter` fails with `CHRONICA_ERR_ADAPTER`;
/// joining a consumer group, `chronica_distributed_register_with` reports it
/// the same way (the node stays registered) and the layer tries again
/// every `group_watch_interval` (250 ms by default).
#[allow(non_camel_case_types)]
pub type chronica_mq_subscribe_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        pattern: *const c_char,
        group: *const c_char,
        subscription: *mut chronica_mq_subscription,
    ) -> chronica_status_t,
>;

/// Acknowledges the message delivered with `ack_token`: the layer handled
/// it (every delivered message is acknowledged once handled, duplicates,
/// rejected and dead-lettered ones included). Any status but `CHRONICA_OK`
/// is counted as a broker error (`broker_errors`); the message is not
/// acknowledged again.
#[allow(non_camel_case_types)]
pub type chronica_mq_ack_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, ack_token: u64) -> chronica_status_t>;

/// Hands back the message delivered with `ack_token`, unhandled: the
/// layer is leaving the consumer group of the subscription it came
/// through (the group's last local member unregistered), so give it to
/// another subscription of that group. The layer has stopped reading that
/// subscription: stop delivering to it (deliver answers
/// `CHRONICA_ERR_CLOSED` from now or soon) and take it out of its group.
/// Every message delivered through it and not acknowledged is released
/// once: first those of the layer's last read, then (shortly after, maybe
/// after other callbacks) those still unread. Any status but `CHRONICA_OK`
/// is a broker error (counted in `broker_errors` for the last read); the
/// message is not released again. Closing the handle releases nothing:
/// what was delivered and not acknowledged then is the broker's to
/// redeliver.
#[allow(non_camel_case_types)]
pub type chronica_mq_release_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, ack_token: u64) -> chronica_status_t>;

/// Stops every subscription and releases the broker client. Called exactly
/// once for every handle created (on a refused creation, only if
/// `subscribe` was called), after every other callback returned; no
/// callback follows it. Every subscription has already ended when it runs
/// (deliver returns `CHRONICA_ERR_CLOSED`).
/// Before it returns, no thread may be inside
/// `chronica_mq_subscription_deliver` with one of this adapter's
/// subscriptions, and none may call it afterwards (the handles die).
#[allow(non_camel_case_types)]
pub type chronica_mq_close_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A message-broker adapter written in C: the vtable
/// `chronica_distributed_new_with_adapter` joins a fabric through (copied
/// by that call). `publish`, `subscribe` and `close` are required; `ack`
/// may be NULL (nothing to acknowledge), as may `free_user_data` and
/// `release` (a released message then waits for the broker's own
/// redelivery of unacknowledged messages, if it has one).
///
/// Threads: every callback runs on a thread of the distributed layer
/// (named `chronica-mq`), never on the caller's. Publishes come one at a
/// time, in emit order, but acks, releases and subscribes may run at the
/// same time as a publish and as each other: the adapter must be
/// thread-safe. Callbacks may block (each holds only its own thread) and
/// may call `chronica_mq_subscription_deliver` (a publish may deliver to
/// subscriptions synchronously) and every chronica function except closing
/// or freeing the `chronica_distributed` handle they serve. Some of those
/// call the adapter again and wait for it (joining a group, as
/// `chronica_distributed_join_group` and a grouped
/// `chronica_distributed_register_with` do, calls `subscribe` on another
/// thread): a callback must not make them while holding a lock that
/// `subscribe` takes. They must not unwind (no C++ exception or longjmp may
/// leave them).
///
/// Ownership of `user_data` passes to the handle only when
/// `chronica_distributed_new_with_adapter` returns `CHRONICA_OK`; then
/// `free_user_data` (nullable) runs exactly once, after `close` and after
/// every callback returned, when `chronica_distributed_free` releases the
/// handle (on its thread, or later on a `chronica-mq` thread if a callback
/// outlived the close deadline). A refused creation calls `close` only if it
/// had called `subscribe`, returns only when no callback is running, never
/// calls `free_user_data`, and leaves `user_data` with the caller.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct chronica_mq_adapter {
    /// `sizeof(chronica_mq_adapter)`, set by the caller: versions add
    /// callbacks at the end, and this tells the library how much of the
    /// struct the program knows (a library reads no further; callbacks
    /// beyond it count as NULL). The first version ended before `release`
    /// (`offsetof(chronica_mq_adapter, release)` bytes); anything smaller
    /// (0, for one left unset) is `CHRONICA_ERR_INVALID_ARGUMENT`.
    pub struct_size: usize,
    /// Passed first to every callback.
    pub user_data: *mut c_void,
    /// Publishes one message (required).
    pub publish: chronica_mq_publish_fn,
    /// Opens one subscription (required).
    pub subscribe: chronica_mq_subscribe_fn,
    /// Acknowledges one delivered message (NULL: nothing to acknowledge).
    pub ack: chronica_mq_ack_fn,
    /// Stops delivering and releases the client (required).
    pub close: chronica_mq_close_fn,
    /// Destructor of `user_data` (nullable); see the type's documentation.
    pub free_user_data: chronica_free_fn,
    /// Hands back one delivered, unhandled message (nullable; added in
    /// version 2 of this struct).
    pub release: chronica_mq_release_fn,
}

/// The size of the first version of [`chronica_mq_adapter`], which ended
/// before `release`: the smallest `struct_size` accepted.
const FIRST_VERSION_SIZE: usize = std::mem::offset_of!(chronica_mq_adapter, release);

/// Locks `m`, ignoring poisoning (a panic cannot leave our data half-made:
/// every critical section is a plain assignment or count).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The adapter's state; see the module documentation.
#[derive(Debug)]
struct Inner {
    publish: unsafe extern "C" fn(*mut c_void, *const chronica_mq_message) -> chronica_status_t,
    subscribe: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const c_char,
        *mut chronica_mq_subscription,
    ) -> chronica_status_t,
    ack: chronica_mq_ack_fn,
    release: chronica_mq_release_fn,
    close: unsafe extern "C" fn(*mut c_void),
    user_data: UserData,
    free_user_data: chronica_free_fn,
    /// Set once the creation succeeded: `user_data` is ours to free.
    owned: AtomicBool,
    /// Set once `subscribe` was called: `close` is due.
    subscribed: AtomicBool,
    /// Callbacks running, and how far `close` got.
    gate: CallGate,
    subs: Mutex<Vec<Handle>>,
}

/// A subscription handle and the pattern and group it was made for.
#[derive(Debug)]
struct Handle {
    pattern: String,
    group: String,
    sub: Arc<chronica_mq_subscription>,
}

/// Owned by a subscription's stream: lightens its handle when the stream
/// drops (the layer left the group, or closed).
struct Lighten(Arc<chronica_mq_subscription>);

impl Drop for Lighten {
    fn drop(&mut self) {
        self.0.lighten();
    }
}

/// A callback's status as a result: anything but `CHRONICA_OK` is a broker
/// error naming the callback and the status.
fn checked(rc: chronica_status_t, what: impl FnOnce() -> String) -> MqResult<()> {
    if rc == chronica_status::CHRONICA_OK as u32 {
        return Ok(());
    }
    let status = chronica_status::from_raw(rc);
    let name = status.map_or_else(|| "not a chronica_status".to_owned(), |s| format!("{s:?}"));
    let why = format!("the C adapter's {} returned {rc} ({name})", what());
    // The contract's "refused for good": retrying could never change it.
    if status == Some(chronica_status::CHRONICA_ERR_INVALID_ARGUMENT) {
        return Err(MqError::Rejected(why));
    }
    Err(MqError::Broker(why))
}

/// A NUL-terminated copy of `s` for C; an interior NUL is refused.
fn c_string(s: &str, what: &str) -> MqResult<Vec<u8>> {
    if s.as_bytes().contains(&0) {
        return Err(MqError::Config(format!("{what} {s:?} contains a NUL byte")));
    }
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    Ok(v)
}

impl Inner {
    /// Runs `f` as a callback unless `close` started.
    fn run<T>(&self, f: impl FnOnce() -> T) -> MqResult<T> {
        let _call = self.gate.enter()?;
        Ok(f())
    }

    fn publish(&self, topic: &str, message: &Message) -> MqResult<()> {
        let view = PublishView::new(topic, message)?;
        // SAFETY: `publish` is the host's non-NULL callback; the view and
        // the buffers it points into outlive the call.
        let rc = self.run(|| unsafe { (self.publish)(self.user_data.ptr(), &view.message) })?;
        checked(rc, || format!("publish to {topic:?}"))
    }

    /// Calls the C `subscribe` with a handle feeding `tx`: an ended one of
    /// the same pattern and group if there is one, else a new one, which it
    /// returns. Refused, the handle ends at once.
    fn subscribe(
        &self,
        pattern: &str,
        group: &str,
        tx: mpsc::Sender<Message>,
    ) -> MqResult<Arc<chronica_mq_subscription>> {
        let (p, g) = (c_string(pattern, "pattern")?, c_string(group, "group")?);
        let sub = self.run(|| {
            let sub = self.handle_for(pattern, group, tx);
            self.subscribed.store(true, Ordering::Release);
            let handle = Arc::as_ptr(&sub).cast_mut();
            // SAFETY: `subscribe` is the host's non-NULL callback; both
            // strings are NUL-terminated and outlive the call; the handle
            // lives in `subs` until `self` drops, after close.
            let rc = unsafe {
                (self.subscribe)(self.user_data.ptr(), p.as_ptr().cast(), g.as_ptr().cast(), handle)
            };
            (sub, rc)
        });
        let (sub, rc) = sub?;
        checked(rc, || format!("subscribe to {pattern:?} in group {group:?}")).inspect_err(|_| sub.end())?;
        Ok(sub)
    }

    /// The handle a new subscription to `pattern` in `group` feeds `tx`
    /// through: an ended one made for the same pair, else a new one.
    fn handle_for(
        &self,
        pattern: &str,
        group: &str,
        tx: mpsc::Sender<Message>,
    ) -> Arc<chronica_mq_subscription> {
        let mut subs = lock(&self.subs);
        let ended = subs.iter().find(|h| h.pattern == pattern && h.group == group && h.sub.revive(&tx));
        if let Some(h) = ended {
            return h.sub.clone();
        }
        let sub = Arc::new(chronica_mq_subscription { tx: Mutex::new(Some(tx)) });
        subs.push(Handle { pattern: pattern.to_owned(), group: group.to_owned(), sub: sub.clone() });
        sub
    }

    fn ack(&self, token: u64) -> MqResult<()> {
        let Some(ack) = self.ack else { return Ok(()) };
        // SAFETY: `ack` is the host's callback, checked non-NULL.
        let rc = self.run(|| unsafe { ack(self.user_data.ptr(), token) })?;
        checked(rc, || format!("ack of token {token}"))
    }

    fn release(&self, token: u64) -> MqResult<()> {
        let Some(release) = self.release else { return Ok(()) };
        // SAFETY: `release` is the host's callback, checked non-NULL.
        let rc = self.run(|| unsafe { release(self.user_data.ptr(), token) })?;
        checked(rc, || format!("release of token {token}"))
    }

    /// Releases each of `tokens` in order; the error is the first failure.
    fn release_all(&self, tokens: impl IntoIterator<Item = u64>) -> MqResult<()> {
        tokens.into_iter().map(|t| self.release(t)).fold(Ok(()), Result::and)
    }

    /// Refuses further callbacks, waits for the running ones, ends every
    /// subscription and, when `call_c`, calls the C `close` (once). A second
    /// call returns at once.
    fn close(&self, call_c: bool) {
        if !self.gate.begin_close() {
            return;
        }
        for h in lock(&self.subs).iter() {
            h.sub.end();
        }
        if call_c {
            let _inside = chronica::mq::HostCall::enter();
            // SAFETY: `close` is the host's non-NULL callback; no other
            // callback runs now or later.
            unsafe { (self.close)(self.user_data.ptr()) }
        }
        self.gate.finish_close();
    }

    /// After a refused creation: closes (calling C only if `subscribe` was
    /// called) and waits until the close, whoever started it, is over.
    fn settle_refused(&self) {
        self.close(self.subscribed.load(Ordering::Acquire));
        self.gate.wait_closed();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let owned = *self.owned.get_mut();
        if owned || *self.subscribed.get_mut() {
            self.close(true); // a no-op when the layer closed it already
        }
        if let (true, Some(free)) = (owned, self.free_user_data) {
            // SAFETY: the handle owns `user_data` since the creation
            // succeeded; this is the one drop, after every callback.
            unsafe { free(self.user_data.ptr()) }
        }
    }
}

/// A message laid out for the `publish` callback: its strings copied,
/// NUL-terminated, into one buffer the C view points into.
struct PublishView {
    message: chronica_mq_message,
    _headers: Vec<chronica_mq_header>,
    _strings: Vec<u8>,
}

/// Where empty fields point, so C never sees a dangling pointer; aligned
/// for any field it stands in for (a header holds pointers).
#[repr(C, align(16))]
struct Empty([u8; 16]);
static EMPTY: Empty = Empty([0; 16]);

impl PublishView {
    fn new(topic: &str, m: &Message) -> MqResult<Self> {
        let mut strings = Vec::new();
        // (offset, length) of each string in `strings`: the topic, then
        // each header's name and value.
        let mut spans = Vec::with_capacity(1 + 2 * m.headers.len());
        let all = std::iter::once(topic).chain(m.headers.iter().flat_map(|(k, v)| [&**k, v.as_str()]));
        for s in all {
            spans.push((strings.len(), s.len()));
            // C cannot be given it, now or ever: refused for good.
            let c = c_string(s, "a string to publish").map_err(|e| MqError::Rejected(e.to_string()))?;
            strings.extend_from_slice(&c);
        }
        let at = |(off, len): (usize, usize)| -> (*const c_char, usize) {
            // `strings` is not touched again, so its heap buffer stays put.
            (strings[off..].as_ptr().cast(), len)
        };
        let headers: Vec<chronica_mq_header> = spans[1..]
            .chunks_exact(2)
            .map(|kv| {
                let ((name, name_len), (value, value_len)) = (at(kv[0]), at(kv[1]));
                chronica_mq_header { name, name_len, value, value_len }
            })
            .collect();
        let (topic, topic_len) = at(spans[0]);
        let bytes = |b: &[u8]| if b.is_empty() { EMPTY.0.as_ptr() } else { b.as_ptr() };
        let message = chronica_mq_message {
            topic,
            topic_len,
            key: m.key.as_deref().map_or(std::ptr::null(), bytes),
            key_len: m.key.as_ref().map_or(0, Bytes::len),
            value: bytes(&m.value),
            value_len: m.value.len(),
            timestamp_ms: m.timestamp_ms.unwrap_or(NO_TIMESTAMP),
            headers: if headers.is_empty() { EMPTY.0.as_ptr().cast() } else { headers.as_ptr() },
            header_count: headers.len(),
        };
        Ok(Self { message, _headers: headers, _strings: strings })
    }
}

/// The ack token the host gave with a delivered message.
#[derive(Debug)]
struct Token(u64);

fn token_of(m: &Message) -> Option<u64> {
    m.ack.as_ref().and_then(|t| t.get::<Token>()).map(|t| t.0)
}

/// Runs `f` (a C callback) on a blocking thread of the current runtime, or
/// inline outside one; a callback cancelled by a runtime shutdown is a
/// broker error.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> MqResult<T> + Send + 'static,
) -> MqResult<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt
            .spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(MqError::Broker(format!("the C adapter's {what}: {e}")))),
        Err(_) => f(),
    }
}

/// The `MqAdapter` the distributed layer drives.
#[derive(Debug)]
struct CAdapter {
    inner: Arc<Inner>,
    /// Publishes take turns in the order their futures were first polled
    /// (tokio's mutex is fair): the layer publishes one batch at a time,
    /// but a dead letter may come alongside, and C sees each call whole.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl MqAdapter for CAdapter {
    fn name(&self) -> &str {
        "c"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>> {
        chronica::mq::publish_one(self, topic, message)
    }

    /// One blocking call publishes the whole batch, in order.
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        let (inner, topic, turn) = (self.inner.clone(), topic.to_owned(), self.turn.clone());
        let n = messages.len();
        Box::pin(async move {
            let turn = turn.lock_owned().await;
            // The turn ends when the C calls return, even if this future
            // was dropped meanwhile (a publish timeout).
            let out = blocking("publish", move || {
                let _turn = turn;
                Ok(messages.iter().map(|m| inner.publish(&topic, m)).collect::<Vec<_>>())
            })
            .await;
            out.unwrap_or_else(|e| vec![Err(e); n])
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        let (inner, pattern, group) = (self.inner.clone(), pattern.to_owned(), group.to_owned());
        let this = self.inner.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(CHRONICA_MQ_SUBSCRIPTION_CAPACITY);
            let sub = blocking("subscribe", move || inner.subscribe(&pattern, &group, tx)).await?;
            let ended = Lighten(sub);
            // Unread messages go back through `release` (refused once the
            // adapter closed: those need no release). The closure drops
            // with the stream, `ended` with it.
            let unread = move |left: Vec<Message>| {
                let _ended = ended;
                drop(this.release_all(left.iter().filter_map(token_of)));
            };
            Ok(Box::pin(ChannelStream::bounded(rx, unread)) as MessageStream)
        })
    }

    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        let token = token_of(message);
        let inner = self.inner.clone();
        Box::pin(async move {
            match token {
                Some(token) if inner.ack.is_some() => blocking("ack", move || inner.ack(token)).await,
                _ => Ok(()),
            }
        })
    }

    /// One blocking call acknowledges the whole read, in order.
    fn ack_batch<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        let tokens: Vec<u64> = messages.iter().filter_map(token_of).collect();
        let inner = self.inner.clone();
        Box::pin(async move {
            if tokens.is_empty() || inner.ack.is_none() {
                return Ok(());
            }
            blocking("ack", move || tokens.into_iter().map(|t| inner.ack(t)).fold(Ok(()), Result::and)).await
        })
    }

    /// One blocking call releases the whole read, in order.
    fn release<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        let tokens: Vec<u64> = messages.iter().filter_map(token_of).collect();
        let inner = self.inner.clone();
        Box::pin(async move {
            if tokens.is_empty() || inner.release.is_none() {
                return Ok(());
            }
            blocking("release", move || inner.release_all(tokens)).await
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        let inner = self.inner.clone();
        Box::pin(blocking("close", move || {
            inner.close(true);
            Ok(())
        }))
    }
}

/// Joins the fabric through the C adapter `adapter` (copied; see
/// `chronica_mq_adapter` for its callbacks, threads and the ownership of
/// its `user_data`), with `director` serving the local nodes, and writes the
/// handle to `*distributed_out`. `options` NULL: the defaults (copied). The
/// handle is an ordinary `chronica_distributed`: use the other
/// `chronica_distributed_*` functions, then close and free it, before the
/// director.
///
/// Blocks while the layer subscribes. A `subscribe` that fails or does not
/// answer within the connect timeout is `CHRONICA_ERR_ADAPTER` (the last
/// error names the callback and its status), returned once that callback
/// has returned: a refused creation never leaves a callback running, so a
/// `subscribe` that never returns keeps this call waiting too.
/// `CHRONICA_ERR_NULL_ARGUMENT` for a NULL `adapter` or a NULL
/// `publish`, `subscribe` or `close`; `CHRONICA_ERR_INVALID_ARGUMENT` for a
/// `struct_size` below the first version's (`offsetof(chronica_mq_adapter,
/// release)`) or a director with an empty trust token.
///
/// # Safety
/// `director` must be NULL or a live director; `adapter` NULL or a readable
/// vtable of at least `struct_size` bytes whose callbacks honour their
/// documented contracts; `options` NULL
/// or live options; `distributed_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_new_with_adapter(
    director: *mut chronica_director,
    adapter: *const chronica_mq_adapter,
    options: *const chronica_distributed_options,
    distributed_out: *mut *mut chronica_distributed,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let d = unsafe { object(director, "director") }?;
        if adapter.is_null() {
            return Err(Failure::null("adapter"));
        }
        // SAFETY: non-NULL and readable per the caller; every version of
        // the struct starts with `struct_size`, so it is read alone first.
        let size = unsafe { std::ptr::addr_of!((*adapter).struct_size).read() };
        if size < FIRST_VERSION_SIZE {
            return Err(Failure::invalid(format!(
                "adapter->struct_size is {size}: set it to sizeof(chronica_mq_adapter), {} in this version",
                std::mem::size_of::<chronica_mq_adapter>()
            )));
        }
        // SAFETY: at least `size` readable bytes, as `struct_size` says.
        let vt = unsafe { read_vtable(adapter, size) };
        let publish = vt.publish.ok_or_else(|| Failure::null("adapter->publish"))?;
        let subscribe = vt.subscribe.ok_or_else(|| Failure::null("adapter->subscribe"))?;
        let close = vt.close.ok_or_else(|| Failure::null("adapter->close"))?;
        let cfg = if options.is_null() {
            DistributedConfig::default()
        } else {
            // SAFETY: non-NULL, live per the caller.
            unsafe { object(options, "options") }?.cfg.clone()
        };
        check_out(distributed_out, "distributed_out")?;
        let inner = Arc::new(Inner {
            publish,
            subscribe,
            ack: vt.ack,
            release: vt.release,
            close,
            user_data: UserData(vt.user_data),
            free_user_data: vt.free_user_data,
            owned: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            gate: CallGate::default(),
            subs: Mutex::default(),
        });
        let adapter = Arc::new(CAdapter { inner: inner.clone(), turn: Arc::default() });
        match Distributed::with_adapter(&d.director, adapter, cfg) {
            Ok(fabric) => {
                inner.owned.store(true, Ordering::Release);
                let parked = d.parked.clone();
                let handle = Box::into_raw(Box::new(chronica_distributed { fabric, parked }));
                // SAFETY: checked non-NULL above; writable per the caller.
                unsafe { write_out(distributed_out, handle) };
                Ok(())
            }
            Err(e) => {
                inner.settle_refused();
                Err(e.into())
            }
        }
    })
}

/// Copies the versions of the caller's vtable that `size` covers whole
/// (at least the first; at most this library's); the fields beyond stay
/// zero: NULL callbacks.
///
/// # Safety
/// `adapter` must point to at least `size` readable bytes, `size` being
/// at least `FIRST_VERSION_SIZE`.
unsafe fn read_vtable(adapter: *const chronica_mq_adapter, size: usize) -> chronica_mq_adapter {
    let mut vt = std::mem::MaybeUninit::<chronica_mq_adapter>::zeroed();
    let full = std::mem::size_of::<chronica_mq_adapter>();
    // Whole versions only: a pointer copied in part would be garbage.
    let n = if size >= full { full } else { FIRST_VERSION_SIZE };
    // SAFETY: `n <= size` bytes are readable (the caller) and writable
    // (`vt` is that large); an all-zero vtable is valid (NULL pointers,
    // `None` callbacks), and so is one with whole fields copied in.
    unsafe {
        std::ptr::copy_nonoverlapping(adapter.cast::<u8>(), vt.as_mut_ptr().cast::<u8>(), n);
        vt.assume_init()
    }
}

/// Copies a C string given by pointer and length.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes.
unsafe fn text(p: *const c_char, len: usize, what: &str) -> FfiResult<String> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { crate::input::bytes(p.cast(), len, what) }?;
    std::str::from_utf8(b).map(str::to_owned).map_err(|e| {
        Failure::new(chronica_status::CHRONICA_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8: {e}"))
    })
}

/// Copies a message the host delivers.
///
/// # Safety
/// The pointers in `m` must be NULL or valid for their lengths.
unsafe fn copy_message(m: &chronica_mq_message, token: u64) -> FfiResult<Message> {
    use crate::input::bytes;
    // SAFETY: each pointer is NULL or valid for its length, per the caller.
    let (topic, key, value) = unsafe {
        let topic = text(m.topic, m.topic_len, "message->topic")?;
        let key = match (m.key.is_null(), m.key_len) {
            (true, 0) => None,
            _ => Some(crate::slab::owned(bytes(m.key, m.key_len, "message->key")?)?),
        };
        (topic, key, crate::slab::owned(bytes(m.value, m.value_len, "message->value")?)?)
    };
    let raw = match (m.headers.is_null(), m.header_count) {
        (_, 0) => &[][..],
        (true, _) => return Err(Failure::null("message->headers")),
        (false, n)
            if n.checked_mul(std::mem::size_of::<chronica_mq_header>())
                .is_none_or(|b| b > isize::MAX as usize) =>
        {
            return Err(Failure::invalid(format!("message->header_count {n} is impossible")))
        }
        // SAFETY: non-NULL and `header_count` readable headers per the caller.
        (false, n) => unsafe { std::slice::from_raw_parts(m.headers, n) },
    };
    let mut headers = Vec::with_capacity(raw.len());
    for h in raw {
        // SAFETY: each pointer is NULL or valid for its length, per the caller.
        let pair = unsafe {
            (text(h.name, h.name_len, "a header name")?.into(), text(h.value, h.value_len, "a header value")?)
        };
        headers.push(pair);
    }
    Ok(Message {
        topic,
        key,
        value,
        timestamp_ms: (m.timestamp_ms >= 0).then_some(m.timestamp_ms),
        headers,
        ack: Some(AckToken::new(Token(token))),
    })
}

/// Hands one received message to the distributed layer through
/// `subscription` (from the adapter's `subscribe` callback). Everything
/// `message` points to is copied before the call returns. `ack_token`
/// comes back in the adapter's `ack` callback once the layer handled the
/// message (a message refused here is never acknowledged).
///
/// Callable from any thread, including from inside the adapter's own
/// callbacks; never blocks. `CHRONICA_ERR_QUEUE_FULL` when
/// `CHRONICA_MQ_SUBSCRIPTION_CAPACITY` messages of this subscription wait
/// unread (nothing taken: deliver it again later); `CHRONICA_ERR_CLOSED`
/// once the subscription ended (the adapter is closing, a subscribe was
/// refused, or the layer left the subscription's group because its last
/// local member unregistered: the messages it had not acknowledged are for
/// the group's other subscriptions); `CHRONICA_ERR_NULL_ARGUMENT` /
/// `CHRONICA_ERR_INVALID_UTF8` for a bad message (a NULL pointer with a
/// non-zero length, a topic or header that is not UTF-8).
///
/// # Safety
/// `subscription` must be NULL or a handle from a `subscribe` callback
/// whose adapter's `close` has not returned; `message` NULL or a readable
/// message whose pointers are valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn chronica_mq_subscription_deliver(
    subscription: *mut chronica_mq_subscription,
    message: *const chronica_mq_message,
    ack_token: u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let sub = unsafe { object(subscription, "subscription") }?;
        // SAFETY: forwarded from the caller.
        let m = unsafe { object(message, "message") }?;
        // SAFETY: forwarded from the caller.
        let msg = unsafe { copy_message(m, ack_token) }?;
        let mut tx = lock(&sub.tx);
        let closed = || Failure::new(chronica_status::CHRONICA_ERR_CLOSED, "the subscription has ended");
        let Some(sender) = tx.as_ref() else { return Err(closed()) };
        match sender.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Failure::new(
                chronica_status::CHRONICA_ERR_QUEUE_FULL,
                format!("{CHRONICA_MQ_SUBSCRIPTION_CAPACITY} messages of this subscription wait unread"),
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                *tx = None;
                Err(closed())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_callback_is_a_broker_error_naming_it() {
        assert!(checked(0, || unreachable!()).is_ok());
        let e = checked(8, || "publish to \"t\"".to_owned()).unwrap_err();
        assert_eq!(Failure::from(e.clone()).status, chronica_status::CHRONICA_ERR_ADAPTER);
        let text = e.to_string();
        assert!(text.contains("publish") && text.contains("CHRONICA_ERR_ADAPTER"), "{text}");
        assert!(checked(4242, String::new).unwrap_err().to_string().contains("not a chronica_status"));
    }

    #[test]
    fn invalid_argument_and_a_nul_byte_refuse_the_message_for_good() {
        let invalid = chronica_status::CHRONICA_ERR_INVALID_ARGUMENT as u32;
        assert!(matches!(checked(invalid, || "publish".into()), Err(MqError::Rejected(_))));
        let mut m = Message::new("x");
        m.headers.push(("chronica-topic".into(), "a\0b".into()));
        assert!(matches!(PublishView::new("t", &m), Err(MqError::Rejected(_))));
        assert!(matches!(PublishView::new("t\0", &Message::new("x")), Err(MqError::Rejected(_))));
    }

    #[test]
    fn a_publish_view_is_nul_terminated_and_sized() {
        let mut m = Message::new(Bytes::from_static(b"payload"));
        m.headers = vec![("chronica-id".into(), "7".into()), ("h".into(), String::new())];
        m.timestamp_ms = None;
        let v = PublishView::new("orders", &m).unwrap();
        let c = &v.message;
        // SAFETY: the view is alive; every pointer covers its length + NUL.
        unsafe {
            assert_eq!(std::slice::from_raw_parts(c.topic.cast::<u8>(), c.topic_len + 1), b"orders\0");
            let h = std::slice::from_raw_parts(c.headers, c.header_count);
            assert_eq!(
                std::slice::from_raw_parts(h[0].name.cast::<u8>(), h[0].name_len + 1),
                b"chronica-id\0"
            );
            assert_eq!(std::slice::from_raw_parts(h[0].value.cast::<u8>(), h[0].value_len + 1), b"7\0");
            assert_eq!((h[1].value_len, *h[1].value), (0, 0));
        }
        assert!(c.key.is_null() && c.key_len == 0);
        assert_eq!(c.timestamp_ms, NO_TIMESTAMP);
        assert!(PublishView::new("nul\0inside", &m).is_err());
    }

    #[test]
    fn a_delivered_message_is_copied_and_checked() {
        let hdr =
            [chronica_mq_header { name: c"a".as_ptr(), name_len: 1, value: std::ptr::null(), value_len: 0 }];
        let mut m = chronica_mq_message {
            topic: c"t".as_ptr(),
            topic_len: 1,
            key: std::ptr::null(),
            key_len: 0,
            value: b"v".as_ptr(),
            value_len: 1,
            timestamp_ms: 5,
            headers: hdr.as_ptr(),
            header_count: 1,
        };
        // SAFETY: every pointer above is valid for its length.
        let msg = unsafe { copy_message(&m, 9) }.unwrap();
        assert_eq!((msg.topic.as_str(), &msg.value[..], msg.timestamp_ms), ("t", &b"v"[..], Some(5)));
        assert_eq!(msg.headers, vec![("a".into(), String::new())]);
        assert!(msg.key.is_none());
        assert_eq!(msg.ack.unwrap().get::<Token>().map(|t| t.0), Some(9));
        m.topic = b"\xff".as_ptr().cast();
        // SAFETY: as above.
        let bad = unsafe { copy_message(&m, 0) }.unwrap_err();
        assert_eq!(bad.status, chronica_status::CHRONICA_ERR_INVALID_UTF8);
        m.topic_len = 0;
        m.headers = std::ptr::null();
        // SAFETY: as above; a NULL array with a count is refused unread.
        assert_eq!(
            unsafe { copy_message(&m, 0) }.unwrap_err().status,
            chronica_status::CHRONICA_ERR_NULL_ARGUMENT
        );
    }

    /// What the test adapter's `subscribe` saw, and whether it accepts.
    struct Seen {
        accept: AtomicBool,
        handles: Mutex<Vec<usize>>,
    }

    unsafe extern "C" fn publish_nothing(_: *mut c_void, _: *const chronica_mq_message) -> chronica_status_t {
        chronica_status::CHRONICA_OK as chronica_status_t
    }

    unsafe extern "C" fn record_subscribe(
        ud: *mut c_void,
        _: *const c_char,
        _: *const c_char,
        sub: *mut chronica_mq_subscription,
    ) -> chronica_status_t {
        // SAFETY: the test's `Seen`, alive for the whole test.
        let seen = unsafe { &*ud.cast::<Seen>() };
        lock(&seen.handles).push(sub as usize);
        let status = if seen.accept.load(Ordering::SeqCst) {
            chronica_status::CHRONICA_OK
        } else {
            chronica_status::CHRONICA_ERR_ADAPTER
        };
        status as chronica_status_t
    }

    unsafe extern "C" fn close_nothing(_: *mut c_void) {}

    /// A message on topic "t" carrying `value` (which must outlive it).
    fn message(value: &[u8]) -> chronica_mq_message {
        chronica_mq_message {
            topic: c"t".as_ptr(),
            topic_len: 1,
            key: std::ptr::null(),
            key_len: 0,
            value: value.as_ptr(),
            value_len: value.len(),
            timestamp_ms: -1,
            headers: std::ptr::null(),
            header_count: 0,
        }
    }

    fn adapter(seen: &Seen) -> Inner {
        Inner {
            publish: publish_nothing,
            subscribe: record_subscribe,
            ack: None,
            release: None,
            close: close_nothing,
            user_data: UserData(std::ptr::from_ref(seen).cast_mut().cast()),
            free_user_data: None,
            owned: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            gate: CallGate::default(),
            subs: Mutex::default(),
        }
    }

    /// A broker refusing a group is asked again every 250 ms for as long
    /// as it refuses: each attempt used to keep a handle of its own.
    #[test]
    fn refused_subscribes_reuse_one_handle_per_pattern_and_group() {
        let seen = Seen { accept: AtomicBool::new(false), handles: Mutex::default() };
        let inner = adapter(&seen);
        for _ in 0..100 {
            let (tx, _rx) = mpsc::channel(1);
            assert!(inner.subscribe("t.>", "g-1", tx).is_err());
        }
        let (tx, _rx) = mpsc::channel(1);
        assert!(inner.subscribe("t.>", "g-2", tx).is_err());
        assert_eq!(lock(&inner.subs).len(), 2, "one handle per pattern and group");
        let handles = lock(&seen.handles).clone();
        assert!(handles[..100].iter().all(|&h| h == handles[0]), "one handle for every refusal");
        assert_ne!(handles[100], handles[0]);
        // The refused handle ended: a late delivery is not taken.
        let m = message(b"");
        // SAFETY: a live handle and a valid message.
        let rc = unsafe { chronica_mq_subscription_deliver(handles[0] as *mut _, &m, 1) };
        assert_eq!(rc, chronica_status::CHRONICA_ERR_CLOSED);
        inner.close(true);
    }

    /// A live handle is never handed out again; one whose reader is gone
    /// is, and then feeds the new reader.
    #[test]
    fn only_an_ended_handle_is_handed_out_again() {
        let seen = Seen { accept: AtomicBool::new(true), handles: Mutex::default() };
        let inner = adapter(&seen);
        let (tx, first) = mpsc::channel(4);
        inner.subscribe("t", "g", tx).unwrap();
        let (tx, second) = mpsc::channel(4);
        inner.subscribe("t", "g", tx).unwrap();
        let handles = lock(&seen.handles).clone();
        assert_ne!(handles[0], handles[1], "the first is live");
        drop(first);
        let (tx, mut third) = mpsc::channel(4);
        inner.subscribe("t", "g", tx).unwrap();
        let handles = lock(&seen.handles).clone();
        assert_eq!(handles[2], handles[0], "the first's reader is gone");
        assert_eq!(lock(&inner.subs).len(), 2);
        let m = message(b"v");
        // SAFETY: a live handle and a valid message.
        let rc = unsafe { chronica_mq_subscription_deliver(handles[2] as *mut _, &m, 7) };
        assert_eq!(rc, chronica_status::CHRONICA_OK);
        assert_eq!(&third.try_recv().unwrap().value[..], b"v");
        drop(second);
        inner.close(true);
    }

    /// Every group name ever joined keeps a handle until the adapter drops
    /// (a racing delivery may hold it); an ended one used to keep its
    /// channel too, about 5 KB a group for as long as the process ran.
    #[test]
    fn an_ended_handle_lets_go_of_its_channel() {
        use futures_util::{FutureExt, StreamExt};
        let seen = Seen { accept: AtomicBool::new(true), handles: Mutex::default() };
        let c = CAdapter { inner: Arc::new(adapter(&seen)), turn: Arc::default() };
        // Outside a runtime the C calls run inline: every future is ready.
        let subscribe = |group: &str| c.subscribe("t", group).now_or_never().unwrap().unwrap();
        for i in 0..100 {
            drop(subscribe(&format!("g-{i}")));
        }
        {
            let subs = lock(&c.inner.subs);
            assert_eq!(subs.len(), 100, "the handles stay");
            let heavy = subs.iter().filter(|h| lock(&h.sub.tx).is_some()).count();
            assert_eq!(heavy, 0, "ended handles holding a channel");
        }
        let handles = lock(&seen.handles).clone();
        let m = message(b"v");
        // SAFETY: a handle of an open adapter and a valid message.
        let rc = unsafe { chronica_mq_subscription_deliver(handles[0] as *mut _, &m, 1) };
        assert_eq!(rc, chronica_status::CHRONICA_ERR_CLOSED, "a late delivery is refused");
        // Handed out again, the light handle feeds the new stream.
        let mut again = subscribe("g-0");
        assert_eq!(lock(&seen.handles)[100], handles[0]);
        // SAFETY: as above.
        let rc = unsafe { chronica_mq_subscription_deliver(handles[0] as *mut _, &m, 2) };
        assert_eq!(rc, chronica_status::CHRONICA_OK);
        let got = again.next().now_or_never().flatten().unwrap().unwrap();
        assert_eq!(&got.value[..], b"v");
        c.inner.close(true);
    }
}
