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
mod emit;
mod groups;
mod outbox;
mod receive;
mod stats;
pub(crate) mod wire;

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
use crate::director::remote::Injected;
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
    /// Set when `close` has counted what it left unpublished: nothing
    /// buffered then will ever be published, so `flush` stops waiting.
    closed: AtomicBool,
    /// Emits between their check of `stop` and their enqueue (see `Entered`).
    emitting: AtomicUsize,
    /// Calls of the handle running a future on the runtime from the
    /// caller's thread (`join_group`); `close` waits for them before it
    /// shuts the runtime down (see [`Distributed::on_runtime`]).
    calls: AtomicUsize,
    /// Set by `close`: such a call in progress gives up with `Closed`.
    closing: tokio::sync::watch::Sender<bool>,
    ids: AtomicU64,
    /// The process's fork count when this was made (see `fork.rs`).
    born: u64,
    /// The (group, topic) subscriptions this instance holds or is making:
    /// set once the subscription is in place. Whoever joins a group waits
    /// on its cell, so a join in progress (the watcher's, say) is waited
    /// for rather than taken as done, and one that failed is tried again.
    groups: Mutex<HashMap<(String, String), Joined>>,
}

/// An emit or a call in progress, counted until dropped (see
/// [`Shared::enter_emit`] and [`Distributed::on_runtime`]).
struct Entered<'a>(&'a AtomicUsize);

impl Drop for Entered<'_> {
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

    /// `Forked` in a child forked after this was made: its runtime's
    /// threads are not there, and nothing here may be touched.
    pub(crate) fn check_unforked(&self) -> MqResult<()> {
        crate::fork::check(self.born).map_err(MqError::Engine)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Enters an emit, or `Closed` once the layer stopped. Between this and
    /// the guard's drop an emit may wait (up to `block_timeout`) for a local
    /// node, then enqueues; `close` waits for such emits before it counts
    /// what is left, so none enqueues unseen into a stopped outbox.
    fn enter_emit(&self) -> MqResult<Entered<'_>> {
        // SeqCst on both sides (here and in `close`): either the emit sees
        // `stop`, or `close` sees the emit.
        self.emitting.fetch_add(1, Ordering::SeqCst);
        let guard = Entered(&self.emitting);
        if self.stop.load(Ordering::SeqCst) {
            return Err(MqError::Closed);
        }
        Ok(guard)
    }

    /// Acknowledges a read's handled messages together. A failure, or no
    /// answer within `connect_timeout`, is counted in `broker_errors`: an
    /// adapter that never answers must not stop the subscription (or its
    /// watcher) for good. What it did not take comes again, and
    /// de-duplication drops it.
    pub(crate) async fn ack_batch(&self, msgs: &[mq::Message]) {
        let acked = tokio::time::timeout(self.cfg.connect_timeout, self.adapter.ack_batch(msgs)).await;
        if !matches!(acked, Ok(Ok(()))) {
            bump(&self.counters.broker_errors);
        }
    }

    /// Hands messages back unhandled, bounded and counted as `ack_batch`.
    pub(crate) async fn release(&self, msgs: &[mq::Message]) {
        let released = tokio::time::timeout(self.cfg.connect_timeout, self.adapter.release(msgs)).await;
        if !matches!(released, Ok(Ok(()))) {
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
            closed: AtomicBool::new(false),
            emitting: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            closing: tokio::sync::watch::Sender::new(false),
            ids: AtomicU64::new(first_id),
            born: crate::fork::generation(),
            groups: Mutex::new(HashMap::new()),
        });
        let this = Self { shared: shared.clone(), runtime: Mutex::new(Some(rt)) };
        let handle = this.handle()?;
        let group = shared.broadcast_group();
        for topic in shared.topics() {
            this.subscribe(&handle, topic, group.clone(), Sub::Broadcast)?;
        }
        // Told of every registration from here on: the joins below cover
        // the nodes already registered.
        let changed = director.routes_changed();
        for g in director.local_groups() {
            this.join_group(&g)?;
        }
        handle.spawn(outbox::run(shared.clone()));
        handle.spawn(watch_groups(shared.clone(), shared.cfg.group_watch_interval, changed));
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
    /// does it; for nodes registered on the director directly the group
    /// watcher does it in the background, told of each registration).
    /// Idempotent; returns once the subscription is in place, also when
    /// the watcher was making it at the time. A group with no member here
    /// is left again within the watcher's next round
    /// ([`group_watch_interval`](DistributedConfig::group_watch_interval),
    /// 250 ms by default): register its member first, or through
    /// [`Distributed::register_with`], which joins again if need be.
    pub fn join_group(&self, group: &str) -> MqResult<()> {
        if group.is_empty() {
            // As a registration with an empty group is refused.
            return Err(MqError::Engine(crate::Error::InvalidArgument(
                "group name must not be empty".into(),
            )));
        }
        let shared = &self.shared;
        self.on_runtime(async move {
            for topic in shared.topics() {
                shared.join(group, &topic).await?;
            }
            Ok(())
        })
    }

    /// Runs `fut` on the layer's runtime from the caller's thread, or
    /// `Closed` once `close` has begun. A `close` meanwhile makes it give
    /// up with `Closed` and waits for it before shutting the runtime down:
    /// a future still polled after that (its timers) panicked the caller.
    fn on_runtime<T: Send>(&self, fut: impl std::future::Future<Output = MqResult<T>> + Send) -> MqResult<T> {
        self.shared.check_unforked()?;
        let (handle, _call) = {
            // Counted under the lock `close` takes the runtime with: it
            // either finds no runtime here or sees this call.
            let runtime = self.runtime.lock();
            let rt = runtime.as_ref().ok_or(MqError::Closed)?;
            self.shared.calls.fetch_add(1, Ordering::SeqCst);
            (rt.handle().clone(), Entered(&self.shared.calls))
        };
        let mut closing = self.shared.closing.subscribe();
        block_on(&handle, async move {
            tokio::select! {
                // Once `close` has begun, the call's future is not polled
                // again: `close` may have stopped waiting for it.
                biased;
                _ = closing.wait_for(|c| *c) => Err(MqError::Closed),
                out = fut => out,
            }
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> DistributedStats {
        self.shared.counters.snapshot(self.shared.buffered())
    }

    /// Waits (bounded by `timeout`) until every emit so far reached the
    /// broker; true when none is left. Returns once a `close` (on any
    /// thread) is over, false if that close left emits unpublished.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.flush_until(crate::time::deadline(timeout))
    }

    /// [`flush`](Self::flush) up to `deadline`: `close` gives it what its
    /// own deadline has left.
    fn flush_until(&self, deadline: Instant) -> bool {
        loop {
            if self.shared.buffered() == 0 {
                return true;
            }
            if Instant::now() >= deadline || self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Publishes what is buffered until `timeout`, stops every task, closes
    /// the adapter, and returns the number of emits never published. The
    /// director stays open (the host closes it). `Closed` when already closed.
    /// One deadline, `timeout` from the call, bounds both the wait for
    /// calls still running on the layer's runtime (a join stuck in its
    /// adapter) and the flush; what is left unpublished at it is counted.
    /// The adapter's `close` is given up to 5 s; one that fails or takes
    /// longer is counted in `broker_errors`, and the layer is closed anyway.
    /// A publish still in progress then is counted by its answer, awaited
    /// up to 1 s after the adapter closed (one the adapter's `close`
    /// published is not unpublished); one still unanswered is counted as
    /// unpublished.
    pub fn close(&self, timeout: Duration) -> MqResult<u64> {
        self.shared.check_unforked()?;
        let Some(rt) = self.runtime.lock().take() else { return Err(MqError::Closed) };
        // Calls in progress give up at once: their futures are dropped on
        // their own threads. One whose adapter blocks its thread inside a
        // poll cannot see that; it is waited for until the deadline only,
        // and the runtime outlives it (`discard_after_calls`).
        self.shared.closing.send_replace(true);
        let deadline = crate::time::deadline(timeout);
        while self.shared.calls.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The publisher ran meanwhile; the flush has what the deadline
        // left, not a `timeout` of its own (which made such a close take
        // twice its timeout).
        self.flush_until(deadline);
        self.shared.stop.store(true, Ordering::SeqCst);
        // An emit past its check may still enqueue: count it in `left`.
        // (One waiting for a full local node longer than this is not.)
        let deadline = deadline.max(Instant::now() + EMIT_GRACE);
        while self.shared.emitting.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let shared = self.shared.clone();
        // Spawned, not polled on this thread: a Rust adapter whose `close`
        // blocks the thread polling it (synchronous work in `poll`) would
        // hold it past every timeout, and `close` waited forever.
        let closing = rt.spawn(async move {
            let closed = tokio::time::timeout(ADAPTER_CLOSE_TIMEOUT, shared.adapter.close()).await;
            // Counting before this reported as unpublished what the
            // adapter's close then published. Once the lock is ours, the
            // publish in progress has answered and none will start.
            let _ = tokio::time::timeout(PUBLISH_SETTLE, shared.publishing.lock()).await;
            matches!(closed, Ok(Ok(())))
        });
        let closed = block_on(rt.handle(), async move {
            matches!(
                tokio::time::timeout(ADAPTER_CLOSE_TIMEOUT + PUBLISH_SETTLE, closing).await,
                Ok(Ok(true))
            )
        });
        let left = self.shared.buffered();
        self.shared.closed.store(true, Ordering::Release);
        // The layer is closed either way; an adapter that failed to close
        // (or took too long) is counted, since what it did not commit comes
        // back to its group later.
        if !closed {
            bump(&self.shared.counters.broker_errors);
        }
        discard_after_calls(rt, self.shared.clone());
        Ok(left)
    }
}

/// Shuts the runtime down once no call of the handle runs on it any more
/// (see [`Distributed::on_runtime`]): at once, or on a thread of its own
/// when a call is still in its adapter's poll, since a future polled after
/// the shutdown panics on its caller's thread at its next timer.
fn discard_after_calls(rt: tokio::runtime::Runtime, shared: Arc<Shared>) {
    if shared.calls.load(Ordering::SeqCst) == 0 {
        return discard(rt);
    }
    let rt = Arc::new(Mutex::new(Some(rt)));
    let later = rt.clone();
    let spawned = std::thread::Builder::new().name("chronica-mq-end".into()).spawn(move || {
        while shared.calls.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(rt) = later.lock().take() {
            discard(rt);
        }
    });
    if spawned.is_err() {
        // No thread to wait on: the runtime is never shut down, which
        // costs its threads, rather than the caller a panic.
        std::mem::forget(rt.lock().take());
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        if self.shared.check_unforked().is_err() {
            // Dropping the runtime would wait for its threads, which are
            // not in this process: it is never freed here.
            std::mem::forget(self.runtime.get_mut().take());
            return;
        }
        let _ = self.close(Duration::from_secs(1));
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
