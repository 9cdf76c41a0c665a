//! Joining and leaving: registration with the current-state pull,
//! unregistration with hand-off of pending events to the node's group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::director::core::Core;
use crate::director::drain::DrainCut;
use crate::director::emit::Notices;
use crate::director::routing::{Route, Routes};
use crate::director::{context, waits};
use crate::event::{EventKind, NODE_JOINED, NODE_LEFT, PULL_CURRENT_STATE};
use crate::fiber::inbox::MAX_CAPACITY;
use crate::fiber::state::{FiberConfig, Mode, State};
use crate::fiber::{spawn_workers, Fiber};
use crate::node::Callback;
use crate::topic::{Pattern, Subscription};
use crate::{Error, NodeOptions, NodeStats, Result, MAX_CONCURRENCY};

/// Checks a uid: 1 to 255 bytes of UTF-8 (guaranteed by `&str`).
pub(crate) fn validate_uid(uid: &str) -> Result<()> {
    if uid.is_empty() || uid.len() > 255 {
        return Err(Error::InvalidArgument(format!("uid must be 1 to 255 bytes, got {} bytes", uid.len())));
    }
    // C cannot name such a node, and a NUL in a thread name panics the
    // spawn (which left the node routed with no worker, so unregister and
    // close waited forever).
    if uid.contains('\0') {
        return Err(Error::InvalidArgument("uid must not contain a NUL byte".into()));
    }
    Ok(())
}

/// When an unregister waits for the node's last callback to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waits {
    /// Never (`unregister_no_wait`, for a caller the callback may wait for).
    Never,
    /// Not from inside a callback or hook of this director: the draining
    /// unregisters (their drain runs on, bounded by its timeout) and the
    /// bus's own.
    OutsideCallbacks,
    /// Also from inside another node's callback (SPEC 2.7), except where the
    /// wait could not end (`Core::may_wait_for`): `unregister`.
    UnlessCircular,
}

/// One registration of a node: unique in the process, so it tells the
/// node registered now under a uid from one registered under it before
/// (which an unregister ended) or after (a node that took the uid since).
/// A layer that registers nodes of its own (the bus) acts on its node by
/// uid and registration, never on whatever holds the uid.
///
/// Public but hidden for the Python binding, whose bus is written in
/// Python over its `Director` (see `Director::register_admitted`); not a
/// stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Registration(u64);

impl Registration {
    /// The registration's number (0: none), for a binding to hold.
    #[doc(hidden)]
    pub fn get(self) -> u64 {
        self.0
    }

    /// The registration numbered `n` (by [`Registration::get`]). A number
    /// that no registration has matches no node.
    #[doc(hidden)]
    pub fn from_number(n: u64) -> Self {
        Self(n)
    }
}

/// Registration numbers (0 is no registration, as `Registration::default`).
static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

impl Core {
    /// Registers a node. A refusal hands `callback` back, never called:
    /// on success the node's workers hold the only references to it, so
    /// that the unregister that drops theirs runs its destructor (the C
    /// layer keeps none of its own, SPEC 2.7).
    ///
    /// `admit` (when given) has the last word: it runs under the
    /// membership lock once every check has passed, before anything is
    /// changed, and its error refuses the registration. It is told the
    /// node's registration, by which the caller may later end exactly this
    /// node (`unregister` with `only`) or read its counters. A layer above
    /// (the bus) uses it to serialize its own close with the registration,
    /// as `close` is serialized with it here: whatever `admit` let in is
    /// routed before any unregister or close that takes the lock after it.
    /// It must be quick and call no user code (it holds up every
    /// registration, unregister and close of the director).
    pub(crate) fn register<C: Callback>(
        self: &Arc<Self>,
        uid: &str,
        callback: C,
        opts: NodeOptions,
        admit: Option<&dyn Fn(Registration) -> Result<()>>,
    ) -> Result<(), (Error, C)> {
        // After close every call is `Closed`, bad arguments or not (SPEC
        // 2.10); checked again under the lock, where it decides.
        if let Err(e) = self.check_open() {
            return Err((e, callback));
        }
        let (patterns, cfg) = match self.check_registration(uid, &opts) {
            Ok(checked) => checked,
            Err(e) => return Err((e, callback)),
        };
        let asynchronous = C::ASYNC;
        let outcome = {
            let _m = self.membership.lock();
            if let Err(e) = self.check_open() {
                return Err((e, callback));
            }
            let routes = self.routes();
            if routes.find(uid).is_some() {
                return Err((Error::DuplicateNode(uid.to_owned()), callback));
            }
            let registration = Registration(NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed));
            if let Some(Err(e)) = admit.map(|admit| admit(registration)) {
                return Err((e, callback));
            }
            let uid: Arc<str> = uid.into();
            let overflow = cfg.overflow;
            let seed = crate::fiber::retry::Jitter::seed_for(&uid);
            let batch_size = cfg.batch_size;
            let state = State::new(cfg, opts.connected, seed);
            let group = opts.group.as_deref().map(Arc::from);
            let mut fiber =
                Fiber::new(uid.clone(), registration, group, overflow, state, batch_size, asynchronous);
            fiber.hooks.on_dead_letter = opts.on_dead_letter.clone();
            let fiber = Arc::new(fiber);
            // The workers start held: they deliver nothing until `start`
            // below, so a registration refused because a later worker
            // could not be spawned has called nobody, and, never routed,
            // was reached by nothing.
            match spawn_workers(&fiber, callback, self) {
                Err((e, callback)) => Err((fiber, e, callback)),
                Ok(()) => {
                    // The peers are the others routed now; the payload is
                    // rendered from them when the pull leaves its lane
                    // (see `peers.rs`).
                    let pull = self.make_root(PULL_CURRENT_STATE, bytes::Bytes::new());
                    fiber.accept_first(pull, routes.peers());
                    // Routed after the pull, which no user event may
                    // precede, and before the workers may deliver, so that
                    // the node's first callback can already name it.
                    let route = Route { fiber: fiber.clone(), subscription: Subscription::new(patterns) };
                    self.set_routes(routes.with_added(route));
                    // `routes` is the others; announced under the lock,
                    // like a leave (see `announce`).
                    let owed = self.announce(&routes, &uid, NODE_JOINED);
                    fiber.start();
                    Ok(owed)
                }
            }
        };
        match outcome {
            Ok(owed) => self.run_notice_hooks(owed),
            Err((fiber, e, callback)) => {
                // Its workers, told to stop, exit without a call; joined
                // (with no lock held) before the node goes back, so that the
                // caller gets the only reference.
                fiber.join();
                return Err((Error::Resource(e.to_string()), callback));
            }
        }
        self.reap_unjoined();
        Ok(())
    }

    /// The checks of a registration that need no lock.
    fn check_registration(&self, uid: &str, opts: &NodeOptions) -> Result<(Vec<Pattern>, FiberConfig)> {
        validate_uid(uid)?;
        let patterns = opts.topics.iter().map(|p| Pattern::new(p)).collect::<Result<Vec<_>>>()?;
        let cfg = self.fiber_config(opts)?;
        if opts.group.as_deref() == Some("") {
            return Err(Error::InvalidArgument("group name must not be empty".into()));
        }
        Ok((patterns, cfg))
    }

    /// With membership events on, places `action` about `uid` in the root
    /// lane of every node of `routes` (the others). Called under the
    /// membership lock, at the change itself: sent after it, a leave
    /// (which first waits for the node's last callback) could reach the
    /// others after the re-registration of its uid. The hooks of what
    /// overflowed are returned, to run once the lock is released (SPEC 2.9).
    fn announce(&self, routes: &Routes, uid: &str, action: &str) -> Notices {
        if !self.cfg.membership_events {
            return Vec::new();
        }
        self.notify_members(routes, action, format!("{{\"uid\":{}}}", json_string(uid)).into())
    }

    /// Joins the fibers unregistered from inside a callback or hook (which
    /// could not wait for them) once their workers have exited with nothing
    /// pending. Until session 12 they were joined only at close: a
    /// long-lived director whose nodes unregister themselves (one-shot
    /// nodes, a bus `off` inside its handler) kept every exited thread's
    /// stack mapped, about two memory mappings per node, towards the
    /// kernel's limit. A fiber still pending stays for close to count.
    fn reap_unjoined(&self) {
        let now = Instant::now();
        let finished = |f: &Arc<Fiber>| f.wait_exited(Some(now)) && f.stats().pending == 0;
        let done: Vec<Arc<Fiber>> = {
            let mut unjoined = self.unjoined.lock();
            let (done, keep) = unjoined.drain(..).partition(finished);
            *unjoined = keep;
            done
        };
        if done.is_empty() {
            return;
        }
        for f in &done {
            f.join();
        }
        self.leaving.lock().retain(|f| !done.iter().any(|d| Arc::ptr_eq(f, d)));
    }

    fn fiber_config(&self, opts: &NodeOptions) -> Result<FiberConfig> {
        let queue_capacity = opts.queue_capacity.unwrap_or(self.cfg.queue_capacity);
        let root_capacity = opts.root_capacity.unwrap_or(self.cfg.root_capacity);
        if queue_capacity == 0 || root_capacity == 0 {
            return Err(Error::InvalidArgument("node capacities must be at least 1".into()));
        }
        for (name, v) in [("queue_capacity", queue_capacity), ("root_capacity", root_capacity)] {
            if v > MAX_CAPACITY {
                return Err(Error::InvalidArgument(format!("{name} must be at most {MAX_CAPACITY}")));
            }
        }
        if opts.concurrency == 0 || opts.concurrency > MAX_CONCURRENCY || opts.concurrency > queue_capacity {
            return Err(Error::InvalidArgument(format!(
                "concurrency must be 1 to {MAX_CONCURRENCY} and at most the queue capacity, got {}",
                opts.concurrency
            )));
        }
        let retry = opts.retry.clone().unwrap_or_else(|| self.cfg.retry.clone());
        retry.validate()?;
        Ok(FiberConfig {
            batch_size: self.cfg.batch_size,
            queue_capacity,
            root_capacity,
            overflow: opts.overflow.unwrap_or(self.cfg.overflow),
            retry,
            trust_token: self.cfg.trust_token.clone(),
            concurrency: opts.concurrency,
        })
    }

    fn make_root(&self, action: &str, payload: bytes::Bytes) -> Arc<crate::Event> {
        Arc::new(crate::Event {
            id: self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            kind: EventKind::Root,
            topic: action.into(),
            source: None,
            key: None,
            payload,
            trust_token: Some(self.cfg.trust_token.clone()),
            timestamp_ms: crate::director::core::now_ms(),
            content_type: None,
            extension: None,
        })
    }

    /// Removes `uid`. Waits for its last callback and destructor as
    /// `waits` says; where it does not, the fiber finishes on its own and
    /// is joined by a later register or unregister, else at close. With
    /// `only`, removes `uid` only while it is that registration (else
    /// `UnknownNode`, changing nothing).
    ///
    /// With `drain`, the node first delivers what it holds, for at most
    /// that long (its workers keep the deadline themselves), and the
    /// counters returned are its final ones once this waited; without, it
    /// stops after its current call. With a `cut` too, the drain also ends
    /// by the cut's deadline, even one set after this call has begun (see
    /// `DrainCut`). Returns the counters as they stand when this returns.
    pub(crate) fn unregister(
        &self,
        uid: &str,
        only: Option<Registration>,
        waits: Waits,
        drain: Option<Duration>,
        cut: Option<&DrainCut>,
    ) -> Result<NodeStats> {
        // Before the lock too: in a forked child it may be held for good.
        self.check_unforked()?;
        let (fiber, owed) = {
            let _m = self.membership.lock();
            self.check_open()?;
            let routes = self.routes();
            let fiber = routes
                .find(uid)
                .filter(|r| only.is_none_or(|only| r.fiber.registration == only))
                .ok_or_else(|| Error::UnknownNode(uid.to_owned()))?
                .fiber
                .clone();
            let rest = routes.without(uid);
            let owed = self.announce(&rest, uid, NODE_LEFT);
            self.set_routes(rest);
            // Under the lock that `close` takes to set `closed`: a close
            // from now on finds the node here (see `Core::close`).
            self.leaving.lock().push(fiber.clone());
            (fiber, owed)
        };
        match (drain.map(crate::time::deadline), cut) {
            (Some(t), Some(cut)) => cut.start(&fiber, t),
            (Some(t), None) => fiber.drain_until(t),
            (None, _) => fiber.set_mode(Mode::Stopped),
        }
        self.run_notice_hooks(owed);
        // Its runtime dropped its workers before the stop: nobody else
        // settles what it held.
        if std::mem::take(&mut fiber.lock().abandoned) {
            self.fiber_retired(&fiber);
        }
        match self.may_wait_for(&fiber, waits) {
            None => {
                // Stays in `leaving` too (as in `unjoined`) until close.
                self.unjoined.lock().push(fiber.clone());
            }
            Some(_edge) => {
                fiber.wait_exited(None);
                fiber.join();
                self.leaving.lock().retain(|f| !Arc::ptr_eq(f, &fiber));
            }
        }
        self.reap_unjoined();
        Ok(fiber.stats())
    }

    /// Whether this thread waits for `fiber`'s last callback (`Some`,
    /// holding the wait's edge in `waits` while it does, if it runs on a
    /// node's worker), or must not (`None`).
    fn may_wait_for(&self, fiber: &Arc<Fiber>, waits: Waits) -> Option<Option<waits::Waiting>> {
        let inside = self.closing_here();
        if !self.may_wait_on_runtime(fiber) {
            // Not even where the wait is otherwise kept (`UnlessCircular`):
            // it could never end. The node stops once its tasks next run.
            return None;
        }
        match waits {
            Waits::Never => return None,
            Waits::OutsideCallbacks if inside => return None,
            // An async node's task or a hook on an emitting thread: a
            // runtime thread must not block, and an emitting thread is in
            // the middle of an emit.
            Waits::UnlessCircular if inside && context::worker_fiber().is_none() => return None,
            _ => {}
        }
        match context::worker_fiber() {
            // The node's own worker, or one its callback waits for.
            Some(me) => waits::begin(me, Arc::as_ptr(fiber) as usize).map(Some),
            None => Some(None),
        }
    }

    /// The last worker of `fiber` has exited. After an unregister (not a
    /// close), its user events go to another member of its group, else they
    /// are dropped and reported; root events are always dropped.
    pub(crate) fn fiber_retired(&self, fiber: &Fiber) {
        if self.is_closed() {
            return;
        }
        let (user, root) = fiber.lock().take_leftovers();
        let routes = self.routes();
        for event in user {
            // The leaver is out of the routes already; the event's source
            // is not, and never takes its own event (as on emit).
            let source = event.source.as_deref().unwrap_or("");
            let heir = fiber
                .group
                .as_deref()
                .and_then(|g| routes.heir(g, &event.topic, event.key.as_deref(), source));
            // The heir may itself be leaving: push_user then tries another
            // member, and an event no member takes is a counted drop.
            let taken = heir.is_some_and(|h| self.push_user(h, &event));
            if !taken {
                self.report_unregistered_drop(&fiber.uid, &event);
            }
        }
        for event in root {
            self.report_unregistered_drop(&fiber.uid, &event);
        }
    }

    pub(crate) fn subscribe(&self, uid: &str, pattern: &str) -> Result<()> {
        self.check_open()?;
        let pattern = Pattern::new(pattern)?;
        let _m = self.membership.lock();
        self.check_open()?;
        let routes = self.routes();
        let route = routes.find(uid).ok_or_else(|| Error::UnknownNode(uid.to_owned()))?;
        let sub = route.subscription.with(pattern);
        self.set_routes(routes.with_subscription(uid, sub));
        Ok(())
    }

    pub(crate) fn set_connected(&self, uid: &str, on: bool) -> Result<()> {
        self.check_open()?;
        let routes = self.routes();
        let route = routes.find(uid).ok_or_else(|| Error::UnknownNode(uid.to_owned()))?;
        route.fiber.set_connected(on);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::fiber::FAIL_SPAWN;
    use crate::{Batch, Director, Error, NodeError, NodeOptions, NODE_JOINED, PULL_CURRENT_STATE};

    /// A registration whose second worker thread cannot be spawned is
    /// refused with `Resource`, and a refused call changes nothing: the
    /// node is never called (its first worker used to deliver the pull
    /// first), and the others hear nothing of it.
    #[test]
    fn a_registration_refused_by_a_failed_spawn_never_calls_the_node() {
        let d = Director::builder().membership_events(true).build().unwrap();
        let heard = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let h = heard.clone();
        d.register("obs", move |b: &Batch| -> Result<(), NodeError> {
            h.lock().extend(b.iter().map(|e| e.topic().to_owned()));
            Ok(())
        })
        .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let node = move |_: &Batch| -> Result<(), NodeError> {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        FAIL_SPAWN.set(Some(1));
        let refused = d.register_with("x", node, NodeOptions::default().concurrency(2));
        FAIL_SPAWN.set(None);
        assert!(matches!(refused, Err(Error::Resource(_))), "{refused:?}");
        // Its workers are joined by now: no call can still come.
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the refused node was called");
        assert_eq!(d.nodes(), ["obs"]);
        d.register("x", |_: &Batch| -> Result<(), NodeError> { Ok(()) }).unwrap();
        assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
        assert_eq!(*heard.lock(), [PULL_CURRENT_STATE, NODE_JOINED], "one join, of the accepted x");
    }

    /// The same refusal of a shared node hands it back, uncalled, as the
    /// only reference (the C layer then disarms its destructor).
    #[test]
    fn a_shared_node_refused_by_a_failed_spawn_comes_back_alone() {
        let d = Director::new().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let node: Arc<dyn crate::Node> = Arc::new(move |_: &Batch| -> Result<(), NodeError> {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        FAIL_SPAWN.set(Some(2));
        let refused = d.register_shared("x", node, NodeOptions::default().concurrency(3));
        FAIL_SPAWN.set(None);
        let refused = refused.unwrap_err();
        assert!(matches!(refused.error, Error::Resource(_)), "{refused:?}");
        assert_eq!(Arc::strong_count(&refused.node), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(d.nodes().is_empty());
    }
}
