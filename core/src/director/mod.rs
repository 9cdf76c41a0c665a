//! The director: the thread-safe handle hosts hold.
//!
//! `Director` is a cheap clone of two `Arc`s: the [`Core`] every worker also
//! holds, and an owner token whose drop (the last handle gone without
//! `close`) closes the director. A node that captures a `Director` keeps it
//! alive until it is unregistered or the director is closed.

mod builder;
mod chunked;
pub(crate) mod context;
pub(crate) mod core;
mod drain;
pub(crate) mod emit;
mod emit_many;
mod index;
mod key_hash;
mod membership;
pub(crate) mod peers;
pub(crate) mod recycle;
pub(crate) mod released;
pub(crate) mod remote;
pub(crate) mod routing;
mod settings;
pub(crate) mod waits;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub(crate) use self::builder::Config;
pub use self::builder::{DirectorBuilder, NodeOptions, MAX_CONCURRENCY, MAX_WORKER_THREADS};
pub(crate) use self::core::now_ms;
use self::core::Core;
pub(crate) use self::drain::DrainCut;
use self::emit::Wait;
#[doc(hidden)]
pub use self::membership::Registration;
use self::membership::Waits;
pub use self::settings::NodeSettings;
use crate::event::Message;
use crate::node::{AsyncNode, Node, Refused};
use crate::stats::NodeStats;
use crate::{Error, Result};

/// The hub: registers nodes, routes events into their fibers, reports stats.
/// Every method is callable from any thread, including from inside a node's
/// callback (see [`Director::close`] for the one exception).
#[derive(Debug, Clone)]
pub struct Director {
    core: Arc<Core>,
    _owner: Arc<Owner>,
}

#[derive(Debug)]
struct Owner(Arc<Core>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close_on_drop();
    }
}

impl Director {
    /// A builder with the default settings.
    pub fn builder() -> DirectorBuilder {
        DirectorBuilder::default()
    }

    /// A director with the default settings.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    pub(crate) fn start(cfg: Config) -> Self {
        let core = Arc::new(Core::new(cfg));
        Self { _owner: Arc::new(Owner(core.clone())), core }
    }

    /// Registers a sync node that receives every topic.
    pub fn register(&self, uid: &str, node: impl Node) -> Result<()> {
        self.register_with(uid, node, NodeOptions::default())
    }

    /// Registers a sync node with options. Its first event is the root event
    /// `chronica.pull_current_state` with `{"peers": [...]}`.
    pub fn register_with(&self, uid: &str, node: impl Node, opts: NodeOptions) -> Result<()> {
        let node: Arc<dyn Node> = Arc::new(node);
        self.core.register(uid, node, opts, None).map_err(|(e, _)| e)
    }

    /// Registers a shared sync node (the form the C and Python layers use).
    /// Pass the only strong reference: once registered, the node is
    /// dropped when its fiber is done with it, inside the `unregister` or
    /// `close` that ends it, which a reference kept by the caller would
    /// delay past their return. A refusal hands the node back untouched
    /// ([`Refused`]).
    pub fn register_shared(&self, uid: &str, node: Arc<dyn Node>, opts: NodeOptions) -> Result<(), Refused> {
        self.register_admitted(uid, node, opts, None)
    }

    /// [`register_shared`](Self::register_shared) whose last check is
    /// `admit`, run under the membership lock once every other check has
    /// passed and before anything changes (see `Core::register`): the bus
    /// refuses there a subscription its close has overtaken. Public but
    /// hidden for the Python binding's bus; not a stable API.
    #[doc(hidden)]
    pub fn register_admitted(
        &self,
        uid: &str,
        node: Arc<dyn Node>,
        opts: NodeOptions,
        admit: Option<&dyn Fn(Registration) -> Result<()>>,
    ) -> Result<(), Refused> {
        self.core.register(uid, node, opts, admit).map_err(|(error, node)| Refused { error, node })
    }

    /// Registers an async node, run as tasks on the director's runtime.
    pub fn register_async(&self, uid: &str, node: impl AsyncNode, opts: NodeOptions) -> Result<()> {
        let node: Arc<dyn AsyncNode> = Arc::new(node);
        self.core.register(uid, node, opts, None).map_err(|(e, _)| e)
    }

    /// Removes a node. Its pending user events go to another member of its
    /// group, else they are dropped (and reported). Returns after its last
    /// callback has finished and the node value was dropped (SPEC 2.7),
    /// also from inside another node's callback. It does not wait where
    /// the wait could never end, and the node is then dropped right after
    /// its current callback returns: from the node's own callback; where
    /// the node's callback waits, itself or through others, for the
    /// caller's node (two nodes unregistering each other: the first
    /// waits, the second does not); from an async node's task or a hook
    /// on an emitting thread, which must not block; for an async node, on
    /// the thread of the current-thread runtime it runs on (see
    /// [`DirectorBuilder::runtime`](crate::DirectorBuilder::runtime)),
    /// whose tasks run only once this returns.
    pub fn unregister(&self, uid: &str) -> Result<()> {
        self.core.unregister(uid, None, Waits::UnlessCircular, None, None).map(drop)
    }

    /// Unregisters `uid` after letting it deliver what it holds. At once,
    /// as with [`unregister`](Self::unregister), the node leaves the
    /// routes (nothing new reaches it; its uid is free) and the others
    /// hear `node_left`. Its fiber then delivers its waiting events, root
    /// and user, retrying failures under its policy, until none is left,
    /// the node is found disconnected, or `timeout` passes; then it stops
    /// after its current call. What is left goes to another member of its
    /// group, else it is dropped and reported, as after `unregister`.
    ///
    /// Returns the node's final counters, where nothing is pending any
    /// more: `accepted = delivered + dropped + dead_lettered`, the events
    /// handed to another member counted as dropped here (and accepted
    /// there). From inside a callback or hook of this director it does
    /// not wait: the drain runs on (still bounded by `timeout`) and the
    /// counters are those of the moment. A close of the director during
    /// the drain stops it at the close's deadline; what is left then is
    /// counted in the close's result and stays pending here.
    pub fn unregister_draining(&self, uid: &str, timeout: Duration) -> Result<NodeStats> {
        self.core.unregister(uid, None, Waits::OutsideCallbacks, Some(timeout), None)
    }

    /// [`unregister`](Self::unregister) of `uid` only while it is still
    /// the node registered as `registration` (told to the `admit` of
    /// [`register_admitted`](Self::register_admitted)), else
    /// `UnknownNode`, changing nothing: the bus ends its own node, never
    /// one that took its uid after an unregister straight on the director.
    /// Returns the node's counters when it returns: its final ones where it
    /// waited (nothing pending: what it held is counted dropped).
    #[doc(hidden)]
    pub fn unregister_registration(&self, uid: &str, registration: Registration) -> Result<NodeStats> {
        self.core.unregister(uid, Some(registration), Waits::OutsideCallbacks, None, None)
    }

    /// [`unregister_draining`](Self::unregister_draining) of `uid` only
    /// while it is still the node registered as `registration` (else
    /// `UnknownNode`, changing nothing), whose drain also ends by `cut`'s
    /// deadline, whether the cut comes before the drain starts or during
    /// it: the bus's `off`, whose drain the bus's close cuts short at its
    /// own deadline. The cut reaches only drains started with it, so never
    /// a node that took the uid since.
    pub(crate) fn unregister_registration_draining(
        &self,
        uid: &str,
        registration: Registration,
        timeout: Duration,
        cut: &DrainCut,
    ) -> Result<NodeStats> {
        self.core.unregister(uid, Some(registration), Waits::OutsideCallbacks, Some(timeout), Some(cut))
    }

    /// [`unregister`](Self::unregister) that never waits for the node's
    /// callback in flight, as from inside a callback: the node is out of
    /// the routes (no event reaches it any more, its uid is free to
    /// register again) when this returns; right after its current callback
    /// returns, its pending events are handed on or dropped as by
    /// `unregister` and the node value is dropped. For a caller
    /// that the callback may be waiting for (a binding on the thread
    /// that runs the event loop an async callback waits on), where
    /// `unregister` would never return.
    pub fn unregister_no_wait(&self, uid: &str) -> Result<()> {
        self.core.unregister(uid, None, Waits::Never, None, None).map(drop)
    }

    /// [`unregister_draining`](Self::unregister_draining) that never waits,
    /// for the callers of [`unregister_no_wait`](Self::unregister_no_wait):
    /// the drain runs on, bounded by `timeout`, and the counters returned
    /// are those of the moment.
    pub fn unregister_draining_no_wait(&self, uid: &str, timeout: Duration) -> Result<NodeStats> {
        self.core.unregister(uid, None, Waits::Never, Some(timeout), None)
    }

    /// Adds a topic pattern to a node's subscription.
    pub fn subscribe(&self, uid: &str, pattern: &str) -> Result<()> {
        self.core.subscribe(uid, pattern)
    }

    /// Broadcasts to every subscriber of the topic but the source (one
    /// member per group). Returns the event id.
    pub fn emit(&self, msg: Message<'_>) -> Result<u64> {
        self.core.emit(msg, Wait::Yes)
    }

    /// Emits every message of `msgs`, in order, as that many
    /// [`emit`](Self::emit)s would, and returns their ids, which are
    /// consecutive. Each node's events of the call are stored in its lane
    /// with one claim and one push, and events that reach the same nodes
    /// share that run, so a producer with events in hand pays per node
    /// what `emit` pays per node and event. An unknown source refuses the
    /// whole call. Under the `block` policy it is all or nothing: room for
    /// all of a node's events of the call is reserved in every target, up
    /// to `block_timeout`, or the call fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull) having accepted
    /// nothing; more events for one `block` node than its queue holds are
    /// refused with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    /// Those two refusals come after routing and consume the call's ids,
    /// as a timed-out `emit` consumes its one. Under the other policies a
    /// node whose lane lacks room for its run takes the events one by one
    /// under its policy, as from `emit`.
    pub fn emit_many<'m>(&self, msgs: impl IntoIterator<Item = Message<'m>>) -> Result<std::ops::Range<u64>> {
        self.core.emit_many(msgs, Wait::Yes)
    }

    /// [`emit_many`](Self::emit_many) that waits for room until `deadline`,
    /// as [`emit_until`](Self::emit_until) does.
    pub fn emit_many_until<'m>(
        &self,
        msgs: impl IntoIterator<Item = Message<'m>>,
        deadline: Instant,
    ) -> Result<std::ops::Range<u64>> {
        self.core.emit_many(msgs, Wait::Until(deadline))
    }

    /// Sends to exactly `target`, whatever its subscription.
    pub fn emit_to(&self, target: &str, msg: Message<'_>) -> Result<u64> {
        self.core.emit_to(target, msg, Wait::Yes)
    }

    /// [`emit`](Self::emit) routed by testing every node's patterns in
    /// turn, as routing did before the topic index: the same targets, at a
    /// cost that grows with the number of nodes. For the scale benchmark's
    /// comparison; not a stable API.
    #[doc(hidden)]
    pub fn emit_scanning(&self, msg: Message<'_>) -> Result<u64> {
        self.core.emit_scanning(msg)
    }

    /// [`emit`](Self::emit) that waits for room until `deadline` rather
    /// than for the director's `block_timeout`: where a target under the
    /// `block` policy is still full at `deadline`, it fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull) and nothing is
    /// accepted anywhere, as a timed-out `emit`; a `deadline` already past
    /// makes it [`try_emit`](Self::try_emit). Under the other policies it
    /// is `emit`. For a caller that waits in slices and does other work
    /// between them, all the while changing nothing until one succeeds (a
    /// binding that runs its language's signal handlers: the Python
    /// module's emit, on the main thread).
    pub fn emit_until(&self, msg: Message<'_>, deadline: Instant) -> Result<u64> {
        self.core.emit(msg, Wait::Until(deadline))
    }

    /// [`emit_to`](Self::emit_to) that waits for room until `deadline`, as
    /// [`emit_until`](Self::emit_until).
    pub fn emit_to_until(&self, target: &str, msg: Message<'_>, deadline: Instant) -> Result<u64> {
        self.core.emit_to(target, msg, Wait::Until(deadline))
    }

    /// [`emit`](Self::emit) that never waits: where a target under the
    /// `block` policy is full, it fails at once with
    /// [`Error::QueueFull`](crate::Error::QueueFull) and nothing is
    /// accepted anywhere. Under the other policies it is `emit`. For
    /// callers that must not block here (an async task, or a Python thread
    /// holding the GIL the delivery threads need) and wait elsewhere.
    pub fn try_emit(&self, msg: Message<'_>) -> Result<u64> {
        self.core.emit(msg, Wait::No)
    }

    /// [`emit_to`](Self::emit_to) that never waits, as
    /// [`try_emit`](Self::try_emit).
    pub fn try_emit_to(&self, target: &str, msg: Message<'_>) -> Result<u64> {
        self.core.emit_to(target, msg, Wait::No)
    }

    /// Sends a root (control) event to every node.
    pub fn emit_root(&self, action: &str, payload: impl Into<Bytes>) -> Result<u64> {
        self.core.emit_root(None, action, payload.into(), None)
    }

    /// Sends a root (control) event to one node.
    pub fn emit_root_to(&self, target: &str, action: &str, payload: impl Into<Bytes>) -> Result<u64> {
        self.core.emit_root(Some(target), action, payload.into(), None)
    }

    /// [`emit_root`](Self::emit_root) with the payload's content type,
    /// which the nodes see as [`Event::content_type`](crate::Event::content_type)
    /// (a root event from `emit_root` has none), as a user event's comes
    /// from [`Message::content_type`].
    pub fn emit_root_typed(
        &self,
        action: &str,
        payload: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<u64> {
        self.core.emit_root(None, action, payload.into(), Some(content_type))
    }

    /// [`emit_root_to`](Self::emit_root_to) with the payload's content type,
    /// as [`emit_root_typed`](Self::emit_root_typed).
    pub fn emit_root_to_typed(
        &self,
        target: &str,
        action: &str,
        payload: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<u64> {
        self.core.emit_root(Some(target), action, payload.into(), Some(content_type))
    }

    /// Resumes delivery to a node at once and resets its retry backoff.
    pub fn node_connected(&self, uid: &str) -> Result<()> {
        self.core.set_connected(uid, true)
    }

    /// Pauses delivery to a node; its fiber keeps events (bounded).
    pub fn node_disconnected(&self, uid: &str) -> Result<()> {
        self.core.set_connected(uid, false)
    }

    /// A consistent snapshot of a node's counters; also works after close.
    pub fn stats(&self, uid: &str) -> Result<NodeStats> {
        self.stats_where(uid, None)
    }

    /// [`stats`](Self::stats) of `uid` only while it is the node
    /// registered as `registration`, else `UnknownNode` (see
    /// [`unregister_registration`](Self::unregister_registration)).
    #[doc(hidden)]
    pub fn stats_of(&self, uid: &str, registration: Registration) -> Result<NodeStats> {
        self.stats_where(uid, Some(registration))
    }

    /// The settings node `uid` runs with: its own where it gave them at
    /// registration, else the director's (see [`NodeSettings`]).
    pub fn node_settings(&self, uid: &str) -> Result<NodeSettings> {
        self.core.check_unforked()?;
        let routes = self.core.routes();
        let route = routes.find(uid).ok_or_else(|| Error::UnknownNode(uid.to_owned()))?;
        Ok(route.fiber.settings())
    }

    fn stats_where(&self, uid: &str, only: Option<Registration>) -> Result<NodeStats> {
        self.core.check_unforked()?;
        let routes = self.core.routes();
        let route = routes
            .find(uid)
            .filter(|r| only.is_none_or(|only| r.fiber.registration == only))
            .ok_or_else(|| Error::UnknownNode(uid.to_owned()))?;
        Ok(route.fiber.stats())
    }

    /// The registered uids, sorted (none in a process forked after the
    /// director was made, where it takes no calls).
    pub fn nodes(&self) -> Vec<String> {
        if self.core.check_unforked().is_err() {
            return Vec::new();
        }
        self.core.routes().nodes.iter().map(|r| r.fiber.uid.to_string()).collect()
    }

    /// The trust token root events carry.
    pub fn trust_token(&self) -> &str {
        &self.core.cfg.trust_token
    }

    /// True once `close` has begun.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Stops accepting, drains every fiber until `timeout`, waits for
    /// callbacks in flight, joins every thread, and returns the number of
    /// events left undelivered. Refused with `Reentrant` from inside one of
    /// this director's callbacks or hooks; `Closed` when already closed.
    ///
    /// With async nodes on a caller's runtime
    /// ([`DirectorBuilder::runtime`](crate::DirectorBuilder::runtime)):
    /// refused with `Reentrant` too, changing nothing, on the thread of a
    /// current-thread runtime (inside its `block_on`, a `#[tokio::test]`
    /// body or a task on it), whose async nodes could only run once this
    /// returned; from a `spawn_blocking` thread of it, or any other thread,
    /// it works. Once that runtime has shut down, the nodes' workers are
    /// gone and this returns at once, their events counted undelivered.
    pub fn close(&self, timeout: Duration) -> Result<u64> {
        self.core.close(timeout)
    }

    /// Whether this thread may wait for the director's callbacks to
    /// return: not inside one of its callbacks or hooks, nor on its
    /// worker (where `close` and `unregister` do not wait either).
    #[doc(hidden)]
    pub fn can_wait(&self) -> bool {
        !self.core.closing_here()
    }

    /// Whether `close` would start from this thread now: `Reentrant` inside
    /// one of this director's callbacks or hooks, or where `close` could
    /// not wait for its async nodes (see [`close`](Self::close)), `Closed`
    /// once closed. A
    /// layer that must undo something of its own before closing (a
    /// fabric, a binding's close deadline) asks first.
    pub fn check_close(&self) -> Result<()> {
        self.core.check_unforked()?;
        if self.core.closing_here() {
            Err(Error::Reentrant)
        } else if self.is_closed() {
            Err(Error::Closed)
        } else if !self.core.may_wait_on_runtime_for_all() {
            Err(Error::Reentrant)
        } else {
            Ok(())
        }
    }
}
