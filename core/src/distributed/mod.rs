//! Distributed mode (SPEC section 4): a [`Director`] joins a fabric of
//! instances in other processes through an [`MqAdapter`].
//!
//! [`Distributed`] wraps a director; emit through it to reach the nodes of
//! every instance. An emit is delivered at once to the local ungrouped
//! subscribers and queued for the broker (see `outbox`); the other
//! instances deliver it to theirs, and each consumer group's share goes
//! through the broker group of that name, so one member across all
//! processes gets it (see `receive`). Unicast goes straight to a local
//! target, else through the broker to the instance that owns it. Root
//! events go to every node of every instance, signed with HMAC-SHA256 keyed
//! by the director's trust token (every instance must share the token).
//!
//! Ownership: the handle owns a small tokio runtime (2 threads, named
//! `chronica-mq`) on which the publisher, one task per subscription and a
//! group watcher run; they share one `Shared` state. Nothing runs user code: node
//! callbacks stay on the director's fibers.

mod acks;
mod config;
mod dedup;
mod groups;
mod outbox;
mod receive;
mod stats;
pub(crate) mod wire;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use self::config::{AckMode, DistributedConfig};
use self::groups::{watch_groups, Joined};
use self::receive::Sub;
pub use self::stats::DistributedStats;
use self::stats::{bump, Counters};
use self::wire::WireEvent;
use crate::director::emit::Wait;
use crate::director::remote::{Injected, Remote, Scope};
use crate::event::{EventKind, Message};
use crate::mq::{self, MqAdapter, MqError, MqResult};
use crate::{Director, Node, NodeOptions, Refused};

/// Least time `close` gives emits already past their check to enqueue.
const EMIT_GRACE: Duration = Duration::from_secs(1);

/// Longest wait, in `close`, for the adapter's own `close` (the built-in
/// adapters bound theirs below it).
const ADAPTER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the publish of one dead letter.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait, in `close` once the adapter closed, for a publish still
/// in progress to answer (a producer's `close` flushes what it queued).
const PUBLISH_SETTLE: Duration = Duration::from_secs(1);

/// State shared by the handle and its tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) director: Director,
    pub(crate) adapter: Arc<dyn MqAdapter>,
    pub(crate) cfg: DistributedConfig,
    pub(crate) token: String,
    pub(crate) counters: Counters,
    pub(crate) outbox: Mutex<VecDeque<WireEvent<'static>>>,
    pub(crate) wake: Notify,
    pub(crate) in_flight: AtomicU64,
    /// Held by the publisher for each publish attempt (see `outbox`).
    pub(crate) publishing: tokio::sync::Mutex<()>,
    stop: AtomicBool,
    /// Emits between their check of `stop` and their enqueue (see `Emitting`).
    emitting: AtomicUsize,
    ids: AtomicU64,
    /// The (group, topic) subscriptions this instance holds or is making:
    /// set once the subscription is in place. Whoever joins a group waits
    /// on its cell, so a join in progress (the watcher's, say) is waited
    /// for rather than taken as done, and one that failed is tried again.
    groups: Mutex<HashMap<(String, String), Joined>>,
}

/// An emit in progress (see [`Shared::enter_emit`]).
struct Emitting<'a>(&'a AtomicUsize);

impl Drop for Emitting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// The adapter's `subscribe`, bounded by `connect_timeout`: an adapter
    /// that never answers must not silently stop a subscription (on
    /// re-subscribing) or a group join (in the watcher) for good.
    pub(crate) async fn subscribe(&self, topic: &str, group: &str) -> MqResult<mq::MessageStream> {
        let limit = self.cfg.connect_timeout;
        tokio::time::timeout(limit, self.adapter.subscribe(topic, group))
            .await
            .map_err(|_| MqError::Connect(format!("subscribing to {topic:?}: no answer within {limit:?}")))?
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Enters an emit, or `Closed` once the layer stopped. Between this and
    /// the guard's drop an emit may wait (up to `block_timeout`) for a local
    /// node, then enqueues; `close` waits for such emits before it counts
    /// what is left, so none enqueues unseen into a stopped outbox.
    fn enter_emit(&self) -> MqResult<Emitting<'_>> {
        // SeqCst on both sides (here and in `close`): either the emit sees
        // `stop`, or `close` sees the emit.
        self.emitting.fetch_add(1, Ordering::SeqCst);
        let guard = Emitting(&self.emitting);
        if self.stop.load(Ordering::SeqCst) {
            return Err(MqError::Closed);
        }
        Ok(guard)
    }

    /// Acknowledges a read's handled messages together.
    pub(crate) async fn ack_batch(&self, msgs: &[mq::Message]) {
        if self.adapter.ack_batch(msgs).await.is_err() {
            bump(&self.counters.broker_errors);
        }
    }

    /// What acknowledging `msg` waits for, given what its event reached:
    /// nothing under `enqueue` (the fibers accepted it), else the fibers'
    /// work on it.
    pub(crate) fn settle(&self, msg: mq::Message, injected: Injected) -> acks::Pending {
        if injected.reached > 0 {
            bump(&self.counters.injected);
        }
        if self.cfg.ack_mode == AckMode::Enqueue || injected.reached == 0 {
            acks::Pending::now(msg)
        } else {
            acks::Pending::after(msg, injected.event)
        }
    }

    /// Publishes a malformed message to the dead-letter topic, with why.
    pub(crate) async fn dead_letter(&self, msg: &mq::Message, why: &str) {
        let mut dl = msg.clone();
        dl.ack = None;
        dl.headers.push((wire::ERROR.into(), why.to_owned()));
        dl.headers.push((wire::DLQ_TOPIC.into(), msg.topic.clone()));
        self.publish_dead_letter(dl).await;
    }

    /// Publishes an event the broker refused for good to the dead-letter
    /// topic, with why. When the dead letter is refused too (most refusals
    /// are about the payload: too large), it goes without its payload, so
    /// the event's metadata and the reason still reach the topic.
    pub(crate) async fn dead_letter_refused(&self, mut msg: mq::Message, why: &str) {
        msg.headers.push((wire::ERROR.into(), format!("refused by the broker: {why}")));
        msg.headers.push((wire::DLQ_TOPIC.into(), self.cfg.topic_prefix.clone()));
        let topic = self.cfg.dead_letter_topic();
        let whole =
            tokio::time::timeout(DEAD_LETTER_TIMEOUT, self.adapter.publish(&topic, msg.clone())).await;
        match whole {
            Ok(Err(MqError::Rejected(_))) => {
                let size = msg.value.len();
                msg.value = Bytes::new();
                if let Some((_, error)) = msg.headers.iter_mut().rev().find(|(k, _)| k == wire::ERROR) {
                    error.push_str(&format!(" (its payload of {size} bytes is left out)"));
                }
                self.publish_dead_letter(msg).await;
            }
            Ok(Ok(())) => bump(&self.counters.dead_lettered),
            _ => bump(&self.counters.broker_errors),
        }
    }

    /// Publishes `dl` to the dead-letter topic, once: counted in
    /// `dead_lettered`, or in `broker_errors` when it failed.
    async fn publish_dead_letter(&self, dl: mq::Message) {
        let topic = self.cfg.dead_letter_topic();
        match tokio::time::timeout(DEAD_LETTER_TIMEOUT, self.adapter.publish(&topic, dl)).await {
            Ok(Ok(())) => bump(&self.counters.dead_lettered),
            _ => bump(&self.counters.broker_errors),
        }
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn broadcast_group(&self) -> String {
        format!("{}.i-{}", self.cfg.topic_prefix, self.cfg.instance_id)
    }

    fn topics(&self) -> Vec<String> {
        std::iter::once(self.cfg.topic_prefix.clone())
            .chain(self.cfg.foreign_topics.iter().cloned())
            .collect()
    }
}

/// A director's membership in a fabric of instances. Every method is
/// callable from any thread; the constructors and `close` block, so call
/// them from plain threads (they work, on a helper thread, from async code
/// too).
#[derive(Debug)]
pub struct Distributed {
    shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// Runs `fut` to completion on `rt`, from any context (a helper thread
/// when the caller is itself inside a runtime, where `block_on` panics).
fn block_on<F: std::future::Future + Send>(rt: &tokio::runtime::Handle, fut: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(fut)).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        rt.block_on(fut)
    }
}

impl Distributed {
    /// Joins the fabric through the broker `url` names (see [`mq::connect`]).
    /// Fails within `cfg.connect_timeout` when the broker does not answer,
    /// and with `Config` when the director has no trust token.
    pub fn connect(director: &Director, url: &str, cfg: DistributedConfig) -> MqResult<Self> {
        cfg.validate()?;
        check_trust_token(director)?;
        let rt = runtime()?;
        let limit = cfg.connect_timeout;
        let adapter = block_on(rt.handle(), async {
            tokio::time::timeout(limit, mq::connect(url))
                .await
                .map_err(|_| MqError::Connect(format!("{url}: no answer within {limit:?}")))?
        });
        match adapter {
            Ok(adapter) => Self::start(director, adapter, cfg, rt),
            Err(e) => {
                discard(rt);
                Err(e)
            }
        }
    }

    /// Joins the fabric through an adapter the host built (a custom one);
    /// refused as [`connect`](Self::connect) is.
    pub fn with_adapter(
        director: &Director,
        adapter: Arc<dyn MqAdapter>,
        cfg: DistributedConfig,
    ) -> MqResult<Self> {
        cfg.validate()?;
        check_trust_token(director)?;
        Self::start(director, adapter, cfg, runtime()?)
    }

    fn start(
        director: &Director,
        adapter: Arc<dyn MqAdapter>,
        cfg: DistributedConfig,
        rt: tokio::runtime::Runtime,
    ) -> MqResult<Self> {
        if director.is_closed() {
            discard(rt);
            return Err(MqError::Engine(crate::Error::Closed));
        }
        let first_id = (crate::director::now_ms().max(0) as u64).saturating_mul(1_000_000).max(1);
        let shared = Arc::new(Shared {
            director: director.clone(),
            token: director.trust_token().to_owned(),
            adapter,
            cfg,
            counters: Counters::default(),
            outbox: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            in_flight: AtomicU64::new(0),
            publishing: tokio::sync::Mutex::new(()),
            stop: AtomicBool::new(false),
            emitting: AtomicUsize::new(0),
            ids: AtomicU64::new(first_id),
            groups: Mutex::new(HashMap::new()),
        });
        let this = Self { shared: shared.clone(), runtime: Mutex::new(Some(rt)) };
        let handle = this.handle()?;
        let group = shared.broadcast_group();
        for topic in shared.topics() {
            this.subscribe(&handle, topic, group.clone(), Sub::Broadcast)?;
        }
        for g in director.local_groups() {
            this.join_group(&g)?;
        }
        handle.spawn(outbox::run(shared.clone()));
        handle.spawn(watch_groups(shared.clone()));
        Ok(this)
    }

    fn handle(&self) -> MqResult<tokio::runtime::Handle> {
        self.runtime.lock().as_ref().map(|r| r.handle().clone()).ok_or(MqError::Closed)
    }

    fn subscribe(
        &self,
        handle: &tokio::runtime::Handle,
        topic: String,
        group: String,
        sub: Sub,
    ) -> MqResult<()> {
        let shared = self.shared.clone();
        let stream = block_on(handle, shared.subscribe(&topic, &group))?;
        handle.spawn(receive::run(shared, topic, group, sub, stream, None));
        Ok(())
    }

    /// Subscribes this instance to consumer group `group` on the broker now
    /// (registering a grouped node through [`Distributed::register_with`]
    /// does it; nodes registered on the director directly are picked up
    /// within 250 ms). Idempotent; returns once the subscription is in
    /// place, also when the watcher was making it at the time. A group
    /// with no member here is left again within the watcher's next round
    /// (250 ms): register its member first, or through
    /// [`Distributed::register_with`], which joins again if need be.
    pub fn join_group(&self, group: &str) -> MqResult<()> {
        if group.is_empty() {
            // As a registration with an empty group is refused.
            return Err(MqError::Engine(crate::Error::InvalidArgument(
                "group name must not be empty".into(),
            )));
        }
        let handle = self.handle()?;
        let shared = &self.shared;
        block_on(&handle, async move {
            for topic in shared.topics() {
                shared.join(group, &topic).await?;
            }
            Ok(())
        })
    }

    /// The director this instance serves.
    pub fn director(&self) -> &Director {
        &self.shared.director
    }

    /// This instance's id on the fabric.
    pub fn instance_id(&self) -> &str {
        &self.shared.cfg.instance_id
    }

    /// Registers a node on the director and, if it has a group, joins that
    /// group on the broker before returning. `Closed` means nothing was
    /// registered: the fabric was closed first. A failure to join the group
    /// (any other error) leaves the node registered.
    pub fn register_with(&self, uid: &str, node: impl Node, opts: NodeOptions) -> MqResult<()> {
        // A closed fabric refuses before the director registers anything.
        self.check(None)?;
        let group = opts.group.clone();
        self.shared.director.register_with(uid, node, opts)?;
        self.join_after_register(group)
    }

    /// Registers a shared node (the form the C and Python layers use;
    /// pass the only strong reference, see [`Director::register_shared`]).
    /// `Err` registered nothing and hands the node back: the fabric was
    /// closed, or the director refused the node. `Ok` holds the outcome of
    /// joining the node's group on the broker; the node is registered
    /// either way.
    pub fn register_shared(
        &self,
        uid: &str,
        node: Arc<dyn Node>,
        opts: NodeOptions,
    ) -> Result<MqResult<()>, Refused<MqError>> {
        // A closed fabric refuses before the director registers anything.
        if let Err(error) = self.check(None) {
            return Err(Refused { error, node });
        }
        let group = opts.group.clone();
        match self.shared.director.register_shared(uid, node, opts) {
            Ok(()) => Ok(self.join_after_register(group)),
            Err(Refused { error, node }) => Err(Refused { error: error.into(), node }),
        }
    }

    /// Joins the group of a node the director has just registered. A close
    /// that began meanwhile fails the join with `Closed`, which must not
    /// reach the caller as such: to the C layer `Closed` means "nothing
    /// registered, `user_data` is yours", and the node (with its
    /// `user_data`) is registered and running.
    fn join_after_register(&self, group: Option<String>) -> MqResult<()> {
        match group.map(|g| (self.join_group(&g), g)) {
            None | Some((Ok(()), _)) => Ok(()),
            Some((Err(MqError::Closed), g)) => Err(MqError::Broker(format!(
                "the fabric closed before group {g:?} was joined; the node stays registered on the director"
            ))),
            Some((Err(e), _)) => Err(e),
        }
    }

    fn check(&self, source: Option<&str>) -> MqResult<()> {
        if self.shared.stopped() {
            return Err(MqError::Closed);
        }
        match source {
            Some(uid) if !self.shared.director.has_node(uid) => {
                Err(MqError::Engine(crate::Error::UnknownNode(uid.to_owned())))
            }
            _ => Ok(()),
        }
    }

    /// Enters an emit bound for the wire: `check`, and every string that
    /// travels as a header value passes `wire::check_header_text`.
    fn enter_wire_emit(
        &self,
        source: Option<&str>,
        texts: &[(&str, Option<&str>)],
    ) -> MqResult<Emitting<'_>> {
        let guard = self.shared.enter_emit()?;
        self.check(source)?;
        for (what, text) in texts {
            if let Some(t) = text {
                wire::check_header_text(what, t)
                    .map_err(|e| MqError::Engine(crate::Error::InvalidArgument(e)))?;
            }
        }
        Ok(guard)
    }

    fn wire(
        &self,
        kind: EventKind,
        topic: &str,
        msg_fields: (Option<&str>, Option<Bytes>, Bytes, Option<&str>),
    ) -> WireEvent<'static> {
        let (source, key, payload, content_type) = msg_fields;
        let owned = |s: &str| Cow::Owned(s.to_owned());
        WireEvent {
            id: self.shared.next_id(),
            origin: owned(&self.shared.cfg.instance_id),
            source: source.map(owned),
            target: None,
            kind,
            ts: crate::director::now_ms(),
            topic: owned(topic),
            key,
            payload,
            content_type: content_type.or(self.shared.cfg.content_type.as_deref()).map(owned),
            sig: None,
        }
    }

    /// Broadcasts to every matching subscriber of every instance but the
    /// source, one member per consumer group across all instances. Returns
    /// the event's id on the wire (unique per instance, increasing).
    pub fn emit(&self, msg: Message<'_>) -> MqResult<u64> {
        self.emit_with(msg, Wait::Yes)
    }

    /// [`emit`](Self::emit) that never waits: where a local target under
    /// the `block` policy is full, it fails at once with `QueueFull`, and
    /// the event reaches no node and is not published (its wire id is not
    /// used again). See `Director::try_emit`.
    pub fn try_emit(&self, msg: Message<'_>) -> MqResult<u64> {
        self.emit_with(msg, Wait::No)
    }

    fn emit_with(&self, msg: Message<'_>, wait: Wait) -> MqResult<u64> {
        let _emitting = self.enter_wire_emit(msg.source.as_deref(), &message_texts(&msg))?;
        let w = self.wire(
            EventKind::User,
            &msg.topic,
            (msg.source.as_deref(), msg.key.clone(), msg.payload.clone(), msg.content_type.as_deref()),
        );
        let remote = Remote {
            kind: EventKind::User,
            topic: &w.topic,
            source: w.source.as_deref(),
            key: w.key.clone(),
            payload: w.payload.clone(),
            content_type: w.content_type.as_deref(),
            timestamp_ms: Some(w.ts),
        };
        match wait {
            Wait::Yes => self.shared.director.inject(remote, Scope::Ungrouped)?,
            Wait::No => self.shared.director.try_inject(remote, Scope::Ungrouped)?,
        };
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// Sends to the node `target` of whichever instance owns it: at once
    /// when it is local, else through the broker (an instance that does not
    /// own it ignores it). Returns the local event id or the wire id.
    pub fn emit_to(&self, target: &str, msg: Message<'_>) -> MqResult<u64> {
        self.emit_to_with(target, msg, Wait::Yes)
    }

    /// [`emit_to`](Self::emit_to) that never waits, as
    /// [`try_emit`](Self::try_emit) (only a local target can be full).
    pub fn try_emit_to(&self, target: &str, msg: Message<'_>) -> MqResult<u64> {
        self.emit_to_with(target, msg, Wait::No)
    }

    fn emit_to_with(&self, target: &str, msg: Message<'_>, wait: Wait) -> MqResult<u64> {
        self.check(msg.source.as_deref())?;
        if self.shared.director.has_node(target) {
            let d = &self.shared.director;
            return Ok(match wait {
                Wait::Yes => d.emit_to(target, msg)?,
                Wait::No => d.try_emit_to(target, msg)?,
            });
        }
        check_uid(target)?;
        let mut texts = message_texts(&msg).to_vec();
        texts.push(("target", Some(target)));
        let _emitting = self.enter_wire_emit(msg.source.as_deref(), &texts)?;
        let mut w = self.wire(
            EventKind::User,
            &msg.topic,
            (msg.source.as_deref(), msg.key.clone(), msg.payload.clone(), msg.content_type.as_deref()),
        );
        w.target = Some(Cow::Owned(target.to_owned()));
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// Sends a signed root event to every node of every instance.
    pub fn emit_root(&self, action: &str, payload: impl Into<Bytes>) -> MqResult<u64> {
        let _emitting = self.enter_wire_emit(None, &[("action", Some(action))])?;
        let payload = payload.into();
        self.shared.director.emit_root(action, payload.clone())?;
        let mut w = self.wire(EventKind::Root, action, (None, None, payload, None));
        w.sign(&self.shared.token);
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// Sends a signed root event to one node, wherever it lives.
    pub fn emit_root_to(&self, target: &str, action: &str, payload: impl Into<Bytes>) -> MqResult<u64> {
        self.check(None)?;
        let payload = payload.into();
        if self.shared.director.has_node(target) {
            return Ok(self.shared.director.emit_root_to(target, action, payload)?);
        }
        check_uid(target)?;
        let _emitting = self.enter_wire_emit(None, &[("action", Some(action)), ("target", Some(target))])?;
        let mut w = self.wire(EventKind::Root, action, (None, None, payload, None));
        w.target = Some(Cow::Owned(target.to_owned()));
        w.sign(&self.shared.token);
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DistributedStats {
        self.shared.counters.snapshot(self.shared.buffered())
    }

    /// Waits (bounded by `timeout`) until every emit so far reached the
    /// broker; true when none is left.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = crate::time::deadline(timeout);
        loop {
            if self.shared.buffered() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Publishes what is buffered until `timeout`, stops every task, closes
    /// the adapter, and returns the number of emits never published. The
    /// director stays open (the host closes it). `Closed` when already closed.
    /// The adapter's `close` is given up to 5 s; one that fails or takes
    /// longer is counted in `broker_errors`, and the layer is closed anyway.
    /// A publish still in progress then is counted by its answer, awaited
    /// up to 1 s after the adapter closed (one the adapter's `close`
    /// published is not unpublished); one still unanswered is counted as
    /// unpublished.
    pub fn close(&self, timeout: Duration) -> MqResult<u64> {
        let Some(rt) = self.runtime.lock().take() else { return Err(MqError::Closed) };
        let deadline = crate::time::deadline(timeout);
        self.flush(timeout);
        self.shared.stop.store(true, Ordering::SeqCst);
        // An emit past its check may still enqueue: count it in `left`.
        // (One waiting for a full local node longer than this is not.)
        let deadline = deadline.max(Instant::now() + EMIT_GRACE);
        while self.shared.emitting.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let shared = self.shared.clone();
        let closed = block_on(rt.handle(), async move {
            let closed = tokio::time::timeout(ADAPTER_CLOSE_TIMEOUT, shared.adapter.close()).await;
            // Counting before this reported as unpublished what the
            // adapter's close then published. Once the lock is ours, the
            // publish in progress has answered and none will start.
            let _ = tokio::time::timeout(PUBLISH_SETTLE, shared.publishing.lock()).await;
            closed
        });
        let left = self.shared.buffered();
        // The layer is closed either way; an adapter that failed to close
        // (or took too long) is counted, since what it did not commit comes
        // back to its group later.
        if !matches!(closed, Ok(Ok(()))) {
            bump(&self.shared.counters.broker_errors);
        }
        discard(rt);
        Ok(left)
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        let _ = self.close(Duration::from_secs(1));
    }
}

/// The strings of `msg` that travel as header values.
fn message_texts<'m>(msg: &'m Message<'_>) -> [(&'static str, Option<&'m str>); 4] {
    let key = msg.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
    [
        ("topic", Some(&*msg.topic)),
        ("source", msg.source.as_deref()),
        ("content_type", msg.content_type.as_deref()),
        ("key", key),
    ]
}

fn check_uid(uid: &str) -> MqResult<()> {
    if (1..=255).contains(&uid.len()) {
        Ok(())
    } else {
        Err(MqError::Engine(crate::Error::InvalidArgument(format!("uid {uid:?} must be 1 to 255 bytes"))))
    }
}

/// Root events on the wire are signed with the director's trust token; an
/// empty one is a key everybody knows, so anyone who can write to the
/// broker could sign root events (the hub refuses it for its webhooks
/// for the same reason).
fn check_trust_token(director: &Director) -> MqResult<()> {
    if director.trust_token().is_empty() {
        return Err(MqError::Config(
            "the director's trust token is empty: distributed mode signs root events with it, so \
             set one (the same on every instance of the fabric)"
                .into(),
        ));
    }
    Ok(())
}

/// Shuts the layer's runtime down from any context: dropping a runtime
/// inside another one panics ("cannot drop a runtime in a context where
/// blocking is not allowed"), and the constructors and `close` may be
/// called from async code.
fn discard(rt: tokio::runtime::Runtime) {
    if tokio::runtime::Handle::try_current().is_ok() {
        rt.shutdown_background();
    } else {
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

fn runtime() -> MqResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("chronica-mq")
        .enable_all()
        .build()
        .map_err(|e| MqError::Engine(crate::Error::Resource(format!("runtime: {e}"))))
}
