//! Remote events: how the distributed layer hands an event that crossed a
//! broker (or a local emit whose grouped share goes through the broker) to
//! this director's fibers.
//!
//! Each call routes over the current snapshot, as `emit` does, but within
//! one [`Scope`] only, so the layer can split an emit into its local part
//! (ungrouped subscribers) and its broker part (one member per group across
//! all processes). The source of a remote event need not be registered
//! here: it is excluded by uid like a local source.

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::director::emit::Wait;
use crate::director::Director;
use crate::event::{Event, EventKind};
use crate::fiber::lane::Overflow;
use crate::fiber::Fiber;
use crate::Result;

/// Which local nodes an injected event reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// Every ungrouped subscriber of the topic but the source.
    Ungrouped,
    /// One member of this group (by key hash, else round-robin).
    Group(&'a str),
    /// Exactly this node, if it is registered here.
    Target(&'a str),
    /// A root event to every node.
    AllRoot,
}

/// The fibers an injected event goes to: one for a group or a target, a
/// few for a broadcast, held inline.
type Targets = SmallVec<[Arc<Fiber>; 8]>;

/// What an injected user event does where a target under `block` is still
/// full when its wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Pushed under the lane's rule (it drops the newest): a remote event
    /// cannot be refused, and a fabric's `emit` behaves as one.
    Push,
    /// Reaches no node: the inject fails with `QueueFull`, having reserved
    /// room in every `block` target before pushing anywhere (all or
    /// nothing, as a local `emit`).
    Refuse,
}

/// What became of an injected event.
#[derive(Debug, Default)]
pub(crate) struct Injected {
    /// How many local fibers took it (0: no event was made).
    pub(crate) reached: usize,
    /// The event, watched without being kept alive: once no fiber holds it
    /// any more, every one of them has delivered, dropped or dead-lettered
    /// it (a failed batch is held for its retry).
    pub(crate) event: Weak<Event>,
}

/// An event to inject: as it came off the wire, or the local share of a
/// fabric emit.
#[derive(Debug, Clone)]
pub(crate) struct Remote<'a> {
    pub(crate) kind: EventKind,
    pub(crate) topic: &'a str,
    pub(crate) source: Option<&'a str>,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Bytes,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) timestamp_ms: Option<i64>,
    /// The emitting layer's host data, for an emit of this process (a
    /// message from the broker has none).
    pub(crate) extension: Option<crate::event::Extension>,
}

impl Director {
    /// Routes `remote` to the local nodes `scope` selects (none: no event
    /// is made and no event id used). Fails only when closed.
    pub(crate) fn inject(&self, remote: Remote<'_>, scope: Scope<'_>) -> Result<Injected> {
        self.inject_with(remote, scope, Wait::Yes, WhenFull::Push)
    }

    /// [`inject`](Self::inject) that never waits: where a target under
    /// `block` is full, it fails with `QueueFull` and the event reaches no
    /// node (a user event; root events never wait).
    pub(crate) fn try_inject(&self, remote: Remote<'_>, scope: Scope<'_>) -> Result<Injected> {
        self.inject_with(remote, scope, Wait::No, WhenFull::Refuse)
    }

    /// [`inject`](Self::inject) that waits for room in `block` targets as
    /// `wait` says, and then does what `when_full` says (the fabric's emits).
    pub(crate) fn inject_with(
        &self,
        remote: Remote<'_>,
        scope: Scope<'_>,
        wait: Wait,
        when_full: WhenFull,
    ) -> Result<Injected> {
        let core = &self.core;
        core.check_open()?;
        let routes = core.routes();
        let (topic, key, source) = (remote.topic, remote.key.as_deref(), remote.source);
        let mut targets = Targets::new();
        match scope {
            Scope::Ungrouped => {
                routes.for_each_ungrouped(topic, source, |f| targets.push(f.clone()));
            }
            Scope::Group(group) => {
                if let Some(f) = routes.heir(group, topic, key, source.unwrap_or("")) {
                    targets.push(f.clone());
                }
            }
            Scope::Target(uid) => {
                if let Some(r) = routes.find(uid) {
                    targets.push(r.fiber.clone());
                }
            }
            Scope::AllRoot => targets.extend(routes.nodes.iter().map(|r| r.fiber.clone())),
        }
        if targets.is_empty() {
            return Ok(Injected::default());
        }
        let root = remote.kind == EventKind::Root;
        let mut event = core.make_event(
            remote.kind,
            topic,
            source.map(super::emit::intern_source),
            remote.key.clone(),
            remote.payload.clone(),
        );
        {
            // Freshly made: the only reference, so this never clones.
            let e: &mut Event = Arc::make_mut(&mut event);
            e.content_type = remote.content_type.map(Arc::from);
            if let Some(ts) = remote.timestamp_ms {
                e.timestamp_ms = ts;
            }
            e.extension = remote.extension.clone();
        }
        if when_full == WhenFull::Refuse && !root {
            let all: SmallVec<[&Arc<Fiber>; 8]> = targets.iter().collect();
            core.deliver_all(&all, &event, wait)?;
            return Ok(Injected { reached: targets.len(), event: Arc::downgrade(&event) });
        }
        let deadline = wait.deadline(core.cfg.block_timeout).unwrap_or_else(Instant::now);
        let mut reached = 0;
        for f in &targets {
            let taken = if root {
                core.push(f, event.clone(), true);
                true
            } else if f.overflow == Overflow::Block {
                // Back-pressure: wait for room (bounded), then accept; a
                // timeout pushes under the lane's rule, and a target that
                // left meanwhile hands the event to another group member.
                let lane = f.user_lane_for(&event);
                (f.reserve(lane, deadline) == Some(true) && f.accept_reserved(event.clone(), lane))
                    || core.push_user(f, &event)
            } else {
                core.push_user(f, &event)
            };
            reached += usize::from(taken);
        }
        Ok(Injected { reached, event: Arc::downgrade(&event) })
    }
}

impl Director {
    /// Whether a node of consumer group `group` is registered here.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.core.routes().has_group(group)
    }

    /// Whether `source` is a member of `group` here whose subscription
    /// matches `topic` (the one member a group pick must skip).
    pub(crate) fn is_matching_member(&self, group: &str, topic: &str, source: &str) -> bool {
        let routes = self.core.routes();
        routes
            .find(source)
            .is_some_and(|r| r.fiber.group.as_deref() == Some(group) && r.subscription.matches(topic))
    }

    /// The consumer groups of the registered nodes, sorted, without repeats.
    pub(crate) fn local_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .core
            .routes()
            .nodes
            .iter()
            .filter_map(|r| r.fiber.group.as_deref().map(str::to_owned))
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Told of every change of the routes from now on (see
    /// `Core::routes_changed`).
    pub(crate) fn routes_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.core.routes_changed()
    }

    /// Whether `uid` is registered here.
    pub(crate) fn has_node(&self, uid: &str) -> bool {
        self.core.routes().find(uid).is_some()
    }

    /// The signal of workers letting delivered events go.
    pub(crate) fn released(&self) -> &super::released::Released {
        &self.core.released
    }
}
