//! The routing table: an immutable snapshot swapped on every membership or
//! subscription change, so emitters route without holding any lock while
//! they push into fibers. A new snapshot shares with the old one every
//! chunk of nodes, group and index that the change leaves alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

use super::key_hash::KeyHash;
use crate::director::chunked::{Chunked, Keyed};
use crate::director::index::TopicIndex;
use crate::director::peers::Peers;
use crate::fiber::lane::Overflow;
use crate::fiber::Fiber;
use crate::topic::Subscription;

/// FNV-1a: stable across runs and platforms, so a key keeps its member.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    #[cfg(test)]
    HASHED.set(HASHED.get() + 1);
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
thread_local! {
    /// Calls of [`stable_hash`] on this thread, for tests that count them.
    pub(crate) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// True when `uid` is the event's source. The source is usually the very
/// string of the node's route, so comparing addresses first skips a
/// string comparison per node per emit.
fn is_source(source: Option<&str>, uid: &str) -> bool {
    source.is_some_and(|s| std::ptr::eq(s, uid) || s == uid)
}

/// A node as routing sees it. Shared (`Arc<Route>`) by the node list, its
/// group and the topic index, and by every snapshot it is unchanged in.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) fiber: Arc<Fiber>,
    pub(crate) subscription: Subscription,
}

impl Keyed for Arc<Route> {
    fn key(&self) -> &str {
        &self.fiber.uid
    }
}

#[derive(Debug, Clone)]
struct Group {
    name: Arc<str>,
    /// In uid order.
    members: Chunked<Arc<Route>>,
    /// Round-robin position, kept while the group has members.
    cursor: Arc<AtomicUsize>,
}

impl Keyed for Arc<Group> {
    fn key(&self) -> &str {
        &self.name
    }
}

/// Nodes by uid, the consumer groups among them, and the topic index.
/// Each change makes a new snapshot that shares all it does not touch
/// (see `chunked.rs`): about n/64 + 64 pointer copies at n nodes, where
/// copying every route cost n deep copies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    pub(crate) nodes: Chunked<Arc<Route>>,
    groups: Chunked<Arc<Group>>,
    index: TopicIndex,
    /// The uids of `nodes` alone, for a newcomer to keep as its peers
    /// (see `peers.rs`) without keeping any route alive.
    uids: Peers,
    /// Nodes with the `block` policy.
    blocking: usize,
    /// Some node has the `block` policy (emits must then reserve room).
    pub(crate) any_block: bool,
}

impl Routes {
    pub(crate) fn find(&self, uid: &str) -> Option<&Route> {
        self.nodes.get(uid).map(|r| &**r)
    }

    /// The uids routed now, in order: a newcomer's peers (SPEC 2.7).
    pub(crate) fn peers(&self) -> Peers {
        self.uids.clone()
    }

    /// Whether some node is in a consumer group.
    pub(crate) fn has_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether some node is a member of `group`.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.get(group).is_some()
    }

    pub(crate) fn with_added(&self, route: Route) -> Routes {
        let mut routes = self.clone();
        routes.add(Arc::new(route));
        routes
    }

    pub(crate) fn without(&self, uid: &str) -> Routes {
        let mut routes = self.clone();
        routes.remove(uid);
        routes
    }

    pub(crate) fn with_subscription(&self, uid: &str, subscription: Subscription) -> Routes {
        let mut routes = self.clone();
        let Some(old) = self.nodes.get(uid) else { return routes };
        let new = Arc::new(Route { fiber: old.fiber.clone(), subscription });
        routes.index.remove(old);
        routes.index.add(&new);
        // In place, so that its group keeps its cursor.
        if let Some(name) = &new.fiber.group {
            routes.join(name, &new);
        }
        routes.nodes.insert(new);
        routes
    }

    /// Adds `route`, whose uid the caller found free.
    fn add(&mut self, route: Arc<Route>) {
        debug_assert!(self.nodes.get(&route.fiber.uid).is_none(), "{} routed twice", route.fiber.uid);
        self.index.add(&route);
        if let Some(name) = &route.fiber.group {
            self.join(name, &route);
        }
        self.blocking += usize::from(route.fiber.overflow == Overflow::Block);
        self.any_block = self.blocking > 0;
        self.uids.insert(route.fiber.uid.clone());
        self.nodes.insert(route);
    }

    fn remove(&mut self, uid: &str) {
        let Some(route) = self.nodes.remove(uid) else { return };
        self.uids.remove(uid);
        self.index.remove(&route);
        if let Some(name) = &route.fiber.group {
            if let Some(g) = self.groups.get(name) {
                let mut g = Group::clone(g);
                g.members.remove(uid);
                if g.members.is_empty() {
                    self.groups.remove(name);
                } else {
                    self.groups.insert(Arc::new(g));
                }
            }
        }
        self.blocking -= usize::from(route.fiber.overflow == Overflow::Block);
        self.any_block = self.blocking > 0;
    }

    /// Puts `route` in group `name` (replacing its former self there).
    fn join(&mut self, name: &Arc<str>, route: &Arc<Route>) {
        let mut g = match self.groups.get(name) {
            Some(g) => Group::clone(g),
            None => Group { name: name.clone(), members: Chunked::default(), cursor: Default::default() },
        };
        g.members.insert(route.clone());
        self.groups.insert(Arc::new(g));
    }

    /// Calls `f` for every fiber a broadcast of `topic` reaches: each
    /// ungrouped subscriber but `source`, and one member of each group.
    /// The topic index finds them; the ungrouped come in no set order.
    pub(crate) fn for_each_target<'a>(
        &'a self,
        topic: &str,
        key: Option<&[u8]>,
        source: Option<&str>,
        mut f: impl FnMut(&'a Arc<Fiber>),
    ) {
        let mut groups: SmallVec<[&'a str; 4]> = SmallVec::new();
        self.matching(topic, source, &mut f, |g| {
            if groups.last() != Some(&g) {
                groups.push(g);
            }
        });
        groups.sort_unstable();
        groups.dedup();
        let key = KeyHash::new(key);
        for name in groups {
            let picked = self.groups.get(name).and_then(|g| self.pick(g, topic, &key, source));
            if let Some(fiber) = picked {
                f(fiber);
            }
        }
    }

    /// [`for_each_target`](Self::for_each_target), or with `SCAN`
    /// [`for_each_target_scanning`](Self::for_each_target_scanning).
    pub(crate) fn targets<'a, const SCAN: bool>(
        &'a self,
        topic: &str,
        key: Option<&[u8]>,
        source: Option<&str>,
        f: impl FnMut(&'a Arc<Fiber>),
    ) {
        if SCAN {
            self.for_each_target_scanning(topic, key, source, f)
        } else {
            self.for_each_target(topic, key, source, f)
        }
    }

    /// Calls `f` for each ungrouped subscriber of `topic` but `source`.
    pub(crate) fn for_each_ungrouped<'a>(
        &'a self,
        topic: &str,
        source: Option<&str>,
        f: impl FnMut(&'a Arc<Fiber>),
    ) {
        self.matching(topic, source, f, |_| {});
    }

    /// The index's matches for `topic`: each ungrouped one but `source`
    /// to `ungrouped` once, and the group of each grouped one to `grouped`
    /// (as often as it comes).
    fn matching<'a>(
        &'a self,
        topic: &str,
        source: Option<&str>,
        mut ungrouped: impl FnMut(&'a Arc<Fiber>),
        mut grouped: impl FnMut(&'a str),
    ) {
        self.index.all().for_each(|r| match &r.fiber.group {
            Some(g) => grouped(g),
            None if is_source(source, &r.fiber.uid) => {}
            None => ungrouped(&r.fiber),
        });
        let mut repeated: SmallVec<[&'a Arc<Fiber>; 8]> = SmallVec::new();
        self.index.for_each_match(topic, |r| match &r.fiber.group {
            Some(g) => grouped(g),
            None if is_source(source, &r.fiber.uid) => {}
            // Only a node with several patterns can match more than once.
            None if r.subscription.patterns().len() > 1 => repeated.push(&r.fiber),
            None => ungrouped(&r.fiber),
        });
        repeated.sort_unstable_by_key(|f| Arc::as_ptr(f));
        repeated.dedup_by(|a, b| Arc::ptr_eq(a, b));
        repeated.into_iter().for_each(ungrouped);
    }

    /// [`for_each_target`](Self::for_each_target) by testing every node's
    /// patterns, in uid order: the routing before the topic index, kept as
    /// the model the index is tested against and for the scale benchmark.
    pub(crate) fn for_each_target_scanning<'a>(
        &'a self,
        topic: &str,
        key: Option<&[u8]>,
        source: Option<&str>,
        mut f: impl FnMut(&'a Arc<Fiber>),
    ) {
        for r in self.nodes.iter() {
            if r.fiber.group.is_none() && !is_source(source, &r.fiber.uid) && r.subscription.matches(topic) {
                f(&r.fiber);
            }
        }
        let key = KeyHash::new(key);
        for g in self.groups.iter() {
            if let Some(fiber) = self.pick(g, topic, &key, source) {
                f(fiber);
            }
        }
    }

    /// One member of `g` for an event other than `source`: by key hash
    /// over the matching members, else round-robin over the connected
    /// ones (or all of them when none is connected, so the events wait in
    /// a fiber, counted). The hash runs over every matching member, the
    /// source included, so that who emits does not move a key; when it
    /// lands on the source, the next member in uid order takes the event.
    /// Each member's `connected` flag is read once: a member that
    /// disconnects while the pick runs cannot leave it with nobody.
    fn pick<'a>(
        &'a self,
        g: &'a Group,
        topic: &str,
        key: &KeyHash<'_>,
        source: Option<&str>,
    ) -> Option<&'a Arc<Fiber>> {
        let matching: SmallVec<[&'a Arc<Fiber>; 8]> =
            g.members.iter().filter(|r| r.subscription.matches(topic)).map(|r| &r.fiber).collect();
        // Not hashed for a group with no member to pick: that ends below.
        let hash = if matching.is_empty() { None } else { key.get() };
        if let Some(hash) = hash {
            let at = (hash % matching.len() as u64) as usize;
            return matching
                .iter()
                .cycle()
                .skip(at)
                .take(matching.len())
                .copied()
                .find(|f| !is_source(source, &f.uid));
        }
        let eligible: SmallVec<[&'a Arc<Fiber>; 8]> =
            matching.into_iter().filter(|f| !is_source(source, &f.uid)).collect();
        if eligible.is_empty() {
            return None;
        }
        let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
        let connected: SmallVec<[&'a Arc<Fiber>; 8]> =
            eligible.iter().copied().filter(|f| f.connected.load(Ordering::Relaxed)).collect();
        let among = if connected.is_empty() { &eligible } else { &connected };
        Some(among[turn % among.len()])
    }

    /// A member of `group` to take an event a member could not (it left):
    /// the same rule as a broadcast pick, on the event's own topic, never
    /// the event's `source` ("" for none).
    pub(crate) fn heir(
        &self,
        group: &str,
        topic: &str,
        key: Option<&[u8]>,
        source: &str,
    ) -> Option<&Arc<Fiber>> {
        let g = self.groups.get(group)?;
        self.pick(g, topic, &KeyHash::new(key), Some(source))
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
