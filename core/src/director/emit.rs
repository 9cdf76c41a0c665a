//! The emit paths: build the event once, route it over the current
//! snapshot, and push a shared reference into each target fiber.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::director::core::{now_ms, Core};
use crate::director::routing::Routes;
use crate::event::{Event, EventKind, Message};
use crate::fiber::inbox::Claim;
use crate::fiber::lane::Overflow;
use crate::fiber::state::Effects;
use crate::fiber::{Fiber, Offered, Wakes};
use crate::{Error, Result};

/// Overflow effects of membership notices, with hooks still to run.
pub(crate) type Notices = Vec<(Arc<Fiber>, Effects)>;

type LastString = std::cell::RefCell<Option<Arc<str>>>;

thread_local! {
    static LAST_TOPIC: LastString = const { std::cell::RefCell::new(None) };
    static LAST_SOURCE: LastString = const { std::cell::RefCell::new(None) };
}

/// `s` as a shared string, reusing the one this thread made last in
/// `slot`: an emitter usually streams on one topic (and an injecting
/// thread from one remote source), and this saves an allocation (freed on
/// another thread, which is what costs) per event.
fn intern_in(slot: &'static std::thread::LocalKey<LastString>, s: &str) -> Arc<str> {
    slot.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(t) if **t == *s => t.clone(),
            _ => {
                let t: Arc<str> = s.into();
                *last = Some(t.clone());
                t
            }
        }
    })
}

/// Whether an emit may wait for room in a target under the `block` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Up to `block_timeout` (`emit`, `emit_to`).
    Yes,
    /// Not at all: a full target fails the emit at once (`try_emit`).
    No,
    /// Up to the caller's instant (`emit_until`, `emit_to_until`); one
    /// already past is [`Wait::No`].
    Until(Instant),
}

impl Wait {
    /// The instant a wait that began now ends, `block_timeout` being the
    /// director's; `None` for no wait at all. Read only once some lane is
    /// full, so that an emit with room never reads the clock.
    pub(crate) fn deadline(self, block_timeout: Duration) -> Option<Instant> {
        match self {
            Wait::Yes => Some(crate::time::deadline(block_timeout)),
            Wait::No => None,
            Wait::Until(deadline) => Some(deadline),
        }
    }
}

fn intern(topic: &str) -> Arc<str> {
    intern_in(&LAST_TOPIC, topic)
}

/// The source uid of a remote event as a shared string (see `intern_in`).
pub(crate) fn intern_source(uid: &str) -> Arc<str> {
    intern_in(&LAST_SOURCE, uid)
}

impl Core {
    pub(crate) fn make_event(
        &self,
        kind: EventKind,
        topic: &str,
        source: Option<Arc<str>>,
        key: Option<Bytes>,
        payload: Bytes,
    ) -> Arc<Event> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.make_event_numbered((id, now_ms()), kind, topic, source, key, payload)
    }

    /// [`make_event`](Self::make_event) with the id the caller took and
    /// its timestamp.
    fn make_event_numbered(
        &self,
        (id, timestamp_ms): (u64, i64),
        kind: EventKind,
        topic: &str,
        source: Option<Arc<str>>,
        key: Option<Bytes>,
        payload: Bytes,
    ) -> Arc<Event> {
        self.recycler.make(Event {
            id,
            kind,
            topic: intern(topic),
            source,
            key,
            payload,
            trust_token: (kind == EventKind::Root).then(|| self.cfg.trust_token.clone()),
            timestamp_ms,
            content_type: None,
            extension: None,
        })
    }

    fn user_event(&self, msg: Message<'_>, source: Option<Arc<str>>) -> Arc<Event> {
        self.user_event_numbered((self.ids.fetch_add(1, Ordering::Relaxed), now_ms()), msg, source)
    }

    /// [`user_event`](Self::user_event) with the id the caller took and
    /// its timestamp.
    pub(super) fn user_event_numbered(
        &self,
        stamp: (u64, i64),
        msg: Message<'_>,
        source: Option<Arc<str>>,
    ) -> Arc<Event> {
        let mut event =
            self.make_event_numbered(stamp, EventKind::User, &msg.topic, source, msg.key, msg.payload);
        if msg.content_type.is_some() || msg.extension.is_some() {
            // Freshly made: the only reference, so this never clones.
            let e = Arc::make_mut(&mut event);
            e.content_type = msg.content_type;
            e.extension = msg.extension;
        }
        event
    }

    pub(super) fn source_of(routes: &Routes, source: Option<&str>) -> Result<Option<Arc<str>>> {
        match source {
            None => Ok(None),
            Some(uid) => match routes.find(uid) {
                Some(r) => Ok(Some(r.fiber.uid.clone())),
                None => Err(Error::UnknownNode(uid.to_owned())),
            },
        }
    }

    /// Broadcast (all matching subscribers but the source; one per group).
    pub(crate) fn emit(&self, msg: Message<'_>, wait: Wait) -> Result<u64> {
        self.emit_routed::<false>(msg, wait)
    }

    /// [`emit`](Self::emit) routed by testing every node's patterns (the
    /// routing before the topic index), for the scale benchmark to compare.
    pub(crate) fn emit_scanning(&self, msg: Message<'_>) -> Result<u64> {
        self.emit_routed::<true>(msg, Wait::Yes)
    }

    fn emit_routed<const SCAN: bool>(&self, msg: Message<'_>, wait: Wait) -> Result<u64> {
        self.check_open()?;
        let routes = self.routes();
        let source = Self::source_of(&routes, msg.source.as_deref())?;
        let event = self.user_event(msg, source);
        let (topic, key, src) = (&*event.topic, event.key.as_deref(), event.source.as_deref());
        if routes.any_block {
            let mut targets: SmallVec<[&Arc<Fiber>; 16]> = SmallVec::new();
            routes.targets::<SCAN>(topic, key, src, |f| targets.push(f));
            self.deliver_all(&targets, &event, wait)?;
        } else {
            let mut wakes = Wakes::default();
            let (mut targets, mut taken) = (0, false);
            routes.targets::<SCAN>(topic, key, src, |f| {
                targets += 1;
                taken |= self.push_user_into(f, &event, &mut wakes);
            });
            self.refused_by_all(targets > 0 && !taken)?;
        }
        Ok(event.id)
    }

    /// `Closed` when every target refused an event (`refused`) because the
    /// director closed meanwhile: the emit lost the race with `close`, and
    /// an `Ok` would report an event that no node counts. Targets that
    /// refused for having left (unregistered since the routing snapshot)
    /// were no longer subscribers: that emit reached the subscribers
    /// there were.
    pub(super) fn refused_by_all(&self, refused: bool) -> Result<()> {
        if refused {
            self.check_open()?;
        }
        Ok(())
    }

    /// Unicast to `target`, whatever its subscription.
    pub(crate) fn emit_to(&self, target: &str, msg: Message<'_>, wait: Wait) -> Result<u64> {
        self.check_open()?;
        let routes = self.routes();
        let source = Self::source_of(&routes, msg.source.as_deref())?;
        let unknown = || Error::UnknownNode(target.to_owned());
        let fiber = &routes.find(target).ok_or_else(unknown)?.fiber;
        let event = self.user_event(msg, source);
        if !self.deliver_all(&[fiber], &event, wait)? {
            // The target left while the emit waited for room (or just
            // before it pushed), with no group member to take its event.
            return Err(unknown());
        }
        Ok(event.id)
    }

    /// Root broadcast to every node (`target == None`) or to one, labelled
    /// with `content_type` when given.
    pub(crate) fn emit_root(
        &self,
        target: Option<&str>,
        action: &str,
        payload: Bytes,
        content_type: Option<&str>,
    ) -> Result<u64> {
        self.check_open()?;
        let routes = self.routes();
        let only = match target {
            Some(uid) => Some(routes.find(uid).ok_or_else(|| Error::UnknownNode(uid.to_owned()))?),
            None => None,
        };
        let mut event = self.make_event(EventKind::Root, action, None, None, payload);
        if let Some(ct) = content_type {
            // Freshly made: the only reference, so this never clones.
            Arc::make_mut(&mut event).content_type = Some(Arc::from(ct));
        }
        match only {
            Some(r) => self.push(&r.fiber, event.clone(), true),
            None => routes.nodes.iter().for_each(|r| self.push(&r.fiber, event.clone(), true)),
        }
        Ok(event.id)
    }

    /// Places a membership notice in the root lane of every node of
    /// `routes` (which leave out the node concerned). Called under the
    /// membership lock, so that each node's root lane holds the notices in
    /// the order of the changes; the hooks of what overflowed are returned
    /// for the caller to run once it holds no lock ([`Core::run_notice_hooks`]).
    pub(crate) fn notify_members(&self, routes: &Routes, action: &str, payload: Bytes) -> Notices {
        let event = self.make_event(EventKind::Root, action, None, None, payload);
        let mut owed = Vec::new();
        for r in routes.nodes.iter() {
            if let Some(fx) = r.fiber.accept_root(event.clone()).filter(Effects::has_hooks) {
                owed.push((r.fiber.clone(), fx));
            }
        }
        owed
    }

    /// Runs the hooks `notify_members` left owed. No lock may be held.
    pub(crate) fn run_notice_hooks(&self, owed: Notices) {
        for (fiber, fx) in owed {
            self.run_hooks(&fiber, fx);
        }
    }

    /// Pushes under a non-blocking policy, reporting a drop if one happens.
    pub(crate) fn push(&self, fiber: &Fiber, event: Arc<Event>, root: bool) {
        let fx = if root {
            fiber.accept_root(event)
        } else {
            match fiber.offer(event) {
                Offered::Overflowed(fx) => Some(fx),
                Offered::Stored | Offered::Refused => None,
            }
        };
        if let Some(fx) = fx {
            self.run_hooks(fiber, fx);
        }
    }

    /// Pushes a user event to `fiber`. A group member unregistered since
    /// the caller took its routing snapshot refuses the event; it then goes
    /// to another member picked from a fresh snapshot, so a concurrent
    /// unregister never makes a group lose an event. False when no fiber
    /// took it (and so none counts it): the caller decides what that means.
    pub(crate) fn push_user(&self, fiber: &Arc<Fiber>, event: &Arc<Event>) -> bool {
        self.push_user_into(fiber, event, &mut Wakes::default())
    }

    /// [`push_user`](Self::push_user) that leaves the wake-up check of the
    /// first offer to `wakes` (a broadcast makes them together; see
    /// [`Wakes`]). Rerouted offers, rare, check at once.
    pub(crate) fn push_user_into<'a>(
        &self,
        first: &'a Arc<Fiber>,
        event: &Arc<Event>,
        wakes: &mut Wakes<'a>,
    ) -> bool {
        const MAX_REROUTES: usize = 8;
        match first.offer_into(event.clone(), wakes) {
            Offered::Stored => return true,
            Offered::Overflowed(fx) => {
                // Hooks are user code: nobody's wake-up waits for them.
                wakes.flush();
                self.run_hooks(first, fx);
                return true;
            }
            Offered::Refused => {}
        }
        let mut fiber = first.clone();
        for _ in 1..MAX_REROUTES {
            let Some(group) = fiber.group.clone() else { return false };
            let routes = self.routes();
            let source = event.source.as_deref().unwrap_or("");
            match routes.heir(&group, &event.topic, event.key.as_deref(), source) {
                // A closing director refuses everywhere: the same pick ends it.
                Some(next) if !Arc::ptr_eq(next, &fiber) => fiber = next.clone(),
                _ => return false,
            }
            match fiber.offer(event.clone()) {
                Offered::Stored => return true,
                Offered::Overflowed(fx) => {
                    wakes.flush();
                    self.run_hooks(&fiber, fx);
                    return true;
                }
                Offered::Refused => {}
            }
        }
        false
    }

    /// Pushes a user event to every target; targets under `block` first get
    /// room reserved, and if any stays full past the wait's deadline
    /// (`block_timeout`, or the caller's with `Wait::Until`; full at all,
    /// with `Wait::No`) nothing is accepted anywhere and the
    /// call fails with `QueueFull`. True when some fiber took the event;
    /// `Closed` when none did because the director closed meanwhile (see
    /// `refused_by_all`).
    pub(crate) fn deliver_all(
        &self,
        targets: &[&Arc<Fiber>],
        event: &Arc<Event>,
        wait: Wait,
    ) -> Result<bool> {
        // The clock is read only when some lane is full.
        let mut deadline: Option<Option<Instant>> = None;
        let mut reserved: SmallVec<[(&Arc<Fiber>, usize); 16]> = SmallVec::new();
        // Targets that left meanwhile: their event goes to another group
        // member, but only once every reservation held (all or nothing).
        let mut left: SmallVec<[&Arc<Fiber>; 4]> = SmallVec::new();
        for &f in targets.iter().filter(|f| f.overflow == Overflow::Block) {
            let lane = f.user_lane_for(event);
            let got = match f.try_reserve(lane) {
                Claim::Room(_) => Some(true),
                Claim::Closed => None,
                Claim::Full => match *deadline.get_or_insert_with(|| wait.deadline(self.cfg.block_timeout)) {
                    Some(until) => f.reserve(lane, until),
                    None => Some(false),
                },
            };
            match got {
                Some(true) => reserved.push((f, lane)),
                None => left.push(f),
                Some(false) => {
                    for (g, lane) in reserved {
                        g.release(lane);
                    }
                    return Err(Error::QueueFull(f.uid.to_string()));
                }
            }
        }
        // Nothing waits from here on: the wake-ups are made together.
        let mut wakes = Wakes::default();
        let mut taken = false;
        for f in left {
            taken |= self.push_user_into(f, event, &mut wakes);
        }
        for (f, lane) in reserved {
            taken |= f.accept_reserved_into(event.clone(), lane, &mut wakes)
                || self.push_user_into(f, event, &mut wakes);
        }
        for &f in targets.iter().filter(|f| f.overflow != Overflow::Block) {
            taken |= self.push_user_into(f, event, &mut wakes);
        }
        drop(wakes);
        self.refused_by_all(!targets.is_empty() && !taken)?;
        Ok(taken)
    }
}
